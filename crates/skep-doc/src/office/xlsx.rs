//! SpreadsheetML (xlsx, xlsm, xltx): one section per sheet in workbook
//! order; each non-empty row a line of tab-separated cells, cells in their
//! columns (an empty cell before a non-empty one is an empty field).
//!
//! Cell values are written as stored: shared and inline strings resolved
//! (`_xHHHH_` escapes decoded), numbers and dates as the digits in the
//! file (no number or date formatting), booleans as `TRUE`/`FALSE`,
//! errors as their code, formulas by their cached value. Chart sheets are
//! empty sections. Comments, headers and footers are left out.

use std::borrow::Cow;
use std::io::Read;

use super::archive::Archive;
use super::limits::Meter;
use super::opc;
use super::text::{Lines, Row};
use super::xml::{Ev, Ns, Xml};
use crate::DocError;

/// The sheets' texts, in workbook order.
pub(crate) fn extract(archive: &mut Archive<'_>, main: &str) -> Result<Vec<String>, DocError> {
    let meter = archive.meter();
    let sheet_ids = sheet_list(archive, main)?;
    let rels = opc::rels(
        archive,
        main,
        &[
            "worksheet",
            "chartsheet",
            "dialogsheet",
            "xlMacrosheet",
            "xlIntlMacrosheet",
            "sharedStrings",
        ],
    )?;
    let strings = match rels
        .iter()
        .find(|r| r.kind == "sharedStrings")
        .and_then(|r| r.target.clone())
    {
        Some(part) => match archive.entry(&part)? {
            Some(entry) => shared_strings(&mut Xml::new(entry, meter), meter)?,
            None => SharedStrings::default(),
        },
        None => SharedStrings::default(),
    };
    let mut sheets = Vec::with_capacity(sheet_ids.len());
    for id in &sheet_ids {
        let rel = rels
            .iter()
            .find(|r| &r.id == id)
            .ok_or_else(|| DocError::corrupt("workbook lists a sheet it does not hold"))?;
        if !matches!(rel.kind.as_str(), "worksheet" | "xlMacrosheet" | "xlIntlMacrosheet") {
            sheets.push(String::new());
            continue;
        }
        let entry = rel
            .target
            .clone()
            .map(|part| archive.entry(&part))
            .transpose()?
            .flatten()
            .ok_or_else(|| DocError::corrupt("workbook lists a sheet it does not hold"))?;
        sheets.push(sheet(&mut Xml::new(entry, meter), meter, &strings)?);
    }
    Ok(sheets)
}

/// The relationship ids of the workbook's `sheets`, in order.
fn sheet_list(archive: &mut Archive<'_>, main: &str) -> Result<Vec<String>, DocError> {
    let meter = archive.meter();
    let entry = archive
        .entry(main)?
        .ok_or_else(|| DocError::corrupt("workbook has no main part"))?;
    let mut xml = Xml::new(entry, meter);
    let mut ids = Vec::new();
    loop {
        match xml.next()? {
            Ev::Start(s) if s.is(Ns::S, "sheet") => {
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

/// The shared string table, in one buffer. Its text counts against a
/// budget of its own of `max_text_bytes`, its items against `max_cells`.
#[derive(Debug, Default)]
struct SharedStrings {
    text: String,
    ends: Vec<u32>,
}

impl SharedStrings {
    fn get(&self, index: usize) -> Option<&str> {
        let end = *self.ends.get(index)? as usize;
        let start = if index == 0 { 0 } else { self.ends[index - 1] as usize };
        self.text.get(start..end)
    }

    fn push(&mut self, meter: &Meter, item: &str) -> Result<(), DocError> {
        self.text.push_str(item);
        let end =
            u32::try_from(self.text.len()).map_err(|_| DocError::too_large("shared strings are larger than 4 GiB"))?;
        self.ends.push(end);
        if self.ends.len() as u64 > meter.limits.max_cells {
            return Err(DocError::too_large(format!(
                "workbook has more than {} shared strings",
                meter.limits.max_cells
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ItemTag {
    Item,
    Text,
    Other,
}

fn shared_strings<R: Read>(xml: &mut Xml<'_, R>, meter: &Meter) -> Result<SharedStrings, DocError> {
    let mut strings = SharedStrings::default();
    let mut item = String::new();
    let mut open: Vec<ItemTag> = Vec::new();
    let mut in_text = 0usize;
    loop {
        let skip = match xml.next()? {
            Ev::Start(s) if s.ns == Ns::S && matches!(s.local(), "rPh" | "phoneticPr" | "rPr" | "extLst") => true,
            Ev::Start(s) => {
                let tag = match (s.ns, s.local()) {
                    (Ns::S, "si") => {
                        item.clear();
                        ItemTag::Item
                    }
                    (Ns::S, "t") => {
                        in_text += 1;
                        ItemTag::Text
                    }
                    _ => ItemTag::Other,
                };
                open.push(tag);
                false
            }
            Ev::Text(t) => {
                if in_text > 0 {
                    if strings.text.len() + item.len() + t.len() > meter.limits.max_text_bytes {
                        return Err(DocError::too_large("shared strings are larger than the text limit"));
                    }
                    item.push_str(&t);
                }
                false
            }
            Ev::End => {
                match open.pop() {
                    Some(ItemTag::Item) => strings.push(meter, &decode_escapes(&item))?,
                    Some(ItemTag::Text) => in_text -= 1,
                    Some(ItemTag::Other) | None => {}
                }
                false
            }
            Ev::Other => false,
            Ev::Eof => return Ok(strings),
        };
        if skip {
            xml.skip()?;
        }
    }
}

fn sheet<R: Read>(xml: &mut Xml<'_, R>, meter: &Meter, strings: &SharedStrings) -> Result<String, DocError> {
    let mut lines = Lines::new(meter);
    let mut row = Row::default();
    let mut cell = Cell::default();
    let mut open: Vec<Tag> = Vec::new();
    loop {
        let skip = match xml.next()? {
            Ev::Start(s) => {
                let tag = match (s.ns, s.local()) {
                    (Ns::S, "row") => Tag::Row,
                    (Ns::S, "c") => {
                        cell = Cell {
                            column: s.attr(Ns::None, "r")?.and_then(|r| column(&r)),
                            kind: CellKind::of(s.attr(Ns::None, "t")?.as_deref()),
                            value: String::new(),
                        };
                        Tag::Cell
                    }
                    (Ns::S, "v") => Tag::Value,
                    (Ns::S, "t") if open.last() == Some(&Tag::Inline) || open.last() == Some(&Tag::Run) => Tag::Value,
                    (Ns::S, "is") => Tag::Inline,
                    (Ns::S, "r") if open.last() == Some(&Tag::Inline) => Tag::Run,
                    (Ns::S, "f" | "rPh" | "extLst" | "headerFooter") => Tag::Skip,
                    _ => Tag::Other,
                };
                if tag == Tag::Skip {
                    true
                } else {
                    open.push(tag);
                    false
                }
            }
            Ev::Text(t) => {
                if open.last() == Some(&Tag::Value) {
                    meter.text(t.len())?;
                    cell.value.push_str(&t);
                }
                false
            }
            Ev::End => {
                match open.pop() {
                    Some(Tag::Cell) => {
                        let text = cell.text(strings)?;
                        if matches!(cell.kind, CellKind::SharedString | CellKind::Boolean) {
                            meter.text(text.len())?;
                        }
                        if let Some(col) = cell.column {
                            row.seek(col);
                        }
                        row.put(meter, &text, 1)?;
                    }
                    Some(Tag::Row) => {
                        let done = std::mem::take(&mut row);
                        if !done.is_empty() {
                            lines.push(&done.into_text())?;
                        }
                    }
                    _ => {}
                }
                false
            }
            Ev::Other => false,
            Ev::Eof => return Ok(lines.finish()),
        };
        if skip {
            xml.skip()?;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Row,
    Cell,
    Value,
    Inline,
    Run,
    Skip,
    Other,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum CellKind {
    SharedString,
    Boolean,
    Escaped,
    /// Numbers, dates, errors: as stored.
    #[default]
    Plain,
}

impl CellKind {
    fn of(t: Option<&str>) -> Self {
        match t {
            Some("s") => CellKind::SharedString,
            Some("b") => CellKind::Boolean,
            Some("str" | "inlineStr") => CellKind::Escaped,
            _ => CellKind::Plain,
        }
    }
}

#[derive(Debug, Default)]
struct Cell {
    column: Option<u64>,
    kind: CellKind,
    value: String,
}

impl Cell {
    /// The cell's text. Its value was counted as it was read; a shared
    /// string or boolean name is a copy, to be counted by the caller.
    fn text<'s>(&'s self, strings: &'s SharedStrings) -> Result<Cow<'s, str>, DocError> {
        Ok(match self.kind {
            CellKind::SharedString => {
                if self.value.trim().is_empty() {
                    return Ok(Cow::Borrowed(""));
                }
                let s = self
                    .value
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| strings.get(i))
                    .ok_or_else(|| DocError::corrupt("cell refers to a shared string that does not exist"))?;
                Cow::Borrowed(s)
            }
            CellKind::Boolean => Cow::Borrowed(match self.value.trim() {
                "1" => "TRUE",
                "0" => "FALSE",
                other => other,
            }),
            CellKind::Escaped => decode_escapes(&self.value),
            CellKind::Plain => Cow::Borrowed(self.value.as_str()),
        })
    }
}

/// The 0-based column of a cell reference (`B7` is 1).
fn column(reference: &str) -> Option<u64> {
    let letters = reference.bytes().take_while(u8::is_ascii_alphabetic);
    let mut col: u64 = 0;
    let mut n = 0;
    for b in letters {
        n += 1;
        if n > 3 {
            return None;
        }
        col = col * 26 + u64::from(b.to_ascii_uppercase() - b'A' + 1);
    }
    col.checked_sub(1)
}

/// Decodes OOXML's `_xHHHH_` escapes of characters XML cannot hold.
fn decode_escapes(s: &str) -> Cow<'_, str> {
    if !s.contains("_x") {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("_x") {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let code = tail
            .get(2..6)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()) && tail.as_bytes().get(6) == Some(&b'_'))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32);
        match code {
            Some(c) => {
                out.push(c);
                rest = &tail[7..];
            }
            None => {
                out.push_str("_x");
                rest = &tail[2..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_from_references() {
        assert_eq!(column("A1"), Some(0));
        assert_eq!(column("b7"), Some(1));
        assert_eq!(column("AA10"), Some(26));
        assert_eq!(column("XFD1048576"), Some(16383));
        assert_eq!(column("ABCD1"), None);
        assert_eq!(column("12"), None);
    }

    #[test]
    fn escapes_decode() {
        assert_eq!(decode_escapes("a_x000D_b"), "a\rb");
        assert_eq!(decode_escapes("_x005F_x0041_"), "_x0041_");
        assert_eq!(decode_escapes("_x12_ _xZZZZ_"), "_x12_ _xZZZZ_");
    }
}
