//! The page renderer (text → "scanned-looking" greyscale image) and the
//! image encoders.

use std::io::Cursor;
use std::path::PathBuf;

use ab_glyph::{Font, FontVec, GlyphId, PxScale, ScaleFont, point};
use anyhow::Context as _;
use image::{ExtendedColorType, GrayImage, ImageEncoder as _};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{ImageFormat, PageSize, mix_seed};

/// Environment variable naming the TrueType/OpenType font to render with.
pub const FONT_ENV: &str = "SKEP_TESTKIT_FONT";
/// Font used when [`FONT_ENV`] is not set (Debian package `fonts-dejavu-core`).
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// Resolution written into the image metadata (PNG, JPEG, TIFF).
pub const DPI: u32 = 300;

/// The font could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FontError {
    #[error(
        "font {path} cannot be read: install the Debian package fonts-dejavu-core \
         (apt-get install fonts-dejavu-core) or set SKEP_TESTKIT_FONT to a TrueType font file"
    )]
    Missing {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("font {path} is not a usable TrueType/OpenType font: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// The font file that will be used: `$SKEP_TESTKIT_FONT` if set and
/// non-empty, else [`DEFAULT_FONT`].
pub fn font_path() -> PathBuf {
    match std::env::var_os(FONT_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_FONT),
    }
}

/// Loads the font named by [`font_path`].
pub fn load_font() -> Result<FontVec, FontError> {
    let path = font_path();
    let bytes = std::fs::read(&path).map_err(|source| FontError::Missing {
        path: path.clone(),
        source,
    })?;
    let font = FontVec::try_from_vec(bytes).map_err(|e| FontError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if font.glyph_id('a').0 == 0 || font.glyph_id('0').0 == 0 {
        return Err(FontError::Invalid {
            path,
            reason: "it has no glyphs for basic Latin letters and digits".to_string(),
        });
    }
    Ok(font)
}

/// Renders `text_lines` as a scanned-looking greyscale page.
///
/// # Panics
/// If the font cannot be loaded (see [`try_render_page`] for the fallible
/// version; the message names the package to install).
pub fn render_page(text_lines: &[String], size: PageSize, seed: u64) -> GrayImage {
    match try_render_page(text_lines, size, seed) {
        Ok(img) => img,
        Err(e) => panic!("skep-testkit cannot render a page: {e}"),
    }
}

/// Like [`render_page`] but returns an error if the font cannot be loaded.
pub fn try_render_page(text_lines: &[String], size: PageSize, seed: u64) -> Result<GrayImage, FontError> {
    let font = load_font()?;
    Ok(render_with_font(&font, text_lines, size, seed))
}

/// Fixed geometry of a page size.
struct Geometry {
    width: usize,
    height: usize,
    /// Font size in pixels per em.
    em_px: f32,
    margin_left: f32,
    margin_top: f32,
    line_pitch: f32,
}

fn geometry(size: PageSize) -> Geometry {
    let (w, h) = size.dimensions();
    let (width, height) = (w as usize, h as usize);
    match size {
        PageSize::Small => Geometry {
            width,
            height,
            em_px: 34.0,
            margin_left: 90.0,
            margin_top: 80.0,
            line_pitch: 58.0,
        },
        PageSize::A4 => Geometry {
            width,
            height,
            em_px: 42.0,
            margin_left: 220.0,
            margin_top: 220.0,
            line_pitch: 68.0,
        },
    }
}

fn line_width<F: Font>(font: &F, scale: PxScale, line: &str) -> f32 {
    let sf = font.as_scaled(scale);
    let mut width = 0.0;
    let mut prev: Option<GlyphId> = None;
    for c in line.chars() {
        let id = sf.glyph_id(c);
        if let Some(p) = prev {
            width += sf.kern(p, id);
        }
        width += sf.h_advance(id);
        prev = Some(id);
    }
    width
}

/// Font scale and line pitch for `lines` on a page of geometry `g`.
struct Fit {
    scale: PxScale,
    pitch: f32,
    /// Whether the nominal font size had to be reduced to fit.
    #[cfg_attr(not(test), allow(dead_code))]
    shrunk: bool,
}

/// The nominal font size and pitch, reduced if the lines would not fit the
/// page (too many lines, or a line wider than the page minus margins).
fn fit<F: Font>(font: &F, lines: &[String], g: &Geometry) -> Fit {
    let mut em = g.em_px;
    let mut pitch = g.line_pitch;
    let mut shrunk = false;
    let usable_h = g.height as f32 - 2.0 * g.margin_top;
    if !lines.is_empty() && lines.len() as f32 * pitch > usable_h {
        pitch = usable_h / lines.len() as f32;
        em = em.min(pitch / 1.4);
        shrunk = true;
    }
    let upem = font.units_per_em().unwrap_or(1000.0);
    let mut scale = PxScale::from(em * font.height_unscaled() / upem);
    let usable_w = g.width as f32 - 2.0 * g.margin_left;
    let widest = lines.iter().map(|l| line_width(font, scale, l)).fold(0.0f32, f32::max);
    if widest > usable_w {
        let k = usable_w / widest * 0.99;
        scale = PxScale::from(scale.y * k);
        shrunk = true;
    }
    Fit { scale, pitch, shrunk }
}

/// Renders with an already loaded font. Deterministic in all arguments.
pub(crate) fn render_with_font<F: Font>(font: &F, text_lines: &[String], size: PageSize, seed: u64) -> GrayImage {
    let g = geometry(size);
    let (w, h) = (g.width, g.height);
    let mut rng = StdRng::seed_from_u64(mix_seed(seed, 0x7265_6e64_6572));

    // Ink coverage (0 = paper, 1 = full ink).
    let mut cov = vec![0f32; w * h];

    let Fit { scale, pitch, .. } = fit(font, text_lines, &g);
    let sf = font.as_scaled(scale);

    for (i, line) in text_lines.iter().enumerate() {
        let jitter_x: f32 = rng.random_range(-3.0..3.0);
        let jitter_y: f32 = rng.random_range(-1.0..1.0);
        let baseline = g.margin_top + sf.ascent() + i as f32 * pitch + jitter_y;
        let mut x = g.margin_left + jitter_x;
        let mut prev: Option<GlyphId> = None;
        for c in line.chars() {
            let id = sf.glyph_id(c);
            if let Some(p) = prev {
                x += sf.kern(p, id);
            }
            let glyph = id.with_scale_and_position(scale, point(x, baseline));
            if let Some(outlined) = font.outline_glyph(glyph) {
                let b = outlined.px_bounds();
                let (ox, oy) = (b.min.x as i64, b.min.y as i64);
                outlined.draw(|gx, gy, c| {
                    let px = ox + i64::from(gx);
                    let py = oy + i64::from(gy);
                    if px >= 0 && py >= 0 && (px as usize) < w && (py as usize) < h {
                        let v = &mut cov[py as usize * w + px as usize];
                        *v = (*v + c).min(1.0);
                    }
                });
            }
            x += sf.h_advance(id);
            prev = Some(id);
        }
    }

    // A few speckles (dust, toner dots), anywhere on the page.
    let area_factor = (w * h) as f32 / (1240.0 * 880.0);
    let speckles = (rng.random_range(6.0..16.0) * area_factor) as usize;
    for _ in 0..speckles {
        let cx: f32 = rng.random_range(0.0..w as f32);
        let cy: f32 = rng.random_range(0.0..h as f32);
        let r: f32 = rng.random_range(0.6..1.8);
        let strength: f32 = rng.random_range(0.4..0.95);
        draw_dot(&mut cov, w, h, cx, cy, r, strength);
    }

    // Slight skew, as if the sheet was not perfectly aligned on the glass.
    let angle_deg: f32 = rng.random_range(-0.4..0.4);
    let cov = rotate(&cov, w, h, angle_deg.to_radians());
    let cov = blur3(&cov, w, h);

    // Paper and ink tones.
    let paper: f32 = rng.random_range(226.0..243.0);
    let ink: f32 = rng.random_range(30.0..62.0);
    let grad_x: f32 = rng.random_range(-8.0..8.0);
    let grad_y: f32 = rng.random_range(-8.0..8.0);
    let noise_amp: f32 = rng.random_range(3.0..6.0);

    // Per-pixel noise from a cheap generator (xorshift64*), seeded from the
    // page's RNG: StdRng per pixel is needlessly slow, especially unoptimised.
    let mut state: u64 = rng.random::<u64>() | 1;
    let mut uniform = move || -> f32 {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40; // 24 bits
        bits as f32 / (1u64 << 24) as f32
    };

    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let fy = y as f32 / h as f32 - 0.5;
        for x in 0..w {
            let fx = x as f32 / w as f32 - 0.5;
            let bg = paper + grad_x * fx + grad_y * fy;
            let c = cov[y * w + x];
            let noise = (uniform() + uniform() - 1.0) * noise_amp;
            let v = bg + (ink - bg) * c + noise;
            out.push(v.round().clamp(0.0, 255.0) as u8);
        }
    }
    GrayImage::from_raw(w as u32, h as u32, out).expect("buffer has exactly width*height bytes by construction")
}

fn draw_dot(cov: &mut [f32], w: usize, h: usize, cx: f32, cy: f32, r: f32, strength: f32) {
    let x0 = (cx - r - 1.0).floor().max(0.0) as usize;
    let y0 = (cy - r - 1.0).floor().max(0.0) as usize;
    let x1 = ((cx + r + 1.0).ceil() as usize).min(w - 1);
    let y1 = ((cy + r + 1.0).ceil() as usize).min(h - 1);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let d = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
            let a = (r + 0.5 - d).clamp(0.0, 1.0) * strength;
            let v = &mut cov[y * w + x];
            *v = v.max(a);
        }
    }
}

/// Rotates `src` by `angle` radians about the centre (inverse mapping,
/// bilinear sampling, zero outside).
fn rotate(src: &[f32], w: usize, h: usize, angle: f32) -> Vec<f32> {
    let (s, c) = angle.sin_cos();
    let cx = (w as f32 - 1.0) / 2.0;
    let cy = (h as f32 - 1.0) / 2.0;
    let sample = |x: isize, y: isize| -> f32 {
        if x < 0 || y < 0 || x as usize >= w || y as usize >= h {
            0.0
        } else {
            src[y as usize * w + x as usize]
        }
    };
    let mut out = vec![0f32; w * h];
    for y in 0..h {
        let dy = y as f32 - cy;
        for x in 0..w {
            let dx = x as f32 - cx;
            let sx = c * dx + s * dy + cx;
            let sy = -s * dx + c * dy + cy;
            let x0 = sx.floor();
            let y0 = sy.floor();
            let (tx, ty) = (sx - x0, sy - y0);
            let (xi, yi) = (x0 as isize, y0 as isize);
            let top = sample(xi, yi) * (1.0 - tx) + sample(xi + 1, yi) * tx;
            let bottom = sample(xi, yi + 1) * (1.0 - tx) + sample(xi + 1, yi + 1) * tx;
            out[y * w + x] = top * (1.0 - ty) + bottom * ty;
        }
    }
    out
}

/// Mild separable [1 2 1]/4 blur (edges clamped).
fn blur3(src: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut tmp = vec![0f32; w * h];
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for x in 0..w {
            let l = row[x.saturating_sub(1)];
            let r = row[(x + 1).min(w - 1)];
            tmp[y * w + x] = 0.25 * l + 0.5 * row[x] + 0.25 * r;
        }
    }
    let mut out = vec![0f32; w * h];
    for y in 0..h {
        let up = y.saturating_sub(1) * w;
        let down = (y + 1).min(h - 1) * w;
        let mid = y * w;
        for x in 0..w {
            out[mid + x] = 0.25 * tmp[up + x] + 0.5 * tmp[mid + x] + 0.25 * tmp[down + x];
        }
    }
    out
}

/// Encodes one page in `format` (PNG/JPEG/TIFF carry 300 dpi metadata).
pub fn encode_image(img: &GrayImage, format: ImageFormat) -> anyhow::Result<Vec<u8>> {
    let (w, h) = img.dimensions();
    let mut buf = Vec::new();
    match format {
        ImageFormat::Png => {
            image::codecs::png::PngEncoder::new(&mut buf)
                .write_image(img.as_raw(), w, h, ExtendedColorType::L8)
                .context("encoding PNG")?;
            buf = png_with_dpi(buf, DPI);
        }
        ImageFormat::Jpeg => {
            let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 85);
            enc.set_pixel_density(image::codecs::jpeg::PixelDensity::dpi(DPI as u16));
            enc.encode(img.as_raw(), w, h, ExtendedColorType::L8)
                .context("encoding JPEG")?;
        }
        ImageFormat::Bmp => {
            image::codecs::bmp::BmpEncoder::new(&mut buf)
                .encode(img.as_raw(), w, h, ExtendedColorType::L8)
                .context("encoding BMP")?;
        }
        ImageFormat::Tiff => buf = encode_multipage_tiff(std::slice::from_ref(img))?,
    }
    Ok(buf)
}

/// Encodes one or more pages as a (multi-page) LZW-compressed 8-bit
/// greyscale TIFF at 300 dpi.
pub fn encode_multipage_tiff(pages: &[GrayImage]) -> anyhow::Result<Vec<u8>> {
    use tiff::encoder::{Compression, Predictor, Rational, TiffEncoder, colortype};
    use tiff::tags::ResolutionUnit;

    let mut cursor = Cursor::new(Vec::new());
    {
        let mut enc = TiffEncoder::new(&mut cursor)
            .context("starting TIFF")?
            .with_compression(Compression::Lzw)
            .with_predictor(Predictor::Horizontal);
        for (i, page) in pages.iter().enumerate() {
            let (w, h) = page.dimensions();
            let mut img = enc
                .new_image::<colortype::Gray8>(w, h)
                .with_context(|| format!("starting TIFF page {}", i + 1))?;
            img.resolution(ResolutionUnit::Inch, Rational { n: DPI, d: 1 });
            img.write_data(page.as_raw())
                .with_context(|| format!("writing TIFF page {}", i + 1))?;
        }
    }
    Ok(cursor.into_inner())
}

/// Inserts a `pHYs` chunk (pixels per metre) right after the IHDR chunk.
fn png_with_dpi(mut png: Vec<u8>, dpi: u32) -> Vec<u8> {
    const IHDR_END: usize = 8 + 4 + 4 + 13 + 4;
    if png.len() < IHDR_END || &png[12..16] != b"IHDR" {
        return png;
    }
    let ppm = (f64::from(dpi) / 0.0254).round() as u32;
    let mut body = Vec::with_capacity(13);
    body.extend_from_slice(b"pHYs");
    body.extend_from_slice(&ppm.to_be_bytes());
    body.extend_from_slice(&ppm.to_be_bytes());
    body.push(1); // unit: metre
    let mut chunk = Vec::with_capacity(21);
    chunk.extend_from_slice(&9u32.to_be_bytes());
    chunk.extend_from_slice(&body);
    chunk.extend_from_slice(&crc32(&body).to_be_bytes());
    png.splice(IHDR_END..IHDR_END, chunk);
    png
}

/// CRC-32 (IEEE, as used by PNG).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_text_fits_without_shrinking() -> anyhow::Result<()> {
        let font = load_font()?;
        for size in [PageSize::Small, PageSize::A4] {
            let g = geometry(size);
            for seed in 0..50 {
                let lines = crate::page_text(seed, size);
                assert!(!fit(&font, &lines, &g).shrunk, "seed {seed} {size}");
            }
            let too_wide = vec!["W".repeat(200)];
            assert!(fit(&font, &too_wide, &g).shrunk);
        }
        Ok(())
    }

    #[test]
    fn render_odd_input_does_not_panic() -> anyhow::Result<()> {
        let font = load_font()?;
        let lines: Vec<String> = (0..100).map(|i| format!("line {i} \u{e9}\t~")).collect();
        let img = render_with_font(&font, &lines, PageSize::Small, 1);
        assert_eq!(img.dimensions(), PageSize::Small.dimensions());
        let img = render_with_font(&font, &[], PageSize::Small, 1);
        assert_eq!(img.dimensions(), PageSize::Small.dimensions());
        Ok(())
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn rotate_zero_is_identity() {
        let src: Vec<f32> = (0..20).map(|i| i as f32).collect();
        let out = rotate(&src, 5, 4, 0.0);
        assert_eq!(src, out);
    }

    #[test]
    fn encodings_decode_back() -> anyhow::Result<()> {
        let mut img = GrayImage::new(40, 30);
        for (x, y, p) in img.enumerate_pixels_mut() {
            p.0[0] = ((x * 5 + y * 3) % 256) as u8;
        }
        for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Bmp, ImageFormat::Tiff] {
            let bytes = encode_image(&img, format)?;
            let decoded = image::load_from_memory(&bytes)
                .with_context(|| format!("decoding {format}"))?
                .to_luma8();
            assert_eq!(decoded.dimensions(), (40, 30), "{format}");
            if format != ImageFormat::Jpeg {
                assert_eq!(decoded, img, "{format} is lossless");
            }
        }
        let multi = encode_multipage_tiff(&[img.clone(), img.clone(), img])?;
        let mut dec = tiff::decoder::Decoder::new(Cursor::new(multi))?;
        let mut n = 1;
        while dec.more_images() {
            dec.next_image()?;
            n += 1;
        }
        assert_eq!(n, 3);
        Ok(())
    }
}
