use crate::{API_VERSION, BulkJob, KIND};

/// One broken rule, with the dotted path of the field it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every rule a document breaks, one per line when displayed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl std::fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn check(&mut self, ok: bool, path: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.0.push(FieldError {
                path: path.to_owned(),
                message: message(),
            });
        }
    }

    /// Checks `<parent>.url`, which excludes `<parent>.path` (`no_path`:
    /// none is given).
    fn object_url(&mut self, parent: &str, url: &str, no_path: bool) {
        self.check(no_path, parent, || "path and url are exclusive: name one".to_owned());
        if let Err(message) = crate::ObjectUrl::parse(url) {
            self.check(false, &format!("{parent}.url"), || message);
        }
    }
}

/// Whether `s` is a lowercase RFC 1123 label: what Docker accepts in a
/// service name and what keeps job names safe in paths and topics.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

const DNS_LABEL_RULE: &str =
    "must be a lowercase RFC 1123 label (a-z, 0-9 and '-', starting and ending alphanumeric, at most 63 characters)";

fn is_label_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// Checks every rule of a BulkJob that the types alone do not enforce.
pub fn validate_job(job: &BulkJob) -> Result<(), ValidationErrors> {
    let mut e = Errors::default();
    e.check(job.api_version == API_VERSION, "apiVersion", || {
        format!("must be {API_VERSION:?}, got {:?}", job.api_version)
    });
    e.check(job.kind == KIND, "kind", || {
        format!("must be {KIND:?}, got {:?}", job.kind)
    });

    let m = &job.metadata;
    e.check(is_dns_label(&m.name), "metadata.name", || {
        if m.name.is_empty() {
            "is required".to_owned()
        } else {
            format!("{DNS_LABEL_RULE}, got {:?}", m.name)
        }
    });
    for (k, v) in &m.labels {
        e.check(is_label_key(k), &format!("metadata.labels.{k}"), || {
            "key must be 1-253 characters of a-z, A-Z, 0-9, '-', '_', '.', '/'".to_owned()
        });
        e.check(v.len() <= 63, &format!("metadata.labels.{k}"), || {
            "value must be at most 63 characters".to_owned()
        });
    }

    let s = &job.spec;
    match &s.source.url {
        None => e.check(!s.source.path.trim().is_empty(), "spec.source.path", || {
            "is required (or spec.source.url)".to_owned()
        }),
        Some(url) => e.object_url("spec.source", url, s.source.path.is_empty()),
    }
    for (field, globs) in [("include", &s.source.include), ("exclude", &s.source.exclude)] {
        for (i, g) in globs.iter().enumerate() {
            if let Err(err) = globset::Glob::new(g) {
                e.0.push(FieldError {
                    path: format!("spec.source.{field}[{i}]"),
                    message: format!("invalid glob {g:?}: {}", err.kind()),
                });
            }
        }
    }

    e.check(!s.engine.languages.is_empty(), "spec.engine.languages", || {
        "must name at least one language".to_owned()
    });
    for (i, lang) in s.engine.languages.iter().enumerate() {
        e.check(
            !lang.is_empty() && lang.len() <= 32 && lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            &format!("spec.engine.languages[{i}]"),
            || format!("must be a Tesseract language code like \"eng\" or \"chi_sim\", got {lang:?}"),
        );
    }
    e.check(
        (3..=13).contains(&s.engine.page_seg_mode),
        "spec.engine.pageSegMode",
        || format!("must be between 3 and 13, got {}", s.engine.page_seg_mode),
    );
    e.check((70..=2400).contains(&s.engine.dpi), "spec.engine.dpi", || {
        format!("must be between 70 and 2400, got {}", s.engine.dpi)
    });
    if let Some(p) = &s.output.path {
        e.check(!p.trim().is_empty(), "spec.output.path", || {
            "must not be empty when given".to_owned()
        });
    }
    if let Some(url) = &s.output.url {
        e.object_url("spec.output", url, s.output.path.is_none());
    }

    let sc = &s.scaling;
    e.check(is_dns_label(&sc.pool), "spec.scaling.pool", || {
        format!("{DNS_LABEL_RULE}, got {:?}", sc.pool)
    });
    e.check(sc.files_per_worker >= 1, "spec.scaling.filesPerWorker", || {
        "must be >= 1".to_owned()
    });
    e.check(sc.max_replicas >= 1, "spec.scaling.maxReplicas", || {
        "must be >= 1".to_owned()
    });
    e.check(sc.max_replicas >= sc.min_replicas, "spec.scaling.maxReplicas", || {
        format!("must be >= minReplicas ({})", sc.min_replicas)
    });
    e.check(sc.max_replicas <= 10_000, "spec.scaling.maxReplicas", || {
        "must be <= 10000".to_owned()
    });
    e.check(sc.scale_back_to <= 10_000, "spec.scaling.scaleBackTo", || {
        "must be <= 10000".to_owned()
    });

    e.check((1..=100).contains(&s.max_attempts), "spec.maxAttempts", || {
        format!("must be between 1 and 100, got {}", s.max_attempts)
    });
    e.check(
        (1..=86_400).contains(&s.file_timeout_seconds),
        "spec.fileTimeoutSeconds",
        || format!("must be between 1 and 86400, got {}", s.file_timeout_seconds),
    );
    e.check(
        (1..=crate::MAX_PAGES_PER_TASK).contains(&s.pages_per_task),
        "spec.pagesPerTask",
        || {
            format!(
                "must be between 1 and {}, got {}",
                crate::MAX_PAGES_PER_TASK,
                s.pages_per_task
            )
        },
    );
    if let Some(d) = s.active_deadline_seconds {
        e.check(d >= 1, "spec.activeDeadlineSeconds", || "must be >= 1".to_owned());
    }
    if let Some(t) = &s.tenant {
        e.check(is_dns_label(t), "spec.tenant", || {
            format!("{DNS_LABEL_RULE}, got {t:?}")
        });
    }
    if let Some(r) = s.failure_policy.max_failed_ratio {
        e.check((0.0..=1.0).contains(&r), "spec.failurePolicy.maxFailedRatio", || {
            format!("must be between 0.0 and 1.0, got {r}")
        });
    }

    if e.0.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(e.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BulkJobSpec;

    fn job() -> BulkJob {
        BulkJob::new("scans", BulkJobSpec::for_path("/data"))
    }

    fn errors(job: &BulkJob) -> Vec<String> {
        match validate_job(job) {
            Ok(()) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert!(errors(&job()).is_empty());
    }

    #[test]
    fn names_must_be_dns_labels() {
        for bad in ["", "Scans", "-a", "a-", "a_b", &"x".repeat(64)] {
            let mut j = job();
            j.metadata.name = bad.to_owned();
            let errs = errors(&j);
            assert_eq!(errs.len(), 1, "{bad:?}: {errs:?}");
            assert!(errs[0].starts_with("metadata.name: "), "{errs:?}");
        }
        for good in ["a", "scan-2026", &"x".repeat(63)] {
            let mut j = job();
            j.metadata.name = good.to_owned();
            assert!(errors(&j).is_empty(), "{good:?}");
        }
    }

    #[test]
    fn scaling_rules() {
        let mut j = job();
        j.spec.scaling.min_replicas = 4;
        j.spec.scaling.max_replicas = 3;
        assert_eq!(errors(&j), vec!["spec.scaling.maxReplicas: must be >= minReplicas (4)"]);
        let mut j = job();
        j.spec.scaling.files_per_worker = 0;
        assert_eq!(errors(&j), vec!["spec.scaling.filesPerWorker: must be >= 1"]);
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let mut j = job();
        j.api_version = "v2".into();
        j.spec.max_attempts = 0;
        j.spec.engine.page_seg_mode = 0;
        j.spec.engine.languages = vec!["en g".into()];
        j.spec.source.include = vec!["a[".into()];
        let errs = errors(&j);
        let paths: Vec<&str> = errs.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            paths,
            vec![
                "apiVersion",
                "spec.source.include[0]",
                "spec.engine.languages[0]",
                "spec.engine.pageSegMode",
                "spec.maxAttempts"
            ]
        );
    }

    #[test]
    fn source_is_a_path_or_an_object_url() {
        let mut j = job();
        j.spec.source.url = Some("s3://scans/2024".into());
        assert_eq!(errors(&j), vec!["spec.source: path and url are exclusive: name one"]);
        j.spec.source.path = String::new();
        assert!(errors(&j).is_empty());
        j.spec.source.url = Some("s3://Scans".into());
        let errs = errors(&j);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("spec.source.url: "), "{errs:?}");
        j.spec.source.url = None;
        assert_eq!(errors(&j), vec!["spec.source.path: is required (or spec.source.url)"]);
        j.spec.source.path = "/in".into();
        j.spec.output.url = Some("s3://out/x".into());
        assert!(errors(&j).is_empty());
        j.spec.output.path = Some("/out".into());
        assert_eq!(errors(&j), vec!["spec.output: path and url are exclusive: name one"]);
        j.spec.output.path = None;
        j.spec.output.url = Some("s3://x".into());
        assert!(errors(&j)[0].starts_with("spec.output.url: "), "{:?}", errors(&j));
    }

    #[test]
    fn pages_per_task_range() {
        let mut j = job();
        j.spec.pages_per_task = 0;
        assert_eq!(errors(&j), vec!["spec.pagesPerTask: must be between 1 and 1000, got 0"]);
        j.spec.pages_per_task = 1000;
        assert!(errors(&j).is_empty());
    }

    #[test]
    fn failure_ratio_range() {
        let mut j = job();
        j.spec.failure_policy.max_failed_ratio = Some(1.5);
        assert_eq!(
            errors(&j),
            vec!["spec.failurePolicy.maxFailedRatio: must be between 0.0 and 1.0, got 1.5"]
        );
    }
}
