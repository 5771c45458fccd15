//! Shared pieces of the black-box tests: a generated corpus, a job file
//! pointing at it, and the real `skep` binary.

#![allow(dead_code)]

pub mod api;
pub mod swarm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use skep_testkit::{CorpusOptions, GeneratedFile, ImageFormat, PageSize, generate_corpus};

pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub files: Vec<GeneratedFile>,
}

impl Workspace {
    /// `pages` Small pages of mixed formats (plus extras) under `pages/`,
    /// truth under `truth/`.
    pub fn new(pages: usize, multipage: Option<usize>, bad_files: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = CorpusOptions {
            pages,
            seed: 11,
            size: PageSize::Small,
            formats: vec![ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Bmp, ImageFormat::Tiff],
            multipage_tiff: multipage,
            bad_files,
        };
        let files = generate_corpus(&dir.path().join("pages"), &dir.path().join("truth"), &opts).expect("generate");
        Self { dir, files }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn store(&self) -> String {
        format!("sqlite:{}", self.path().join("skep.db").display())
    }

    /// Writes `job.yaml` for job `name` with `extra` lines appended under
    /// `spec:` (indented two spaces).
    pub fn job(&self, name: &str, extra: &str) -> PathBuf {
        let p = self.path().join(format!("{name}.yaml"));
        let body = format!(
            "apiVersion: skep.dev/v1\nkind: BulkJob\nmetadata:\n  name: {name}\nspec:\n  source:\n    path: pages\n{extra}"
        );
        std::fs::write(&p, body).expect("write job");
        p
    }

    pub fn output(&self, name: &str) -> PathBuf {
        self.path().join("skep-output").join(name)
    }

    pub fn skep(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skep"));
        c.current_dir(self.path())
            .env("SKEP_STORE", self.store())
            .env_remove("SKEP_LOG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.skep().args(args).output().expect("skep runs")
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every line of a results.jsonl.
pub fn results(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path.join("results.jsonl"))
        .expect("results.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}
