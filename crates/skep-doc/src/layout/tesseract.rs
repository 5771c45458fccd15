//! Reading one page of Tesseract's TSV output into a [`PageLayout`].
//!
//! The rows are `level page_num block_num par_num line_num word_num left
//! top width height conf text`, with levels 1 page, 2 block, 3 paragraph,
//! 4 line and 5 word, in reading order. The structure is rebuilt from the
//! row order and the block/paragraph/line numbers, so a word whose parent
//! rows are missing still lands in a line (whose box is then the union of
//! its words).

use super::{BBox, Block, Line, PageLayout, Paragraph, Word};
use crate::DocError;

/// Columns of a row; the last one, the text, is everything after the 11th
/// tab.
const COLUMNS: usize = 12;

/// Reads one page of Tesseract's TSV output (`TessBaseAPIGetTsvText`, or
/// the CLI's `tsv` output with its header row).
///
/// Guarantees: words whose text is empty or whitespace are dropped, and so
/// are lines, paragraphs and blocks left without words; confidences are in
/// 0-100 (`-1` becomes 0); boxes lie within `width` x `height`. Malformed
/// rows are skipped, but input with content of which not one row parses is
/// `Corrupt`. The page row (level 1) is not consulted: the page's size is
/// the caller's.
pub fn from_tesseract_tsv(tsv: &str, number: u32, width: u32, height: u32, dpi: u32) -> Result<PageLayout, DocError> {
    let page = Page { width, height };
    let mut builder = Builder::default();
    let mut has_content = false;
    let mut recognised = false;
    let tsv = tsv.strip_prefix('\u{feff}').unwrap_or(tsv);
    for text in tsv.lines().filter(|l| !l.trim().is_empty()) {
        if !has_content && text.starts_with("level\t") {
            // NB: the CLI's header row; the API writes none.
            has_content = true;
            recognised = true;
            continue;
        }
        has_content = true;
        if let Some(row) = Row::parse(text, page) {
            recognised = true;
            builder.push(row);
        }
    }
    if has_content && !recognised {
        return Err(DocError::corrupt("no row of the tesseract tsv could be read"));
    }
    Ok(PageLayout {
        number,
        width,
        height,
        dpi,
        blocks: builder.finish(),
    })
}

#[derive(Clone, Copy)]
struct Page {
    width: u32,
    height: u32,
}

/// One well-formed row.
struct Row<'a> {
    level: u8,
    block: u32,
    paragraph: u32,
    line: u32,
    bbox: BBox,
    confidence: f32,
    text: &'a str,
}

impl<'a> Row<'a> {
    /// The row, or `None` if it is malformed: too few columns, a number
    /// that does not parse, a level outside 1-5, a negative size.
    fn parse(text: &'a str, page: Page) -> Option<Self> {
        let mut columns = text.splitn(COLUMNS, '\t');
        let mut next_int = || columns.next().and_then(|c| c.trim().parse::<i64>().ok());
        let level = u8::try_from(next_int()?).ok().filter(|l| (1..=5).contains(l))?;
        let _page_num = next_int()?;
        let block = u32::try_from(next_int()?).ok()?;
        let paragraph = u32::try_from(next_int()?).ok()?;
        let line = u32::try_from(next_int()?).ok()?;
        let _word_num = next_int()?;
        let (left, top, w, h) = (next_int()?, next_int()?, next_int()?, next_int()?);
        if w < 0 || h < 0 {
            return None;
        }
        let confidence = columns.next()?.trim().parse::<f32>().ok().filter(|c| c.is_finite())?;
        // NB: rows of levels 1-4 end in "-1\t"; a trimmed line loses the empty text column.
        let text = columns.next().unwrap_or("");
        let (left_px, right_px) = clamp_span(left, w, page.width);
        let (top_px, bottom_px) = clamp_span(top, h, page.height);
        Some(Row {
            level,
            block,
            paragraph,
            line,
            bbox: BBox {
                left: left_px,
                top: top_px,
                right: right_px,
                bottom: bottom_px,
            },
            confidence: confidence.clamp(0.0, 100.0),
            text,
        })
    }
}

/// `[start, start + len)` clamped to `[0, limit]`.
fn clamp_span(start: i64, len: i64, limit: u32) -> (u32, u32) {
    let limit = i64::from(limit);
    let from = start.clamp(0, limit);
    let to = start.saturating_add(len).clamp(from, limit);
    // NB: both lie in 0..=u32::MAX after the clamps.
    (u32::try_from(from).unwrap_or(0), u32::try_from(to).unwrap_or(0))
}

/// An element whose box is the one its own row gave, or else the union of
/// its children's.
struct Node<T> {
    key: u32,
    bbox: Option<BBox>,
    children: Vec<T>,
}

impl<T> Node<T> {
    fn new(key: u32, bbox: Option<BBox>) -> Self {
        Self {
            key,
            bbox,
            children: Vec::new(),
        }
    }
}

type LineNode = Node<Word>;
type ParagraphNode = Node<LineNode>;
type BlockNode = Node<ParagraphNode>;

#[derive(Default)]
struct Builder {
    blocks: Vec<BlockNode>,
}

impl Builder {
    fn push(&mut self, row: Row<'_>) {
        match row.level {
            2 => self.blocks.push(Node::new(row.block, Some(row.bbox))),
            3 => {
                let block = open(&mut self.blocks, row.block);
                block.children.push(Node::new(row.paragraph, Some(row.bbox)));
            }
            4 => {
                let block = open(&mut self.blocks, row.block);
                let paragraph = open(&mut block.children, row.paragraph);
                paragraph.children.push(Node::new(row.line, Some(row.bbox)));
            }
            5 if !row.text.trim().is_empty() => {
                let block = open(&mut self.blocks, row.block);
                let paragraph = open(&mut block.children, row.paragraph);
                let line = open(&mut paragraph.children, row.line);
                line.children.push(Word {
                    bbox: row.bbox,
                    text: row.text.to_owned(),
                    confidence: row.confidence,
                });
            }
            _ => {}
        }
    }

    fn finish(self) -> Vec<Block> {
        self.blocks
            .into_iter()
            .filter_map(|block| {
                let paragraphs: Vec<Paragraph> = block
                    .children
                    .into_iter()
                    .filter_map(|paragraph| {
                        let lines: Vec<Line> = paragraph
                            .children
                            .into_iter()
                            .filter(|line| !line.children.is_empty())
                            .map(|line| Line {
                                bbox: line.bbox.unwrap_or_else(|| union(line.children.iter().map(|w| w.bbox))),
                                words: line.children,
                            })
                            .collect();
                        (!lines.is_empty()).then(|| Paragraph {
                            bbox: paragraph.bbox.unwrap_or_else(|| union(lines.iter().map(|l| l.bbox))),
                            lines,
                        })
                    })
                    .collect();
                (!paragraphs.is_empty()).then(|| Block {
                    bbox: block.bbox.unwrap_or_else(|| union(paragraphs.iter().map(|p| p.bbox))),
                    paragraphs,
                })
            })
            .collect()
    }
}

/// The last node of `nodes` if it has `key`, else a new one (without a box
/// of its own) appended.
fn open<T>(nodes: &mut Vec<Node<T>>, key: u32) -> &mut Node<T> {
    if nodes.last().is_none_or(|n| n.key != key) {
        nodes.push(Node::new(key, None));
    }
    let last = nodes.len() - 1;
    &mut nodes[last]
}

fn union(boxes: impl Iterator<Item = BBox>) -> BBox {
    boxes
        .reduce(|a, b| BBox {
            left: a.left.min(b.left),
            top: a.top.min(b.top),
            right: a.right.max(b.right),
            bottom: a.bottom.max(b.bottom),
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use skep_api::FailureReason;

    const PAGE_0001: &str = include_str!("../../tests/fixtures/layout/page-0001.psm6.tsv");

    /// A word-or-structure row: level, block/paragraph/line/word numbers,
    /// left top width height.
    fn row(level: u8, [b, p, l, w]: [u32; 4], bbox: [i64; 4], conf: &str, text: &str) -> String {
        format!(
            "{level}\t1\t{b}\t{p}\t{l}\t{w}\t{}\t{}\t{}\t{}\t{conf}\t{text}\n",
            bbox[0], bbox[1], bbox[2], bbox[3]
        )
    }

    #[test]
    fn reads_a_real_tesseract_page() {
        let page = from_tesseract_tsv(PAGE_0001, 1, 1240, 880, 300).unwrap();
        assert_eq!((page.number, page.width, page.height, page.dpi), (1, 1240, 880, 300));
        let words: Vec<&Word> = page.words().collect();
        assert_eq!(words.len(), 111, "every level-5 row of the capture is a word");
        assert_eq!(page.blocks.len(), 1);
        assert_eq!(page.blocks[0].paragraphs[0].lines.len(), 12);
        assert_eq!(words[0].text, "Birds");
        assert_eq!(
            words[0].bbox,
            BBox {
                left: 90,
                top: 86,
                right: 171,
                bottom: 113
            }
        );
        assert!((words[0].confidence - 96.78491).abs() < 1e-4);
        assert_eq!(words[110].text, "live.");
        assert_eq!(
            page.blocks[0].bbox,
            BBox {
                left: 90,
                top: 86,
                right: 1071,
                bottom: 758
            }
        );
    }

    #[test]
    fn header_row_is_optional() {
        let body = PAGE_0001.split_once('\n').unwrap().1;
        assert!(!body.starts_with("level"));
        let with = from_tesseract_tsv(PAGE_0001, 1, 1240, 880, 300).unwrap();
        let without = from_tesseract_tsv(body, 1, 1240, 880, 300).unwrap();
        assert_eq!(with, without);
    }

    #[test]
    fn blank_words_and_the_elements_they_leave_empty_are_dropped() {
        let tsv = [
            row(1, [0, 0, 0, 0], [0, 0, 100, 100], "-1", ""),
            row(2, [1, 0, 0, 0], [0, 0, 50, 50], "-1", ""),
            row(3, [1, 1, 0, 0], [0, 0, 50, 50], "-1", ""),
            row(4, [1, 1, 1, 0], [0, 0, 50, 10], "-1", ""),
            row(5, [1, 1, 1, 1], [0, 0, 10, 10], "90", " "),
            row(5, [1, 1, 1, 2], [20, 0, 10, 10], "90", ""),
            row(4, [1, 1, 2, 0], [0, 20, 50, 10], "-1", ""),
            row(5, [1, 1, 2, 1], [0, 20, 10, 10], "80", "kept"),
            row(2, [2, 0, 0, 0], [60, 60, 10, 10], "-1", ""),
            row(3, [2, 1, 0, 0], [60, 60, 10, 10], "-1", ""),
        ]
        .concat();
        let page = from_tesseract_tsv(&tsv, 3, 100, 100, 72).unwrap();
        assert_eq!(page.blocks.len(), 1, "the image block without words is gone");
        let lines = &page.blocks[0].paragraphs[0].lines;
        assert_eq!(lines.len(), 1, "the line of blank words is gone");
        assert_eq!(lines[0].words.len(), 1);
        assert_eq!(lines[0].words[0].text, "kept");
    }

    #[test]
    fn confidences_are_clamped_to_0_100() {
        let tsv = [
            row(5, [1, 1, 1, 1], [0, 0, 1, 1], "-1", "a"),
            row(5, [1, 1, 1, 2], [0, 0, 1, 1], "250", "b"),
            row(5, [1, 1, 1, 3], [0, 0, 1, 1], "42.5", "c"),
            row(5, [1, 1, 1, 4], [0, 0, 1, 1], "NaN", "d"),
        ]
        .concat();
        let page = from_tesseract_tsv(&tsv, 1, 10, 10, 72).unwrap();
        let confidences: Vec<(String, f32)> = page.words().map(|w| (w.text.clone(), w.confidence)).collect();
        assert_eq!(
            confidences,
            vec![("a".into(), 0.0), ("b".into(), 100.0), ("c".into(), 42.5)],
            "a NaN confidence makes the row malformed"
        );
    }

    #[test]
    fn boxes_are_clamped_to_the_page() {
        let tsv = [
            row(5, [1, 1, 1, 1], [-20, -5, 30, 10], "90", "left"),
            row(5, [1, 1, 1, 2], [90, 95, 50, 50], "90", "right"),
            row(5, [1, 1, 1, 3], [500, 500, 5, 5], "90", "outside"),
            row(5, [1, 1, 1, 4], [i64::MAX - 1, 0, i64::MAX, 1], "90", "huge"),
        ]
        .concat();
        let page = from_tesseract_tsv(&tsv, 1, 100, 100, 72).unwrap();
        let boxes: Vec<BBox> = page.words().map(|w| w.bbox).collect();
        assert_eq!(
            boxes[0],
            BBox {
                left: 0,
                top: 0,
                right: 10,
                bottom: 5
            }
        );
        assert_eq!(
            boxes[1],
            BBox {
                left: 90,
                top: 95,
                right: 100,
                bottom: 100
            }
        );
        assert_eq!(
            boxes[2],
            BBox {
                left: 100,
                top: 100,
                right: 100,
                bottom: 100
            }
        );
        assert_eq!(
            boxes[3],
            BBox {
                left: 100,
                top: 0,
                right: 100,
                bottom: 1
            }
        );
        assert_eq!(
            page.blocks[0].bbox,
            BBox {
                left: 0,
                top: 0,
                right: 100,
                bottom: 100
            }
        );
    }

    #[test]
    fn words_without_parent_rows_get_lines_with_their_union_box() {
        let tsv = [
            row(5, [1, 1, 1, 1], [10, 10, 10, 10], "90", "one"),
            row(5, [1, 1, 1, 2], [30, 12, 10, 10], "90", "two"),
            row(5, [1, 1, 2, 1], [10, 40, 10, 10], "90", "three"),
            row(5, [2, 1, 1, 1], [10, 80, 10, 10], "90", "four"),
        ]
        .concat();
        let page = from_tesseract_tsv(&tsv, 1, 100, 100, 72).unwrap();
        assert_eq!(page.blocks.len(), 2);
        let lines = &page.blocks[0].paragraphs[0].lines;
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0].bbox,
            BBox {
                left: 10,
                top: 10,
                right: 40,
                bottom: 22
            }
        );
        assert_eq!(
            page.blocks[0].bbox,
            BBox {
                left: 10,
                top: 10,
                right: 40,
                bottom: 50
            }
        );
    }

    #[test]
    fn malformed_rows_are_skipped() {
        let tsv = [
            "garbage\n".to_owned(),
            "5\t1\t1\t1\t1\t1\t0\t0\t10\n".to_owned(),
            "9\t1\t1\t1\t1\t1\t0\t0\t10\t10\t90\tlevel-nine\n".to_owned(),
            "5\t1\t1\t1\t1\t1\t0\t0\t-10\t10\t90\tnegative\n".to_owned(),
            "5\t1\t1\t1\t1\t1\t0\tx\t10\t10\t90\tnot-a-number\n".to_owned(),
            "5\t1\t-1\t1\t1\t1\t0\t0\t10\t10\t90\tnegative-block\n".to_owned(),
            "5\t1\t1\t1\t1\t1\t0\t0\t99999999999999999999\t10\t90\toverflow\n".to_owned(),
            row(5, [1, 1, 1, 2], [0, 0, 10, 10], "90", "good"),
        ]
        .concat();
        let page = from_tesseract_tsv(&tsv, 1, 100, 100, 72).unwrap();
        let texts: Vec<&str> = page.words().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, vec!["good"]);
    }

    #[test]
    fn input_of_which_no_row_parses_is_corrupt() {
        for bad in ["not a tsv", "\u{0}\u{1}\u{2}", "1\t2\t3", "<html></html>\n<body/>"] {
            let error = from_tesseract_tsv(bad, 1, 100, 100, 72).unwrap_err();
            assert_eq!(error.reason, FailureReason::Corrupt, "{bad:?}");
            assert!(!error.message.contains(bad), "no input in the message");
        }
    }

    #[test]
    fn empty_input_is_an_empty_page() {
        for empty in [
            "",
            "\n\n",
            "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n",
        ] {
            let page = from_tesseract_tsv(empty, 2, 100, 100, 72).unwrap();
            assert!(page.blocks.is_empty());
            assert_eq!(page.number, 2);
        }
    }

    #[test]
    fn crlf_line_ends_and_a_byte_order_mark_are_accepted() {
        let tsv = format!("\u{feff}{}", PAGE_0001.replace('\n', "\r\n"));
        let page = from_tesseract_tsv(&tsv, 1, 1240, 880, 300).unwrap();
        assert_eq!(page, from_tesseract_tsv(PAGE_0001, 1, 1240, 880, 300).unwrap());
    }

    #[test]
    fn a_long_hostile_input_is_read_in_linear_time() {
        let line = row(5, [1, 1, 1, 1], [0, 0, 1, 1], "90", "w");
        let tsv = line.repeat(200_000);
        let started = std::time::Instant::now();
        let page = from_tesseract_tsv(&tsv, 1, 10, 10, 72).unwrap();
        assert_eq!(page.words().count(), 200_000);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
