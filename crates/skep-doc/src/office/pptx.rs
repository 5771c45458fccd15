//! PresentationML (pptx, pptm, ppsx, potx): one section per slide, in the
//! order of `presentation.xml`'s slide list (not of the part names).
//!
//! A slide's text is its shapes' paragraphs in shape-tree order (titles
//! are shapes too), a table's rows as tab-separated lines; empty
//! paragraphs are left out, and so are speaker notes, comments, charts,
//! and the text of layouts and masters.

use super::archive::Archive;
use super::flow::{Flow, Kind, Rules, Step, walk};
use super::opc;
use super::xml::{Ev, Ns, Start, Xml};
use crate::DocError;

const RULES: Rules = Rules {
    classify,
    odf_text: false,
};

/// The slides' texts, in presentation order.
pub(crate) fn extract(archive: &mut Archive<'_>, main: &str) -> Result<Vec<String>, DocError> {
    let meter = archive.meter();
    let slide_ids = slide_list(archive, main)?;
    meter.sections(slide_ids.len())?;
    let rels = opc::rels(archive, main, &["slide"])?;
    let mut slides = Vec::with_capacity(slide_ids.len());
    for id in &slide_ids {
        let part = opc::target(&rels, id)
            .ok_or_else(|| DocError::corrupt("presentation lists a slide it does not hold"))?
            .to_owned();
        let entry = archive
            .entry(&part)?
            .ok_or_else(|| DocError::corrupt("presentation lists a slide it does not hold"))?;
        let mut flow = Flow::new(meter, false);
        walk(&mut Xml::new(entry, meter), &mut flow, &mut Vec::new(), &RULES)?;
        slides.push(flow.finish()?);
    }
    Ok(slides)
}

/// The relationship ids of `p:sldIdLst`, in order.
fn slide_list(archive: &mut Archive<'_>, main: &str) -> Result<Vec<String>, DocError> {
    let meter = archive.meter();
    let entry = archive
        .entry(main)?
        .ok_or_else(|| DocError::corrupt("presentation has no main part"))?;
    let mut xml = Xml::new(entry, meter);
    let mut ids = Vec::new();
    loop {
        match xml.next()? {
            Ev::Start(s) if s.is(Ns::P, "sldId") => {
                if let Some(id) = s.attr(Ns::R, "id")? {
                    ids.push(id.into_owned());
                    meter.sections(ids.len())?;
                }
            }
            Ev::Eof => return Ok(ids),
            _ => {}
        }
    }
}

fn classify(s: &Start<'_>) -> Result<Step, DocError> {
    Ok(match s.ns {
        Ns::A => match s.local() {
            "p" => Step::Open(Kind::Para),
            "tr" => Step::Open(Kind::Row(1)),
            "tc" => Step::Open(Kind::Cell(1)),
            "t" => Step::Open(Kind::Text),
            "br" => Step::Insert("\n"),
            "pPr" | "rPr" | "endParaRPr" | "bodyPr" | "lstStyle" | "tblPr" | "tblGrid" | "tcPr" => Step::Skip,
            _ => Step::Open(Kind::Other),
        },
        Ns::P
            if matches!(
                s.local(),
                "nvSpPr" | "nvGrpSpPr" | "nvGraphicFramePr" | "spPr" | "style"
            ) =>
        {
            Step::Skip
        }
        Ns::Mc if s.local() == "Fallback" => Step::Skip,
        _ => Step::Open(Kind::Other),
    })
}
