//! PDFs, read with Poppler's programs as bounded helper processes
//! (`skep_doc::process`): `pdfinfo` for the page count, sizes and
//! encryption, `pdftotext` for text layers (and `-bbox-layout` for their
//! word boxes), `pdftoppm -gray` to rasterise the pages that are OCR'd.
//!
//! Per page, by `spec.engine.pdf`: `auto` takes the text layer when the
//! page has real text (at least [`MIN_TEXT_CHARS`] letters or digits) and
//! OCRs it otherwise, as OCRmyPDF's `--skip-text` does per page; `ocr`
//! OCRs every page; `text` never OCRs.

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use skep_api::{FailureReason, PageRange, PageSource, PdfMode};
use skep_doc::layout::{PageLayout, from_pdftotext_bbox};
use skep_doc::process::{self, Limits};

use super::{MAX_PAGES, PageOut, Pages, ReadRequest, Split, Visual};
use crate::engine::{Engine, OcrError, PageImage};
use crate::raster::{MAX_PAGE_PIXELS, check_pixels, parse_pgm};
use crate::staging::PdfKind;

/// A page whose text layer has fewer letters and digits than this is OCR'd
/// in `auto` mode (a page number or a stamp on a scan is not its text).
pub const MIN_TEXT_CHARS: usize = 16;
/// Longest document read whole when none of its pages needs OCR (see
/// `read_whole_text`); a longer one is split like any other.
pub const WHOLE_TEXT_MAX_PAGES: u32 = 2_000;
/// Most text `pdftotext` may write for one task.
const MAX_TEXT_OUTPUT: usize = 64 << 20;
/// Most `pdfinfo` output kept: two lines a page for up to `MAX_PAGES`
/// pages (a whole-file read of a long document asks for all of them).
const MAX_INFO_OUTPUT: usize = 16 << 20;

/// What `pdfinfo` says of a document.
#[derive(Debug, Default, PartialEq)]
struct Info {
    pages: u32,
    encrypted: bool,
    /// `(number, width, height)` in points as displayed (rotation applied),
    /// for the pages asked about.
    sizes: Vec<(u32, f32, f32)>,
}

pub(super) fn read(engine: &mut Engine, req: &ReadRequest) -> Result<Split, OcrError> {
    let path = req.path.as_path();
    // A whole file is measured first (its page count decides a split). A
    // range of a file already measured skips `pdfinfo` unless a page is
    // OCR'd or a searchable PDF is made: born-digital ranges cost one
    // `pdftotext`.
    let mut texts = None;
    let (mut info, range) = match req.pages {
        None => {
            let info = checked_info(path, 1, req.pages_per_task.clamp(1, MAX_PAGES), req.deadline)?;
            match req.range_of(info.pages)? {
                Some(range) => (Some(info), range),
                None => {
                    // Splitting spreads OCR over workers; a document with a
                    // text layer on every page has none to spread (the text
                    // of 700 pages takes a third of a second), so it is read
                    // whole instead of costing a task per range.
                    let all = PageRange {
                        first: 1,
                        last: info.pages,
                    };
                    match read_whole_text(path, all, req)? {
                        Some(whole) => texts = Some(whole),
                        None => return Ok(Split::Split(info.pages)),
                    }
                    // NB: sizes beyond the first range are measured below
                    // when a searchable PDF needs them.
                    (None, all)
                }
            }
        }
        Some(range) => (None, range),
    };
    let n = range.len() as usize;
    let texts = match texts {
        Some(t) => t,
        None if req.config.pdf == PdfMode::Ocr => vec![String::new(); n],
        None => pdftotext(path, range, req.deadline)?,
    };
    let use_text: Vec<bool> = texts
        .iter()
        .map(|t| match req.config.pdf {
            PdfMode::Text => true,
            PdfMode::Ocr => false,
            PdfMode::Auto => has_real_text(t),
        })
        .collect();
    if info.is_none() && (req.wants_pdf() || use_text.iter().any(|u| !u)) {
        let measured = checked_info(path, range.first, range.last, req.deadline)?;
        req.range_of(measured.pages)?;
        info = Some(measured);
    }
    let layout = req.wants_layout();
    let mut text_layouts: Vec<PageLayout> = if layout && use_text.iter().any(|u| *u) {
        pdftotext_layouts(path, range, req.config.dpi, req.deadline)?
    } else {
        Vec::new()
    };
    let mut pages = Vec::with_capacity(n);
    for (i, number) in (range.first..=range.last).enumerate() {
        let size = info.as_ref().map(|info| {
            info.sizes
                .iter()
                .find(|(p, _, _)| *p == number)
                .map(|(_, w, h)| (*w, *h))
                .ok_or_else(|| {
                    OcrError::new(
                        FailureReason::Corrupt,
                        format!("pdfinfo gave no size for page {number}"),
                    )
                })
        });
        let size = size.transpose()?;
        let visual = size.map_or(Visual::None, |(width_pt, height_pt)| Visual::PdfPage {
            width_pt,
            height_pt,
        });
        if use_text[i] {
            let text = texts[i].trim_end().to_owned();
            let layout = text_layouts
                .iter()
                .position(|l| l.number == number)
                .map(|at| text_layouts.swap_remove(at));
            pages.push(PageOut {
                number,
                source: PageSource::Text,
                words: text.split_whitespace().count() as u64,
                confidence: 100.0,
                rotation: 0,
                text,
                layout,
                visual,
            });
            continue;
        }
        let Some((width_pt, height_pt)) = size else {
            return Err(OcrError::new(
                FailureReason::Engine,
                format!("page {number} was not measured"),
            ));
        };
        // NB: Poppler answers some broken page trees (a loop) with an
        // extra page of no size.
        if !(width_pt >= 1.0 && height_pt >= 1.0) {
            return Err(OcrError::new(
                FailureReason::Corrupt,
                format!("page {number} has no area ({width_pt} x {height_pt} pt)"),
            ));
        }
        let dpi = req.config.dpi;
        let px = |pt: f32| (f64::from(pt) * f64::from(dpi) / 72.0).ceil() as u64;
        let expected = (px(width_pt), px(height_pt));
        check_pixels(expected.0, expected.1, &format!("page {number} at {dpi} dpi"))?;
        let raster = render(path, number, dpi, expected, req.deadline)?;
        let ocr = engine.read_page(PageImage::Gray(&raster), number, &req.config, layout)?;
        pages.push(PageOut {
            number,
            source: PageSource::Ocr,
            words: ocr.words,
            confidence: ocr.confidence,
            rotation: ocr.rotation,
            text: ocr.text,
            layout: ocr.layout,
            visual,
        });
    }
    Ok(Split::Pages(Pages {
        pages,
        kind: PdfKind::Layer,
    }))
}

/// The text of every page of a document too long for one task, when it
/// needs no OCR at all (`text` mode, or every page has real text in `auto`
/// mode) and is not too long to read at once; `None`: split it.
///
/// The look is bounded far tighter than the task (2 s and 2 ms a page): a
/// document whose text takes longer to extract, or that `pdftotext` cannot
/// read whole, is split, and its ranges meet whatever is wrong with it.
fn read_whole_text(path: &Path, all: PageRange, req: &ReadRequest) -> Result<Option<Vec<String>>, OcrError> {
    if req.config.pdf == PdfMode::Ocr || all.len() > WHOLE_TEXT_MAX_PAGES {
        return Ok(None);
    }
    let budget = Duration::from_secs(2) + Duration::from_millis(2) * all.len();
    let deadline = req.deadline.min(Instant::now() + budget);
    let Ok(texts) = pdftotext(path, all, deadline) else {
        return Ok(None);
    };
    let no_ocr = req.config.pdf == PdfMode::Text || texts.iter().all(|t| has_real_text(t));
    Ok(no_ocr.then_some(texts))
}

/// `pdfinfo` on pages `first..=last`, refusing an encrypted or empty PDF.
fn checked_info(path: &Path, first: u32, last: u32, deadline: Instant) -> Result<Info, OcrError> {
    let info = pdfinfo(path, first, last, deadline)?;
    if info.encrypted {
        return Err(OcrError::new(
            FailureReason::Encrypted,
            "the PDF is encrypted; remove the encryption first (for example qpdf --decrypt --password=... in.pdf out.pdf)",
        ));
    }
    if info.pages == 0 {
        return Err(OcrError::new(FailureReason::Empty, "the PDF has no pages"));
    }
    if info.pages > MAX_PAGES {
        return Err(OcrError::new(
            FailureReason::TooLarge,
            format!("the PDF has {} pages, more than {MAX_PAGES}", info.pages),
        ));
    }
    Ok(info)
}

/// Whether a page's text layer holds real text.
fn has_real_text(text: &str) -> bool {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .take(MIN_TEXT_CHARS)
        .count()
        >= MIN_TEXT_CHARS
}

fn limits(deadline: Instant, max_output: usize) -> Limits {
    Limits::new(deadline, max_output)
}

/// Runs a Poppler program; a non-zero exit is mapped to a reason from
/// what it printed.
fn poppler(program: &str, args: &[&OsStr], l: Limits) -> Result<Vec<u8>, OcrError> {
    let out = process::run(program, args, l)?;
    if out.success() {
        return Ok(out.stdout);
    }
    let said = out
        .stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    let said: String = said.chars().take(200).collect();
    if out.stderr.contains("bad_alloc") || out.stderr.contains("Out of memory") {
        return Err(OcrError::new(
            FailureReason::TooLarge,
            format!("{program} ran out of memory on the PDF"),
        ));
    }
    if out.stderr.contains("Incorrect password") {
        return Err(OcrError::new(
            FailureReason::Encrypted,
            "the PDF is password-protected; remove the password first (for example qpdf --decrypt --password=... in.pdf out.pdf)",
        ));
    }
    Err(OcrError::new(
        FailureReason::Corrupt,
        format!("{program} could not read the PDF: {said}"),
    ))
}

fn pdfinfo(path: &Path, first: u32, last: u32, deadline: Instant) -> Result<Info, OcrError> {
    let (f, l) = (first.to_string(), last.to_string());
    let args: [&OsStr; 6] = [
        "-f".as_ref(),
        f.as_ref(),
        "-l".as_ref(),
        l.as_ref(),
        "--".as_ref(),
        path.as_os_str(),
    ];
    let out = poppler("pdfinfo", &args, limits(deadline, MAX_INFO_OUTPUT))?;
    parse_info(&String::from_utf8_lossy(&out))
}

fn parse_info(text: &str) -> Result<Info, OcrError> {
    let mut info = Info::default();
    let mut rotations: Vec<(u32, u32)> = Vec::new();
    let mut saw_pages = false;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Pages:") {
            info.pages = v.trim().parse().unwrap_or(0);
            saw_pages = true;
        } else if let Some(v) = line.strip_prefix("Encrypted:") {
            info.encrypted = v.trim().starts_with("yes");
        } else if let Some(rest) = line.strip_prefix("Page ") {
            // "Page    1 size:  612 x 792 pts (letter)" / "Page    1 rot:   90"
            let mut words = rest.split_whitespace();
            let Some(number) = words.next().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            match words.next() {
                Some("size:") => {
                    let w = words.next().and_then(|w| w.parse::<f32>().ok());
                    let _x = words.next();
                    let h = words.next().and_then(|h| h.parse::<f32>().ok());
                    if let (Some(w), Some(h)) = (w, h)
                        && w.is_finite()
                        && h.is_finite()
                    {
                        info.sizes.push((number, w, h));
                    }
                }
                Some("rot:") => {
                    if let Some(r) = words.next().and_then(|r| r.parse::<u32>().ok()) {
                        rotations.push((number, r));
                    }
                }
                _ => {}
            }
        }
    }
    if !saw_pages {
        return Err(OcrError::new(FailureReason::Corrupt, "pdfinfo found no page count"));
    }
    for (number, w, h) in &mut info.sizes {
        if let Some((_, r)) = rotations.iter().find(|(p, _)| p == number)
            && r % 180 == 90
        {
            std::mem::swap(w, h);
        }
    }
    Ok(info)
}

/// The text of each page of `range`, in order.
fn pdftotext(path: &Path, range: PageRange, deadline: Instant) -> Result<Vec<String>, OcrError> {
    let out = run_pdftotext(path, range, None, deadline)?;
    let text = String::from_utf8_lossy(&out);
    // NB: every page ends with a form feed; fewer than the range's pages
    // means the PDF is shorter than the range (pdftotext clamps silently).
    let pages: Vec<String> = text.split('\x0c').map(str::to_owned).collect();
    if pages.len() <= range.len() as usize {
        return Err(OcrError::new(
            FailureReason::Corrupt,
            format!(
                "pages {range} asked for, but the PDF has {} pages from {} (did it change since it was split?)",
                pages.len() - 1,
                range.first
            ),
        ));
    }
    Ok(pages.into_iter().take(range.len() as usize).collect())
}

/// The word boxes of each page of `range` that has a text layer.
fn pdftotext_layouts(path: &Path, range: PageRange, dpi: u32, deadline: Instant) -> Result<Vec<PageLayout>, OcrError> {
    let out = run_pdftotext(path, range, Some("-bbox-layout"), deadline)?;
    Ok(from_pdftotext_bbox(&String::from_utf8_lossy(&out), range.first, dpi)?)
}

/// `pdftotext` on the crop boxes of `range`, UTF-8, to standard output.
fn run_pdftotext(path: &Path, range: PageRange, mode: Option<&str>, deadline: Instant) -> Result<Vec<u8>, OcrError> {
    let (f, l) = (range.first.to_string(), range.last.to_string());
    let mut args: Vec<&OsStr> = vec!["-cropbox".as_ref()];
    args.extend(mode.map(OsStr::new));
    args.extend::<[&OsStr; 8]>([
        "-f".as_ref(),
        f.as_ref(),
        "-l".as_ref(),
        l.as_ref(),
        "-enc".as_ref(),
        "UTF-8".as_ref(),
        "--".as_ref(),
        path.as_os_str(),
    ]);
    args.push("-".as_ref());
    poppler("pdftotext", &args, limits(deadline, MAX_TEXT_OUTPUT))
}

/// Page `number` (its crop box, as `pdfinfo` measures pages) rasterised
/// at `dpi`, 8-bit gray; `expected` is its size in pixels.
fn render(
    path: &Path,
    number: u32,
    dpi: u32,
    expected: (u64, u64),
    deadline: Instant,
) -> Result<crate::raster::Raster, OcrError> {
    let (n, r) = (number.to_string(), dpi.to_string());
    let args: [&OsStr; 10] = [
        "-cropbox".as_ref(),
        "-f".as_ref(),
        n.as_ref(),
        "-l".as_ref(),
        n.as_ref(),
        "-r".as_ref(),
        r.as_ref(),
        "-gray".as_ref(),
        "--".as_ref(),
        path.as_os_str(),
    ];
    let out = poppler("pdftoppm", &args, limits(deadline, MAX_PAGE_PIXELS as usize + 4096))?;
    if out.is_empty() {
        return Err(OcrError::new(
            FailureReason::Corrupt,
            format!("pdftoppm rendered nothing for page {number}"),
        ));
    }
    let raster = parse_pgm(&out, dpi)?;
    // NB: pdftoppm answers a page it could not allocate with a 1x1 white
    // image and exit status 0; a size far from the page's is that.
    let near = |got: u32, want: u64| u64::from(got).abs_diff(want) <= 2 + want / 100;
    if !near(raster.width, expected.0) || !near(raster.height, expected.1) {
        return Err(OcrError::new(
            FailureReason::TooLarge,
            format!(
                "page {number} rendered at {}x{} pixels instead of {}x{}: the renderer ran out of memory",
                raster.width, raster.height, expected.0, expected.1
            ),
        ));
    }
    Ok(raster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdfinfo_output_is_read() {
        let text = "Producer:        img2pdf 0.4.4\nPages:           12\nEncrypted:       no\n\
                    Page    1 size:  297.6 x 211.2 pts\nPage    1 rot:   0\n\
                    Page    2 size:  612 x 792 pts (letter)\nPage    2 rot:   90\n";
        let info = parse_info(text).unwrap();
        assert_eq!(info.pages, 12);
        assert!(!info.encrypted);
        assert_eq!(info.sizes, vec![(1, 297.6, 211.2), (2, 792.0, 612.0)]);
        let enc = parse_info("Pages: 1\nEncrypted:       yes (print:yes copy:no)\n").unwrap();
        assert!(enc.encrypted);
        assert_eq!(parse_info("garbage").unwrap_err().reason, FailureReason::Corrupt);
    }

    #[test]
    fn real_text_needs_letters() {
        assert!(!has_real_text("  3  \n"));
        assert!(!has_real_text("Page 12 of 30"));
        assert!(has_real_text("The quick brown fox jumps over"));
    }
}
