//! Which image format a file holds, by its first bytes (never by its name).

use skep_api::FailureReason;

use crate::engine::OcrError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Tiff,
    Bmp,
    Gif,
    Webp,
    Pnm,
    Jp2,
}

impl ImageFormat {
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Png => "PNG",
            ImageFormat::Jpeg => "JPEG",
            ImageFormat::Tiff => "TIFF",
            ImageFormat::Bmp => "BMP",
            ImageFormat::Gif => "GIF",
            ImageFormat::Webp => "WebP",
            ImageFormat::Pnm => "PNM",
            ImageFormat::Jp2 => "JPEG 2000",
        }
    }
}

/// File name extensions the folder scan picks up (lowercase).
pub const EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif", "webp", "pbm", "pgm", "ppm", "pnm", "jp2",
];

/// The format of `bytes`, or why it is not one the engine reads.
pub fn sniff(bytes: &[u8]) -> Result<ImageFormat, OcrError> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    let format = if starts(b"\x89PNG\r\n\x1a\n") {
        ImageFormat::Png
    } else if starts(b"\xff\xd8\xff") {
        ImageFormat::Jpeg
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        ImageFormat::Tiff
    } else if starts(b"BM") && bytes.len() > 26 {
        ImageFormat::Bmp
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        ImageFormat::Gif
    } else if starts(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        ImageFormat::Webp
    } else if bytes.len() > 2 && bytes[0] == b'P' && (b'1'..=b'6').contains(&bytes[1]) && bytes[2].is_ascii_whitespace()
    {
        ImageFormat::Pnm
    } else if starts(b"\0\0\0\x0cjP  \r\n\x87\n") || starts(b"\xff\x4f\xff\x51") {
        ImageFormat::Jp2
    } else if starts(b"%PDF") {
        return Err(OcrError::new(
            FailureReason::Unsupported,
            "PDF is not an image: rasterise it first (for example with pdftoppm -r 300 -png)",
        ));
    } else if starts(b"II+\0") || starts(b"MM\0+") {
        return Err(OcrError::new(FailureReason::Unsupported, "BigTIFF is not supported"));
    } else {
        return Err(OcrError::new(
            FailureReason::Unsupported,
            "not an image format the engine reads (PNG, JPEG, TIFF, BMP, GIF, WebP, PNM, JPEG 2000)",
        ));
    };
    Ok(format)
}

/// Whether a TIFF holds more than one page (its first directory links to
/// another). Malformed data answers `false`; the decoder then reports it.
pub fn is_multipage_tiff(bytes: &[u8]) -> bool {
    let le = match bytes.get(0..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => return false,
    };
    let u16_at = |at: usize| -> Option<usize> {
        let b: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        } as usize)
    };
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        } as usize)
    };
    let next = || -> Option<usize> {
        let first = u32_at(4)?;
        let entries = u16_at(first)?;
        u32_at(first + 2 + 12 * entries)
    };
    next().is_some_and(|n| n != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_content() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest").unwrap(), ImageFormat::Png);
        assert_eq!(sniff(b"\xff\xd8\xff\xe0").unwrap(), ImageFormat::Jpeg);
        assert_eq!(sniff(b"II*\0....").unwrap(), ImageFormat::Tiff);
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ").unwrap(), ImageFormat::Webp);
        assert_eq!(sniff(b"P5\n10 10\n255\n").unwrap(), ImageFormat::Pnm);
        assert_eq!(sniff(b"GIF89a..").unwrap(), ImageFormat::Gif);
    }

    #[test]
    fn multipage_tiffs_are_told_apart() {
        // Little-endian header, first IFD at 8 with 0 entries, next IFD at 14.
        let two = b"II*\0\x08\0\0\0\0\0\x0e\0\0\0\0\0\0\0\0\0";
        assert!(is_multipage_tiff(two));
        let one = b"II*\0\x08\0\0\0\0\0\0\0\0\0";
        assert!(!is_multipage_tiff(one));
        assert!(!is_multipage_tiff(b"MM\0*"), "truncated");
    }

    #[test]
    fn text_and_pdf_are_unsupported_with_a_reason() {
        let e = sniff(b"hello, I am a text file").unwrap_err();
        assert_eq!(e.reason, FailureReason::Unsupported);
        let e = sniff(b"%PDF-1.7").unwrap_err();
        assert!(e.message.contains("pdftoppm"), "{e}");
    }
}
