//! A glyphless TrueType font program, generated here: two glyphs
//! (`.notdef` and one empty glyph), both without outlines and 500/1000 em
//! wide. Invisible text needs a font that viewers accept and that never
//! draws anything; its metrics are what text extraction reads.
//!
//! The tables are the ten an OpenType/TrueType font needs (head, hhea,
//! maxp, loca, glyf, hmtx, cmap, post, name, OS/2); the checksums and the
//! head `checkSumAdjustment` are computed, so font validators accept it.

/// Font units per em.
pub(crate) const UNITS_PER_EM: u16 = 1000;
/// Advance width of every glyph, in font units.
pub(crate) const ADVANCE: u16 = 500;
/// Ascent above and descent below the baseline, in font units. They span
/// 0.8 em, about what the ascender-to-descender box of a line of print
/// spans in its font: text set at 1.25 times a box's height spans the box,
/// and its font size, which extraction heuristics measure spacing against,
/// is close to the printed one.
pub(crate) const ASCENT: i16 = 650;
pub(crate) const DESCENT: i16 = -150;
/// The font's PostScript name, also its PDF `/BaseFont`.
pub(crate) const POSTSCRIPT_NAME: &str = "SkepGlyphless";

const NUM_GLYPHS: u16 = 2;
/// The glyph every character is drawn with.
pub(crate) const EMPTY_GLYPH: u16 = 1;

/// The complete font file.
pub(crate) fn font_program() -> Vec<u8> {
    let mut tables: Vec<([u8; 4], Vec<u8>)> = vec![
        (*b"OS/2", os2()),
        (*b"cmap", cmap()),
        (*b"glyf", glyf()),
        (*b"head", head()),
        (*b"hhea", hhea()),
        (*b"hmtx", hmtx()),
        (*b"loca", loca()),
        (*b"maxp", maxp()),
        (*b"name", name()),
        (*b"post", post()),
    ];
    tables.sort_by_key(|(tag, _)| *tag);

    let num_tables = tables.len() as u16;
    let entry_selector = 15 - num_tables.leading_zeros() as u16; // floor(log2)
    let search_range = (1u16 << entry_selector) * 16;
    let mut out = Vec::with_capacity(1024);
    be32(&mut out, 0x0001_0000);
    be16(&mut out, num_tables);
    be16(&mut out, search_range);
    be16(&mut out, entry_selector);
    be16(&mut out, num_tables * 16 - search_range);

    let mut offset = 12 + 16 * tables.len();
    let mut head_offset = 0;
    for (tag, data) in &tables {
        if tag == b"head" {
            head_offset = offset;
        }
        out.extend_from_slice(tag);
        be32(&mut out, checksum(data));
        be32(&mut out, offset as u32);
        be32(&mut out, data.len() as u32);
        offset += padded_len(data.len());
    }
    for (_, data) in &tables {
        out.extend_from_slice(data);
        out.resize(padded_len(out.len()), 0);
    }
    let adjustment = 0xB1B0_AFBAu32.wrapping_sub(checksum(&out));
    // checkSumAdjustment sits 8 bytes into head.
    out[head_offset + 8..head_offset + 12].copy_from_slice(&adjustment.to_be_bytes());
    out
}

fn padded_len(len: usize) -> usize {
    len.div_ceil(4) * 4
}

/// The TrueType table checksum: the sum of big-endian u32 words, the last
/// one zero-padded.
pub(crate) fn checksum(data: &[u8]) -> u32 {
    data.chunks(4).fold(0u32, |sum, chunk| {
        let mut word = [0u8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        sum.wrapping_add(u32::from_be_bytes(word))
    })
}

fn be16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn bei16(out: &mut Vec<u8>, value: i16) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn be32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn head() -> Vec<u8> {
    let mut t = Vec::with_capacity(54);
    be32(&mut t, 0x0001_0000); // version
    be32(&mut t, 0x0001_0000); // fontRevision 1.0
    be32(&mut t, 0); // checkSumAdjustment, set last
    be32(&mut t, 0x5F0F_3CF5); // magicNumber
    be16(&mut t, 0b1011); // flags: baseline y=0, lsb x=0, integer ppem
    be16(&mut t, UNITS_PER_EM);
    for _ in 0..2 {
        // created, modified: 2024-01-01, in seconds since 1904-01-01
        t.extend_from_slice(&3_786_912_000u64.to_be_bytes());
    }
    bei16(&mut t, 0); // xMin
    bei16(&mut t, DESCENT); // yMin
    bei16(&mut t, ADVANCE as i16); // xMax
    bei16(&mut t, ASCENT); // yMax
    be16(&mut t, 0); // macStyle
    be16(&mut t, 8); // lowestRecPPEM
    bei16(&mut t, 2); // fontDirectionHint
    bei16(&mut t, 0); // indexToLocFormat: short offsets
    bei16(&mut t, 0); // glyphDataFormat
    t
}

fn hhea() -> Vec<u8> {
    let mut t = Vec::with_capacity(36);
    be32(&mut t, 0x0001_0000);
    bei16(&mut t, ASCENT);
    bei16(&mut t, DESCENT);
    bei16(&mut t, 0); // lineGap
    be16(&mut t, ADVANCE); // advanceWidthMax
    bei16(&mut t, 0); // minLeftSideBearing
    bei16(&mut t, 0); // minRightSideBearing
    bei16(&mut t, 0); // xMaxExtent
    bei16(&mut t, 1); // caretSlopeRise
    bei16(&mut t, 0); // caretSlopeRun
    bei16(&mut t, 0); // caretOffset
    t.extend_from_slice(&[0; 8]); // reserved
    bei16(&mut t, 0); // metricDataFormat
    be16(&mut t, NUM_GLYPHS); // numberOfHMetrics
    t
}

fn hmtx() -> Vec<u8> {
    let mut t = Vec::with_capacity(4 * usize::from(NUM_GLYPHS));
    for _ in 0..NUM_GLYPHS {
        be16(&mut t, ADVANCE);
        bei16(&mut t, 0); // left side bearing
    }
    t
}

/// `.notdef` is a glyph header with no contours; the empty glyph has no
/// data at all, as the TrueType spec prescribes for a space.
// NB: an all-empty glyf table is legal, but font sanitizers (OTS, used by
// browsers and pdf.js) refuse a zero-length table.
fn glyf() -> Vec<u8> {
    let mut t = Vec::with_capacity(NOTDEF_LEN);
    bei16(&mut t, 0); // numberOfContours
    t.extend_from_slice(&[0; 8]); // xMin, yMin, xMax, yMax
    t
}

const NOTDEF_LEN: usize = 10;

/// Short offsets (half the byte offset): `.notdef` at 0, the empty glyph
/// and the end both at `NOTDEF_LEN`.
fn loca() -> Vec<u8> {
    let mut t = Vec::with_capacity(6);
    for offset in [0, NOTDEF_LEN / 2, NOTDEF_LEN / 2] {
        be16(&mut t, offset as u16);
    }
    t
}

fn maxp() -> Vec<u8> {
    let mut t = Vec::with_capacity(32);
    be32(&mut t, 0x0001_0000);
    be16(&mut t, NUM_GLYPHS);
    // maxPoints, maxContours, maxCompositePoints, maxCompositeContours,
    // maxZones (2: no twilight zone use, the usual value), then the
    // instruction limits, all zero: the font has no hinting.
    for value in [0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0] {
        be16(&mut t, value);
    }
    t
}

/// A Windows Unicode BMP cmap (format 4) mapping U+0020 to the empty glyph.
/// The PDF never uses it (a CIDToGIDMap picks glyphs), but a font without
/// one is malformed.
fn cmap() -> Vec<u8> {
    let mut t = Vec::with_capacity(44);
    be16(&mut t, 0); // version
    be16(&mut t, 1); // numTables
    be16(&mut t, 3); // platform: Windows
    be16(&mut t, 1); // encoding: Unicode BMP
    be32(&mut t, 12); // subtable offset
    let seg_count: u16 = 2;
    be16(&mut t, 4); // format
    be16(&mut t, 16 + 8 * seg_count); // length
    be16(&mut t, 0); // language
    be16(&mut t, 2 * seg_count);
    be16(&mut t, 4); // searchRange: 2 * 2^floor(log2(segCount))
    be16(&mut t, 1); // entrySelector
    be16(&mut t, 0); // rangeShift
    for end in [0x20, 0xFFFF] {
        be16(&mut t, end);
    }
    be16(&mut t, 0); // reservedPad
    for start in [0x20, 0xFFFF] {
        be16(&mut t, start);
    }
    be16(&mut t, EMPTY_GLYPH.wrapping_sub(0x20)); // idDelta: 0x20 -> glyph 1
    be16(&mut t, 1); // idDelta of the final segment
    for _ in 0..seg_count {
        be16(&mut t, 0); // idRangeOffset
    }
    t
}

fn post() -> Vec<u8> {
    let mut t = Vec::with_capacity(32);
    be32(&mut t, 0x0003_0000); // version 3: no glyph names
    be32(&mut t, 0); // italicAngle
    bei16(&mut t, -100); // underlinePosition
    bei16(&mut t, 50); // underlineThickness
    be32(&mut t, 1); // isFixedPitch
    t.extend_from_slice(&[0; 16]); // memory hints
    t
}

fn name() -> Vec<u8> {
    let version = "Version 1.000";
    let records: [(u16, &str); 6] = [
        (1, POSTSCRIPT_NAME), // family
        (2, "Regular"),       // subfamily
        (3, POSTSCRIPT_NAME), // unique id
        (4, POSTSCRIPT_NAME), // full name
        (5, version),
        (6, POSTSCRIPT_NAME),
    ];
    let strings: Vec<Vec<u8>> = records
        .iter()
        .map(|(_, s)| s.encode_utf16().flat_map(u16::to_be_bytes).collect())
        .collect();
    let count = records.len() as u16;
    let mut t = Vec::new();
    be16(&mut t, 0); // format
    be16(&mut t, count);
    be16(&mut t, 6 + 12 * count); // stringOffset
    let mut offset = 0u16;
    for ((id, _), bytes) in records.iter().zip(&strings) {
        be16(&mut t, 3); // platform: Windows
        be16(&mut t, 1); // encoding: Unicode BMP
        be16(&mut t, 0x0409); // language: en-US
        be16(&mut t, *id);
        be16(&mut t, bytes.len() as u16);
        be16(&mut t, offset);
        offset += bytes.len() as u16;
    }
    for bytes in &strings {
        t.extend_from_slice(bytes);
    }
    t
}

fn os2() -> Vec<u8> {
    let mut t = Vec::with_capacity(96);
    be16(&mut t, 4); // version
    bei16(&mut t, ADVANCE as i16); // xAvgCharWidth
    be16(&mut t, 400); // usWeightClass: regular
    be16(&mut t, 5); // usWidthClass: medium
    be16(&mut t, 0); // fsType: installable embedding
    // subscript x/y size and offset, superscript x/y size and offset
    for value in [650, 600, 0, 75, 650, 600, 0, 350] {
        bei16(&mut t, value);
    }
    bei16(&mut t, 50); // yStrikeoutSize
    bei16(&mut t, 300); // yStrikeoutPosition
    bei16(&mut t, 0); // sFamilyClass
    t.extend_from_slice(&[0; 10]); // panose
    t.extend_from_slice(&[0; 16]); // ulUnicodeRange1..4
    t.extend_from_slice(b"SKEP"); // achVendID
    be16(&mut t, 0x0040); // fsSelection: REGULAR
    be16(&mut t, 0x20); // usFirstCharIndex
    be16(&mut t, 0x20); // usLastCharIndex
    bei16(&mut t, ASCENT); // sTypoAscender
    bei16(&mut t, DESCENT); // sTypoDescender
    bei16(&mut t, 0); // sTypoLineGap
    be16(&mut t, ASCENT as u16); // usWinAscent
    be16(&mut t, DESCENT.unsigned_abs()); // usWinDescent
    be32(&mut t, 1); // ulCodePageRange1: Latin 1
    be32(&mut t, 0); // ulCodePageRange2
    bei16(&mut t, 450); // sxHeight
    bei16(&mut t, ASCENT); // sCapHeight
    be16(&mut t, 0); // usDefaultChar
    be16(&mut t, 0x20); // usBreakChar
    be16(&mut t, 0); // usMaxContext
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table<'a>(font: &'a [u8], tag: &[u8; 4]) -> &'a [u8] {
        let count = usize::from(u16::from_be_bytes([font[4], font[5]]));
        for i in 0..count {
            let entry = &font[12 + 16 * i..28 + 16 * i];
            if &entry[..4] == tag {
                let offset = u32::from_be_bytes([entry[8], entry[9], entry[10], entry[11]]);
                let len = u32::from_be_bytes([entry[12], entry[13], entry[14], entry[15]]);
                return &font[offset as usize..(offset + len) as usize];
            }
        }
        panic!("no {tag:?} table");
    }

    #[test]
    fn whole_font_checksum_is_the_magic_number() {
        assert_eq!(checksum(&font_program()), 0xB1B0_AFBA);
    }

    #[test]
    fn table_directory_is_sorted_with_valid_checksums() {
        let font = font_program();
        let count = usize::from(u16::from_be_bytes([font[4], font[5]]));
        assert_eq!(count, 10);
        let mut previous = [0u8; 4];
        for i in 0..count {
            let entry = &font[12 + 16 * i..28 + 16 * i];
            let tag: [u8; 4] = entry[..4].try_into().unwrap();
            assert!(tag > previous, "tags out of order");
            previous = tag;
            let data = table(&font, &tag);
            let expected = u32::from_be_bytes([entry[4], entry[5], entry[6], entry[7]]);
            if &tag != b"head" {
                assert_eq!(checksum(data), expected, "{}", String::from_utf8_lossy(&tag));
            }
        }
    }

    #[test]
    fn table_sizes_match_their_formats() {
        let font = font_program();
        for (tag, len) in [
            (b"head", 54),
            (b"hhea", 36),
            (b"maxp", 32),
            (b"post", 32),
            (b"OS/2", 96),
            (b"cmap", 44),
            (b"hmtx", 8),
            (b"loca", 6),
        ] {
            assert_eq!(table(&font, tag).len(), len, "{}", String::from_utf8_lossy(tag));
        }
    }
}
