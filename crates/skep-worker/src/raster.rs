//! Page images as the worker holds them: 8-bit gray pixels (what Tesseract
//! reads), decoded from image files or from Poppler's PGM output, checked
//! against a pixel limit before any pixel buffer is allocated, and turned
//! by quarter turns when a page was scanned sideways.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader};
use skep_api::FailureReason;

use crate::engine::OcrError;
use crate::format::ImageFormat;

/// Pages larger than this many pixels are refused with `tooLarge` (about
/// A0 at 300 dpi is 139 M; an A4 page at 300 dpi is 8.7 M). Tesseract
/// holds several copies of a page, so this bounds a worker's memory.
pub const MAX_PAGE_PIXELS: u64 = 100_000_000;
/// Resolutions outside this range are not believed (Tesseract's own
/// bounds); the job's `dpi` is assumed instead.
const CREDIBLE_DPI: std::ops::RangeInclusive<u32> = 70..=2400;

/// An 8-bit gray image, row-major, `width * height` bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Raster {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
    /// The resolution the file records, when credible.
    pub dpi: Option<u32>,
}

impl std::fmt::Debug for Raster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Raster")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("dpi", &self.dpi)
            .finish()
    }
}

/// A decoded image page: the gray raster OCR reads, and what a searchable
/// PDF shows.
#[derive(Debug)]
pub struct DecodedPage {
    pub gray: Raster,
    /// The page's colours, when it has any and they were asked for.
    pub rgb: Option<Vec<u8>>,
}

/// Refuses a `width x height` page above [`MAX_PAGE_PIXELS`]; `what` names
/// it in the message ("page 3", "the image").
pub fn check_pixels(width: u64, height: u64, what: &str) -> Result<(), OcrError> {
    let pixels = width.saturating_mul(height);
    if pixels > MAX_PAGE_PIXELS {
        return Err(OcrError::new(
            FailureReason::TooLarge,
            format!(
                "{what} is {width}x{height} pixels ({:.0} M), above the limit of {} M",
                pixels as f64 / 1e6,
                MAX_PAGE_PIXELS / 1_000_000
            ),
        ));
    }
    Ok(())
}

impl Raster {
    /// The raster turned `degrees` (0, 90, 180 or 270) clockwise.
    pub fn rotated(&self, degrees: u16) -> Raster {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut out = vec![0u8; self.data.len()];
        let (nw, nh) = match degrees % 360 {
            90 => {
                // (x, y) -> (h - 1 - y, x)
                for y in 0..h {
                    let row = &self.data[y * w..(y + 1) * w];
                    for (x, &p) in row.iter().enumerate() {
                        out[x * h + (h - 1 - y)] = p;
                    }
                }
                (h, w)
            }
            180 => {
                for (i, &p) in self.data.iter().enumerate() {
                    out[w * h - 1 - i] = p;
                }
                (w, h)
            }
            270 => {
                // (x, y) -> (y, w - 1 - x)
                for y in 0..h {
                    let row = &self.data[y * w..(y + 1) * w];
                    for (x, &p) in row.iter().enumerate() {
                        out[(w - 1 - x) * h + y] = p;
                    }
                }
                (h, w)
            }
            _ => return self.clone(),
        };
        Raster {
            width: nw as u32,
            height: nh as u32,
            data: out,
            dpi: self.dpi,
        }
    }
}

/// Turns RGB pixels `degrees` clockwise (see [`Raster::rotated`]).
pub fn rotate_rgb(rgb: &[u8], width: u32, height: u32, degrees: u16) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut out = vec![0u8; rgb.len()];
    for y in 0..h {
        for x in 0..w {
            let (nx, ny, nw) = match degrees % 360 {
                90 => (h - 1 - y, x, h),
                180 => (w - 1 - x, h - 1 - y, w),
                270 => (y, w - 1 - x, h),
                _ => (x, y, w),
            };
            let src = (y * w + x) * 3;
            let dst = (ny * nw + nx) * 3;
            out[dst..dst + 3].copy_from_slice(&rgb[src..src + 3]);
        }
    }
    out
}

/// Reads Poppler's `pdftoppm -gray` output (binary PGM, maxval 255).
pub fn parse_pgm(bytes: &[u8], dpi: u32) -> Result<Raster, OcrError> {
    let corrupt = || OcrError::new(FailureReason::Corrupt, "the rendered page is not a PGM image");
    let mut fields = Vec::with_capacity(4);
    let mut at = 0;
    // Magic, width, height, maxval, separated by whitespace (comments
    // start with '#'), then one whitespace byte before the pixels.
    while fields.len() < 4 {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if bytes.get(at) == Some(&b'#') {
            while at < bytes.len() && bytes[at] != b'\n' {
                at += 1;
            }
            continue;
        }
        let start = at;
        while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if start == at {
            return Err(corrupt());
        }
        fields.push(std::str::from_utf8(&bytes[start..at]).map_err(|_| corrupt())?);
    }
    at += 1;
    let num = |s: &str| s.parse::<u32>().map_err(|_| corrupt());
    if fields[0] != "P5" || num(fields[3])? != 255 {
        return Err(corrupt());
    }
    let (width, height) = (num(fields[1])?, num(fields[2])?);
    check_pixels(u64::from(width), u64::from(height), "the rendered page")?;
    let len = width as usize * height as usize;
    let data = bytes.get(at..at + len).ok_or_else(corrupt)?.to_vec();
    Ok(Raster {
        width,
        height,
        data,
        dpi: Some(dpi),
    })
}

/// Decodes an image file's first page (any format but JPEG 2000, which
/// Leptonica reads instead). `want_rgb` keeps its colours too.
pub fn decode_image(bytes: &[u8], format: ImageFormat, want_rgb: bool) -> Result<DecodedPage, OcrError> {
    let corrupt = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => OcrError::new(FailureReason::TooLarge, format!("the image is too large: {e}")),
        other => OcrError::new(
            FailureReason::Corrupt,
            format!("the {} data could not be decoded: {other}", format.name()),
        ),
    };
    let reader = ImageReader::with_format(Cursor::new(bytes), image_format(format)?);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (w, h) = decoder.dimensions();
    check_pixels(u64::from(w), u64::from(h), "the image")?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PAGE_PIXELS * 8);
    decoder.set_limits(limits).map_err(corrupt)?;
    let image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    Ok(page_of(image, recorded_dpi(bytes, format), want_rgb))
}

fn page_of(image: DynamicImage, dpi: Option<u32>, want_rgb: bool) -> DecodedPage {
    let colour = image.color().has_color();
    let rgb = (want_rgb && colour).then(|| image.to_rgb8().into_raw());
    let gray = image.into_luma8();
    DecodedPage {
        gray: Raster {
            width: gray.width(),
            height: gray.height(),
            data: gray.into_raw(),
            dpi,
        },
        rgb,
    }
}

fn image_format(format: ImageFormat) -> Result<image::ImageFormat, OcrError> {
    Ok(match format {
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Tiff => image::ImageFormat::Tiff,
        ImageFormat::Bmp => image::ImageFormat::Bmp,
        ImageFormat::Gif => image::ImageFormat::Gif,
        ImageFormat::Webp => image::ImageFormat::WebP,
        ImageFormat::Pnm => image::ImageFormat::Pnm,
        ImageFormat::Jp2 => {
            return Err(OcrError::new(
                FailureReason::Engine,
                "JPEG 2000 is decoded by Leptonica",
            ));
        }
    })
}

/// The pages of a TIFF (following its chain of image directories, at most
/// `max` of them).
pub fn tiff_page_count(bytes: &[u8], max: u32) -> Result<u32, OcrError> {
    let mut decoder = tiff_decoder(bytes)?;
    let mut n = 1;
    while decoder.more_images() && n <= max {
        decoder.next_image().map_err(tiff_error)?;
        n += 1;
    }
    Ok(n)
}

/// Decodes page `index` (0-based) of a TIFF.
pub fn decode_tiff_page(bytes: &[u8], index: u32, want_rgb: bool) -> Result<DecodedPage, OcrError> {
    let mut decoder = tiff_decoder(bytes)?;
    decoder.seek_to_image(index as usize).map_err(tiff_error)?;
    let (w, h) = decoder.dimensions().map_err(tiff_error)?;
    check_pixels(u64::from(w), u64::from(h), &format!("page {}", index + 1))?;
    let dpi = tiff_dpi(&mut decoder);
    let colour = decoder.colortype().map_err(tiff_error)?;
    let data = decoder.read_image().map_err(tiff_error)?;
    let image = tiff_to_image(w, h, colour, data)?;
    Ok(page_of(image, dpi, want_rgb))
}

fn tiff_decoder(bytes: &[u8]) -> Result<tiff::decoder::Decoder<Cursor<&[u8]>>, OcrError> {
    let mut limits = tiff::decoder::Limits::default();
    limits.decoding_buffer_size = (MAX_PAGE_PIXELS * 8) as usize;
    limits.intermediate_buffer_size = (MAX_PAGE_PIXELS * 8) as usize;
    tiff::decoder::Decoder::new(Cursor::new(bytes))
        .map(|d| d.with_limits(limits))
        .map_err(tiff_error)
}

fn tiff_error(e: tiff::TiffError) -> OcrError {
    match e {
        tiff::TiffError::LimitsExceeded => OcrError::new(FailureReason::TooLarge, "the TIFF page is too large"),
        tiff::TiffError::UnsupportedError(u) => {
            OcrError::new(FailureReason::Unsupported, format!("unsupported TIFF: {u}"))
        }
        other => OcrError::new(
            FailureReason::Corrupt,
            format!("the TIFF data could not be decoded: {other}"),
        ),
    }
}

fn tiff_to_image(
    w: u32,
    h: u32,
    colour: tiff::ColorType,
    data: tiff::decoder::DecodingResult,
) -> Result<DynamicImage, OcrError> {
    use tiff::ColorType as C;
    use tiff::decoder::DecodingResult as D;
    let bad = || {
        OcrError::new(
            FailureReason::Unsupported,
            format!("unsupported TIFF colour type {colour:?}"),
        )
    };
    let short = || OcrError::new(FailureReason::Corrupt, "the TIFF page holds fewer pixels than it says");
    Ok(match (colour, data) {
        (C::Gray(8), D::U8(v)) => DynamicImage::ImageLuma8(image::GrayImage::from_raw(w, h, v).ok_or_else(short)?),
        (C::Gray(1), D::U8(v)) => {
            // NB: bilevel rows are packed, 8 pixels a byte, each row padded
            // to a byte; 0 is black unless PhotometricInterpretation says
            // otherwise, which the decoder has already applied.
            let row = (w as usize).div_ceil(8);
            let mut px = Vec::with_capacity(w as usize * h as usize);
            for y in 0..h as usize {
                for x in 0..w as usize {
                    let byte = *v.get(y * row + x / 8).ok_or_else(short)?;
                    px.push(if byte & (0x80 >> (x % 8)) != 0 { 255 } else { 0 });
                }
            }
            DynamicImage::ImageLuma8(image::GrayImage::from_raw(w, h, px).ok_or_else(short)?)
        }
        (C::Gray(16), D::U16(v)) => DynamicImage::ImageLuma16(image::ImageBuffer::from_raw(w, h, v).ok_or_else(short)?),
        (C::GrayA(8), D::U8(v)) => DynamicImage::ImageLumaA8(image::ImageBuffer::from_raw(w, h, v).ok_or_else(short)?),
        (C::RGB(8), D::U8(v)) => DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, v).ok_or_else(short)?),
        (C::RGBA(8), D::U8(v)) => DynamicImage::ImageRgba8(image::RgbaImage::from_raw(w, h, v).ok_or_else(short)?),
        (C::RGB(16), D::U16(v)) => DynamicImage::ImageRgb16(image::ImageBuffer::from_raw(w, h, v).ok_or_else(short)?),
        _ => return Err(bad()),
    })
}

fn tiff_dpi(decoder: &mut tiff::decoder::Decoder<Cursor<&[u8]>>) -> Option<u32> {
    use tiff::tags::Tag;
    let x = decoder.get_tag_f64(Tag::XResolution).ok()?;
    // ResolutionUnit: 1 none, 2 inch (default), 3 centimetre.
    let unit = decoder.get_tag_u32(Tag::ResolutionUnit).unwrap_or(2);
    let dpi = match unit {
        2 => x,
        3 => x * 2.54,
        _ => return None,
    };
    credible(dpi.round() as u32)
}

fn credible(dpi: u32) -> Option<u32> {
    CREDIBLE_DPI.contains(&dpi).then_some(dpi)
}

/// The resolution an image file records (PNG `pHYs`, JPEG JFIF density,
/// BMP pixels per metre, TIFF tags), when it records a credible one.
pub fn recorded_dpi(bytes: &[u8], format: ImageFormat) -> Option<u32> {
    let be32 = |at: usize| -> Option<u32> { Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?)) };
    match format {
        ImageFormat::Png => {
            // Chunks after the 8-byte signature: length, type, data, CRC.
            let mut at = 8;
            while at + 8 <= bytes.len() {
                let len = be32(at)? as usize;
                let kind = bytes.get(at + 4..at + 8)?;
                if kind == b"pHYs" {
                    let ppu = be32(at + 8)?;
                    let unit = *bytes.get(at + 16)?;
                    return (unit == 1).then(|| credible((f64::from(ppu) * 0.0254).round() as u32))?;
                }
                if kind == b"IDAT" || kind == b"IEND" {
                    return None;
                }
                at = at.checked_add(12)?.checked_add(len)?;
            }
            None
        }
        ImageFormat::Jpeg => {
            // APP0 "JFIF\0": version (2), units (1), Xdensity (2), Ydensity (2).
            let app0 = bytes.get(2..4)? == [0xff, 0xe0] && bytes.get(6..11)? == b"JFIF\0";
            if !app0 {
                return None;
            }
            let units = *bytes.get(13)?;
            let x = u32::from(u16::from_be_bytes(bytes.get(14..16)?.try_into().ok()?));
            match units {
                1 => credible(x),
                2 => credible((f64::from(x) * 2.54).round() as u32),
                _ => None,
            }
        }
        ImageFormat::Bmp => {
            let ppm = u32::from_le_bytes(bytes.get(38..42)?.try_into().ok()?);
            credible((f64::from(ppm) * 0.0254).round() as u32)
        }
        ImageFormat::Tiff => {
            let mut decoder = tiff_decoder(bytes).ok()?;
            tiff_dpi(&mut decoder)
        }
        ImageFormat::Gif | ImageFormat::Webp | ImageFormat::Pnm | ImageFormat::Jp2 => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raster(w: u32, h: u32) -> Raster {
        Raster {
            width: w,
            height: h,
            data: (0..w * h).map(|i| i as u8).collect(),
            dpi: Some(300),
        }
    }

    #[test]
    fn quarter_turns_compose() {
        let r = raster(3, 2);
        let q = r.rotated(90);
        assert_eq!((q.width, q.height), (2, 3));
        // The top-left pixel goes to the top-right corner.
        assert_eq!(q.data[1], r.data[0]);
        assert_eq!(q.rotated(270), r);
        assert_eq!(r.rotated(180).rotated(180), r);
        assert_eq!(r.rotated(90).rotated(90), r.rotated(180));
        assert_eq!(r.rotated(0), r);
    }

    #[test]
    fn rgb_turns_like_gray() {
        let r = raster(3, 2);
        let rgb: Vec<u8> = r.data.iter().flat_map(|&p| [p, p, p]).collect();
        for d in [90, 180, 270] {
            let turned = rotate_rgb(&rgb, 3, 2, d);
            let gray: Vec<u8> = turned.chunks(3).map(|c| c[0]).collect();
            assert_eq!(gray, r.rotated(d).data, "{d}");
        }
    }

    #[test]
    fn pgm_is_read_and_checked() {
        let mut pgm = b"P5\n# made by a test\n3 2\n255\n".to_vec();
        pgm.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let r = parse_pgm(&pgm, 200).unwrap();
        assert_eq!((r.width, r.height, r.dpi), (3, 2, Some(200)));
        assert_eq!(r.data, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(
            parse_pgm(&pgm[..pgm.len() - 1], 200).unwrap_err().reason,
            FailureReason::Corrupt
        );
        assert_eq!(
            parse_pgm(b"P6\n1 1\n255\n...", 200).unwrap_err().reason,
            FailureReason::Corrupt
        );
        let huge = b"P5\n60000 60000\n255\n";
        assert_eq!(parse_pgm(huge, 300).unwrap_err().reason, FailureReason::TooLarge);
    }

    #[test]
    fn huge_images_are_refused_before_decoding() {
        // A PNG claiming 100000 x 100000 pixels with a few bytes of data:
        // the decoder reads the header up to the first data chunk, and the
        // size is refused there, before anything is allocated for pixels.
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
        let chunk = |png: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]| {
            png.extend_from_slice(&(body.len() as u32).to_be_bytes());
            png.extend_from_slice(kind);
            png.extend_from_slice(body);
            let crc = crc32_update(crc32(kind), body);
            png.extend_from_slice(&(!crc).to_be_bytes());
        };
        chunk(&mut png, b"IHDR", &ihdr);
        // An empty zlib stream, then the end.
        chunk(&mut png, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        chunk(&mut png, b"IEND", &[]);
        let err = decode_image(&png, ImageFormat::Png, false).unwrap_err();
        assert_eq!(err.reason, FailureReason::TooLarge, "{err}");
    }

    fn crc32(data: &[u8]) -> u32 {
        crc32_update(0xffff_ffff, data)
    }

    fn crc32_update(mut crc: u32, data: &[u8]) -> u32 {
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    #[test]
    fn png_and_jpeg_resolutions() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&9u32.to_be_bytes());
        png.extend_from_slice(b"pHYs");
        png.extend_from_slice(&11811u32.to_be_bytes()); // 300 dpi in pixels per metre
        png.extend_from_slice(&11811u32.to_be_bytes());
        png.push(1);
        png.extend_from_slice(&[0; 4]);
        assert_eq!(recorded_dpi(&png, ImageFormat::Png), Some(300));
        let jfif = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x02\x01\x00\xc8\x00\xc8";
        assert_eq!(recorded_dpi(jfif, ImageFormat::Jpeg), Some(200));
        let no_units = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x02\x00\x00\x01\x00\x01";
        assert_eq!(recorded_dpi(no_units, ImageFormat::Jpeg), None);
    }
}
