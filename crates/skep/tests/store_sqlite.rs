//! The store conformance suite against the SQLite backend, one fresh
//! database file per case.

use std::sync::Arc;

use skep::store::{SqliteStore, Store, conformance};

async fn fresh() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("skep.db")).await.expect("open");
    (dir, Arc::new(store))
}

macro_rules! cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            let (_dir, s) = fresh().await;
            conformance::$case(s.as_ref()).await;
        }
    )*};
}

skep::store_conformance_cases!(cases);

#[tokio::test]
async fn atomic_lease_under_concurrency() {
    let (_dir, s) = fresh().await;
    conformance::atomic_lease_under_concurrency(s).await;
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested").join("skep.db");
    let uid = {
        let s = SqliteStore::open(&path).await.expect("open");
        let job = skep_api::BulkJob::new("a", skep_api::BulkJobSpec::for_path("/x"));
        s.apply_job(job).await.expect("apply").job.uid().to_owned()
    };
    let s = SqliteStore::open(&path).await.expect("reopen");
    let job = s.get_job("a").await.expect("get").expect("still there");
    assert_eq!(job.uid(), uid);
}
