//! hOCR rendering of [`PageLayout`]s, shaped like Tesseract's: an XHTML
//! document whose body holds one `ocr_page` per page, with `ocr_carea`,
//! `ocr_par`, `ocr_line` and `ocrx_word` elements carrying `bbox` (and
//! `x_wconf` on words) in their `title`.
//!
//! A document is [`header`], then [`page`] for each page, then [`footer`]
//! ([`document`] does all three). Ids are derived from the page number
//! (`page_3`, `word_3_17`), so pages rendered by separate calls can be
//! concatenated between one header and footer, and the ids stay unique as
//! long as the page numbers are.

use std::fmt::Write;

use super::{BBox, PageLayout};

/// Everything up to and including `<body>`.
pub fn header(title: &str) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n    \
         \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n\
         <html xmlns=\"http://www.w3.org/1999/xhtml\">\n <head>\n  <title>",
    );
    push_escaped(&mut out, title);
    out.push_str(
        "</title>\n  \
         <meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\"/>\n  \
         <meta name=\"ocr-system\" content=\"skep\"/>\n  \
         <meta name=\"ocr-capabilities\" content=\"ocr_page ocr_carea ocr_par ocr_line ocrx_word ocrp_wconf\"/>\n \
         </head>\n <body>\n",
    );
    out
}

/// One `ocr_page` for `page`, whose image file is `image`.
///
/// Lines without words are left out, and so are paragraphs and blocks
/// with none left.
pub fn page(page: &PageLayout, image: &str) -> String {
    let n = page.number;
    let mut out = String::new();
    let mut ids = Counters::default();
    out.push_str("  <div class=\"ocr_page\" id=\"page_");
    let _ = write!(out, "{n}\" title=\"image &quot;");
    push_escaped(&mut out, &quote_property(image));
    let _ = writeln!(
        out,
        "&quot;; bbox 0 0 {} {}; ppageno {}; scan_res {} {}\">",
        page.width,
        page.height,
        n.saturating_sub(1),
        page.dpi,
        page.dpi
    );
    for block in page
        .blocks
        .iter()
        .filter(|b| b.paragraphs.iter().any(|p| p.lines.iter().any(|l| !l.words.is_empty())))
    {
        ids.block += 1;
        let _ = writeln!(
            out,
            "   <div class=\"ocr_carea\" id=\"block_{n}_{}\" title=\"{}\">",
            ids.block,
            bbox(block.bbox)
        );
        for paragraph in block
            .paragraphs
            .iter()
            .filter(|p| p.lines.iter().any(|l| !l.words.is_empty()))
        {
            ids.paragraph += 1;
            let _ = writeln!(
                out,
                "    <p class=\"ocr_par\" id=\"par_{n}_{}\" title=\"{}\">",
                ids.paragraph,
                bbox(paragraph.bbox)
            );
            for line in paragraph.lines.iter().filter(|l| !l.words.is_empty()) {
                ids.line += 1;
                let _ = writeln!(
                    out,
                    "     <span class=\"ocr_line\" id=\"line_{n}_{}\" title=\"{}\">",
                    ids.line,
                    bbox(line.bbox)
                );
                for word in &line.words {
                    ids.word += 1;
                    let _ = write!(
                        out,
                        "      <span class=\"ocrx_word\" id=\"word_{n}_{}\" title=\"{}; x_wconf {}\">",
                        ids.word,
                        bbox(word.bbox),
                        whole_confidence(word.confidence)
                    );
                    push_escaped(&mut out, &word.text);
                    out.push_str("</span>\n");
                }
                out.push_str("     </span>\n");
            }
            out.push_str("    </p>\n");
        }
        out.push_str("   </div>\n");
    }
    out.push_str("  </div>\n");
    out
}

/// Everything after the last page.
pub fn footer() -> &'static str {
    " </body>\n</html>\n"
}

/// A whole hOCR document: [`header`], a [`page`] for each page (all with
/// the same `image`), [`footer`].
pub fn document(title: &str, image: &str, pages: &[PageLayout]) -> String {
    let mut out = header(title);
    for p in pages {
        out.push_str(&page(p, image));
    }
    out.push_str(footer());
    out
}

#[derive(Default)]
struct Counters {
    block: u32,
    paragraph: u32,
    line: u32,
    word: u32,
}

fn bbox(b: BBox) -> String {
    format!("bbox {} {} {} {}", b.left, b.top, b.right, b.bottom)
}

/// A 0-100 confidence as the whole number Tesseract writes (truncated).
fn whole_confidence(confidence: f32) -> u32 {
    if confidence.is_nan() {
        return 0;
    }
    // NB: clamped to 0..=100 first, so the cast is exact.
    confidence.clamp(0.0, 100.0) as u32
}

/// `value` ready to go between the double quotes of an hOCR string property:
/// backslashes and double quotes backslash-escaped.
fn quote_property(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Appends `text` escaped for XML 1.0 element content or a quoted
/// attribute: markup characters and quotes as entities; tab, line feed and
/// carriage return as character references (so attribute normalisation
/// keeps them); characters XML 1.0 does not allow dropped.
pub(super) fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}' => out.push(c),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Block, Line, Paragraph, Word, from_tesseract_tsv};
    use super::*;
    use quick_xml::Reader;
    use quick_xml::XmlVersion;
    use quick_xml::escape::resolve_xml_entity;
    use quick_xml::events::Event;
    use std::collections::HashSet;

    const TSV: &str = include_str!("../../tests/fixtures/layout/page-0001.psm6.tsv");
    const TESSERACT_HOCR: &str = include_str!("../../tests/fixtures/layout/page-0001.psm6.hocr");

    /// An element of an hOCR document as a consumer sees it.
    #[derive(Debug, Clone, PartialEq)]
    struct Element {
        class: String,
        id: String,
        title: String,
        text: String,
    }

    /// Every element with a class, with its text content, read by a
    /// strict XML parser (which fails the test on ill-formed output).
    fn elements(xml: &str) -> Vec<Element> {
        let mut reader = Reader::from_str(xml);
        let mut found = Vec::new();
        let mut open: Vec<Option<usize>> = Vec::new();
        loop {
            match reader.read_event().unwrap() {
                Event::Start(e) => {
                    let mut element = Element {
                        class: String::new(),
                        id: String::new(),
                        title: String::new(),
                        text: String::new(),
                    };
                    for a in e.attributes() {
                        let a = a.unwrap();
                        let value = a
                            .normalized_value_with(XmlVersion::Implicit1_0, 1, resolve_xml_entity)
                            .unwrap()
                            .into_owned();
                        match a.key.as_ref() {
                            "class" => element.class = value,
                            "id" => element.id = value,
                            "title" => element.title = value,
                            _ => {}
                        }
                    }
                    if element.class.is_empty() {
                        open.push(None);
                    } else {
                        found.push(element);
                        open.push(Some(found.len() - 1));
                    }
                }
                Event::End(_) => {
                    open.pop();
                }
                Event::Text(t) => append(&mut found, &open, &t.xml10_content()),
                Event::GeneralRef(r) => {
                    let c = if r.is_char_ref() {
                        r.resolve_char_ref().unwrap().unwrap().to_string()
                    } else {
                        resolve_xml_entity(&r).unwrap().to_owned()
                    };
                    append(&mut found, &open, &c);
                }
                Event::Eof => break,
                _ => {}
            }
        }
        found
    }

    fn append(found: &mut [Element], open: &[Option<usize>], text: &str) {
        for i in open.iter().flatten() {
            found[*i].text.push_str(text);
        }
    }

    fn property<'t>(title: &'t str, name: &str) -> &'t str {
        title
            .split("; ")
            .find_map(|p| p.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap()
    }

    fn tesseract_page() -> PageLayout {
        from_tesseract_tsv(TSV, 1, 1240, 880, 300).unwrap()
    }

    fn word(text: &str, confidence: f32) -> Word {
        Word {
            bbox: BBox {
                left: 1,
                top: 2,
                right: 3,
                bottom: 4,
            },
            text: text.to_owned(),
            confidence,
        }
    }

    fn one_word_page(number: u32, w: Word) -> PageLayout {
        PageLayout {
            number,
            width: 10,
            height: 10,
            dpi: 72,
            blocks: vec![Block {
                bbox: w.bbox,
                paragraphs: vec![Paragraph {
                    bbox: w.bbox,
                    lines: vec![Line {
                        bbox: w.bbox,
                        words: vec![w],
                    }],
                }],
            }],
        }
    }

    #[test]
    fn every_word_of_a_tesseract_page_comes_back_with_its_box() {
        let layout = tesseract_page();
        let hocr = document("page 1", "page-0001.jpg", std::slice::from_ref(&layout));
        let words: Vec<Element> = elements(&hocr).into_iter().filter(|e| e.class == "ocrx_word").collect();
        let expected: Vec<&Word> = layout.words().collect();
        assert_eq!(words.len(), expected.len());
        for (got, want) in words.iter().zip(expected) {
            assert_eq!(got.text, want.text);
            let b = want.bbox;
            assert_eq!(
                property(&got.title, "bbox"),
                format!("{} {} {} {}", b.left, b.top, b.right, b.bottom)
            );
        }
    }

    #[test]
    fn words_match_what_tesseract_itself_writes_as_hocr() {
        let ours = elements(&document("", "page-0001.jpg", &[tesseract_page()]));
        let theirs = elements(TESSERACT_HOCR);
        let strip = |elements: Vec<Element>, class: &str| -> Vec<(String, String, String)> {
            elements
                .into_iter()
                .filter(|e| e.class == class)
                .map(|e| {
                    let bbox = property(&e.title, "bbox").to_owned();
                    let wconf = if class == "ocrx_word" {
                        property(&e.title, "x_wconf").to_owned()
                    } else {
                        String::new()
                    };
                    (
                        e.id,
                        bbox,
                        format!("{wconf}|{}", if class == "ocrx_word" { e.text } else { String::new() }),
                    )
                })
                .collect()
        };
        for class in ["ocr_carea", "ocr_par", "ocr_line", "ocrx_word"] {
            assert_eq!(strip(ours.clone(), class), strip(theirs.clone(), class), "{class}");
        }
        let page = |e: &[Element]| e.iter().find(|e| e.class == "ocr_page").unwrap().clone();
        assert_eq!(page(&ours).id, page(&theirs).id);
        assert_eq!(page(&ours).title, page(&theirs).title);
    }

    #[test]
    fn markup_quotes_and_control_characters_are_escaped_or_dropped() {
        let nasty = "a<b>&\"c\"'d'\u{0}\u{1}\u{b}\u{fffe}\u{ffff}e\tf";
        let page = one_word_page(1, word(nasty, 50.0));
        let hocr = document("<title> & \"q\" \u{7}", "dir/\"odd\" name's\\.png", &[page]);
        let elements = elements(&hocr);
        let w = elements.iter().find(|e| e.class == "ocrx_word").unwrap();
        assert_eq!(w.text, "a<b>&\"c\"'d'e\tf");
        let p = elements.iter().find(|e| e.class == "ocr_page").unwrap();
        assert_eq!(property(&p.title, "image"), r#""dir/\"odd\" name's\\.png""#);
        assert!(hocr.contains("<title>&lt;title&gt; &amp; &quot;q&quot; </title>"));
        assert!(!hocr.contains('\u{0}') && !hocr.contains('\u{7}'));
    }

    #[test]
    fn ids_are_unique_across_pages_rendered_separately() {
        let layout = tesseract_page();
        let mut second = layout.clone();
        second.number = 2;
        let mut hocr = header("two pages");
        hocr.push_str(&page(&layout, "a.png"));
        hocr.push_str(&page(&second, "b.png"));
        hocr.push_str(footer());
        let elements = elements(&hocr);
        let ids: HashSet<&str> = elements.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids.len(), elements.len(), "no id twice");
        assert_eq!(elements.iter().filter(|e| e.class == "ocrx_word").count(), 222);
        let pages: Vec<&Element> = elements.iter().filter(|e| e.class == "ocr_page").collect();
        assert_eq!(property(&pages[1].title, "ppageno"), "1");
        assert!(pages[1].title.starts_with("image \"b.png\"; bbox 0 0 1240 880"));
        let same_image = hocr.replace("&quot;b.png&quot;", "&quot;a.png&quot;");
        assert_eq!(same_image, document("two pages", "a.png", &[layout, second]));
    }

    #[test]
    fn empty_lines_are_left_out_and_empty_pages_kept() {
        let mut layout = one_word_page(4, word("x", 10.0));
        layout.blocks[0].paragraphs[0].lines.push(Line::default());
        layout.blocks.push(Block {
            bbox: BBox::default(),
            paragraphs: vec![Paragraph::default()],
        });
        let elements = elements(&document(
            "",
            "i.png",
            &[
                layout,
                PageLayout {
                    number: 5,
                    ..PageLayout::default()
                },
            ],
        ));
        let classes: Vec<&str> = elements.iter().map(|e| e.class.as_str()).collect();
        assert_eq!(
            classes,
            vec!["ocr_page", "ocr_carea", "ocr_par", "ocr_line", "ocrx_word", "ocr_page"]
        );
    }

    #[test]
    fn confidences_are_whole_numbers_in_0_100() {
        for (confidence, expected) in [(96.9, "96"), (-3.0, "0"), (250.0, "100"), (f32::NAN, "0")] {
            let hocr = document("", "i", &[one_word_page(1, word("w", confidence))]);
            let w = elements(&hocr).into_iter().find(|e| e.class == "ocrx_word").unwrap();
            assert_eq!(property(&w.title, "x_wconf"), expected, "{confidence}");
        }
    }
}
