//! A delivery's artefacts, written by the worker into a folder of its own
//! under the job's staging folder, for the controller to land: the first
//! result the controller accepts for a file has its folder's files moved
//! (renamed) to their final names; the folders of duplicate or failed
//! deliveries are removed. Nothing is ever written under a final name by a
//! worker, so no partial file is visible there.
//!
//! A folder holds, as asked: `out.hocr`, `out.xml` (ALTO) and `out.tsv` —
//! the pages of this task only, without a document header, so that the
//! ranges of a split file are joined in page order by the controller —
//! and `out.pdf` (image inputs: the pages with their text) or `layer.pdf`
//! (PDF inputs: an invisible text layer per page, laid under the source's
//! pages by the controller), and `text.txt` when the text is too long for
//! the result message.
//!
//! The folder is created with `create_dir` and its files with
//! `create_new`, so a planted file or symlink is never followed or
//! overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use skep_api::{Artefact, FailureReason, PageSource, STAGED_TEXT_FILE};
use skep_doc::layout::{PageLayout, alto, hocr, tsv};
use skep_doc::pdf::{ImagePage, LayerPage, PageImage, PdfInfo, image_pdf, text_layer_pdf};

use crate::document::{PageOut, Pages, Visual};
use crate::engine::OcrError;

/// The staged text layer of a PDF input.
pub const LAYER_FILE: &str = skep_api::STAGED_LAYER_FILE;

/// Where a delivery writes: `root/name/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagingTarget {
    /// The job's staging folder (it must exist).
    pub root: PathBuf,
    /// A name unique to this delivery.
    pub name: String,
}

impl StagingTarget {
    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.name)
    }
}

/// What kind of searchable PDF a task's pages make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PdfKind {
    /// Image pages: a PDF of their own (`out.pdf`).
    Images,
    /// Pages of a source PDF: a text layer (`layer.pdf`).
    Layer,
    /// None (Office documents).
    None,
}

/// Writes the artefacts of `read` (and `text`, when given) into the
/// target's folder. Returns whether the folder was made (false when
/// nothing applied, as for hOCR of an Office document).
pub(crate) fn write(
    target: &StagingTarget,
    artefacts: &[Artefact],
    read: &Pages,
    text: Option<&str>,
    source: &Path,
    _deadline: Instant,
) -> Result<bool, OcrError> {
    let image_name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut files: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let has_layout = read.kind != PdfKind::None;
    for artefact in artefacts {
        match artefact {
            Artefact::Hocr if has_layout => {
                let body: String = layouts(read).iter().map(|p| hocr::page(p, &image_name)).collect();
                files.push((Artefact::Hocr.staged_name(), body.into_bytes()));
            }
            Artefact::Alto if has_layout => {
                let body: String = layouts(read).iter().map(alto::page).collect();
                files.push((Artefact::Alto.staged_name(), body.into_bytes()));
            }
            Artefact::Tsv if has_layout => {
                let body: String = layouts(read).iter().map(tsv::page).collect();
                files.push((Artefact::Tsv.staged_name(), body.into_bytes()));
            }
            // NB: a JPEG 2000 page is decoded by Leptonica, whose pixels safe
            // code cannot read: it gets every format but the PDF.
            Artefact::Pdf if read.kind == PdfKind::Images && read.pages.iter().all(|p| has_image(&p.visual)) => {
                files.push((Artefact::Pdf.staged_name(), images_pdf(read, &image_name)?));
            }
            Artefact::Pdf if read.kind == PdfKind::Layer => {
                files.push((LAYER_FILE, layer_pdf(read)?));
            }
            _ => {}
        }
    }
    if let Some(text) = text {
        files.push((STAGED_TEXT_FILE, text.as_bytes().to_vec()));
    }
    if files.is_empty() {
        return Ok(false);
    }
    let mut parts = Path::new(&target.name).components();
    if !matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    ) {
        return Err(OcrError::new(
            FailureReason::Engine,
            format!("staging folder name {:?} is not one plain name", target.name),
        ));
    }
    let dir = target.dir();
    std::fs::create_dir(&dir).map_err(|e| staging_error(&dir, &e))?;
    for (name, bytes) in files {
        let path = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| staging_error(&path, &e))?;
        f.write_all(&bytes).map_err(|e| staging_error(&path, &e))?;
    }
    Ok(true)
}

fn staging_error(path: &Path, e: &std::io::Error) -> OcrError {
    // NB: retryable: a full disk or a staging folder not there yet is not
    // the document's fault.
    OcrError::new(
        FailureReason::Engine,
        format!("cannot write the staging file {}: {e}", path.display()),
    )
}

/// Every page's layout; a page without one (no words found, or no boxes
/// asked for) gets an empty page of its size.
fn layouts(read: &Pages) -> Vec<PageLayout> {
    read.pages
        .iter()
        .map(|p| p.layout.clone().unwrap_or_else(|| empty_layout(p)))
        .collect()
}

fn empty_layout(p: &PageOut) -> PageLayout {
    let dpi = 300;
    let (width, height) = match &p.visual {
        Visual::Jpeg { width, height, .. } | Visual::Rgb { width, height, .. } => (*width, *height),
        Visual::Gray(r) => (r.width, r.height),
        Visual::PdfPage { width_pt, height_pt } => (
            (width_pt * dpi as f32 / 72.0).round() as u32,
            (height_pt * dpi as f32 / 72.0).round() as u32,
        ),
        Visual::None => (0, 0),
    };
    PageLayout {
        number: p.number,
        width,
        height,
        dpi,
        blocks: Vec::new(),
    }
}

fn has_image(v: &Visual) -> bool {
    matches!(v, Visual::Jpeg { .. } | Visual::Gray(_) | Visual::Rgb { .. })
}

fn images_pdf(read: &Pages, title: &str) -> Result<Vec<u8>, OcrError> {
    let layouts = layouts(read);
    let mut pages = Vec::with_capacity(read.pages.len());
    for (p, layout) in read.pages.iter().zip(&layouts) {
        let image = match &p.visual {
            Visual::Jpeg {
                data,
                width,
                height,
                components,
            } => PageImage::Jpeg {
                data,
                width: *width,
                height: *height,
                components: *components,
            },
            Visual::Gray(r) => PageImage::Gray8 {
                data: &r.data,
                width: r.width,
                height: r.height,
            },
            Visual::Rgb { data, width, height } => PageImage::Rgb8 {
                data,
                width: *width,
                height: *height,
            },
            Visual::PdfPage { .. } | Visual::None => {
                return Err(OcrError::new(
                    FailureReason::Engine,
                    format!("page {} has no image to put in a PDF", p.number),
                ));
            }
        };
        pages.push(ImagePage { image, layout });
    }
    let info = PdfInfo {
        title: Some(title),
        producer: "skep",
    };
    Ok(image_pdf(&pages, &info)?)
}

fn layer_pdf(read: &Pages) -> Result<Vec<u8>, OcrError> {
    let pages: Vec<LayerPage<'_>> = read
        .pages
        .iter()
        .map(|p| {
            let (mut width_pt, mut height_pt) = match &p.visual {
                Visual::PdfPage { width_pt, height_pt } => (*width_pt, *height_pt),
                _ => (612.0, 792.0),
            };
            // NB: a page OCR'd after being turned is read in the turned
            // frame; the controller turns the output page to match.
            if p.rotation % 180 == 90 {
                std::mem::swap(&mut width_pt, &mut height_pt);
            }
            LayerPage {
                width_pt,
                height_pt,
                // NB: text-layer pages already have their text; only OCR'd
                // pages get an invisible one.
                layout: (p.source == PageSource::Ocr).then_some(p.layout.as_ref()).flatten(),
            }
        })
        .collect();
    let info = PdfInfo {
        title: None,
        producer: "skep",
    };
    Ok(text_layer_pdf(&pages, &info)?)
}
