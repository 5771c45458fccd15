//! Flowing text (documents, slides): paragraphs one per line, tables row
//! by row with tab-separated cells, boxes nested in paragraphs after the
//! paragraph that anchors them, notes after everything else.
//!
//! The format readers call `open_*`/`close_*` in matching pairs as their
//! XML elements open and close, so the frame on top is always the one the
//! last unclosed call opened.

use std::io::Read;

use super::limits::Meter;
use super::text::{Collapsing, Lines, Row, count_row_repeats};
use super::xml::{Ev, Start, Xml};
use crate::DocError;

enum Frame<'m> {
    Para {
        text: Collapsing,
        /// Lines of nested boxes, which follow this paragraph.
        after: Lines<'m>,
    },
    Row {
        row: Row,
        repeat: u64,
    },
    Cell {
        text: String,
        repeat: u64,
    },
    /// Paragraphs inside go after the body (footnotes, endnotes).
    Deferred,
}

pub(crate) struct Flow<'m> {
    meter: &'m Meter,
    lines: Lines<'m>,
    deferred: Lines<'m>,
    stack: Vec<Frame<'m>>,
    keep_empty: bool,
}

impl<'m> Flow<'m> {
    /// `keep_empty`: an empty paragraph is an empty line (documents) or
    /// nothing (slides, whose empty placeholders would be noise).
    pub fn new(meter: &'m Meter, keep_empty: bool) -> Self {
        Self {
            meter,
            lines: Lines::new(meter),
            deferred: Lines::new(meter),
            stack: Vec::new(),
            keep_empty,
        }
    }

    pub fn open_para(&mut self) {
        self.stack.push(Frame::Para {
            text: Collapsing::default(),
            after: Lines::new(self.meter),
        });
    }

    pub fn close_para(&mut self) -> Result<(), DocError> {
        if let Some(Frame::Para { text, after }) = self.stack.pop() {
            let line = text.finish();
            let mut block = Lines::new(self.meter);
            if self.keep_empty || !line.is_empty() {
                block.push(&line)?;
            }
            block.append(after)?;
            self.deliver(block)?;
        }
        Ok(())
    }

    /// A table row; `repeat` is ODF's `number-rows-repeated`.
    pub fn open_row(&mut self, repeat: u64) {
        self.stack.push(Frame::Row {
            row: Row::default(),
            repeat: repeat.max(1),
        });
    }

    /// Closes a row: nothing if all its cells are empty.
    pub fn close_row(&mut self) -> Result<(), DocError> {
        if let Some(Frame::Row { row, repeat }) = self.stack.pop() {
            if row.is_empty() {
                return Ok(());
            }
            count_row_repeats(self.meter, &row, repeat)?;
            let line = row.into_text();
            // NB: repeats matter only for top-level rows; inside a cell or a
            // box one copy says what the row says.
            if self.stack.is_empty() {
                return self.lines.push_repeated(&line, repeat);
            }
            let mut block = Lines::new(self.meter);
            block.push(&line)?;
            self.deliver(block)?;
        }
        Ok(())
    }

    /// A table cell; `repeat` is ODF's `number-columns-repeated`.
    pub fn open_cell(&mut self, repeat: u64) {
        self.stack.push(Frame::Cell {
            text: String::new(),
            repeat: repeat.max(1),
        });
    }

    pub fn close_cell(&mut self) -> Result<(), DocError> {
        if let Some(Frame::Cell { text, repeat }) = self.stack.pop() {
            match self.stack.last_mut() {
                Some(Frame::Row { row, .. }) => row.put(self.meter, &text, repeat)?,
                _ => {
                    let mut block = Lines::new(self.meter);
                    block.push(&text)?;
                    self.deliver(block)?;
                }
            }
        }
        Ok(())
    }

    pub fn open_deferred(&mut self) {
        self.stack.push(Frame::Deferred);
    }

    pub fn close_deferred(&mut self) {
        if let Some(Frame::Deferred) = self.stack.last() {
            self.stack.pop();
        }
    }

    fn para(&mut self) -> Option<&mut Collapsing> {
        match self.stack.last_mut() {
            Some(Frame::Para { text, .. }) => Some(text),
            _ => None,
        }
    }

    /// Text as it is (OOXML). Ignored outside a paragraph.
    pub fn text(&mut self, s: &str) -> Result<(), DocError> {
        let meter = self.meter;
        match self.para() {
            Some(p) => p.push_verbatim(meter, s),
            None => Ok(()),
        }
    }

    /// Text an element stands for (tab, line break), kept as it is even
    /// under ODF white-space rules. Ignored outside a paragraph.
    pub fn insert(&mut self, s: &str) -> Result<(), DocError> {
        self.text(s)
    }

    /// Text under ODF white-space rules. Ignored outside a paragraph.
    pub fn text_collapsed(&mut self, s: &str) -> Result<(), DocError> {
        let meter = self.meter;
        match self.para() {
            Some(p) => p.push_collapsed(meter, s),
            None => Ok(()),
        }
    }

    pub fn spaces(&mut self, n: u64) -> Result<(), DocError> {
        let meter = self.meter;
        match self.para() {
            Some(p) => p.push_spaces(meter, n),
            None => Ok(()),
        }
    }

    /// Where the lines of a closed paragraph or row go: the enclosing
    /// paragraph's after-lines, the enclosing cell (joined by spaces), the
    /// notes, or the output.
    fn deliver(&mut self, block: Lines<'m>) -> Result<(), DocError> {
        match self.stack.last_mut() {
            None => self.lines.append(block)?,
            Some(Frame::Para { after, .. }) => after.append(block)?,
            Some(Frame::Cell { text, .. }) => {
                for line in block.iter().filter(|l| !l.is_empty()) {
                    if !text.is_empty() {
                        self.meter.text(1)?;
                        text.push(' ');
                    }
                    text.push_str(line);
                }
            }
            Some(Frame::Row { row, .. }) => {
                for line in block.iter() {
                    row.put(self.meter, line, 1)?;
                }
            }
            Some(Frame::Deferred) => self.deferred.append(block)?,
        }
        Ok(())
    }

    /// The text: body lines, then deferred lines. Frames still open (a
    /// reader stopped early) are dropped.
    pub fn finish(mut self) -> Result<String, DocError> {
        let deferred = std::mem::replace(&mut self.deferred, Lines::new(self.meter));
        self.lines.append(deferred)?;
        Ok(self.lines.finish())
    }

    /// The text so far, leaving an empty flow to go on with.
    pub fn take(&mut self) -> Result<String, DocError> {
        let fresh = Flow::new(self.meter, self.keep_empty);
        std::mem::replace(self, fresh).finish()
    }
}

/// What an element does to the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Para,
    /// A table row, repeated (ODF `number-rows-repeated`).
    Row(u64),
    /// A table cell, repeated (ODF `number-columns-repeated`).
    Cell(u64),
    /// An element whose character data is text (`w:t`, `a:t`); only used
    /// by readers that do not take all paragraph text.
    Text,
    /// Its paragraphs go after the body.
    Deferred,
    /// A slide or page: the text so far is a section.
    Section,
    Other,
}

/// What a reader makes of a start tag.
pub(crate) enum Step {
    Open(Kind),
    /// Text the element stands for (a tab, a line break).
    Insert(&'static str),
    /// `n` spaces (ODF `text:s`).
    Spaces(u64),
    /// An element whose content is no text (properties, deleted
    /// revisions, notes of a slide).
    Skip,
}

/// How a format reader walks a part.
pub(crate) struct Rules {
    pub classify: fn(&Start<'_>) -> Result<Step, DocError>,
    /// ODF: all character data in a paragraph is text, white space
    /// collapsed. OOXML: only character data in [`Kind::Text`] elements,
    /// as it is.
    pub odf_text: bool,
}

/// Walks one XML part into `flow`. [`Kind::Section`] elements close a
/// section each into `sections`.
pub(crate) fn walk<R: Read>(
    xml: &mut Xml<'_, R>,
    flow: &mut Flow<'_>,
    sections: &mut Vec<String>,
    rules: &Rules,
) -> Result<(), DocError> {
    let mut open: Vec<Kind> = Vec::new();
    let mut in_text = 0usize;
    loop {
        let step = match xml.next()? {
            Ev::Start(s) => (rules.classify)(&s)?,
            Ev::Text(t) => {
                if rules.odf_text {
                    flow.text_collapsed(&t)?;
                } else if in_text > 0 {
                    flow.text(&t)?;
                }
                continue;
            }
            Ev::End => {
                match open.pop() {
                    Some(Kind::Para) => flow.close_para()?,
                    Some(Kind::Row(_)) => flow.close_row()?,
                    Some(Kind::Cell(_)) => flow.close_cell()?,
                    Some(Kind::Text) => in_text = in_text.saturating_sub(1),
                    Some(Kind::Deferred) => flow.close_deferred(),
                    Some(Kind::Section) => {
                        sections.push(flow.take()?);
                        flow.meter.sections(sections.len())?;
                    }
                    Some(Kind::Other) | None => {}
                }
                continue;
            }
            Ev::Other => continue,
            Ev::Eof => return Ok(()),
        };
        match step {
            Step::Skip => xml.skip()?,
            Step::Insert(s) => {
                flow.insert(s)?;
                open.push(Kind::Other);
            }
            Step::Spaces(n) => {
                flow.spaces(n)?;
                open.push(Kind::Other);
            }
            Step::Open(kind) => {
                match kind {
                    Kind::Para => flow.open_para(),
                    Kind::Row(n) => flow.open_row(n),
                    Kind::Cell(n) => flow.open_cell(n),
                    Kind::Text => in_text += 1,
                    Kind::Deferred => flow.open_deferred(),
                    Kind::Section => {
                        // NB: text before the first section (none in real
                        // files) is dropped, not merged into it.
                        flow.take()?;
                    }
                    Kind::Other => {}
                }
                open.push(kind);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::office::OfficeLimits;

    #[test]
    fn boxes_follow_their_paragraph_and_cells_join() {
        let meter = Meter::new(&OfficeLimits::default());
        let mut flow = Flow::new(&meter, true);
        flow.open_para();
        flow.text("anchor").unwrap();
        flow.open_para();
        flow.text("in a box").unwrap();
        flow.close_para().unwrap();
        flow.text(" text").unwrap();
        flow.close_para().unwrap();
        flow.open_row(1);
        for cell in [&["a", "b"][..], &[][..], &["c"][..]] {
            flow.open_cell(1);
            for p in cell {
                flow.open_para();
                flow.text(p).unwrap();
                flow.close_para().unwrap();
            }
            flow.close_cell().unwrap();
        }
        flow.close_row().unwrap();
        flow.open_deferred();
        flow.open_para();
        flow.text("note").unwrap();
        flow.close_para().unwrap();
        flow.close_deferred();
        flow.open_para();
        flow.close_para().unwrap();
        assert_eq!(flow.finish().unwrap(), "anchor text\nin a box\na b\t\tc\n\nnote");
    }
}
