//! Reading one task: a whole file, or a page range of one. The file's
//! format is found by content ([`crate::format::sniff_document`]); each
//! format has its reader here (images, PDF, Office), and every reader gives
//! back pages ([`PageOut`]) that [`staging`](crate::staging) turns into
//! artefacts.
//!
//! A whole-file request for a document with more pages than
//! `pages_per_task` is answered [`ReadOutput::Split`] without reading a
//! page, so the controller can spread its ranges over every worker — except
//! a PDF that needs no OCR at all (every page has a text layer), which is
//! read whole: splitting spreads OCR, and it has none.

mod image;
mod office;
mod pdf;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skep_api::{Artefact, FailureReason, MAX_INLINE_TEXT, PageInfo, PageRange, PageSource};
use skep_doc::layout::PageLayout;

use crate::engine::{Engine, EngineConfig, OcrError};
use crate::format::{DocumentFormat, sniff_document};
use crate::raster::Raster;
use crate::staging::{self, StagingTarget};

/// Most pages a file may have (a bound on page-count loops).
pub const MAX_PAGES: u32 = 100_000;

/// One task to read.
#[derive(Clone, Debug)]
pub struct ReadRequest {
    pub path: PathBuf,
    /// The pages to read, or `None` for the whole file.
    pub pages: Option<PageRange>,
    /// A whole file with more pages than this is answered `Split`.
    pub pages_per_task: u32,
    pub config: EngineConfig,
    pub artefacts: Vec<Artefact>,
    /// Where artefacts (and a long text) go; `None`: nowhere (artefacts
    /// are not made, a long text travels inline).
    pub staging: Option<StagingTarget>,
    pub max_bytes: u64,
    /// Helper processes are killed at this instant.
    pub deadline: Instant,
}

impl ReadRequest {
    /// Every page of `path`, no artefacts, no split, a day to do it.
    pub fn whole_file(path: &Path, config: EngineConfig, max_bytes: u64) -> Self {
        Self {
            path: path.to_path_buf(),
            pages: None,
            pages_per_task: MAX_PAGES,
            config,
            artefacts: Vec::new(),
            staging: None,
            max_bytes,
            deadline: Instant::now() + Duration::from_secs(86_400),
        }
    }

    /// Whether word boxes are needed: every artefact is made from them.
    fn wants_layout(&self) -> bool {
        self.staging.is_some() && !self.artefacts.is_empty()
    }

    fn wants_pdf(&self) -> bool {
        self.staging.is_some() && self.artefacts.contains(&Artefact::Pdf)
    }

    /// The pages of a `total`-page document this request covers, or `None`
    /// when it should be split.
    fn range_of(&self, total: u32) -> Result<Option<PageRange>, OcrError> {
        match self.pages {
            None if total > self.pages_per_task => Ok(None),
            None => Ok(Some(PageRange { first: 1, last: total })),
            Some(r) if r.first == 0 || r.first > r.last || r.last > total => Err(OcrError::new(
                FailureReason::Corrupt,
                format!("pages {r} asked for, but the file has {total} pages (did it change since it was split?)"),
            )),
            Some(r) => Ok(Some(r)),
        }
    }
}

/// What reading a task gave.
#[derive(Debug)]
pub enum ReadOutput {
    /// The whole file has this many pages, more than one task reads.
    Split {
        pages: u32,
    },
    Read(ReadResult),
}

/// The result of a task.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadResult {
    /// Pages joined by a form feed line; empty when `text_staged`.
    pub text: String,
    /// Mean over the pages that had text, 0-100.
    pub confidence: f32,
    pub pages: u32,
    pub words: u64,
    pub page_info: Vec<PageInfo>,
    /// The staging folder's name, when anything was staged.
    pub staged: Option<String>,
    pub text_staged: bool,
}

/// What a searchable PDF shows of a page.
#[derive(Debug)]
pub enum Visual {
    /// A JPEG file shown as it is.
    Jpeg {
        data: Vec<u8>,
        width: u32,
        height: u32,
        components: u8,
    },
    Gray(Raster),
    Rgb {
        data: Vec<u8>,
        width: u32,
        height: u32,
    },
    /// A page of a source PDF, `width_pt x height_pt` as displayed: it gets
    /// an invisible text layer when it was OCR'd.
    PdfPage {
        width_pt: f32,
        height_pt: f32,
    },
    /// Nothing to show (Office documents).
    None,
}

/// One page read.
#[derive(Debug)]
pub struct PageOut {
    pub number: u32,
    pub source: PageSource,
    pub text: String,
    pub confidence: f32,
    pub words: u64,
    pub rotation: u16,
    pub layout: Option<PageLayout>,
    pub visual: Visual,
}

impl PageOut {
    fn info(&self) -> PageInfo {
        PageInfo {
            number: self.number,
            source: self.source,
            confidence: self.confidence,
            rotation: self.rotation,
        }
    }
}

/// What a reader made of a task: its pages, and what kind of searchable
/// PDF they make.
#[derive(Debug)]
pub(crate) struct Pages {
    pub pages: Vec<PageOut>,
    pub kind: staging::PdfKind,
}

/// Reads the task on this thread with `engine`.
pub fn read(engine: &mut Engine, req: &ReadRequest) -> Result<ReadOutput, OcrError> {
    read_with(|| Ok(engine), req)
}

/// As [`read`], the engine made only when the file needs one: a file that
/// fails its checks (empty, too large, not a document) or an Office
/// document never loads Tesseract.
pub fn read_with<'a>(
    engine: impl FnOnce() -> Result<&'a mut Engine, OcrError>,
    req: &ReadRequest,
) -> Result<ReadOutput, OcrError> {
    let meta = std::fs::metadata(&req.path).map_err(|e| io_error(&req.path, &e))?;
    if !meta.is_file() {
        return Err(OcrError::new(FailureReason::Unsupported, "not a regular file"));
    }
    if meta.len() == 0 {
        return Err(OcrError::new(FailureReason::Empty, "the file is empty (0 bytes)"));
    }
    if meta.len() > req.max_bytes {
        return Err(OcrError::new(
            FailureReason::TooLarge,
            format!("{} bytes, the limit is {}", meta.len(), req.max_bytes),
        ));
    }
    let bytes = read_for_sniffing(&req.path, req.max_bytes)?;
    let format = sniff_document(&bytes).map_err(|mut e| {
        // NB: formats are known by content; say what the name claimed.
        if e.reason == FailureReason::Unsupported
            && let Some(ext) = req.path.extension().and_then(|e| e.to_str())
        {
            e.message = format!("{} (the name says .{ext})", e.message);
        }
        e
    })?;
    let read = match format {
        DocumentFormat::Pdf => pdf::read(engine()?, req)?,
        DocumentFormat::Office(kind) => office::read(&bytes, kind, req)?,
        DocumentFormat::Image(format) => image::read(engine()?, req, &bytes, format)?,
    };
    finish(req, read)
}

/// The file's bytes as far as reading it needs: a PDF is read by Poppler
/// from its path, so only its first kilobytes are read here; anything else
/// whole, never more than `max_bytes` (a file that grew since it was
/// measured is refused, not read on).
fn read_for_sniffing(path: &Path, max_bytes: u64) -> Result<Vec<u8>, OcrError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| io_error(path, &e))?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(skep_api::formats::PDF_HEADER_WINDOW as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, &e))?;
    if skep_api::formats::is_pdf(&bytes) {
        return Ok(bytes);
    }
    file.take(max_bytes.saturating_sub(bytes.len() as u64) + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, &e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(OcrError::new(
            FailureReason::TooLarge,
            format!("more than {max_bytes} bytes (it grew while it was read)"),
        ));
    }
    Ok(bytes)
}

fn finish(req: &ReadRequest, read: Split) -> Result<ReadOutput, OcrError> {
    let read = match read {
        Split::Split(pages) => return Ok(ReadOutput::Split { pages }),
        Split::Pages(p) => p,
    };
    let with_text: Vec<&PageOut> = read.pages.iter().filter(|p| !p.text.trim().is_empty()).collect();
    let confidence = if with_text.is_empty() {
        0.0
    } else {
        with_text.iter().map(|p| p.confidence).sum::<f32>() / with_text.len() as f32
    };
    let text = read
        .pages
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join("\n\x0c\n");
    let mut result = ReadResult {
        confidence,
        pages: read.pages.len() as u32,
        words: read.pages.iter().map(|p| p.words).sum(),
        page_info: read.pages.iter().map(PageOut::info).collect(),
        staged: None,
        text_staged: false,
        text,
    };
    let long_text = result.text.len() > MAX_INLINE_TEXT;
    if let Some(target) = &req.staging {
        let artefacts: Vec<Artefact> = if req.wants_layout() {
            req.artefacts.clone()
        } else {
            Vec::new()
        };
        if !artefacts.is_empty() || long_text {
            let text = long_text.then_some(result.text.as_str());
            if staging::write(target, &artefacts, &read, text, &req.path, req.deadline)? {
                result.staged = Some(target.name.clone());
                if long_text {
                    result.text_staged = true;
                    result.text = String::new();
                }
            }
        }
    } else if long_text && result.text.len() > 8 * MAX_INLINE_TEXT {
        return Err(OcrError::new(
            FailureReason::TooLarge,
            format!(
                "the text is {} bytes and the task has no staging folder to put it in",
                result.text.len()
            ),
        ));
    }
    Ok(ReadOutput::Read(result))
}

/// A reader's answer: the file should be split, or its pages.
#[derive(Debug)]
pub(crate) enum Split {
    Split(u32),
    Pages(Pages),
}

fn io_error(path: &Path, e: &std::io::Error) -> OcrError {
    let reason = match e.kind() {
        std::io::ErrorKind::NotFound => FailureReason::NotFound,
        _ => FailureReason::Unreadable,
    };
    OcrError::new(reason, format!("{}: {e}", path.display()))
}
