//! Broken and hostile documents: encrypted, truncated, empty, not a PDF, and a
//! page too large to rasterise.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::pdf::{GrayImageStream, PdfPage, write_pdf};
use super::tool::run_tool;

/// User (open) password of `bad/encrypted.pdf`.
pub const ENCRYPTED_USER_PASSWORD: &str = "skep-user";
/// Owner (permissions) password of `bad/encrypted.pdf`.
pub const ENCRYPTED_OWNER_PASSWORD: &str = "skep-owner";
/// Side of the square page of `bad/huge-page.pdf`, in points: 200 inches,
/// 60,000 px at 300 dpi (and the largest page PDF readers accept).
pub const HUGE_PAGE_POINTS: f32 = 14_400.0;

/// Longest a qpdf run may take on a small file.
const QPDF_TIMEOUT: Duration = Duration::from_secs(60);
const QPDF_HINT: &str = "install the Debian package qpdf";
/// Side of the small image stretched over the huge page, in pixels.
const HUGE_PAGE_IMAGE_PX: u32 = 16;

/// Encrypts `plain` (a valid PDF) with AES-256 and a user password, by
/// running `qpdf --encrypt USER OWNER 256 -- in out`, and writes it to `out`.
/// The plain copy lives next to `out` only while qpdf runs.
///
/// Not byte-for-byte deterministic: qpdf draws the file key at random.
pub fn write_encrypted(plain: &[u8], out: &Path) -> anyhow::Result<()> {
    let tmp = sibling(out, ".plain.tmp");
    std::fs::write(&tmp, plain).with_context(|| format!("writing {}", tmp.display()))?;
    let result = run_tool(
        "qpdf",
        &[
            "--encrypt".as_ref(),
            ENCRYPTED_USER_PASSWORD.as_ref(),
            ENCRYPTED_OWNER_PASSWORD.as_ref(),
            "256".as_ref(),
            "--".as_ref(),
            tmp.as_os_str(),
            out.as_os_str(),
        ],
        QPDF_TIMEOUT,
        QPDF_HINT,
    );
    let removed = std::fs::remove_file(&tmp);
    let output = result.context("encrypting a pdf with qpdf")?;
    if !output.status.success() {
        bail!(
            "qpdf --encrypt failed ({}): {}",
            output.status,
            output.stderr_text().trim()
        );
    }
    removed.with_context(|| format!("removing {}", tmp.display()))
}

/// The first third of `valid` (a PDF from [`write_pdf`], whose catalog is at
/// the end, so what is left cannot be repaired).
pub fn truncated(valid: &[u8]) -> Vec<u8> {
    valid[..valid.len() / 3].to_vec()
}

/// Text bytes with a `.pdf` name: not a PDF at all.
pub const NOT_A_PDF: &str = "This is not a PDF document.\n\
    It is a plain text file with a .pdf extension, written by skep-testkit\n\
    to check that unsupported content is reported as a failure.\n";

/// A valid one-page PDF whose page is [`HUGE_PAGE_POINTS`] square and shows a
/// small image stretched over it (no text layer, so a reader must rasterise).
pub fn huge_page_pdf(id: u64) -> anyhow::Result<Vec<u8>> {
    let side = HUGE_PAGE_IMAGE_PX;
    let samples: Vec<u8> = (0..side * side)
        .map(|i| {
            if (i / side + i % side).is_multiple_of(2) {
                235
            } else {
                40
            }
        })
        .collect();
    let image = GrayImageStream::flate(&samples, side, side)?;
    write_pdf(
        &[PdfPage::Image {
            image: &image,
            size: (HUGE_PAGE_POINTS, HUGE_PAGE_POINTS),
        }],
        id,
    )
}

/// `dir/name<suffix>` for `dir/name`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_qpdf_input_is_an_error_and_leaves_no_temp_file() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let out = tmp.path().join("enc.pdf");
        // Not a PDF: qpdf refuses it, and the error says qpdf failed.
        let err = write_encrypted(b"not a pdf", &out).expect_err("qpdf cannot encrypt text");
        assert!(err.to_string().contains("qpdf"), "{err:#}");
        assert!(!sibling(&out, ".plain.tmp").exists());
        Ok(())
    }

    #[test]
    fn truncation_keeps_the_first_third() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(truncated(&bytes), bytes[..85]);
    }
}
