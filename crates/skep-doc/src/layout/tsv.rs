//! TSV rendering of [`PageLayout`]s, row for row as Tesseract writes it:
//! a page row, then a row for each block, paragraph and line as it
//! begins, and a row for each word. Numbers of blocks count from 1 on each
//! page, of paragraphs within their block, of lines within their
//! paragraph, of words within their line. [`super::from_tesseract_tsv`]
//! reads the rows back into the same layout.

use std::fmt::Write;

use super::{BBox, PageLayout};

/// Tesseract's header row, with its newline.
pub fn header() -> &'static str {
    "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
}

/// The rows of one page; `page_num` is `page.number`. Tabs, line feeds and
/// carriage returns inside a word become spaces. Lines without words are
/// left out, and so are paragraphs and blocks with none left.
pub fn page(page: &PageLayout) -> String {
    let n = page.number;
    let mut out = String::new();
    let whole = BBox {
        left: 0,
        top: 0,
        right: page.width,
        bottom: page.height,
    };
    row(&mut out, [1, n, 0, 0, 0, 0], whole, None);
    let has_words = |lines: &[super::Line]| lines.iter().any(|l| !l.words.is_empty());
    let blocks = page
        .blocks
        .iter()
        .filter(|b| b.paragraphs.iter().any(|p| has_words(&p.lines)));
    for (b, block) in (1..).zip(blocks) {
        row(&mut out, [2, n, b, 0, 0, 0], block.bbox, None);
        for (p, paragraph) in (1..).zip(block.paragraphs.iter().filter(|p| has_words(&p.lines))) {
            row(&mut out, [3, n, b, p, 0, 0], paragraph.bbox, None);
            for (l, line) in (1..).zip(paragraph.lines.iter().filter(|l| !l.words.is_empty())) {
                row(&mut out, [4, n, b, p, l, 0], line.bbox, None);
                for (w, word) in (1..).zip(&line.words) {
                    row(
                        &mut out,
                        [5, n, b, p, l, w],
                        word.bbox,
                        Some((word.confidence, &word.text)),
                    );
                }
            }
        }
    }
    out
}

/// One row: the six numbers, the box, and for a word its confidence (as
/// Tesseract prints a float, six decimals) and text; `-1` and no text
/// otherwise.
fn row(out: &mut String, numbers: [u32; 6], bbox: BBox, word: Option<(f32, &str)>) {
    for number in numbers {
        let _ = write!(out, "{number}\t");
    }
    let _ = write!(
        out,
        "{}\t{}\t{}\t{}\t",
        bbox.left,
        bbox.top,
        bbox.width(),
        bbox.height()
    );
    match word {
        Some((confidence, text)) => {
            let confidence = if confidence.is_nan() {
                0.0
            } else {
                confidence.clamp(0.0, 100.0)
            };
            let _ = write!(out, "{confidence:.6}\t");
            out.extend(
                text.chars()
                    .map(|c| if matches!(c, '\t' | '\n' | '\r') { ' ' } else { c }),
            );
        }
        None => out.push_str("-1\t"),
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::super::{Block, Line, Paragraph, Word, from_tesseract_tsv};
    use super::*;

    const TSV: &str = include_str!("../../tests/fixtures/layout/page-0001.psm6.tsv");

    #[test]
    fn a_tesseract_page_renders_back_to_the_same_rows() {
        let layout = from_tesseract_tsv(TSV, 1, 1240, 880, 300).unwrap();
        let rendered = format!("{}{}", header(), page(&layout));
        assert_eq!(rendered, TSV);
    }

    #[test]
    fn rendered_rows_read_back_to_the_same_layout() {
        let mut layout = from_tesseract_tsv(TSV, 7, 1240, 880, 300).unwrap();
        layout.blocks.push(layout.blocks[0].clone());
        let again = from_tesseract_tsv(&page(&layout), 7, 1240, 880, 300).unwrap();
        assert_eq!(again, layout);
        assert!(page(&layout).lines().all(|l| l.split('\t').nth(1) == Some("7")));
    }

    #[test]
    fn separators_inside_words_become_spaces() {
        let bbox = BBox {
            left: 1,
            top: 2,
            right: 4,
            bottom: 6,
        };
        let word = Word {
            bbox,
            text: "a\tb\nc\r\nd".to_owned(),
            confidence: 100.0,
        };
        let layout = PageLayout {
            number: 3,
            width: 10,
            height: 20,
            dpi: 72,
            blocks: vec![Block {
                bbox,
                paragraphs: vec![Paragraph {
                    bbox,
                    lines: vec![
                        Line {
                            bbox,
                            words: vec![word],
                        },
                        Line::default(),
                    ],
                }],
            }],
        };
        let expected = "1\t3\t0\t0\t0\t0\t0\t0\t10\t20\t-1\t\n\
                        2\t3\t1\t0\t0\t0\t1\t2\t3\t4\t-1\t\n\
                        3\t3\t1\t1\t0\t0\t1\t2\t3\t4\t-1\t\n\
                        4\t3\t1\t1\t1\t0\t1\t2\t3\t4\t-1\t\n\
                        5\t3\t1\t1\t1\t1\t1\t2\t3\t4\t100.000000\ta b c  d\n";
        assert_eq!(page(&layout), expected);
        assert_eq!(header().split('\t').count(), 12);
        assert!(header().ends_with("text\n"));
    }

    #[test]
    fn an_empty_page_is_its_page_row() {
        let layout = PageLayout {
            number: 2,
            width: 5,
            height: 6,
            dpi: 72,
            blocks: vec![Block::default()],
        };
        assert_eq!(page(&layout), "1\t2\t0\t0\t0\t0\t0\t0\t5\t6\t-1\t\n");
    }
}
