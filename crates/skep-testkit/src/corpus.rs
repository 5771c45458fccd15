//! Writing a corpus of pages, ground truth and the manifest.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use ab_glyph::FontVec;
use anyhow::{Context as _, anyhow};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::render::{encode_image, encode_multipage_tiff, load_font, render_with_font};
use crate::{CorpusOptions, GeneratedFile, ImageFormat, PageSize, mix_seed, page_text, truth_path};

/// Name of the manifest written into the truth dir.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Separator between the pages of a multi-page file in its ground truth.
const PAGE_SEPARATOR: &str = "\n\u{c}\n";

/// Seed stream used for the pages of `multipage.tif`.
const MULTIPAGE_STREAM: u64 = 1 << 40;
/// Seed stream used for the valid page that `bad/corrupt.png` is cut from.
const CORRUPT_STREAM: u64 = 1 << 41;

struct Job {
    rel_path: String,
    format: ImageFormat,
    /// One seed per page of the file.
    seeds: Vec<u64>,
}

/// Generates a corpus: page images under `pages_dir`, ground truth as
/// `truth_dir/<rel_path>.txt` and the manifest `truth_dir/manifest.json`
/// (an array of [`GeneratedFile`], in the order returned).
///
/// Pages are `page-0001.<ext>`, ...; every 5th page goes into `sub/`.
/// Existing files with the same names are overwritten; nothing is deleted.
/// Deterministic for given options (and font).
pub fn generate_corpus(pages_dir: &Path, truth_dir: &Path, opts: &CorpusOptions) -> anyhow::Result<Vec<GeneratedFile>> {
    let font = load_font()?;
    std::fs::create_dir_all(pages_dir).with_context(|| format!("creating {}", pages_dir.display()))?;
    std::fs::create_dir_all(truth_dir).with_context(|| format!("creating {}", truth_dir.display()))?;

    let formats: &[ImageFormat] = if opts.formats.is_empty() {
        &[ImageFormat::Png]
    } else {
        &opts.formats
    };

    let mut jobs: Vec<Job> = (0..opts.pages)
        .map(|i| {
            let n = i + 1;
            let format = formats[i % formats.len()];
            let dir = if n % 5 == 0 { "sub/" } else { "" };
            Job {
                rel_path: format!("{dir}page-{n:04}.{}", format.extension()),
                format,
                seeds: vec![mix_seed(opts.seed, n as u64)],
            }
        })
        .collect();
    if let Some(n) = opts.multipage_tiff.filter(|&n| n > 0) {
        jobs.push(Job {
            rel_path: "multipage.tif".to_string(),
            format: ImageFormat::Tiff,
            seeds: (0..n)
                .map(|k| mix_seed(opts.seed, MULTIPAGE_STREAM + k as u64))
                .collect(),
        });
    }

    let mut files = run_jobs(&font, opts.size, &jobs, pages_dir, truth_dir)?;
    if opts.bad_files {
        files.extend(write_bad_files(&font, pages_dir, opts.seed)?);
    }

    let manifest_path = truth_dir.join(MANIFEST_FILE);
    let json = serde_json::to_string_pretty(&files).context("serialising manifest")?;
    std::fs::write(&manifest_path, json + "\n").with_context(|| format!("writing {}", manifest_path.display()))?;
    Ok(files)
}

/// Reads `truth_dir/manifest.json`.
pub fn read_manifest(truth_dir: &Path) -> anyhow::Result<Vec<GeneratedFile>> {
    let path = truth_dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Runs the jobs on up to `available_parallelism` threads, keeping order.
fn run_jobs(
    font: &FontVec,
    size: PageSize,
    jobs: &[Job],
    pages_dir: &Path,
    truth_dir: &Path,
) -> anyhow::Result<Vec<GeneratedFile>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(jobs.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, anyhow::Result<GeneratedFile>)> = Vec::with_capacity(jobs.len());
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        done.push((i, run_job(font, size, job, pages_dir, truth_dir)));
                    }
                    done
                })
            })
            .collect();
        for handle in handles {
            let done = handle.join().map_err(|_| anyhow!("a page generator thread panicked"))?;
            results.extend(done);
        }
        Ok(())
    })?;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

fn run_job(
    font: &FontVec,
    size: PageSize,
    job: &Job,
    pages_dir: &Path,
    truth_dir: &Path,
) -> anyhow::Result<GeneratedFile> {
    let mut images = Vec::with_capacity(job.seeds.len());
    let mut texts = Vec::with_capacity(job.seeds.len());
    for &seed in &job.seeds {
        let lines = page_text(seed, size);
        images.push(render_with_font(font, &lines, size, seed));
        texts.push(lines.join("\n"));
    }
    let bytes = if images.len() == 1 {
        encode_image(&images[0], job.format)?
    } else {
        encode_multipage_tiff(&images)?
    };
    write_file(&pages_dir.join(&job.rel_path), &bytes)?;
    let truth = texts.join(PAGE_SEPARATOR);
    write_file(&truth_path(truth_dir, &job.rel_path), truth.as_bytes())?;
    Ok(GeneratedFile {
        rel_path: job.rel_path.clone(),
        truth: Some(truth),
        pages: job.seeds.len(),
        expect_failure: None,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn write_bad_files(font: &FontVec, pages_dir: &Path, seed: u64) -> anyhow::Result<Vec<GeneratedFile>> {
    let bad = |rel_path: &str, kind: &str| GeneratedFile {
        rel_path: rel_path.to_string(),
        truth: None,
        pages: 0,
        expect_failure: Some(kind.to_string()),
    };

    write_file(&pages_dir.join("bad/empty.png"), &[])?;

    // A valid PNG cut at 60% and followed by garbage: the signature and IHDR
    // are intact, the image data is not.
    let page_seed = mix_seed(seed, CORRUPT_STREAM);
    let lines = page_text(page_seed, PageSize::Small);
    let img = render_with_font(font, &lines, PageSize::Small, page_seed);
    let png = encode_image(&img, ImageFormat::Png)?;
    let mut corrupt = png[..png.len() * 6 / 10].to_vec();
    let mut rng = StdRng::seed_from_u64(page_seed);
    corrupt.extend((0..200).map(|_| rng.random::<u8>()));
    write_file(&pages_dir.join("bad/corrupt.png"), &corrupt)?;

    let fake = "This is not a JPEG image.\n\
                It is a plain text file with a .jpg extension, written by skep-testkit\n\
                to check that unsupported content is reported as a failure.\n";
    write_file(&pages_dir.join("bad/fake.jpg"), fake.as_bytes())?;

    Ok(vec![
        bad("bad/empty.png", "empty"),
        bad("bad/corrupt.png", "corrupt"),
        bad("bad/fake.jpg", "unsupported"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load_truth;

    #[test]
    fn generate_small_corpus_with_bad_files() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let pages_dir = tmp.path().join("pages");
        let truth_dir = tmp.path().join("truth");
        let opts = CorpusOptions {
            pages: 5,
            seed: 42,
            size: PageSize::Small,
            formats: vec![ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Tiff],
            multipage_tiff: Some(2),
            bad_files: true,
        };
        let files = generate_corpus(&pages_dir, &truth_dir, &opts)?;
        let names: Vec<&str> = files.iter().map(|f| f.rel_path.as_str()).collect();
        assert_eq!(
            names,
            [
                "page-0001.png",
                "page-0002.jpg",
                "page-0003.tif",
                "page-0004.png",
                "sub/page-0005.jpg",
                "multipage.tif",
                "bad/empty.png",
                "bad/corrupt.png",
                "bad/fake.jpg",
            ]
        );

        // The manifest says the same as the return value.
        assert_eq!(read_manifest(&truth_dir)?, files);

        for f in &files {
            let path = pages_dir.join(&f.rel_path);
            assert!(path.is_file(), "{} missing", path.display());
            let bytes = std::fs::read(&path)?;
            match &f.truth {
                Some(truth) => {
                    assert!(f.expect_failure.is_none());
                    assert_eq!(&load_truth(&truth_dir, &f.rel_path)?, truth);
                    assert!(!pages_dir.join(format!("{}.txt", f.rel_path)).exists());
                    if f.rel_path == "multipage.tif" {
                        assert_eq!(f.pages, 2);
                        assert_eq!(truth.matches("\n\u{c}\n").count(), 1);
                    } else {
                        assert_eq!(f.pages, 1);
                        let img = image::load_from_memory(&bytes)?;
                        assert_eq!((img.width(), img.height()), PageSize::Small.dimensions());
                        assert_eq!(truth.lines().count(), 12);
                    }
                }
                None => {
                    assert_eq!(f.pages, 0);
                    assert!(!truth_path(&truth_dir, &f.rel_path).exists());
                    assert!(image::load_from_memory(&bytes).is_err(), "{}", f.rel_path);
                }
            }
        }
        let kinds: Vec<Option<&str>> = files.iter().map(|f| f.expect_failure.as_deref()).collect();
        assert_eq!(&kinds[6..], [Some("empty"), Some("corrupt"), Some("unsupported")]);
        assert!(std::fs::read(pages_dir.join("bad/empty.png"))?.is_empty());
        let corrupt = std::fs::read(pages_dir.join("bad/corrupt.png"))?;
        assert!(corrupt.starts_with(b"\x89PNG\r\n\x1a\n"));

        // Same options, same corpus.
        let tmp2 = tempfile::tempdir()?;
        let one = CorpusOptions {
            pages: 1,
            multipage_tiff: None,
            bad_files: false,
            ..opts
        };
        let again = generate_corpus(&tmp2.path().join("p"), &tmp2.path().join("t"), &one)?;
        assert_eq!(again[..], files[..1]);
        assert_eq!(
            std::fs::read(tmp2.path().join("p/page-0001.png"))?,
            std::fs::read(pages_dir.join("page-0001.png"))?
        );
        Ok(())
    }
}
