//! Page images as image XObjects: JPEG passed through (after checking its
//! header agrees with what the caller said), raw gray and RGB samples
//! Flate-compressed.

use std::borrow::Cow;

use pdf_writer::{Chunk, Filter, Name, Ref};

use super::deflate::deflate;
use super::{MAX_IMAGE_SIDE, PageImage};
use crate::DocError;

/// An image ready to write.
#[derive(Debug)]
pub(crate) struct EncodedImage<'a> {
    pub(crate) width: u32,
    pub(crate) height: u32,
    color_space: &'static [u8],
    filter: Filter,
    /// Adobe CMYK JPEGs store inverted samples.
    invert: bool,
    data: Cow<'a, [u8]>,
}

/// Checks an image's size and samples without encoding it.
pub(crate) fn check(image: &PageImage<'_>) -> Result<(), DocError> {
    let (width, height) = image.size();
    if width == 0 || height == 0 {
        return Err(DocError::corrupt("image has no pixels"));
    }
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(DocError::too_large(format!(
            "image of {width}x{height} pixels exceeds {MAX_IMAGE_SIDE} pixels a side"
        )));
    }
    match *image {
        PageImage::Jpeg {
            data,
            width,
            height,
            components,
        } => {
            let header = probe_jpeg(data)?;
            if header.width != width || header.height != height || header.components != components {
                return Err(DocError::corrupt(
                    "jpeg header disagrees with the given size or components",
                ));
            }
            Ok(())
        }
        PageImage::Gray8 { data, .. } => check_len(data, width, height, 1),
        PageImage::Rgb8 { data, .. } => check_len(data, width, height, 3),
    }
}

fn check_len(data: &[u8], width: u32, height: u32, channels: u64) -> Result<(), DocError> {
    let expected = u64::from(width) * u64::from(height) * channels;
    if data.len() as u64 != expected {
        return Err(DocError::corrupt(format!(
            "image data has {} bytes, {width}x{height} needs {expected}",
            data.len()
        )));
    }
    Ok(())
}

/// Checks and encodes an image.
pub(crate) fn encode<'a>(image: &PageImage<'a>) -> Result<EncodedImage<'a>, DocError> {
    check(image)?;
    let (width, height) = image.size();
    let encoded = match *image {
        PageImage::Jpeg { data, components, .. } => {
            let header = probe_jpeg(data)?;
            EncodedImage {
                width,
                height,
                color_space: match components {
                    1 => b"DeviceGray",
                    3 => b"DeviceRGB",
                    _ => b"DeviceCMYK",
                },
                filter: Filter::DctDecode,
                invert: components == 4 && header.adobe,
                data: Cow::Borrowed(data),
            }
        }
        PageImage::Gray8 { data, .. } => EncodedImage {
            width,
            height,
            color_space: b"DeviceGray",
            filter: Filter::FlateDecode,
            invert: false,
            data: Cow::Owned(deflate(data)),
        },
        PageImage::Rgb8 { data, .. } => EncodedImage {
            width,
            height,
            color_space: b"DeviceRGB",
            filter: Filter::FlateDecode,
            invert: false,
            data: Cow::Owned(deflate(data)),
        },
    };
    Ok(encoded)
}

impl EncodedImage<'_> {
    pub(crate) fn write(&self, chunk: &mut Chunk, id: Ref) {
        let mut xobject = chunk.image_xobject(id, &self.data);
        xobject.filter(self.filter);
        // Sides are at most MAX_IMAGE_SIDE, far below i32::MAX.
        xobject.width(self.width as i32);
        xobject.height(self.height as i32);
        xobject.color_space_name(Name(self.color_space));
        xobject.bits_per_component(8);
        if self.invert {
            xobject.decode([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
        }
    }
}

/// What a JPEG's header says.
#[derive(Debug, PartialEq, Eq)]
struct JpegHeader {
    width: u32,
    height: u32,
    components: u8,
    /// An Adobe APP14 segment came before the frame header.
    adobe: bool,
}

/// Reads the frame header (SOFn) of a baseline or progressive 8-bit JPEG.
/// Walks marker segments only, so it reads at most the bytes before the
/// first scan.
fn probe_jpeg(data: &[u8]) -> Result<JpegHeader, DocError> {
    let corrupt = || DocError::corrupt("not a readable jpeg header");
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err(corrupt());
    }
    let mut adobe = false;
    let mut at = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while data.get(at) == Some(&0xFF) && data.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        if data.get(at) != Some(&0xFF) {
            return Err(corrupt());
        }
        let marker = *data.get(at + 1).ok_or_else(corrupt)?;
        at += 2;
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            continue; // no length
        }
        if marker == 0xD9 || marker == 0xDA {
            return Err(corrupt()); // image end or scan before any frame
        }
        let len = data.get(at..at + 2).ok_or_else(corrupt)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let segment = data.get(at + 2..at + len.max(2)).ok_or_else(corrupt)?;
        at += len.max(2);
        match marker {
            0xEE if segment.starts_with(b"Adobe") => adobe = true,
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                if segment.len() < 6 {
                    return Err(corrupt());
                }
                if segment[0] != 8 {
                    return Err(DocError::unsupported("only 8-bit jpeg samples are supported"));
                }
                let height = u32::from(u16::from_be_bytes([segment[1], segment[2]]));
                let width = u32::from(u16::from_be_bytes([segment[3], segment[4]]));
                let components = segment[5];
                if height == 0 {
                    return Err(DocError::unsupported("jpeg height given after the scan"));
                }
                if !matches!(components, 1 | 3 | 4) {
                    return Err(DocError::unsupported("jpeg must have 1, 3 or 4 components"));
                }
                return Ok(JpegHeader {
                    width,
                    height,
                    components,
                    adobe,
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(precision: u8, width: u16, height: u16, components: u8, adobe: bool) -> Vec<u8> {
        let mut data = vec![0xFF, 0xD8];
        data.extend_from_slice(&[0xFF, 0xE0, 0, 4, 0xAA, 0xBB]); // APP0
        if adobe {
            data.extend_from_slice(&[0xFF, 0xEE, 0, 14]);
            data.extend_from_slice(b"Adobe\0\x64\0\0\0\0\x02");
        }
        data.extend_from_slice(&[0xFF, 0xFF, 0xC0, 0, 8 + 3 * components, precision]);
        data.extend_from_slice(&height.to_be_bytes());
        data.extend_from_slice(&width.to_be_bytes());
        data.push(components);
        data.extend(std::iter::repeat_n(0, 3 * components as usize));
        data.extend_from_slice(&[0xFF, 0xDA, 0, 2, 0xFF, 0xD9]);
        data
    }

    #[test]
    fn probe_reads_the_frame_header() {
        let header = probe_jpeg(&jpeg(8, 640, 480, 3, false)).unwrap();
        assert_eq!(
            header,
            JpegHeader {
                width: 640,
                height: 480,
                components: 3,
                adobe: false
            }
        );
        assert!(probe_jpeg(&jpeg(8, 10, 10, 4, true)).unwrap().adobe);
    }

    #[test]
    fn probe_refuses_bad_headers() {
        assert!(probe_jpeg(b"").is_err());
        assert!(probe_jpeg(b"\xFF\xD8").is_err());
        assert!(probe_jpeg(b"\xFF\xD8\xFF\xE0\xFF\xFF").is_err()); // length past the end
        assert!(probe_jpeg(b"\xFF\xD8\xFF\xDA\x00\x02").is_err()); // scan first
        assert!(probe_jpeg(&jpeg(12, 10, 10, 1, false)).is_err());
        assert!(probe_jpeg(&jpeg(8, 10, 0, 1, false)).is_err());
        assert!(probe_jpeg(&jpeg(8, 10, 10, 2, false)).is_err());
        // every truncation fails cleanly
        let whole = jpeg(8, 10, 10, 3, false);
        for end in 0..whole.len() - 6 {
            assert!(probe_jpeg(&whole[..end]).is_err(), "{end}");
        }
    }

    #[test]
    fn declared_size_must_match() {
        let data = jpeg(8, 10, 20, 1, false);
        let ok = PageImage::Jpeg {
            data: &data,
            width: 10,
            height: 20,
            components: 1,
        };
        assert!(check(&ok).is_ok());
        let wrong = PageImage::Jpeg {
            data: &data,
            width: 20,
            height: 10,
            components: 1,
        };
        assert_eq!(check(&wrong).unwrap_err().reason, skep_api::FailureReason::Corrupt);
    }

    #[test]
    fn sample_count_and_size_are_checked() {
        let data = [0u8; 12];
        let gray = |w, h| PageImage::Gray8 {
            data: &data,
            width: w,
            height: h,
        };
        assert!(check(&gray(4, 3)).is_ok());
        assert!(check(&gray(3, 3)).is_err());
        assert!(check(&gray(0, 3)).is_err());
        let rgb = PageImage::Rgb8 {
            data: &data,
            width: 2,
            height: 2,
        };
        assert!(check(&rgb).is_ok());
        let huge = gray(MAX_IMAGE_SIDE + 1, 1);
        assert_eq!(check(&huge).unwrap_err().reason, skep_api::FailureReason::TooLarge);
    }
}
