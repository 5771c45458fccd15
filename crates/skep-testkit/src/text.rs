//! Deterministic, English-looking page text.
//!
//! Sentences are built from a fixed list of common lowercase words, with
//! capitalised sentence starts, commas, a few labelled fields (`Total: 1,250.00`),
//! dates, amounts and invoice numbers. Only printable ASCII is produced.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::PageSize;
use crate::mix_seed;

/// About 300 ordinary lowercase English words (no single letters other than
/// "a", so that glyph-ambiguous tokens like a lone "l" or "I" never occur).
#[rustfmt::skip]
const WORDS: &[&str] = &[
    "the", "of", "and", "a", "to", "in", "is", "you", "that", "it", "he", "was", "for", "on",
    "are", "as", "with", "his", "they", "at", "be", "this", "have", "from", "or", "one", "had",
    "by", "word", "but", "not", "what", "all", "were", "we", "when", "your", "can", "said",
    "there", "use", "an", "each", "which", "she", "do", "how", "their", "if", "will", "up",
    "other", "about", "out", "many", "then", "them", "these", "so", "some", "her", "would",
    "make", "like", "him", "into", "time", "has", "look", "two", "more", "write", "go", "see",
    "number", "no", "way", "could", "people", "my", "than", "first", "water", "been", "call",
    "who", "its", "now", "find", "long", "down", "day", "did", "get", "come", "made", "may",
    "part", "over", "new", "sound", "take", "only", "little", "work", "know", "place", "year",
    "live", "back", "give", "most", "very", "after", "thing", "our", "just", "name", "good",
    "sentence", "man", "think", "say", "great", "where", "help", "through", "much", "before",
    "line", "right", "too", "mean", "old", "any", "same", "tell", "boy", "follow", "came",
    "want", "show", "also", "around", "form", "three", "small", "set", "put", "end", "does",
    "another", "well", "large", "must", "big", "even", "such", "because", "turn", "here", "why",
    "ask", "went", "men", "read", "need", "land", "different", "home", "move", "try", "kind",
    "hand", "picture", "again", "change", "off", "play", "spell", "air", "away", "animal",
    "house", "point", "page", "letter", "mother", "answer", "found", "study", "still", "learn",
    "should", "world", "high", "every", "near", "add", "food", "between", "own", "below",
    "country", "plant", "last", "school", "father", "keep", "tree", "never", "start", "city",
    "earth", "eye", "light", "thought", "head", "under", "story", "saw", "left", "few", "while",
    "along", "might", "close", "something", "seem", "next", "hard", "open", "example", "begin",
    "life", "always", "those", "both", "paper", "together", "got", "group", "often", "run",
    "important", "until", "children", "side", "feet", "car", "mile", "night", "walk", "white",
    "sea", "began", "grow", "took", "river", "four", "carry", "state", "once", "book", "hear",
    "stop", "without", "second", "later", "miss", "idea", "enough", "eat", "face", "watch",
    "far", "really", "almost", "let", "above", "girl", "sometimes", "mountain", "cut", "young",
    "talk", "soon", "list", "song", "being", "leave", "family", "body", "music", "color",
    "stand", "sun", "question", "fish", "area", "mark", "horse", "birds", "problem", "complete",
    "room", "knew", "since", "ever", "piece", "told", "usually", "friends", "easy", "heard",
    "order", "red", "door", "sure", "become", "top", "ship", "across", "today", "during",
    "short", "better", "best", "however", "low", "hours", "black", "products", "happened",
    "whole", "measure", "remember", "early", "waves", "reached", "listen", "wind", "rock",
    "space", "covered", "fast", "several", "hold", "himself", "toward", "five", "step",
    "morning", "passed", "vowel", "true", "hundred", "against", "pattern", "table", "north",
    "slowly", "money", "map", "farm", "pulled", "draw", "voice", "power", "town", "fine",
    "certain", "fly", "unit", "lead", "cry", "dark", "machine", "note", "wait", "plan",
    "figure", "star", "box", "noun", "field", "rest", "correct", "able", "pound", "done",
    "beauty", "drive", "stood", "contain", "front", "teach", "week", "final", "gave", "green",
    "quick", "develop", "ocean", "warm", "free", "minute", "strong", "special", "mind",
    "behind", "clear", "tail", "produce", "fact", "street", "inch", "nothing", "course", "stay",
    "wheel", "full", "force", "blue", "object", "decide", "surface", "deep", "moon", "island",
    "foot", "system", "busy", "test", "record", "boat", "common", "gold", "possible", "plane",
    "dry", "wonder", "laugh", "thousand", "ago", "ran", "check", "game", "shape", "yes", "hot",
    "brought", "heat", "snow", "bring", "distant", "fill", "east", "paint", "language", "among",
];

const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const LABELS: &[&str] = &[
    "Total",
    "Amount due",
    "Invoice number",
    "Date",
    "Reference",
    "Account",
    "Balance",
    "Order",
    "Due date",
    "Subtotal",
];

/// Layout parameters of one page size that the text generator needs.
pub(crate) struct TextSpec {
    pub lines: usize,
    /// Maximum line width in ems (see [`approx_width_em`]); the page width
    /// minus margins divided by the font size (the estimate is
    /// ~5% pessimistic, which leaves some slack).
    pub max_em: f32,
}

pub(crate) fn text_spec(size: PageSize) -> TextSpec {
    match size {
        // 1060 px usable at 34 px/em = 31.2 em.
        PageSize::Small => TextSpec {
            lines: 12,
            max_em: 31.0,
        },
        // 2040 px usable at 42 px/em = 48.6 em.
        PageSize::A4 => TextSpec {
            lines: 45,
            max_em: 49.0,
        },
    }
}

/// Approximate advance width of `c` in ems for a sans-serif font such as
/// DejaVu Sans (kerning ignored). Used only for line wrapping.
pub(crate) fn approx_char_em(c: char) -> f32 {
    match c {
        ' ' | '.' | ',' | ':' | 'i' | 'j' | 'l' | 'I' => 0.32,
        '-' | 'f' | 't' | 'r' => 0.42,
        'm' | 'M' => 0.98,
        'w' | 'W' => 1.0,
        'A'..='Z' => 0.78,
        _ => 0.64,
    }
}

/// Approximate width of `s` in ems.
pub(crate) fn approx_width_em(s: &str) -> f32 {
    s.chars().map(approx_char_em).sum()
}

fn word(rng: &mut StdRng) -> &'static str {
    WORDS[rng.random_range(0..WORDS.len())]
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// `1,250.00`-style amount.
fn amount(rng: &mut StdRng) -> String {
    let whole: u32 = match rng.random_range(0..3) {
        0 => rng.random_range(10..1000),
        1 => rng.random_range(1000..100_000),
        _ => rng.random_range(100_000..5_000_000),
    };
    let cents: u32 = rng.random_range(0..100);
    let digits = whole.to_string();
    // Thousands separators: a leading group of 1-3 digits, then groups of 3.
    let lead = match digits.len() % 3 {
        0 => 3,
        r => r,
    };
    let mut grouped = digits[..lead].to_string();
    let mut k = lead;
    while k < digits.len() {
        grouped.push(',');
        grouped.push_str(&digits[k..k + 3]);
        k += 3;
    }
    format!("{grouped}.{cents:02}")
}

fn date(rng: &mut StdRng) -> Vec<String> {
    let year: u32 = rng.random_range(1998..2031);
    let month: usize = rng.random_range(1..13);
    let day: u32 = rng.random_range(1..29);
    if rng.random_bool(0.5) {
        vec![format!("{year}-{month:02}-{day:02}")]
    } else {
        vec![day.to_string(), MONTHS[month - 1].to_string(), year.to_string()]
    }
}

fn invoice_number(rng: &mut StdRng) -> String {
    match rng.random_range(0..3) {
        0 => format!("INV-{}", rng.random_range(10_000..99_999)),
        1 => format!("{}-{}", rng.random_range(1000..9999), rng.random_range(100..999)),
        _ => format!("{}", rng.random_range(100_000..999_999)),
    }
}

/// A value for a labelled field such as `Date: 2021-03-04.`
fn field_value(label: &str, rng: &mut StdRng) -> Vec<String> {
    match label {
        "Date" | "Due date" => date(rng),
        "Invoice number" | "Reference" | "Account" | "Order" => vec![invoice_number(rng)],
        _ => vec![amount(rng)],
    }
}

/// One sentence as a list of tokens (words with attached punctuation).
fn sentence(rng: &mut StdRng) -> Vec<String> {
    if rng.random_bool(0.12) {
        // Labelled field: "Amount due: 1,250.00."
        let label = LABELS[rng.random_range(0..LABELS.len())];
        let mut tokens: Vec<String> = label.split(' ').map(str::to_string).collect();
        if let Some(last) = tokens.last_mut() {
            last.push(':');
        }
        tokens.extend(field_value(label, rng));
        if let Some(last) = tokens.last_mut() {
            last.push('.');
        }
        return tokens;
    }

    let len = rng.random_range(5..15);
    let mut tokens: Vec<String> = Vec::with_capacity(len + 3);
    for _ in 0..len {
        tokens.push(word(rng).to_string());
    }
    // Sometimes embed a number-like phrase.
    if rng.random_bool(0.35) {
        let at = rng.random_range(2..=tokens.len());
        let insert: Vec<String> = match rng.random_range(0..4) {
            0 => {
                let mut v = vec!["on".to_string()];
                v.extend(date(rng));
                v
            }
            1 => vec!["the sum of".to_string(), amount(rng)],
            2 => vec!["invoice".to_string(), invoice_number(rng)],
            _ => vec![rng.random_range(2..250).to_string(), word(rng).to_string()],
        };
        let insert: Vec<String> = insert
            .iter()
            .flat_map(|s| s.split(' ').map(str::to_string).collect::<Vec<_>>())
            .collect();
        tokens.splice(at..at, insert);
    }
    // A comma or a dash clause here and there.
    let n = tokens.len();
    for t in tokens.iter_mut().take(n.saturating_sub(2)).skip(1) {
        if rng.random_bool(0.07) && t.chars().last().is_some_and(|c| c.is_ascii_alphanumeric()) {
            t.push(',');
        }
    }
    if n > 6 && rng.random_bool(0.1) {
        let at = rng.random_range(3..n - 2);
        if let Some(before) = tokens[at - 1].strip_suffix(',') {
            tokens[at - 1] = before.to_string();
        }
        tokens.insert(at, "-".to_string());
    }
    if let Some(first) = tokens.first_mut() {
        *first = capitalise(first);
    }
    if let Some(last) = tokens.last_mut() {
        last.push('.');
    }
    tokens
}

/// Deterministic lines of text for one page of the given size.
///
/// The same `(seed, size)` always gives the same lines. Every line is
/// non-empty, printable ASCII, and short enough to fit the page width of
/// `size` with its margins (the renderer also shrinks the font if needed).
pub fn page_text(seed: u64, size: PageSize) -> Vec<String> {
    let spec = text_spec(size);
    let mut rng = StdRng::seed_from_u64(mix_seed(seed, 0x7465_7874));
    let mut lines: Vec<String> = Vec::with_capacity(spec.lines);
    let mut cur = String::new();
    while lines.len() < spec.lines {
        for token in sentence(&mut rng) {
            if cur.is_empty() {
                cur = token;
            } else if approx_width_em(&cur) + approx_width_em(&token) + approx_char_em(' ') <= spec.max_em {
                cur.push(' ');
                cur.push_str(&token);
            } else {
                lines.push(std::mem::replace(&mut cur, token));
            }
        }
        // Occasionally end a paragraph after a sentence.
        if !cur.is_empty() && rng.random_bool(0.08) {
            lines.push(std::mem::take(&mut cur));
        }
    }
    lines.truncate(spec.lines);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_text_is_deterministic() {
        for size in [PageSize::Small, PageSize::A4] {
            assert_eq!(page_text(7, size), page_text(7, size));
            assert_ne!(page_text(7, size), page_text(8, size));
        }
    }

    #[test]
    fn page_text_shape() {
        for seed in 0..50 {
            for size in [PageSize::Small, PageSize::A4] {
                let spec = text_spec(size);
                let lines = page_text(seed, size);
                assert_eq!(lines.len(), spec.lines);
                for line in &lines {
                    assert!(!line.is_empty());
                    assert!(approx_width_em(line) <= spec.max_em, "{line}");
                    assert!(line.chars().all(|c| c == ' ' || c.is_ascii_graphic()));
                    assert_eq!(line.trim(), line);
                }
            }
        }
    }

    #[test]
    fn amounts_are_grouped() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..100 {
            let a = amount(&mut rng);
            let (whole, cents) = a.split_once('.').expect("amount has a decimal point");
            assert_eq!(cents.len(), 2);
            for group in whole.split(',').skip(1) {
                assert_eq!(group.len(), 3, "{a}");
            }
        }
    }
}
