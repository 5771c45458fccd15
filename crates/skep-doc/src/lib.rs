//! Document formats without OCR, shared by the worker (which makes
//! per-page artefacts) and the controller (which lands them):
//!
//! - [`layout`]: the page layout model (blocks, paragraphs, lines, words
//!   with boxes), read from Tesseract's TSV or Poppler's `-bbox-layout`
//!   output, and rendered as hOCR, ALTO v4 and TSV;
//! - [`pdf`]: searchable PDFs: an invisible text layer for existing pages,
//!   and image pages with a text layer;
//! - [`office`]: the text of Office documents (OOXML and OpenDocument),
//!   bounded against zip bombs and XML tricks;
//! - [`process`]: helper processes (Poppler, qpdf) bounded in time, memory
//!   and output.
//!
//! Nothing here links Tesseract.

mod error;
pub mod layout;
pub mod office;
pub mod pdf;
pub mod process;

pub use error::DocError;
