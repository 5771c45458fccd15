//! Generated PDFs and multi-page TIFFs with ground truth, and broken ones.
//!
//! [`generate_documents`] writes, under `pages_dir/docs/`:
//!
//! | file | pages | what |
//! |---|---|---|
//! | `born-digital.pdf` | 3 | Helvetica text layer, no images |
//! | `scanned.pdf` | 3 | one greyscale JPEG per page at 300 dpi, no text |
//! | `mixed.pdf` | 4 | text, scan, text, scan |
//! | `sideways.pdf` | 1 | a scan turned 90° clockwise (the page is not `/Rotate`d) |
//! | `sideways.png`, `upside-down.png` | 1 | a scan turned 90° clockwise, 180° |
//! | `multipage.tif` | 3 | LZW greyscale TIFF |
//! | `big.pdf` | N | scans, only with [`DocOptions::big_pdf_pages`] |
//! | `bad/encrypted.pdf` | — | AES-256, user password [`ENCRYPTED_USER_PASSWORD`]; fails `encrypted` |
//! | `bad/truncated.pdf` | — | first third of `scanned.pdf`; fails `corrupt` |
//! | `bad/empty.pdf` | — | 0 bytes; fails `empty` |
//! | `bad/not-a-pdf.pdf` | — | plain text; fails `unsupported` |
//! | `bad/huge-page.pdf` | — | one image page of 14400 pt square; fails `tooLarge` |
//!
//! The ground truth of a rotated page is its upright text.
//!
//! [`generate_scanned_pdfs`] writes many scanned PDFs (for benchmarks), and
//! [`generate_text_pdf`] one born-digital PDF of many numbered pages (for
//! tests of page order).

mod broken;
mod pdf;
mod tool;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use ab_glyph::FontVec;
use anyhow::{Context as _, anyhow, bail};
use image::GrayImage;

pub use self::broken::{ENCRYPTED_OWNER_PASSWORD, ENCRYPTED_USER_PASSWORD, HUGE_PAGE_POINTS};
use self::pdf::{GrayImageStream, PdfPage, write_pdf};
pub use self::tool::{ToolError, ToolOutput, run_tool};
use crate::render::{encode_image, encode_multipage_tiff, load_font, render_with_font};
use crate::{GeneratedFile, ImageFormat, MANIFEST_FILE, PageSize, mix_seed, page_text, truth_path};

/// Most pages [`generate_documents`] or [`generate_scanned_pdfs`] put in one
/// PDF. A PDF is built in memory: about twice its JPEGs, some 130 kB a page
/// at [`PageSize::Small`] and 1 MB at [`PageSize::A4`] (so up to 2 GB).
pub const MAX_PDF_PAGES: usize = 1_000;
/// Most files [`generate_scanned_pdfs`] writes in one call.
pub const MAX_SCANNED_FILES: usize = 100_000;

/// Separator between the pages of a multi-page file in its ground truth.
const PAGE_SEPARATOR: &str = "\n\u{c}\n";

/// Seed streams: one per generated file, so adding a file never changes
/// another's pages.
const BORN_DIGITAL_STREAM: u64 = 0xd0c_0001;
const SCANNED_STREAM: u64 = 0xd0c_0002;
const MIXED_STREAM: u64 = 0xd0c_0003;
const SIDEWAYS_PDF_STREAM: u64 = 0xd0c_0004;
const SIDEWAYS_PNG_STREAM: u64 = 0xd0c_0005;
const UPSIDE_DOWN_STREAM: u64 = 0xd0c_0006;
const MULTIPAGE_STREAM: u64 = 0xd0c_0007;
const BIG_STREAM: u64 = 0xd0c_0008;
const ENCRYPTED_STREAM: u64 = 0xd0c_0009;
const HUGE_PAGE_STREAM: u64 = 0xd0c_000a;
const TEXT_PDF_STREAM: u64 = 0xd0c_000b;
const SCANNED_PDFS_STREAM: u64 = 0xd0c_0100;

/// What [`generate_documents`] should write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocOptions {
    /// Master seed; the same options always give the same files (except
    /// `bad/encrypted.pdf`, whose encryption key qpdf draws at random).
    pub seed: u64,
    /// Size of the scanned pages (text pages are always A4).
    pub size: PageSize,
    /// If `Some(n)` (0 < n <= [`MAX_PDF_PAGES`]): also write `big.pdf`, `n`
    /// scanned pages of [`PageSize::Small`].
    pub big_pdf_pages: Option<usize>,
}

impl Default for DocOptions {
    fn default() -> Self {
        DocOptions {
            seed: 1,
            size: PageSize::Small,
            big_pdf_pages: None,
        }
    }
}

/// Generates the test documents listed in the [module docs](self) under
/// `pages_dir/docs/`, with ground truth as `truth_dir/<rel_path>.txt` (pages
/// joined with `"\n\f\n"`; none for the broken files). Returns them in a
/// fixed order; does not write a manifest (see [`write_manifest`]).
///
/// Needs `qpdf` on `PATH` (for `bad/encrypted.pdf`) and the render font.
/// Existing files with the same names are overwritten; nothing is deleted.
pub fn generate_documents(pages_dir: &Path, truth_dir: &Path, opts: &DocOptions) -> anyhow::Result<Vec<GeneratedFile>> {
    let big_pages = opts.big_pdf_pages.filter(|&n| n > 0);
    if let Some(n) = big_pages.filter(|&n| n > MAX_PDF_PAGES) {
        bail!("big pdf of {n} pages requested; at most {MAX_PDF_PAGES} are supported");
    }
    let font = load_font()?;
    let out = Output { pages_dir, truth_dir };
    let seeds = |stream: u64, n: usize| page_seeds(opts.seed, stream, n);
    let size = opts.size;
    let mut files = Vec::new();

    let texts: Vec<Vec<String>> = seeds(BORN_DIGITAL_STREAM, 3).into_iter().map(text_page_lines).collect();
    let pages: Vec<PdfPage<'_>> = texts.iter().map(|t| PdfPage::Text(t)).collect();
    let bytes = write_pdf(&pages, mix_seed(opts.seed, BORN_DIGITAL_STREAM))?;
    files.push(out.good("docs/born-digital.pdf", &bytes, texts.iter().map(|t| t.join("\n")))?);

    let scans = jpeg_scans(&font, size, &seeds(SCANNED_STREAM, 3))?;
    let pages: Vec<PdfPage<'_>> = scans.iter().map(|s| PdfPage::scan(&s.image)).collect();
    let scanned = write_pdf(&pages, mix_seed(opts.seed, SCANNED_STREAM))?;
    files.push(out.good("docs/scanned.pdf", &scanned, scans.iter().map(|s| s.truth.clone()))?);

    let mixed_seeds = seeds(MIXED_STREAM, 4);
    let scans = jpeg_scans(&font, size, &[mixed_seeds[1], mixed_seeds[3]])?;
    let texts = [text_page_lines(mixed_seeds[0]), text_page_lines(mixed_seeds[2])];
    let pages = [
        PdfPage::Text(&texts[0]),
        PdfPage::scan(&scans[0].image),
        PdfPage::Text(&texts[1]),
        PdfPage::scan(&scans[1].image),
    ];
    let truths = [
        texts[0].join("\n"),
        scans[0].truth.clone(),
        texts[1].join("\n"),
        scans[1].truth.clone(),
    ];
    let bytes = write_pdf(&pages, mix_seed(opts.seed, MIXED_STREAM))?;
    files.push(out.good("docs/mixed.pdf", &bytes, truths)?);

    // One batch for the three turned pages: a 90° PDF page, a 90° PNG, a 180° PNG.
    let turned_seeds =
        [SIDEWAYS_PDF_STREAM, SIDEWAYS_PNG_STREAM, UPSIDE_DOWN_STREAM].map(|s| page_seed(opts.seed, s, 0));
    let [sideways_pdf, sideways_png, upside_down] =
        <[Scan<GrayImage>; 3]>::try_from(render_scans(&font, size, &turned_seeds)?)
            .map_err(|_| anyhow!("expected three turned pages"))?;
    let image = jpeg_stream(&image::imageops::rotate90(&sideways_pdf.image))?;
    let bytes = write_pdf(&[PdfPage::scan(&image)], mix_seed(opts.seed, SIDEWAYS_PDF_STREAM))?;
    files.push(out.good("docs/sideways.pdf", &bytes, [sideways_pdf.truth])?);
    let bytes = encode_image(&image::imageops::rotate90(&sideways_png.image), ImageFormat::Png)?;
    files.push(out.good("docs/sideways.png", &bytes, [sideways_png.truth])?);
    let bytes = encode_image(&image::imageops::rotate180(&upside_down.image), ImageFormat::Png)?;
    files.push(out.good("docs/upside-down.png", &bytes, [upside_down.truth])?);

    let scans = render_scans(&font, size, &seeds(MULTIPAGE_STREAM, 3))?;
    let images: Vec<GrayImage> = scans.iter().map(|s| s.image.clone()).collect();
    let bytes = encode_multipage_tiff(&images)?;
    files.push(out.good("docs/multipage.tif", &bytes, scans.into_iter().map(|s| s.truth))?);

    if let Some(n) = big_pages {
        let scans = jpeg_scans(&font, PageSize::Small, &seeds(BIG_STREAM, n))?;
        let pages: Vec<PdfPage<'_>> = scans.iter().map(|s| PdfPage::scan(&s.image)).collect();
        let bytes = write_pdf(&pages, mix_seed(opts.seed, BIG_STREAM))?;
        files.push(out.good("docs/big.pdf", &bytes, scans.into_iter().map(|s| s.truth))?);
    }

    files.extend(write_broken(&out, opts.seed, &scanned)?);
    Ok(files)
}

fn write_broken(out: &Output<'_>, seed: u64, valid: &[u8]) -> anyhow::Result<Vec<GeneratedFile>> {
    let text = text_page_lines(mix_seed(seed, ENCRYPTED_STREAM));
    let plain = write_pdf(&[PdfPage::Text(&text)], mix_seed(seed, ENCRYPTED_STREAM))?;
    let encrypted = out.pages_dir.join("docs/bad/encrypted.pdf");
    create_parent(&encrypted)?;
    broken::write_encrypted(&plain, &encrypted)?;

    Ok(vec![
        bad("docs/bad/encrypted.pdf", "encrypted"),
        out.bad("docs/bad/truncated.pdf", &broken::truncated(valid), "corrupt")?,
        out.bad("docs/bad/empty.pdf", &[], "empty")?,
        out.bad("docs/bad/not-a-pdf.pdf", broken::NOT_A_PDF.as_bytes(), "unsupported")?,
        out.bad(
            "docs/bad/huge-page.pdf",
            &broken::huge_page_pdf(mix_seed(seed, HUGE_PAGE_STREAM))?,
            "tooLarge",
        )?,
    ])
}

/// What [`generate_scanned_pdfs`] should write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedPdfOptions {
    /// Number of PDFs, `scan-0001.pdf`, ... (at most [`MAX_SCANNED_FILES`]).
    pub files: usize,
    /// Scanned pages in each (1..=[`MAX_PDF_PAGES`]).
    pub pages_per_file: usize,
    pub size: PageSize,
    pub seed: u64,
}

/// Writes `opts.files` image-only PDFs of `opts.pages_per_file` scanned pages
/// each as `dir/scan-0001.pdf`, ... with ground truth under `truth_dir`, for
/// benchmarks. Deterministic; does not write a manifest.
pub fn generate_scanned_pdfs(
    dir: &Path,
    truth_dir: &Path,
    opts: &ScannedPdfOptions,
) -> anyhow::Result<Vec<GeneratedFile>> {
    if opts.files > MAX_SCANNED_FILES {
        bail!(
            "{} files requested; at most {MAX_SCANNED_FILES} are supported",
            opts.files
        );
    }
    if !(1..=MAX_PDF_PAGES).contains(&opts.pages_per_file) {
        bail!(
            "{} pages per file requested; 1 to {MAX_PDF_PAGES} are supported",
            opts.pages_per_file
        );
    }
    let font = load_font()?;
    let out = Output {
        pages_dir: dir,
        truth_dir,
    };
    let numbers: Vec<usize> = (1..=opts.files).collect();
    let one_file = |n: usize, parallel_pages: bool| -> anyhow::Result<GeneratedFile> {
        let stream = SCANNED_PDFS_STREAM + n as u64;
        let seeds = page_seeds(opts.seed, stream, opts.pages_per_file);
        let scans = if parallel_pages {
            jpeg_scans(&font, opts.size, &seeds)?
        } else {
            seeds
                .iter()
                .map(|&s| jpeg_scan(&font, opts.size, s))
                .collect::<anyhow::Result<_>>()?
        };
        let pages: Vec<PdfPage<'_>> = scans.iter().map(|s| PdfPage::scan(&s.image)).collect();
        let bytes = write_pdf(&pages, mix_seed(opts.seed, stream))?;
        out.good(&format!("scan-{n:04}.pdf"), &bytes, scans.into_iter().map(|s| s.truth))
    };
    // NB: parallel over files when there are enough of them to fill the cores
    // (one file's images in memory per thread), else over each file's pages.
    if opts.files >= threads() {
        par_map(&numbers, |&n| one_file(n, false))
    } else {
        numbers.iter().map(|&n| one_file(n, true)).collect()
    }
}

/// Writes a born-digital PDF of `pages` A4 pages (1..=[`MAX_PDF_PAGES`]) as
/// `dir/rel_path`, with ground truth under `truth_dir` (pages joined with
/// `"\n\f\n"`). Each page is Helvetica text: a first line `Page n of N`,
/// then lines as on a born-digital page of [`generate_documents`], so every
/// page's text is distinct and says where it belongs. Deterministic in
/// `seed`; fast (no images), for tests of page order over many pages.
///
/// `rel_path` must be relative and name no `..`.
pub fn generate_text_pdf(
    dir: &Path,
    truth_dir: &Path,
    rel_path: &str,
    pages: usize,
    seed: u64,
) -> anyhow::Result<GeneratedFile> {
    if !(1..=MAX_PDF_PAGES).contains(&pages) {
        bail!("{pages} pages requested; 1 to {MAX_PDF_PAGES} are supported");
    }
    let plain = Path::new(rel_path)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if rel_path.is_empty() || !plain {
        bail!("{rel_path:?} is not a plain relative path");
    }
    let texts: Vec<Vec<String>> = page_seeds(seed, TEXT_PDF_STREAM, pages)
        .into_iter()
        .enumerate()
        .map(|(k, s)| {
            let mut lines = vec![format!("Page {} of {pages}", k + 1)];
            lines.extend(text_page_lines(s));
            lines
        })
        .collect();
    let pdf_pages: Vec<PdfPage<'_>> = texts.iter().map(|t| PdfPage::Text(t)).collect();
    let bytes = write_pdf(&pdf_pages, mix_seed(seed, TEXT_PDF_STREAM))?;
    let out = Output {
        pages_dir: dir,
        truth_dir,
    };
    out.good(rel_path, &bytes, texts.iter().map(|t| t.join("\n")))
}

/// Writes `files` as `truth_dir/manifest.json`, in the format
/// [`read_manifest`](crate::read_manifest) reads.
pub fn write_manifest(truth_dir: &Path, files: &[GeneratedFile]) -> anyhow::Result<()> {
    let path = truth_dir.join(MANIFEST_FILE);
    let json = serde_json::to_string_pretty(files).context("serialising manifest")?;
    create_parent(&path)?;
    std::fs::write(&path, json + "\n").with_context(|| format!("writing {}", path.display()))
}

/// The lines of a text (born-digital) page: [`page_text`] with no line
/// ending in a hyphen.
///
/// NB: `pdftotext` (reading-order mode) joins a line that ends in `-` to the
/// next and drops the `-`, even a free-standing dash, so such a line would
/// not read back as written. A trailing dash moves to the start of the next
/// line (and is dropped from the last line).
fn text_page_lines(seed: u64) -> Vec<String> {
    let mut lines = page_text(seed, PageSize::Small);
    for i in 0..lines.len() {
        while lines[i].ends_with('-') {
            let (head, tail) = match lines[i].rsplit_once(' ') {
                Some((head, tail)) => (head.trim_end().to_string(), tail.to_string()),
                None => (String::new(), std::mem::take(&mut lines[i])),
            };
            lines[i] = head;
            if let Some(next) = lines.get_mut(i + 1) {
                *next = format!("{tail} {next}");
            }
        }
    }
    lines
}

/// A rendered page and its ground truth (lines joined with `\n`).
struct Scan<I> {
    image: I,
    truth: String,
}

/// Seed of page `k` (from 0) of the file with seed stream `stream`.
fn page_seed(seed: u64, stream: u64, k: usize) -> u64 {
    mix_seed(mix_seed(seed, stream), k as u64)
}

/// Seeds of the first `n` pages of the file with seed stream `stream`.
fn page_seeds(seed: u64, stream: u64, n: usize) -> Vec<u64> {
    (0..n).map(|k| page_seed(seed, stream, k)).collect()
}

fn render_scan(font: &FontVec, size: PageSize, seed: u64) -> Scan<GrayImage> {
    let lines = page_text(seed, size);
    Scan {
        image: render_with_font(font, &lines, size, seed),
        truth: lines.join("\n"),
    }
}

fn jpeg_scan(font: &FontVec, size: PageSize, seed: u64) -> anyhow::Result<Scan<GrayImageStream>> {
    let scan = render_scan(font, size, seed);
    Ok(Scan {
        image: jpeg_stream(&scan.image)?,
        truth: scan.truth,
    })
}

fn render_scans(font: &FontVec, size: PageSize, seeds: &[u64]) -> anyhow::Result<Vec<Scan<GrayImage>>> {
    par_map(seeds, |&s| Ok(render_scan(font, size, s)))
}

/// Renders and JPEG-encodes each page once, in parallel; only the JPEGs are
/// kept.
fn jpeg_scans(font: &FontVec, size: PageSize, seeds: &[u64]) -> anyhow::Result<Vec<Scan<GrayImageStream>>> {
    par_map(seeds, |&s| jpeg_scan(font, size, s))
}

fn jpeg_stream(img: &GrayImage) -> anyhow::Result<GrayImageStream> {
    let (w, h) = img.dimensions();
    Ok(GrayImageStream::jpeg(encode_image(img, ImageFormat::Jpeg)?, w, h))
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `items.map(f)` on up to [`threads`] threads, in order; the first error (in
/// item order) wins.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> anyhow::Result<R> + Sync) -> anyhow::Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, anyhow::Result<R>)> = Vec::with_capacity(items.len());
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads().min(items.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        for handle in handles {
            done.extend(handle.join().map_err(|_| anyhow!("a page generator thread panicked"))?);
        }
        Ok(())
    })?;
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Where generated files and their ground truth go.
struct Output<'a> {
    pages_dir: &'a Path,
    truth_dir: &'a Path,
}

impl Output<'_> {
    /// Writes a good file and its ground truth (one entry per page).
    fn good(
        &self,
        rel_path: &str,
        bytes: &[u8],
        page_truths: impl IntoIterator<Item = String>,
    ) -> anyhow::Result<GeneratedFile> {
        let page_truths: Vec<String> = page_truths.into_iter().collect();
        let truth = page_truths.join(PAGE_SEPARATOR);
        write_file(&self.pages_dir.join(rel_path), bytes)?;
        write_file(&truth_path(self.truth_dir, rel_path), truth.as_bytes())?;
        Ok(GeneratedFile {
            rel_path: rel_path.to_string(),
            truth: Some(truth),
            pages: page_truths.len(),
            expect_failure: None,
        })
    }

    /// Writes a broken file (no ground truth).
    fn bad(&self, rel_path: &str, bytes: &[u8], kind: &str) -> anyhow::Result<GeneratedFile> {
        write_file(&self.pages_dir.join(rel_path), bytes)?;
        Ok(bad(rel_path, kind))
    }
}

fn bad(rel_path: &str, kind: &str) -> GeneratedFile {
    GeneratedFile {
        rel_path: rel_path.to_string(),
        truth: None,
        pages: 0,
        expect_failure: Some(kind.to_string()),
    }
}

fn create_parent(path: &Path) -> anyhow::Result<()> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display())),
        None => Ok(()),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    create_parent(path)?;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
