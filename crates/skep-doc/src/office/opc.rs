//! The OOXML package (Open Packaging Conventions): which main part a
//! package names in `[Content_Types].xml`, and the relationships of a part.

use super::OfficeKind;
use super::archive::Archive;
use super::xml::{Ev, Ns, Xml};
use crate::DocError;

const CONTENT_TYPES: &str = "[Content_Types].xml";

/// Main-part content types (without `+xml`), lowercased.
const MAIN_TYPES: &[(&str, OfficeKind)] = &[
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main",
        OfficeKind::Docx,
    ),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main",
        OfficeKind::Docx,
    ),
    ("application/vnd.ms-word.document.macroenabled.main", OfficeKind::Docx),
    (
        "application/vnd.ms-word.template.macroenabledtemplate.main",
        OfficeKind::Docx,
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main",
        OfficeKind::Xlsx,
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main",
        OfficeKind::Xlsx,
    ),
    ("application/vnd.ms-excel.sheet.macroenabled.main", OfficeKind::Xlsx),
    ("application/vnd.ms-excel.template.macroenabled.main", OfficeKind::Xlsx),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation.main",
        OfficeKind::Pptx,
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main",
        OfficeKind::Pptx,
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.template.main",
        OfficeKind::Pptx,
    ),
    (
        "application/vnd.ms-powerpoint.presentation.macroenabled.main",
        OfficeKind::Pptx,
    ),
    (
        "application/vnd.ms-powerpoint.slideshow.macroenabled.main",
        OfficeKind::Pptx,
    ),
    (
        "application/vnd.ms-powerpoint.template.macroenabled.main",
        OfficeKind::Pptx,
    ),
];

/// The binary workbook (xlsb), known but not read.
const XLSB_TYPE: &str = "application/vnd.ms-excel.sheet.binary.macroenabled.main";

/// What `[Content_Types].xml` says the package is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MainPart {
    /// A format read here, and its main part's name (no leading `/`).
    Known(OfficeKind, String),
    Xlsb,
    /// Content types that name no main part of a known format.
    None,
}

pub(crate) fn has_content_types(archive: &Archive<'_>) -> bool {
    archive.contains(CONTENT_TYPES)
}

/// Reads `[Content_Types].xml` for the first `Override` whose content
/// type is a main part.
pub(crate) fn main_part(archive: &mut Archive<'_>) -> Result<MainPart, DocError> {
    let meter = archive.meter();
    let Some(entry) = archive.entry(CONTENT_TYPES)? else {
        return Ok(MainPart::None);
    };
    let mut xml = Xml::new(entry, meter);
    loop {
        let found = match xml.next()? {
            Ev::Start(s) if s.is(Ns::ContentTypes, "Override") => {
                let content_type = s
                    .attr(Ns::None, "ContentType")?
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let base = content_type.strip_suffix("+xml").unwrap_or(&content_type);
                if base == XLSB_TYPE {
                    Some(MainPart::Xlsb)
                } else if let Some((_, kind)) = MAIN_TYPES.iter().find(|(t, _)| *t == base) {
                    let name = s.attr(Ns::None, "PartName")?.unwrap_or_default();
                    Some(MainPart::Known(*kind, part_name(&name)))
                } else {
                    None
                }
            }
            Ev::Eof => return Ok(MainPart::None),
            _ => None,
        };
        if let Some(found) = found {
            return Ok(found);
        }
    }
}

/// One relationship of a part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rel {
    pub id: String,
    /// The last segment of the relationship type URI (`slide`,
    /// `worksheet`, `sharedStrings`, `footnotes`, ...), which is the same
    /// in transitional and strict OOXML.
    pub kind: String,
    /// The target part's name (no leading `/`); `None` for an external
    /// target or one that leaves the package.
    pub target: Option<String>,
}

/// The relationships of `part` (`dir/_rels/name.rels`) whose kind is one
/// of `kinds`; none if the package has no such part. At most
/// `max_sections` + 16 are kept (a workbook or presentation lists one per
/// sheet or slide), more fail with `TooLarge`.
pub(crate) fn rels(archive: &mut Archive<'_>, part: &str, kinds: &[&str]) -> Result<Vec<Rel>, DocError> {
    let (dir, file) = part.rsplit_once('/').unwrap_or(("", part));
    let rels_name = if dir.is_empty() {
        format!("_rels/{file}.rels")
    } else {
        format!("{dir}/_rels/{file}.rels")
    };
    let meter = archive.meter();
    let Some(entry) = archive.entry(&rels_name)? else {
        return Ok(Vec::new());
    };
    let mut xml = Xml::new(entry, meter);
    let mut rels = Vec::new();
    loop {
        match xml.next()? {
            Ev::Start(s) if s.is(Ns::PkgRel, "Relationship") => {
                let id = s.attr(Ns::None, "Id")?.unwrap_or_default().into_owned();
                let kind = s.attr(Ns::None, "Type")?.unwrap_or_default();
                let kind = kind.rsplit('/').next().unwrap_or_default();
                if !kinds.contains(&kind) {
                    continue;
                }
                let kind = kind.to_owned();
                let external = s
                    .attr(Ns::None, "TargetMode")?
                    .is_some_and(|m| m.eq_ignore_ascii_case("external"));
                let target = s.attr(Ns::None, "Target")?.unwrap_or_default();
                let target = if external { None } else { resolve(dir, &target) };
                rels.push(Rel { id, kind, target });
                if rels.len() > meter.limits.max_sections.saturating_add(16) {
                    return Err(DocError::too_large(format!(
                        "a part has more than {} relationships",
                        meter.limits.max_sections.saturating_add(16)
                    )));
                }
            }
            Ev::Eof => return Ok(rels),
            _ => {}
        }
    }
}

/// The target of the relationship `id`.
pub(crate) fn target<'r>(rels: &'r [Rel], id: &str) -> Option<&'r str> {
    rels.iter().find(|r| r.id == id).and_then(|r| r.target.as_deref())
}

/// A part name from `[Content_Types].xml` as an archive entry name.
fn part_name(name: &str) -> String {
    percent_decode(name.trim_start_matches('/'))
}

/// Resolves a relationship target against the directory of its source
/// part: absolute targets start at the package root; `.` and `..` are
/// followed; a target above the root is `None`.
fn resolve(base_dir: &str, target: &str) -> Option<String> {
    let target = target.split('#').next().unwrap_or_default();
    let (start, rest) = match target.strip_prefix('/') {
        Some(abs) => ("", abs),
        None => (base_dir, target),
    };
    let mut segments: Vec<&str> = start.split('/').filter(|s| !s.is_empty()).collect();
    for segment in rest.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop()?;
            }
            s => segments.push(s),
        }
    }
    Some(percent_decode(&segments.join("/")))
}

/// Decodes `%XX` escapes (part names are URIs); invalid escapes and
/// non-UTF-8 results leave the name as it was.
fn percent_decode(name: &str) -> String {
    if !name.contains('%') {
        return name.to_owned();
    }
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_resolve_against_the_source_directory() {
        assert_eq!(
            resolve("ppt", "slides/slide1.xml").as_deref(),
            Some("ppt/slides/slide1.xml")
        );
        assert_eq!(
            resolve("xl", "/xl/worksheets/s.xml").as_deref(),
            Some("xl/worksheets/s.xml")
        );
        assert_eq!(
            resolve("ppt/slides", "../media/a%20b.png").as_deref(),
            Some("ppt/media/a b.png")
        );
        assert_eq!(resolve("", "word/document.xml").as_deref(), Some("word/document.xml"));
        assert_eq!(resolve("xl", "../../etc/passwd"), None);
    }

    #[test]
    fn percent_decoding_leaves_bad_escapes() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("a%zz%41"), "a%zzA");
        assert_eq!(percent_decode("%FF"), "%FF");
    }
}
