//! A minimal PDF writer for test documents: pages of Helvetica text, and
//! pages that show one greyscale image.

use std::io::Write as _;

use anyhow::Context as _;
use flate2::Compression;
use flate2::write::ZlibEncoder;
use pdf_writer::{Content, Filter, Finish as _, Name, Pdf, Rect, Ref, Str, TextStr};

use crate::DPI;

/// A4 in points.
pub const A4_POINTS: (f32, f32) = (595.0, 842.0);
/// Font size of text pages, in points.
const FONT_SIZE: f32 = 12.0;
/// Baseline-to-baseline distance on text pages, in points.
const LEADING: f32 = 18.0;
/// Left and top margin of text pages, in points.
const MARGIN: f32 = 72.0;
const FONT_NAME: Name<'static> = Name(b"F1");
const IMAGE_NAME: Name<'static> = Name(b"Im1");

/// An image stream ready to embed: 8-bit greyscale samples, encoded as
/// `filter` says.
#[derive(Debug, Clone)]
pub struct GrayImageStream {
    pub data: Vec<u8>,
    pub filter: Filter,
    pub width: u32,
    pub height: u32,
}

impl GrayImageStream {
    /// A baseline JPEG file (DCTDecode takes it as is).
    pub fn jpeg(data: Vec<u8>, width: u32, height: u32) -> Self {
        GrayImageStream {
            data,
            filter: Filter::DctDecode,
            width,
            height,
        }
    }

    /// Raw 8-bit samples, row by row, deflated here.
    pub fn flate(samples: &[u8], width: u32, height: u32) -> anyhow::Result<Self> {
        Ok(GrayImageStream {
            data: deflate(samples)?,
            filter: Filter::FlateDecode,
            width,
            height,
        })
    }

    /// The page size, in points, at which the image is [`DPI`] dots per inch.
    pub fn size_at_dpi(&self) -> (f32, f32) {
        let k = 72.0 / DPI as f32;
        (self.width as f32 * k, self.height as f32 * k)
    }
}

/// One page of a generated PDF.
#[derive(Debug, Clone, Copy)]
pub enum PdfPage<'a> {
    /// Lines of text in Helvetica (WinAnsi; printable ASCII expected) from the
    /// top left of an A4 page, one line per text line.
    Text(&'a [String]),
    /// `image` stretched over a page of `size` points, with no text.
    Image {
        image: &'a GrayImageStream,
        size: (f32, f32),
    },
}

impl<'a> PdfPage<'a> {
    /// A page showing `image` at [`DPI`] (page size = pixels * 72 / DPI).
    pub fn scan(image: &'a GrayImageStream) -> Self {
        PdfPage::Image {
            image,
            size: image.size_at_dpi(),
        }
    }
}

/// Writes a PDF 1.7 of `pages`. `id` seeds the file identifier, so the same
/// pages and id give the same bytes.
///
/// NB: the catalog and page tree are written after all page content, so a
/// file cut anywhere before its end has no document catalog and cannot be
/// repaired by a reader's xref reconstruction.
pub fn write_pdf(pages: &[PdfPage<'_>], id: u64) -> anyhow::Result<Vec<u8>> {
    let capacity = 4096
        + pages
            .iter()
            .map(|p| match p {
                PdfPage::Text(_) => 2048,
                PdfPage::Image { image, .. } => image.data.len() + 512,
            })
            .sum::<usize>();
    let mut pdf = Pdf::with_capacity(capacity);
    let mut next_id = 1;
    let mut alloc = || {
        let r = Ref::new(next_id);
        next_id += 1;
        r
    };
    let catalog_id = alloc();
    let tree_id = alloc();
    let info_id = alloc();
    let font_id = alloc();
    let mut page_ids = Vec::with_capacity(pages.len());
    let mut uses_font = false;

    for page in pages {
        let page_id = alloc();
        let content_id = alloc();
        page_ids.push(page_id);
        let (media, image_id) = match *page {
            PdfPage::Text(lines) => {
                uses_font = true;
                let content = deflate(&text_content(lines))?;
                pdf.stream(content_id, &content).filter(Filter::FlateDecode);
                (A4_POINTS, None)
            }
            PdfPage::Image { image, size } => {
                let image_id = alloc();
                let mut xobject = pdf.image_xobject(image_id, &image.data);
                xobject.filter(image.filter);
                xobject.width(dimension(image.width)?);
                xobject.height(dimension(image.height)?);
                xobject.color_space().device_gray();
                xobject.bits_per_component(8);
                xobject.finish();
                let content = deflate(&image_content(size))?;
                pdf.stream(content_id, &content).filter(Filter::FlateDecode);
                (size, Some(image_id))
            }
        };
        let mut p = pdf.page(page_id);
        p.media_box(Rect::new(0.0, 0.0, media.0, media.1));
        p.parent(tree_id);
        p.contents(content_id);
        let mut resources = p.resources();
        match image_id {
            Some(image_id) => {
                resources.x_objects().pair(IMAGE_NAME, image_id);
            }
            None => {
                resources.fonts().pair(FONT_NAME, font_id);
            }
        }
        resources.finish();
        p.finish();
    }

    if uses_font {
        pdf.type1_font(font_id)
            .base_font(Name(b"Helvetica"))
            .encoding_predefined(Name(b"WinAnsiEncoding"));
    }
    pdf.document_info(info_id).producer(TextStr("skep-testkit"));
    pdf.pages(tree_id)
        .kids(page_ids.iter().copied())
        .count(i32::try_from(page_ids.len()).context("too many pages for one pdf")?);
    pdf.catalog(catalog_id).pages(tree_id);
    let file_id = crate::mix_seed(id, 0x7064_6669_6420).to_be_bytes().repeat(2);
    pdf.set_file_id((file_id.clone(), file_id));
    Ok(pdf.finish())
}

fn dimension(px: u32) -> anyhow::Result<i32> {
    i32::try_from(px).context("image dimension out of range")
}

/// `BT /F1 12 Tf 18 TL 72 758 Td (line) Tj T* (line) Tj ... ET`
fn text_content(lines: &[String]) -> Vec<u8> {
    let mut content = Content::new();
    content.begin_text();
    content.set_font(FONT_NAME, FONT_SIZE);
    content.set_leading(LEADING);
    content.next_line(MARGIN, A4_POINTS.1 - MARGIN - FONT_SIZE);
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            content.next_line_using_leading();
        }
        content.show(Str(line.as_bytes()));
    }
    content.end_text();
    content.finish().into_vec()
}

/// `q W 0 0 H 0 0 cm /Im1 Do Q`: the image fills the page.
fn image_content(size: (f32, f32)) -> Vec<u8> {
    let mut content = Content::new();
    content.save_state();
    content.transform([size.0, 0.0, 0.0, size.1, 0.0, 0.0]);
    content.x_object(IMAGE_NAME);
    content.restore_state();
    content.finish().into_vec()
}

fn deflate(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut enc = ZlibEncoder::new(Vec::with_capacity(bytes.len() / 2 + 64), Compression::default());
    enc.write_all(bytes).context("deflating a pdf stream")?;
    enc.finish().context("deflating a pdf stream")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate(bytes: &[u8]) -> Vec<u8> {
        use std::io::Read as _;
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("our own deflate output inflates");
        out
    }

    #[test]
    fn text_is_escaped_in_the_content_stream() {
        let content = text_content(&["a (b) c\\d".to_string(), "x)".to_string()]);
        let s = String::from_utf8(content).expect("content is ascii");
        assert!(s.contains("/F1 12 Tf"), "{s}");
        // An unbalanced parenthesis and the backslash are escaped.
        assert!(s.contains(r"(x\))"), "{s}");
        assert!(s.contains(r"c\\d"), "{s}");
        assert!(s.contains("T*"), "{s}");
    }

    #[test]
    fn scan_page_size_follows_the_resolution() -> anyhow::Result<()> {
        let img = GrayImageStream::flate(&[128; 1240 * 880], 1240, 880)?;
        let PdfPage::Image { size, .. } = PdfPage::scan(&img) else {
            panic!("a scan is an image page");
        };
        assert!(
            (size.0 - 297.6).abs() < 1e-3 && (size.1 - 211.2).abs() < 1e-3,
            "{size:?}"
        );
        assert_eq!(inflate(&img.data).len(), 1240 * 880);
        Ok(())
    }

    #[test]
    fn catalog_comes_after_the_pages() -> anyhow::Result<()> {
        let lines = vec!["Hello world".to_string()];
        let bytes = write_pdf(&[PdfPage::Text(&lines)], 1)?;
        let find = |needle: &[u8]| bytes.windows(needle.len()).position(|w| w == needle);
        let page = find(b"/Type /Page\n").or(find(b"/Type /Page ")).expect("a page object");
        let catalog = find(b"/Type /Catalog").expect("a catalog object");
        assert!(page < catalog);
        assert!(bytes.starts_with(b"%PDF-1.7"));
        assert_eq!(write_pdf(&[PdfPage::Text(&lines)], 1)?, bytes);
        assert_ne!(write_pdf(&[PdfPage::Text(&lines)], 2)?, bytes);
        Ok(())
    }
}
