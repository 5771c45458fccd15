//! OpenDocument packages (odt, ods, odp): the `mimetype` entry, the
//! manifest's encryption marker, and flowing text (odt, odp).
//!
//! odt: the body of `content.xml` in reading order, as for docx (headings
//! and paragraphs one per line, lists as their items, tables row by row,
//! frames after their anchor paragraph, notes after the body; headers and
//! footers live in `styles.xml` and are left out, so are annotations and
//! tracked deletions). odp: one section per `draw:page`, shapes in
//! document order, empty paragraphs and speaker notes left out.
//! White space follows ODF's rules (runs collapse to one space, `text:s`
//! spaces are kept).

use super::OfficeKind;
use super::archive::Archive;
use super::flow::{Flow, Kind, Rules, Step, walk};
use super::xml::{Ev, Ns, Start, Xml};
use crate::DocError;
use skep_api::FailureReason;

const MIMETYPE: &str = "mimetype";
const MANIFEST: &str = "META-INF/manifest.xml";
pub(crate) const CONTENT: &str = "content.xml";

/// The kind named by the package's `mimetype` entry; `None` if it has
/// none or names another kind (drawing, formula, ...).
pub(crate) fn kind(archive: &mut Archive<'_>) -> Result<Option<OfficeKind>, DocError> {
    let Some(bytes) = archive.read_small(MIMETYPE, 256)? else {
        return Ok(None);
    };
    let mime = String::from_utf8_lossy(&bytes);
    let Some(sub) = mime.trim().strip_prefix("application/vnd.oasis.opendocument.") else {
        return Ok(None);
    };
    Ok(match sub {
        "text" | "text-template" | "text-master" => Some(OfficeKind::Odt),
        "spreadsheet" | "spreadsheet-template" => Some(OfficeKind::Ods),
        "presentation" | "presentation-template" => Some(OfficeKind::Odp),
        _ => None,
    })
}

/// Fails with `Encrypted` if the manifest has `manifest:encryption-data`
/// (the parts are then encrypted with a password).
pub(crate) fn refuse_encrypted(archive: &mut Archive<'_>) -> Result<(), DocError> {
    let meter = archive.meter();
    let Some(entry) = archive.entry(MANIFEST)? else {
        return Ok(());
    };
    let mut xml = Xml::new(entry, meter);
    loop {
        match xml.next()? {
            Ev::Start(s) if s.is(Ns::Manifest, "encryption-data") => {
                return Err(DocError::new(
                    FailureReason::Encrypted,
                    "password-protected OpenDocument file",
                ));
            }
            Ev::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// The text of an odt.
pub(crate) fn extract_text(archive: &mut Archive<'_>) -> Result<String, DocError> {
    let meter = archive.meter();
    let entry = content(archive)?;
    let mut flow = Flow::new(meter, true);
    let rules = Rules {
        classify: classify_text,
        odf_text: true,
    };
    walk(&mut Xml::new(entry, meter), &mut flow, &mut Vec::new(), &rules)?;
    flow.finish()
}

/// The pages' texts of an odp.
pub(crate) fn extract_pages(archive: &mut Archive<'_>) -> Result<Vec<String>, DocError> {
    let meter = archive.meter();
    let entry = content(archive)?;
    let mut flow = Flow::new(meter, false);
    let rules = Rules {
        classify: classify_pages,
        odf_text: true,
    };
    let mut pages = Vec::new();
    walk(&mut Xml::new(entry, meter), &mut flow, &mut pages, &rules)?;
    Ok(pages)
}

pub(crate) fn content<'z, 'a>(archive: &'z mut Archive<'a>) -> Result<super::archive::Entry<'z, 'a>, DocError> {
    archive
        .entry(CONTENT)?
        .ok_or_else(|| DocError::corrupt("OpenDocument file has no content.xml"))
}

/// An ODF repeat count attribute: at least 1.
pub(crate) fn repeat(s: &Start<'_>, local: &str) -> Result<u64, DocError> {
    Ok(s.attr(Ns::Table, local)?
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1)
        .max(1))
}

fn classify_pages(s: &Start<'_>) -> Result<Step, DocError> {
    if s.is(Ns::Draw, "page") {
        return Ok(Step::Open(Kind::Section));
    }
    classify_text(s)
}

fn classify_text(s: &Start<'_>) -> Result<Step, DocError> {
    Ok(match s.ns {
        Ns::Text => match s.local() {
            "p" | "h" => Step::Open(Kind::Para),
            "s" => Step::Spaces(
                s.attr(Ns::Text, "c")?
                    .and_then(|c| c.trim().parse::<u64>().ok())
                    .unwrap_or(1),
            ),
            "tab" => Step::Insert("\t"),
            "line-break" => Step::Insert("\n"),
            "note-body" => Step::Open(Kind::Deferred),
            "note-citation"
            | "tracked-changes"
            | "ruby-text"
            | "sequence-decls"
            | "variable-decls"
            | "user-field-decls"
            | "dde-connection-decls" => Step::Skip,
            // Index templates (`text:table-of-content-source`, ...).
            local if local.ends_with("-source") => Step::Skip,
            _ => Step::Open(Kind::Other),
        },
        Ns::Table => match s.local() {
            "table-row" => Step::Open(Kind::Row(repeat(s, "number-rows-repeated")?)),
            "table-cell" | "covered-table-cell" => Step::Open(Kind::Cell(repeat(s, "number-columns-repeated")?)),
            "table-column" => Step::Skip,
            _ => Step::Open(Kind::Other),
        },
        Ns::Office
            if matches!(
                s.local(),
                "annotation"
                    | "annotation-end"
                    | "forms"
                    | "event-listeners"
                    | "scripts"
                    | "font-face-decls"
                    | "automatic-styles"
            ) =>
        {
            Step::Skip
        }
        Ns::Presentation if s.local() == "notes" => Step::Skip,
        Ns::Svg if matches!(s.local(), "title" | "desc") => Step::Skip,
        _ => Step::Open(Kind::Other),
    })
}
