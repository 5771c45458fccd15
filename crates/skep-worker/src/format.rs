//! Which format a file holds, by its first bytes (never by its name).

use skep_api::FailureReason;
use skep_doc::office::{OfficeKind, sniff_office};

use crate::engine::OcrError;

/// What a file holds, by content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentFormat {
    Image(ImageFormat),
    Pdf,
    Office(OfficeKind),
}

/// The format of `bytes`: a PDF, an Office document, or an image; else why
/// it is none the worker reads.
pub fn sniff_document(bytes: &[u8]) -> Result<DocumentFormat, OcrError> {
    if skep_api::formats::is_pdf(bytes) {
        return Ok(DocumentFormat::Pdf);
    }
    if let Some(kind) = sniff_office(bytes) {
        return Ok(DocumentFormat::Office(kind));
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") {
        // A zip or an OLE file that is no Office document skep knows: the
        // Office reader says what it is (legacy, encrypted, corrupt).
        return Err(skep_doc::office::extract_office(bytes, &Default::default())
            .err()
            .map(OcrError::from)
            .unwrap_or_else(|| OcrError::new(FailureReason::Unsupported, "an archive skep does not read")));
    }
    sniff(bytes).map(DocumentFormat::Image)
}

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
    } else if starts(b"II+\0") || starts(b"MM\0+") {
        return Err(OcrError::new(FailureReason::Unsupported, "BigTIFF is not supported"));
    } else {
        return Err(OcrError::new(
            FailureReason::Unsupported,
            "not a format skep reads (PDF, Office documents, PNG, JPEG, TIFF, BMP, GIF, WebP, PNM, JPEG 2000)",
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
    fn text_is_unsupported_with_a_reason() {
        let e = sniff_document(b"hello, I am a text file").unwrap_err();
        assert_eq!(e.reason, FailureReason::Unsupported);
        assert!(e.message.contains("PDF"), "{e}");
    }

    #[test]
    fn documents_by_content() {
        assert_eq!(sniff_document(b"%PDF-1.7\n").unwrap(), DocumentFormat::Pdf);
        assert_eq!(
            sniff_document(b"\x89PNG\r\n\x1a\nrest").unwrap(),
            DocumentFormat::Image(ImageFormat::Png)
        );
        let zip_junk = sniff_document(b"PK\x03\x04 not really a zip").unwrap_err();
        assert_eq!(zip_junk.reason, FailureReason::Corrupt, "{zip_junk}");
    }
}
