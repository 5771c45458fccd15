//! Black-box: `skep run` on a job whose source and outputs are S3
//! prefixes, against a real S3 server (s3s-fs, which `scripts/test.sh`
//! starts). The workers read each object through a presigned URL; the
//! controller's keys never leave it; filters apply to keys; a searchable
//! PDF of a PDF object is laid over a copy fetched for the landing; the
//! outputs are uploaded when the job ends and the working folder removed.
//!
//! Needs `SKEP_TEST_S3="ENDPOINT ACCESS_KEY SECRET_KEY DATA_DIR"` (the line
//! `scripts/s3-test-server.sh start DIR PORT` prints, then `DIR/data`);
//! elsewhere it prints why it did not run, unless `CI=true`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::{Workspace, results, text};
use skep::objects::{ObjectStores, S3Settings};
use skep::store::ObjectVersion;
use skep_api::ObjectUrl;
use skep_testkit::documents::{ScannedPdfOptions, generate_scanned_pdfs};
use skep_testkit::{PageSize, cer, load_truth};

struct S3 {
    endpoint: String,
    access: String,
    secret: String,
    data: PathBuf,
}

fn s3() -> Option<S3> {
    let line = skep_testkit::server_from_env(
        "SKEP_TEST_S3",
        "SKEP_TEST_S3=\"$(scripts/s3-test-server.sh start DIR PORT) DIR/data\"",
    )?;
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.len(), 4, "SKEP_TEST_S3 holds ENDPOINT ACCESS_KEY SECRET_KEY DATA_DIR");
    Some(S3 {
        endpoint: f[0].to_owned(),
        access: f[1].to_owned(),
        secret: f[2].to_owned(),
        data: PathBuf::from(f[3]),
    })
}

impl S3 {
    fn stores(&self) -> ObjectStores {
        ObjectStores::new(S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".into(),
            access_key_id: self.access.clone(),
            secret_access_key: self.secret.clone(),
            session_token: None,
            virtual_hosted: false,
        })
    }

    /// A new, empty bucket (s3s-fs keeps a bucket as a folder).
    fn bucket(&self, what: &str) -> String {
        let name = format!("skep-{what}-{}", uuid::Uuid::new_v4().simple());
        std::fs::create_dir_all(self.data.join(&name)).expect("bucket folder");
        name
    }

    /// The flags of a controller reaching this server, keys in files of
    /// `dir`.
    fn flags(&self, dir: &Path) -> Vec<String> {
        let id = dir.join("s3-access-key-id");
        let secret = dir.join("s3-secret-access-key");
        std::fs::write(&id, format!("{}\n", self.access)).expect("key file");
        std::fs::write(&secret, format!("{}\n", self.secret)).expect("key file");
        vec![
            "--s3-endpoint".into(),
            self.endpoint.clone(),
            "--s3-access-key-id-file".into(),
            id.display().to_string(),
            "--s3-secret-access-key-file".into(),
            secret.display().to_string(),
        ]
    }
}

/// The flags of a controller reaching the server with a secret key it
/// does not take.
fn wrong_secret(s3: &S3, dir: &Path) -> Vec<String> {
    let mut flags = s3.flags(dir);
    let wrong = dir.join("wrong-secret");
    std::fs::write(&wrong, "0123456789abcdef0123456789abcdef01234567\n").expect("key file");
    flags[5] = wrong.display().to_string();
    flags
}

/// Uploads every file under `dir` as `prefix` + its relative path.
async fn upload(stores: &ObjectStores, bucket: &str, dir: &Path, prefix: &str) -> usize {
    let mut n = 0;
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.expect("walk");
        if !e.file_type().is_file() {
            continue;
        }
        let rel = e
            .path()
            .strip_prefix(dir)
            .expect("under dir")
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(e.path()).expect("read");
        stores
            .put(bucket, &format!("{prefix}{rel}"), Bytes::from(bytes))
            .await
            .expect("put");
        n += 1;
    }
    n
}

/// Writes job `name` with `source` lines (indented four spaces) and
/// `rest` under `spec:`.
fn job_file(ws: &Workspace, name: &str, source: &str, rest: &str) -> PathBuf {
    let path = ws.path().join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!("apiVersion: skep.dev/v1\nkind: BulkJob\nmetadata:\n  name: {name}\nspec:\n  source:\n{source}{rest}"),
    )
    .expect("job file");
    path
}

fn run(ws: &Workspace, job: &Path, flags: &[String]) -> (serde_json::Value, String) {
    let out = ws
        .skep()
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["run", "-f", &job.display().to_string(), "-o", "json", "--quiet"])
        .args(flags)
        .output()
        .expect("skep runs");
    let all = text(&out);
    let job = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {all}"));
    (job, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_an_s3_prefix_reads_through_presigned_urls_and_writes_to_s3() {
    let Some(s3) = s3() else { return };
    let stores = s3.stores();
    let bucket = s3.bucket("src");
    let out_bucket = s3.bucket("out");
    let ws = Workspace::new(6, None, true);
    let pdfs = ws.path().join("pdfs");
    let truth = ws.path().join("truth");
    let scanned = generate_scanned_pdfs(
        &pdfs,
        &truth,
        &ScannedPdfOptions {
            files: 1,
            pages_per_file: 2,
            size: PageSize::Small,
            seed: 5,
        },
    )
    .expect("a scanned PDF");
    let mut n = upload(&stores, &bucket, &ws.path().join("pages"), "scans/2024/").await;
    n += upload(&stores, &bucket, &pdfs, "scans/2024/").await;
    // Beside the prefix, and filtered out: none of these is read.
    for key in [
        "scans/2024/notes.txt",
        "scans/2024/drafts/old.png",
        "scans/2025/next.png",
        "scans/20240.png",
        "other.png",
    ] {
        stores
            .put(&bucket, key, Bytes::from_static(b"not read"))
            .await
            .expect("put");
    }
    assert_eq!(n, ws.files.len() + 1);

    let job = job_file(
        &ws,
        "s3",
        &format!("    url: s3://{bucket}/scans/2024\n    exclude: [drafts]\n"),
        &format!("  output:\n    url: s3://{out_bucket}/results/run1\n    formats: [txt, hocr, pdf, report]\n"),
    );
    let (job, all) = run(&ws, &job, &s3.flags(ws.path()));
    assert!(!all.contains(&s3.secret), "the secret key was printed: {all}");
    assert_eq!(job["status"]["phase"], "Succeeded", "{all}");
    assert_eq!(job["status"]["files"]["total"], n, "{all}");

    // The outputs are objects under the output prefix: fetched back here.
    let out = ws.path().join("fetched");
    let out_url = ObjectUrl::parse(&format!("s3://{out_bucket}/results/run1")).expect("url");
    let mut listed = Vec::new();
    let mut lister = stores.lister(&out_url, true).expect("lister");
    while let Some(page) = lister.next_page().await.expect("a page") {
        listed.extend(page);
    }
    for o in &listed {
        let to = out.join(&o.rel);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("folder");
        let version = ObjectVersion {
            size: o.size,
            etag: o.etag.clone(),
        };
        let n = stores
            .download(&out_bucket, &out_url.key(&o.rel), Some(&version), &to, 1 << 30)
            .await
            .expect("download")
            .expect("the listed version");
        assert_eq!(n, o.size, "{}", o.rel);
    }
    let keys: Vec<String> = listed.into_iter().map(|o| o.rel).collect();
    assert!(
        keys.iter().all(|k| !k.starts_with(".skep")),
        "staging uploaded: {keys:?}"
    );
    assert!(keys.contains(&"report.json".to_owned()), "{keys:?}");
    let mut by_path = BTreeMap::new();
    for l in results(&out) {
        let p = l["path"].as_str().expect("path").to_owned();
        assert!(by_path.insert(p.clone(), l).is_none(), "{p} has two results");
    }
    let mut expected: Vec<String> = ws.files.iter().map(|f| f.rel_path.clone()).collect();
    expected.extend(scanned.iter().map(|f| f.rel_path.clone()));
    expected.sort();
    assert_eq!(by_path.keys().cloned().collect::<Vec<_>>(), expected);
    for f in ws.files.iter().chain(&scanned) {
        let r = &by_path[&f.rel_path];
        match &f.expect_failure {
            Some(_) => assert_eq!(r["status"], "failed", "{}: {r}", f.rel_path),
            None => {
                assert_eq!(r["status"], "succeeded", "{}: {r}", f.rel_path);
                let want = load_truth(&truth, &f.rel_path).expect("truth");
                let got = r["text"].as_str().expect("text");
                let e = cer(&want, got);
                assert!(e < 0.05, "{}: CER {e:.3}", f.rel_path);
                let txt = std::fs::read_to_string(out.join("text").join(format!("{}.txt", f.rel_path))).expect("text");
                assert_eq!(txt, got);
                let hocr = out.join("hocr").join(format!("{}.hocr", f.rel_path));
                assert!(hocr.is_file(), "{} has no hOCR", f.rel_path);
            }
        }
    }
    // The searchable PDF of the PDF object: laid over the original, which
    // the controller fetched for the landing and then removed.
    let pdf = std::fs::read(out.join("pdf").join(format!("{}.pdf", scanned[0].rel_path))).expect("searchable PDF");
    assert!(pdf.starts_with(b"%PDF"), "not a PDF");
    let copies: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("skep-source-"))
        .map(|e| e.path().display().to_string())
        .collect();
    assert!(copies.is_empty(), "fetched copies left: {copies:?}");
    // The controller's working folder is gone once the outputs are up.
    let work = ws.path().join("skep-output").join(".skep-object-outputs");
    let left: Vec<_> = walkdir::WalkDir::new(&work)
        .min_depth(1)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .collect();
    assert!(left.is_empty(), "left in the working folder: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_or_no_keys_fail_the_job_with_a_clear_message() {
    let Some(s3) = s3() else { return };
    let ws = Workspace::new(1, None, false);
    let job = job_file(&ws, "gone", "    url: s3://skep-no-such-bucket-here/x\n", "");
    let (job_doc, all) = run(&ws, &job, &s3.flags(ws.path()));
    assert_eq!(job_doc["status"]["phase"], "Failed", "{all}");
    let conditions = job_doc["status"]["conditions"].to_string();
    assert!(conditions.contains("no such bucket"), "{conditions}");
    assert!(!all.contains(&s3.secret), "the secret key was printed: {all}");

    // Outputs the server refuses (keys it does not take; s3s-fs makes a
    // missing bucket on a PUT): the job fails, and says where its outputs
    // are kept.
    let ws = Workspace::new(1, None, false);
    let out_bucket = s3.bucket("refused");
    let job = job_file(
        &ws,
        "noout",
        "    path: pages\n",
        &format!("  output:\n    url: s3://{out_bucket}/x\n"),
    );
    let (job_doc, all) = run(&ws, &job, &wrong_secret(&s3, ws.path()));
    assert_eq!(job_doc["status"]["phase"], "Failed", "{all}");
    let conditions = job_doc["status"]["conditions"].to_string();
    assert!(conditions.contains("OutputRefused"), "{conditions}");
    assert!(conditions.contains("may not do it"), "{conditions}");
    let kept = ws.path().join("skep-output").join(".skep-object-outputs");
    let results_kept = walkdir::WalkDir::new(&kept)
        .into_iter()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name() == "results.jsonl");
    assert!(results_kept, "the outputs are kept in the working folder");

    // Keys the server does not take.
    let ws = Workspace::new(1, None, false);
    let bucket = s3.bucket("badkey");
    let job = job_file(&ws, "badkey", &format!("    url: s3://{bucket}/x\n"), "");
    let (job_doc, all) = run(&ws, &job, &wrong_secret(&s3, ws.path()));
    assert_eq!(job_doc["status"]["phase"], "Failed", "{all}");
    let conditions = job_doc["status"]["conditions"].to_string();
    assert!(conditions.contains("may not do it"), "{conditions}");

    // A controller with no keys: the job says what is missing.
    let ws = Workspace::new(1, None, false);
    let bucket = s3.bucket("nokeys");
    let job = job_file(&ws, "nokeys", &format!("    url: s3://{bucket}/x\n"), "");
    let (job_doc, all) = run(&ws, &job, &[]);
    assert_eq!(job_doc["status"]["phase"], "Failed", "{all}");
    let conditions = job_doc["status"]["conditions"].to_string();
    assert!(conditions.contains("no object storage"), "{conditions}");

    // Half the keys is a usage error, before anything runs.
    let out = ws
        .skep()
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["run", "-f", &job.display().to_string(), "--s3-endpoint", &s3.endpoint])
        .output()
        .expect("skep runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("needs both an access key id and a secret"),
        "{}",
        text(&out)
    );
}

#[test]
fn an_s3_source_is_validated_at_apply() {
    let ws = Workspace::new(1, None, false);
    for (yaml, want) in [
        ("    url: s3://Bad_Bucket/x\n", "spec.source.url"),
        ("    url: s3://fine/x\n    path: pages\n", "exclusive"),
        ("    url: http://fine/x\n", "not an s3:// URL"),
        (
            "    path: pages\n  output:\n    url: s3://fine/x\n    path: /out\n",
            "spec.output: path and url are exclusive",
        ),
    ] {
        let job = job_file(&ws, "bad", yaml, "");
        let out = ws.run(&["run", "-f", &job.display().to_string(), "--quiet"]);
        assert_ne!(out.status.code(), Some(0), "{}", text(&out));
        assert!(text(&out).contains(want), "{want}: {}", text(&out));
    }
}

/// A task reads the version of its object the scan listed. Against the
/// real server: a worker's presigned GET with the listed size and ETag
/// reads it; once the object is replaced (same length, so only the ETag
/// tells), the same fetch fails `changed` at once, and so does the
/// controller's own copy for a landing.
#[tokio::test]
async fn a_replaced_object_is_never_read_as_the_listed_one() {
    let Some(s3) = s3() else { return };
    let stores = s3.stores();
    let bucket = s3.bucket("changed");
    stores
        .put(&bucket, "scans/a.png", Bytes::from_static(b"first version"))
        .await
        .expect("put");
    let url = ObjectUrl::parse(&format!("s3://{bucket}/scans")).expect("url");
    let mut lister = stores.lister(&url, true).expect("lister");
    let page = lister.next_page().await.expect("a page").expect("one page");
    assert_eq!(page.len(), 1);
    let key = url.key(&page[0].rel);
    let signed = stores
        .presign_get(&bucket, &key, std::time::Duration::from_secs(300))
        .await
        .expect("presign");
    // NB: s3s-fs lists no ETag (AWS does); the one its GET answers with
    // stands in for the listed one.
    let got = reqwest::get(&signed).await.expect("get");
    assert!(got.status().is_success(), "{}", got.status());
    let etag = got
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("the server answers with an ETag");
    let version = ObjectVersion {
        size: page[0].size,
        etag: page[0].etag.clone().or(Some(etag)),
    };
    assert_eq!(version.size, 13);

    let dir = tempfile::tempdir().expect("tempdir");
    let fetcher = skep_worker::fetch::Fetcher::new(dir.path(), 1 << 20, &[]).expect("fetcher");
    let expect = skep_worker::fetch::Expect {
        size: Some(version.size),
        etag: version.etag.as_deref(),
    };
    let limit = std::time::Duration::from_secs(30);
    let fetched = fetcher
        .fetch(&signed, Path::new("a.png"), expect, limit)
        .await
        .expect("the listed version");
    assert_eq!(std::fs::read(&fetched.path).expect("read"), b"first version");
    drop(fetched);
    let to = dir.path().join("copy-1");
    let n = stores
        .download(&bucket, &key, Some(&version), &to, 1 << 20)
        .await
        .expect("download")
        .expect("the listed version");
    assert_eq!(n, 13);

    stores
        .put(&bucket, "scans/a.png", Bytes::from_static(b"other version"))
        .await
        .expect("replace");
    let e = fetcher
        .fetch(&signed, Path::new("a.png"), expect, limit)
        .await
        .expect_err("another version");
    assert_eq!(
        (e.error.reason, e.result),
        (skep_api::FailureReason::Changed, "changed"),
        "{}",
        e.error.message
    );
    let to = dir.path().join("copy-2");
    let how = stores
        .download(&bucket, &key, Some(&version), &to, 1 << 20)
        .await
        .expect("download")
        .expect_err("another version");
    assert!(how.contains("ETag"), "{how}");
    assert!(!to.exists(), "no copy of another version");
}

/// Outputs go up several at a time as the folder is walked, each file
/// leaving the folder once its object is up: after a failure part way (a
/// name no key can carry), a repeated upload sends only what is left, and
/// `results.jsonl` goes up only once everything else is.
#[tokio::test]
async fn an_upload_repeated_after_a_failure_sends_only_what_is_left() {
    let Some(s3) = s3() else { return };
    let stores = s3.stores();
    let bucket = s3.bucket("resume");
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path();
    let mut names = Vec::new();
    for i in 0..300 {
        let rel = format!("hocr/{:02}/page-{i:04}.hocr", i % 7);
        std::fs::create_dir_all(dir.join(&rel).parent().expect("parent")).expect("folder");
        std::fs::write(dir.join(&rel), format!("page {i}")).expect("file");
        names.push(rel);
    }
    std::fs::create_dir_all(dir.join(".skep-staging/u")).expect("staging");
    std::fs::write(dir.join(".skep-staging/u/out.hocr"), "staged").expect("staged");
    std::fs::write(dir.join("results.jsonl"), "{}\n").expect("results");
    // A name no key can carry (a control character) fails the upload.
    std::fs::write(dir.join("hocr/03/bad\u{1}name.hocr"), "bad").expect("bad");
    let url = ObjectUrl::parse(&format!("s3://{bucket}/out/run")).expect("url");

    let started = std::time::Instant::now();
    let e = stores
        .upload_tree(&url, dir, &[".skep-staging"], "results.jsonl")
        .await
        .expect_err("a key that cannot be named");
    let first = started.elapsed();
    assert!(matches!(e, skep::objects::CallError::Refused(_)), "{e:?}");
    let listed = |stores: ObjectStores, url: ObjectUrl| async move {
        let mut keys = Vec::new();
        let mut lister = stores.lister(&url, true).expect("lister");
        while let Some(page) = lister.next_page().await.expect("a page") {
            keys.extend(page.into_iter().map(|o| o.rel));
        }
        keys
    };
    let up = listed(s3.stores(), url.clone()).await;
    assert!(
        !up.contains(&"results.jsonl".to_owned()),
        "results.jsonl went up before the rest: {up:?}"
    );
    for rel in &up {
        assert!(!dir.join(rel).exists(), "{rel} is up and still in the folder");
    }
    let left = walkdir::WalkDir::new(dir.join("hocr"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .count();
    assert_eq!(up.len() + left, 301, "every file is either up or still here");

    std::fs::rename(dir.join("hocr/03/bad\u{1}name.hocr"), dir.join("hocr/03/good.hocr")).expect("rename");
    let started = std::time::Instant::now();
    let n = stores
        .upload_tree(&url, dir, &[".skep-staging"], "results.jsonl")
        .await
        .expect("the rest");
    let second = started.elapsed();
    assert_eq!(n as usize, left + 1, "only what was left, then results.jsonl");
    let mut all = listed(s3.stores(), url.clone()).await;
    all.sort();
    let mut want = names.clone();
    want.extend(["hocr/03/good.hocr".to_owned(), "results.jsonl".to_owned()]);
    want.sort();
    assert_eq!(all, want, "every output once, no staging");
    assert!(!dir.join("results.jsonl").exists());
    eprintln!(
        "upload_tree: {} files up before the failure in {first:?}; the other {n} in {second:?}",
        up.len()
    );
}
