//! The listing of an S3 prefix of 100,000 objects (long keys) against a
//! real S3 server (s3s-fs): every key once, in order, and the process's
//! memory flat from page to page. Alone in its own test binary, so that no
//! other test's memory shows in the process's.
//!
//! Needs `SKEP_TEST_S3` (see `s3_source.rs`).

use std::path::PathBuf;

use skep::objects::{LIST_PAGE, ObjectStores, S3Settings};
use skep_api::ObjectUrl;

const OBJECTS: usize = 100_000;
const FOLDERS: usize = 100;

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_of_100k_objects_is_paged_in_flat_memory() {
    let Some(line) = skep_testkit::server_from_env(
        "SKEP_TEST_S3",
        "SKEP_TEST_S3=\"$(scripts/s3-test-server.sh start DIR PORT) DIR/data\"",
    ) else {
        return;
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.len(), 4, "SKEP_TEST_S3 holds ENDPOINT ACCESS_KEY SECRET_KEY DATA_DIR");
    let bucket = format!("skep-list-{}", uuid::Uuid::new_v4().simple());
    let root = PathBuf::from(f[3]).join(&bucket);
    // Keys of ~800 bytes: four folder levels of 200 characters. Written
    // straight into the server's folder (s3s-fs keeps objects as files),
    // which is much faster than 100,000 PUTs.
    let long = |c: char, i: usize| format!("{c}{i:03}{}", c.to_string().repeat(196));
    let mut expected = Vec::with_capacity(OBJECTS);
    for d in 0..FOLDERS {
        let rel = format!("{}/{}/{}/{}", long('a', d), long('b', d), long('c', d), long('d', d));
        let dir = root.join("big").join(&rel);
        std::fs::create_dir_all(&dir).expect("folder");
        for i in 0..OBJECTS / FOLDERS {
            let name = format!("{i:05}.png");
            std::fs::write(dir.join(&name), b"").expect("object");
            expected.push(format!("{rel}/{name}"));
        }
    }
    expected.sort();
    let key_bytes: usize = expected.iter().map(String::len).sum();

    let stores = ObjectStores::new(S3Settings {
        endpoint: Some(f[0].to_owned()),
        region: "us-east-1".into(),
        access_key_id: f[1].to_owned(),
        secret_access_key: f[2].to_owned(),
        session_token: None,
        virtual_hosted: false,
    });
    let url = ObjectUrl::parse(&format!("s3://{bucket}/big")).expect("url");
    let mut lister = stores.lister(&url, true).expect("lister");
    let mut seen = 0usize;
    let mut last = String::new();
    let mut rss_by_page = Vec::new();
    while let Some(page) = lister.next_page().await.expect("a page") {
        assert!(page.len() <= LIST_PAGE, "a page of {}", page.len());
        for o in &page {
            assert_eq!(o.rel, expected[seen], "key {seen} out of order or missing");
            assert!(o.rel > last, "keys in order, each once");
            last.clone_from(&o.rel);
            seen += 1;
        }
        drop(page);
        rss_by_page.push(rss());
    }
    assert_eq!(seen, OBJECTS);
    let pages = rss_by_page.len();
    assert!(pages >= 10, "{pages} pages");
    // Flat: from the second page on (allocator and connection warmed up),
    // memory does not grow with the pages read. Holding the keys would add
    // ~8 MB a page (10,000 keys of ~800 bytes), ~70 MB over these pages.
    let (warm, end) = (rss_by_page[1], *rss_by_page.iter().skip(1).max().expect("pages"));
    let growth = end.saturating_sub(warm);
    eprintln!(
        "listed {seen} keys ({} MB of keys) in {pages} pages; RSS after page 2 {} MB, at most {} MB",
        key_bytes >> 20,
        warm >> 20,
        end >> 20
    );
    assert!(key_bytes > 70 << 20, "keys of {key_bytes} bytes");
    assert!(
        growth < 16 << 20,
        "memory grew by {} MB over the listing: {:?}",
        growth >> 20,
        rss_by_page.iter().map(|r| r >> 20).collect::<Vec<_>>()
    );
    let _ = std::fs::remove_dir_all(&root);
}
