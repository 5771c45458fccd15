use crate::{BulkJob, ValidationErrors, validate_job};

/// Why a document was refused. Every message names the field it is about.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not YAML/JSON, or a field of the wrong type or name.
    #[error("{}", display_syntax(.path, .message))]
    Syntax { path: String, message: String },
    /// Well-formed, but against the rules of a BulkJob.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
}

fn display_syntax(path: &str, message: &str) -> String {
    if path.is_empty() || path == "." {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

/// How deep a YAML or JSON document the API parses may nest (a BulkJob
/// nests 4 levels, a compose file about 8).
pub const MAX_DEPTH: usize = 64;

/// Refuses a document nesting deeper than `max` before any parser sees it:
/// YAML parsers take time (and stack) per level, and `{"a":` repeated
/// 100 000 times fits in well under a megabyte.
///
/// Counts flow brackets (`[`, `{`) outside quoted scalars and comments,
/// plus block levels (each deeper indentation, and each `- ` that opens a
/// sequence item). Over-counting is possible only for odd block scalars
/// (a `|` text indented ever deeper); it never under-counts.
pub fn check_depth(text: &str, max: usize) -> Result<(), ParseError> {
    let too_deep = || ParseError::Syntax {
        path: String::new(),
        message: format!("the document nests deeper than {max} levels"),
    };
    let mut flow = 0usize;
    let mut quote: Option<char> = None;
    // Indentations of the open block levels.
    let mut blocks: Vec<usize> = Vec::new();
    for line in text.lines() {
        if quote.is_none() && flow == 0 {
            let indent = line.len() - line.trim_start_matches(' ').len();
            let rest = line[indent..].trim_end();
            if rest.is_empty() || rest.starts_with('#') {
                continue;
            }
            while blocks.last().is_some_and(|&top| top >= indent) {
                blocks.pop();
            }
            blocks.push(indent);
            // `- - - a` opens a sequence per dash on one line.
            let mut r = rest;
            let mut col = indent;
            while let Some(after) = r.strip_prefix("- ") {
                col += 2;
                blocks.push(col);
                r = after.trim_start_matches(' ');
            }
            if blocks.len() > max {
                return Err(too_deep());
            }
        }
        let mut prev: Option<char> = None;
        // Whether a node (a flow collection, a quoted scalar) may start
        // here; inside a plain scalar (`x[1]`, `don't`) brackets and quotes
        // are text.
        let mut may_start = true;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match quote {
                Some('"') if c == '\\' => {
                    chars.next();
                }
                Some(q) if c == q => {
                    // NB: `''` inside a single-quoted scalar is a quote.
                    if q == '\'' && chars.peek() == Some(&'\'') {
                        chars.next();
                    } else {
                        quote = None;
                        may_start = false;
                    }
                }
                Some(_) => {}
                None => match c {
                    '#' if prev.is_none_or(char::is_whitespace) => break,
                    c if c.is_whitespace() => {}
                    '"' | '\'' if may_start => quote = Some(c),
                    '[' | '{' if may_start => {
                        flow += 1;
                        if flow + blocks.len() > max {
                            return Err(too_deep());
                        }
                    }
                    ']' | '}' if flow > 0 => {
                        flow -= 1;
                        may_start = false;
                    }
                    ',' if flow > 0 => may_start = true,
                    ':' | '-' | '?' => {
                        may_start = flow > 0 || chars.peek().is_none_or(|n| n.is_whitespace());
                    }
                    _ => may_start = false,
                },
            }
            prev = Some(c);
        }
    }
    Ok(())
}

/// Parses and validates one BulkJob document (YAML or JSON).
pub fn parse_job(text: &str) -> Result<BulkJob, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Syntax {
            path: String::new(),
            message: "the document is empty".to_owned(),
        });
    }
    check_depth(text, MAX_DEPTH)?;
    let de = serde_yaml::Deserializer::from_str(text);
    let job: BulkJob = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // NB: serde_yaml already prefixes most messages with the path it knows
        // (for an unknown field, the parent's); keep its form then.
        match message.split_once(": ") {
            Some((prefix, rest)) if path.starts_with(prefix) => ParseError::Syntax {
                path: prefix.to_owned(),
                message: rest.to_owned(),
            },
            _ => ParseError::Syntax { path, message },
        }
    })?;
    validate_job(&job)?;
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "
apiVersion: skep.dev/v1
kind: BulkJob
metadata:
  name: scans
spec:
  source:
    path: /data/scans
";

    #[test]
    fn minimal_document_gets_defaults() {
        let job = parse_job(GOOD).unwrap();
        assert_eq!(job.spec.scaling.files_per_worker, 100);
        assert_eq!(job.spec.scaling.max_replicas, 10);
        assert_eq!(job.spec.engine.languages, vec!["eng"]);
        assert_eq!(job.spec.engine.page_seg_mode, 6);
        assert!(job.spec.source.recursive);
    }

    #[test]
    fn wrong_type_names_the_field() {
        let doc = format!("{GOOD}  scaling:\n    maxReplicas: many\n");
        let err = parse_job(&doc).unwrap_err().to_string();
        assert!(err.starts_with("spec.scaling.maxReplicas: invalid type"), "{err}");
    }

    #[test]
    fn unknown_field_names_the_field() {
        let doc = format!("{GOOD}  scaling:\n    maxReplica: 3\n");
        let err = parse_job(&doc).unwrap_err().to_string();
        assert!(err.starts_with("spec.scaling: unknown field `maxReplica`"), "{err}");
    }

    #[test]
    fn missing_required_field() {
        let err = parse_job("apiVersion: skep.dev/v1\nkind: BulkJob\nmetadata: {name: a}\nspec: {}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("spec: missing field `source`"), "{err}");
    }

    #[test]
    fn empty_and_garbage_documents() {
        assert_eq!(parse_job("  \n").unwrap_err().to_string(), "the document is empty");
        assert!(parse_job("a: [").is_err());
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep_json = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        let err = parse_job(&deep_json).unwrap_err().to_string();
        assert_eq!(err, "the document nests deeper than 64 levels");
        let deep_flow = format!("a: {}", "[".repeat(70));
        assert!(check_depth(&deep_flow, MAX_DEPTH).is_err());
        let mut deep_block = String::new();
        for i in 0..70 {
            deep_block.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        assert!(check_depth(&deep_block, MAX_DEPTH).is_err());
        assert!(check_depth(&format!("{}x", "- ".repeat(70)), MAX_DEPTH).is_err());
        // Brackets inside quotes and comments are text.
        let quoted = format!(
            "a: \"{}\"\nb: '{}'\n# {}\nc: x{}\n",
            "[".repeat(100),
            "{".repeat(100),
            "[".repeat(100),
            "[".repeat(100)
        );
        check_depth(&quoted, MAX_DEPTH).unwrap();
        check_depth(GOOD, MAX_DEPTH).unwrap();
        check_depth(&format!("{{\"a\": {}1{}}}", "[".repeat(60), "]".repeat(60)), MAX_DEPTH).unwrap();
    }

    #[test]
    fn validation_runs_after_parsing() {
        let doc = format!("{GOOD}  scaling:\n    minReplicas: 5\n    maxReplicas: 2\n");
        let err = parse_job(&doc).unwrap_err().to_string();
        assert_eq!(err, "spec.scaling.maxReplicas: must be >= minReplicas (5)");
    }
}
