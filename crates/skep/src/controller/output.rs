//! A finished job's output folder:
//! - `results.jsonl`: one line per file in index order (always);
//! - `text/<relative path>.txt`: the text of each succeeded file (`txt`);
//! - `report.json`: the aggregate (`report`);
//! - `hocr/`, `alto/`, `tsv/`, `pdf/`: landed as each file finishes (see
//!   `landing`), not here.
//!
//! Written from the store when the job finishes, each file to a temporary
//! name and renamed, so a crash while writing leaves either the old file or
//! the new one and writing again is safe.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;
use skep_api::{BulkJob, FileCounts, JobReport, OutputFormat, PageInfo};

use super::safe_fs::SafeDir;
use super::{Context, Error, Result};
use crate::store::{ResultSummary, TaskRecord};

/// Tasks read from the store per page while writing.
const PAGE: usize = 1_000;

/// The job's output folder; for outputs to object storage, the working
/// folder they are made in before the upload (the controller's own,
/// named by the job's uid).
pub fn output_dir(job: &BulkJob, default_root: &Path) -> PathBuf {
    match (&job.spec.output.path, &job.spec.output.url) {
        (Some(p), _) => PathBuf::from(p),
        (None, Some(_)) => default_root.join(OBJECT_OUTPUTS_DIR).join(job.uid()),
        (None, None) => default_root.join(job.name()),
    }
}

/// Uploads a finished job's working folder to its `output.url` (staging
/// left out, `results.jsonl` once all else is up), then removes the
/// folder. Safe to repeat: each file leaves the folder once its object is
/// up, so a repeat sends only the rest. `Ok(Err(..))`: the store refused
/// (no such bucket, keys that may not write there); retrying will not
/// help.
pub async fn upload(ctx: &Context, url: &str, dir: &Path) -> Result<std::result::Result<(), String>> {
    let failed = |message: String| Error::Upload {
        url: url.to_owned(),
        message,
    };
    let target = skep_api::ObjectUrl::parse(url).map_err(failed)?;
    let n = match ctx
        .cfg
        .objects
        .upload_tree(&target, dir, &[super::landing::STAGING_DIR], "results.jsonl")
        .await
    {
        Ok(n) => n,
        Err(crate::objects::CallError::Refused(m)) => return Ok(Err(m)),
        Err(crate::objects::CallError::Failed(m)) => return Err(failed(m)),
    };
    tracing::info!(files = n, output = url, "outputs uploaded");
    let d = dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(d)).await;
    Ok(Ok(()))
}

/// Removes the working folder of a job whose outputs go to object storage
/// (a job refused or deleted before its upload): its outputs are not
/// wanted any more.
pub async fn remove_object_work(ctx: &Context, job: &BulkJob) {
    if job.spec.output.url.is_none() || job.spec.output.path.is_some() {
        return;
    }
    let dir = output_dir(job, &ctx.cfg.default_output_root);
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
}

/// Under the controller's default output root: the working folders of
/// jobs whose outputs go to object storage.
pub const OBJECT_OUTPUTS_DIR: &str = ".skep-object-outputs";

/// One line of `results.jsonl`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultLine<'a> {
    pub index: u64,
    pub path: &'a str,
    pub status: &'static str,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    /// Pages read (a split file's page count when it failed).
    pub page_count: u32,
    /// Per page: number, source (`text` or `ocr`), confidence, rotation.
    pub pages: &'a [PageInfo],
    pub words: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<&'a str>,
}

impl<'a> ResultLine<'a> {
    pub fn of(t: &'a TaskRecord) -> Self {
        let r = t.result.as_ref();
        Self {
            index: t.index,
            path: &t.path,
            status: t.state.as_str(),
            attempts: t.attempts,
            text: r.and_then(|r| r.text.as_deref()),
            confidence: r.and_then(|r| r.confidence),
            page_count: r.map_or(0, |r| r.pages),
            pages: r.map_or(&[], |r| r.page_info.as_slice()),
            words: r.map_or(0, |r| r.words),
            reason: r.and_then(|r| r.reason).map(|x| x.as_str()),
            error: r.and_then(|r| r.error.as_deref()),
            duration_ms: r.map_or(0, |r| r.duration_ms),
            worker: r.and_then(|r| r.worker.as_deref()),
            node: r.and_then(|r| r.node.as_deref()),
        }
    }
}

/// The aggregate of a job.
pub fn build_report(counts: &FileCounts, s: &ResultSummary, start: DateTime<Utc>, end: DateTime<Utc>) -> JobReport {
    let wall = (end - start).num_milliseconds().max(0) as f64 / 1000.0;
    let per_second = |n: u64| if wall > 0.0 { n as f64 / wall } else { 0.0 };
    JobReport {
        files: counts.total,
        succeeded: counts.succeeded,
        failed: counts.failed,
        pages: s.pages,
        words: s.words,
        mean_confidence: if s.pages > 0 {
            s.confidence_page_sum / s.pages as f64
        } else {
            0.0
        },
        failures_by_reason: s.failures_by_reason.clone(),
        wall_seconds: wall,
        ocr_seconds: s.ocr_ms as f64 / 1000.0,
        files_per_second: per_second(counts.finished()),
        pages_per_second: per_second(s.pages),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Output {
        path: path.display().to_string(),
        source,
    }
}

/// Writes every output of a finished job; safe to repeat.
pub async fn write_outputs(ctx: &Context, job: &BulkJob, report: &JobReport) -> Result<PathBuf> {
    let dir = output_dir(job, &ctx.cfg.default_output_root);
    let want_txt = job.spec.output.formats.contains(&OutputFormat::Txt);
    let want_report = job.spec.output.formats.contains(&OutputFormat::Report);
    let results_path = dir.join("results.jsonl");
    // NB: nothing below the output folder is followed if it is a symlink
    // (see `safe_fs`); the folder itself passed the allowed-path check.
    let root = {
        let d = dir.clone();
        tokio::task::spawn_blocking(move || SafeDir::open(&d, Path::new("")))
            .await
            .map_err(|e| Error::TaskEnded(e.to_string()))?
            .map_err(io_err(&dir))?
    };
    let (tmp_name, file) = root
        .create_temp("results.jsonl".as_ref())
        .map_err(io_err(&results_path))?;
    let mut out = std::io::BufWriter::new(file);
    let mut after = None;
    loop {
        let page = match ctx.store_call(ctx.store.list_tasks(job.uid(), after, PAGE)).await {
            Ok(p) => p,
            Err(e) => {
                root.discard(&tmp_name);
                return Err(e);
            }
        };
        if page.is_empty() {
            break;
        }
        after = page.last().map(|t| t.index);
        let d = dir.clone();
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            // NB: files come in scan order, folder by folder: the open
            // folder is kept while the next file goes to the same one.
            let mut open: Option<(PathBuf, SafeDir)> = None;
            for t in &page {
                serde_json::to_writer(&mut out, &ResultLine::of(t))?;
                out.write_all(b"\n")?;
                if want_txt
                    && super::landing::is_plain_relative(&t.path)
                    && let Some(text) = t.result.as_ref().and_then(|r| r.text.as_deref())
                {
                    let rel = Path::new("text").join(format!("{}.txt", t.path));
                    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
                        continue;
                    };
                    if open.as_ref().is_none_or(|(p, _)| p != parent) {
                        open = Some((parent.to_path_buf(), SafeDir::open(&d, parent)?));
                    }
                    if let Some((_, folder)) = &open {
                        folder.write_atomically(name, text.as_bytes())?;
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| Error::TaskEnded(e.to_string()))?;
        out = match written {
            Ok(o) => o,
            Err(e) => {
                root.discard(&tmp_name);
                return Err(io_err(&dir)(e));
            }
        };
    }
    let flushed = out.flush();
    drop(out);
    flushed
        .and_then(|()| root.commit(&tmp_name, "results.jsonl".as_ref()))
        .map_err(io_err(&results_path))?;
    if want_report {
        let p = dir.join("report.json");
        let mut bytes = serde_json::to_vec_pretty(report).unwrap_or_default();
        bytes.push(b'\n');
        root.write_atomically("report.json".as_ref(), &bytes)
            .map_err(io_err(&p))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_rates_and_confidence() {
        let counts = FileCounts {
            total: 10,
            succeeded: 8,
            failed: 2,
            ..FileCounts::default()
        };
        let mut s = ResultSummary {
            pages: 9,
            words: 900,
            confidence_page_sum: 9.0 * 91.5,
            ocr_ms: 4500,
            ..ResultSummary::default()
        };
        s.failures_by_reason.insert("corrupt".into(), 2);
        let t0 = Utc::now();
        let r = build_report(&counts, &s, t0, t0 + chrono::Duration::seconds(5));
        assert_eq!(r.files_per_second, 2.0);
        assert_eq!(r.pages_per_second, 1.8);
        assert!((r.mean_confidence - 91.5).abs() < 1e-9);
        assert_eq!(r.ocr_seconds, 4.5);
        assert_eq!(r.failures_by_reason.get("corrupt"), Some(&2));
    }

    #[test]
    fn result_lines_carry_the_pages() {
        let t = TaskRecord {
            job_uid: "u".into(),
            index: 4,
            part: 0,
            pages: None,
            path: "a.pdf".into(),
            version: None,
            state: crate::store::TaskState::Succeeded,
            attempts: 1,
            not_before_ms: 0,
            lease_until_ms: 0,
            result: Some(crate::store::FileResult {
                text: Some("x".into()),
                pages: 2,
                page_info: vec![
                    PageInfo {
                        number: 1,
                        source: skep_api::PageSource::Text,
                        confidence: 100.0,
                        rotation: 0,
                    },
                    PageInfo {
                        number: 2,
                        source: skep_api::PageSource::Ocr,
                        confidence: 91.0,
                        rotation: 90,
                    },
                ],
                ..Default::default()
            }),
        };
        let line = serde_json::to_value(ResultLine::of(&t)).unwrap();
        assert_eq!(line["pageCount"], 2);
        assert_eq!(
            line["pages"][1],
            serde_json::json!({"number": 2, "source": "ocr", "confidence": 91.0, "rotation": 90})
        );
        assert_eq!(line["pages"][0]["source"], "text");
    }
}
