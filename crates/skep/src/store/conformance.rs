//! The conformance suite every `Store` backend must pass. Each case takes a
//! fresh, empty store and panics with what broke. A backend's tests run one
//! `#[tokio::test]` per case (see `tests/store_sqlite.rs`):
//! `skep::store_conformance_cases!(my_macro)` calls `my_macro!` with the name
//! of every case that takes `&dyn Store`, so a new case reaches every
//! backend. `atomic_lease_under_concurrency` takes an `Arc` and is called on
//! its own.

/// Calls `$m!(case, case, ...)` with every `&dyn Store` case of the store
/// suite: the one list of cases, for every backend's tests.
#[macro_export]
macro_rules! store_conformance_cases {
    ($m:ident) => {
        $m!(
            crud_and_generation,
            watch_delivers_every_change,
            finalizer_two_phase_delete,
            idempotent_results,
            many_results_at_once,
            expired_leases_and_attempts,
            unlease_and_reset,
            renewed_leases,
            list_tasks_pages,
            retry_failed_files,
            split_files_and_their_ranges,
            a_failed_range_and_lost_ranges,
            controller_lease,
            fenced_writes,
            object_versions,
        );
    };
}

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use skep_api::{
    BulkJob, BulkJobSpec, BulkJobStatus, FailureReason, PageCounts, PageInfo, PageRange, PageSource, Phase,
};

use super::{
    Deleted, Fence, FileResult, LeaseRequest, NewTask, ObjectVersion, Store, StoreError, TaskState, TaskUpdate,
    Transition, WatchEvent,
};

fn job(name: &str) -> BulkJob {
    BulkJob::new(name, BulkJobSpec::for_path("/data/in"))
}

fn tasks(n: u64) -> Vec<NewTask> {
    (0..n).map(|i| NewTask::file(i, format!("f{i:05}.png"))).collect()
}

fn lease(uid: &str, limit: usize, now_ms: i64) -> LeaseRequest {
    LeaseRequest {
        job_uid: uid.to_owned(),
        limit,
        now_ms,
        lease_ms: 1_000,
        max_attempts: 3,
    }
}

fn update(uid: &str, index: u64, transition: Transition) -> TaskUpdate {
    TaskUpdate {
        job_uid: uid.to_owned(),
        index,
        part: 0,
        transition,
    }
}

fn ok_result(text: &str) -> FileResult {
    FileResult {
        text: Some(text.to_owned()),
        confidence: Some(90.0),
        pages: 1,
        words: 2,
        duration_ms: 10,
        worker: Some("w1".into()),
        node: Some("n1".into()),
        finished_ms: 5,
        ..FileResult::default()
    }
}

fn failed_result(reason: FailureReason) -> FileResult {
    FileResult {
        reason: Some(reason),
        error: Some(format!("{reason} happened")),
        duration_ms: 3,
        worker: Some("w1".into()),
        node: Some("n2".into()),
        finished_ms: 6,
        ..FileResult::default()
    }
}

/// Create, read, list; generation moves with the spec only.
pub async fn crud_and_generation(s: &dyn Store) {
    let created = s.apply_job(job("a")).await.expect("create");
    assert!(created.created && created.spec_changed);
    let uid = created.job.uid().to_owned();
    assert!(!uid.is_empty(), "a uid is assigned");
    assert_eq!(created.job.generation(), 1);
    assert!(created.job.metadata.creation_timestamp.is_some());

    let same = s.apply_job(job("a")).await.expect("re-apply");
    assert!(!same.created && !same.spec_changed);
    assert_eq!(same.job.generation(), 1, "same spec, same generation");
    assert_eq!(same.job.uid(), uid);

    let mut labelled = job("a");
    labelled.metadata.labels.insert("team".into(), "x".into());
    let applied = s.apply_job(labelled).await.expect("labels");
    assert_eq!(applied.job.generation(), 1, "labels are not the spec");
    assert_eq!(applied.job.metadata.labels.get("team").map(String::as_str), Some("x"));

    let mut status = BulkJobStatus {
        phase: Phase::Running,
        ..BulkJobStatus::default()
    };
    status.files.total = 7;
    s.update_status("a", &uid, &status).await.expect("status");
    let got = s.get_job("a").await.expect("get").expect("exists");
    assert_eq!(got.generation(), 1, "status writes do not bump the generation");
    assert_eq!(got.status().files.total, 7);

    let mut changed = job("a");
    changed.spec.scaling.max_replicas = 3;
    let applied = s.apply_job(changed).await.expect("spec change");
    assert!(applied.spec_changed);
    assert_eq!(applied.job.generation(), 2);
    assert_eq!(applied.job.status().files.total, 7, "apply keeps the status");

    let err = s
        .update_status("a", "some-other-uid", &status)
        .await
        .expect_err("must fail");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let err = s.update_status("nope", &uid, &status).await.expect_err("must fail");
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");

    s.apply_job(job("b")).await.expect("create b");
    let names: Vec<String> = s
        .list_jobs()
        .await
        .expect("list")
        .into_iter()
        .map(|j| j.metadata.name)
        .collect();
    assert_eq!(names, vec!["a", "b"]);
    assert!(s.get_job("c").await.expect("get").is_none());
}

async fn next_event(w: &mut futures::stream::BoxStream<'static, WatchEvent>) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("a watch event within 10 s")
        .expect("the watch stream does not end")
}

/// Watch lists what exists, then reports applies, finalizer changes and
/// deletion requests, and not status writes.
pub async fn watch_delivers_every_change(s: &dyn Store) {
    let a = s.apply_job(job("a")).await.expect("create").job;
    let mut w = s.watch();
    assert_eq!(
        next_event(&mut w).await,
        WatchEvent::Changed("a".into()),
        "initial list"
    );

    s.apply_job(job("b")).await.expect("create b");
    assert_eq!(next_event(&mut w).await, WatchEvent::Changed("b".into()));

    let mut changed = job("a");
    changed.spec.priority = 5;
    s.apply_job(changed).await.expect("update a");
    assert_eq!(next_event(&mut w).await, WatchEvent::Changed("a".into()));

    s.update_status("a", a.uid(), &BulkJobStatus::default())
        .await
        .expect("status");
    s.add_finalizer("a", a.uid()).await.expect("finalizer");
    assert_eq!(
        next_event(&mut w).await,
        WatchEvent::Changed("a".into()),
        "the finalizer change, not the status write, comes next"
    );
    s.request_delete("a").await.expect("delete");
    assert_eq!(next_event(&mut w).await, WatchEvent::Changed("a".into()));
    let quiet = tokio::time::timeout(Duration::from_millis(1500), w.next()).await;
    assert!(quiet.is_err(), "no further event: {quiet:?}");
}

/// Deletion is two-phase while the finalizer is on, immediate without it.
pub async fn finalizer_two_phase_delete(s: &dyn Store) {
    let a = s.apply_job(job("a")).await.expect("create").job;
    s.insert_tasks(a.uid(), tasks(3)).await.expect("tasks");
    s.add_finalizer("a", a.uid()).await.expect("finalizer");
    s.add_finalizer("a", a.uid()).await.expect("finalizer is idempotent");
    let got = s.get_job("a").await.expect("get").expect("exists");
    assert_eq!(got.metadata.finalizers, vec![skep_api::FINALIZER]);

    assert_eq!(s.request_delete("a").await.expect("delete"), Deleted::Marked);
    let got = s.get_job("a").await.expect("get").expect("still there");
    assert!(got.is_deleting());
    let err = s.apply_job(job("a")).await.expect_err("must fail");
    assert!(
        matches!(err, StoreError::Conflict { .. }),
        "apply while deleting: {err}"
    );

    s.remove_finalizer("a", a.uid()).await.expect("remove finalizer");
    assert!(s.get_job("a").await.expect("get").is_none(), "gone after cleanup");
    assert_eq!(
        s.task_counts(a.uid()).await.expect("counts").files.total,
        0,
        "tasks gone too"
    );

    let b = s.apply_job(job("b")).await.expect("create b").job;
    s.insert_tasks(b.uid(), tasks(2)).await.expect("tasks");
    assert_eq!(s.request_delete("b").await.expect("delete b"), Deleted::Removed);
    assert!(s.get_job("b").await.expect("get").is_none());
    assert_eq!(s.task_counts(b.uid()).await.expect("counts").files.total, 0);

    let again = s.apply_job(job("a")).await.expect("re-create").job;
    assert_ne!(again.uid(), a.uid(), "a re-created job gets a new uid");
    assert!(matches!(s.request_delete("zzz").await, Err(StoreError::NotFound(_))));
}

/// Four leasers at once never get the same task.
pub async fn atomic_lease_under_concurrency(s: Arc<dyn Store>) {
    let a = s.apply_job(job("a")).await.expect("create").job;
    let uid = a.uid().to_owned();
    let n = 2000;
    assert_eq!(s.insert_tasks(&uid, tasks(n)).await.expect("insert"), n);
    assert_eq!(
        s.insert_tasks(&uid, tasks(10)).await.expect("re-insert"),
        0,
        "inserts are idempotent"
    );
    let mut handles = Vec::new();
    for _ in 0..4 {
        let (s, uid) = (s.clone(), uid.clone());
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s.lease_tasks(lease(&uid, 37, 1_000)).await.expect("lease");
                if got.tasks.is_empty() {
                    return mine;
                }
                mine.extend(got.tasks.into_iter().map(|t| t.index));
            }
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("leaser"));
    }
    let unique: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "a task was leased twice");
    assert_eq!(unique.len() as u64, n);
    let counts = s.task_counts(&uid).await.expect("counts").files;
    assert_eq!((counts.total, counts.dispatched), (n, n));
}

/// First terminal result wins; stale failures are ignored; retries wait.
pub async fn idempotent_results(s: &dyn Store) {
    let a = s.apply_job(job("a")).await.expect("create").job;
    let uid = a.uid().to_owned();
    s.insert_tasks(&uid, tasks(3)).await.expect("insert");
    let leased = s.lease_tasks(lease(&uid, 3, 0)).await.expect("lease");
    assert_eq!(leased.tasks.len(), 3);
    assert!(
        leased
            .tasks
            .iter()
            .all(|t| t.attempts == 1 && t.state == TaskState::Dispatched)
    );

    let upd = |index, transition| update(&uid, index, transition);
    let applied = s
        .apply_updates(vec![
            upd(
                0,
                Transition::Succeed {
                    result: ok_result("zero"),
                },
            ),
            upd(
                0,
                Transition::Succeed {
                    result: ok_result("dup"),
                },
            ),
            upd(
                0,
                Transition::Fail {
                    attempt: 1,
                    result: failed_result(FailureReason::Corrupt),
                },
            ),
            upd(
                1,
                Transition::Retry {
                    attempt: 2,
                    not_before_ms: 0,
                    result: failed_result(FailureReason::Timeout),
                },
            ),
            upd(
                1,
                Transition::Retry {
                    attempt: 1,
                    not_before_ms: 5_000,
                    result: failed_result(FailureReason::Timeout),
                },
            ),
            upd(
                2,
                Transition::Fail {
                    attempt: 1,
                    result: failed_result(FailureReason::Corrupt),
                },
            ),
        ])
        .await
        .expect("updates");
    assert_eq!(applied, vec![true, false, false, false, true, true]);

    let t0 = s.get_task(&uid, 0).await.expect("get").expect("task 0");
    assert_eq!(t0.state, TaskState::Succeeded);
    assert_eq!(
        t0.result.as_ref().and_then(|r| r.text.as_deref()),
        Some("zero"),
        "first result kept"
    );
    let t1 = s.get_task(&uid, 1).await.expect("get").expect("task 1");
    assert_eq!((t1.state, t1.not_before_ms), (TaskState::Pending, 5_000));
    assert_eq!(t1.result.as_ref().and_then(|r| r.reason), Some(FailureReason::Timeout));
    let t2 = s.get_task(&uid, 2).await.expect("get").expect("task 2");
    assert_eq!(t2.state, TaskState::Failed);

    assert!(
        s.lease_tasks(lease(&uid, 10, 4_999))
            .await
            .expect("lease")
            .tasks
            .is_empty(),
        "retry waits"
    );
    let again = s.lease_tasks(lease(&uid, 10, 5_000)).await.expect("lease");
    assert_eq!(
        again.tasks.iter().map(|t| (t.index, t.attempts)).collect::<Vec<_>>(),
        vec![(1, 2)]
    );

    let c = s.task_counts(&uid).await.expect("counts").files;
    assert_eq!(
        (c.total, c.pending, c.dispatched, c.succeeded, c.failed),
        (3, 0, 1, 1, 1)
    );

    let sum = s.summarize(&uid).await.expect("summary");
    assert_eq!((sum.pages, sum.words), (1, 2));
    assert_eq!(sum.failures_by_reason.get("corrupt"), Some(&1));
    assert_eq!(sum.nodes, vec!["n1", "n2"]);
}

/// A batch of results larger than any one write a backend may send at once
/// (MongoDB's go in bulk, 1,000 to a command): each says whether it
/// applied, whatever else the batch holds, and a batch sent twice applies
/// nothing the second time.
pub async fn many_results_at_once(s: &dyn Store) {
    const N: u64 = 2_345;
    let a = s.apply_job(job("many")).await.expect("create").job;
    let uid = a.uid().to_owned();
    s.insert_tasks(&uid, tasks(N)).await.expect("insert");
    let leased = s.lease_tasks(lease(&uid, N as usize, 0)).await.expect("lease");
    assert_eq!(leased.tasks.len(), N as usize);
    // Every 7th file answers for an attempt it is not at, and one result
    // names a file the job does not have: those do not apply.
    let batch = |text: &str| -> Vec<TaskUpdate> {
        (0..N)
            .map(|i| match i % 7 {
                3 => update(
                    &uid,
                    i,
                    Transition::Fail {
                        attempt: 2,
                        result: failed_result(FailureReason::Corrupt),
                    },
                ),
                5 => update(
                    &uid,
                    i,
                    Transition::Retry {
                        attempt: 1,
                        not_before_ms: 0,
                        result: failed_result(FailureReason::Timeout),
                    },
                ),
                _ => update(
                    &uid,
                    i,
                    Transition::Succeed {
                        result: ok_result(&format!("{text} {i}")),
                    },
                ),
            })
            .chain(std::iter::once(update(
                &uid,
                N + 10,
                Transition::Succeed {
                    result: ok_result("nobody"),
                },
            )))
            .collect()
    };
    let applied = s.apply_updates(batch("first")).await.expect("updates");
    let expected: Vec<bool> = (0..N).map(|i| i % 7 != 3).chain([false]).collect();
    assert_eq!(applied, expected);
    let t = s.get_task(&uid, 1_000).await.expect("get").expect("task");
    assert_eq!(t.result.and_then(|r| r.text).as_deref(), Some("first 1000"));

    // Sent again: the succeeded are final, the retried are pending (a
    // retry applies only to a dispatched task), the rest were never moved.
    let again = s.apply_updates(batch("second")).await.expect("updates");
    assert_eq!(again, vec![false; N as usize + 1]);
    let t = s.get_task(&uid, 1_000).await.expect("get").expect("task");
    assert_eq!(
        t.result.and_then(|r| r.text).as_deref(),
        Some("first 1000"),
        "first result kept"
    );

    let c = s.task_counts(&uid).await.expect("counts").files;
    let (retried, wrong) = (
        (0..N).filter(|i| i % 7 == 5).count() as u64,
        (0..N).filter(|i| i % 7 == 3).count() as u64,
    );
    assert_eq!(
        (c.total, c.pending, c.dispatched, c.succeeded, c.failed),
        (N, retried, wrong, N - retried - wrong, 0)
    );
}

fn range_update(uid: &str, index: u64, part: u32, transition: Transition) -> TaskUpdate {
    TaskUpdate {
        part,
        ..update(uid, index, transition)
    }
}

/// A split file waits in `Split` while its ranges are leased (before new
/// files) and answered; once none is at work it is ready, and assembling
/// it finishes the file and removes its ranges. Page counts follow.
/// An object's size and ETag, as listed, come back with its task on every
/// read, and a split object's ranges read the same version.
pub async fn object_versions(s: &dyn Store) {
    let a = s.apply_job(job("a")).await.expect("create").job;
    let uid = a.uid().to_owned();
    let tagged = ObjectVersion {
        size: 5_000_000_000_000,
        etag: Some("\"9b2cf535f27731c974343645a3985328-2\"".into()),
    };
    let untagged = ObjectVersion { size: 0, etag: None };
    s.insert_tasks(
        &uid,
        vec![
            NewTask::object(0, "scans/a.pdf", tagged.clone()),
            NewTask::object(1, "scans/b.png", untagged.clone()),
            NewTask::file(2, "c.png"),
        ],
    )
    .await
    .expect("insert");
    let versions = |tasks: &[super::TaskRecord]| -> Vec<Option<ObjectVersion>> {
        tasks.iter().map(|t| t.version.clone()).collect()
    };
    let expected = vec![Some(tagged.clone()), Some(untagged), None];
    let leased = s.lease_tasks(lease(&uid, 10, 0)).await.expect("lease").tasks;
    assert_eq!(versions(&leased), expected, "as leased");
    let listed = s.list_tasks(&uid, None, 10).await.expect("list");
    assert_eq!(versions(&listed), expected, "as listed");

    s.apply_updates(vec![update(
        &uid,
        0,
        Transition::Split {
            pages: 20,
            ranges: PageRange::split(20, 8),
        },
    )])
    .await
    .expect("split");
    let parts = s.list_parts(&uid, 0).await.expect("parts");
    assert_eq!(parts.len(), 3);
    assert!(
        parts.iter().all(|p| p.version.as_ref() == Some(&tagged)),
        "each range reads the listed version: {parts:?}"
    );
    let file = s.get_task(&uid, 0).await.expect("get").expect("file 0");
    assert_eq!(file.version, Some(tagged));
}

pub async fn split_files_and_their_ranges(s: &dyn Store) {
    let a = s.apply_job(job("a")).await.expect("create").job;
    let uid = a.uid().to_owned();
    s.insert_tasks(&uid, tasks(3)).await.expect("insert");
    let first = s.lease_tasks(lease(&uid, 1, 0)).await.expect("lease").tasks;
    assert_eq!(
        first.iter().map(|t| (t.index, t.part)).collect::<Vec<_>>(),
        vec![(0, 0)]
    );
    let ranges = PageRange::split(20, 8);
    let split = |ranges: Vec<PageRange>| Transition::Split { pages: 20, ranges };
    let applied = s
        .apply_updates(vec![
            update(&uid, 0, split(ranges.clone())),
            update(&uid, 0, split(ranges.clone())),
        ])
        .await
        .expect("split");
    assert_eq!(
        applied,
        vec![true, false],
        "a second split of the same file changes nothing"
    );
    let file = s.get_task(&uid, 0).await.expect("get").expect("file 0");
    assert_eq!(file.state, TaskState::Split);
    let c = s.task_counts(&uid).await.expect("counts");
    assert_eq!((c.files.total, c.files.pending, c.files.dispatched), (3, 2, 1));
    assert_eq!(
        c.pages,
        PageCounts { total: 22, done: 0 },
        "20 pages known, 2 files unopened"
    );
    assert_eq!(c.in_flight, 0, "a split file is not in flight itself");
    assert_eq!(c.split, 1, "one file waits for its ranges");

    let parts = s.list_parts(&uid, 0).await.expect("parts");
    assert_eq!(
        parts.iter().map(|p| (p.part, p.pages, p.state)).collect::<Vec<_>>(),
        vec![
            (1, Some(ranges[0]), TaskState::Pending),
            (2, Some(ranges[1]), TaskState::Pending),
            (3, Some(ranges[2]), TaskState::Pending)
        ]
    );
    assert_eq!(parts[0].path, "f00000.png");
    let listed = s.list_tasks(&uid, None, 10).await.expect("list");
    assert_eq!(listed.len(), 3, "files only: {listed:?}");

    let leased = s.lease_tasks(lease(&uid, 3, 0)).await.expect("lease").tasks;
    assert_eq!(
        leased.iter().map(|t| (t.index, t.part)).collect::<Vec<_>>(),
        vec![(0, 1), (0, 2), (0, 3)],
        "a started file's ranges go before new files"
    );
    assert_eq!(s.task_counts(&uid).await.expect("counts").in_flight, 3);
    assert!(
        s.split_ready(&uid, 10).await.expect("ready").is_empty(),
        "ranges at work"
    );

    let range_ok = |first: u32, last: u32| FileResult {
        pages: last - first + 1,
        page_info: (first..=last)
            .map(|number| PageInfo {
                number,
                source: PageSource::Ocr,
                confidence: 90.0,
                rotation: 0,
            })
            .collect(),
        staged: Some(format!("r{first}")),
        ..ok_result(&format!("pages {first}-{last}"))
    };
    let applied = s
        .apply_updates(vec![
            range_update(&uid, 0, 1, Transition::Succeed { result: range_ok(1, 8) }),
            range_update(
                &uid,
                0,
                2,
                Transition::Succeed {
                    result: range_ok(9, 16),
                },
            ),
            range_update(
                &uid,
                0,
                2,
                Transition::Succeed {
                    result: range_ok(9, 16),
                },
            ),
        ])
        .await
        .expect("ranges");
    assert_eq!(applied, vec![true, true, false]);
    let c = s.task_counts(&uid).await.expect("counts");
    assert_eq!(c.pages.done, 16);
    assert!(
        s.split_ready(&uid, 10).await.expect("ready").is_empty(),
        "one range left"
    );
    s.apply_updates(vec![range_update(
        &uid,
        0,
        3,
        Transition::Succeed {
            result: range_ok(17, 20),
        },
    )])
    .await
    .expect("last range");
    let ready = s.split_ready(&uid, 10).await.expect("ready");
    assert_eq!(ready.iter().map(|t| t.index).collect::<Vec<_>>(), vec![0]);
    assert_eq!(ready[0].result.as_ref().map(|r| r.pages), Some(20), "its page count");
    let parts = s.list_parts(&uid, 0).await.expect("parts");
    assert_eq!(parts[1].result.as_ref().and_then(|r| r.staged.as_deref()), Some("r9"));
    assert_eq!(parts[2].result.as_ref().map(|r| r.page_info.len()), Some(4));

    let assembled = FileResult {
        pages: 20,
        ..ok_result("all twenty pages")
    };
    let assemble = |result: FileResult| Transition::Assemble {
        succeeded: true,
        result,
    };
    let applied = s
        .apply_updates(vec![
            update(&uid, 0, assemble(assembled.clone())),
            update(&uid, 0, assemble(assembled.clone())),
        ])
        .await
        .expect("assemble");
    assert_eq!(applied, vec![true, false], "assembled once");
    let file = s.get_task(&uid, 0).await.expect("get").expect("file 0");
    assert_eq!(file.state, TaskState::Succeeded);
    assert_eq!(
        file.result.as_ref().and_then(|r| r.text.as_deref()),
        Some("all twenty pages")
    );
    assert!(s.list_parts(&uid, 0).await.expect("parts").is_empty(), "ranges removed");
    let c = s.task_counts(&uid).await.expect("counts");
    assert_eq!(c.pages, PageCounts { total: 22, done: 20 });
    assert_eq!((c.files.succeeded, c.files.pending), (1, 2));
    assert_eq!(c.split, 0, "assembled");
    assert_eq!(
        s.summarize(&uid).await.expect("summary").pages,
        20,
        "ranges not counted twice"
    );
}

/// A range that fails for good makes its file ready (to be failed); a split
/// file whose ranges are missing is ready too (to get them back); a failed
/// split file retried starts whole again.
pub async fn a_failed_range_and_lost_ranges(s: &dyn Store) {
    let a = s.apply_job(job("a")).await.expect("create").job;
    let uid = a.uid().to_owned();
    s.insert_tasks(&uid, tasks(2)).await.expect("insert");
    s.lease_tasks(lease(&uid, 2, 0)).await.expect("lease");
    let ranges = PageRange::split(10, 8);
    s.apply_updates(vec![
        update(
            &uid,
            0,
            Transition::Split {
                pages: 10,
                ranges: ranges.clone(),
            },
        ),
        update(
            &uid,
            1,
            Transition::Split {
                pages: 10,
                ranges: Vec::new(),
            },
        ),
    ])
    .await
    .expect("split");
    let ready = s.split_ready(&uid, 10).await.expect("ready");
    assert_eq!(
        ready.iter().map(|t| t.index).collect::<Vec<_>>(),
        vec![1],
        "file 1 lost its ranges"
    );
    s.insert_tasks(&uid, NewTask::ranges(1, "f00001.png", None, &ranges))
        .await
        .expect("put back");
    assert!(s.split_ready(&uid, 10).await.expect("ready").is_empty());

    let leased = s.lease_tasks(lease(&uid, 10, 0)).await.expect("lease").tasks;
    assert_eq!(leased.len(), 4);
    s.apply_updates(vec![
        range_update(
            &uid,
            0,
            1,
            Transition::Fail {
                attempt: 1,
                result: failed_result(FailureReason::TooLarge),
            },
        ),
        range_update(
            &uid,
            0,
            2,
            Transition::Succeed {
                result: ok_result("tail"),
            },
        ),
    ])
    .await
    .expect("ranges");
    let ready = s.split_ready(&uid, 10).await.expect("ready");
    assert_eq!(ready.iter().map(|t| t.index).collect::<Vec<_>>(), vec![0]);
    let failed = FileResult {
        pages: 10,
        ..failed_result(FailureReason::TooLarge)
    };
    let applied = s
        .apply_updates(vec![update(
            &uid,
            0,
            Transition::Assemble {
                succeeded: false,
                result: failed,
            },
        )])
        .await
        .expect("assemble");
    assert_eq!(applied, vec![true]);
    let c = s.task_counts(&uid).await.expect("counts");
    assert_eq!((c.files.failed, c.files.dispatched), (1, 1));
    assert_eq!(
        s.summarize(&uid)
            .await
            .expect("summary")
            .failures_by_reason
            .get("tooLarge"),
        Some(&1)
    );

    assert_eq!(s.retry_failed(&uid).await.expect("retry"), 1);
    let file = s.get_task(&uid, 0).await.expect("get").expect("file 0");
    assert_eq!((file.state, file.attempts, file.result), (TaskState::Pending, 0, None));
    assert!(s.list_parts(&uid, 0).await.expect("parts").is_empty());
    assert_eq!(s.list_parts(&uid, 1).await.expect("parts").len(), 2, "file 1 untouched");
}

/// An expired dispatch comes back; past `max_attempts` the task fails.
pub async fn expired_leases_and_attempts(s: &dyn Store) {
    let a = s.apply_job(job("a")).await.expect("create").job;
    let uid = a.uid().to_owned();
    s.insert_tasks(&uid, tasks(1)).await.expect("insert");
    let mut req = lease(&uid, 5, 0);
    req.max_attempts = 2;
    assert_eq!(s.lease_tasks(req.clone()).await.expect("1st").tasks.len(), 1);
    req.now_ms = 500;
    assert!(
        s.lease_tasks(req.clone()).await.expect("early").tasks.is_empty(),
        "lease still valid"
    );
    req.now_ms = 1_000;
    let second = s.lease_tasks(req.clone()).await.expect("2nd");
    assert_eq!(second.tasks.iter().map(|t| t.attempts).collect::<Vec<_>>(), vec![2]);
    req.now_ms = 2_000;
    let third = s.lease_tasks(req).await.expect("3rd");
    assert!(third.tasks.is_empty());
    assert_eq!(third.exhausted, 1);
    let t = s.get_task(&uid, 0).await.expect("get").expect("task");
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.result.and_then(|r| r.reason), Some(FailureReason::AttemptsExceeded));
}

/// Renewing a job's leases moves their end later, never earlier, and only
/// for that job's dispatched tasks.
pub async fn renewed_leases(s: &dyn Store) {
    let a = s.apply_job(job("a")).await.expect("create a").job;
    let b = s.apply_job(job("b")).await.expect("create b").job;
    let (ua, ub) = (a.uid().to_owned(), b.uid().to_owned());
    s.insert_tasks(&ua, tasks(3)).await.expect("insert a");
    s.insert_tasks(&ub, tasks(1)).await.expect("insert b");
    assert_eq!(s.lease_tasks(lease(&ua, 2, 0)).await.expect("lease a").tasks.len(), 2);
    assert_eq!(s.lease_tasks(lease(&ub, 1, 0)).await.expect("lease b").tasks.len(), 1);
    assert_eq!(s.count_in_flight(&ua).await.expect("in flight"), 2);
    assert_eq!(s.count_in_flight(&ub).await.expect("in flight"), 1);
    assert_eq!(s.task_counts(&ua).await.expect("counts").in_flight, 2);
    assert_eq!(s.renew_leases(&ua, 5_000).await.expect("renew"), 2);
    assert_eq!(
        s.renew_leases(&ua, 3_000).await.expect("renew earlier"),
        0,
        "a lease is never shortened"
    );
    let t0 = s.get_task(&ua, 0).await.expect("get").expect("t0");
    assert_eq!((t0.state, t0.lease_until_ms), (TaskState::Dispatched, 5_000));
    let t2 = s.get_task(&ua, 2).await.expect("get").expect("t2");
    assert_eq!(
        t2.state,
        TaskState::Pending,
        "a pending task is not leased by a renewal"
    );
    let later = s.lease_tasks(lease(&ua, 5, 2_000)).await.expect("lease a later");
    assert_eq!(s.count_in_flight(&ua).await.expect("in flight"), 3);
    assert_eq!(
        later.tasks.iter().map(|t| (t.index, t.attempts)).collect::<Vec<_>>(),
        vec![(2, 1)],
        "the renewed leases still hold; only the pending task is taken"
    );
    let other = s.lease_tasks(lease(&ub, 5, 2_000)).await.expect("lease b later");
    assert_eq!(
        other.tasks.iter().map(|t| (t.index, t.attempts)).collect::<Vec<_>>(),
        vec![(0, 2)],
        "another job's lease was not renewed: it ran out and the task is sent again"
    );
    let after = s.lease_tasks(lease(&ua, 5, 5_000)).await.expect("lease a after");
    let mut again: Vec<u64> = after.tasks.iter().map(|t| t.index).collect();
    again.sort_unstable();
    assert_eq!(
        again,
        vec![0, 1, 2],
        "once the renewed leases end, their tasks are sent again"
    );
}

/// Un-leasing and resetting put tasks back to pending.
pub async fn unlease_and_reset(s: &dyn Store) {
    let a = s.apply_job(job("a")).await.expect("create").job;
    let uid = a.uid().to_owned();
    s.insert_tasks(&uid, tasks(4)).await.expect("insert");
    s.lease_tasks(lease(&uid, 4, 0)).await.expect("lease");
    assert_eq!(s.unlease_tasks(&uid, &[(0, 0), (1, 0)]).await.expect("unlease"), 2);
    let t0 = s.get_task(&uid, 0).await.expect("get").expect("t0");
    assert_eq!(
        (t0.state, t0.attempts),
        (TaskState::Pending, 0),
        "an unleased dispatch does not count"
    );
    assert_eq!(s.reset_dispatched().await.expect("reset"), 2);
    let c = s.task_counts(&uid).await.expect("counts").files;
    assert_eq!((c.pending, c.dispatched), (4, 0));
    let t3 = s.get_task(&uid, 3).await.expect("get").expect("t3");
    assert_eq!(
        t3.attempts, 1,
        "a reset dispatch still counts (it may have killed the process)"
    );
}

/// Retrying puts failed tasks, and only those, back to pending with no
/// attempts and no result.
pub async fn retry_failed_files(s: &dyn Store) {
    let a = s.apply_job(job("a")).await.expect("create").job;
    let uid = a.uid().to_owned();
    s.insert_tasks(&uid, tasks(3)).await.expect("insert");
    s.lease_tasks(lease(&uid, 3, 0)).await.expect("lease");
    let upd = |index, transition| update(&uid, index, transition);
    let applied = s
        .apply_updates(vec![
            upd(
                0,
                Transition::Succeed {
                    result: ok_result("zero"),
                },
            ),
            upd(
                1,
                Transition::Fail {
                    attempt: 1,
                    result: failed_result(FailureReason::Corrupt),
                },
            ),
        ])
        .await
        .expect("updates");
    assert_eq!(applied, vec![true, true]);
    assert_eq!(s.retry_failed(&uid).await.expect("retry"), 1);
    let t1 = s.get_task(&uid, 1).await.expect("get").expect("t1");
    assert_eq!((t1.state, t1.attempts), (TaskState::Pending, 0));
    assert!(
        t1.result
            .as_ref()
            .is_none_or(|r| r.reason.is_none() && r.error.is_none()),
        "{t1:?}"
    );
    let t0 = s.get_task(&uid, 0).await.expect("get").expect("t0");
    assert_eq!(t0.state, TaskState::Succeeded, "a success stays");
    let c = s.task_counts(&uid).await.expect("counts").files;
    assert_eq!((c.succeeded, c.failed, c.pending, c.dispatched), (1, 0, 1, 1));
    assert_eq!(s.retry_failed(&uid).await.expect("again"), 0, "nothing left to retry");
    let again = s.lease_tasks(lease(&uid, 3, 0)).await.expect("lease again");
    assert_eq!(again.tasks.iter().map(|t| t.index).collect::<Vec<_>>(), vec![1]);
}

/// Tasks page in index order.
pub async fn list_tasks_pages(s: &dyn Store) {
    let a = s.apply_job(job("a")).await.expect("create").job;
    let uid = a.uid().to_owned();
    s.insert_tasks(&uid, tasks(25)).await.expect("insert");
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.list_tasks(&uid, after, 10).await.expect("page");
        if page.is_empty() {
            break;
        }
        after = page.last().map(|t| t.index);
        seen.extend(page.into_iter().map(|t| t.index));
    }
    assert_eq!(seen, (0..25).collect::<Vec<_>>());
    assert_eq!(s.delete_tasks(&uid).await.expect("delete"), 25);
}

/// One holder at a time; a lease can be taken over once it expires.
pub async fn controller_lease(s: &dyn Store) {
    let a = s.acquire_lease("controller", "a", 0, 1_000).await.expect("a");
    assert_eq!(a.holder, "a");
    let b = s.acquire_lease("controller", "b", 500, 1_000).await.expect("b");
    assert_eq!(b.holder, "a", "b must wait");
    let a2 = s.acquire_lease("controller", "a", 900, 1_000).await.expect("renew");
    assert_eq!((a2.holder.as_str(), a2.expires_ms), ("a", 1_900));
    let b2 = s
        .acquire_lease("controller", "b", 2_000, 1_000)
        .await
        .expect("takeover");
    assert_eq!(b2.holder, "b");
    let a3 = s.acquire_lease("controller", "a", 2_100, 1_000).await.expect("a again");
    assert_eq!(a3.holder, "b", "a lost it");
    s.release_lease("controller", "b").await.expect("release");
    let a4 = s.acquire_lease("controller", "a", 2_200, 1_000).await.expect("free");
    assert_eq!(a4.holder, "a");
}

/// The lease generation moves up when the lease changes hands, only then;
/// writes through a store fenced by one term apply during it and are
/// refused, changing nothing, once another controller took the lease.
pub async fn fenced_writes(s: &dyn Store) {
    let a = s.acquire_lease("controller", "a", 0, 1_000).await.expect("a");
    let renewed = s.acquire_lease("controller", "a", 500, 1_000).await.expect("renew");
    assert_eq!(renewed.generation, a.generation, "a renewal is the same term");
    let mine = s.fenced(Fence::of("controller", &a));
    let uid = s.apply_job(job("fenced")).await.expect("apply").job.uid().to_owned();
    mine.add_finalizer("fenced", &uid).await.expect("a's term writes");
    mine.insert_tasks(&uid, tasks(4)).await.expect("insert in a's term");
    let running = BulkJobStatus {
        phase: Phase::Running,
        ..BulkJobStatus::default()
    };
    mine.update_status("fenced", &uid, &running)
        .await
        .expect("status in a's term");
    let leased = mine.lease_tasks(lease(&uid, 2, 0)).await.expect("lease in a's term");
    assert_eq!(leased.tasks.len(), 2);

    let b = s
        .acquire_lease("controller", "b", 2_000, 1_000)
        .await
        .expect("takeover");
    assert_eq!(b.holder, "b");
    assert!(b.generation > a.generation, "{b:?} after {a:?}");
    let theirs = s.fenced(Fence::of("controller", &b));
    let succeeded = BulkJobStatus {
        phase: Phase::Succeeded,
        ..BulkJobStatus::default()
    };
    theirs
        .update_status("fenced", &uid, &succeeded)
        .await
        .expect("b's term writes");

    let fenced = |what: &str, r: Result<(), StoreError>| match r {
        Err(StoreError::Fenced { holder, generation, .. }) => {
            assert_eq!((holder.as_str(), generation), ("b", b.generation), "{what}");
        }
        other => panic!("{what} in a deposed term: {other:?}"),
    };
    fenced("status", mine.update_status("fenced", &uid, &running).await);
    fenced("finalizer", mine.remove_finalizer("fenced", &uid).await);
    fenced("insert", mine.insert_tasks(&uid, tasks(6)).await.map(drop));
    fenced("lease", mine.lease_tasks(lease(&uid, 2, 0)).await.map(drop));
    let keys: Vec<(u64, u32)> = leased.tasks.iter().map(|t| (t.index, t.part)).collect();
    fenced("unlease", mine.unlease_tasks(&uid, &keys).await.map(drop));
    fenced("renew", mine.renew_leases(&uid, i64::MAX).await.map(drop));
    let done = update(
        &uid,
        0,
        Transition::Succeed {
            result: ok_result("late"),
        },
    );
    fenced("results", mine.apply_updates(vec![done]).await.map(drop));
    fenced("retry", mine.retry_failed(&uid).await.map(drop));
    fenced("reset", mine.reset_dispatched().await.map(drop));
    fenced("delete tasks", mine.delete_tasks(&uid).await.map(drop));

    let job = s.get_job("fenced").await.expect("get").expect("still there");
    assert_eq!(
        job.status.as_ref().map(|st| st.phase),
        Some(Phase::Succeeded),
        "b's status stands"
    );
    assert!(job.has_finalizer(), "the finalizer stays");
    let counts = s.task_counts(&uid).await.expect("counts");
    let files = counts.files;
    assert_eq!((files.total, files.dispatched, files.succeeded), (4, 2, 0), "{files:?}");

    // Released and taken by a again: a new term, above b's.
    s.release_lease("controller", "b").await.expect("release");
    let again = s.acquire_lease("controller", "a", 2_100, 1_000).await.expect("a again");
    assert_eq!(again.holder, "a");
    assert!(again.generation > b.generation, "{again:?} after {b:?}");
    fenced_again(&*mine).await;
    s.fenced(Fence::of("controller", &again))
        .update_status("fenced", &uid, &running)
        .await
        .expect("a's new term writes");
}

/// A term's store stays refused after its holder leads again (that is a
/// new term, with a new fence).
async fn fenced_again(old: &dyn Store) {
    let err = old.reset_dispatched().await.expect_err("an old term's write");
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
}
