//! Image files: one page, or one page per image of a multi-page TIFF
//! (split into ranges like a PDF).

use leptess::leptonica::pix_read_mem;
use skep_api::{FailureReason, PageSource};

use super::{MAX_PAGES, PageOut, Pages, ReadRequest, Split, Visual};
use crate::engine::{Engine, OcrError, PageImage};
use crate::format::{ImageFormat, is_multipage_tiff};
use crate::raster::{DecodedPage, decode_image, decode_tiff_page, rotate_rgb, tiff_page_count};
use crate::staging::PdfKind;

pub(super) fn read(
    engine: &mut Engine,
    req: &ReadRequest,
    bytes: &[u8],
    format: ImageFormat,
) -> Result<Split, OcrError> {
    let layout = req.wants_layout();
    let want_visual = req.wants_pdf();
    if format == ImageFormat::Jp2 {
        // NB: JPEG 2000 is decoded by Leptonica, which gives no pixels to
        // turn or show: read as it is, and shown in a PDF as gray only
        // when asked for (the Pix is not readable from safe code).
        let pix = pix_read_mem(bytes).map_err(|_| corrupt(format))?;
        let ocr = engine.read_page(PageImage::Pix(&pix), 1, &req.config, layout)?;
        let page = PageOut {
            number: 1,
            source: PageSource::Ocr,
            words: ocr.words,
            confidence: ocr.confidence,
            rotation: 0,
            text: ocr.text,
            layout: ocr.layout,
            visual: Visual::None,
        };
        return Ok(Split::Pages(Pages {
            pages: vec![page],
            kind: PdfKind::Images,
        }));
    }
    if format == ImageFormat::Tiff && is_multipage_tiff(bytes) {
        let total = tiff_page_count(bytes, MAX_PAGES)?;
        if total > MAX_PAGES {
            return Err(OcrError::new(
                FailureReason::TooLarge,
                format!("the TIFF has more than {MAX_PAGES} pages"),
            ));
        }
        let Some(range) = req.range_of(total)? else {
            return Ok(Split::Split(total));
        };
        let mut pages = Vec::with_capacity(range.len() as usize);
        for number in range.first..=range.last {
            let decoded = decode_tiff_page(bytes, number - 1, want_visual)?;
            pages.push(read_decoded(engine, req, decoded, number, None)?);
        }
        return Ok(Split::Pages(Pages {
            pages,
            kind: PdfKind::Images,
        }));
    }
    if let Some(r) = req.pages
        && (r.first != 1 || r.last != 1)
    {
        return Err(OcrError::new(
            FailureReason::Corrupt,
            format!("pages {r} asked for, but the image has 1 page"),
        ));
    }
    let decoded = decode_image(bytes, format, want_visual)?;
    let jpeg = (want_visual && format == ImageFormat::Jpeg).then_some(bytes);
    let page = read_decoded(engine, req, decoded, 1, jpeg)?;
    Ok(Split::Pages(Pages {
        pages: vec![page],
        kind: PdfKind::Images,
    }))
}

/// OCRs one decoded page; keeps what a searchable PDF shows of it when
/// asked (`jpeg`: the file's own bytes, shown as they are unless the page
/// was turned).
fn read_decoded(
    engine: &mut Engine,
    req: &ReadRequest,
    decoded: DecodedPage,
    number: u32,
    jpeg: Option<&[u8]>,
) -> Result<PageOut, OcrError> {
    let DecodedPage { gray, rgb } = decoded;
    let ocr = engine.read_page(PageImage::Gray(&gray), number, &req.config, req.wants_layout())?;
    let visual = if !req.wants_pdf() {
        Visual::None
    } else if let (Some(data), 0) = (jpeg, ocr.rotation) {
        Visual::Jpeg {
            data: data.to_vec(),
            width: gray.width,
            height: gray.height,
            components: if rgb.is_some() { 3 } else { 1 },
        }
    } else if let Some(rgb) = rgb {
        let (w, h) = (gray.width, gray.height);
        let data = rotate_rgb(&rgb, w, h, ocr.rotation);
        let (width, height) = if ocr.rotation % 180 == 90 { (h, w) } else { (w, h) };
        Visual::Rgb { data, width, height }
    } else {
        Visual::Gray(ocr.turned.clone().unwrap_or(gray))
    };
    Ok(PageOut {
        number,
        source: PageSource::Ocr,
        words: ocr.words,
        confidence: ocr.confidence,
        rotation: ocr.rotation,
        text: ocr.text,
        layout: ocr.layout,
        visual,
    })
}

fn corrupt(format: ImageFormat) -> OcrError {
    OcrError::new(
        FailureReason::Corrupt,
        format!("the {} data could not be decoded", format.name()),
    )
}
