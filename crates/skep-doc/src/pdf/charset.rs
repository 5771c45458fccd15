//! The document's characters as CIDs: each distinct character gets the
//! next two-byte code (Identity-H), and the ToUnicode CMap maps it back.
//! Numbering characters per document, rather than using UTF-16 code units
//! as codes, lets characters outside the BMP keep one code each (their
//! ToUnicode entry is a surrogate pair) and keeps the CMap as small as the
//! text.

use std::collections::HashMap;

use pdf_writer::types::UnicodeCmap;
use pdf_writer::{Name, Str};

/// CID of U+0020, the word separator.
pub(crate) const SPACE: u16 = 1;
/// CID of U+FFFD, used for every character once the codes run out.
const REPLACEMENT: u16 = 2;

/// The characters used so far, by CID. CID 0 is `.notdef` and never shown.
#[derive(Debug)]
pub(crate) struct Charset {
    by_char: HashMap<char, u16>,
    chars: Vec<char>,
}

impl Default for Charset {
    fn default() -> Self {
        let mut charset = Self {
            by_char: HashMap::new(),
            chars: vec!['\0'],
        };
        charset.cid(' ');
        charset.cid('\u{FFFD}');
        charset
    }
}

impl Charset {
    /// The CID of `c`, allocated if new. After 65,535 distinct characters
    /// every new one becomes U+FFFD: a document never needs that many, and
    /// a hostile one cannot grow the font past the two-byte code space.
    pub(crate) fn cid(&mut self, c: char) -> u16 {
        if let Some(&cid) = self.by_char.get(&c) {
            return cid;
        }
        let Ok(cid) = u16::try_from(self.chars.len()) else {
            return REPLACEMENT;
        };
        self.chars.push(c);
        self.by_char.insert(c, cid);
        cid
    }

    /// Appends the codes of `text` (two bytes each, big-endian) to `out` and
    /// returns how many glyphs that is. Whitespace becomes a single space,
    /// control and format-free oddities (C0/C1 controls) are dropped.
    pub(crate) fn encode(&mut self, text: &str, out: &mut Vec<u8>) -> usize {
        let mut glyphs = 0;
        for c in text.chars() {
            let cid = if c.is_whitespace() {
                SPACE
            } else if c.is_control() {
                continue;
            } else {
                self.cid(c)
            };
            out.extend_from_slice(&cid.to_be_bytes());
            glyphs += 1;
        }
        glyphs
    }

    /// The highest CID in use.
    pub(crate) fn max_cid(&self) -> u16 {
        u16::try_from(self.chars.len() - 1).unwrap_or(u16::MAX)
    }

    /// The ToUnicode CMap stream.
    pub(crate) fn to_unicode(&self) -> Vec<u8> {
        let info = pdf_writer::types::SystemInfo {
            registry: Str(b"Adobe"),
            ordering: Str(b"UCS"),
            supplement: 0,
        };
        let mut cmap = UnicodeCmap::new(Name(b"Adobe-Identity-UCS"), info);
        for (cid, &c) in self.chars.iter().enumerate().skip(1) {
            if let Ok(cid) = u16::try_from(cid) {
                cmap.pair(cid, c);
            }
        }
        cmap.finish().into_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_char_same_cid_and_space_is_fixed() {
        let mut charset = Charset::default();
        let mut out = Vec::new();
        assert_eq!(charset.encode("aba c", &mut out), 5);
        let a = charset.cid('a');
        let b = charset.cid('b');
        assert_ne!(a, b);
        let expected: Vec<u8> = [a, b, a, SPACE, charset.cid('c')]
            .iter()
            .flat_map(|cid| cid.to_be_bytes())
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn controls_are_dropped_and_whitespace_is_space() {
        let mut charset = Charset::default();
        let mut out = Vec::new();
        assert_eq!(charset.encode("a\u{7}\tb\u{a0}", &mut out), 4);
        assert_eq!(&out[2..4], &SPACE.to_be_bytes());
        assert_eq!(&out[6..8], &SPACE.to_be_bytes());
    }

    #[test]
    fn astral_chars_get_one_cid_and_a_surrogate_pair() {
        let mut charset = Charset::default();
        let mut out = Vec::new();
        assert_eq!(charset.encode("𝔸😀", &mut out), 2);
        let cmap = String::from_utf8(charset.to_unicode()).unwrap();
        // U+1D538 as UTF-16: D835 DD38.
        assert!(cmap.contains("<0003> <D835DD38>"), "{cmap}");
        assert!(cmap.contains("<0001> <0020>"), "{cmap}");
    }

    #[test]
    fn codes_run_out_into_the_replacement_char() {
        let mut charset = Charset::default();
        let mut last = 0;
        for c in ('\u{4E00}'..).take(70_000) {
            last = charset.cid(c);
        }
        assert_eq!(last, REPLACEMENT);
        assert_eq!(charset.max_cid(), u16::MAX);
        assert_eq!(charset.cid('\u{4E00}'), 3);
    }
}
