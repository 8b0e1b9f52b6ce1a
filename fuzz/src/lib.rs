//! Checks that every fuzz target applies to what a parser returns, besides not panicking.

use selfheal::probe::io::MAX_LINE;
use selfheal::probe::Outcome;

/// Maximum length of an outcome's text, in bytes. The parsers quote at most 120 characters of
/// a reply and add fixed words, so a longer text carries peer data without a bound.
pub const MAX_OUTCOME_TEXT: usize = 400;

/// Maximum length of a healthy outcome's detail, in bytes: 80 characters and "...".
pub const MAX_DETAIL: usize = 83;

/// Checks a failed parse. The fuzz input is all the peer sends before it closes, so a timeout
/// means that a parser waited past the end of the stream. The text goes into logs and alerts,
/// so it must be bounded and free of control characters, which `io::quote` escapes.
pub fn check_outcome(outcome: &Outcome) {
    assert!(
        !matches!(outcome, Outcome::TimedOut { .. }),
        "a parser waited after the peer closed: {outcome}"
    );
    check_text("outcome", &outcome.to_string(), MAX_OUTCOME_TEXT);
}

/// Checks a detail or summary that a healthy outcome would show.
pub fn check_detail(detail: &str) {
    check_text("detail", detail, MAX_DETAIL);
}

/// Checks a line that `LineReader` returned.
pub fn check_line(line: &[u8]) {
    assert!(
        line.len() <= MAX_LINE,
        "a line of {} bytes passed the limit of {MAX_LINE}",
        line.len()
    );
}

fn check_text(kind: &str, text: &str, max_len: usize) {
    assert!(
        text.len() <= max_len,
        "{kind} of {} bytes is longer than {max_len}: {text:?}",
        text.len()
    );
    assert!(
        !text.chars().any(char::is_control),
        "{kind} contains a control character: {text:?}"
    );
}
