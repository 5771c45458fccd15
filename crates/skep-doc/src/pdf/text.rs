//! A page's words as invisible text: one text object per line, each word
//! at its box and a space stretched over the gap to the next word. Text
//! extraction (checked with Poppler, pdfminer.six and pypdf) then returns
//! the words in order, one space between words and one line per line, and
//! a search hit highlights the word's place on the page image.
//!
//! Geometry: a line's extent is the union of its word boxes, leaving out
//! boxes over 1.5 times the line's median word height (a smudge or an
//! accent mark swells one word's box). That height is evened out within a
//! block (lines within 25% of the block's median take the median) and set
//! as the font's ascent-to-descent; the baseline sits the font's descent
//! above the extent's bottom. A word's extracted box so has about its
//! line's bottom and height. Horizontal scaling (`Tz`) stretches each word
//! to its box width.

use pdf_writer::types::TextRenderingMode;
use pdf_writer::{Content, Str};

use super::charset::{Charset, SPACE};
use super::font::{DESCENT_FRACTION, EXTENT, GLYPH_WIDTH, RESOURCE_NAME};
use crate::layout::{BBox, Line, PageLayout};

/// Smallest font size written, in points: boxes of zero height still get
/// findable text.
const MIN_FONT_SIZE: f32 = 1.0;
/// Bounds of the horizontal scaling, in percent. A box too narrow for its
/// text gets text at least this wide and overflowing the box: squeezed
/// tighter, Poppler takes repeated letters for overprinted duplicates and
/// drops them.
const MIN_SCALING: f32 = 25.0;
const MAX_SCALING: f32 = 100_000.0;

/// Maps a layout's pixel frame onto a page, in points, origin bottom left.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame {
    width_px: u32,
    height_px: u32,
    scale_x: f32,
    scale_y: f32,
    width_pt: f32,
    height_pt: f32,
}

impl Frame {
    /// `None` when the pixel frame is empty: nothing can be placed on it.
    pub(crate) fn new(width_px: u32, height_px: u32, width_pt: f32, height_pt: f32) -> Option<Self> {
        (width_px > 0 && height_px > 0).then(|| Self {
            width_px,
            height_px,
            scale_x: width_pt / width_px as f32,
            scale_y: height_pt / height_px as f32,
            width_pt,
            height_pt,
        })
    }

    /// The box clipped to the frame, as (left, bottom, right, top) points.
    fn place(&self, bbox: BBox) -> [f32; 4] {
        let left = bbox.left.min(self.width_px);
        let right = bbox.right.clamp(left, self.width_px);
        let top = bbox.top.min(self.height_px);
        let bottom = bbox.bottom.clamp(top, self.height_px);
        [
            left as f32 * self.scale_x,
            self.height_pt - bottom as f32 * self.scale_y,
            right as f32 * self.scale_x,
            self.height_pt - top as f32 * self.scale_y,
        ]
    }
}

/// A word ready to show: its box and its codes.
struct Placed {
    bbox: BBox,
    codes: Vec<u8>,
    glyphs: usize,
}

/// Appends the invisible text of `layout` to `content`; returns whether
/// any text was written (the page then needs the font).
pub(crate) fn write_text(content: &mut Content, layout: &PageLayout, frame: Frame, charset: &mut Charset) -> bool {
    let mut wrote = false;
    for block in &layout.blocks {
        let lines: Vec<PlacedLine> = block
            .paragraphs
            .iter()
            .flat_map(|p| &p.lines)
            .filter_map(|line| PlacedLine::new(line, frame, charset))
            .collect();
        let Some(common) = common_size(&lines) else {
            continue;
        };
        for line in &lines {
            let height = line.top - line.bottom;
            let height = if (height - common).abs() <= SIZE_TOLERANCE * common {
                common
            } else {
                height
            };
            write_line(content, line, (height / EXTENT).max(MIN_FONT_SIZE), frame);
        }
        wrote = true;
    }
    wrote
}

/// Lines whose height is within this fraction of their block's median line
/// height are set at the median size.
// NB: Poppler starts a new block, and `pdftotext` a blank line, when the
// font size changes by a few percent between lines; OCR line boxes vary
// that much with ascenders and descenders.
const SIZE_TOLERANCE: f32 = 0.25;

/// A line's words ready to show, and its vertical extent in points.
struct PlacedLine {
    words: Vec<Placed>,
    bottom: f32,
    top: f32,
}

impl PlacedLine {
    /// `None` when no word of the line has visible text.
    fn new(line: &Line, frame: Frame, charset: &mut Charset) -> Option<Self> {
        let mut words = Vec::with_capacity(line.words.len());
        for word in &line.words {
            let mut codes = Vec::with_capacity(2 * word.text.len() + 2);
            let glyphs = charset.encode(word.text.trim(), &mut codes);
            if glyphs > 0 {
                words.push(Placed {
                    bbox: word.bbox,
                    codes,
                    glyphs,
                });
            }
        }
        let mut heights: Vec<u32> = words.iter().map(|w| w.bbox.height()).collect();
        heights.sort_unstable();
        let median = u64::from(*heights.get(heights.len() / 2)?);
        // NB: one word's box swollen by a smudge or a mark above the line
        // would otherwise set the whole line's size and baseline.
        let union = words
            .iter()
            .map(|w| w.bbox)
            .filter(|b| 2 * u64::from(b.height()) <= 3 * median || median == 0)
            .reduce(union)?;
        let [_, bottom, _, top] = frame.place(union);
        Some(Self { words, bottom, top })
    }
}

/// The median line height of a block, `None` for a block without text.
fn common_size(lines: &[PlacedLine]) -> Option<f32> {
    let mut heights: Vec<f32> = lines.iter().map(|line| line.top - line.bottom).collect();
    heights.sort_by(f32::total_cmp);
    heights.get(heights.len() / 2).copied()
}

/// One text object: the line's words at their boxes, on a baseline the
/// font's descent above the line's bottom.
fn write_line(content: &mut Content, line: &PlacedLine, size: f32, frame: Frame) {
    let baseline = round(line.bottom + DESCENT_FRACTION * size);
    let glyph = GLYPH_WIDTH / 1000.0 * size;
    // Where each word starts and its horizontal scaling, as written.
    let placed: Vec<(f32, f32)> = line
        .words
        .iter()
        .map(|word| {
            let [left, _, right, _] = frame.place(word.bbox);
            let natural = word.glyphs as f32 * glyph;
            let scaling = round((100.0 * (right - left) / natural).clamp(MIN_SCALING, MAX_SCALING));
            // NB: text overflowing the page's right edge is lost to
            // extraction; a word pushed wider than its box stays inside.
            let left = round(left.min(frame.width_pt - natural * scaling / 100.0).max(0.0));
            (left, scaling)
        })
        .collect();

    content.begin_text();
    content.set_text_rendering_mode(TextRenderingMode::Invisible);
    content.set_font(RESOURCE_NAME, round(size));
    for (i, (word, &(left, scaling))) in line.words.iter().zip(&placed).enumerate() {
        content.set_text_matrix([1.0, 0.0, 0.0, 1.0, left, baseline]);
        content.set_horizontal_scaling(scaling);
        content.show(Str(&word.codes));
        if let Some(&(next, _)) = placed.get(i + 1) {
            // NB: a space spanning the gap to the next word: extractors that
            // go by characters see the word boundary, and those that go by
            // geometry find no gap left to add a second space for.
            let end = left + word.glyphs as f32 * glyph * scaling / 100.0;
            let space = (100.0 * (next - end) / glyph).clamp(MIN_SCALING, MAX_SCALING);
            content.set_horizontal_scaling(round(space));
            content.show(Str(&SPACE.to_be_bytes()));
        }
    }
    content.end_text();
}

fn union(a: BBox, b: BBox) -> BBox {
    BBox {
        left: a.left.min(b.left),
        top: a.top.min(b.top),
        right: a.right.max(b.right),
        bottom: a.bottom.max(b.bottom),
    }
}

/// Two decimals are 1/7200 inch: finer than any scan, and short streams.
fn round(value: f32) -> f32 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Block, Paragraph, Word};

    fn word(text: &str, left: u32, top: u32, right: u32, bottom: u32) -> Word {
        Word {
            bbox: BBox {
                left,
                top,
                right,
                bottom,
            },
            text: text.into(),
            confidence: 90.0,
        }
    }

    fn page(lines: Vec<Vec<Word>>) -> PageLayout {
        PageLayout {
            number: 1,
            width: 720,
            height: 720,
            dpi: 72,
            blocks: vec![Block {
                bbox: BBox::default(),
                paragraphs: vec![Paragraph {
                    bbox: BBox::default(),
                    lines: lines
                        .into_iter()
                        .map(|words| Line {
                            bbox: BBox::default(),
                            words,
                        })
                        .collect(),
                }],
            }],
        }
    }

    fn render(layout: &PageLayout) -> (bool, String) {
        let frame = Frame::new(layout.width, layout.height, 720.0, 720.0).unwrap();
        let mut content = Content::new();
        let mut charset = Charset::default();
        let wrote = write_text(&mut content, layout, frame, &mut charset);
        (wrote, String::from_utf8_lossy(&content.finish()).into_owned())
    }

    #[test]
    fn a_word_is_stretched_to_its_box_on_the_line_baseline() {
        // A 20 pt high box: 25 pt text (0.8 em from descent to ascent);
        // 4 glyphs of 0.5 em are 50 pt, the box is 80 pt wide.
        let (wrote, ops) = render(&page(vec![vec![word("abcd", 100, 80, 180, 100)]]));
        assert!(wrote);
        assert!(ops.contains("3 Tr"), "{ops}");
        assert!(ops.contains("/F1 25 Tf"), "{ops}");
        // baseline: 720 - 100 + 0.15 * 25 = 623.75
        assert!(ops.contains("1 0 0 1 100 623.75 Tm"), "{ops}");
        assert!(ops.contains("160 Tz"), "{ops}");
        assert_eq!(ops.matches("BT").count(), 1);
    }

    #[test]
    fn one_text_object_per_line_and_spaces_between_words() {
        let (_, ops) = render(&page(vec![
            vec![word("ab", 0, 0, 20, 10), word("cd", 30, 0, 50, 10)],
            vec![word("ef", 0, 20, 20, 30)],
        ]));
        assert_eq!(ops.matches("BT").count(), 2);
        // a(3) b(4), a space (1) stretched over the 10 pt gap, then c(5) d(6).
        // 10 px at 72 dpi: font size 12.5, a glyph 6.25 pt, the gap 160%.
        assert!(
            ops.contains("(\\000\\003\\000\\004) Tj\n160 Tz\n(\\000\\001) Tj"),
            "{ops}"
        );
        assert!(ops.contains("(\\000\\005\\000\\006) Tj"), "{ops}");
        assert_eq!(ops.matches("(\\000\\001) Tj").count(), 1, "{ops}");
    }

    #[test]
    fn odd_words_never_panic_and_blank_ones_are_skipped() {
        let (wrote, ops) = render(&page(vec![
            vec![word("   ", 0, 0, 10, 10), word("\u{7}", 0, 0, 10, 10)],
            vec![word("zero", 5, 5, 5, 5)],
            vec![word("outside", 5_000, 9_000, u32::MAX, u32::MAX)],
            vec![word("inverted", 50, 50, 10, 10)],
        ]));
        assert!(wrote);
        assert_eq!(ops.matches("BT").count(), 3, "{ops}");
        assert!(!ops.contains("NaN") && !ops.contains("inf"), "{ops}");
    }

    #[test]
    fn empty_layout_writes_nothing() {
        let (wrote, ops) = render(&page(vec![]));
        assert!(!wrote);
        assert!(ops.is_empty());
        assert!(Frame::new(0, 10, 10.0, 10.0).is_none());
    }
}
