//! The generated documents, checked with the real tools: qpdf, poppler
//! (`pdfinfo`, `pdftotext`, `pdftoppm`) and the `tesseract` CLI.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::tool::{ToolOutput, run_tool};
use super::*;
use crate::{cer, load_truth, normalize_text, read_manifest};

const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
const BIG_PAGES: usize = 5;

fn tool(program: &str, args: &[&str]) -> anyhow::Result<ToolOutput> {
    Ok(run_tool(
        program,
        args,
        TOOL_TIMEOUT,
        "install poppler-utils, qpdf and tesseract-ocr",
    )?)
}

/// Runs a tool that must succeed; returns its stdout as text.
fn ok(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = tool(program, args)?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        out.stderr_text()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn s(path: &Path) -> &str {
    path.to_str().expect("temp paths are utf-8")
}

/// `pdfinfo` fields (`Pages`, `Encrypted`, `Page    1 size`, ...).
fn pdfinfo(path: &Path, extra: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut args = extra.to_vec();
    args.push(s(path));
    let text = ok("pdfinfo", &args)?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// The size of every page, as pdfinfo prints it (`"297.6 x 211.2 pts"`).
fn page_sizes(path: &Path, pages: usize) -> anyhow::Result<Vec<String>> {
    let info = pdfinfo(path, &["-f", "1", "-l", &pages.to_string()])?;
    (1..=pages)
        .map(|n| {
            info.get(&format!("Page {n:>4} size"))
                .cloned()
                .ok_or_else(|| anyhow!("no size for page {n}"))
        })
        .collect()
}

/// `pdftotext` output, split into pages.
fn pdftotext_pages(path: &Path, extra: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut args = extra.to_vec();
    args.extend([s(path), "-"]);
    let text = ok("pdftotext", &args)?;
    // pdftotext ends every page with a form feed.
    let mut pages: Vec<String> = text.split('\u{c}').map(str::to_string).collect();
    anyhow::ensure!(
        pages.pop().is_some_and(|rest| rest.trim().is_empty()),
        "text after the last page"
    );
    Ok(pages)
}

fn truth_pages(file: &GeneratedFile) -> Vec<&str> {
    file.truth
        .as_deref()
        .map(|t| t.split(PAGE_SEPARATOR).collect())
        .unwrap_or_default()
}

fn entry<'a>(files: &'a [GeneratedFile], rel_path: &str) -> &'a GeneratedFile {
    files
        .iter()
        .find(|f| f.rel_path == rel_path)
        .unwrap_or_else(|| panic!("{rel_path} is not in the manifest"))
}

fn tiff_pages(bytes: &[u8]) -> anyhow::Result<Vec<(u32, u32)>> {
    let mut dec = tiff::decoder::Decoder::new(std::io::Cursor::new(bytes))?;
    let mut dims = vec![dec.dimensions()?];
    while dec.more_images() {
        dec.next_image()?;
        dims.push(dec.dimensions()?);
    }
    Ok(dims)
}

/// Orientation that Tesseract's OSD finds: the `Rotate:` value, the clockwise
/// turn that makes the page upright.
fn osd_rotate(path: &Path) -> anyhow::Result<u32> {
    let out = tool("tesseract", &[s(path), "-", "--psm", "0"])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &out.stderr_text();
    text.lines()
        .find_map(|l| l.strip_prefix("Rotate:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("no orientation from tesseract: {text}"))
}

#[test]
fn generated_documents_are_what_the_manifest_says() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (pages_dir, truth_dir) = (tmp.path().join("pages"), tmp.path().join("truth"));
    let opts = DocOptions {
        seed: 7,
        size: PageSize::Small,
        big_pdf_pages: Some(BIG_PAGES),
    };
    let start = Instant::now();
    let files = generate_documents(&pages_dir, &truth_dir, &opts)?;
    eprintln!(
        "generated {} documents in {:.2} s",
        files.len(),
        start.elapsed().as_secs_f64()
    );
    write_manifest(&truth_dir, &files)?;
    assert_eq!(read_manifest(&truth_dir)?, files);

    let names: Vec<&str> = files.iter().map(|f| f.rel_path.as_str()).collect();
    assert_eq!(
        names,
        [
            "docs/born-digital.pdf",
            "docs/scanned.pdf",
            "docs/mixed.pdf",
            "docs/sideways.pdf",
            "docs/sideways.png",
            "docs/upside-down.png",
            "docs/multipage.tif",
            "docs/big.pdf",
            "docs/bad/encrypted.pdf",
            "docs/bad/truncated.pdf",
            "docs/bad/empty.pdf",
            "docs/bad/not-a-pdf.pdf",
            "docs/bad/huge-page.pdf",
        ]
    );
    let pages: Vec<usize> = files.iter().map(|f| f.pages).collect();
    assert_eq!(pages, [3, 3, 4, 1, 1, 1, 3, BIG_PAGES, 0, 0, 0, 0, 0]);

    for f in &files {
        let path = pages_dir.join(&f.rel_path);
        assert!(path.is_file(), "{} missing", f.rel_path);
        match &f.truth {
            Some(truth) => {
                assert!(f.expect_failure.is_none());
                assert_eq!(&load_truth(&truth_dir, &f.rel_path)?, truth);
                assert_eq!(truth_pages(f).len(), f.pages, "{}", f.rel_path);
                assert!(truth_pages(f).iter().all(|p| p.lines().count() == 12), "{}", f.rel_path);
                if f.rel_path.ends_with(".pdf") {
                    ok("qpdf", &["--check", s(&path)])?;
                    let info = pdfinfo(&path, &[])?;
                    assert_eq!(info["Pages"], f.pages.to_string(), "{}", f.rel_path);
                    assert_eq!(info["Encrypted"], "no", "{}", f.rel_path);
                }
            }
            None => {
                assert_eq!(f.pages, 0);
                assert!(!truth_path(&truth_dir, &f.rel_path).exists(), "{}", f.rel_path);
            }
        }
    }
    let docs = pages_dir.join("docs");

    // Born-digital: the text layer is the truth, page by page, with no OCR.
    let born = entry(&files, "docs/born-digital.pdf");
    let text = pdftotext_pages(&docs.join("born-digital.pdf"), &[])?;
    assert_eq!(text.len(), 3);
    for (got, want) in text.iter().zip(truth_pages(born)) {
        assert_eq!(normalize_text(got), normalize_text(want));
        assert_eq!(cer(want, got), 0.0);
    }
    assert_eq!(
        page_sizes(&docs.join("born-digital.pdf"), 3)?,
        ["595 x 842 pts (A4)"; 3]
    );

    // Scanned: no text at all; 1240x880 px at 300 dpi is 297.6 x 211.2 pt.
    let text = pdftotext_pages(&docs.join("scanned.pdf"), &[])?;
    assert_eq!(text.len(), 3);
    assert!(text.iter().all(|p| p.trim().is_empty()), "{text:?}");
    assert_eq!(page_sizes(&docs.join("scanned.pdf"), 3)?, ["297.6 x 211.2 pts"; 3]);

    // Mixed: text, image, text, image.
    let mixed = entry(&files, "docs/mixed.pdf");
    let text = pdftotext_pages(&docs.join("mixed.pdf"), &[])?;
    let want = truth_pages(mixed);
    assert_eq!(text.len(), 4);
    assert_eq!(normalize_text(&text[0]), normalize_text(want[0]));
    assert_eq!(normalize_text(&text[2]), normalize_text(want[2]));
    assert!(text[1].trim().is_empty() && text[3].trim().is_empty(), "{text:?}");
    assert_ne!(want[1], want[3]);
    assert_eq!(
        page_sizes(&docs.join("mixed.pdf"), 4)?,
        [
            "595 x 842 pts (A4)",
            "297.6 x 211.2 pts",
            "595 x 842 pts (A4)",
            "297.6 x 211.2 pts"
        ]
    );

    // Sideways: a portrait page holding the landscape scan turned a quarter,
    // with no /Rotate.
    let sideways = docs.join("sideways.pdf");
    assert_eq!(page_sizes(&sideways, 1)?, ["211.2 x 297.6 pts"]);
    assert_eq!(pdfinfo(&sideways, &[])?["Page rot"], "0");
    let png = image::open(docs.join("sideways.png"))?;
    assert_eq!((png.width(), png.height()), (880, 1240));
    assert_eq!(osd_rotate(&docs.join("sideways.png"))?, 270);
    let png = image::open(docs.join("upside-down.png"))?;
    assert_eq!((png.width(), png.height()), (1240, 880));
    assert_eq!(osd_rotate(&docs.join("upside-down.png"))?, 180);

    assert_eq!(
        tiff_pages(&std::fs::read(docs.join("multipage.tif"))?)?,
        [(1240, 880); 3]
    );
    assert_eq!(
        page_sizes(&docs.join("big.pdf"), BIG_PAGES)?,
        ["297.6 x 211.2 pts"; BIG_PAGES]
    );
    let big = truth_pages(entry(&files, "docs/big.pdf"));
    assert!(
        big.windows(2).all(|w| w[0] != w[1]),
        "every big.pdf page has its own text"
    );

    check_broken(&docs, &std::fs::read(docs.join("scanned.pdf"))?, opts.seed)
}

fn check_broken(docs: &Path, scanned: &[u8], seed: u64) -> anyhow::Result<()> {
    let bad = docs.join("bad");

    // Encrypted: qpdf and poppler agree, and the password opens a real text PDF.
    let encrypted = bad.join("encrypted.pdf");
    assert!(tool("qpdf", &["--is-encrypted", s(&encrypted)])?.status.success());
    assert!(tool("qpdf", &["--requires-password", s(&encrypted)])?.status.success());
    let locked = tool("pdfinfo", &[s(&encrypted)])?;
    assert!(!locked.status.success());
    assert!(
        locked.stderr_text().contains("Incorrect password"),
        "{}",
        locked.stderr_text()
    );
    let info = pdfinfo(&encrypted, &["-upw", ENCRYPTED_USER_PASSWORD])?;
    assert!(info["Encrypted"].starts_with("yes"), "{info:?}");
    assert!(info["Encrypted"].contains("AES-256"), "{info:?}");
    let text = pdftotext_pages(&encrypted, &["-upw", ENCRYPTED_USER_PASSWORD])?;
    let want = text_page_lines(mix_seed(seed, ENCRYPTED_STREAM)).join("\n");
    assert_eq!(text.len(), 1);
    assert_eq!(normalize_text(&text[0]), normalize_text(&want));

    // Truncated: the first third of scanned.pdf, beyond repair.
    let truncated = std::fs::read(bad.join("truncated.pdf"))?;
    assert_eq!(truncated, scanned[..scanned.len() / 3]);
    assert!(!tool("pdfinfo", &[s(&bad.join("truncated.pdf"))])?.status.success());
    assert!(
        !tool("qpdf", &["--check", s(&bad.join("truncated.pdf"))])?
            .status
            .success()
    );
    assert!(
        !tool("pdftotext", &[s(&bad.join("truncated.pdf")), "-"])?
            .status
            .success()
    );

    assert!(std::fs::read(bad.join("empty.pdf"))?.is_empty());
    let not_pdf = std::fs::read(bad.join("not-a-pdf.pdf"))?;
    assert!(!not_pdf.starts_with(b"%PDF") && std::str::from_utf8(&not_pdf).is_ok());
    assert!(!tool("pdfinfo", &[s(&bad.join("not-a-pdf.pdf"))])?.status.success());

    // Huge page: a valid PDF whose one page is 200 in square (60000 px at 300 dpi).
    let huge = bad.join("huge-page.pdf");
    ok("qpdf", &["--check", s(&huge)])?;
    assert_eq!(page_sizes(&huge, 1)?, ["14400 x 14400 pts"]);
    assert_eq!(HUGE_PAGE_POINTS / 72.0 * 300.0, 60_000.0);
    assert!(pdftotext_pages(&huge, &[])?.iter().all(|p| p.trim().is_empty()));
    Ok(())
}

#[test]
fn same_seed_same_documents() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let opts = DocOptions::default();
    let files = generate_documents(&a.join("p"), &a.join("t"), &opts)?;
    assert_eq!(generate_documents(&b.join("p"), &b.join("t"), &opts)?, files);
    for f in files.iter().filter(|f| f.rel_path != "docs/bad/encrypted.pdf") {
        let (one, two) = (
            std::fs::read(a.join("p").join(&f.rel_path))?,
            std::fs::read(b.join("p").join(&f.rel_path))?,
        );
        assert!(one == two, "{} differs between runs", f.rel_path);
    }
    // Every page of every file has its own text: the seed streams are independent.
    let mut pages: Vec<&str> = files.iter().flat_map(truth_pages).collect();
    let n = pages.len();
    assert_eq!(n, 16);
    pages.sort_unstable();
    pages.dedup();
    assert_eq!(pages.len(), n);
    Ok(())
}

#[test]
fn pdftotext_drops_a_line_final_dash() {
    let mut had_dash = 0;
    for seed in 0..300 {
        let original = page_text(seed, PageSize::Small);
        let lines = text_page_lines(seed);
        had_dash += original.iter().filter(|l| l.ends_with('-')).count();
        assert_eq!(lines.len(), original.len());
        assert!(lines.iter().all(|l| !l.ends_with('-')), "seed {seed}: {lines:?}");
        let (was, now) = (normalize_text(&original.join(" ")), normalize_text(&lines.join(" ")));
        assert!(
            was == now || was.strip_suffix(" -") == Some(now.as_str()),
            "seed {seed}"
        );
    }
    assert!(
        had_dash > 0,
        "no seed had a line ending in a dash: the test proves nothing"
    );
}

#[test]
fn a_scanned_pdf_page_ocrs_to_its_truth() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (dir, truth_dir) = (tmp.path().join("pdfs"), tmp.path().join("truth"));
    let opts = ScannedPdfOptions {
        files: 1,
        pages_per_file: 2,
        size: PageSize::Small,
        seed: 11,
    };
    let files = generate_scanned_pdfs(&dir, &truth_dir, &opts)?;
    assert_eq!(files.len(), 1);
    let pdf = dir.join("scan-0001.pdf");
    let png = tmp.path().join("page2");
    ok(
        "pdftoppm",
        &[
            "-r",
            "300",
            "-gray",
            "-png",
            "-singlefile",
            "-f",
            "2",
            "-l",
            "2",
            s(&pdf),
            s(&png),
        ],
    )?;
    let png = tmp.path().join("page2.png");
    let img = image::open(&png)?;
    // The page is rasterised back at exactly the rendered size.
    assert_eq!((img.width(), img.height()), PageSize::Small.dimensions());
    let text = ok("tesseract", &[s(&png), "-", "-l", "eng"])?;
    let truth = truth_pages(&files[0])[1];
    let score = cer(truth, &text);
    eprintln!("scanned page CER {score:.4}");
    assert!(score < 0.05, "CER {score:.4}: {text}");
    // And it is not page 1's text.
    assert!(cer(truth_pages(&files[0])[0], &text) > 0.5);
    Ok(())
}

#[test]
fn scanned_pdfs_for_benchmarks() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (dir, truth_dir) = (tmp.path().join("pdfs"), tmp.path().join("truth"));
    let opts = ScannedPdfOptions {
        files: 3,
        pages_per_file: 2,
        size: PageSize::Small,
        seed: 5,
    };
    let files = generate_scanned_pdfs(&dir, &truth_dir, &opts)?;
    let names: Vec<&str> = files.iter().map(|f| f.rel_path.as_str()).collect();
    assert_eq!(names, ["scan-0001.pdf", "scan-0002.pdf", "scan-0003.pdf"]);
    for f in &files {
        let path = dir.join(&f.rel_path);
        ok("qpdf", &["--check", s(&path)])?;
        assert_eq!(pdfinfo(&path, &[])?["Pages"], "2");
        assert_eq!(f.pages, 2);
        assert_eq!(
            load_truth(&truth_dir, &f.rel_path)?,
            f.truth.clone().unwrap_or_default()
        );
    }
    assert_ne!(files[0].truth, files[1].truth);

    let other = ScannedPdfOptions {
        files: 1,
        pages_per_file: 1,
        seed: 6,
        ..opts
    };
    let other = generate_scanned_pdfs(&tmp.path().join("other"), &tmp.path().join("other-truth"), &other)?;
    let first_page = |f: &GeneratedFile| truth_pages(f)[0].to_string();
    assert_ne!(first_page(&other[0]), first_page(&files[0]), "the seed is ignored");
    Ok(())
}

#[test]
fn page_counts_out_of_bounds_are_refused_before_any_work() {
    let dir = Path::new("/nonexistent/skep-testkit");
    let opts = DocOptions {
        big_pdf_pages: Some(MAX_PDF_PAGES + 1),
        ..DocOptions::default()
    };
    let err = generate_documents(dir, dir, &opts).expect_err("too many pages");
    assert!(err.to_string().contains("supported"), "{err}");
    for (files, pages_per_file) in [(MAX_SCANNED_FILES + 1, 1), (1, 0), (1, MAX_PDF_PAGES + 1)] {
        let opts = ScannedPdfOptions {
            files,
            pages_per_file,
            size: PageSize::Small,
            seed: 1,
        };
        let err = generate_scanned_pdfs(dir, dir, &opts).expect_err("out of bounds");
        assert!(
            err.to_string().contains("supported"),
            "{files} x {pages_per_file}: {err}"
        );
    }
}

#[test]
fn a_text_pdf_reads_back_page_by_page_in_order() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (dir, truth_dir) = (tmp.path().join("pdfs"), tmp.path().join("truth"));
    let file = generate_text_pdf(&dir, &truth_dir, "long/numbered.pdf", 12, 3)?;
    assert_eq!((file.rel_path.as_str(), file.pages), ("long/numbered.pdf", 12));
    assert_eq!(
        load_truth(&truth_dir, &file.rel_path)?,
        file.truth.clone().unwrap_or_default()
    );
    let path = dir.join(&file.rel_path);
    ok("qpdf", &["--check", s(&path)])?;
    assert_eq!(pdfinfo(&path, &[])?["Pages"], "12");
    let truth = truth_pages(&file);
    let read = pdftotext_pages(&path, &[])?;
    assert_eq!(read.len(), 12);
    for (n, (page, want)) in read.iter().zip(&truth).enumerate() {
        assert_eq!(normalize_text(page), normalize_text(want), "page {}", n + 1);
        assert!(want.starts_with(&format!("Page {} of 12\n", n + 1)), "{want}");
    }
    // Distinct beyond the page number.
    let mut bodies: Vec<&str> = truth
        .iter()
        .filter_map(|t| t.split_once('\n').map(|(_, b)| b))
        .collect();
    bodies.sort_unstable();
    bodies.dedup();
    assert_eq!(bodies.len(), 12);
    assert_eq!(
        generate_text_pdf(&tmp.path().join("again"), &truth_dir, "n.pdf", 12, 3)?.truth,
        file.truth
    );
    Ok(())
}

#[test]
fn a_text_pdf_out_of_bounds_or_outside_its_folder_is_refused() {
    let dir = Path::new("/nonexistent/skep-testkit");
    for pages in [0, MAX_PDF_PAGES + 1] {
        let err = generate_text_pdf(dir, dir, "a.pdf", pages, 1).expect_err("out of bounds");
        assert!(err.to_string().contains("supported"), "{pages}: {err}");
    }
    for rel in ["", "../a.pdf", "/tmp/a.pdf", "a/../../b.pdf"] {
        let err = generate_text_pdf(dir, dir, rel, 1, 1).expect_err("not a plain path");
        assert!(err.to_string().contains("plain relative path"), "{rel:?}: {err}");
    }
}
