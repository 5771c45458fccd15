//! Searchable PDF writing: pages whose words are invisible text placed
//! where the words are seen, so that a viewer finds, selects and copies
//! them and `pdftotext` reads them back.
//!
//! - [`image_pdf`] makes a PDF from scanned page images, each with its
//!   words as a text layer.
//! - [`text_layer_pdf`] makes pages holding only the invisible text, to be
//!   laid under the pages of an existing PDF
//!   (`qpdf original.pdf --underlay layer.pdf -- out.pdf`): the original
//!   content is kept untouched, as OCRmyPDF does.
//!
//! The text uses a composite font (Type0, Identity-H, CIDFontType2) whose
//! embedded program is a glyphless TrueType font generated here, with a
//! ToUnicode CMap, so any Unicode text extracts as written: characters
//! outside the BMP map to surrogate pairs, C0/C1 controls are dropped and
//! whitespace inside a word becomes a space.
//!
//! Output is deterministic (no dates, no random file id) and bounded: at
//! most [`MAX_PAGES`] pages per call, [`MAX_IMAGE_SIDE`] pixels a side,
//! [`MAX_PAGE_SIDE_PT`] points a side, [`MAX_PAGE_WORDS`] words and
//! [`MAX_PAGE_TEXT_BYTES`] bytes of text per page; more is refused with
//! [`FailureReason::TooLarge`](skep_api::FailureReason::TooLarge).
//! Odd layouts (no words, zero-size boxes, boxes outside the page, blank
//! words) never fail: blank words are skipped, boxes are clipped to the
//! page.

mod charset;
mod deflate;
mod document;
mod font;
mod glyphless;
mod image;
mod text;

use std::fmt;

use skep_api::FailureReason;

use self::document::Document;
use self::text::Frame;
use crate::DocError;
use crate::layout::PageLayout;

/// Most pages written by one call.
pub const MAX_PAGES: usize = 200;
/// Longest image side, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 30_000;
/// Longest page side, in points: 200 inches, the largest page PDF readers
/// display without `UserUnit` (ISO 32000-1, annex C).
pub const MAX_PAGE_SIDE_PT: f32 = 14_400.0;
/// Most words on one page.
pub const MAX_PAGE_WORDS: usize = 100_000;
/// Most bytes of word text (UTF-8) on one page.
pub const MAX_PAGE_TEXT_BYTES: usize = 4 << 20;
/// Title and producer are cut to this many characters.
const MAX_INFO_CHARS: usize = 1_000;

/// The document information dictionary.
#[derive(Clone, Copy, Debug)]
pub struct PdfInfo<'a> {
    pub title: Option<&'a str>,
    pub producer: &'a str,
}

/// A page image, drawn over the whole page.
#[derive(Clone, Copy)]
pub enum PageImage<'a> {
    /// JPEG bytes passed through untouched (DCTDecode).
    Jpeg {
        data: &'a [u8],
        width: u32,
        height: u32,
        components: u8,
    },
    /// 8-bit gray, row-major, width*height bytes (Flate-compressed by you).
    Gray8 { data: &'a [u8], width: u32, height: u32 },
    /// 8-bit RGB, row-major, width*height*3 bytes.
    Rgb8 { data: &'a [u8], width: u32, height: u32 },
}

impl PageImage<'_> {
    /// Width and height in pixels.
    pub fn size(&self) -> (u32, u32) {
        match *self {
            Self::Jpeg { width, height, .. } | Self::Gray8 { width, height, .. } | Self::Rgb8 { width, height, .. } => {
                (width, height)
            }
        }
    }
}

impl fmt::Debug for PageImage<'_> {
    /// The kind, size and byte count; never the bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, data) = match *self {
            Self::Jpeg { data, .. } => ("Jpeg", data),
            Self::Gray8 { data, .. } => ("Gray8", data),
            Self::Rgb8 { data, .. } => ("Rgb8", data),
        };
        let (width, height) = self.size();
        f.debug_struct(kind)
            .field("width", &width)
            .field("height", &height)
            .field("bytes", &data.len())
            .finish()
    }
}

/// A page showing `image` over the whole page, with the page's words as invisible text.
/// Page size in points from `layout` (width/height pixels at layout.dpi); the image is scaled to it.
/// A layout of zero width or height takes the image's pixel size instead.
#[derive(Clone, Copy, Debug)]
pub struct ImagePage<'a> {
    pub image: PageImage<'a>,
    pub layout: &'a PageLayout,
}

/// A page of the given size holding only invisible text (None: an empty page).
///
/// The layout's pixel frame (`width` x `height`) is stretched over the whole
/// page. For an underlay, give the destination page's TrimBox size (its
/// MediaBox when it has none) as displayed, width and height swapped for a
/// page with `/Rotate` 90 or 270: `qpdf --underlay` turns the layer with
/// the page and shrinks it into that box. The layout must then describe
/// that box, as `pdftoppm` renders it when the page sets no CropBox or
/// TrimBox of its own.
#[derive(Clone, Copy, Debug)]
pub struct LayerPage<'a> {
    pub width_pt: f32,
    pub height_pt: f32,
    pub layout: Option<&'a PageLayout>,
}

/// A searchable PDF of scanned pages: each page shows its image, scaled to
/// the page, under its words as invisible text.
pub fn image_pdf(pages: &[ImagePage<'_>], info: &PdfInfo<'_>) -> Result<Vec<u8>, DocError> {
    check_page_count(pages.len())?;
    for page in pages {
        image::check(&page.image)?;
        let (width, height, _) = image_page_frame(page);
        check_page_size(width, height)?;
        check_layout(page.layout)?;
    }
    let capacity = pages.iter().map(|page| jpeg_len(&page.image) + 16 * 1024).sum();
    let mut document = Document::new(capacity);
    for page in pages {
        let image = image::encode(&page.image)?;
        let (width, height, frame) = image_page_frame(page);
        document.add_page(width, height, Some(&image), frame.map(|frame| (page.layout, frame)));
    }
    Ok(document.finish(info.title.map(cut).as_deref(), &cut(info.producer)))
}

/// Pages of invisible text only, one per entry, to lay under the pages of
/// an existing PDF.
pub fn text_layer_pdf(pages: &[LayerPage<'_>], info: &PdfInfo<'_>) -> Result<Vec<u8>, DocError> {
    check_page_count(pages.len())?;
    for page in pages {
        check_page_size(page.width_pt, page.height_pt)?;
        if let Some(layout) = page.layout {
            check_layout(layout)?;
        }
    }
    let mut document = Document::new(pages.len() * 8 * 1024);
    for page in pages {
        let text = page.layout.and_then(|layout| {
            Frame::new(layout.width, layout.height, page.width_pt, page.height_pt).map(|frame| (layout, frame))
        });
        document.add_page(page.width_pt, page.height_pt, None, text);
    }
    Ok(document.finish(info.title.map(cut).as_deref(), &cut(info.producer)))
}

/// Page width and height in points, and the frame placing the layout's
/// words on it.
fn image_page_frame(page: &ImagePage<'_>) -> (f32, f32, Option<Frame>) {
    let layout = page.layout;
    let (width_px, height_px) = if layout.width > 0 && layout.height > 0 {
        (layout.width, layout.height)
    } else {
        page.image.size()
    };
    let dpi = layout.dpi.max(1) as f32;
    let width = width_px as f32 * 72.0 / dpi;
    let height = height_px as f32 * 72.0 / dpi;
    (width, height, Frame::new(layout.width, layout.height, width, height))
}

fn jpeg_len(image: &PageImage<'_>) -> usize {
    match image {
        PageImage::Jpeg { data, .. } => data.len(),
        _ => 0,
    }
}

fn check_page_count(count: usize) -> Result<(), DocError> {
    if count == 0 {
        return Err(DocError::new(FailureReason::Empty, "no pages to write"));
    }
    if count > MAX_PAGES {
        return Err(DocError::too_large(format!(
            "{count} pages exceed {MAX_PAGES} per document"
        )));
    }
    Ok(())
}

fn check_page_size(width: f32, height: f32) -> Result<(), DocError> {
    // NB: written this way round, NaN fails the check too.
    if !(width > 0.0 && height > 0.0 && width.is_finite() && height.is_finite()) {
        return Err(DocError::corrupt("page size must be positive and finite"));
    }
    if width > MAX_PAGE_SIDE_PT || height > MAX_PAGE_SIDE_PT {
        return Err(DocError::too_large(format!(
            "page of {width:.0}x{height:.0} points exceeds {MAX_PAGE_SIDE_PT} points a side"
        )));
    }
    Ok(())
}

fn check_layout(layout: &PageLayout) -> Result<(), DocError> {
    let (mut words, mut bytes) = (0usize, 0usize);
    for word in layout.words() {
        words += 1;
        bytes += word.text.len();
        if words > MAX_PAGE_WORDS {
            return Err(DocError::too_large(format!(
                "page {} has more than {MAX_PAGE_WORDS} words",
                layout.number
            )));
        }
        if bytes > MAX_PAGE_TEXT_BYTES {
            return Err(DocError::too_large(format!(
                "page {} has more than {MAX_PAGE_TEXT_BYTES} bytes of text",
                layout.number
            )));
        }
    }
    Ok(())
}

fn cut(text: &str) -> String {
    text.chars().take(MAX_INFO_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{BBox, Block, Line, Paragraph, Word};

    fn layout_with_words(count: usize, text: &str) -> PageLayout {
        let words = (0..count)
            .map(|_| Word {
                bbox: BBox::default(),
                text: text.into(),
                confidence: 0.0,
            })
            .collect();
        PageLayout {
            number: 3,
            width: 100,
            height: 100,
            dpi: 72,
            blocks: vec![Block {
                bbox: BBox::default(),
                paragraphs: vec![Paragraph {
                    bbox: BBox::default(),
                    lines: vec![Line {
                        bbox: BBox::default(),
                        words,
                    }],
                }],
            }],
        }
    }

    const INFO: PdfInfo<'static> = PdfInfo {
        title: None,
        producer: "skep test",
    };

    fn reason(result: Result<Vec<u8>, DocError>) -> FailureReason {
        result.unwrap_err().reason
    }

    #[test]
    fn page_count_is_bounded() {
        let page = LayerPage {
            width_pt: 100.0,
            height_pt: 100.0,
            layout: None,
        };
        assert!(text_layer_pdf(&vec![page; MAX_PAGES], &INFO).is_ok());
        assert_eq!(
            reason(text_layer_pdf(&vec![page; MAX_PAGES + 1], &INFO)),
            FailureReason::TooLarge
        );
        assert_eq!(reason(text_layer_pdf(&[], &INFO)), FailureReason::Empty);
        assert_eq!(reason(image_pdf(&[], &INFO)), FailureReason::Empty);
    }

    #[test]
    fn page_size_must_be_sane() {
        for (width, height, expected) in [
            (0.0, 100.0, FailureReason::Corrupt),
            (-5.0, 100.0, FailureReason::Corrupt),
            (f32::NAN, 100.0, FailureReason::Corrupt),
            (100.0, f32::INFINITY, FailureReason::Corrupt),
            (100.0, MAX_PAGE_SIDE_PT + 1.0, FailureReason::TooLarge),
        ] {
            let page = LayerPage {
                width_pt: width,
                height_pt: height,
                layout: None,
            };
            assert_eq!(reason(text_layer_pdf(&[page], &INFO)), expected, "{width}x{height}");
        }
    }

    #[test]
    fn words_and_text_per_page_are_bounded() {
        let page = |layout| LayerPage {
            width_pt: 100.0,
            height_pt: 100.0,
            layout: Some(layout),
        };
        let many = layout_with_words(MAX_PAGE_WORDS + 1, "a");
        assert_eq!(reason(text_layer_pdf(&[page(&many)], &INFO)), FailureReason::TooLarge);
        let long = layout_with_words(5, &"x".repeat(MAX_PAGE_TEXT_BYTES / 4));
        assert_eq!(reason(text_layer_pdf(&[page(&long)], &INFO)), FailureReason::TooLarge);
        let fine = layout_with_words(MAX_PAGE_WORDS, "a");
        assert!(text_layer_pdf(&[page(&fine)], &INFO).is_ok());
    }

    #[test]
    fn image_page_takes_its_size_from_the_layout_or_else_the_image() {
        let pixels = [0u8; 200 * 100];
        let image = PageImage::Gray8 {
            data: &pixels,
            width: 200,
            height: 100,
        };
        let mut layout = layout_with_words(0, "");
        layout.width = 400;
        layout.height = 300;
        layout.dpi = 144;
        let (width, height, frame) = image_page_frame(&ImagePage { image, layout: &layout });
        assert_eq!((width, height), (200.0, 150.0));
        assert!(frame.is_some());
        layout.width = 0;
        let (width, height, frame) = image_page_frame(&ImagePage { image, layout: &layout });
        assert_eq!((width, height), (100.0, 50.0));
        assert!(frame.is_none());
    }

    #[test]
    fn an_oversized_image_page_is_refused_before_any_work() {
        let pixels = [0u8; 4];
        let layout = layout_with_words(0, "");
        let page = |width, height| ImagePage {
            image: PageImage::Gray8 {
                data: &pixels,
                width,
                height,
            },
            layout: &layout,
        };
        assert_eq!(
            reason(image_pdf(&[page(MAX_IMAGE_SIDE + 1, 1)], &INFO)),
            FailureReason::TooLarge
        );
        assert_eq!(reason(image_pdf(&[page(3, 1)], &INFO)), FailureReason::Corrupt);
        assert!(image_pdf(&[page(2, 2)], &INFO).is_ok());
    }

    #[test]
    fn info_is_cut_and_debug_hides_pixels() {
        let title = "t".repeat(5_000);
        let info = PdfInfo {
            title: Some(&title),
            producer: "p",
        };
        let page = LayerPage {
            width_pt: 10.0,
            height_pt: 10.0,
            layout: None,
        };
        let pdf = text_layer_pdf(&[page], &info).unwrap();
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains(&"t".repeat(MAX_INFO_CHARS)));
        assert!(!text.contains(&"t".repeat(MAX_INFO_CHARS + 1)));
        let pixels = [7u8; 64];
        let image = PageImage::Gray8 {
            data: &pixels,
            width: 8,
            height: 8,
        };
        assert_eq!(format!("{image:?}"), "Gray8 { width: 8, height: 8, bytes: 64 }");
    }
}
