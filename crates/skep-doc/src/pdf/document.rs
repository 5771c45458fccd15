//! Assembling a document: object numbering, the page tree, the shared font
//! (written once, at the end, only if some page has text) and the
//! document information.

use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Settings, TextStr};

use super::charset::Charset;
use super::deflate::deflate;
use super::font::{self, RESOURCE_NAME};
use super::image::EncodedImage;
use super::text::{self, Frame};
use crate::layout::PageLayout;

const IMAGE_NAME: Name<'static> = Name(b"Im0");

/// A PDF being written, page by page.
pub(crate) struct Document {
    pdf: Pdf,
    next_id: i32,
    page_tree: Ref,
    font: Ref,
    pages: Vec<Ref>,
    charset: Charset,
    has_text: bool,
}

impl Document {
    pub(crate) fn new(capacity: usize) -> Self {
        let mut document = Self {
            pdf: Pdf::with_settings_and_capacity(Settings { pretty: false }, capacity),
            next_id: 1,
            page_tree: Ref::new(1),
            font: Ref::new(1),
            pages: Vec::new(),
            charset: Charset::default(),
            has_text: false,
        };
        document.page_tree = document.alloc();
        document.font = document.alloc();
        document
    }

    fn alloc(&mut self) -> Ref {
        let id = Ref::new(self.next_id);
        self.next_id += 1;
        id
    }

    /// Adds a page of `width` x `height` points showing `image` over the
    /// whole page, then `layout`'s words as invisible text placed through
    /// `frame`.
    pub(crate) fn add_page(
        &mut self,
        width: f32,
        height: f32,
        image: Option<&EncodedImage<'_>>,
        text: Option<(&PageLayout, Frame)>,
    ) {
        let page = self.alloc();
        let contents = self.alloc();
        let image_id = image.map(|_| self.alloc());

        let mut content = Content::new();
        if image.is_some() {
            content.save_state();
            content.transform([width, 0.0, 0.0, height, 0.0, 0.0]);
            content.x_object(IMAGE_NAME);
            content.restore_state();
        }
        let has_text =
            text.is_some_and(|(layout, frame)| text::write_text(&mut content, layout, frame, &mut self.charset));
        self.has_text |= has_text;

        let compressed = deflate(&content.finish());
        self.pdf.stream(contents, &compressed).filter(Filter::FlateDecode);
        if let (Some(image), Some(id)) = (image, image_id) {
            image.write(&mut self.pdf, id);
        }

        let mut writer = self.pdf.page(page);
        writer
            .parent(self.page_tree)
            .media_box(Rect::new(0.0, 0.0, width, height))
            .contents(contents);
        let mut resources = writer.resources();
        if let Some(id) = image_id {
            resources.x_objects().pair(IMAGE_NAME, id);
        }
        if has_text {
            resources.fonts().pair(RESOURCE_NAME, self.font);
        }
        resources.finish();
        writer.finish();
        self.pages.push(page);
    }

    /// The finished file.
    pub(crate) fn finish(mut self, title: Option<&str>, producer: &str) -> Vec<u8> {
        let catalog = self.alloc();
        let info = self.alloc();
        if self.has_text {
            let parts = std::array::from_fn(|_| self.alloc());
            font::write_font(&mut self.pdf, self.font, parts, &self.charset);
        }
        // NB: without text the font's number stays unused, a free entry in
        // the cross-reference table.
        self.pdf.catalog(catalog).pages(self.page_tree);
        self.pdf
            .pages(self.page_tree)
            .kids(self.pages.iter().copied())
            .count(self.pages.len() as i32);
        let mut document_info = self.pdf.document_info(info);
        if let Some(title) = title {
            document_info.title(TextStr(title));
        }
        document_info.producer(TextStr(producer));
        document_info.finish();
        self.pdf.finish()
    }
}
