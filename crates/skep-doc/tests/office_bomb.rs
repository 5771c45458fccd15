//! A zip bomb costs neither time nor memory. Alone in its test binary, so
//! that the process's peak resident size is this test's.

mod office_support;

use std::time::{Duration, Instant};

use office_support::{bomb_docx, bomb_docx_of};
use skep_api::FailureReason;
use skep_doc::office::{OfficeLimits, extract_office};

/// Peak resident set size of this process, from `/proc/self/status`.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn four_gib_bombs_are_refused_in_little_time_and_memory() {
    // 4 GiB of spaces: one endless text token.
    let spaces = bomb_docx(4096);
    // 4 GiB of `<w:p>` elements holding 64 KiB of spaces each.
    let mut chunk = Vec::with_capacity(1 << 20);
    for _ in 0..16 {
        chunk.extend_from_slice(b"<w:p>");
        chunk.resize(chunk.len() + (64 << 10) - 11, b' ');
        chunk.extend_from_slice(b"</w:p>");
    }
    assert_eq!(chunk.len(), 1 << 20);
    let elements = bomb_docx_of(&chunk, 4096);
    for bomb in [&spaces, &elements] {
        assert!(bomb.len() < 5 << 20, "{} bytes", bomb.len());
    }
    let no_ratio = OfficeLimits {
        max_ratio: u64::MAX,
        ..OfficeLimits::default()
    };
    for (bomb, limits, stopped_by) in [
        (&spaces, OfficeLimits::default(), "inflates more than 200:1"),
        (&elements, OfficeLimits::default(), "inflates more than 200:1"),
        (&spaces, no_ratio.clone(), "token longer than"),
        (&elements, no_ratio, "entry inflates to more than 134217728 bytes"),
    ] {
        let started = Instant::now();
        let err = extract_office(bomb, &limits).unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.reason, FailureReason::TooLarge, "{err}");
        assert!(err.message.contains(stopped_by), "{err}");
        assert!(took < Duration::from_secs(60), "took {took:?}");
        eprintln!("{} byte bomb refused in {took:?}: {err}", bomb.len());
    }
    if let Some(peak) = peak_rss_bytes() {
        eprintln!("peak resident size {} MiB", peak >> 20);
        // Nothing near the 128 MiB entry bound is ever held: entries are
        // streamed, and the largest buffer is one token (16 MiB).
        assert!(peak < 100 << 20, "peak resident size {} MiB", peak >> 20);
    }
}
