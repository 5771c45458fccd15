//! Office documents: their text, one "page" per section (a slide, a
//! sheet; one for a text document). They have no page images, so no
//! layout artefacts (hOCR, ALTO, TSV, PDF) are made for them.

use skep_api::{FailureReason, PageSource};
use skep_doc::office::{OfficeKind, OfficeLimits, extract_office};

use super::{PageOut, Pages, ReadRequest, Split, Visual};
use crate::engine::OcrError;
use crate::staging::PdfKind;

pub(super) fn read(bytes: &[u8], _kind: OfficeKind, req: &ReadRequest) -> Result<Split, OcrError> {
    if let Some(r) = req.pages
        && (r.first != 1 || r.last != 1)
    {
        return Err(OcrError::new(
            FailureReason::Corrupt,
            format!("pages {r} asked for, but an Office document is read whole"),
        ));
    }
    let doc = extract_office(bytes, &OfficeLimits::default())?;
    let sections: Vec<&str> = doc.text.split("\n\x0c\n").collect();
    let pages = sections
        .iter()
        .enumerate()
        .map(|(i, text)| PageOut {
            number: i as u32 + 1,
            source: PageSource::Text,
            text: (*text).to_owned(),
            confidence: 100.0,
            words: text.split_whitespace().count() as u64,
            rotation: 0,
            layout: None,
            visual: Visual::None,
        })
        .collect();
    Ok(Split::Pages(Pages {
        pages,
        kind: PdfKind::None,
    }))
}
