//! Builders of small Office documents for the office tests, made with the
//! `zip` writer.

// Test support: panics are the failure report.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Cursor, Write};

use flate2::{Compress, Compression, FlushCompress};
use skep_api::FailureReason;
use skep_doc::DocError;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

pub const W: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";
pub const R: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
pub const PKG_RELS: &str = "http://schemas.openxmlformats.org/package/2006/relationships";
pub const DOCX_MAIN: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml";
pub const XLSX_MAIN: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml";
pub const PPTX_MAIN: &str = "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml";
pub const REL_DOC: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument";
pub const ODF_NS: &str = r#"xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0" xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" office:version="1.3""#;

pub fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

/// A zip of deflated entries, in order.
pub fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        w.start_file(*name, deflated()).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

pub fn content_types(main_part: &str, main_type: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="{main_part}" ContentType="{main_type}"/></Types>"#
    )
}

pub fn rels(rels: &[(&str, &str, &str)]) -> String {
    let mut out = format!(r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG_RELS}">"#);
    for (id, kind, target) in rels {
        out.push_str(&format!(
            r#"<Relationship Id="{id}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/{kind}" Target="{target}"/>"#
        ));
    }
    out.push_str("</Relationships>");
    out
}

/// A docx whose `word/document.xml` is `document` (a whole XML document),
/// with extra parts.
pub fn docx_parts(document: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let ct = content_types("/word/document.xml", DOCX_MAIN);
    let root = format!(
        r#"<?xml version="1.0"?><Relationships xmlns="{PKG_RELS}"><Relationship Id="rId1" Type="{REL_DOC}" Target="word/document.xml"/></Relationships>"#
    );
    let mut entries: Vec<(&str, &[u8])> = vec![
        ("[Content_Types].xml", ct.as_bytes()),
        ("_rels/.rels", root.as_bytes()),
        ("word/document.xml", document.as_bytes()),
    ];
    for (name, body) in extra {
        entries.push((name, body.as_bytes()));
    }
    zip(&entries)
}

/// A docx whose body is `body` (the children of `w:body`).
pub fn docx(body: &str) -> Vec<u8> {
    docx_parts(&word_document(body), &[])
}

pub fn word_document(body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="{W}" xmlns:r="{R}"><w:body>{body}</w:body></w:document>"#
    )
}

/// `<w:p>` of one run per text.
pub fn wp(text: &str) -> String {
    format!("<w:p><w:r><w:t xml:space=\"preserve\">{text}</w:t></w:r></w:p>")
}

/// An ODF package: `mimetype` stored first, then the entries.
pub fn odf(mime: &str, entries: &[(&str, &str)]) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file(
        "mimetype",
        SimpleFileOptions::default().compression_method(CompressionMethod::Stored),
    )
    .unwrap();
    w.write_all(mime.as_bytes()).unwrap();
    for (name, body) in entries {
        w.start_file(*name, deflated()).unwrap();
        w.write_all(body.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

pub fn odf_content(body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content {ODF_NS}><office:body>{body}</office:body></office:document-content>"#
    )
}

/// Raw deflate data that inflates to `head`, then `chunk` `times` times,
/// then `tail`, made without inflating it: each piece is compressed once
/// by a fresh compressor ending in a full flush (byte-aligned, no
/// reference to earlier data), so copies of a piece can be concatenated.
pub fn repeated_deflate(head: &[u8], chunk: &[u8], times: usize, tail: &[u8]) -> Vec<u8> {
    let piece = |data: &[u8], flush: FlushCompress| {
        let mut c = Compress::new(Compression::best(), false);
        let mut out = Vec::with_capacity(data.len() / 2 + 1024);
        c.compress_vec(data, &mut out, flush).unwrap();
        assert_eq!(c.total_in(), data.len() as u64, "output buffer too small");
        out
    };
    let chunk = piece(chunk, FlushCompress::Full);
    let mut out = piece(head, FlushCompress::Full);
    for _ in 0..times {
        out.extend_from_slice(&chunk);
    }
    out.extend(piece(tail, FlushCompress::Finish));
    out
}

/// Rewrites the compression method of entry `name` from stored to deflate
/// in the local and the central header: the entry then claims its raw
/// bytes as deflate data, with the sizes (and checksum) of the stored
/// bytes, which is what a bomb that lies about its size looks like.
pub fn mark_deflated(archive: &mut [u8], name: &str) {
    let (local, central) = {
        let mut zip = ZipArchive::new(Cursor::new(&archive[..])).unwrap();
        let file = zip.by_name(name).unwrap();
        (file.header_start() as usize, file.central_header_start() as usize)
    };
    assert_eq!(&archive[local..local + 4], b"PK\x03\x04");
    assert_eq!(&archive[central..central + 4], b"PK\x01\x02");
    archive[local + 8..local + 10].copy_from_slice(&8u16.to_le_bytes());
    archive[central + 10..central + 12].copy_from_slice(&8u16.to_le_bytes());
}

/// A docx whose `word/document.xml` inflates to a document element
/// holding `mib` MiB of spaces; the file is about 1 KiB per MiB.
pub fn bomb_docx(mib: usize) -> Vec<u8> {
    bomb_docx_of(&vec![b' '; 1 << 20], mib)
}

/// A docx whose `word/document.xml` inflates to a document element
/// holding `chunk` (of 1 MiB) `mib` times.
pub fn bomb_docx_of(chunk: &[u8], mib: usize) -> Vec<u8> {
    let head = format!(r#"<?xml version="1.0"?><w:document xmlns:w="{W}"><w:body>"#);
    let raw = repeated_deflate(head.as_bytes(), chunk, mib, b"</w:body></w:document>");
    let ct = content_types("/word/document.xml", DOCX_MAIN);
    let stored = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .large_file(raw.len() > u32::MAX as usize);
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("[Content_Types].xml", deflated()).unwrap();
    w.write_all(ct.as_bytes()).unwrap();
    w.start_file("word/document.xml", stored).unwrap();
    w.write_all(&raw).unwrap();
    let mut archive = w.finish().unwrap().into_inner();
    mark_deflated(&mut archive, "word/document.xml");
    archive
}

/// A compound file (512-byte sectors) whose root directory lists `names`.
pub fn compound(names: &[&str]) -> Vec<u8> {
    let mut out = vec![0u8; 512];
    out[..8].copy_from_slice(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]);
    out[0x18..0x1A].copy_from_slice(&0x3Eu16.to_le_bytes());
    out[0x1A..0x1C].copy_from_slice(&3u16.to_le_bytes());
    out[0x1C..0x1E].copy_from_slice(&0xFFFEu16.to_le_bytes());
    out[0x1E..0x20].copy_from_slice(&9u16.to_le_bytes());
    out[0x20..0x22].copy_from_slice(&6u16.to_le_bytes());
    out[0x2C..0x30].copy_from_slice(&1u32.to_le_bytes());
    out[0x30..0x34].copy_from_slice(&1u32.to_le_bytes());
    out[0x38..0x3C].copy_from_slice(&4096u32.to_le_bytes());
    out[0x3C..0x40].copy_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
    out[0x44..0x48].copy_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
    for i in 0..109 {
        let id: u32 = if i == 0 { 0 } else { 0xFFFF_FFFF };
        out[0x4C + 4 * i..0x50 + 4 * i].copy_from_slice(&id.to_le_bytes());
    }
    let mut fat = vec![0xFFu8; 512];
    fat[0..4].copy_from_slice(&0xFFFF_FFFDu32.to_le_bytes());
    fat[4..8].copy_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
    out.extend(fat);
    let mut dir = vec![0u8; 512];
    let all: Vec<&str> = std::iter::once("Root Entry").chain(names.iter().copied()).collect();
    for (i, name) in all.iter().enumerate() {
        let entry = &mut dir[i * 128..(i + 1) * 128];
        let units: Vec<u16> = name.encode_utf16().collect();
        for (k, u) in units.iter().enumerate() {
            entry[2 * k..2 * k + 2].copy_from_slice(&u.to_le_bytes());
        }
        entry[0x40..0x42].copy_from_slice(&(((units.len() + 1) * 2) as u16).to_le_bytes());
        entry[0x42] = if i == 0 { 5 } else { 2 };
        entry[0x43] = 1;
        for at in [0x44, 0x48, 0x4C] {
            entry[at..at + 4].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        }
        entry[0x74..0x78].copy_from_slice(&0xFFFF_FFFEu32.to_le_bytes());
    }
    // A flat tree: the root's child is entry 1, each entry's right
    // sibling the next.
    if all.len() > 1 {
        dir[0x4C..0x50].copy_from_slice(&1u32.to_le_bytes());
        for i in 1..all.len() - 1 {
            let at = i * 128 + 0x48;
            dir[at..at + 4].copy_from_slice(&((i + 1) as u32).to_le_bytes());
        }
    }
    out.extend(dir);
    out
}

pub fn reason<T: std::fmt::Debug>(result: Result<T, DocError>) -> FailureReason {
    match result {
        Ok(v) => panic!("expected a failure, got {v:?}"),
        Err(e) => e.reason,
    }
}
