//! Test-support crate for skep: generates "scanned-looking" pages of known
//! text (with ground truth) for OCR tests and benchmarks, and scores OCR
//! output by character error rate (CER).
//!
//! ```no_run
//! use skep_testkit::{CorpusOptions, PageSize, generate_corpus, load_truth, cer};
//! # fn main() -> anyhow::Result<()> {
//! let opts = CorpusOptions { pages: 3, size: PageSize::Small, ..CorpusOptions::default() };
//! let files = generate_corpus("/tmp/pages".as_ref(), "/tmp/truth".as_ref(), &opts)?;
//! let truth = load_truth("/tmp/truth".as_ref(), &files[0].rel_path)?;
//! assert_eq!(cer(&truth, &truth), 0.0);
//! # Ok(()) }
//! ```

mod cer;
mod corpus;
pub mod documents;
pub mod office;
mod render;
mod text;

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

pub use crate::cer::{cer, levenshtein, normalize_text};
pub use crate::corpus::{MANIFEST_FILE, generate_corpus, read_manifest};
pub use crate::render::{
    DEFAULT_FONT, DPI, FONT_ENV, FontError, encode_image, encode_multipage_tiff, font_path, load_font, render_page,
    try_render_page,
};
pub use crate::text::page_text;

/// Page geometry of generated pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PageSize {
    /// 1240x880 px, 12 lines of 34 px (em) text. Fast to OCR.
    #[default]
    Small,
    /// 2480x3508 px (A4 at 300 dpi), 45 dense lines of 42 px (em) text.
    A4,
}

impl PageSize {
    /// Width and height in pixels.
    pub fn dimensions(self) -> (u32, u32) {
        match self {
            PageSize::Small => (1240, 880),
            PageSize::A4 => (2480, 3508),
        }
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PageSize::Small => "small",
            PageSize::A4 => "a4",
        })
    }
}

impl FromStr for PageSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "small" => Ok(PageSize::Small),
            "a4" => Ok(PageSize::A4),
            other => Err(format!("unknown page size {other:?} (expected small or a4)")),
        }
    }
}

/// File format of a generated page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Png,
    /// Quality 85.
    Jpeg,
    /// 8-bit greyscale (palette) BMP.
    Bmp,
    /// LZW-compressed 8-bit greyscale TIFF.
    Tiff,
}

impl ImageFormat {
    /// File extension used for this format (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Bmp => "bmp",
            ImageFormat::Tiff => "tif",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Bmp => "bmp",
            ImageFormat::Tiff => "tiff",
        })
    }
}

impl FromStr for ImageFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "png" => Ok(ImageFormat::Png),
            "jpeg" | "jpg" => Ok(ImageFormat::Jpeg),
            "bmp" => Ok(ImageFormat::Bmp),
            "tiff" | "tif" => Ok(ImageFormat::Tiff),
            other => Err(format!(
                "unknown image format {other:?} (expected png, jpeg, bmp or tiff)"
            )),
        }
    }
}

/// What [`generate_corpus`] should write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusOptions {
    /// Number of single-page files.
    pub pages: usize,
    /// Master seed; the same options always give the same corpus.
    pub seed: u64,
    pub size: PageSize,
    /// Formats cycled over the pages (page 1 gets `formats[0]`, ...).
    /// Empty means `[Png]`.
    pub formats: Vec<ImageFormat>,
    /// If `Some(n)` (n > 0): also write `multipage.tif` with `n` pages.
    pub multipage_tiff: Option<usize>,
    /// Also write `bad/empty.png`, `bad/corrupt.png` and `bad/fake.jpg`.
    pub bad_files: bool,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        CorpusOptions {
            pages: 30,
            seed: 1,
            size: PageSize::Small,
            formats: vec![ImageFormat::Png],
            multipage_tiff: None,
            bad_files: false,
        }
    }
}

/// One file written by [`generate_corpus`]; `truth_dir/manifest.json` is an
/// array of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratedFile {
    /// Path relative to the pages dir, `/`-separated, e.g. `page-0001.png`
    /// or `sub/page-0005.jpg`.
    pub rel_path: String,
    /// Ground-truth text (lines joined with `\n`; pages of a multi-page file
    /// joined with `"\n\f\n"`). `None` for bad files.
    pub truth: Option<String>,
    /// Number of pages in the file (0 for bad files).
    pub pages: usize,
    /// For bad files, how OCR is expected to fail: `"empty"`, `"corrupt"`
    /// or `"unsupported"`. `None` for good files.
    pub expect_failure: Option<String>,
}

/// Path of the ground-truth file for `rel_path`: `truth_dir/<rel_path>.txt`.
/// The address of a test server named by the environment variable `var`, for
/// a test that needs one. Unset (or blank) outside CI, the test is skipped with
/// a note; under `CI=true` it fails, since CI must run every server test.
/// `how` tells the reader how to start the server.
pub fn server_from_env(var: &str, how: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{var} is not set: CI must run this test against a real server ({how})"
            );
            eprintln!("note: {var} is not set; skipping a test that needs a server ({how})");
            None
        }
    }
}

pub fn truth_path(truth_dir: &Path, rel_path: &str) -> std::path::PathBuf {
    truth_dir.join(format!("{rel_path}.txt"))
}

/// Reads the ground truth written for `rel_path` (`truth_dir/<rel_path>.txt`).
pub fn load_truth(truth_dir: &Path, rel_path: &str) -> anyhow::Result<String> {
    let path = truth_path(truth_dir, rel_path);
    std::fs::read_to_string(&path).with_context(|| format!("reading ground truth {}", path.display()))
}

/// Derives an independent seed from `seed` and a stream id (splitmix64).
pub(crate) fn mix_seed(seed: u64, stream: u64) -> u64 {
    fn splitmix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    splitmix(seed ^ splitmix(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        assert_eq!("a4".parse::<PageSize>(), Ok(PageSize::A4));
        assert_eq!("Small".parse::<PageSize>(), Ok(PageSize::Small));
        assert!("letter".parse::<PageSize>().is_err());
        assert_eq!("jpg".parse::<ImageFormat>(), Ok(ImageFormat::Jpeg));
        assert_eq!("TIFF".parse::<ImageFormat>(), Ok(ImageFormat::Tiff));
        assert!("gif".parse::<ImageFormat>().is_err());
    }
}
