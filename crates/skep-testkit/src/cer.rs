//! Character error rate.

/// Collapses every whitespace run (spaces, tabs, newlines, form feeds, ...)
/// to a single space and trims both ends.
pub fn normalize_text(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Character-level Levenshtein distance (insertions, deletions and
/// substitutions all cost 1).
pub fn levenshtein(a: &[char], b: &[char]) -> usize {
    if a.is_empty() {
        return b.len();
    }
    if b.is_empty() {
        return a.len();
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != cb);
            let deletion = prev[j + 1] + 1;
            let insertion = cur[j] + 1;
            cur[j + 1] = substitution.min(deletion).min(insertion);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Character error rate of `ocr` against `truth`: Levenshtein distance over
/// characters divided by the truth length, after normalising both with
/// [`normalize_text`]. An empty truth scores 0.0 if the OCR text is empty
/// too, else 1.0. The value can exceed 1.0 when the OCR text is much longer.
pub fn cer(truth: &str, ocr: &str) -> f64 {
    let t: Vec<char> = normalize_text(truth).chars().collect();
    let o: Vec<char> = normalize_text(ocr).chars().collect();
    if t.is_empty() {
        return if o.is_empty() { 0.0 } else { 1.0 };
    }
    levenshtein(&t, &o) as f64 / t.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn identical_is_zero() {
        assert!(close(cer("hello world", "hello world"), 0.0));
    }

    #[test]
    fn one_substitution() {
        // 10 characters, one wrong.
        assert!(close(cer("abcdefghij", "abcdefghiX"), 0.1));
    }

    #[test]
    fn one_insertion() {
        assert!(close(cer("abcdefghij", "abcdeXfghij"), 0.1));
    }

    #[test]
    fn one_deletion() {
        assert!(close(cer("abcdefghij", "abcdfghij"), 0.1));
    }

    #[test]
    fn whitespace_is_normalised() {
        assert!(close(
            cer("the quick\nbrown  fox", "  the quick brown\n\n\u{c}\nfox \n"),
            0.0
        ));
        assert!(close(cer("a b", "a\tb"), 0.0));
        // Whitespace still counts as one character where it matters.
        assert!(close(cer("ab cd", "abcd"), 0.2));
    }

    #[test]
    fn empty_truth() {
        assert!(close(cer("", ""), 0.0));
        assert!(close(cer(" \n ", ""), 0.0));
        assert!(close(cer("", "x"), 1.0));
    }

    #[test]
    fn empty_ocr_is_one() {
        assert!(close(cer("abc", ""), 1.0));
    }

    #[test]
    fn levenshtein_classic() {
        let a: Vec<char> = "kitten".chars().collect();
        let b: Vec<char> = "sitting".chars().collect();
        assert_eq!(levenshtein(&a, &b), 3);
        assert_eq!(levenshtein(&b, &a), 3);
    }
}
