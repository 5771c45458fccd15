//! What a document may make the reader do, and the running count of it.

use std::cell::Cell;

use crate::DocError;

/// Bounds on what a document may make the reader do. Every bound is
/// checked against what the reader actually does (bytes inflated,
/// elements parsed, text produced), never against sizes the file declares.
/// Exceeding one fails the document with `TooLarge`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfficeLimits {
    /// Text produced, separators included.
    pub max_text_bytes: usize,
    /// Entries in the zip archive's central directory.
    pub max_entries: usize,
    /// Bytes inflated from one archive entry (one XML part). One XML token
    /// (a text run, a tag) is buffered whole, so this also bounds the
    /// largest buffer the XML reader holds; see `max_token_bytes`.
    pub max_entry_bytes: u64,
    /// Bytes inflated from all the entries read for one document.
    pub max_total_bytes: u64,
    /// Inflated bytes per compressed byte of an entry, checked while it
    /// inflates once it has produced more than 1 MiB. Deflate reaches about
    /// 1030:1 on repeated input; real XML parts stay well under 100:1.
    pub max_ratio: u64,
    /// Longest run of XML without a `<` or `>` (one text node, one tag),
    /// which the XML reader must hold in memory at once.
    pub max_token_bytes: usize,
    /// XML element nesting depth.
    pub max_depth: usize,
    /// XML elements parsed over all the parts of a document.
    pub max_elements: u64,
    /// Non-empty cells written out (table and sheet cells, repeats
    /// included).
    pub max_cells: u64,
    /// Slides or sheets.
    pub max_sections: usize,
}

impl Default for OfficeLimits {
    fn default() -> Self {
        Self {
            max_text_bytes: 64 << 20,
            max_entries: 10_000,
            max_entry_bytes: 128 << 20,
            max_total_bytes: 512 << 20,
            max_ratio: 200,
            max_token_bytes: 16 << 20,
            max_depth: 256,
            max_elements: 20_000_000,
            max_cells: 10_000_000,
            max_sections: 10_000,
        }
    }
}

/// Widest row written out: Excel's and LibreOffice's column limit (XFD).
/// A non-empty cell beyond it (an ODF `number-columns-repeated` run can
/// place one anywhere) fails the document rather than writing its tabs.
pub(crate) const MAX_COLUMNS: u64 = 1 << 14;

/// The limits of one extraction and what has been spent against them so
/// far. Shared by reference between the archive, XML and text layers of a
/// single-threaded extraction.
#[derive(Debug)]
pub(crate) struct Meter {
    pub limits: OfficeLimits,
    inflated: Cell<u64>,
    elements: Cell<u64>,
    text: Cell<usize>,
    cells: Cell<u64>,
}

impl Meter {
    pub fn new(limits: &OfficeLimits) -> Self {
        Self {
            limits: limits.clone(),
            inflated: Cell::new(0),
            elements: Cell::new(0),
            text: Cell::new(0),
            cells: Cell::new(0),
        }
    }

    /// Counts `n` more inflated bytes against the document's total.
    pub fn inflate(&self, n: u64) -> Result<(), DocError> {
        let total = self.inflated.get().saturating_add(n);
        self.inflated.set(total);
        if total > self.limits.max_total_bytes {
            return Err(DocError::too_large(format!(
                "archive inflates to more than {} bytes",
                self.limits.max_total_bytes
            )));
        }
        Ok(())
    }

    pub fn element(&self) -> Result<(), DocError> {
        let n = self.elements.get() + 1;
        self.elements.set(n);
        if n > self.limits.max_elements {
            return Err(DocError::too_large(format!(
                "document has more than {} XML elements",
                self.limits.max_elements
            )));
        }
        Ok(())
    }

    /// Reserves `n` bytes of output text. Call before the text is stored.
    pub fn text(&self, n: usize) -> Result<(), DocError> {
        let total = self.text.get().saturating_add(n);
        self.text.set(total);
        if total > self.limits.max_text_bytes {
            return Err(DocError::too_large(format!(
                "document text is larger than {} bytes",
                self.limits.max_text_bytes
            )));
        }
        Ok(())
    }

    pub fn cells(&self, n: u64) -> Result<(), DocError> {
        let total = self.cells.get().saturating_add(n);
        self.cells.set(total);
        if total > self.limits.max_cells {
            return Err(DocError::too_large(format!(
                "document has more than {} non-empty cells",
                self.limits.max_cells
            )));
        }
        Ok(())
    }

    pub fn sections(&self, n: usize) -> Result<(), DocError> {
        if n > self.limits.max_sections {
            return Err(DocError::too_large(format!(
                "document has more than {} slides or sheets",
                self.limits.max_sections
            )));
        }
        Ok(())
    }
}
