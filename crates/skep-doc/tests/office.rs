//! Office text extraction: what each format yields, and in which order.

mod office_support;

use office_support::*;
use skep_api::FailureReason;
use skep_doc::office::{OfficeKind, OfficeLimits, OfficeText, extract_office, sniff_office};

fn extract(bytes: &[u8]) -> OfficeText {
    extract_office(bytes, &OfficeLimits::default()).expect("the document reads")
}

#[test]
fn docx_body_in_reading_order() {
    let body = format!(
        r#"{title}
<w:p><w:pPr><w:numPr><w:ilvl w:val="0"/><w:numId w:val="1"/></w:numPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr><w:r><w:t>first item</w:t></w:r></w:p>
<w:p><w:r><w:t>Amount</w:t></w:r><w:r><w:tab/><w:t>1,250.00 &amp; more</w:t></w:r><w:r><w:br/><w:t>next line &#x263A;</w:t></w:r></w:p>
<w:tbl><w:tblPr/><w:tblGrid><w:gridCol/></w:tblGrid>
  <w:tr><w:tc><w:p><w:r><w:t>Name</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Total</w:t></w:r></w:p></w:tc></w:tr>
  <w:tr><w:tc><w:p><w:r><w:t>two</w:t></w:r></w:p><w:p><w:r><w:t>lines</w:t></w:r></w:p></w:tc><w:tc><w:p/></w:tc><w:tc><w:p><w:r><w:t>3</w:t></w:r></w:p></w:tc></w:tr>
</w:tbl>
<w:p><w:r><w:t xml:space="preserve">Kept </w:t></w:r><w:del><w:r><w:delText>deleted </w:delText></w:r></w:del><w:ins><w:r><w:t>inserted</w:t></w:r></w:ins><w:r><w:fldChar w:fldCharType="begin"/></w:r><w:r><w:instrText> PAGE </w:instrText></w:r><w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t xml:space="preserve"> 7</w:t></w:r><w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>
<w:p><w:r><w:t>Anchor</w:t></w:r><w:r><mc:AlternateContent xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"><mc:Choice Requires="wps"><w:drawing><wps:txbx xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape"><w:txbxContent><w:p><w:r><w:t>boxed text</w:t></w:r></w:p></w:txbxContent></wps:txbx></w:drawing></mc:Choice><mc:Fallback><w:pict><w:txbxContent><w:p><w:r><w:t>boxed text</w:t></w:r></w:p></w:txbxContent></w:pict></mc:Fallback></mc:AlternateContent></w:r><w:r><w:t xml:space="preserve"> paragraph</w:t></w:r></w:p>
<w:p/>
{last}<w:sectPr><w:pgSz w:w="11906"/></w:sectPr>"#,
        title = wp("Quarterly report"),
        last = wp("The end."),
    );
    let out = extract(&docx(&body));
    assert_eq!(out.sections, 1);
    assert_eq!(
        out.text,
        "Quarterly report\nfirst item\nAmount\t1,250.00 & more\nnext line \u{263A}\nName\tTotal\ntwo lines\t\t3\n\
         Kept inserted 7\nAnchor paragraph\nboxed text\n\nThe end."
    );
}

#[test]
fn docx_notes_follow_the_body_and_headers_are_left_out() {
    let document = word_document(r#"<w:p><w:r><w:t>Body</w:t></w:r><w:r><w:footnoteReference w:id="2"/></w:r></w:p>"#);
    let doc_rels = rels(&[
        ("rId1", "footnotes", "footnotes.xml"),
        ("rId2", "header", "header1.xml"),
        ("rId3", "endnotes", "/word/endnotes.xml"),
    ]);
    let footnotes = format!(
        r#"<w:footnotes xmlns:w="{W}"><w:footnote w:type="separator" w:id="0"><w:p><w:r><w:separator/></w:r></w:p></w:footnote><w:footnote w:type="continuationSeparator" w:id="1"><w:p><w:r><w:t>sep</w:t></w:r></w:p></w:footnote><w:footnote w:id="2"><w:p><w:r><w:t>A footnote.</w:t></w:r></w:p></w:footnote></w:footnotes>"#
    );
    let endnotes = format!(
        r#"<w:endnotes xmlns:w="{W}"><w:endnote w:id="1">{}</w:endnote></w:endnotes>"#,
        wp("An endnote.")
    );
    let header = format!(r#"<w:hdr xmlns:w="{W}">{}</w:hdr>"#, wp("Running header"));
    let bytes = docx_parts(
        &document,
        &[
            ("word/_rels/document.xml.rels", &doc_rels),
            ("word/footnotes.xml", &footnotes),
            ("word/endnotes.xml", &endnotes),
            ("word/header1.xml", &header),
        ],
    );
    assert_eq!(extract(&bytes).text, "Body\nA footnote.\nAn endnote.");
}

#[test]
fn docx_with_other_prefixes_and_strict_namespaces() {
    let strict = r#"<?xml version="1.0"?><ns0:document xmlns:ns0="http://purl.oclc.org/ooxml/wordprocessingml/main"><ns0:body><ns0:p><ns0:r><ns0:t>strict</ns0:t></ns0:r></ns0:p></ns0:body></ns0:document>"#;
    assert_eq!(extract(&docx_parts(strict, &[])).text, "strict");
    let default_ns = format!(r#"<document xmlns="{W}"><body><p><r><t>default namespace</t></r></p></body></document>"#);
    assert_eq!(extract(&docx_parts(&default_ns, &[])).text, "default namespace");
}

#[test]
fn docx_main_part_is_found_by_content_type_in_any_case() {
    let ct = content_types("/Word/Main.xml", &DOCX_MAIN.to_uppercase());
    let bytes = zip(&[
        ("[Content_Types].xml", ct.as_bytes()),
        ("word/main.xml", word_document(&wp("renamed")).as_bytes()),
    ]);
    assert_eq!(sniff_office(&bytes), Some(OfficeKind::Docx));
    assert_eq!(extract(&bytes).text, "renamed");
}

const SHEET_NS: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";

fn xlsx(sheets: &[(&str, &str)], shared: &str) -> Vec<u8> {
    let mut list = String::new();
    let mut rel_list = vec![];
    let targets: Vec<String> = sheets.iter().map(|(part, _)| format!("worksheets/{part}")).collect();
    for (i, target) in targets.iter().enumerate() {
        list.push_str(&format!(
            r#"<sheet name="S{i}" sheetId="{}" r:id="rId{}"/>"#,
            i + 1,
            i + 1
        ));
        rel_list.push((format!("rId{}", i + 1), target.clone()));
    }
    let workbook =
        format!(r#"<workbook xmlns="{SHEET_NS}" xmlns:r="{R}"><bookViews/><sheets>{list}</sheets></workbook>"#);
    let mut wb_rels: Vec<(&str, &str, &str)> = rel_list
        .iter()
        .map(|(id, t)| (id.as_str(), "worksheet", t.as_str()))
        .collect();
    wb_rels.push(("rIdS", "sharedStrings", "sharedStrings.xml"));
    let wb_rels = rels(&wb_rels);
    let ct = content_types("/xl/workbook.xml", XLSX_MAIN);
    let sst = format!(r#"<sst xmlns="{SHEET_NS}">{shared}</sst>"#);
    let sheet_xml: Vec<(String, String)> = sheets
        .iter()
        .map(|(part, data)| {
            (
                format!("xl/worksheets/{part}"),
                format!(r#"<worksheet xmlns="{SHEET_NS}"><sheetData>{data}</sheetData></worksheet>"#),
            )
        })
        .collect();
    let mut entries: Vec<(&str, &[u8])> = vec![
        ("[Content_Types].xml", ct.as_bytes()),
        ("xl/workbook.xml", workbook.as_bytes()),
        ("xl/_rels/workbook.xml.rels", wb_rels.as_bytes()),
        ("xl/sharedStrings.xml", sst.as_bytes()),
    ];
    for (name, body) in &sheet_xml {
        entries.push((name, body.as_bytes()));
    }
    zip(&entries)
}

#[test]
fn xlsx_sheets_in_workbook_order_with_shared_strings() {
    let shared = r#"<si><t>Name</t></si><si><t>Total</t></si><si><r><t>rich</t></r><r><rPr><b/></rPr><t xml:space="preserve"> text</t></r><rPh sb="0" eb="1"><t>PHONETIC</t></rPh></si><si><t>line_x000D_break</t></si>"#;
    let summary = r#"<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>
<row r="2"><c r="A2" t="s"><v>2</v></c><c r="B2"><v>1250.5</v></c><c r="D2" t="b"><v>1</v></c></row>
<row r="3"/>
<row r="7"><c r="B7"><f>B2*2</f><v>2501</v></c><c r="C7" t="inlineStr"><is><t>inline</t></is></c><c r="E7" t="e"><v>#DIV/0!</v></c></row>"#;
    let detail = r#"<row><c t="s"><v>3</v></c><c><v>0.1</v></c><c t="str"><v>formula text</v></c></row>"#;
    // The workbook lists detail.xml (as the first sheet) before summary.xml.
    let bytes = xlsx(&[("detail.xml", detail), ("summary.xml", summary)], shared);
    assert_eq!(sniff_office(&bytes), Some(OfficeKind::Xlsx));
    let out = extract(&bytes);
    assert_eq!(out.sections, 2);
    assert_eq!(
        out.text,
        "line break\t0.1\tformula text\n\x0c\nName\tTotal\nrich text\t1250.5\t\tTRUE\n\t2501\tinline\t\t#DIV/0!"
    );
}

#[test]
fn xlsx_bad_shared_string_index_is_corrupt() {
    let bytes = xlsx(
        &[("s.xml", r#"<row><c t="s"><v>5</v></c></row>"#)],
        "<si><t>only</t></si>",
    );
    assert_eq!(
        reason(extract_office(&bytes, &OfficeLimits::default())),
        FailureReason::Corrupt
    );
}

const P_NS: &str = "http://schemas.openxmlformats.org/presentationml/2006/main";
const A_NS: &str = "http://schemas.openxmlformats.org/drawingml/2006/main";

fn shape(paragraphs: &[&str]) -> String {
    let ps: String = paragraphs
        .iter()
        .map(|p| {
            if p.is_empty() {
                "<a:p><a:endParaRPr lang=\"en-US\"/></a:p>".to_string()
            } else {
                format!("<a:p><a:r><a:rPr lang=\"en-US\"/><a:t>{p}</a:t></a:r></a:p>")
            }
        })
        .collect();
    format!(
        r#"<p:sp><p:nvSpPr><p:cNvPr id="2" name="Title 1"/><p:cNvSpPr/><p:nvPr/></p:nvSpPr><p:spPr/><p:txBody><a:bodyPr/><a:lstStyle/>{ps}</p:txBody></p:sp>"#
    )
}

fn slide(shapes: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><p:sld xmlns:a="{A_NS}" xmlns:p="{P_NS}" xmlns:r="{R}"><p:cSld><p:spTree><p:nvGrpSpPr><p:cNvPr id="1" name=""/><p:cNvGrpSpPr/><p:nvPr/></p:nvGrpSpPr><p:grpSpPr/>{shapes}</p:spTree></p:cSld></p:sld>"#
    )
}

#[test]
fn pptx_slides_in_presentation_order() {
    let presentation = format!(
        r#"<p:presentation xmlns:a="{A_NS}" xmlns:p="{P_NS}" xmlns:r="{R}"><p:sldMasterIdLst><p:sldMasterId id="2147483648" r:id="rId9"/></p:sldMasterIdLst><p:sldIdLst><p:sldId id="258" r:id="rId3"/><p:sldId id="256" r:id="rId1"/><p:sldId id="257" r:id="rId2"/></p:sldIdLst></p:presentation>"#
    );
    let pres_rels = rels(&[
        ("rId1", "slide", "slides/slide1.xml"),
        ("rId2", "slide", "slides/slide2.xml"),
        ("rId3", "slide", "slides/slide3.xml"),
        ("rId9", "slideMaster", "slideMasters/slideMaster1.xml"),
    ]);
    let table = r#"<p:graphicFrame><p:nvGraphicFramePr><p:cNvPr id="4" name="Table"/><p:cNvGraphicFramePr/><p:nvPr/></p:nvGraphicFramePr><a:graphic><a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/table"><a:tbl><a:tblGrid><a:gridCol w="1"/></a:tblGrid><a:tr h="1"><a:tc><a:txBody><a:bodyPr/><a:p><a:r><a:t>Q1</a:t></a:r></a:p></a:txBody><a:tcPr/></a:tc><a:tc><a:txBody><a:bodyPr/><a:p><a:r><a:t>10</a:t></a:r></a:p></a:txBody></a:tc></a:tr></a:tbl></a:graphicData></a:graphic></p:graphicFrame>"#;
    let s1 = slide(&(shape(&["First title"]) + &shape(&["", "point one", "point two"])));
    let s2 = slide(&(shape(&["Second title"]) + table));
    let s3 = slide(
        &(shape(&["Opening"])
            + "<p:sp><p:txBody><a:p><a:r><a:t>line</a:t></a:r><a:br/><a:r><a:t>broken</a:t></a:r><a:fld id=\"x\" type=\"slidenum\"><a:t>3</a:t></a:fld></a:p></p:txBody></p:sp>"),
    );
    let notes = format!(
        r#"<p:notes xmlns:a="{A_NS}" xmlns:p="{P_NS}"><p:cSld><p:spTree>{}</p:spTree></p:cSld></p:notes>"#,
        shape(&["speaker notes"])
    );
    let ct = content_types("/ppt/presentation.xml", PPTX_MAIN);
    let bytes = zip(&[
        ("[Content_Types].xml", ct.as_bytes()),
        ("ppt/presentation.xml", presentation.as_bytes()),
        ("ppt/_rels/presentation.xml.rels", pres_rels.as_bytes()),
        ("ppt/slides/slide1.xml", s1.as_bytes()),
        ("ppt/slides/slide2.xml", s2.as_bytes()),
        ("ppt/slides/slide3.xml", s3.as_bytes()),
        ("ppt/notesSlides/notesSlide1.xml", notes.as_bytes()),
    ]);
    assert_eq!(sniff_office(&bytes), Some(OfficeKind::Pptx));
    let out = extract(&bytes);
    assert_eq!(out.sections, 3);
    assert_eq!(
        out.text,
        "Opening\nline\nbroken3\n\x0c\nFirst title\npoint one\npoint two\n\x0c\nSecond title\nQ1\t10"
    );
}

#[test]
fn pptx_slide_missing_from_the_package_is_corrupt() {
    let presentation = format!(
        r#"<p:presentation xmlns:p="{P_NS}" xmlns:r="{R}"><p:sldIdLst><p:sldId id="256" r:id="rId1"/></p:sldIdLst></p:presentation>"#
    );
    let pres_rels = rels(&[("rId1", "slide", "slides/slide1.xml")]);
    let ct = content_types("/ppt/presentation.xml", PPTX_MAIN);
    let bytes = zip(&[
        ("[Content_Types].xml", ct.as_bytes()),
        ("ppt/presentation.xml", presentation.as_bytes()),
        ("ppt/_rels/presentation.xml.rels", pres_rels.as_bytes()),
    ]);
    assert_eq!(
        reason(extract_office(&bytes, &OfficeLimits::default())),
        FailureReason::Corrupt
    );
}

#[test]
fn odt_text_lists_tables_notes() {
    let body = r#"<office:text><text:sequence-decls><text:sequence-decl text:name="Table"/></text:sequence-decls>
<text:h text:outline-level="1">Field   notes</text:h>
<text:p>  Leading and   collapsed
 white space<text:s text:c="3"/>kept<text:tab/>tab<text:line-break/>broken </text:p>
<text:list><text:list-item><text:p>item one</text:p></text:list-item><text:list-item><text:p>item <text:span>two</text:span></text:p></text:list-item></text:list>
<table:table table:name="T"><table:table-column table:number-columns-repeated="3"/>
 <table:table-header-rows><table:table-row><table:table-cell><text:p>k</text:p></table:table-cell><table:table-cell><text:p>v</text:p></table:table-cell></table:table-row></table:table-header-rows>
 <table:table-row><table:table-cell><text:p>a</text:p><text:p>b</text:p></table:table-cell><table:covered-table-cell/><table:table-cell><text:p>c</text:p></table:table-cell></table:table-row>
</table:table>
<text:p>Cited<text:note text:id="n1" text:note-class="footnote"><text:note-citation>1</text:note-citation><text:note-body><text:p>The note.</text:p></text:note-body></text:note> here.<office:annotation><text:p>a comment</text:p></office:annotation></text:p>
<text:p>Anchor<draw:frame><draw:text-box><text:p>framed</text:p></draw:text-box></draw:frame></text:p>
<text:tracked-changes><text:changed-region><text:deletion><text:p>gone</text:p></text:deletion></text:changed-region></text:tracked-changes>
<text:p/>
<text:p>End &amp; &#x41;</text:p></office:text>"#;
    let bytes = odf(
        "application/vnd.oasis.opendocument.text",
        &[("content.xml", &odf_content(body))],
    );
    assert_eq!(sniff_office(&bytes), Some(OfficeKind::Odt));
    let out = extract(&bytes);
    assert_eq!(out.sections, 1);
    assert_eq!(
        out.text,
        "Field notes\nLeading and collapsed white space   kept\ttab\nbroken\nitem one\nitem two\nk\tv\na b\t\tc\n\
         Cited here.\nAnchor\nframed\n\nEnd & A\nThe note."
    );
}

#[test]
fn ods_sheets_rows_and_repeats() {
    let body = r#"<office:spreadsheet><table:calculation-settings/>
<table:table table:name="Summary"><table:table-column table:number-columns-repeated="1024"/>
 <table:table-row><table:table-cell office:value-type="string"><text:p>Name</text:p></table:table-cell><table:table-cell table:number-columns-repeated="2"><text:p>n/a</text:p></table:table-cell><table:table-cell table:number-columns-repeated="1021"/></table:table-row>
 <table:table-row table:number-rows-repeated="2"><table:table-cell table:number-columns-repeated="2"/><table:table-cell office:value-type="float" office:value="1250.5"><text:p>1,250.50</text:p></table:table-cell><table:table-cell table:number-columns-repeated="16380"/></table:table-row>
 <table:table-row table:number-rows-repeated="1048573"><table:table-cell table:number-columns-repeated="16384"/></table:table-row>
</table:table>
<table:table table:name="Detail">
 <table:table-row><table:table-cell office:value-type="float" office:value="42"/><table:table-cell><text:p>with<text:s/> <text:s/>spaces</text:p><office:annotation><text:p>note</text:p></office:annotation></table:table-cell></table:table-row>
</table:table>
<table:named-expressions/></office:spreadsheet>"#;
    let bytes = odf(
        "application/vnd.oasis.opendocument.spreadsheet",
        &[("content.xml", &odf_content(body))],
    );
    assert_eq!(sniff_office(&bytes), Some(OfficeKind::Ods));
    let started = std::time::Instant::now();
    let out = extract(&bytes);
    assert!(started.elapsed().as_secs() < 2, "empty repeats must cost nothing");
    assert_eq!(out.sections, 2);
    assert_eq!(
        out.text,
        "Name\tn/a\tn/a\n\t\t1,250.50\n\t\t1,250.50\n\x0c\n42\twith   spaces"
    );
}

#[test]
fn odp_pages_without_notes() {
    let body = r#"<office:presentation>
<draw:page draw:name="p1"><draw:frame presentation:class="title"><draw:text-box><text:p>Welcome</text:p></draw:text-box></draw:frame>
 <draw:frame presentation:class="outline"><draw:text-box><text:list><text:list-item><text:p>first point</text:p></text:list-item><text:list-item><text:p>second point</text:p></text:list-item></text:list></draw:text-box></draw:frame>
 <draw:custom-shape><text:p/><text:p>shape text</text:p><svg:title>alt</svg:title></draw:custom-shape>
 <presentation:notes><draw:frame><draw:text-box><text:p>speaker notes</text:p></draw:text-box></draw:frame></presentation:notes></draw:page>
<draw:page draw:name="p2"><draw:frame><draw:text-box><text:p>Thanks</text:p></draw:text-box></draw:frame></draw:page>
</office:presentation>"#;
    let bytes = odf(
        "application/vnd.oasis.opendocument.presentation",
        &[("content.xml", &odf_content(body))],
    );
    assert_eq!(sniff_office(&bytes), Some(OfficeKind::Odp));
    let out = extract(&bytes);
    assert_eq!(out.sections, 2);
    assert_eq!(out.text, "Welcome\nfirst point\nsecond point\nshape text\n\x0c\nThanks");
}

#[test]
fn sniff_knows_formats_by_content_only() {
    assert_eq!(sniff_office(b""), None);
    assert_eq!(sniff_office(b"%PDF-1.7"), None);
    assert_eq!(sniff_office(&zip(&[("a.txt", b"hello")])), None);
    assert_eq!(
        sniff_office(&odf("application/vnd.oasis.opendocument.graphics", &[])),
        None
    );
    assert_eq!(sniff_office(&compound(&["WordDocument"])), Some(OfficeKind::Legacy));
    assert_eq!(
        sniff_office(&compound(&["EncryptionInfo", "EncryptedPackage"])),
        Some(OfficeKind::EncryptedOoxml)
    );
    let macro_ct = content_types(
        "/word/document.xml",
        "application/vnd.ms-word.document.macroEnabled.main+xml",
    );
    let docm = zip(&[
        ("[Content_Types].xml", macro_ct.as_bytes()),
        ("word/document.xml", word_document(&wp("macro")).as_bytes()),
    ]);
    assert_eq!(sniff_office(&docm), Some(OfficeKind::Docx));
    assert_eq!(extract(&docm).text, "macro");
}
