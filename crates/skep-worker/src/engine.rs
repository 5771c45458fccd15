//! One Tesseract engine and how it reads a file. An [`Engine`] is `Send`
//! but not `Sync`: it lives on one thread (see `slot.rs`) and is reused
//! for every file that thread reads, because starting one costs ~130 ms.

use std::ffi::CString;
use std::path::Path;

use leptess::leptonica::{Pix, pix_read_mem};
use leptess::tesseract::{MAX_CREDIBLE_RESOLUTION, MIN_CREDIBLE_RESOLUTION, TessApi};
use skep_api::FailureReason;

use crate::format::{ImageFormat, is_multipage_tiff, sniff};

/// Files larger than this are refused with reason `tooLarge`.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// What an engine is started with: the languages (fixed for the engine's
/// life) and how it reads pages (set per file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Tesseract language string, `eng` or `eng+deu`.
    pub languages: String,
    pub page_seg_mode: u8,
    /// Resolution assumed for images that record none.
    pub dpi: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            languages: "eng".to_owned(),
            page_seg_mode: skep_api::DEFAULT_PAGE_SEG_MODE,
            dpi: skep_api::DEFAULT_DPI,
        }
    }
}

/// The text of one file.
#[derive(Clone, Debug, PartialEq)]
pub struct Recognized {
    /// Pages joined by a form feed line (`"\n\x0c\n"`).
    pub text: String,
    /// Mean Tesseract confidence (0-100) over the pages that had text.
    pub confidence: f32,
    pub pages: u32,
    pub words: u64,
}

/// Why a file could not be read; the job goes on without it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct OcrError {
    pub reason: FailureReason,
    pub message: String,
}

impl OcrError {
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

pub struct Engine {
    api: TessApi,
    languages: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("languages", &self.languages).finish()
    }
}

impl Engine {
    /// Starts Tesseract with `languages` (`eng+deu`); traineddata from
    /// `TESSDATA_PREFIX` or Tesseract's built-in path.
    pub fn new(languages: &str) -> Result<Self, OcrError> {
        if languages.contains('\0') {
            return Err(OcrError::new(FailureReason::Engine, "language string contains NUL"));
        }
        let mut api = TessApi::new(None, languages).map_err(|_| {
            OcrError::new(
                FailureReason::Engine,
                format!(
                    "Tesseract could not start with languages {languages:?}: is their traineddata installed \
                     (Debian: tesseract-ocr-<lang>; or set TESSDATA_PREFIX)?"
                ),
            )
        })?;
        // NB: Tesseract's own diagnostics ("Invalid resolution 0 dpi", ...)
        // would interleave with our logs; results carry what matters.
        let _ = api.raw.set_variable(c"debug_file", c"/dev/null");
        Ok(Self {
            api,
            languages: languages.to_owned(),
        })
    }

    pub fn languages(&self) -> &str {
        &self.languages
    }

    /// Reads and recognises every page of the file at `path`.
    pub fn recognize_file(
        &mut self,
        path: &Path,
        config: &EngineConfig,
        max_bytes: u64,
    ) -> Result<Recognized, OcrError> {
        let meta = std::fs::metadata(path).map_err(|e| io_error(path, &e))?;
        if !meta.is_file() {
            return Err(OcrError::new(FailureReason::Unsupported, "not a regular file"));
        }
        if meta.len() == 0 {
            return Err(OcrError::new(FailureReason::Empty, "the file is empty (0 bytes)"));
        }
        if meta.len() > max_bytes {
            return Err(OcrError::new(
                FailureReason::TooLarge,
                format!("{} bytes, the limit is {max_bytes}", meta.len()),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| io_error(path, &e))?;
        let format = sniff(&bytes)?;
        self.set_page_seg_mode(config.page_seg_mode)?;
        // NB: Leptonica reads the first page of any TIFF from memory; only a
        // multi-page one takes the (file-based) page-by-page path.
        if format == ImageFormat::Tiff && is_multipage_tiff(&bytes) {
            self.recognize_tiff(path, config)
        } else {
            let pix = pix_read_mem(&bytes).map_err(|_| corrupt(format))?;
            let page = self.recognize_pix(&pix, config)?;
            Ok(combine(vec![page]))
        }
    }

    /// Recognises an image held in memory (any format but multi-page TIFF,
    /// of which only the first page is read).
    pub fn recognize_bytes(&mut self, bytes: &[u8], config: &EngineConfig) -> Result<Recognized, OcrError> {
        if bytes.is_empty() {
            return Err(OcrError::new(FailureReason::Empty, "the image is empty (0 bytes)"));
        }
        let format = sniff(bytes)?;
        self.set_page_seg_mode(config.page_seg_mode)?;
        let pix = pix_read_mem(bytes).map_err(|_| corrupt(format))?;
        let page = self.recognize_pix(&pix, config)?;
        Ok(combine(vec![page]))
    }

    fn set_page_seg_mode(&mut self, psm: u8) -> Result<(), OcrError> {
        let value = CString::new(psm.to_string()).map_err(|_| OcrError::new(FailureReason::Engine, "bad psm"))?;
        self.api
            .raw
            .set_variable(c"tessedit_pageseg_mode", &value)
            .map_err(|_| {
                OcrError::new(
                    FailureReason::Engine,
                    format!("Tesseract refused page segmentation mode {psm}"),
                )
            })
    }

    fn recognize_tiff(&mut self, path: &Path, config: &EngineConfig) -> Result<Recognized, OcrError> {
        let c_path = path
            .to_str()
            .and_then(|s| CString::new(s).ok())
            .ok_or_else(|| OcrError::new(FailureReason::Unreadable, "the path is not valid UTF-8"))?;
        let pixa = leptonica_plumbing::Pixa::read_multipage_tiff(&c_path).ok_or_else(|| corrupt(ImageFormat::Tiff))?;
        let count = pixa.get_count();
        if count <= 0 {
            return Err(corrupt(ImageFormat::Tiff));
        }
        let mut pages = Vec::with_capacity(count as usize);
        for i in 0..count {
            let raw = pixa.get_pix_cloned(i).ok_or_else(|| corrupt(ImageFormat::Tiff))?;
            pages.push(self.recognize_pix(&Pix { raw }, config)?);
        }
        Ok(combine(pages))
    }

    fn recognize_pix(&mut self, pix: &Pix, config: &EngineConfig) -> Result<Page, OcrError> {
        if pix.get_w() < 3 || pix.get_h() < 3 {
            return Err(OcrError::new(
                FailureReason::Unsupported,
                format!("image of {}x{} pixels is too small to read", pix.get_w(), pix.get_h()),
            ));
        }
        self.api.set_image(pix);
        let res = self.api.get_source_y_resolution();
        if !(MIN_CREDIBLE_RESOLUTION..=MAX_CREDIBLE_RESOLUTION).contains(&res) {
            self.api.set_source_resolution(config.dpi as i32);
        }
        self.api
            .raw
            .recognize()
            .map_err(|_| OcrError::new(FailureReason::Engine, "Tesseract failed to recognise the page"))?;
        let text = self
            .api
            .raw
            .get_utf8_text()
            .map_err(|_| OcrError::new(FailureReason::Engine, "Tesseract returned no text"))?;
        let text: &std::ffi::CStr = text.as_ref();
        let text = text.to_string_lossy().trim_end().to_owned();
        let confidence = self.api.raw.mean_text_conf();
        Ok(Page { text, confidence })
    }
}

struct Page {
    text: String,
    confidence: i32,
}

fn combine(pages: Vec<Page>) -> Recognized {
    let words = pages.iter().map(|p| p.text.split_whitespace().count() as u64).sum();
    let with_text: Vec<&Page> = pages.iter().filter(|p| !p.text.is_empty()).collect();
    let confidence = if with_text.is_empty() {
        0.0
    } else {
        with_text.iter().map(|p| p.confidence as f32).sum::<f32>() / with_text.len() as f32
    };
    let n = pages.len() as u32;
    let text = pages.into_iter().map(|p| p.text).collect::<Vec<_>>().join("\n\x0c\n");
    Recognized {
        text,
        confidence,
        pages: n,
        words,
    }
}

fn corrupt(format: ImageFormat) -> OcrError {
    OcrError::new(
        FailureReason::Corrupt,
        format!("the {} data could not be decoded", format.name()),
    )
}

fn io_error(path: &Path, e: &std::io::Error) -> OcrError {
    let reason = match e.kind() {
        std::io::ErrorKind::NotFound => FailureReason::NotFound,
        _ => FailureReason::Unreadable,
    };
    OcrError::new(reason, format!("{}: {e}", path.display()))
}
