//! Generated Office documents (docx, odt, xlsx, ods, pptx, odp) with ground
//! truth, and broken ones.
//!
//! The documents are real packages (every part a reader or an Office
//! application needs: content types, relationships, manifests, styles, a
//! slide master and theme), written with the `zip` writer. The ground truth
//! of each is the text skep's Office extractor returns for it: paragraphs
//! and table rows one per line (cells tab-separated), slides and sheets as
//! sections joined by `"\n\x0c\n"`, notes left out. The same seed always
//! gives the same bytes.

use std::fmt::Write as _;
use std::io::{Cursor, Write as _};
use std::path::Path;

use anyhow::Context as _;
use flate2::{Compress, Compression, FlushCompress};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use crate::{GeneratedFile, PageSize, mix_seed, page_text, truth_path};

/// Where the documents go, under the pages dir.
const DIR: &str = "office";

const SECTION_SEPARATOR: &str = "\n\x0c\n";

const TEXT_STREAM: u64 = 0x6f66_6669_6365;
const NUMBER_STREAM: u64 = 0x6f66_6669_6e75;

/// Bytes the bomb's main part inflates to.
const BOMB_MIB: usize = 2048;

const W_NS: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";
const S_NS: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
const P_NS: &str = "http://schemas.openxmlformats.org/presentationml/2006/main";
const A_NS: &str = "http://schemas.openxmlformats.org/drawingml/2006/main";
const R_NS: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const REL: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const CT_NS: &str = "http://schemas.openxmlformats.org/package/2006/content-types";
const PKG_REL_NS: &str = "http://schemas.openxmlformats.org/package/2006/relationships";
const OOXML: &str = "application/vnd.openxmlformats-officedocument";
const ODF_NS: &str = concat!(
    r#"xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" "#,
    r#"xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" "#,
    r#"xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" "#,
    r#"xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" "#,
    r#"xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" "#,
    r#"xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0" "#,
    r#"xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" "#,
    r#"xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0" "#,
    r#"xmlns:meta="urn:oasis:names:tc:opendocument:xmlns:meta:1.0" "#,
    r#"office:version="1.3""#
);

/// Writes Office documents of known text under `pages_dir/office/` (ground
/// truth under `truth_dir`), good and broken ones:
///
/// - `report.docx` (paragraphs, a line break, a table), `notes.odt`
///   (heading, paragraphs, a list, a table, a footnote), `figures.xlsx`
///   (two sheets listed in another order than their part names, shared
///   strings and numbers), `figures.ods` (two sheets, repeated cells and
///   rows), `slides.pptx` (three slides in another order than their part
///   names), `slides.odp` (two pages, speaker notes);
/// - under `bad/`: `not-a-zip.docx` (unsupported: skep knows formats by content), `bomb.docx` (a 2 MiB file
///   inflating to 2 GiB; tooLarge), `laughs.docx` (entity expansion;
///   corrupt), `legacy.doc` (a minimal OLE compound file; unsupported).
///
/// `pages` is the number of sections (slides, sheets, 1 for a text
/// document). Deterministic in `seed`.
pub fn generate_office(pages_dir: &Path, truth_dir: &Path, seed: u64) -> anyhow::Result<Vec<GeneratedFile>> {
    let mut text = Text::new(seed);
    let mut rng = StdRng::seed_from_u64(mix_seed(seed, NUMBER_STREAM));
    let docs = [
        report_docx(&mut text, &mut rng)?,
        notes_odt(&mut text)?,
        figures_xlsx(&mut text, &mut rng)?,
        figures_ods(&mut text, &mut rng)?,
        slides_pptx(&mut text)?,
        slides_odp(&mut text)?,
    ];
    let mut files = Vec::new();
    for doc in docs {
        let rel_path = format!("{DIR}/{}", doc.name);
        write_file(&pages_dir.join(&rel_path), &doc.bytes)?;
        let truth = doc.sections.join(SECTION_SEPARATOR);
        write_file(&truth_path(truth_dir, &rel_path), truth.as_bytes())?;
        files.push(GeneratedFile {
            rel_path,
            truth: Some(truth),
            pages: doc.sections.len(),
            expect_failure: None,
        });
    }
    for (name, bytes, failure) in [
        ("not-a-zip.docx", not_a_zip(), "unsupported"),
        ("bomb.docx", bomb_docx()?, "tooLarge"),
        ("laughs.docx", laughs_docx()?, "corrupt"),
        ("legacy.doc", legacy_doc(), "unsupported"),
    ] {
        let rel_path = format!("{DIR}/bad/{name}");
        write_file(&pages_dir.join(&rel_path), &bytes)?;
        files.push(GeneratedFile {
            rel_path,
            truth: None,
            pages: 0,
            expect_failure: Some(failure.to_string()),
        });
    }
    Ok(files)
}

/// A generated document: its bytes and the text of each section.
struct Doc {
    name: &'static str,
    bytes: Vec<u8>,
    sections: Vec<String>,
}

/// Lines and words from [`page_text`], page after page.
struct Text {
    seed: u64,
    page: u64,
    lines: std::vec::IntoIter<String>,
}

impl Text {
    fn new(seed: u64) -> Self {
        Self {
            seed: mix_seed(seed, TEXT_STREAM),
            page: 0,
            lines: Vec::new().into_iter(),
        }
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(line) = self.lines.next() {
                return line;
            }
            self.page += 1;
            self.lines = page_text(mix_seed(self.seed, self.page), PageSize::Small).into_iter();
        }
    }

    /// `n` words of letters only, from the next lines.
    fn words(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            for word in self.line().split(' ') {
                let word: String = word.chars().filter(char::is_ascii_alphabetic).collect();
                if word.len() > 1 && out.len() < n {
                    out.push(word);
                }
            }
        }
        out
    }

    /// A capitalised label of `n` words.
    fn label(&mut self, n: usize) -> String {
        let joined = self.words(n).join(" ");
        let mut chars = joined.chars();
        match chars.next() {
            Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
            None => joined,
        }
    }
}

/// A decimal as a spreadsheet stores it (no trailing zero).
fn decimal(rng: &mut StdRng) -> String {
    let whole: u32 = rng.random_range(1..100_000);
    let mut cents: u32 = rng.random_range(1..100);
    if cents.is_multiple_of(10) {
        cents += 1;
    }
    format!("{whole}.{cents:02}")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn options(method: CompressionMethod) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(method)
        .last_modified_time(DateTime::default())
}

/// A zip of the parts, in order; `mimetype` (ODF) is stored, the rest
/// deflated.
fn package(parts: &[(&str, String)]) -> anyhow::Result<Vec<u8>> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, body) in parts {
        let method = if *name == "mimetype" {
            CompressionMethod::Stored
        } else {
            CompressionMethod::Deflated
        };
        w.start_file(*name, options(method))?;
        w.write_all(body.as_bytes())?;
    }
    Ok(w.finish()?.into_inner())
}

fn content_types(overrides: &[(&str, &str)]) -> String {
    let mut out = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="{CT_NS}"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>"#
    );
    for (part, content_type) in overrides {
        let _ = write!(out, r#"<Override PartName="{part}" ContentType="{content_type}"/>"#);
    }
    out.push_str("</Types>");
    out
}

/// Relationships of `(id, type, target)`; the type is relative to the
/// officeDocument relationships namespace.
fn relationships(rels: &[(&str, &str, &str)]) -> String {
    let mut out =
        format!(r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="{PKG_REL_NS}">"#);
    for (id, kind, target) in rels {
        let _ = write!(
            out,
            r#"<Relationship Id="{id}" Type="{REL}/{kind}" Target="{target}"/>"#
        );
    }
    out.push_str("</Relationships>");
    out
}

fn root_rels(main: &str) -> String {
    relationships(&[("rId1", "officeDocument", main)])
}

fn w_para(text: &str) -> String {
    format!(r#"<w:p><w:r><w:t xml:space="preserve">{}</w:t></w:r></w:p>"#, esc(text))
}

fn w_cell(text: &str) -> String {
    format!(
        r#"<w:tc><w:tcPr><w:tcW w:w="2880" w:type="dxa"/></w:tcPr>{}</w:tc>"#,
        w_para(text)
    )
}

fn report_docx(text: &mut Text, rng: &mut StdRng) -> anyhow::Result<Doc> {
    let mut lines = Vec::new();
    let mut body = String::new();
    let title = format!("Report on {}", text.label(3));
    body.push_str(&w_para(&title));
    lines.push(title);
    for _ in 0..3 {
        let paragraph = format!("{} {}", text.line(), text.line());
        body.push_str(&w_para(&paragraph));
        lines.push(paragraph);
    }
    // A paragraph with a line break inside.
    let (first, second) = (text.line(), text.line());
    let _ = write!(
        body,
        r#"<w:p><w:r><w:t>{}</w:t></w:r><w:r><w:br/><w:t>{}</w:t></w:r></w:p>"#,
        esc(&first),
        esc(&second)
    );
    lines.push(format!("{first}\n{second}"));
    // A table: a header row and three rows.
    body.push_str(r#"<w:tbl><w:tblPr><w:tblW w:w="0" w:type="auto"/></w:tblPr><w:tblGrid><w:gridCol w:w="2880"/><w:gridCol w:w="2880"/><w:gridCol w:w="2880"/></w:tblGrid>"#);
    let mut rows = vec![["Item".to_string(), "Quantity".to_string(), "Amount".to_string()]];
    for _ in 0..3 {
        rows.push([text.label(2), rng.random_range(1..500u32).to_string(), decimal(rng)]);
    }
    for row in &rows {
        body.push_str("<w:tr>");
        for cell in row {
            body.push_str(&w_cell(cell));
        }
        body.push_str("</w:tr>");
        lines.push(row.join("\t"));
    }
    body.push_str("</w:tbl>");
    let closing = text.line();
    body.push_str(&w_para(&closing));
    lines.push(closing);
    let document = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="{W_NS}" xmlns:r="{R_NS}"><w:body>{body}<w:sectPr><w:pgSz w:w="11906" w:h="16838"/><w:pgMar w:top="1440" w:right="1440" w:bottom="1440" w:left="1440" w:header="708" w:footer="708" w:gutter="0"/></w:sectPr></w:body></w:document>"#
    );
    let bytes = package(&[
        (
            "[Content_Types].xml",
            content_types(&[(
                "/word/document.xml",
                &format!("{OOXML}.wordprocessingml.document.main+xml"),
            )]),
        ),
        ("_rels/.rels", root_rels("word/document.xml")),
        ("word/document.xml", document),
    ])?;
    Ok(Doc {
        name: "report.docx",
        bytes,
        sections: vec![lines.join("\n")],
    })
}

fn odf_manifest(mime: &str, parts: &[&str]) -> String {
    let mut out = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.3"><manifest:file-entry manifest:full-path="/" manifest:version="1.3" manifest:media-type="{mime}"/>"#
    );
    for part in parts {
        let _ = write!(
            out,
            r#"<manifest:file-entry manifest:full-path="{part}" manifest:media-type="text/xml"/>"#
        );
    }
    out.push_str("</manifest:manifest>");
    out
}

fn odf_meta() -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><office:document-meta {ODF_NS}><office:meta><meta:generator>skep-testkit</meta:generator></office:meta></office:document-meta>"#
    )
}

/// An ODF package of `content` (the children of `office:body`).
fn odf_package(mime: &str, body: &str, master_styles: &str) -> anyhow::Result<Vec<u8>> {
    let content = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document-content {ODF_NS}><office:body>{body}</office:body></office:document-content>"#
    );
    let styles = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document-styles {ODF_NS}><office:styles/>{master_styles}</office:document-styles>"#
    );
    package(&[
        ("mimetype", mime.to_string()),
        ("content.xml", content),
        ("styles.xml", styles),
        ("meta.xml", odf_meta()),
        (
            "META-INF/manifest.xml",
            odf_manifest(mime, &["content.xml", "styles.xml", "meta.xml"]),
        ),
    ])
}

fn text_p(text: &str) -> String {
    format!("<text:p>{}</text:p>", esc(text))
}

fn notes_odt(text: &mut Text) -> anyhow::Result<Doc> {
    let mut lines = Vec::new();
    let mut body = String::from("<office:text>");
    let heading = format!("Notes on {}", text.label(2));
    let _ = write!(body, r#"<text:h text:outline-level="1">{}</text:h>"#, esc(&heading));
    lines.push(heading);
    for _ in 0..2 {
        let paragraph = format!("{} {}", text.line(), text.line());
        body.push_str(&text_p(&paragraph));
        lines.push(paragraph);
    }
    // Three spaces as ODF writes them: one character, then `text:s`.
    let (a, b) = (text.label(2), text.label(2));
    let _ = write!(body, r#"<text:p>{} <text:s text:c="2"/>{}</text:p>"#, esc(&a), esc(&b));
    lines.push(format!("{a}   {b}"));
    body.push_str("<text:list>");
    for _ in 0..3 {
        let item = text.label(4);
        let _ = write!(body, "<text:list-item>{}</text:list-item>", text_p(&item));
        lines.push(item);
    }
    body.push_str("</text:list>");
    body.push_str(r#"<table:table table:name="Table1"><table:table-column table:number-columns-repeated="2"/>"#);
    for _ in 0..3 {
        let (k, v) = (text.label(1), text.label(3));
        let _ = write!(
            body,
            "<table:table-row><table:table-cell>{}</table:table-cell><table:table-cell>{}</table:table-cell></table:table-row>",
            text_p(&k),
            text_p(&v)
        );
        lines.push(format!("{k}\t{v}"));
    }
    body.push_str("</table:table>");
    // A footnote: its body comes after all other text.
    let (cited, note) = (text.line(), text.line());
    let _ = write!(
        body,
        r#"<text:p>{}<text:note text:id="ftn1" text:note-class="footnote"><text:note-citation>1</text:note-citation><text:note-body>{}</text:note-body></text:note></text:p>"#,
        esc(&cited),
        text_p(&note)
    );
    lines.push(cited);
    let closing = text.line();
    body.push_str(&text_p(&closing));
    lines.push(closing);
    lines.push(note);
    body.push_str("</office:text>");
    Ok(Doc {
        name: "notes.odt",
        bytes: odf_package("application/vnd.oasis.opendocument.text", &body, "")?,
        sections: vec![lines.join("\n")],
    })
}

/// The letters of the 0-based column `col` (`0` is `A`).
fn column_name(mut col: usize) -> String {
    let mut name = Vec::new();
    loop {
        name.push(b'A' + (col % 26) as u8);
        if col < 26 {
            break;
        }
        col = col / 26 - 1;
    }
    name.reverse();
    String::from_utf8_lossy(&name).into_owned()
}

/// A sheet cell: a shared string, a number, or nothing.
enum Cell {
    Str(String),
    Num(String),
    Empty,
}

impl Cell {
    fn text(&self) -> &str {
        match self {
            Cell::Str(s) | Cell::Num(s) => s,
            Cell::Empty => "",
        }
    }
}

/// The sheets of the spreadsheets: a summary and a detail sheet.
fn sheets(text: &mut Text, rng: &mut StdRng) -> [(String, Vec<Vec<Cell>>); 2] {
    let mut summary = vec![vec![
        Cell::Str("Region".into()),
        Cell::Str("Units".into()),
        Cell::Str("Revenue".into()),
    ]];
    let regions = text.words(3);
    for region in &regions {
        summary.push(vec![
            Cell::Str(text_label_of(region)),
            Cell::Num(rng.random_range(1..5000u32).to_string()),
            Cell::Num(decimal(rng)),
        ]);
    }
    // A region seen again (the same shared string), with no unit count.
    summary.push(vec![
        Cell::Str(text_label_of(&regions[0])),
        Cell::Empty,
        Cell::Num(decimal(rng)),
    ]);
    let mut detail = vec![vec![
        Cell::Str("Reference".into()),
        Cell::Str("Note".into()),
        Cell::Str("Amount".into()),
    ]];
    for _ in 0..4 {
        detail.push(vec![
            Cell::Str(format!("INV-{}", rng.random_range(10_000..99_999u32))),
            Cell::Str(text.label(3)),
            Cell::Num(decimal(rng)),
        ]);
    }
    [("Summary".into(), summary), ("Detail".into(), detail)]
}

fn text_label_of(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// Tab-separated rows, empty cells kept as empty fields.
fn sheet_truth(rows: &[Vec<Cell>]) -> String {
    rows.iter()
        .map(|row| row.iter().map(Cell::text).collect::<Vec<_>>().join("\t"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn figures_xlsx(text: &mut Text, rng: &mut StdRng) -> anyhow::Result<Doc> {
    let sheets = sheets(text, rng);
    let mut shared: Vec<String> = Vec::new();
    let mut uses = 0;
    let mut sheet_parts = Vec::new();
    for (_, rows) in &sheets {
        let mut data = String::new();
        for (r, row) in rows.iter().enumerate() {
            let _ = write!(data, r#"<row r="{}">"#, r + 1);
            for (c, cell) in row.iter().enumerate() {
                let reference = format!("{}{}", column_name(c), r + 1);
                match cell {
                    Cell::Str(s) => {
                        uses += 1;
                        let index = shared.iter().position(|x| x == s).unwrap_or_else(|| {
                            shared.push(s.clone());
                            shared.len() - 1
                        });
                        let _ = write!(data, r#"<c r="{reference}" t="s"><v>{index}</v></c>"#);
                    }
                    Cell::Num(n) => {
                        let _ = write!(data, r#"<c r="{reference}"><v>{n}</v></c>"#);
                    }
                    Cell::Empty => {}
                }
            }
            data.push_str("</row>");
        }
        sheet_parts.push(format!(
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="{S_NS}" xmlns:r="{R_NS}"><sheetData>{data}</sheetData></worksheet>"#
        ));
    }
    let mut sst = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<sst xmlns="{S_NS}" count="{uses}" uniqueCount="{}">"#,
        shared.len()
    );
    for s in &shared {
        let _ = write!(sst, "<si><t>{}</t></si>", esc(s));
    }
    sst.push_str("</sst>");
    // NB: the workbook lists sheet2.xml first: order comes from the
    // workbook, not from part names.
    let workbook = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="{S_NS}" xmlns:r="{R_NS}"><bookViews><workbookView/></bookViews><sheets><sheet name="{}" sheetId="1" r:id="rId2"/><sheet name="{}" sheetId="2" r:id="rId1"/></sheets></workbook>"#,
        sheets[0].0, sheets[1].0
    );
    let styles = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<styleSheet xmlns="{S_NS}"><fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts><fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills><borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders><cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs><cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/></cellXfs><cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>"#
    );
    let sheet_type = format!("{OOXML}.spreadsheetml.worksheet+xml");
    let [summary_part, detail_part] =
        <[String; 2]>::try_from(sheet_parts).map_err(|_| anyhow::anyhow!("two sheets"))?;
    let bytes = package(&[
        (
            "[Content_Types].xml",
            content_types(&[
                ("/xl/workbook.xml", &format!("{OOXML}.spreadsheetml.sheet.main+xml")),
                ("/xl/worksheets/sheet1.xml", &sheet_type),
                ("/xl/worksheets/sheet2.xml", &sheet_type),
                (
                    "/xl/sharedStrings.xml",
                    &format!("{OOXML}.spreadsheetml.sharedStrings+xml"),
                ),
                ("/xl/styles.xml", &format!("{OOXML}.spreadsheetml.styles+xml")),
            ]),
        ),
        ("_rels/.rels", root_rels("xl/workbook.xml")),
        ("xl/workbook.xml", workbook),
        (
            "xl/_rels/workbook.xml.rels",
            relationships(&[
                ("rId1", "worksheet", "worksheets/sheet1.xml"),
                ("rId2", "worksheet", "worksheets/sheet2.xml"),
                ("rId3", "sharedStrings", "sharedStrings.xml"),
                ("rId4", "styles", "styles.xml"),
            ]),
        ),
        ("xl/worksheets/sheet1.xml", detail_part),
        ("xl/worksheets/sheet2.xml", summary_part),
        ("xl/sharedStrings.xml", sst),
        ("xl/styles.xml", styles),
    ])?;
    Ok(Doc {
        name: "figures.xlsx",
        bytes,
        sections: sheets.iter().map(|(_, rows)| sheet_truth(rows)).collect(),
    })
}

fn figures_ods(text: &mut Text, rng: &mut StdRng) -> anyhow::Result<Doc> {
    let sheets = sheets(text, rng);
    let mut body = String::from("<office:spreadsheet>");
    let mut sections = Vec::new();
    for (name, rows) in &sheets {
        let _ = write!(
            body,
            r#"<table:table table:name="{name}"><table:table-column table:number-columns-repeated="1024"/>"#
        );
        for row in rows {
            body.push_str("<table:table-row>");
            for cell in row {
                match cell {
                    Cell::Str(s) => {
                        let _ = write!(
                            body,
                            r#"<table:table-cell office:value-type="string">{}</table:table-cell>"#,
                            text_p(s)
                        );
                    }
                    Cell::Num(n) => {
                        let _ = write!(
                            body,
                            r#"<table:table-cell office:value-type="float" office:value="{n}">{}</table:table-cell>"#,
                            text_p(n)
                        );
                    }
                    Cell::Empty => body.push_str("<table:table-cell/>"),
                }
            }
            // As LibreOffice writes it: the rest of the row, empty.
            let _ = write!(
                body,
                r#"<table:table-cell table:number-columns-repeated="{}"/></table:table-row>"#,
                1024 - row.len()
            );
        }
        // A row of two repeated "n/a" cells, then the sheet's empty rest.
        body.push_str(
            r#"<table:table-row><table:table-cell office:value-type="string" table:number-columns-repeated="2"><text:p>n/a</text:p></table:table-cell><table:table-cell table:number-columns-repeated="1022"/></table:table-row>"#,
        );
        let _ = write!(
            body,
            r#"<table:table-row table:number-rows-repeated="{}"><table:table-cell table:number-columns-repeated="1024"/></table:table-row></table:table>"#,
            1_048_576 - rows.len() - 1
        );
        sections.push(format!("{}\nn/a\tn/a", sheet_truth(rows)));
    }
    body.push_str("</office:spreadsheet>");
    Ok(Doc {
        name: "figures.ods",
        bytes: odf_package("application/vnd.oasis.opendocument.spreadsheet", &body, "")?,
        sections,
    })
}

/// A slide's title and bullet points.
struct Slide {
    title: String,
    points: Vec<String>,
}

fn slide_texts(text: &mut Text, n: usize) -> Vec<Slide> {
    (0..n)
        .map(|_| Slide {
            title: text.label(3),
            points: (0..3).map(|_| text.line()).collect(),
        })
        .collect()
}

fn a_paras(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| {
            format!(
                r#"<a:p><a:r><a:rPr lang="en-US" dirty="0"/><a:t>{}</a:t></a:r></a:p>"#,
                esc(l)
            )
        })
        .collect()
}

fn p_shape(id: u32, name: &str, placeholder: &str, paragraphs: &str) -> String {
    format!(
        r#"<p:sp><p:nvSpPr><p:cNvPr id="{id}" name="{name}"/><p:cNvSpPr><a:spLocks noGrp="1"/></p:cNvSpPr><p:nvPr>{placeholder}</p:nvPr></p:nvSpPr><p:spPr/><p:txBody><a:bodyPr/><a:lstStyle/>{paragraphs}</p:txBody></p:sp>"#
    )
}

const SP_TREE_HEAD: &str = r#"<p:nvGrpSpPr><p:cNvPr id="1" name=""/><p:cNvGrpSpPr/><p:nvPr/></p:nvGrpSpPr><p:grpSpPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="0" cy="0"/><a:chOff x="0" y="0"/><a:chExt cx="0" cy="0"/></a:xfrm></p:grpSpPr>"#;

fn theme() -> String {
    let colors = [
        ("dk1", r#"<a:sysClr val="windowText" lastClr="000000"/>"#),
        ("lt1", r#"<a:sysClr val="window" lastClr="FFFFFF"/>"#),
        ("dk2", r#"<a:srgbClr val="44546A"/>"#),
        ("lt2", r#"<a:srgbClr val="E7E6E6"/>"#),
        ("accent1", r#"<a:srgbClr val="4472C4"/>"#),
        ("accent2", r#"<a:srgbClr val="ED7D31"/>"#),
        ("accent3", r#"<a:srgbClr val="A5A5A5"/>"#),
        ("accent4", r#"<a:srgbClr val="FFC000"/>"#),
        ("accent5", r#"<a:srgbClr val="5B9BD5"/>"#),
        ("accent6", r#"<a:srgbClr val="70AD47"/>"#),
        ("hlink", r#"<a:srgbClr val="0563C1"/>"#),
        ("folHlink", r#"<a:srgbClr val="954F72"/>"#),
    ];
    let scheme: String = colors.iter().map(|(n, c)| format!("<a:{n}>{c}</a:{n}>")).collect();
    let fonts = r#"<a:latin typeface="Calibri"/><a:ea typeface=""/><a:cs typeface=""/>"#;
    let fill = r#"<a:solidFill><a:schemeClr val="phClr"/></a:solidFill>"#;
    let line = r#"<a:ln w="6350"><a:solidFill><a:schemeClr val="phClr"/></a:solidFill></a:ln>"#;
    let effect = "<a:effectStyle><a:effectLst/></a:effectStyle>";
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<a:theme xmlns:a="{A_NS}" name="Office Theme"><a:themeElements><a:clrScheme name="Office">{scheme}</a:clrScheme><a:fontScheme name="Office"><a:majorFont>{fonts}</a:majorFont><a:minorFont>{fonts}</a:minorFont></a:fontScheme><a:fmtScheme name="Office"><a:fillStyleLst>{fill}{fill}{fill}</a:fillStyleLst><a:lnStyleLst>{line}{line}{line}</a:lnStyleLst><a:effectStyleLst>{effect}{effect}{effect}</a:effectStyleLst><a:bgFillStyleLst>{fill}{fill}{fill}</a:bgFillStyleLst></a:fmtScheme></a:themeElements></a:theme>"#
    )
}

fn slides_pptx(text: &mut Text) -> anyhow::Result<Doc> {
    let slides = slide_texts(text, 3);
    // NB: the presentation shows slide3.xml second: order comes from
    // presentation.xml's slide list, not from part names.
    let order = [1usize, 3, 2];
    let ns = format!(r#"xmlns:a="{A_NS}" xmlns:r="{R_NS}" xmlns:p="{P_NS}""#);
    let mut parts: Vec<(String, String)> = Vec::new();
    let mut sections = Vec::new();
    for (shown, file_no) in order.iter().enumerate() {
        let slide = &slides[shown];
        let title = p_shape(
            2,
            "Title 1",
            r#"<p:ph type="title"/>"#,
            &a_paras(std::slice::from_ref(&slide.title)),
        );
        let points = p_shape(3, "Content 2", r#"<p:ph idx="1"/>"#, &a_paras(&slide.points));
        parts.push((
            format!("ppt/slides/slide{file_no}.xml"),
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<p:sld {ns}><p:cSld><p:spTree>{SP_TREE_HEAD}{title}{points}</p:spTree></p:cSld><p:clrMapOvr><a:masterClrMapping/></p:clrMapOvr></p:sld>"#
            ),
        ));
        parts.push((
            format!("ppt/slides/_rels/slide{file_no}.xml.rels"),
            relationships(&[("rId1", "slideLayout", "../slideLayouts/slideLayout1.xml")]),
        ));
        let mut lines = vec![slide.title.clone()];
        lines.extend(slide.points.iter().cloned());
        sections.push(lines.join("\n"));
    }
    let slide_ids: String = order
        .iter()
        .enumerate()
        .map(|(shown, file_no)| format!(r#"<p:sldId id="{}" r:id="rId{}"/>"#, 256 + shown, 10 + file_no))
        .collect();
    let presentation = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<p:presentation {ns}><p:sldMasterIdLst><p:sldMasterId id="2147483648" r:id="rId1"/></p:sldMasterIdLst><p:sldIdLst>{slide_ids}</p:sldIdLst><p:sldSz cx="12192000" cy="6858000"/><p:notesSz cx="6858000" cy="9144000"/></p:presentation>"#
    );
    let mut pres_rels = vec![
        (
            "rId1".to_string(),
            "slideMaster",
            "slideMasters/slideMaster1.xml".to_string(),
        ),
        ("rId2".to_string(), "theme", "theme/theme1.xml".to_string()),
    ];
    for file_no in 1..=3 {
        pres_rels.push((
            format!("rId{}", 10 + file_no),
            "slide",
            format!("slides/slide{file_no}.xml"),
        ));
    }
    let pres_rels: Vec<(&str, &str, &str)> = pres_rels
        .iter()
        .map(|(id, kind, target)| (id.as_str(), *kind, target.as_str()))
        .collect();
    let master = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<p:sldMaster {ns}><p:cSld><p:spTree>{SP_TREE_HEAD}</p:spTree></p:cSld><p:clrMap bg1="lt1" tx1="dk1" bg2="lt2" tx2="dk2" accent1="accent1" accent2="accent2" accent3="accent3" accent4="accent4" accent5="accent5" accent6="accent6" hlink="hlink" folHlink="folHlink"/><p:sldLayoutIdLst><p:sldLayoutId id="2147483649" r:id="rId1"/></p:sldLayoutIdLst></p:sldMaster>"#
    );
    let layout = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<p:sldLayout {ns} type="obj" preserve="1"><p:cSld name="Title and Content"><p:spTree>{SP_TREE_HEAD}</p:spTree></p:cSld><p:clrMapOvr><a:masterClrMapping/></p:clrMapOvr></p:sldLayout>"#
    );
    let slide_type = format!("{OOXML}.presentationml.slide+xml");
    let mut overrides = vec![
        (
            "/ppt/presentation.xml".to_string(),
            format!("{OOXML}.presentationml.presentation.main+xml"),
        ),
        (
            "/ppt/slideMasters/slideMaster1.xml".to_string(),
            format!("{OOXML}.presentationml.slideMaster+xml"),
        ),
        (
            "/ppt/slideLayouts/slideLayout1.xml".to_string(),
            format!("{OOXML}.presentationml.slideLayout+xml"),
        ),
        ("/ppt/theme/theme1.xml".to_string(), format!("{OOXML}.theme+xml")),
    ];
    for file_no in 1..=3 {
        overrides.push((format!("/ppt/slides/slide{file_no}.xml"), slide_type.clone()));
    }
    let overrides: Vec<(&str, &str)> = overrides.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    let mut all: Vec<(String, String)> = vec![
        ("[Content_Types].xml".into(), content_types(&overrides)),
        ("_rels/.rels".into(), root_rels("ppt/presentation.xml")),
        ("ppt/presentation.xml".into(), presentation),
        ("ppt/_rels/presentation.xml.rels".into(), relationships(&pres_rels)),
        ("ppt/slideMasters/slideMaster1.xml".into(), master),
        (
            "ppt/slideMasters/_rels/slideMaster1.xml.rels".into(),
            relationships(&[
                ("rId1", "slideLayout", "../slideLayouts/slideLayout1.xml"),
                ("rId2", "theme", "../theme/theme1.xml"),
            ]),
        ),
        ("ppt/slideLayouts/slideLayout1.xml".into(), layout),
        (
            "ppt/slideLayouts/_rels/slideLayout1.xml.rels".into(),
            relationships(&[("rId1", "slideMaster", "../slideMasters/slideMaster1.xml")]),
        ),
        ("ppt/theme/theme1.xml".into(), theme()),
    ];
    all.extend(parts);
    let all: Vec<(&str, String)> = all.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    Ok(Doc {
        name: "slides.pptx",
        bytes: package(&all)?,
        sections,
    })
}

fn slides_odp(text: &mut Text) -> anyhow::Result<Doc> {
    let slides = slide_texts(text, 2);
    let mut body = String::from("<office:presentation>");
    let mut sections = Vec::new();
    for (i, slide) in slides.iter().enumerate() {
        let items: String = slide
            .points
            .iter()
            .map(|p| format!("<text:list-item>{}</text:list-item>", text_p(p)))
            .collect();
        let _ = write!(
            body,
            r#"<draw:page draw:name="page{n}" draw:master-page-name="Default"><draw:frame presentation:class="title" svg:x="2cm" svg:y="1cm" svg:width="24cm" svg:height="3cm"><draw:text-box>{title}</draw:text-box></draw:frame><draw:frame presentation:class="outline" svg:x="2cm" svg:y="5cm" svg:width="24cm" svg:height="12cm"><draw:text-box><text:list>{items}</text:list></draw:text-box></draw:frame>"#,
            n = i + 1,
            title = text_p(&slide.title),
        );
        if i == 0 {
            // Speaker notes: not part of the slide's text.
            let _ = write!(
                body,
                r#"<presentation:notes><draw:frame presentation:class="notes"><draw:text-box>{}</draw:text-box></draw:frame></presentation:notes>"#,
                text_p(&text.line())
            );
        }
        body.push_str("</draw:page>");
        let mut lines = vec![slide.title.clone()];
        lines.extend(slide.points.iter().cloned());
        sections.push(lines.join("\n"));
    }
    body.push_str("</office:presentation>");
    let master = r#"<office:automatic-styles><style:page-layout style:name="PM1"><style:page-layout-properties fo:page-width="28cm" fo:page-height="15.75cm"/></style:page-layout></office:automatic-styles><office:master-styles><style:master-page style:name="Default" style:page-layout-name="PM1"/></office:master-styles>"#;
    Ok(Doc {
        name: "slides.odp",
        bytes: odf_package("application/vnd.oasis.opendocument.presentation", &body, master)?,
        sections,
    })
}

fn not_a_zip() -> Vec<u8> {
    b"This is not a Word document.\n\
      It is a plain text file with a .docx extension, written by skep-testkit\n\
      to check that a file that is no zip archive is reported as corrupt.\n"
        .to_vec()
}

/// Raw deflate data inflating to `head`, `chunk` `times` times, `tail`,
/// made without inflating it: each piece is compressed once by a fresh
/// compressor ending in a full flush (byte-aligned, no reference to
/// earlier data), so copies of a piece can be concatenated.
fn repeated_deflate(head: &[u8], chunk: &[u8], times: usize, tail: &[u8]) -> anyhow::Result<Vec<u8>> {
    let piece = |data: &[u8], flush: FlushCompress| -> anyhow::Result<Vec<u8>> {
        let mut c = Compress::new(Compression::best(), false);
        let mut out = Vec::with_capacity(data.len() / 2 + 1024);
        c.compress_vec(data, &mut out, flush)?;
        anyhow::ensure!(c.total_in() == data.len() as u64, "deflate output buffer too small");
        Ok(out)
    };
    let chunk = piece(chunk, FlushCompress::Full)?;
    let mut out = piece(head, FlushCompress::Full)?;
    for _ in 0..times {
        out.extend_from_slice(&chunk);
    }
    out.extend(piece(tail, FlushCompress::Finish)?);
    Ok(out)
}

/// A docx whose main part inflates to 2 GiB (spaces in the body) from
/// about 2 MiB. Made with the zip writer as a stored entry holding deflate
/// data, then marked deflated in both headers: the sizes it declares are
/// those of the stored bytes, as in a bomb that lies about its size.
fn bomb_docx() -> anyhow::Result<Vec<u8>> {
    let head = format!(r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{W_NS}"><w:body>"#);
    let raw = repeated_deflate(
        head.as_bytes(),
        &vec![b' '; 1 << 20],
        BOMB_MIB,
        b"</w:body></w:document>",
    )?;
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("[Content_Types].xml", options(CompressionMethod::Deflated))?;
    w.write_all(
        content_types(&[(
            "/word/document.xml",
            &format!("{OOXML}.wordprocessingml.document.main+xml"),
        )])
        .as_bytes(),
    )?;
    w.start_file("_rels/.rels", options(CompressionMethod::Deflated))?;
    w.write_all(root_rels("word/document.xml").as_bytes())?;
    w.start_file("word/document.xml", options(CompressionMethod::Stored))?;
    w.write_all(&raw)?;
    let mut bytes = w.finish()?.into_inner();
    let (local, central) = {
        let mut zip = ZipArchive::new(Cursor::new(&bytes[..]))?;
        let file = zip.by_name("word/document.xml")?;
        (
            usize::try_from(file.header_start())?,
            usize::try_from(file.central_header_start())?,
        )
    };
    anyhow::ensure!(bytes.get(local..local + 4) == Some(b"PK\x03\x04"), "no local header");
    anyhow::ensure!(
        bytes.get(central..central + 4) == Some(b"PK\x01\x02"),
        "no central header"
    );
    bytes[local + 8..local + 10].copy_from_slice(&8u16.to_le_bytes());
    bytes[central + 10..central + 12].copy_from_slice(&8u16.to_le_bytes());
    Ok(bytes)
}

/// A docx whose main part declares nested entities ("billion laughs").
fn laughs_docx() -> anyhow::Result<Vec<u8>> {
    let mut dtd = String::from(r#"<!ENTITY lol0 "lol">"#);
    for level in 1..10 {
        let refs = format!("&lol{};", level - 1).repeat(10);
        let _ = write!(dtd, r#"<!ENTITY lol{level} "{refs}">"#);
    }
    let document = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE w:document [{dtd}]>
<w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>"#
    );
    package(&[
        (
            "[Content_Types].xml",
            content_types(&[(
                "/word/document.xml",
                &format!("{OOXML}.wordprocessingml.document.main+xml"),
            )]),
        ),
        ("_rels/.rels", root_rels("word/document.xml")),
        ("word/document.xml", document),
    ])
}

/// A minimal OLE compound file, as a legacy .doc starts: the header, one
/// FAT sector, and a directory of the root and an empty `WordDocument`
/// stream.
fn legacy_doc() -> Vec<u8> {
    const END_OF_CHAIN: u32 = 0xFFFF_FFFE;
    const FREE: u32 = 0xFFFF_FFFF;
    const NO_STREAM: u32 = 0xFFFF_FFFF;
    let put16 = |b: &mut [u8], at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let mut header = vec![0u8; 512];
    header[..8].copy_from_slice(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]);
    put16(&mut header, 0x18, 0x003E); // minor version
    put16(&mut header, 0x1A, 3); // major version: 512-byte sectors
    put16(&mut header, 0x1C, 0xFFFE); // little-endian
    put16(&mut header, 0x1E, 9); // sector shift
    put16(&mut header, 0x20, 6); // mini sector shift
    put32(&mut header, 0x2C, 1); // FAT sectors
    put32(&mut header, 0x30, 1); // first directory sector
    put32(&mut header, 0x38, 4096); // mini stream cutoff
    put32(&mut header, 0x3C, END_OF_CHAIN); // first mini FAT sector
    put32(&mut header, 0x44, END_OF_CHAIN); // first DIFAT sector
    for i in 0..109 {
        put32(&mut header, 0x4C + 4 * i, if i == 0 { 0 } else { FREE });
    }
    let mut fat = vec![0xFFu8; 512];
    put32(&mut fat, 0, 0xFFFF_FFFD); // sector 0: the FAT itself
    put32(&mut fat, 4, END_OF_CHAIN); // sector 1: the directory
    let mut dir = vec![0u8; 512];
    for (i, (name, kind)) in [("Root Entry", 5u8), ("WordDocument", 2u8)].iter().enumerate() {
        let entry = &mut dir[i * 128..(i + 1) * 128];
        let units: Vec<u16> = name.encode_utf16().collect();
        for (k, u) in units.iter().enumerate() {
            put16(entry, 2 * k, *u);
        }
        put16(entry, 0x40, ((units.len() + 1) * 2) as u16);
        entry[0x42] = *kind;
        entry[0x43] = 1; // black
        put32(entry, 0x44, NO_STREAM);
        put32(entry, 0x48, NO_STREAM);
        put32(entry, 0x4C, if i == 0 { 1 } else { NO_STREAM });
        put32(entry, 0x74, END_OF_CHAIN);
    }
    let mut out = header;
    out.extend(fat);
    out.extend(dir);
    out
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_truth;

    const GOOD: [&str; 6] = [
        "office/report.docx",
        "office/notes.odt",
        "office/figures.xlsx",
        "office/figures.ods",
        "office/slides.pptx",
        "office/slides.odp",
    ];

    #[test]
    fn generates_documents_with_consistent_entries() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let (pages_dir, truth_dir) = (tmp.path().join("pages"), tmp.path().join("truth"));
        let files = generate_office(&pages_dir, &truth_dir, 5)?;
        let names: Vec<&str> = files.iter().map(|f| f.rel_path.as_str()).collect();
        let mut expected = GOOD.to_vec();
        expected.extend([
            "office/bad/not-a-zip.docx",
            "office/bad/bomb.docx",
            "office/bad/laughs.docx",
            "office/bad/legacy.doc",
        ]);
        assert_eq!(names, expected);
        for f in &files {
            let bytes = std::fs::read(pages_dir.join(&f.rel_path))?;
            match (&f.truth, &f.expect_failure) {
                (Some(truth), None) => {
                    assert_eq!(&load_truth(&truth_dir, &f.rel_path)?, truth);
                    assert_eq!(f.pages, truth.split(SECTION_SEPARATOR).count(), "{}", f.rel_path);
                    assert!(!truth.trim().is_empty() && truth.is_ascii(), "{}", f.rel_path);
                    let zip = ZipArchive::new(Cursor::new(&bytes[..]))?;
                    let first = zip.name_for_index(0).transpose()?.unwrap_or_default().into_owned();
                    if f.rel_path.contains(".od") {
                        assert_eq!(first, "mimetype", "{}", f.rel_path);
                        assert!(zip.index_for_name("META-INF/manifest.xml").is_some());
                    } else {
                        assert_eq!(first, "[Content_Types].xml", "{}", f.rel_path);
                        assert!(zip.index_for_name("_rels/.rels").is_some());
                    }
                }
                (None, Some(failure)) => {
                    assert_eq!(f.pages, 0);
                    assert!(["corrupt", "tooLarge", "unsupported"].contains(&failure.as_str()));
                    assert!(!truth_path(&truth_dir, &f.rel_path).exists());
                    assert!(!bytes.is_empty());
                }
                _ => panic!("{} has both or neither truth and failure", f.rel_path),
            }
        }
        let pages: Vec<usize> = files.iter().take(6).map(|f| f.pages).collect();
        assert_eq!(pages, [1, 1, 2, 2, 3, 2]);
        Ok(())
    }

    #[test]
    fn same_seed_same_bytes() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let a = generate_office(&tmp.path().join("a"), &tmp.path().join("ta"), 9)?;
        let b = generate_office(&tmp.path().join("b"), &tmp.path().join("tb"), 9)?;
        let c = generate_office(&tmp.path().join("c"), &tmp.path().join("tc"), 10)?;
        assert_eq!(a, b);
        for f in &a {
            let read = |dir: &str| std::fs::read(tmp.path().join(dir).join(&f.rel_path));
            assert_eq!(read("a")?, read("b")?, "{}", f.rel_path);
        }
        assert_ne!(a[0].truth, c[0].truth);
        Ok(())
    }

    #[test]
    fn the_bomb_is_small_and_says_it_is_small() -> anyhow::Result<()> {
        let bomb = bomb_docx()?;
        assert!(bomb.len() < 3 << 20, "{} bytes", bomb.len());
        let mut zip = ZipArchive::new(Cursor::new(&bomb[..]))?;
        let document = zip.by_name("word/document.xml")?;
        assert_eq!(document.compression(), CompressionMethod::Deflated);
        // It declares its compressed size as its size; it inflates 1000x.
        assert_eq!(document.size(), document.compressed_size());
        Ok(())
    }

    #[test]
    fn the_legacy_doc_names_a_word_stream() {
        let doc = legacy_doc();
        assert_eq!(doc.len(), 3 * 512);
        let name: Vec<u8> = "WordDocument".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(&doc[1024 + 128..1024 + 128 + name.len()], &name[..]);
    }

    #[test]
    fn column_names() {
        assert_eq!(column_name(0), "A");
        assert_eq!(column_name(25), "Z");
        assert_eq!(column_name(26), "AA");
        assert_eq!(column_name(16383), "XFD");
    }
}
