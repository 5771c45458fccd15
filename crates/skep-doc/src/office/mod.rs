//! The text of Office documents: OOXML (docx, xlsx, pptx) and OpenDocument
//! (odt, ods, odp), known by content, read with bounded zip and XML
//! readers.
//!
//! Output, as Apache Tika users expect: a text document is one section of
//! paragraphs one per line and table rows as tab-separated lines; a
//! presentation has a section per slide, a spreadsheet a section per sheet
//! (rows as lines, cells tab-separated). Sections are joined by a form
//! feed line (`"\n\x0c\n"`). What each format leaves out is written at the
//! top of its reader (`docx`, `pptx`, `xlsx`, `odf`, `ods`).
//!
//! Guarantees: every resource a document can make the reader spend is
//! bounded by [`OfficeLimits`] (bytes inflated, counted as they inflate;
//! compression ratio; XML depth, elements and token size; cells; text);
//! no XML entity is expanded and no external resource is read; time is
//! linear in the bytes read. Failures carry a closed reason: `Corrupt`
//! (not a zip, malformed XML, a missing part, a DTD), `TooLarge` (a bound),
//! `Unsupported` (legacy binary formats, xlsb, a zip that is no Office
//! document), `Encrypted` (password protection), `Empty` (zero bytes).

mod archive;
mod cfb;
mod docx;
mod flow;
mod limits;
mod odf;
mod ods;
mod opc;
mod pptx;
mod text;
mod xlsx;
mod xml;

use skep_api::FailureReason;

use self::archive::Archive;
use self::cfb::Compound;
use self::limits::Meter;
pub use self::limits::OfficeLimits;
use self::opc::MainPart;
use self::text::join_sections;
use crate::DocError;

/// Which Office format a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfficeKind {
    Docx,
    Xlsx,
    Pptx,
    Odt,
    Ods,
    Odp,
    /// An OLE compound file: legacy binary doc, xls or ppt (or another
    /// compound file). [`extract_office`] refuses it as `Unsupported`, with
    /// a message saying how to convert it.
    Legacy,
    /// A password-protected OOXML document (a compound file holding
    /// `EncryptionInfo`). [`extract_office`] refuses it as `Encrypted`.
    EncryptedOoxml,
}

/// The text of a document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfficeText {
    /// Sections (slides, sheets; one for a text document) joined by a form
    /// feed line (`"\n\x0c\n"`).
    pub text: String,
    /// Slides of a presentation, sheets of a spreadsheet, 1 for a text
    /// document.
    pub sections: u32,
}

/// What a zip archive is.
enum Package {
    Ooxml(OfficeKind, String),
    Odf(OfficeKind),
    Xlsb,
}

/// The Office format of `bytes`, by content, or `None`. Reads at most the
/// zip directory and one small entry (`mimetype` or
/// `[Content_Types].xml`), under the default limits.
pub fn sniff_office(bytes: &[u8]) -> Option<OfficeKind> {
    if cfb::is_compound(bytes) {
        return Some(match cfb::inspect(bytes) {
            Compound::EncryptedOoxml => OfficeKind::EncryptedOoxml,
            _ => OfficeKind::Legacy,
        });
    }
    if !bytes.starts_with(b"PK\x03\x04") {
        return None;
    }
    let meter = Meter::new(&OfficeLimits::default());
    let mut archive = Archive::open(bytes, &meter).ok()?;
    match package(&mut archive).ok()?? {
        Package::Ooxml(kind, _) | Package::Odf(kind) => Some(kind),
        Package::Xlsb => None,
    }
}

/// Extracts the text of an Office document under `limits`.
pub fn extract_office(bytes: &[u8], limits: &OfficeLimits) -> Result<OfficeText, DocError> {
    if bytes.is_empty() {
        return Err(DocError::new(FailureReason::Empty, "the file is empty"));
    }
    if cfb::is_compound(bytes) {
        return Err(cfb::refusal(bytes));
    }
    let meter = Meter::new(limits);
    let mut archive = Archive::open(bytes, &meter)?;
    let Some(package) = package(&mut archive)? else {
        return Err(DocError::unsupported("a zip archive that is not an Office document"));
    };
    let sections = match package {
        Package::Xlsb => {
            return Err(DocError::unsupported(
                "binary Excel workbooks (xlsb) are not read; save as xlsx first",
            ));
        }
        Package::Ooxml(OfficeKind::Docx, main) => vec![docx::extract(&mut archive, &main)?],
        Package::Ooxml(OfficeKind::Xlsx, main) => xlsx::extract(&mut archive, &main)?,
        Package::Ooxml(OfficeKind::Pptx, main) => pptx::extract(&mut archive, &main)?,
        Package::Odf(kind) => {
            odf::refuse_encrypted(&mut archive)?;
            match kind {
                OfficeKind::Ods => ods::extract(&mut archive)?,
                OfficeKind::Odp => odf::extract_pages(&mut archive)?,
                _ => vec![odf::extract_text(&mut archive)?],
            }
        }
        Package::Ooxml(..) => return Err(DocError::unsupported("not an Office document kind that is read")),
    };
    meter.sections(sections.len())?;
    let count = u32::try_from(sections.len()).unwrap_or(u32::MAX);
    Ok(OfficeText {
        text: join_sections(&meter, sections)?,
        sections: count,
    })
}

/// An ODF package by its `mimetype`, else an OOXML one by its content
/// types; `None` for any other zip.
fn package(archive: &mut Archive<'_>) -> Result<Option<Package>, DocError> {
    if let Some(kind) = odf::kind(archive)? {
        return Ok(Some(Package::Odf(kind)));
    }
    if !opc::has_content_types(archive) {
        return Ok(None);
    }
    Ok(match opc::main_part(archive)? {
        MainPart::Known(kind, main) => Some(Package::Ooxml(kind, main)),
        MainPart::Xlsb => Some(Package::Xlsb),
        MainPart::None => None,
    })
}
