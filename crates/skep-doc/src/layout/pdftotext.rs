//! Reading Poppler's `pdftotext -bbox-layout` output into [`PageLayout`]s.
//!
//! The input is XHTML: `<doc>` holds `<page width height>` (points), each
//! holding `<flow>`s of `<block>`s of `<line>`s of `<word>`s, boxes as
//! `xMin yMin xMax yMax` in points from the page's top left. The reader is
//! a bounded pull parser: no DTD is read or expanded (a document type with
//! an internal subset is refused), only the predefined entities and
//! character references are resolved, and nesting deeper than
//! [`MAX_DEPTH`] is refused.

use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};

use super::{BBox, Block, Line, PageLayout, Paragraph, Word};
use crate::DocError;

/// Deepest element nesting accepted; pdftotext writes 7 levels.
const MAX_DEPTH: usize = 64;

/// Largest page side accepted, in pixels at the requested dpi (a 200-inch
/// page at 5,000 dpi).
const MAX_PAGE_SIDE: u32 = 1 << 20;

/// Tolerance when turning scaled coordinates into whole pixels, so that
/// 21.6 pt at 300 dpi is pixel 90 and not 91.
const EPSILON: f64 = 1e-6;

/// Reads the pages of `pdftotext -bbox-layout` output, numbered from
/// `first_page`, scaled from points to pixels at `dpi`.
///
/// Guarantees: each `block` becomes a block with one paragraph of the same
/// box; words have confidence 100; words whose text is empty or whitespace
/// are dropped, and so are lines and blocks left without words (pages are
/// kept, empty or not); boxes lie within the page, whose size is
/// `round(points * dpi / 72)`. Ill-formed XML, unknown entities, a DTD
/// internal subset, nesting deeper than 64, `word`s outside a `line` (or
/// any other misplaced layout element) and input without a `doc` element
/// are `Corrupt`; a page side over 2^20 pixels is `TooLarge`; `dpi` 0 is
/// `Unsupported`. Messages carry positions, never the input's text.
pub fn from_pdftotext_bbox(xhtml: &str, first_page: u32, dpi: u32) -> Result<Vec<PageLayout>, DocError> {
    if dpi == 0 {
        return Err(DocError::unsupported("a dpi of 0 has no pixels"));
    }
    let mut parser = Parser {
        scale: f64::from(dpi) / 72.0,
        dpi,
        next_number: Some(first_page),
        seen_doc: false,
        pages: Vec::new(),
        page: None,
        block: None,
        line: None,
        word: None,
    };
    let mut reader = Reader::from_str(xhtml);
    let mut depth = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|_| DocError::corrupt(format!("malformed xml at byte {}", reader.error_position())))?;
        let at = reader.buffer_position();
        match event {
            Event::Start(start) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(DocError::corrupt(format!("elements nested deeper than {MAX_DEPTH}")));
                }
                parser.open(&start, at)?;
            }
            Event::Empty(start) => {
                parser.open(&start, at)?;
                parser.close(start.local_name().as_ref());
            }
            Event::End(end) => {
                depth = depth.saturating_sub(1);
                parser.close(end.local_name().as_ref());
            }
            Event::Text(text) => parser.text(&text.xml10_content()),
            Event::CData(text) => parser.text(&text.xml10_content()),
            Event::GeneralRef(reference) => {
                let resolved = resolve_reference(&reference, at)?;
                let mut utf8 = [0; 4];
                parser.text(resolved.encode_utf8(&mut utf8));
            }
            Event::DocType(doctype) => {
                if doctype.contains('[') {
                    return Err(DocError::corrupt("a document type with an internal subset is refused"));
                }
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if depth != 0 {
        return Err(DocError::corrupt("the xml ends inside an element"));
    }
    if !parser.seen_doc {
        return Err(DocError::corrupt("no doc element: not pdftotext -bbox-layout output"));
    }
    Ok(parser.pages)
}

/// A character reference or one of the five predefined entities, as one
/// character; anything else is `Corrupt`.
fn resolve_reference(reference: &BytesRef<'_>, at: u64) -> Result<char, DocError> {
    let unknown = || DocError::corrupt(format!("unknown or invalid reference at byte {at}"));
    if reference.is_char_ref() {
        return reference.resolve_char_ref().ok().flatten().ok_or_else(unknown);
    }
    resolve_xml_entity(reference)
        .and_then(|s| s.chars().next())
        .ok_or_else(unknown)
}

struct Parser {
    scale: f64,
    dpi: u32,
    /// `None` once page numbers ran past `u32::MAX`.
    next_number: Option<u32>,
    seen_doc: bool,
    pages: Vec<PageLayout>,
    page: Option<PageLayout>,
    block: Option<Block>,
    line: Option<Line>,
    word: Option<Word>,
}

impl Parser {
    fn open(&mut self, start: &BytesStart<'_>, at: u64) -> Result<(), DocError> {
        let misplaced = |what: &str| DocError::corrupt(format!("misplaced {what} element at byte {at}"));
        match start.local_name().as_ref() {
            "doc" => self.seen_doc = true,
            "page" => {
                if self.page.is_some() {
                    return Err(misplaced("page"));
                }
                let [width, height] = attributes(start, ["width", "height"], at)?;
                if width < 0.0 || height < 0.0 {
                    return Err(DocError::corrupt(format!("negative page size at byte {at}")));
                }
                let number = self
                    .next_number
                    .ok_or_else(|| DocError::too_large("page numbers past the largest page number"))?;
                self.next_number = number.checked_add(1);
                self.page = Some(PageLayout {
                    number,
                    width: self.side(width)?,
                    height: self.side(height)?,
                    dpi: self.dpi,
                    blocks: Vec::new(),
                });
            }
            "block" => {
                if self.page.is_none() || self.block.is_some() {
                    return Err(misplaced("block"));
                }
                self.block = Some(Block {
                    bbox: self.bbox(start, at)?,
                    paragraphs: Vec::new(),
                });
            }
            "line" => {
                if self.block.is_none() || self.line.is_some() {
                    return Err(misplaced("line"));
                }
                self.line = Some(Line {
                    bbox: self.bbox(start, at)?,
                    words: Vec::new(),
                });
            }
            "word" => {
                if self.line.is_none() || self.word.is_some() {
                    return Err(misplaced("word"));
                }
                self.word = Some(Word {
                    bbox: self.bbox(start, at)?,
                    text: String::new(),
                    confidence: 100.0,
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// Ends an element. Start and end names are known to match (the
    /// reader checks), so each layout element closes what it opened.
    fn close(&mut self, name: &str) {
        match name {
            "word" => {
                if let (Some(word), Some(line)) = (self.word.take(), self.line.as_mut())
                    && !word.text.trim().is_empty()
                {
                    line.words.push(word);
                }
            }
            "line" => {
                if let (Some(line), Some(block)) = (self.line.take(), self.block.as_mut())
                    && !line.words.is_empty()
                {
                    match block.paragraphs.first_mut() {
                        Some(paragraph) => paragraph.lines.push(line),
                        None => block.paragraphs.push(Paragraph {
                            bbox: block.bbox,
                            lines: vec![line],
                        }),
                    }
                }
            }
            "block" => {
                if let (Some(block), Some(page)) = (self.block.take(), self.page.as_mut())
                    && !block.paragraphs.is_empty()
                {
                    page.blocks.push(block);
                }
            }
            "page" => self.pages.extend(self.page.take()),
            _ => {}
        }
    }

    fn text(&mut self, text: &str) {
        if let Some(word) = self.word.as_mut() {
            word.text.push_str(text);
        }
    }

    /// A page side in points as whole pixels.
    fn side(&self, points: f64) -> Result<u32, DocError> {
        let pixels = (points * self.scale).round();
        if pixels > f64::from(MAX_PAGE_SIDE) {
            return Err(DocError::too_large(format!(
                "a page side over {MAX_PAGE_SIDE} pixels at {} dpi",
                self.dpi
            )));
        }
        // NB: 0 <= pixels <= 2^20 here, so the cast is exact.
        Ok(pixels as u32)
    }

    /// The element's box in pixels, widened to whole pixels and clamped to
    /// the page.
    fn bbox(&self, start: &BytesStart<'_>, at: u64) -> Result<BBox, DocError> {
        let [x_min, y_min, x_max, y_max] = attributes(start, ["xMin", "yMin", "xMax", "yMax"], at)?;
        let (width, height) = self.page.as_ref().map_or((0, 0), |p| (p.width, p.height));
        let (left, right) = self.span(x_min, x_max, width);
        let (top, bottom) = self.span(y_min, y_max, height);
        Ok(BBox {
            left,
            top,
            right,
            bottom,
        })
    }

    fn span(&self, from: f64, to: f64, limit: u32) -> (u32, u32) {
        let limit = f64::from(limit);
        let start = (from * self.scale + EPSILON).floor().clamp(0.0, limit);
        let end = (to * self.scale - EPSILON).ceil().clamp(start, limit);
        // NB: both are whole numbers in 0..=MAX_PAGE_SIDE.
        (start as u32, end as u32)
    }
}

/// The named attributes of `start` as finite numbers, in the order asked.
fn attributes<const N: usize>(start: &BytesStart<'_>, names: [&str; N], at: u64) -> Result<[f64; N], DocError> {
    let mut values = [None; N];
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|_| DocError::corrupt(format!("malformed attribute at byte {at}")))?;
        if let Some(slot) = names.iter().position(|n| *n == attribute.key.as_ref()) {
            let value = attribute
                .normalized_value_with(XmlVersion::Implicit1_0, 1, resolve_xml_entity)
                .map_err(|_| DocError::corrupt(format!("malformed attribute at byte {at}")))?;
            let number = value.trim().parse::<f64>().ok().filter(|v| v.is_finite());
            values[slot] =
                Some(number.ok_or_else(|| DocError::corrupt(format!("a coordinate is not a number at byte {at}")))?);
        }
    }
    let mut out = [0.0; N];
    for (slot, value) in out.iter_mut().zip(values) {
        *slot = value.ok_or_else(|| DocError::corrupt(format!("a coordinate is missing at byte {at}")))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skep_api::FailureReason;
    use std::time::{Duration, Instant};

    const OCRMYPDF: &str = include_str!("../../tests/fixtures/layout/ocrmypdf-2pages.bbox.html");

    fn corrupt(input: &str) -> DocError {
        let started = Instant::now();
        let error = from_pdftotext_bbox(input, 1, 300).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "refused quickly");
        assert_eq!(error.reason, FailureReason::Corrupt, "{error}");
        error
    }

    fn page(body: &str) -> String {
        format!("<doc><page width=\"72\" height=\"144\">{body}</page></doc>")
    }

    #[test]
    fn reads_pdftotext_output_of_an_ocrmypdf_pdf() {
        let pages = from_pdftotext_bbox(OCRMYPDF, 5, 300).unwrap();
        assert_eq!(pages.len(), 2);
        assert_eq!(pages.iter().map(|p| p.number).collect::<Vec<_>>(), vec![5, 6]);
        // 297.6 x 211.2 pt at 300 dpi: the 1240 x 880 scan the PDF was made from.
        assert_eq!((pages[0].width, pages[0].height, pages[0].dpi), (1240, 880, 300));
        let first = &pages[0].blocks[0];
        assert_eq!(first.paragraphs.len(), 1);
        assert_eq!(first.paragraphs[0].bbox, first.bbox);
        let word = &first.paragraphs[0].lines[0].words[0];
        assert_eq!(word.text, "Birds");
        assert_eq!(word.confidence, 100.0);
        // xMin 21.6 yMin 19.08 xMax 37.8 yMax 29.88 pt; Tesseract saw 90 86 171 113.
        assert_eq!(
            word.bbox,
            BBox {
                left: 90,
                top: 79,
                right: 158,
                bottom: 125
            }
        );
        assert_eq!(pages[0].words().count(), 111);
        assert!(pages[1].words().count() > 50);
    }

    #[test]
    fn predefined_entities_and_character_references_are_resolved() {
        let xml = page(
            r#"<flow><block xMin="0" yMin="0" xMax="10" yMax="10"><line xMin="0" yMin="0" xMax="10" yMax="10">
            <word xMin="0" yMin="0" xMax="1" yMax="1">a&lt;b&amp;c&gt;&quot;&apos;</word>
            <word xMin="1" yMin="0" xMax="2" yMax="1">&#233;&#x4E2D;</word>
            <word xMin="2" yMin="0" xMax="3" yMax="1"><![CDATA[<raw>]]></word>
            </line></block></flow>"#,
        );
        let pages = from_pdftotext_bbox(&xml, 1, 72).unwrap();
        let texts: Vec<&str> = pages[0].words().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, vec!["a<b&c>\"'", "é中", "<raw>"]);
    }

    #[test]
    fn points_become_pixels_clamped_to_the_page() {
        let xml = page(
            r#"<flow><block xMin="-10" yMin="10" xMax="100" yMax="20"><line xMin="-10" yMin="10" xMax="100" yMax="20">
            <word xMin="-10" yMin="10.1" xMax="100" yMax="19.9">wide</word>
            </line></block></flow>"#,
        );
        let pages = from_pdftotext_bbox(&xml, 1, 144).unwrap();
        assert_eq!((pages[0].width, pages[0].height), (144, 288));
        let word = pages[0].words().next().unwrap();
        assert_eq!(
            word.bbox,
            BBox {
                left: 0,
                top: 20,
                right: 144,
                bottom: 40
            }
        );
    }

    #[test]
    fn blank_words_and_empty_lines_and_blocks_are_dropped_but_pages_kept() {
        let xml = "<doc><page width=\"10\" height=\"10\"><flow>\
            <block xMin=\"0\" yMin=\"0\" xMax=\"1\" yMax=\"1\"><line xMin=\"0\" yMin=\"0\" xMax=\"1\" yMax=\"1\">\
            <word xMin=\"0\" yMin=\"0\" xMax=\"1\" yMax=\"1\"> </word><word xMin=\"0\" yMin=\"0\" xMax=\"1\" yMax=\"1\"/>\
            </line></block></flow></page><page width=\"10\" height=\"10\"/></doc>";
        let pages = from_pdftotext_bbox(xml, 1, 72).unwrap();
        assert_eq!(pages.len(), 2);
        assert!(pages.iter().all(|p| p.blocks.is_empty()));
    }

    #[test]
    fn a_pdf_with_a_text_layer_made_here_reads_back_through_pdftotext() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("text.pdf");
        std::fs::write(
            &path,
            pdf_with_text(&[(72.0, 700.0, "Hello <world> & \"friends\""), (72.0, 600.0, "second")]),
        )
        .unwrap();
        let output = std::process::Command::new("pdftotext")
            .arg("-bbox-layout")
            .arg(&path)
            .arg("-")
            .output()
            .expect("pdftotext (poppler-utils) is installed");
        assert!(output.status.success());
        let xhtml = String::from_utf8(output.stdout).unwrap();
        let pages = from_pdftotext_bbox(&xhtml, 1, 300).unwrap();
        assert_eq!(pages.len(), 1);
        assert_eq!((pages[0].width, pages[0].height), (2550, 3300));
        let texts: Vec<&str> = pages[0].words().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, vec!["Hello", "<world>", "&", "\"friends\"", "second"]);
        let hello = pages[0].words().next().unwrap();
        // Baseline at 92 pt from the top, 12 pt Helvetica: the box starts at
        // x = 72 pt = 300 px and spans the baseline at y = 92 pt = 383 px.
        assert!((299..=301).contains(&hello.bbox.left), "{:?}", hello.bbox);
        assert!(hello.bbox.top < 383 && hello.bbox.bottom > 383, "{:?}", hello.bbox);
    }

    /// A one-page Letter PDF showing each `(x, y, text)` in 12 pt Helvetica.
    fn pdf_with_text(texts: &[(f32, f32, &str)]) -> Vec<u8> {
        use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str};
        let (catalog, tree, page, font, content) = (Ref::new(1), Ref::new(2), Ref::new(3), Ref::new(4), Ref::new(5));
        let mut pdf = Pdf::new();
        pdf.catalog(catalog).pages(tree);
        pdf.pages(tree).kids([page]).count(1);
        let mut p = pdf.page(page);
        p.parent(tree)
            .media_box(Rect::new(0.0, 0.0, 612.0, 792.0))
            .contents(content);
        p.resources().fonts().pair(Name(b"F1"), font);
        drop(p);
        pdf.type1_font(font).base_font(Name(b"Helvetica"));
        let mut ops = Content::new();
        for (x, y, text) in texts {
            ops.begin_text()
                .set_font(Name(b"F1"), 12.0)
                .next_line(*x, *y)
                .show(Str(text.as_bytes()))
                .end_text();
        }
        pdf.stream(content, &ops.finish());
        pdf.finish()
    }

    #[test]
    fn a_billion_laughs_document_is_refused_quickly() {
        let mut entities = String::from("<!ENTITY lol \"lol\">");
        for i in 1..10 {
            let previous = if i == 1 {
                "lol".to_owned()
            } else {
                format!("lol{}", i - 1)
            };
            entities.push_str(&format!("<!ENTITY lol{i} \"{}\">", format!("&{previous};").repeat(10)));
        }
        let xml = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE doc [{entities}]>{}",
            page("<flow>&lol9;</flow>")
        );
        assert!(corrupt(&xml).message.contains("internal subset"));
        // Refused for the subset, even where no entity is used.
        let unused = format!("<!DOCTYPE doc [{entities}]>{}", page(""));
        assert!(corrupt(&unused).message.contains("internal subset"));
        // The same references without the DTD are unknown entities.
        corrupt(&page(
            r#"<flow><block xMin="0" yMin="0" xMax="1" yMax="1"><line xMin="0" yMin="0" xMax="1" yMax="1"><word xMin="0" yMin="0" xMax="1" yMax="1">&lol9;</word></line></block></flow>"#,
        ));
    }

    #[test]
    fn external_entities_and_html_entities_are_refused() {
        corrupt(&format!(
            "<!DOCTYPE doc [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>{}",
            page("&xxe;")
        ));
        corrupt(&page("<flow>&nbsp;</flow>"));
        corrupt(&page("<flow>&#0;</flow>"));
        corrupt(&page("<flow>&#xD800;</flow>"));
        corrupt(r#"<doc><page width="1&unknown;" height="1"/></doc>"#);
    }

    #[test]
    fn the_xhtml_doctype_pdftotext_writes_is_accepted() {
        assert!(OCRMYPDF.starts_with("<!DOCTYPE html PUBLIC"));
        assert_eq!(from_pdftotext_bbox(OCRMYPDF, 1, 72).unwrap().len(), 2);
    }

    #[test]
    fn deep_nesting_is_refused_quickly() {
        let deep = format!("<doc>{}{}</doc>", "<x>".repeat(100_000), "</x>".repeat(100_000));
        let error = corrupt(&deep);
        assert!(error.message.contains("nested"), "{error}");
        // 64 levels are fine.
        let ok = format!("<doc>{}{}</doc>", "<x>".repeat(63), "</x>".repeat(63));
        assert_eq!(from_pdftotext_bbox(&ok, 1, 72).unwrap(), vec![]);
    }

    #[test]
    fn malformed_documents_are_corrupt() {
        corrupt("");
        corrupt("plain text, no xml");
        corrupt("<doc><page width=\"1\" height=\"1\">");
        corrupt("<doc><page width=\"1\" height=\"1\"></doc>");
        corrupt("<doc><page width=\"x\" height=\"1\"/></doc>");
        corrupt("<doc><page width=\"NaN\" height=\"1\"/></doc>");
        corrupt("<doc><page width=\"-1\" height=\"1\"/></doc>");
        corrupt("<doc><page height=\"1\"/></doc>");
        corrupt("<doc><page width=\"1\" width=\"2\" height=\"1\"/></doc>");
        corrupt("<doc><page width=\"1\" height=\"1\"><page width=\"1\" height=\"1\"/></page></doc>");
        corrupt(
            r#"<doc><page width="1" height="1"><word xMin="0" yMin="0" xMax="1" yMax="1">bbox, not bbox-layout</word></page></doc>"#,
        );
        corrupt(r#"<doc><block xMin="0" yMin="0" xMax="1" yMax="1"/></doc>"#);
        corrupt(&page(r#"<flow><block xMin="0" yMin="0" xMax="1"/></flow>"#));
    }

    #[test]
    fn messages_do_not_carry_the_input() {
        let error = corrupt(&page("<flow>&secret-token;</flow>"));
        assert!(!error.message.contains("secret"), "{error}");
        let error = corrupt("<doc><page width=\"secret\" height=\"1\"/></doc>");
        assert!(!error.message.contains("secret"), "{error}");
    }

    #[test]
    fn huge_pages_are_too_large_and_dpi_zero_unsupported() {
        let error = from_pdftotext_bbox("<doc><page width=\"1e30\" height=\"1\"/></doc>", 1, 300).unwrap_err();
        assert_eq!(error.reason, FailureReason::TooLarge);
        let error = from_pdftotext_bbox(OCRMYPDF, 1, 0).unwrap_err();
        assert_eq!(error.reason, FailureReason::Unsupported);
    }

    #[test]
    fn page_numbers_past_u32_max_are_refused() {
        let two = "<doc><page width=\"1\" height=\"1\"/><page width=\"1\" height=\"1\"/></doc>";
        assert_eq!(from_pdftotext_bbox(two, u32::MAX - 1, 72).unwrap().len(), 2);
        let error = from_pdftotext_bbox(
            "<doc><page width=\"1\" height=\"1\"/><page width=\"1\" height=\"1\"/><page width=\"1\" height=\"1\"/></doc>",
            u32::MAX - 1,
            72,
        )
        .unwrap_err();
        assert_eq!(error.reason, FailureReason::TooLarge);
    }
}
