//! What skep reads. The folder scan takes files by these name extensions;
//! the worker then tells formats apart by content (a `.pdf` that is really
//! a PNG is read as a PNG, a `.docx` that is not a zip fails `corrupt`).
//! This list lives here so the controller knows it without linking the
//! OCR engine.

/// The kinds of file skep reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DocumentKind {
    /// A raster image; a multi-page TIFF is one page per image.
    Image,
    /// A PDF: text layers read, pages without text rasterised and OCR'd.
    Pdf,
    /// An Office document (OOXML, OpenDocument); legacy binary Office files
    /// are picked up too, and fail `unsupported` with a way out.
    Office,
}

/// Image name extensions (lowercase).
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif", "webp", "pbm", "pgm", "ppm", "pnm", "jp2",
];
/// PDF name extensions.
pub const PDF_EXTENSIONS: &[&str] = &["pdf"];
/// Office name extensions: OOXML (with the macro-enabled variants),
/// OpenDocument, and the legacy binary formats.
pub const OFFICE_EXTENSIONS: &[&str] = &[
    "docx", "docm", "xlsx", "xlsm", "pptx", "pptm", "odt", "ods", "odp", "doc", "xls", "ppt",
];

/// The kind a file name suggests (case-insensitive), or `None` when the
/// scan should not take it.
pub fn kind_by_name(name: &str) -> Option<DocumentKind> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    let ext = ext.as_str();
    if IMAGE_EXTENSIONS.contains(&ext) {
        Some(DocumentKind::Image)
    } else if PDF_EXTENSIONS.contains(&ext) {
        Some(DocumentKind::Pdf)
    } else if OFFICE_EXTENSIONS.contains(&ext) {
        Some(DocumentKind::Office)
    } else {
        None
    }
}

/// Where a PDF's header must start: readers accept it within the first
/// kilobyte (some files carry junk before it).
pub const PDF_HEADER_WINDOW: usize = 1024;

/// Whether `bytes` start a PDF (`%PDF-` within [`PDF_HEADER_WINDOW`]).
pub fn is_pdf(bytes: &[u8]) -> bool {
    let window = &bytes[..bytes.len().min(PDF_HEADER_WINDOW)];
    window.windows(5).any(|w| w == b"%PDF-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_kinds() {
        assert_eq!(kind_by_name("a/b/Scan.PNG"), Some(DocumentKind::Image));
        assert_eq!(kind_by_name("report.pdf"), Some(DocumentKind::Pdf));
        assert_eq!(kind_by_name("x.Docx"), Some(DocumentKind::Office));
        assert_eq!(kind_by_name("legacy.xls"), Some(DocumentKind::Office));
        assert_eq!(kind_by_name("notes.txt"), None);
        assert_eq!(kind_by_name("pdf"), None, "no extension");
    }

    #[test]
    fn pdf_by_content() {
        assert!(is_pdf(b"%PDF-1.7\n"));
        assert!(is_pdf(b"\xef\xbb\xbfjunk%PDF-1.4"), "header after junk");
        assert!(!is_pdf(b"%PD"));
        let mut late = vec![b' '; PDF_HEADER_WINDOW];
        late.extend_from_slice(b"%PDF-1.4");
        assert!(!is_pdf(&late), "too late to be a header");
    }
}
