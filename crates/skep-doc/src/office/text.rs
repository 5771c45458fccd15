//! Text output under the meter: lines, table rows, ODF white space.
//!
//! Accounting rule: a byte is counted when it is first produced (read
//! from a part, or written as a separator, space or repeat); moving text
//! from one buffer to another is free. So the meter's count is at least
//! the size of the output (a little more where read text is dropped, such
//! as collapsed white space), and no buffer grows more than one XML token
//! past `max_text_bytes` before the extraction fails.

use super::limits::{MAX_COLUMNS, Meter};
use crate::DocError;

/// Joins the sections of a document (slides, sheets).
pub(crate) const SECTION_SEPARATOR: &str = "\n\x0c\n";

/// Lines joined by `\n`, in one buffer (an empty line costs the byte of
/// its separator, not a `String`).
pub(crate) struct Lines<'m> {
    meter: &'m Meter,
    out: String,
    lines: usize,
}

impl<'m> Lines<'m> {
    pub fn new(meter: &'m Meter) -> Self {
        Self {
            meter,
            out: String::new(),
            lines: 0,
        }
    }

    fn separate(&mut self) -> Result<(), DocError> {
        if self.lines > 0 {
            self.meter.text(1)?;
            self.out.push('\n');
        }
        Ok(())
    }

    /// Appends a line whose bytes are already counted.
    pub fn push(&mut self, line: &str) -> Result<(), DocError> {
        self.separate()?;
        self.lines += 1;
        self.out.push_str(line);
        Ok(())
    }

    /// Appends `line` (counted) `repeat` times; the copies are counted.
    pub fn push_repeated(&mut self, line: &str, repeat: u64) -> Result<(), DocError> {
        self.push(line)?;
        for _ in 1..repeat {
            self.meter.text(line.len())?;
            self.push(line)?;
        }
        Ok(())
    }

    /// Appends the lines of `other`.
    pub fn append(&mut self, other: Lines<'_>) -> Result<(), DocError> {
        if other.lines > 0 {
            self.separate()?;
            self.lines += other.lines;
            self.out.push_str(&other.out);
        }
        Ok(())
    }

    /// The lines, each split at the line breaks it holds.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.out.split('\n').take(if self.lines == 0 { 0 } else { usize::MAX })
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Joins sections with [`SECTION_SEPARATOR`]. A form feed inside a
/// section's own text is dropped: the separator alone marks sections, so
/// the text splits back into exactly as many as there are.
pub(crate) fn join_sections(meter: &Meter, sections: Vec<String>) -> Result<String, DocError> {
    let mut out = String::with_capacity(sections.iter().map(|s| s.len() + SECTION_SEPARATOR.len()).sum());
    for (i, section) in sections.into_iter().enumerate() {
        if i > 0 {
            meter.text(SECTION_SEPARATOR.len())?;
            out.push_str(SECTION_SEPARATOR);
        }
        if section.contains('\x0c') {
            out.extend(section.chars().filter(|c| *c != '\x0c'));
        } else {
            out.push_str(&section);
        }
    }
    Ok(out)
}

/// One table or sheet row as tab-separated cells. Cells keep their
/// columns (empty cells before a non-empty one become empty fields);
/// trailing empty cells cost nothing, so an empty cell repeated a billion
/// times is free, and a row is empty until a cell with text is put.
#[derive(Debug, Default)]
pub(crate) struct Row {
    text: String,
    /// Columns written so far (the last written column + 1).
    filled: u64,
    /// Column of the next cell.
    pos: u64,
    /// Non-empty cells written.
    cells: u64,
}

impl Row {
    /// Moves to column `col` (0-based) if it is right of the next one.
    pub fn seek(&mut self, col: u64) {
        self.pos = self.pos.max(col);
    }

    /// Puts `text` (counted once already) in `repeat` cells from the next
    /// column on. Tabs and line breaks in it become spaces.
    pub fn put(&mut self, meter: &Meter, text: &str, repeat: u64) -> Result<(), DocError> {
        if text.is_empty() {
            self.pos = self.pos.saturating_add(repeat);
            return Ok(());
        }
        let end = self.pos.saturating_add(repeat);
        if end > MAX_COLUMNS {
            return Err(DocError::too_large(format!(
                "a row is wider than {MAX_COLUMNS} columns"
            )));
        }
        meter.cells(repeat)?;
        let clean: std::borrow::Cow<'_, str> = if text.contains(['\t', '\n', '\r']) {
            text.replace(['\t', '\n', '\r'], " ").into()
        } else {
            text.into()
        };
        for col in self.pos..end {
            let tabs = if self.filled == 0 { col } else { col + 1 - self.filled };
            let copy = if col == self.pos { 0 } else { clean.len() };
            meter.text(tabs as usize + copy)?;
            self.text.extend(std::iter::repeat_n('\t', tabs as usize));
            self.text.push_str(&clean);
            self.filled = col + 1;
            self.cells += 1;
        }
        self.pos = end;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.cells == 0
    }

    pub fn cells(&self) -> u64 {
        self.cells
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

/// Repeats of a row beyond the first: counts their cells.
pub(crate) fn count_row_repeats(meter: &Meter, row: &Row, repeat: u64) -> Result<(), DocError> {
    meter.cells(row.cells().saturating_mul(repeat.saturating_sub(1)))
}

/// Text with ODF white-space rules (ODF 1.2 part 1, 6.1.2): a run of
/// space, tab, CR and LF becomes one space, dropped at the start of a
/// paragraph and (see [`Collapsing::finish`]) at its end; spaces made by
/// elements (`text:s`, `text:tab`) are not part of a run.
#[derive(Debug, Default)]
pub(crate) struct Collapsing {
    pub text: String,
    /// The last byte of `text` is a space made from collapsed white space.
    soft_space: bool,
}

impl Collapsing {
    pub fn push_collapsed(&mut self, meter: &Meter, s: &str) -> Result<(), DocError> {
        let before = self.text.len();
        for c in s.chars() {
            if matches!(c, ' ' | '\t' | '\n' | '\r') {
                if !self.text.is_empty() && !self.soft_space {
                    self.text.push(' ');
                    self.soft_space = true;
                }
            } else {
                self.text.push(c);
                self.soft_space = false;
            }
        }
        meter.text(self.text.len() - before)
    }

    /// Appends `s` as it is (tabs, breaks, `text:s` spaces).
    pub fn push_verbatim(&mut self, meter: &Meter, s: &str) -> Result<(), DocError> {
        meter.text(s.len())?;
        self.text.push_str(s);
        self.soft_space = false;
        Ok(())
    }

    /// Appends `n` spaces (`text:s`).
    pub fn push_spaces(&mut self, meter: &Meter, n: u64) -> Result<(), DocError> {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        meter.text(n)?;
        self.text.extend(std::iter::repeat_n(' ', n));
        self.soft_space = false;
        Ok(())
    }

    pub fn finish(mut self) -> String {
        if self.soft_space {
            self.text.pop();
        }
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::office::OfficeLimits;

    #[test]
    fn row_keeps_columns_and_drops_trailing_empties() {
        let meter = Meter::new(&OfficeLimits::default());
        let mut row = Row::default();
        row.put(&meter, "", 2).unwrap();
        row.put(&meter, "a", 1).unwrap();
        row.put(&meter, "", 1).unwrap();
        row.put(&meter, "b\tc", 2).unwrap();
        row.put(&meter, "", u64::MAX).unwrap();
        assert_eq!(row.cells(), 3);
        assert_eq!(row.into_text(), "\t\ta\t\tb c\tb c");
    }

    #[test]
    fn row_refuses_a_cell_past_the_last_column() {
        let meter = Meter::new(&OfficeLimits::default());
        let mut row = Row::default();
        row.put(&meter, "", 1_000_000_000).unwrap();
        let err = row.put(&meter, "x", 1).unwrap_err();
        assert_eq!(err.reason, skep_api::FailureReason::TooLarge);
    }

    #[test]
    fn collapsing_follows_odf_white_space() {
        let meter = Meter::new(&OfficeLimits::default());
        let mut p = Collapsing::default();
        p.push_collapsed(&meter, "  \n a \t b").unwrap();
        p.push_spaces(&meter, 2).unwrap();
        p.push_collapsed(&meter, " c  ").unwrap();
        // A space after `text:s` spaces is not at the start of a run.
        assert_eq!(p.finish(), "a b   c");
    }

    #[test]
    fn spaces_are_counted_before_they_are_made() {
        let limits = OfficeLimits {
            max_text_bytes: 100,
            ..OfficeLimits::default()
        };
        let meter = Meter::new(&limits);
        let mut p = Collapsing::default();
        let err = p.push_spaces(&meter, u64::MAX).unwrap_err();
        assert_eq!(err.reason, skep_api::FailureReason::TooLarge);
        assert!(p.text.is_empty());
    }
}
