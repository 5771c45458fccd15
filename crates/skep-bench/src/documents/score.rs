//! How well a method read a corpus: the character error rate over all its
//! pages, page by page (pages are split at form feeds, as Tesseract,
//! `pdftotext`, OCRmyPDF's sidecar and the ground truth all mark them).

use skep_testkit::{levenshtein, normalize_text};
use tracing::warn;

/// Largest document (in truth characters) scored as one piece when its
/// pages cannot be matched one to one: the edit distance is quadratic.
const MAX_WHOLE_CHARS: usize = 50_000;

/// Edit distance and truth length summed over documents; the CER is their
/// quotient, so long pages weigh more than short ones.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Score {
    distance: u64,
    chars: u64,
    /// Documents that could not be scored (too long to score whole, and
    /// their pages did not match the truth's).
    unscored: usize,
}

impl Score {
    /// Scores one document's `text` against its `truth`. A method that
    /// gave no text for it passes `""`: every truth character is an error.
    pub fn add(&mut self, truth: &str, text: &str) {
        let truth_pages = pages(truth, 0);
        let text_pages = pages(text, truth_pages.len());
        if truth_pages.len() == text_pages.len() {
            for (t, o) in truth_pages.iter().zip(&text_pages) {
                self.add_piece(t, o);
            }
            return;
        }
        let (t, o) = (normalize_text(truth), normalize_text(text));
        if t.chars().count() <= MAX_WHOLE_CHARS {
            self.add_normalized(&t, &o);
        } else {
            warn!(
                truth_pages = truth_pages.len(),
                text_pages = text_pages.len(),
                "a long document's pages do not match its truth's; it is not scored"
            );
            self.unscored += 1;
        }
    }

    fn add_piece(&mut self, truth: &str, text: &str) {
        self.add_normalized(&normalize_text(truth), &normalize_text(text));
    }

    fn add_normalized(&mut self, truth: &str, text: &str) {
        let t: Vec<char> = truth.chars().collect();
        self.chars += t.len() as u64;
        // NB: most text-layer pages read back exactly; skip the quadratic
        // distance for them.
        if truth != text {
            let o: Vec<char> = text.chars().collect();
            self.distance += levenshtein(&t, &o) as u64;
        }
    }

    /// The character error rate; NaN (JSON `null`) when a document could
    /// not be scored or there was no truth at all.
    pub fn cer(&self) -> f64 {
        if self.unscored > 0 || self.chars == 0 {
            return f64::NAN;
        }
        self.distance as f64 / self.chars as f64
    }
}

/// The pages of `text`: split at form feeds, with blank trailing pieces
/// (a form feed after the last page) dropped down to `at_least` pages.
fn pages(text: &str, at_least: usize) -> Vec<&str> {
    let mut pages: Vec<&str> = text.split('\u{c}').collect();
    while pages.len() > at_least.max(1) && pages.last().is_some_and(|p| p.trim().is_empty()) {
        pages.pop();
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cer(truth: &str, text: &str) -> f64 {
        let mut s = Score::default();
        s.add(truth, text);
        s.cer()
    }

    #[test]
    fn pages_are_matched_at_form_feeds_whatever_the_padding() {
        let truth = "one two\n\u{c}\nthree four";
        assert_eq!(cer(truth, "one  two\u{c}three\nfour\u{c}"), 0.0);
        assert_eq!(cer(truth, "one two\n\u{c}\nthree four\n\u{c}\n\n"), 0.0);
        // 17 truth characters ("one two" + "three four"), one wrong.
        assert_eq!(cer(truth, "one twx\u{c}three four"), 1.0 / 17.0);
    }

    #[test]
    fn no_text_is_every_character_wrong() {
        assert_eq!(cer("one two\u{c}three", ""), 1.0);
        let mut s = Score::default();
        s.add("abcd", "abcd");
        s.add("abcd", "");
        assert_eq!(s.cer(), 0.5, "summed over documents");
    }

    #[test]
    fn unmatched_pages_are_scored_whole_when_short() {
        // The text lost a page break: scored as one piece, no error.
        assert_eq!(cer("one\u{c}two", "one two"), 0.0);
    }

    #[test]
    fn a_long_document_with_unmatched_pages_is_not_scored() {
        let page = "word ".repeat(MAX_WHOLE_CHARS / 5 + 10);
        let truth = format!("{page}\u{c}{page}");
        assert!(cer(&truth, &page).is_nan());
        assert!(Score::default().cer().is_nan(), "no truth, no rate");
    }
}
