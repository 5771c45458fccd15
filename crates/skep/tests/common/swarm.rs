//! What the tests against the local Docker daemon share: whether they run,
//! the image their services use, and a Docker client of their own for
//! checking what skep did.

use bollard::Docker;

pub const ENABLE_VAR: &str = "SKEP_TEST_SWARM";
pub const IMAGE_VAR: &str = "SKEP_TEST_IMAGE";
pub const DEFAULT_IMAGE: &str = "skep-base:bookworm";

/// Whether the swarm tests of `suite` run: when `SKEP_TEST_SWARM=1`;
/// otherwise they skip with a note, except under `CI=true`, where this
/// panics: CI must run them. Logs go to the test output on request
/// (`SKEP_LOG=debug`).
pub fn enabled(suite: &str) -> bool {
    if let Ok(filter) = std::env::var("SKEP_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    if std::env::var(ENABLE_VAR).as_deref() == Ok("1") {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{ENABLE_VAR} is not 1 under CI=true: the {suite} tests must run in CI \
             (make this node a swarm manager, import {DEFAULT_IMAGE}, set {ENABLE_VAR}=1)"
        );
    }
    eprintln!("note: {ENABLE_VAR} is not 1; skipping the {suite} tests against the local Docker daemon");
    false
}

/// The image test services run (`sleep infinity` and the like).
pub fn image() -> String {
    std::env::var(IMAGE_VAR)
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_owned())
}

pub async fn docker() -> Docker {
    Docker::connect_with_defaults()
        .expect("docker client")
        .negotiate_version()
        .await
        .expect("docker answers")
}
