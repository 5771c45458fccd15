//! Office extraction under hostile input: every bound trips with the right
//! reason, fast, and broken files fail as `Corrupt` instead of panicking.

mod office_support;

use std::io::{Cursor, Write};
use std::time::{Duration, Instant};

use office_support::*;
use skep_api::FailureReason;
use skep_doc::office::{OfficeLimits, extract_office};
use zip::ZipWriter;

fn run(bytes: &[u8], limits: &OfficeLimits) -> FailureReason {
    reason(extract_office(bytes, limits))
}

fn default_run(bytes: &[u8]) -> FailureReason {
    run(bytes, &OfficeLimits::default())
}

/// Runs `f`, failing if it takes longer than `max` (debug builds included).
fn quick<T>(max: Duration, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    assert!(started.elapsed() < max, "took {:?}", started.elapsed());
    out
}

#[test]
fn not_office_files() {
    assert_eq!(default_run(b""), FailureReason::Empty);
    assert_eq!(default_run(b"plain text, not a zip"), FailureReason::Corrupt);
    assert_eq!(default_run(b"PK\x03\x04 truncated"), FailureReason::Corrupt);
    assert_eq!(default_run(&zip(&[("notes.txt", b"hi")])), FailureReason::Unsupported);
    let xlsb = zip(&[(
        "[Content_Types].xml",
        content_types(
            "/xl/workbook.bin",
            "application/vnd.ms-excel.sheet.binary.macroEnabled.main",
        )
        .as_bytes(),
    )]);
    assert_eq!(default_run(&xlsb), FailureReason::Unsupported);
}

#[test]
fn legacy_compound_files_are_unsupported_with_advice() {
    let err = extract_office(&compound(&["WordDocument", "1Table"]), &OfficeLimits::default()).unwrap_err();
    assert_eq!(err.reason, FailureReason::Unsupported);
    assert!(err.message.contains("--convert-to docx"), "{}", err.message);
    let err = extract_office(&compound(&["Workbook"]), &OfficeLimits::default()).unwrap_err();
    assert!(err.message.contains("--convert-to xlsx"), "{}", err.message);
    // A bare header with no readable directory is still a compound file.
    assert_eq!(default_run(&compound(&[])[..512]), FailureReason::Unsupported);
}

#[test]
fn encrypted_documents() {
    assert_eq!(
        default_run(&compound(&["EncryptionInfo", "EncryptedPackage"])),
        FailureReason::Encrypted
    );
    let manifest = r#"<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"><manifest:encryption-data manifest:checksum-type="SHA1/1K" manifest:checksum="x"><manifest:algorithm manifest:algorithm-name="Blowfish CFB" manifest:initialisation-vector="x"/></manifest:encryption-data></manifest:file-entry></manifest:manifest>"#;
    let odt = odf(
        "application/vnd.oasis.opendocument.text",
        &[("META-INF/manifest.xml", manifest), ("content.xml", "\u{1}\u{2}binary")],
    );
    assert_eq!(default_run(&odt), FailureReason::Encrypted);
}

#[test]
fn broken_packages_are_corrupt() {
    // Content types name a main part the archive does not have.
    let ct = content_types("/word/document.xml", DOCX_MAIN);
    let missing = zip(&[("[Content_Types].xml", ct.as_bytes())]);
    assert_eq!(default_run(&missing), FailureReason::Corrupt);
    // An ODF without content.xml.
    assert_eq!(
        default_run(&odf("application/vnd.oasis.opendocument.text", &[])),
        FailureReason::Corrupt
    );
    // Malformed XML, and XML cut short.
    assert_eq!(
        default_run(&docx_parts("<w:document><w:body></w:document>", &[])),
        FailureReason::Corrupt
    );
    let document = word_document(&wp("cut"));
    let cut = &document[..document.len() - 20];
    assert_eq!(default_run(&docx_parts(cut, &[])), FailureReason::Corrupt);
    // A part that is not UTF-8 (Latin-1 text).
    let ct = content_types("/word/document.xml", DOCX_MAIN);
    let mut latin1 = word_document(&wp("caf#")).into_bytes();
    let at = latin1.iter().position(|&b| b == b'#').unwrap();
    latin1[at] = 0xE9;
    let bytes = zip(&[("[Content_Types].xml", ct.as_bytes()), ("word/document.xml", &latin1)]);
    assert_eq!(default_run(&bytes), FailureReason::Corrupt);
}

#[test]
fn truncated_or_damaged_zips_never_panic() {
    let good = docx(
        &(0..40)
            .map(|i| wp(&format!("paragraph {i} of the document")))
            .collect::<String>(),
    );
    assert!(extract_office(&good, &OfficeLimits::default()).is_ok());
    for len in (0..good.len()).step_by(7) {
        let r = extract_office(&good[..len], &OfficeLimits::default());
        assert!(r.is_err(), "a docx cut at {len} of {} bytes read", good.len());
    }
    // Flip bytes inside the compressed document: the checksum or the
    // inflater catches it, or the XML does.
    let mut seed: u32 = 7;
    let mut caught = 0;
    for _ in 0..300 {
        let mut bad = good.clone();
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let at = (seed as usize >> 4) % bad.len();
        bad[at] ^= 1 << (seed % 8);
        match extract_office(&bad, &OfficeLimits::default()) {
            Ok(out) => assert_eq!(out.sections, 1),
            Err(e) => {
                assert!(
                    matches!(
                        e.reason,
                        FailureReason::Corrupt | FailureReason::Unsupported | FailureReason::Encrypted
                    ),
                    "{e}"
                );
                caught += 1;
            }
        }
    }
    assert!(caught > 100, "only {caught} of 300 damaged files were refused");
}

#[test]
fn a_checksum_mismatch_is_corrupt() {
    let mut bytes = docx(&wp("checksummed"));
    let document = word_document(&wp("checksummed"));
    // Rewrite the stored CRC of word/document.xml in the central directory.
    let central = {
        let mut z = zip::ZipArchive::new(Cursor::new(&bytes[..])).unwrap();
        let f = z.by_name("word/document.xml").unwrap();
        assert_eq!(f.size(), document.len() as u64);
        f.central_header_start() as usize
    };
    bytes[central + 16] ^= 0xFF;
    let err = extract_office(&bytes, &OfficeLimits::default()).unwrap_err();
    assert_eq!(err.reason, FailureReason::Corrupt);
    assert!(err.message.contains("checksum"), "{}", err.message);
}

#[test]
fn zip_bomb_is_too_large_fast() {
    // 2 GiB of spaces inside the document element, in a ~2 MiB file whose
    // headers claim the entry is ~2 MiB.
    let bomb = bomb_docx(2048);
    assert!(bomb.len() < 3 << 20, "{} bytes", bomb.len());
    let err = quick(Duration::from_secs(5), || {
        extract_office(&bomb, &OfficeLimits::default()).unwrap_err()
    });
    assert_eq!(err.reason, FailureReason::TooLarge);
    assert!(err.message.contains("inflates more than"), "{}", err.message);
}

#[test]
fn entry_and_total_sizes_are_counted_as_inflated() {
    // Ratio check off: the size bounds alone must stop it.
    let limits = OfficeLimits {
        max_ratio: u64::MAX,
        max_entry_bytes: 4 << 20,
        ..OfficeLimits::default()
    };
    let err = quick(Duration::from_secs(5), || {
        extract_office(&bomb_docx(64), &limits).unwrap_err()
    });
    assert_eq!(err.reason, FailureReason::TooLarge);
    assert!(err.message.contains("inflates to more than 4194304"), "{}", err.message);

    // Five sheets that are the same 300 KiB entry (overlapping central
    // directory entries): each is under the entry bound, together over
    // the total.
    let row: String = (0..4000).map(|i| format!("<row><c><v>{i}</v></c></row>")).collect();
    let sheet = format!(
        r#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>{row}</sheetData></worksheet>"#
    );
    let names: Vec<String> = (1..=5).map(|i| format!("xl/worksheets/sheet{i}.xml")).collect();
    let sheets: String = (1..=5)
        .map(|i| format!(r#"<sheet name="s{i}" sheetId="{i}" r:id="rId{i}"/>"#))
        .collect();
    let workbook = format!(
        r#"<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="{R}"><sheets>{sheets}</sheets></workbook>"#
    );
    let rel_rows: Vec<(String, String)> = (1..=5)
        .map(|i| (format!("rId{i}"), format!("worksheets/sheet{i}.xml")))
        .collect();
    let rel_refs: Vec<(&str, &str, &str)> = rel_rows
        .iter()
        .map(|(id, t)| (id.as_str(), "worksheet", t.as_str()))
        .collect();
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, body) in [
        ("[Content_Types].xml", content_types("/xl/workbook.xml", XLSX_MAIN)),
        ("xl/workbook.xml", workbook),
        ("xl/_rels/workbook.xml.rels", rels(&rel_refs)),
        (names[0].as_str(), sheet.clone()),
    ] {
        w.start_file(name, deflated()).unwrap();
        w.write_all(body.as_bytes()).unwrap();
    }
    for name in &names[1..] {
        w.shallow_copy_file(&names[0], name).unwrap();
    }
    let xlsx = w.finish().unwrap().into_inner();
    let sized = |total: u64| OfficeLimits {
        max_total_bytes: total,
        ..OfficeLimits::default()
    };
    let out = extract_office(&xlsx, &sized(8 << 20)).unwrap();
    assert_eq!(out.sections, 5);
    let err = extract_office(&xlsx, &sized(3 * sheet.len() as u64)).unwrap_err();
    assert_eq!(err.reason, FailureReason::TooLarge);
    assert!(err.message.contains("archive inflates to more than"), "{}", err.message);
}

#[test]
fn too_many_entries() {
    let names: Vec<String> = (0..20).map(|i| format!("f{i}.xml")).collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"<a/>"[..])).collect();
    let limits = OfficeLimits {
        max_entries: 10,
        ..OfficeLimits::default()
    };
    assert_eq!(run(&zip(&entries), &limits), FailureReason::TooLarge);
}

#[test]
fn declared_entry_counts_are_checked_before_the_directory_is_read() {
    let mut bytes = docx(&wp("x"));
    let eocd = bytes.len() - 22;
    assert_eq!(&bytes[eocd..eocd + 4], b"PK\x05\x06");
    bytes[eocd + 8..eocd + 12].copy_from_slice(&[0x60, 0xEA, 0x60, 0xEA]);
    let err = extract_office(&bytes, &OfficeLimits::default()).unwrap_err();
    assert_eq!(err.reason, FailureReason::TooLarge);
    assert!(
        err.message.contains("declares more than 10000 entries"),
        "{}",
        err.message
    );
}

#[test]
fn a_central_directory_claiming_more_than_the_file_holds() {
    // End-of-central-directory records claiming 9000 entries, then 65535,
    // in a 4 GiB directory, in a file of a few bytes.
    for (count, reason) in [(9000u16, FailureReason::Corrupt), (0xFFFF, FailureReason::TooLarge)] {
        let mut bytes = b"PK\x03\x04".to_vec();
        bytes.extend_from_slice(&[0; 26]);
        bytes.extend_from_slice(b"PK\x05\x06\0\0\0\0");
        bytes.extend_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(&[0xFF; 4]);
        bytes.extend_from_slice(&[0; 6]);
        assert_eq!(quick(Duration::from_secs(2), || default_run(&bytes)), reason);
    }
}

#[test]
fn duplicate_entry_names_are_corrupt() {
    let document = word_document(&wp("one"));
    let mut bytes = docx_parts(&document, &[("word/documenX.xml", &word_document(&wp("two")))]);
    // Rename the second entry to the first's name in both its headers.
    let from = b"word/documenX.xml";
    let mut at = 0;
    while let Some(pos) = bytes[at..].windows(from.len()).position(|w| w == from) {
        bytes[at + pos + from.len() - 5] = b't';
        at += pos + from.len();
    }
    let err = extract_office(&bytes, &OfficeLimits::default()).unwrap_err();
    assert_eq!(err.reason, FailureReason::Corrupt);
    assert!(err.message.contains("same name"), "{}", err.message);
}

#[test]
fn entities_are_never_expanded() {
    let laughs = format!(
        r#"<?xml version="1.0"?><!DOCTYPE w:document [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><w:document xmlns:w="{W}"><w:body><w:p><w:r><w:t>&lol3;</w:t></w:r></w:p></w:body></w:document>"#
    );
    assert_eq!(default_run(&docx_parts(&laughs, &[])), FailureReason::Corrupt);
    let external = format!(
        r#"<?xml version="1.0"?><!DOCTYPE w:document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><w:document xmlns:w="{W}"><w:body><w:p><w:r><w:t>&xxe;</w:t></w:r></w:p></w:body></w:document>"#
    );
    assert_eq!(default_run(&docx_parts(&external, &[])), FailureReason::Corrupt);
    // An entity declared in an external DTD is undefined here.
    let undeclared = format!(
        r#"<?xml version="1.0"?><!DOCTYPE w:document SYSTEM "http://example.invalid/x.dtd"><w:document xmlns:w="{W}"><w:body><w:p><w:r><w:t>&ext;</w:t></w:r></w:p></w:body></w:document>"#
    );
    assert_eq!(default_run(&docx_parts(&undeclared, &[])), FailureReason::Corrupt);
    // ... and in an attribute.
    let in_attr = format!(
        r#"<?xml version="1.0"?><w:document xmlns:w="{W}"><w:body><w:p><w:r><w:t>x</w:t></w:r></w:p><w:footnote w:type="&ext;"/></w:body></w:document>"#
    );
    assert_eq!(default_run(&docx_parts(&in_attr, &[])), FailureReason::Corrupt);
    // A DOCTYPE without declarations is harmless and ignored.
    let plain = format!(
        r#"<?xml version="1.0"?><!DOCTYPE w:document><w:document xmlns:w="{W}"><w:body>{}</w:body></w:document>"#,
        wp("ok")
    );
    assert_eq!(
        extract_office(&docx_parts(&plain, &[]), &OfficeLimits::default())
            .unwrap()
            .text,
        "ok"
    );
}

#[test]
fn deep_nesting_is_too_large() {
    let depth = 100_000;
    let body = "<w:sdt>".repeat(depth) + &"</w:sdt>".repeat(depth);
    let err = quick(Duration::from_secs(5), || {
        extract_office(&docx(&body), &OfficeLimits::default()).unwrap_err()
    });
    assert_eq!(err.reason, FailureReason::TooLarge);
    assert!(err.message.contains("deeper than 256"), "{}", err.message);
    // Just under the bound reads.
    let ok = "<w:sdt>".repeat(250) + &wp("deep") + &"</w:sdt>".repeat(250);
    assert_eq!(
        extract_office(&docx(&ok), &OfficeLimits::default()).unwrap().text,
        "deep"
    );
}

#[test]
fn element_token_and_text_bounds() {
    let body: String = (0..5000).map(|_| wp("word")).collect();
    let bytes = docx(&body);
    let ok = extract_office(&bytes, &OfficeLimits::default()).unwrap();
    assert_eq!(ok.text.len(), 5000 * 5 - 1);
    let elements = OfficeLimits {
        max_elements: 10_000,
        ..OfficeLimits::default()
    };
    assert_eq!(run(&bytes, &elements), FailureReason::TooLarge);
    let text = OfficeLimits {
        max_text_bytes: 5000 * 5 - 2,
        ..OfficeLimits::default()
    };
    assert_eq!(run(&bytes, &text), FailureReason::TooLarge);
    let exact = OfficeLimits {
        max_text_bytes: 5000 * 5 - 1,
        ..OfficeLimits::default()
    };
    assert!(extract_office(&bytes, &exact).is_ok());

    // One text node of 2 MiB, with tokens bounded to 1 MiB.
    let long = docx(&wp(&"x".repeat(2 << 20)));
    let tokens = OfficeLimits {
        max_token_bytes: 1 << 20,
        max_ratio: u64::MAX,
        ..OfficeLimits::default()
    };
    let err = extract_office(&long, &tokens).unwrap_err();
    assert_eq!(err.reason, FailureReason::TooLarge);
    assert!(err.message.contains("token"), "{}", err.message);
}

#[test]
fn odf_repeats_and_spaces_are_bounded() {
    let content = |rows: &str| {
        odf(
            "application/vnd.oasis.opendocument.spreadsheet",
            &[(
                "content.xml",
                &odf_content(&format!(
                    "<office:spreadsheet><table:table>{rows}</table:table></office:spreadsheet>"
                )),
            )],
        )
    };
    // A billion empty cells and rows, then a cell past the last column.
    let wide = content(
        r#"<table:table-row table:number-rows-repeated="1000000000"><table:table-cell table:number-columns-repeated="1000000000"/></table:table-row><table:table-row><table:table-cell table:number-columns-repeated="1000000000"/><table:table-cell><text:p>x</text:p></table:table-cell></table:table-row>"#,
    );
    let err = quick(Duration::from_secs(2), || {
        extract_office(&wide, &OfficeLimits::default()).unwrap_err()
    });
    assert_eq!(err.reason, FailureReason::TooLarge);
    assert!(err.message.contains("wider than 16384"), "{}", err.message);
    // A row of text repeated a trillion times.
    let tall = content(
        r#"<table:table-row table:number-rows-repeated="1000000000000"><table:table-cell table:number-columns-repeated="3"><text:p>x</text:p></table:table-cell></table:table-row>"#,
    );
    let err = quick(Duration::from_secs(2), || {
        extract_office(&tall, &OfficeLimits::default()).unwrap_err()
    });
    assert_eq!(err.reason, FailureReason::TooLarge);
    // A text cell repeated 16384 times is fine; 16385 is not.
    let full = content(
        r#"<table:table-row><table:table-cell table:number-columns-repeated="16384"><text:p>y</text:p></table:table-cell></table:table-row>"#,
    );
    assert_eq!(
        extract_office(&full, &OfficeLimits::default()).unwrap().text.len(),
        2 * 16384 - 1
    );
    let over = content(
        r#"<table:table-row><table:table-cell table:number-columns-repeated="16385"><text:p>y</text:p></table:table-cell></table:table-row>"#,
    );
    assert_eq!(default_run(&over), FailureReason::TooLarge);
    // A trillion spaces.
    let spaces = odf(
        "application/vnd.oasis.opendocument.text",
        &[(
            "content.xml",
            &odf_content(r#"<office:text><text:p>a<text:s text:c="1000000000000"/>b</text:p></office:text>"#),
        )],
    );
    assert_eq!(
        quick(Duration::from_secs(2), || default_run(&spaces)),
        FailureReason::TooLarge
    );
}

#[test]
fn too_many_slides() {
    let ids: String = (0..50)
        .map(|i| format!(r#"<p:sldId id="{}" r:id="rId{i}"/>"#, 256 + i))
        .collect();
    let presentation = format!(
        r#"<p:presentation xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main" xmlns:r="{R}"><p:sldIdLst>{ids}</p:sldIdLst></p:presentation>"#
    );
    let ct = content_types("/ppt/presentation.xml", PPTX_MAIN);
    let bytes = zip(&[
        ("[Content_Types].xml", ct.as_bytes()),
        ("ppt/presentation.xml", presentation.as_bytes()),
    ]);
    let limits = OfficeLimits {
        max_sections: 20,
        ..OfficeLimits::default()
    };
    assert_eq!(run(&bytes, &limits), FailureReason::TooLarge);
    // Under the bound, the missing slide parts make it corrupt.
    assert_eq!(default_run(&bytes), FailureReason::Corrupt);
}

#[test]
fn what_is_held_in_memory_is_counted() {
    // A million empty paragraphs in a text box: each costs its line
    // separator, so they cannot pile up uncounted.
    let boxed = format!(
        "<w:p><w:r><w:t>anchor</w:t><w:txbxContent>{}</w:txbxContent></w:r></w:p>",
        "<w:p/>".repeat(1_000_000)
    );
    let limits = OfficeLimits {
        max_text_bytes: 100_000,
        max_ratio: u64::MAX,
        ..OfficeLimits::default()
    };
    let err = extract_office(&docx(&boxed), &limits).unwrap_err();
    assert_eq!(err.reason, FailureReason::TooLarge);
    assert!(err.message.contains("text is larger than 100000"), "{}", err.message);

    // Relationships kept per part are bounded by the section bound; the
    // ones of kinds not read (hyperlinks) are not kept at all.
    let many: Vec<(String, String)> = (0..100)
        .map(|i| (format!("rId{i}"), format!("slides/slide{i}.xml")))
        .collect();
    let rel_refs: Vec<(&str, &str, &str)> = many.iter().map(|(id, t)| (id.as_str(), "slide", t.as_str())).collect();
    let presentation = format!(
        r#"<p:presentation xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main" xmlns:r="{R}"><p:sldIdLst/></p:presentation>"#
    );
    let ct = content_types("/ppt/presentation.xml", PPTX_MAIN);
    let pptx = zip(&[
        ("[Content_Types].xml", ct.as_bytes()),
        ("ppt/presentation.xml", presentation.as_bytes()),
        ("ppt/_rels/presentation.xml.rels", rels(&rel_refs).as_bytes()),
    ]);
    let sections = OfficeLimits {
        max_sections: 50,
        ..OfficeLimits::default()
    };
    let err = extract_office(&pptx, &sections).unwrap_err();
    assert_eq!(err.reason, FailureReason::TooLarge);
    assert!(err.message.contains("relationships"), "{}", err.message);
    let links: Vec<(&str, &str, &str)> = many
        .iter()
        .map(|(id, _)| (id.as_str(), "hyperlink", "http://example.invalid/"))
        .collect();
    let linked = docx_parts(
        &word_document(&wp("links")),
        &[("word/_rels/document.xml.rels", &rels(&links))],
    );
    assert_eq!(extract_office(&linked, &sections).unwrap().text, "links");

    // Shared strings are bounded in number by the cell bound.
    let items = "<si><t>s</t></si>".repeat(1000);
    let sst = format!(r#"<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">{items}</sst>"#);
    let workbook = format!(
        r#"<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="{R}"><sheets/></workbook>"#
    );
    let ct = content_types("/xl/workbook.xml", XLSX_MAIN);
    let xlsx = zip(&[
        ("[Content_Types].xml", ct.as_bytes()),
        ("xl/workbook.xml", workbook.as_bytes()),
        (
            "xl/_rels/workbook.xml.rels",
            rels(&[("rId1", "sharedStrings", "sharedStrings.xml")]).as_bytes(),
        ),
        ("xl/sharedStrings.xml", sst.as_bytes()),
    ]);
    let cells = OfficeLimits {
        max_cells: 999,
        ..OfficeLimits::default()
    };
    assert_eq!(run(&xlsx, &cells), FailureReason::TooLarge);
    assert_eq!(extract_office(&xlsx, &OfficeLimits::default()).unwrap().sections, 0);
}
