//! The invisible-text font as PDF objects: a Type0 font (Identity-H) over
//! a CIDFontType2 whose program is the [glyphless](super::glyphless) font,
//! every CID drawn with its one empty glyph, and a ToUnicode CMap from the
//! document's [`Charset`].

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo};
use pdf_writer::{Chunk, Filter, Name, Rect, Ref, Str};

use super::charset::Charset;
use super::deflate::deflate;
use super::glyphless::{self, ADVANCE, ASCENT, DESCENT, EMPTY_GLYPH};

/// The font's resource name on every page.
pub(crate) const RESOURCE_NAME: Name<'static> = Name(b"F1");

/// Width of every glyph in text space units (1/1000 of the font size).
pub(crate) const GLYPH_WIDTH: f32 = ADVANCE as f32;
/// Descent below the baseline as a fraction of the font size.
pub(crate) const DESCENT_FRACTION: f32 = -(DESCENT as f32) / 1000.0;
/// Height from descent to ascent as a fraction of the font size.
pub(crate) const EXTENT: f32 = (ASCENT - DESCENT) as f32 / 1000.0;

/// How many objects [`write_font`] writes besides the Type0 font.
pub(crate) const PARTS: usize = 5;

/// Writes the font objects: `type0`, the one pages refer to, and its
/// parts under the numbers in `parts`.
pub(crate) fn write_font(chunk: &mut Chunk, type0: Ref, parts: [Ref; PARTS], charset: &Charset) {
    let [cid_font, descriptor, program, to_unicode, cid_to_gid] = parts;
    let base_font = Name(glyphless::POSTSCRIPT_NAME.as_bytes());

    chunk
        .type0_font(type0)
        .base_font(base_font)
        .encoding_predefined(Name(b"Identity-H"))
        .descendant_font(cid_font)
        .to_unicode(to_unicode);

    chunk
        .cid_font(cid_font)
        .subtype(CidFontType::Type2)
        .base_font(base_font)
        .system_info(SystemInfo {
            registry: Str(b"Adobe"),
            ordering: Str(b"Identity"),
            supplement: 0,
        })
        .font_descriptor(descriptor)
        .default_width(GLYPH_WIDTH)
        .cid_to_gid_map_stream(cid_to_gid);

    let bbox = Rect::new(0.0, f32::from(DESCENT), GLYPH_WIDTH, f32::from(ASCENT));
    chunk
        .font_descriptor(descriptor)
        .name(base_font)
        .flags(FontFlags::FIXED_PITCH | FontFlags::SYMBOLIC)
        .bbox(bbox)
        .italic_angle(0.0)
        .ascent(f32::from(ASCENT))
        .descent(f32::from(DESCENT))
        .cap_height(f32::from(ASCENT))
        .stem_v(80.0)
        .font_file2(program);

    let font = glyphless::font_program();
    let compressed = deflate(&font);
    chunk
        .stream(program, &compressed)
        .filter(Filter::FlateDecode)
        .pair(Name(b"Length1"), font.len() as i32);

    let compressed = deflate(&charset.to_unicode());
    chunk.stream(to_unicode, &compressed).filter(Filter::FlateDecode);

    let compressed = deflate(&cid_to_gid_map(charset.max_cid()));
    chunk.stream(cid_to_gid, &compressed).filter(Filter::FlateDecode);
}

/// Two bytes per CID from 0 to `max_cid`: `.notdef` for CID 0, the empty
/// glyph for every other.
fn cid_to_gid_map(max_cid: u16) -> Vec<u8> {
    let mut map = Vec::with_capacity(2 * (usize::from(max_cid) + 1));
    map.extend_from_slice(&0u16.to_be_bytes());
    for _ in 0..max_cid {
        map.extend_from_slice(&EMPTY_GLYPH.to_be_bytes());
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cid_to_gid_map_covers_every_cid() {
        let map = cid_to_gid_map(3);
        assert_eq!(map, [0, 0, 0, 1, 0, 1, 0, 1]);
        assert_eq!(cid_to_gid_map(u16::MAX).len(), 2 * 65_536);
    }
}
