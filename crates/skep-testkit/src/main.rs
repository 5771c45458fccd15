//! `skep-testkit`: generate an OCR test corpus, or score OCR results by CER.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use skep_testkit::documents::{
    DocOptions, ScannedPdfOptions, generate_documents, generate_scanned_pdfs, write_manifest,
};
use skep_testkit::office::generate_office;
use skep_testkit::{
    CorpusOptions, GeneratedFile, ImageFormat, MANIFEST_FILE, PageSize, cer, generate_corpus, load_truth,
    read_manifest, truth_path,
};

/// Mean CER at or above which `cer` fails.
const MAX_MEAN_CER: f64 = 0.05;

#[derive(Debug, Parser)]
#[command(name = "skep-testkit", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate scanned-looking pages with ground truth.
    Gen {
        /// Where the page images go.
        #[arg(long)]
        pages_dir: PathBuf,
        /// Where ground truth (<rel_path>.txt) and manifest.json go.
        #[arg(long)]
        truth_dir: PathBuf,
        /// Number of single-page files.
        #[arg(long, default_value_t = 30)]
        pages: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// small (1240x880, fast) or a4 (2480x3508 at 300 dpi).
        #[arg(long, default_value = "small")]
        size: PageSize,
        /// Formats cycled over the pages: png, jpeg, bmp, tiff.
        #[arg(long, value_delimiter = ',', default_value = "png")]
        formats: Vec<ImageFormat>,
        /// Also write multipage.tif with N pages.
        #[arg(long, value_name = "N")]
        multipage_tiff: Option<usize>,
        /// Also write bad/empty.png, bad/corrupt.png and bad/fake.jpg.
        #[arg(long)]
        bad_files: bool,
    },
    /// Generate test documents under PAGES_DIR/docs: PDFs (born-digital,
    /// scanned, mixed, sideways), rotated images, a multi-page TIFF, broken
    /// files, and the Office documents; needs qpdf.
    Docs {
        /// Where the documents go (under docs/ and office/).
        #[arg(long)]
        pages_dir: PathBuf,
        /// Where ground truth (<rel_path>.txt) and manifest.json go.
        #[arg(long)]
        truth_dir: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also write docs/big.pdf with N scanned pages (small size).
        #[arg(long, value_name = "N")]
        big_pdf: Option<usize>,
        /// Size of the scanned pages: small or a4.
        #[arg(long, default_value = "small")]
        size: PageSize,
        /// Leave out the Office documents.
        #[arg(long)]
        no_office: bool,
    },
    /// Generate image-only PDFs of scanned pages (scan-0001.pdf, ...) for
    /// benchmarks.
    ScannedPdfs {
        /// Where the PDFs go.
        #[arg(long)]
        dir: PathBuf,
        /// Where ground truth (<rel_path>.txt) and manifest.json go.
        #[arg(long)]
        truth_dir: PathBuf,
        /// Number of PDFs.
        #[arg(long)]
        files: usize,
        /// Scanned pages in each PDF.
        #[arg(long)]
        pages_per_file: usize,
        /// small (1240x880) or a4 (2480x3508 at 300 dpi).
        #[arg(long, default_value = "small")]
        size: PageSize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Score a results.jsonl against the ground truth (exit 1 if the mean CER
    /// is >= 0.05 or a file with ground truth is missing or failed).
    Cer {
        /// JSON lines with at least "path", "status" and "text".
        #[arg(long)]
        results: PathBuf,
        /// The truth dir written by `gen` (manifest.json and <rel_path>.txt).
        #[arg(long)]
        truth_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Gen {
            pages_dir,
            truth_dir,
            pages,
            seed,
            size,
            formats,
            multipage_tiff,
            bad_files,
        } => {
            let opts = CorpusOptions {
                pages,
                seed,
                size,
                formats,
                multipage_tiff,
                bad_files,
            };
            run_gen(&pages_dir, &truth_dir, &opts).map(|()| true)
        }
        Command::Docs {
            pages_dir,
            truth_dir,
            seed,
            big_pdf,
            size,
            no_office,
        } => {
            let opts = DocOptions {
                seed,
                size,
                big_pdf_pages: big_pdf,
            };
            run_docs(&pages_dir, &truth_dir, &opts, !no_office).map(|()| true)
        }
        Command::ScannedPdfs {
            dir,
            truth_dir,
            files,
            pages_per_file,
            size,
            seed,
        } => {
            let opts = ScannedPdfOptions {
                files,
                pages_per_file,
                size,
                seed,
            };
            run_scanned_pdfs(&dir, &truth_dir, &opts).map(|()| true)
        }
        Command::Cer { results, truth_dir } => run_cer(&results, &truth_dir),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("skep-testkit: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_gen(pages_dir: &Path, truth_dir: &Path, opts: &CorpusOptions) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let files = generate_corpus(pages_dir, truth_dir, opts)?;
    let good = files.iter().filter(|f| f.truth.is_some()).count();
    let pages: usize = files.iter().map(|f| f.pages).sum();
    let bad = files.len() - good;
    println!(
        "generated {good} files ({pages} pages, {}) + {bad} bad files in {} (truth in {}) in {:.1} s",
        opts.size,
        pages_dir.display(),
        truth_dir.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn run_docs(pages_dir: &Path, truth_dir: &Path, opts: &DocOptions, office: bool) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let mut files = generate_documents(pages_dir, truth_dir, opts)?;
    if office {
        files.extend(generate_office(pages_dir, truth_dir, opts.seed)?);
    }
    write_manifest(truth_dir, &files)?;
    report("documents", &files, pages_dir, truth_dir, start);
    Ok(())
}

fn run_scanned_pdfs(dir: &Path, truth_dir: &Path, opts: &ScannedPdfOptions) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let files = generate_scanned_pdfs(dir, truth_dir, opts)?;
    write_manifest(truth_dir, &files)?;
    report(&format!("scanned PDFs ({})", opts.size), &files, dir, truth_dir, start);
    Ok(())
}

fn report(what: &str, files: &[GeneratedFile], dir: &Path, truth_dir: &Path, start: std::time::Instant) {
    let good = files.iter().filter(|f| f.truth.is_some()).count();
    let pages: usize = files.iter().map(|f| f.pages).sum();
    println!(
        "generated {good} {what} ({pages} pages) + {} bad files in {} (truth in {}) in {:.1} s",
        files.len() - good,
        dir.display(),
        truth_dir.display(),
        start.elapsed().as_secs_f64()
    );
}

/// One line of results.jsonl, as far as we care.
struct ResultLine {
    status: String,
    text: Option<String>,
}

/// `./a/b` or `a\b` → `a/b`.
fn normalise_path(p: &str) -> String {
    let p = p.replace('\\', "/");
    let mut s = p.as_str();
    while let Some(rest) = s.strip_prefix("./") {
        s = rest;
    }
    s.to_string()
}

fn read_results(path: &Path) -> anyhow::Result<HashMap<String, ResultLine>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        let Some(p) = v.get("path").and_then(|p| p.as_str()) else {
            bail!("{}:{}: no \"path\" string", path.display(), i + 1);
        };
        let status = v.get("status").and_then(|s| s.as_str()).unwrap_or("").to_string();
        let text = v.get("text").and_then(|t| t.as_str()).map(str::to_string);
        // Later lines (e.g. a retry) win.
        out.insert(normalise_path(p), ResultLine { status, text });
    }
    Ok(out)
}

/// Finds the result for `rel_path`: exact match, or a result path ending in
/// `/<rel_path>` (results may carry absolute paths).
fn find_result<'a>(results: &'a HashMap<String, ResultLine>, rel_path: &str) -> Option<&'a ResultLine> {
    results.get(rel_path).or_else(|| {
        let suffix = format!("/{rel_path}");
        results.iter().find(|(k, _)| k.ends_with(&suffix)).map(|(_, v)| v)
    })
}

fn run_cer(results_path: &Path, truth_dir: &Path) -> anyhow::Result<bool> {
    let results = read_results(results_path)?;

    // What should have been OCRed: the manifest if there is one, else every
    // result path that has a truth file.
    let expected: Vec<GeneratedFile> = if truth_dir.join(MANIFEST_FILE).is_file() {
        read_manifest(truth_dir)?
    } else {
        let mut v = Vec::new();
        for path in results.keys() {
            if truth_path(truth_dir, path).is_file() {
                v.push(GeneratedFile {
                    rel_path: path.clone(),
                    truth: Some(load_truth(truth_dir, path)?),
                    pages: 1,
                    expect_failure: None,
                });
            }
        }
        v.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
        v
    };

    let mut scores = Vec::new();
    let mut problems = 0usize;
    for file in &expected {
        let Some(truth) = &file.truth else {
            // A bad file: it should have failed. Informational only.
            if let Some(r) = find_result(&results, &file.rel_path).filter(|r| r.status != "failed") {
                println!(
                    "note     {}: expected failure ({}), got status {:?}",
                    file.rel_path,
                    file.expect_failure.as_deref().unwrap_or("?"),
                    r.status
                );
            }
            continue;
        };
        match find_result(&results, &file.rel_path) {
            None => {
                println!("MISSING  {}", file.rel_path);
                problems += 1;
            }
            Some(r) => match (&r.text, r.status.as_str()) {
                (Some(text), "succeeded") => {
                    let score = cer(truth, text);
                    println!("{score:.4}   {}", file.rel_path);
                    scores.push(score);
                }
                _ => {
                    println!("FAILED   {} (status {:?})", file.rel_path, r.status);
                    problems += 1;
                }
            },
        }
    }

    if scores.is_empty() {
        println!("no scored files ({problems} missing/failed)");
        return Ok(false);
    }
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    let max = scores.iter().copied().fold(0.0f64, f64::max);
    println!(
        "mean CER {mean:.4} (max {max:.4}) over {} files; {problems} missing/failed",
        scores.len()
    );
    Ok(mean < MAX_MEAN_CER && problems == 0)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn docs_and_scanned_pdfs_parse() {
        let cli = Cli::try_parse_from([
            "skep-testkit",
            "docs",
            "--pages-dir",
            "p",
            "--truth-dir",
            "t",
            "--big-pdf",
            "200",
            "--size",
            "a4",
            "--no-office",
        ])
        .expect("valid docs arguments");
        assert!(matches!(
            cli.command,
            Command::Docs {
                big_pdf: Some(200),
                size: PageSize::A4,
                no_office: true,
                seed: 1,
                ..
            }
        ));
        let cli = Cli::try_parse_from([
            "skep-testkit",
            "scanned-pdfs",
            "--dir",
            "d",
            "--truth-dir",
            "t",
            "--files",
            "3",
            "--pages-per-file",
            "7",
        ])
        .expect("valid scanned-pdfs arguments");
        assert!(matches!(
            cli.command,
            Command::ScannedPdfs {
                files: 3,
                pages_per_file: 7,
                size: PageSize::Small,
                ..
            }
        ));
        assert!(
            Cli::try_parse_from([
                "skep-testkit",
                "docs",
                "--pages-dir",
                "p",
                "--truth-dir",
                "t",
                "--size",
                "letter"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["skep-testkit", "scanned-pdfs", "--dir", "d", "--truth-dir", "t"]).is_err());
    }
}
