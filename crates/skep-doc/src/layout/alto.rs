//! ALTO v4 rendering of [`PageLayout`]s: `Description` (pixel units, the
//! source file, skep as the OCR software), then a `Layout` with one `Page`
//! per page, holding a `PrintSpace` of `TextBlock`s (one per paragraph) of
//! `TextLine`s of `String`s with `SP` between them. Word confidence is `WC`
//! in 0-1.
//!
//! A document is [`header`], then [`page`] for each page, then [`footer`]
//! ([`document`] does all three). Ids are derived from the page number
//! (`page_3`, `string_3_17`), so pages rendered by separate calls can be
//! concatenated between one header and footer, and the ids stay unique as
//! long as the page numbers are. The output validates against the ALTO
//! 4.4 schema.

use std::fmt::Write;

use super::hocr::push_escaped;
use super::{BBox, PageLayout};

/// Everything up to and including `<Layout>`.
pub fn header(source_file: &str) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <alto xmlns=\"http://www.loc.gov/standards/alto/ns-v4#\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xsi:schemaLocation=\"http://www.loc.gov/standards/alto/ns-v4# \
         http://www.loc.gov/standards/alto/v4/alto-4-4.xsd\" SCHEMAVERSION=\"4.4\">\n \
         <Description>\n  <MeasurementUnit>pixel</MeasurementUnit>\n  \
         <sourceImageInformation>\n   <fileName>",
    );
    push_escaped(&mut out, source_file);
    out.push_str(
        "</fileName>\n  </sourceImageInformation>\n  \
         <OCRProcessing ID=\"OCR_0\">\n   <ocrProcessingStep>\n    <processingSoftware>\n     \
         <softwareName>skep</softwareName>\n     <softwareVersion>",
    );
    out.push_str(env!("CARGO_PKG_VERSION"));
    out.push_str(
        "</softwareVersion>\n    </processingSoftware>\n   </ocrProcessingStep>\n  \
         </OCRProcessing>\n </Description>\n <Layout>\n",
    );
    out
}

/// One `Page` for `page`.
///
/// Lines without words are left out (ALTO requires a `String` in every
/// `TextLine`), and so are paragraphs with none left.
pub fn page(page: &PageLayout) -> String {
    let n = page.number;
    let (width, height) = (page.width, page.height);
    let mut out = String::new();
    let mut ids = Counters::default();
    let _ = writeln!(
        out,
        "  <Page ID=\"page_{n}\" PHYSICAL_IMG_NR=\"{n}\" WIDTH=\"{width}\" HEIGHT=\"{height}\">\n   \
         <PrintSpace HPOS=\"0\" VPOS=\"0\" WIDTH=\"{width}\" HEIGHT=\"{height}\">"
    );
    let paragraphs = page.blocks.iter().flat_map(|b| &b.paragraphs);
    for paragraph in paragraphs.filter(|p| p.lines.iter().any(|l| !l.words.is_empty())) {
        ids.block += 1;
        let _ = writeln!(
            out,
            "    <TextBlock ID=\"block_{n}_{}\" {}>",
            ids.block,
            position(paragraph.bbox)
        );
        for line in paragraph.lines.iter().filter(|l| !l.words.is_empty()) {
            ids.line += 1;
            let _ = writeln!(
                out,
                "     <TextLine ID=\"line_{n}_{}\" {}>",
                ids.line,
                position(line.bbox)
            );
            let mut previous: Option<BBox> = None;
            for word in &line.words {
                if let Some(before) = previous {
                    let gap_start = before.right.min(word.bbox.left);
                    let _ = writeln!(
                        out,
                        "      <SP HPOS=\"{gap_start}\" VPOS=\"{}\" WIDTH=\"{}\"/>",
                        word.bbox.top,
                        word.bbox.left - gap_start
                    );
                }
                ids.string += 1;
                let _ = write!(out, "      <String ID=\"string_{n}_{}\" CONTENT=\"", ids.string);
                push_escaped(&mut out, &word.text);
                let _ = writeln!(
                    out,
                    "\" {} WC=\"{}\"/>",
                    position(word.bbox),
                    word_confidence(word.confidence)
                );
                previous = Some(word.bbox);
            }
            out.push_str("     </TextLine>\n");
        }
        out.push_str("    </TextBlock>\n");
    }
    out.push_str("   </PrintSpace>\n  </Page>\n");
    out
}

/// Everything after the last page.
pub fn footer() -> &'static str {
    " </Layout>\n</alto>\n"
}

/// A whole ALTO document: [`header`], a [`page`] for each page, [`footer`].
pub fn document(source_file: &str, pages: &[PageLayout]) -> String {
    let mut out = header(source_file);
    for p in pages {
        out.push_str(&page(p));
    }
    out.push_str(footer());
    out
}

#[derive(Default)]
struct Counters {
    block: u32,
    line: u32,
    string: u32,
}

fn position(b: BBox) -> String {
    format!(
        "HPOS=\"{}\" VPOS=\"{}\" WIDTH=\"{}\" HEIGHT=\"{}\"",
        b.left,
        b.top,
        b.width(),
        b.height()
    )
}

/// A 0-100 confidence as ALTO's 0-1 `WC`, two decimals.
fn word_confidence(confidence: f32) -> String {
    let confidence = if confidence.is_nan() {
        0.0
    } else {
        confidence.clamp(0.0, 100.0)
    };
    format!("{:.2}", confidence / 100.0)
}

#[cfg(test)]
mod tests {
    use super::super::{Block, Line, Paragraph, Word, from_tesseract_tsv};
    use super::*;
    use quick_xml::Reader;
    use quick_xml::XmlVersion;
    use quick_xml::escape::resolve_xml_entity;
    use quick_xml::events::Event;
    use std::collections::{HashMap, HashSet};

    const TSV: &str = include_str!("../../tests/fixtures/layout/page-0001.psm6.tsv");

    /// Every element (start or empty) with its attributes, read by a strict
    /// XML parser (which fails the test on ill-formed output).
    fn elements(xml: &str) -> Vec<(String, HashMap<String, String>)> {
        let mut reader = Reader::from_str(xml);
        let mut found = Vec::new();
        loop {
            match reader.read_event().unwrap() {
                Event::Start(e) | Event::Empty(e) => {
                    let attributes = e
                        .attributes()
                        .map(|a| {
                            let a = a.unwrap();
                            let value = a
                                .normalized_value_with(XmlVersion::Implicit1_0, 1, resolve_xml_entity)
                                .unwrap();
                            (a.key.as_ref().to_owned(), value.into_owned())
                        })
                        .collect();
                    found.push((e.name().as_ref().to_owned(), attributes));
                }
                Event::Eof => break,
                _ => {}
            }
        }
        found
    }

    fn strings(xml: &str) -> Vec<HashMap<String, String>> {
        elements(xml)
            .into_iter()
            .filter(|(name, _)| name == "String")
            .map(|(_, a)| a)
            .collect()
    }

    fn tesseract_page() -> PageLayout {
        from_tesseract_tsv(TSV, 1, 1240, 880, 300).unwrap()
    }

    fn one_word_page(number: u32, text: &str, confidence: f32) -> PageLayout {
        let bbox = BBox {
            left: 1,
            top: 2,
            right: 3,
            bottom: 4,
        };
        let word = Word {
            bbox,
            text: text.to_owned(),
            confidence,
        };
        PageLayout {
            number,
            width: 10,
            height: 10,
            dpi: 72,
            blocks: vec![Block {
                bbox,
                paragraphs: vec![Paragraph {
                    bbox,
                    lines: vec![Line {
                        bbox,
                        words: vec![word],
                    }],
                }],
            }],
        }
    }

    #[test]
    fn every_word_of_a_tesseract_page_comes_back_with_its_box() {
        let layout = tesseract_page();
        let alto = document("page-0001.jpg", std::slice::from_ref(&layout));
        let strings = strings(&alto);
        let expected: Vec<&Word> = layout.words().collect();
        assert_eq!(strings.len(), expected.len());
        for (got, want) in strings.iter().zip(expected) {
            assert_eq!(got["CONTENT"], want.text);
            let b = want.bbox;
            let position = [got["HPOS"].as_str(), &got["VPOS"], &got["WIDTH"], &got["HEIGHT"]];
            assert_eq!(position, [b.left, b.top, b.width(), b.height()].map(|v| v.to_string()));
            let wc: f32 = got["WC"].parse().unwrap();
            assert!(
                (wc * 100.0 - want.confidence).abs() <= 0.5,
                "{wc} vs {}",
                want.confidence
            );
        }
    }

    #[test]
    fn spaces_sit_between_the_words_of_a_line() {
        let alto = document("s", &[tesseract_page()]);
        let elements = elements(&alto);
        let names: Vec<&str> = elements.iter().map(|(n, _)| n.as_str()).collect();
        let first_line: Vec<&str> = names
            .iter()
            .skip_while(|n| **n != "TextLine")
            .skip(1)
            .take(17)
            .copied()
            .collect();
        assert_eq!(first_line, ["String", "SP"].repeat(9)[..17].to_vec());
        let sp = &elements.iter().find(|(n, _)| n == "SP").unwrap().1;
        // "Birds" ends at 171, "side" starts at 185.
        assert_eq!((sp["HPOS"].as_str(), sp["WIDTH"].as_str()), ("171", "14"));
        assert_eq!(names.iter().filter(|n| **n == "SP").count(), 111 - 12);
    }

    #[test]
    fn the_description_names_the_source_the_unit_and_skep() {
        let alto = document("scans/a&b.tif", &[]);
        assert!(alto.contains("<alto xmlns=\"http://www.loc.gov/standards/alto/ns-v4#\""));
        assert!(alto.contains("<MeasurementUnit>pixel</MeasurementUnit>"));
        assert!(alto.contains("<fileName>scans/a&amp;b.tif</fileName>"));
        assert!(alto.contains("<softwareName>skep</softwareName>"));
        elements(&alto);
    }

    #[test]
    fn markup_quotes_and_control_characters_are_escaped_or_dropped() {
        let nasty = "a<b>&\"c\"'d'\u{0}\u{1}\u{b}\u{fffe}e\tf\ng";
        let alto = document("x\u{1}\"y\"", &[one_word_page(1, nasty, 50.0)]);
        assert_eq!(strings(&alto)[0]["CONTENT"], "a<b>&\"c\"'d'e\tf\ng");
        assert!(alto.contains("<fileName>x&quot;y&quot;</fileName>"));
        assert!(!alto.contains('\u{0}') && !alto.contains('\u{1}'));
    }

    #[test]
    fn ids_are_unique_across_pages_rendered_separately() {
        let layout = tesseract_page();
        let mut second = layout.clone();
        second.number = 2;
        let alto = format!("{}{}{}{}", header("s"), page(&layout), page(&second), footer());
        assert_eq!(alto, document("s", &[layout, second]));
        let elements = elements(&alto);
        let ids: Vec<&str> = elements
            .iter()
            .filter_map(|(_, a)| a.get("ID").map(String::as_str))
            .collect();
        assert_eq!(
            ids.len(),
            1 + 2 * (1 + 1 + 12 + 111),
            "OCRProcessing, pages, blocks, lines, strings"
        );
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "no id twice");
        let pages: Vec<&HashMap<String, String>> =
            elements.iter().filter(|(n, _)| n == "Page").map(|(_, a)| a).collect();
        assert_eq!(pages[1]["PHYSICAL_IMG_NR"], "2");
        assert_eq!(
            (pages[1]["WIDTH"].as_str(), pages[1]["HEIGHT"].as_str()),
            ("1240", "880")
        );
    }

    #[test]
    fn empty_lines_are_left_out_and_empty_pages_kept() {
        let mut layout = one_word_page(1, "x", 10.0);
        layout.blocks[0].paragraphs[0].lines.insert(0, Line::default());
        layout.blocks.push(Block {
            bbox: BBox::default(),
            paragraphs: vec![Paragraph::default()],
        });
        let alto = document(
            "s",
            &[
                layout,
                PageLayout {
                    number: 2,
                    ..PageLayout::default()
                },
            ],
        );
        let names: Vec<String> = elements(&alto)
            .into_iter()
            .map(|(n, _)| n)
            .skip_while(|n| n != "Layout")
            .collect();
        assert_eq!(
            names,
            [
                "Layout",
                "Page",
                "PrintSpace",
                "TextBlock",
                "TextLine",
                "String",
                "Page",
                "PrintSpace"
            ]
        );
    }

    #[test]
    fn word_confidence_is_0_1_with_two_decimals() {
        for (confidence, expected) in [(96.78491, "0.97"), (-1.0, "0.00"), (250.0, "1.00"), (f32::NAN, "0.00")] {
            assert_eq!(
                strings(&document("s", &[one_word_page(1, "w", confidence)]))[0]["WC"],
                expected
            );
        }
    }
}
