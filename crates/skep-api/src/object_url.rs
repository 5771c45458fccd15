//! `s3://BUCKET/PREFIX`, the object-storage source and output of a job.

use std::fmt;

/// Longest key S3 takes, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// A bucket and a key prefix taken as a folder: empty (the whole bucket)
/// or ending in `/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectUrl {
    pub bucket: String,
    pub prefix: String,
}

impl ObjectUrl {
    /// Parses `s3://BUCKET[/PREFIX]`. The bucket follows S3's naming rules
    /// (3-63 of a-z, 0-9, `.`, `-`); the prefix has no empty, `.` or `..`
    /// segment and no control character, and a `/` is added to it.
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{:?} is not an s3:// URL", clip(s)))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !bucket_ok {
            return Err(format!(
                "{:?} is not a bucket name (3-63 characters of a-z, 0-9, '.' and '-')",
                clip(bucket)
            ));
        }
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        if prefix.len() + 1 > MAX_KEY_BYTES {
            return Err(format!("the prefix is over {MAX_KEY_BYTES} bytes"));
        }
        if !prefix.is_empty() {
            check_key(prefix).map_err(|e| format!("the prefix {e}"))?;
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }

    /// The key of `rel` (relative, `/`-separated) under the prefix.
    pub fn key(&self, rel: &str) -> String {
        format!("{}{rel}", self.prefix)
    }

    /// Whether `other` lies under this one (same bucket, a longer or equal
    /// prefix).
    pub fn covers(&self, other: &ObjectUrl) -> bool {
        self.bucket == other.bucket && other.prefix.starts_with(&self.prefix)
    }
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Checks that `key` is a key skep can read and name files by: no empty,
/// `.` or `..` segment, no control character, at most [`MAX_KEY_BYTES`].
pub fn check_key(key: &str) -> Result<(), String> {
    if key.len() > MAX_KEY_BYTES {
        return Err(format!("is over {MAX_KEY_BYTES} bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err("holds a control character".to_owned());
    }
    if key.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err("has an empty, '.' or '..' segment".to_owned());
    }
    Ok(())
}

/// At most 80 characters of what a user wrote, for messages.
fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buckets_and_prefixes() {
        let u = ObjectUrl::parse("s3://scans/2024/may").unwrap();
        assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("scans", "2024/may/"));
        assert_eq!(u.key("a/b.png"), "2024/may/a/b.png");
        assert_eq!(u.to_string(), "s3://scans/2024/may/");
        assert_eq!(ObjectUrl::parse("s3://scans/2024/may/").unwrap(), u);
        let whole = ObjectUrl::parse("s3://my-bucket.1").unwrap();
        assert_eq!(whole.prefix, "");
        assert_eq!(ObjectUrl::parse("s3://my-bucket.1/").unwrap(), whole);
        assert!(whole.covers(&ObjectUrl::parse("s3://my-bucket.1/x").unwrap()));
        assert!(u.covers(&ObjectUrl::parse("s3://scans/2024/may/june").unwrap()));
        assert!(!u.covers(&ObjectUrl::parse("s3://scans/2024/mayday").unwrap()));
        assert!(!u.covers(&ObjectUrl::parse("s3://other/2024/may").unwrap()));
    }

    #[test]
    fn refuses_what_is_not_an_object_prefix() {
        for bad in [
            "http://scans/x",
            "s3://",
            "s3://ab",
            "s3://Upper",
            "s3://-dash",
            "s3://under_score/x",
            "s3://scans//x",
            "s3://scans/a/../b",
            "s3://scans/./b",
            "s3://scans/a\nb",
        ] {
            assert!(ObjectUrl::parse(bad).is_err(), "{bad:?} was taken");
        }
        let long = format!("s3://scans/{}", "a".repeat(MAX_KEY_BYTES));
        assert!(ObjectUrl::parse(&long).is_err());
    }
}
