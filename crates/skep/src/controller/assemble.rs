//! Assembling split files: once none of a split file's page ranges is
//! pending or at work, its result is made from them in page order — the
//! texts joined, the pages' details concatenated, the artefacts landed —
//! or, if a range failed for good, the file fails with that range's reason
//! and pages. The store then finishes the file and drops its ranges
//! ([`Transition::Assemble`]).
//!
//! Level-triggered like the rest of reconcile: a split file whose ranges
//! were lost (a crash between the split and the ranges' insertion, on a
//! store without transactions) gets them back here, and assembling again
//! after a crash lands the same files again.

use skep_api::{BulkJob, PageRange};
use tracing::{info, warn};

use super::landing::{self, JobPaths, Staged};
use super::{Context, Result};
use crate::store::{FileResult, NewTask, TaskRecord, TaskState, TaskUpdate, Transition};

/// Split files assembled per reconcile at most.
const PER_RECONCILE: usize = 32;

/// Assembles the job's split files whose ranges are all done; returns how
/// many files it finished.
pub async fn assemble_ready(ctx: &Context, job: &BulkJob) -> Result<u64> {
    let ready = ctx.store_call(ctx.store.split_ready(job.uid(), PER_RECONCILE)).await?;
    let paths = JobPaths::of(job, &ctx.cfg.default_output_root);
    let mut finished = 0;
    for file in ready {
        let parts = ctx.store_call(ctx.store.list_parts(job.uid(), file.index)).await?;
        let expected = PageRange::split(file.result.as_ref().map_or(0, |r| r.pages), job.spec.pages_per_task);
        if parts.len() < expected.len() {
            let lost = NewTask::ranges(file.index, &file.path, file.version.as_ref(), &expected);
            let n = ctx.store_call(ctx.store.insert_tasks(job.uid(), lost)).await?;
            warn!(
                job = job.name(),
                index = file.index,
                ranges = n,
                "put back the lost ranges of a split file"
            );
            continue;
        }
        let (succeeded, result) = combine(&parts);
        let mut result = result;
        let staged: Vec<Staged> = parts
            .iter()
            .filter_map(|p| {
                Some(Staged {
                    name: p.result.as_ref()?.staged.clone()?,
                    pages: p.pages,
                })
            })
            .collect();
        let mut succeeded = succeeded;
        if succeeded && !paths.artefacts.is_empty() && !staged.is_empty() {
            let landed = match landing::source_copy(&ctx.cfg.objects, &paths, &file.path, file.version.as_ref()).await {
                Err(e) => Err(e),
                Ok((p, copy)) => {
                    let (rel, s, pages) = (file.path.clone(), staged.clone(), result.pages);
                    let turned = landing::turned_pages(&result.page_info);
                    tokio::task::spawn_blocking(move || {
                        let landed = landing::land(&p, &rel, &s, &turned, landing::deadline_for(pages));
                        drop(copy);
                        landed
                    })
                    .await
                    .map_err(|e| super::Error::TaskEnded(e.to_string()))?
                }
            };
            if let Err(e) = landed {
                warn!(job = job.name(), index = file.index, error = %e, "landing a split file's outputs failed");
                succeeded = false;
                result.reason = Some(e.reason);
                result.error = Some(format!("the outputs could not be written: {}", e.message));
            }
        }
        let reason = result.reason;
        let update = TaskUpdate {
            job_uid: job.uid().to_owned(),
            index: file.index,
            part: 0,
            transition: Transition::Assemble { succeeded, result },
        };
        let applied = ctx.store_call(ctx.store.apply_updates(vec![update])).await?;
        if applied.first().copied().unwrap_or(false) {
            finished += 1;
            if succeeded {
                ctx.cfg.metrics.record_result("succeeded", None);
            } else {
                ctx.cfg.metrics.record_result("failed", reason.map(|r| r.as_str()));
            }
            info!(
                job = job.name(),
                index = file.index,
                parts = parts.len(),
                succeeded,
                "assembled a split file"
            );
        }
        let p = paths.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for s in staged {
                landing::discard(&p, &s.name);
            }
        })
        .await;
    }
    Ok(finished)
}

/// The file's result from its ranges (in part order): whether it
/// succeeded, and its result.
fn combine(parts: &[TaskRecord]) -> (bool, FileResult) {
    let mut out = FileResult::default();
    let results: Vec<&FileResult> = parts.iter().filter_map(|p| p.result.as_ref()).collect();
    out.duration_ms = results.iter().map(|r| r.duration_ms).sum();
    out.finished_ms = results.iter().map(|r| r.finished_ms).max().unwrap_or(0);
    out.worker = results.last().and_then(|r| r.worker.clone());
    out.node = results.last().and_then(|r| r.node.clone());
    out.pages = parts.iter().map(|p| p.pages.map_or(0, |r| r.len())).sum();
    if let Some(failed) = parts.iter().find(|p| p.state == TaskState::Failed) {
        let r = failed.result.clone().unwrap_or_default();
        let range = failed
            .pages
            .map(|r| format!("pages {r}"))
            .unwrap_or_else(|| "a range".to_owned());
        out.reason = r.reason;
        out.error = Some(format!("{range}: {}", r.error.unwrap_or_default()));
        return (false, out);
    }
    let texts: Vec<&str> = results.iter().map(|r| r.text.as_deref().unwrap_or_default()).collect();
    out.text = Some(texts.join("\n\x0c\n"));
    out.words = results.iter().map(|r| r.words).sum();
    out.page_info = results.iter().flat_map(|r| r.page_info.iter().cloned()).collect();
    // Mean confidence over the pages with text, weighted by page count.
    let (sum, n) = results
        .iter()
        .filter(|r| r.text.as_deref().is_some_and(|t| !t.trim().is_empty()))
        .fold((0.0f64, 0u32), |(s, n), r| {
            (
                s + f64::from(r.confidence.unwrap_or(0.0)) * f64::from(r.pages),
                n + r.pages,
            )
        });
    out.confidence = Some(if n > 0 { (sum / f64::from(n)) as f32 } else { 0.0 });
    (true, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skep_api::{FailureReason, PageInfo, PageSource};

    fn part(n: u32, first: u32, last: u32, state: TaskState, text: &str) -> TaskRecord {
        TaskRecord {
            job_uid: "u".into(),
            index: 0,
            part: n,
            pages: Some(PageRange { first, last }),
            path: "a.pdf".into(),
            version: None,
            state,
            attempts: 1,
            not_before_ms: 0,
            lease_until_ms: 0,
            result: Some(FileResult {
                text: (state == TaskState::Succeeded).then(|| text.to_owned()),
                confidence: Some(80.0),
                pages: last - first + 1,
                words: text.split_whitespace().count() as u64,
                page_info: (first..=last)
                    .map(|number| PageInfo {
                        number,
                        source: PageSource::Ocr,
                        confidence: 80.0,
                        rotation: 0,
                    })
                    .collect(),
                reason: (state == TaskState::Failed).then_some(FailureReason::TooLarge),
                error: (state == TaskState::Failed).then(|| "page 12 is too large".to_owned()),
                duration_ms: 10,
                ..FileResult::default()
            }),
        }
    }

    #[test]
    fn ranges_join_in_page_order() {
        let parts = [
            part(1, 1, 8, TaskState::Succeeded, "one"),
            part(2, 9, 10, TaskState::Succeeded, "two words"),
        ];
        let (ok, r) = combine(&parts);
        assert!(ok);
        assert_eq!(r.text.as_deref(), Some("one\n\x0c\ntwo words"));
        assert_eq!((r.pages, r.words, r.duration_ms), (10, 3, 20));
        assert_eq!(
            r.page_info.iter().map(|p| p.number).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
        assert_eq!(r.confidence, Some(80.0));
    }

    #[test]
    fn a_failed_range_fails_the_file_naming_its_pages() {
        let parts = [
            part(1, 1, 8, TaskState::Succeeded, "one"),
            part(2, 9, 16, TaskState::Failed, ""),
        ];
        let (ok, r) = combine(&parts);
        assert!(!ok);
        assert_eq!(r.reason, Some(FailureReason::TooLarge));
        assert_eq!(r.error.as_deref(), Some("pages 9-16: page 12 is too large"));
        assert_eq!(r.text, None);
    }
}
