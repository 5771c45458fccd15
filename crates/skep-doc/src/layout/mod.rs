//! The page layout model: what a page holds, as blocks of paragraphs of
//! lines of words, each with a box. OCR'd pages come from Tesseract's TSV
//! ([`from_tesseract_tsv`]); pages with a text layer from Poppler's
//! `pdftotext -bbox-layout` ([`from_pdftotext_bbox`]). Every output format
//! (hOCR, ALTO, TSV, the searchable PDF's text layer) is rendered from it,
//! so they agree with each other whatever the page's origin.
//!
//! Coordinates are pixels of the page at `dpi` (origin top left, y down,
//! `right`/`bottom` exclusive), the frame Tesseract reports in.

use serde::{Deserialize, Serialize};

pub mod alto;
pub mod hocr;
mod pdftotext;
mod tesseract;
pub mod tsv;

pub use pdftotext::from_pdftotext_bbox;
pub use tesseract::from_tesseract_tsv;

/// One page of a document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageLayout {
    /// 1-based page number in the file.
    pub number: u32,
    pub width: u32,
    pub height: u32,
    /// Pixels per inch of the coordinate space.
    pub dpi: u32,
    pub blocks: Vec<Block>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    pub bbox: BBox,
    pub paragraphs: Vec<Paragraph>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Paragraph {
    pub bbox: BBox,
    pub lines: Vec<Line>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Line {
    pub bbox: BBox,
    pub words: Vec<Word>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Word {
    pub bbox: BBox,
    pub text: String,
    /// 0-100; 100 for words taken from a text layer.
    pub confidence: f32,
}

/// A box in page pixels; `right` and `bottom` are exclusive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BBox {
    pub left: u32,
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
}

impl BBox {
    pub fn width(&self) -> u32 {
        self.right.saturating_sub(self.left)
    }

    pub fn height(&self) -> u32 {
        self.bottom.saturating_sub(self.top)
    }
}

impl PageLayout {
    /// Every word of the page in reading order.
    pub fn words(&self) -> impl Iterator<Item = &Word> {
        self.blocks
            .iter()
            .flat_map(|b| &b.paragraphs)
            .flat_map(|p| &p.lines)
            .flat_map(|l| &l.words)
    }

    /// Page width and height in PDF points (1/72 inch).
    pub fn size_points(&self) -> (f32, f32) {
        let dpi = self.dpi.max(1) as f32;
        (self.width as f32 * 72.0 / dpi, self.height as f32 * 72.0 / dpi)
    }
}
