//! Event data made safe where a rule puts it: header values on one line, long values cut.
//!
//! Every string in an event is the sender's: it may hold CR, LF, NUL or any other
//! control character, and be as long as the engine's `ingest.max_string_bytes`
//! (64 KiB by default). Such an event is valid input, and a rule must still
//! report it. The engine refuses a message whose subject or header holds CR, LF
//! or NUL (header injection), so put event values into headers through
//! [`header_value`] (or [`one_line`]); cut long values that go into a body with
//! [`body_value`] (or [`cut`]), so the rule stays well within its fuel.
//!
//! ```
//! use herald_sdk::safe;
//!
//! assert_eq!(safe::header_value("root\r\nBcc: x@example.org"), "root  Bcc: x@example.org");
//! let long = "é".repeat(300);
//! let kept = safe::header_value(&long);
//! assert_eq!(kept.chars().count(), safe::HEADER_VALUE_CHARS + 1); // 200 characters and `…`
//! assert!(kept.ends_with('…'));
//! assert_eq!(safe::cut("abcdef", 3), "abc… (3 more bytes cut)");
//! assert_eq!(safe::cut("abc", 3), "abc");
//! ```

use std::borrow::Cow;

/// The most characters of one event value that [`header_value`] keeps (then `…`).
pub const HEADER_VALUE_CHARS: usize = 200;

/// The most characters of a whole subject that a default rule sends (then `…`).
pub const SUBJECT_CHARS: usize = 998;

/// The most bytes of one event value that [`body_value`] keeps (then a note of how
/// much was cut).
pub const BODY_VALUE_BYTES: usize = 8 * 1024;

/// A value for a header (Subject, or an `X-` header): every control character
/// (C0, DEL, C1, and the Unicode line and paragraph separators) becomes a space,
/// and the value is cut to [`HEADER_VALUE_CHARS`] characters, ending with `…` when
/// it was cut. Ordinary text comes back unchanged.
pub fn header_value(value: &str) -> String {
    one_line(value, HEADER_VALUE_CHARS)
}

/// [`header_value`] with your own limit: at most `max_chars` characters of `value`
/// (then `…`), with every control character as a space.
pub fn one_line(value: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(value.len().min(max_chars * 4 + 3));
    for (kept, c) in value.chars().enumerate() {
        if kept == max_chars {
            out.push('…');
            break;
        }
        out.push(fold(c));
    }
    out
}

/// `value` with every control character (and line or paragraph separator) as a
/// space, nothing cut: for a header value whose length the rule already bounds.
pub fn fold_controls(value: &str) -> String {
    value.chars().map(fold).collect()
}

fn fold(c: char) -> char {
    if breaks_a_line(c) { ' ' } else { c }
}

/// Whether `c` must not appear in a header: a control character or a Unicode line
/// or paragraph separator.
fn breaks_a_line(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// A value for a body: [`cut`] at [`BODY_VALUE_BYTES`].
pub fn body_value(value: &str) -> Cow<'_, str> {
    cut(value, BODY_VALUE_BYTES)
}

/// `value` cut to at most `max_bytes` bytes on a character boundary, followed by
/// `… (N more bytes cut)` when anything was cut; `value` itself when it fits.
pub fn cut(value: &str, max_bytes: usize) -> Cow<'_, str> {
    if value.len() <= max_bytes {
        return Cow::Borrowed(value);
    }
    let end = value.floor_char_boundary(max_bytes);
    Cow::Owned(format!(
        "{}… ({} more bytes cut)",
        &value[..end],
        value.len() - end
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_value_folds_every_control_character() {
        let hostile = "a\rb\nc\0d\te\u{1b}f\u{7f}g\u{85}h\u{2028}i\u{2029}j";
        assert_eq!(header_value(hostile), "a b c d e f g h i j");
        assert_eq!(header_value("Zoë's lab"), "Zoë's lab");
    }

    #[test]
    fn header_value_cuts_on_characters() {
        let exact = "x".repeat(HEADER_VALUE_CHARS);
        assert_eq!(header_value(&exact), exact);
        let over = format!("{exact}y");
        assert_eq!(header_value(&over), format!("{exact}…"));
        assert_eq!(one_line("日本語", 2), "日本…");
        assert_eq!(one_line("", 0), "");
    }

    #[test]
    fn cut_stays_on_a_char_boundary() {
        assert_eq!(cut("aé", 2), "a… (2 more bytes cut)");
        assert_eq!(cut("aé", 3), "aé");
        let long = "€".repeat(BODY_VALUE_BYTES);
        let kept = body_value(&long);
        assert!(kept.len() < BODY_VALUE_BYTES + 40, "{}", kept.len());
        assert!(kept.ends_with("more bytes cut)"));
    }
}
