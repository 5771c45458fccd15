//! One Tesseract engine and how it reads a page. An [`Engine`] is `Send`
//! but not `Sync`: it lives on one thread (see `slot.rs`) and is reused
//! for every page that thread reads, because starting one costs ~130 ms.
//!
//! Orientation: a page is first read as it is. Only when that reading is
//! poor (low mean confidence) and the job asks for `autoRotate` is
//! Tesseract's orientation detection run (page segmentation mode 1, on a
//! half-size copy of large pages); if it finds the text turned, the page
//! is turned upright and read again, and the better reading wins. Pages
//! scanned the right way up, nearly all of them, cost nothing extra.

use std::ffi::CString;
use std::path::Path;

use leptess::leptonica::Pix;
use leptess::tesseract::{MAX_CREDIBLE_RESOLUTION, MIN_CREDIBLE_RESOLUTION, TessApi};
use skep_api::{FailureReason, PdfMode};
use skep_doc::layout::{PageLayout, from_tesseract_tsv};

use crate::raster::Raster;

/// Files larger than this are refused with reason `tooLarge`.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;
/// A reading whose mean confidence is below this is checked for a page
/// turned sideways or upside down (when `autoRotate` is on). Upright pages
/// of the test corpus read at 85-96; the same pages turned 90 or 180
/// degrees read at 20-55.
pub const ROTATION_CHECK_BELOW: f32 = 70.0;
/// Orientation detection reads pages above this many pixels at half size.
const OSD_HALF_SIZE_ABOVE: u64 = 4_000_000;

/// How the engine reads pages: the languages (fixed for an engine's life)
/// and the per-task options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Tesseract language string, `eng` or `eng+deu`.
    pub languages: String,
    pub page_seg_mode: u8,
    /// Resolution assumed for images that record none, and the one PDF
    /// pages are rasterised at.
    pub dpi: u32,
    /// How PDF pages are read.
    pub pdf: PdfMode,
    /// Turn sideways and upside-down pages before reading them.
    pub auto_rotate: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            languages: "eng".to_owned(),
            page_seg_mode: skep_api::DEFAULT_PAGE_SEG_MODE,
            dpi: skep_api::DEFAULT_DPI,
            pdf: PdfMode::Auto,
            auto_rotate: true,
        }
    }
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

impl From<skep_doc::DocError> for OcrError {
    fn from(e: skep_doc::DocError) -> Self {
        Self::new(e.reason, e.message)
    }
}

impl From<skep_doc::process::RunError> for OcrError {
    fn from(e: skep_doc::process::RunError) -> Self {
        Self::new(e.reason(), e.to_string())
    }
}

/// A page to read.
#[derive(Clone, Copy)]
pub enum PageImage<'a> {
    Gray(&'a Raster),
    /// Decoded by Leptonica (JPEG 2000): read as it is, never turned.
    Pix(&'a Pix),
}

impl std::fmt::Debug for PageImage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageImage::Gray(r) => f.debug_tuple("Gray").field(r).finish(),
            PageImage::Pix(p) => write!(f, "Pix({}x{})", p.get_w(), p.get_h()),
        }
    }
}

/// What Tesseract made of one page.
#[derive(Clone, Debug, PartialEq)]
pub struct PageOcr {
    pub text: String,
    /// Mean word confidence, 0-100.
    pub confidence: f32,
    pub words: u64,
    /// Clockwise degrees the page was turned before this reading.
    pub rotation: u16,
    /// Blocks, lines and words with boxes, in the frame of the page as
    /// read (turned, when `rotation` is not 0); when asked for.
    pub layout: Option<PageLayout>,
    /// The turned page, when it was turned.
    pub turned: Option<Raster>,
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

    /// Reads one page (page `number` of its file). With `layout`, the
    /// words come back with their boxes too.
    pub fn read_page(
        &mut self,
        page: PageImage<'_>,
        number: u32,
        config: &EngineConfig,
        layout: bool,
    ) -> Result<PageOcr, OcrError> {
        let first = self.read_as_is(page, number, config, config.page_seg_mode, layout)?;
        let PageImage::Gray(raster) = page else {
            return Ok(first);
        };
        if !config.auto_rotate || first.confidence >= ROTATION_CHECK_BELOW {
            return Ok(first);
        }
        let angle = self.detect_rotation(raster, config)?;
        if angle == 0 {
            return Ok(first);
        }
        let turned = raster.rotated(angle);
        let mut second = self.read_as_is(PageImage::Gray(&turned), number, config, config.page_seg_mode, layout)?;
        if second.confidence <= first.confidence {
            return Ok(first);
        }
        second.rotation = angle;
        second.turned = Some(turned);
        Ok(second)
    }

    fn read_as_is(
        &mut self,
        page: PageImage<'_>,
        number: u32,
        config: &EngineConfig,
        psm: u8,
        layout: bool,
    ) -> Result<PageOcr, OcrError> {
        self.set_page_seg_mode(psm)?;
        let (width, height) = match page {
            PageImage::Gray(r) => (r.width, r.height),
            PageImage::Pix(p) => (p.get_w(), p.get_h()),
        };
        if width < 3 || height < 3 {
            return Err(OcrError::new(
                FailureReason::Unsupported,
                format!("image of {width}x{height} pixels is too small to read"),
            ));
        }
        let dpi = match page {
            PageImage::Gray(r) => {
                self.api
                    .raw
                    .set_image(&r.data, width as i32, height as i32, 1, width as i32)
                    .map_err(|_| OcrError::new(FailureReason::Engine, "Tesseract refused the page image"))?;
                let dpi = r.dpi.unwrap_or(config.dpi);
                self.api.set_source_resolution(dpi as i32);
                dpi
            }
            PageImage::Pix(pix) => {
                self.api.set_image(pix);
                let res = self.api.get_source_y_resolution();
                if (MIN_CREDIBLE_RESOLUTION..=MAX_CREDIBLE_RESOLUTION).contains(&res) {
                    res as u32
                } else {
                    self.api.set_source_resolution(config.dpi as i32);
                    config.dpi
                }
            }
        };
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
        let confidence = self.api.raw.mean_text_conf().clamp(0, 100) as f32;
        let layout = if layout {
            let tsv = self
                .api
                .raw
                .get_tsv_text(0)
                .map_err(|_| OcrError::new(FailureReason::Engine, "Tesseract returned no word boxes"))?;
            let tsv: &std::ffi::CStr = tsv.as_ref();
            Some(from_tesseract_tsv(&tsv.to_string_lossy(), number, width, height, dpi)?)
        } else {
            None
        };
        Ok(PageOcr {
            words: text.split_whitespace().count() as u64,
            text,
            confidence,
            rotation: 0,
            layout,
            turned: None,
        })
    }

    /// Clockwise degrees that turn the page upright, by Tesseract's
    /// orientation detection (0 when it finds none, or is not installed).
    fn detect_rotation(&mut self, raster: &Raster, config: &EngineConfig) -> Result<u16, OcrError> {
        let small;
        let probe = if u64::from(raster.width) * u64::from(raster.height) > OSD_HALF_SIZE_ABOVE {
            small = half_size(raster);
            &small
        } else {
            raster
        };
        // NB: mode 1 is automatic layout analysis after orientation and
        // script detection; the hOCR of its lines carries `textangle` when
        // a block's text is not upright.
        self.set_page_seg_mode(1)?;
        let config = EngineConfig {
            dpi: probe.dpi.unwrap_or(config.dpi),
            ..config.clone()
        };
        self.api
            .raw
            .set_image(
                &probe.data,
                probe.width as i32,
                probe.height as i32,
                1,
                probe.width as i32,
            )
            .map_err(|_| OcrError::new(FailureReason::Engine, "Tesseract refused the page image"))?;
        self.api.set_source_resolution(config.dpi as i32);
        if self.api.raw.recognize().is_err() {
            return Ok(0);
        }
        let Ok(hocr) = self.api.raw.get_hocr_text(0) else {
            return Ok(0);
        };
        let hocr: &std::ffi::CStr = hocr.as_ref();
        Ok(majority_textangle(&hocr.to_string_lossy()))
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

    /// Reads a whole file (every page of a PDF or multi-page TIFF, the text
    /// of an Office document) with no artefacts: the simple form of a task,
    /// for tools and tests.
    pub fn recognize_file(
        &mut self,
        path: &Path,
        config: &EngineConfig,
        max_bytes: u64,
    ) -> Result<Recognized, OcrError> {
        let request = crate::document::ReadRequest::whole_file(path, config.clone(), max_bytes);
        match crate::document::read(self, &request)? {
            crate::document::ReadOutput::Read(r) => Ok(Recognized {
                text: r.text,
                confidence: r.confidence,
                pages: r.pages,
                words: r.words,
            }),
            crate::document::ReadOutput::Split { pages } => Err(OcrError::new(
                FailureReason::Engine,
                format!("{pages} pages is more than one task reads"),
            )),
        }
    }
}

/// The text of one file.
#[derive(Clone, Debug, PartialEq)]
pub struct Recognized {
    /// Pages joined by a form feed line (`"\n\x0c\n"`).
    pub text: String,
    /// Mean confidence (0-100) over the pages that had text.
    pub confidence: f32,
    pub pages: u32,
    pub words: u64,
}

/// The clockwise turn most of the hOCR's lines ask for: a line's
/// `textangle A` says its text runs A degrees counter-clockwise from
/// upright, so turning the page A degrees clockwise sets it upright.
fn majority_textangle(hocr: &str) -> u16 {
    let mut votes = [0usize; 4];
    for line in hocr.split("class='ocr_line'").skip(1) {
        let title = line.split('>').next().unwrap_or_default();
        let angle = title
            .split(';')
            .find_map(|p| p.trim().strip_prefix("textangle "))
            .and_then(|a| a.trim().trim_end_matches(['"', '\'']).parse::<u16>().ok())
            .unwrap_or(0);
        votes[usize::from(angle / 90) % 4] += 1;
    }
    let (best, n) = votes
        .iter()
        .enumerate()
        .max_by_key(|(_, n)| **n)
        .map(|(i, n)| (i, *n))
        .unwrap_or((0, 0));
    if n == 0 { 0 } else { best as u16 * 90 }
}

/// The raster at half its width and height (2x2 means).
fn half_size(r: &Raster) -> Raster {
    let (w, h) = ((r.width / 2).max(1), (r.height / 2).max(1));
    let src_w = r.width as usize;
    let mut data = Vec::with_capacity(w as usize * h as usize);
    for y in 0..h as usize {
        for x in 0..w as usize {
            let at = |dx: usize, dy: usize| -> u16 {
                let (sx, sy) = (
                    (2 * x + dx).min(r.width as usize - 1),
                    (2 * y + dy).min(r.height as usize - 1),
                );
                u16::from(r.data[sy * src_w + sx])
            };
            data.push(((at(0, 0) + at(1, 0) + at(0, 1) + at(1, 1)) / 4) as u8);
        }
    }
    Raster {
        width: w,
        height: h,
        data,
        dpi: r.dpi.map(|d| (d / 2).max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textangle_votes() {
        let hocr = "<span class='ocr_line' id='l1' title=\"bbox 1 2 3 4; textangle 90; x_size 3\">\
                    <span class='ocr_line' id='l2' title=\"bbox 1 2 3 4; textangle 90\">\
                    <span class='ocr_line' id='l3' title=\"bbox 1 2 3 4; baseline 0 0\">";
        assert_eq!(majority_textangle(hocr), 90);
        assert_eq!(majority_textangle("<div class='ocr_page'></div>"), 0);
        let upside = "<span class='ocr_line' title=\"bbox 0 0 1 1; textangle 180\">";
        assert_eq!(majority_textangle(upside), 180);
    }

    #[test]
    fn half_size_averages() {
        let r = Raster {
            width: 4,
            height: 2,
            data: vec![0, 100, 200, 200, 100, 200, 0, 0],
            dpi: Some(300),
        };
        let h = half_size(&r);
        assert_eq!((h.width, h.height, h.dpi), (2, 1, Some(150)));
        assert_eq!(h.data, vec![100, 100]);
    }
}
