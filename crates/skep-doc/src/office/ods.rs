//! OpenDocument spreadsheets: one section per sheet (`table:table`) in
//! document order; each non-empty row a line of tab-separated cells in
//! their columns.
//!
//! A cell's text is its paragraphs (joined by a space) as stored, which is
//! the value as the application displayed it; a cell without paragraphs
//! falls back to its typed value attribute (`office:value`, ...).
//! `table:number-columns-repeated` and `number-rows-repeated` repeat
//! cells and rows with text (each copy counted against the limits); empty
//! repeats, such as the trailing million empty rows LibreOffice writes,
//! cost nothing. Annotations are left out.

use std::io::Read;

use super::archive::Archive;
use super::limits::Meter;
use super::odf::{content, repeat};
use super::text::{Collapsing, Lines, Row, count_row_repeats};
use super::xml::{Ev, Ns, Start, Xml};
use crate::DocError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Book,
    Sheet,
    Row,
    Cell,
    Para,
    Other,
}

#[derive(Debug, Default)]
struct Cell {
    text: String,
    repeat: u64,
    value: Option<String>,
}

/// The sheets' texts, in document order.
pub(crate) fn extract(archive: &mut Archive<'_>) -> Result<Vec<String>, DocError> {
    let meter = archive.meter();
    let entry = content(archive)?;
    sheets(&mut Xml::new(entry, meter), meter)
}

fn sheets<R: Read>(xml: &mut Xml<'_, R>, meter: &Meter) -> Result<Vec<String>, DocError> {
    let mut sheets = Vec::new();
    let mut open: Vec<Tag> = Vec::new();
    let mut lines = Lines::new(meter);
    let mut row = Row::default();
    let mut row_repeat = 1;
    let mut cell = Cell::default();
    let mut para = Collapsing::default();
    loop {
        let skip = match xml.next()? {
            Ev::Start(s) if skipped(&s) => true,
            Ev::Start(s) => {
                let within = |tag: Tag| open.contains(&tag);
                let tag = match (s.ns, s.local()) {
                    (Ns::Office, "spreadsheet") => Tag::Book,
                    (Ns::Table, "table") if open.last() == Some(&Tag::Book) => {
                        meter.sections(sheets.len() + 1)?;
                        lines = Lines::new(meter);
                        Tag::Sheet
                    }
                    (Ns::Table, "table-row") if within(Tag::Sheet) && !within(Tag::Cell) => {
                        row = Row::default();
                        row_repeat = repeat(&s, "number-rows-repeated")?;
                        Tag::Row
                    }
                    (Ns::Table, "table-cell" | "covered-table-cell") if open.last() == Some(&Tag::Row) => {
                        cell = Cell {
                            text: String::new(),
                            repeat: repeat(&s, "number-columns-repeated")?,
                            value: typed_value(&s)?,
                        };
                        Tag::Cell
                    }
                    (Ns::Text, "p" | "h") if within(Tag::Cell) && !within(Tag::Para) => {
                        para = Collapsing::default();
                        Tag::Para
                    }
                    (Ns::Text, "s") if within(Tag::Para) => {
                        let n = s
                            .attr(Ns::Text, "c")?
                            .and_then(|c| c.trim().parse::<u64>().ok())
                            .unwrap_or(1);
                        para.push_spaces(meter, n)?;
                        Tag::Other
                    }
                    (Ns::Text, "tab" | "line-break") if within(Tag::Para) => {
                        para.push_verbatim(meter, " ")?;
                        Tag::Other
                    }
                    _ => Tag::Other,
                };
                open.push(tag);
                false
            }
            Ev::Text(t) => {
                if open.contains(&Tag::Para) {
                    para.push_collapsed(meter, &t)?;
                }
                false
            }
            Ev::End => {
                match open.pop() {
                    Some(Tag::Para) => {
                        let text = std::mem::take(&mut para).finish();
                        if !text.is_empty() {
                            if !cell.text.is_empty() {
                                meter.text(1)?;
                                cell.text.push(' ');
                            }
                            cell.text.push_str(&text);
                        }
                    }
                    Some(Tag::Cell) => {
                        let cell = std::mem::take(&mut cell);
                        let text = match (cell.text.is_empty(), cell.value) {
                            (true, Some(value)) => {
                                meter.text(value.len())?;
                                value
                            }
                            _ => cell.text,
                        };
                        row.put(meter, &text, cell.repeat)?;
                    }
                    Some(Tag::Row) => {
                        let done = std::mem::take(&mut row);
                        if !done.is_empty() {
                            count_row_repeats(meter, &done, row_repeat)?;
                            lines.push_repeated(&done.into_text(), row_repeat)?;
                        }
                    }
                    Some(Tag::Sheet) => {
                        sheets.push(std::mem::replace(&mut lines, Lines::new(meter)).finish());
                    }
                    _ => {}
                }
                false
            }
            Ev::Other => false,
            Ev::Eof => return Ok(sheets),
        };
        if skip {
            xml.skip()?;
        }
    }
}

/// Elements with no cell text: annotations, styles, column definitions,
/// note marks, tracked deletions.
fn skipped(s: &Start<'_>) -> bool {
    match s.ns {
        Ns::Office => matches!(
            s.local(),
            "annotation" | "annotation-end" | "automatic-styles" | "font-face-decls" | "scripts" | "forms"
        ),
        Ns::Table => s.local() == "table-column",
        Ns::Text => matches!(s.local(), "note-citation" | "tracked-changes"),
        _ => false,
    }
}

/// The typed value of a cell (`office:value-type` and the attribute that
/// goes with it), for cells that have no paragraphs.
fn typed_value(s: &Start<'_>) -> Result<Option<String>, DocError> {
    let Some(value_type) = s.attr(Ns::Office, "value-type")? else {
        return Ok(None);
    };
    let attr = match value_type.as_ref() {
        "float" | "percentage" | "currency" => "value",
        "date" => "date-value",
        "time" => "time-value",
        "boolean" => "boolean-value",
        "string" => "string-value",
        _ => return Ok(None),
    };
    Ok(s.attr(Ns::Office, attr)?.map(|v| v.into_owned()))
}
