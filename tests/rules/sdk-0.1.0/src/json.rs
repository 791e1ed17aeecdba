//! One top-level field of an event's `data_json`, read without parsing the rest.
//!
//! Parsing a whole `data_json` costs fuel for every byte and far more for every escape
//! in its strings: a failed login whose user agent is 64 KiB of backslashes costs
//! serde_json about 9 million instructions, nearly a rule's whole budget. When a rule
//! needs one extra field that the typed payload does not carry, [`top_level`] finds it
//! in one pass that skips strings without decoding them (plain text eight bytes at
//! a time), so the cost stays a few instructions per byte whatever the strings hold. Parse the value it returns
//! (small) with serde_json if you need more than its text.
//!
//! ```
//! use herald_sdk::json::top_level;
//!
//! let data = r#"{"user": "root", "agent": "a \"quoted\" \\ text", "success": false, "n": {"success": 1}}"#;
//! assert_eq!(top_level(data, "success"), Some("false"));
//! assert_eq!(top_level(data, "n"), Some(r#"{"success": 1}"#));
//! assert_eq!(top_level(data, "agent"), Some(r#""a \"quoted\" \\ text""#));
//! assert_eq!(top_level(data, "missing"), None);
//! assert_eq!(top_level("[1]", "success"), None);
//! ```

/// The raw JSON text of `key`'s value in the top-level object `json`; `None` when the
/// key is absent, or `json` is not a well-formed object up to that key's value. A key is
/// compared as written, so one spelled with escapes (`"succ\u0065ss"`) is not found.
pub fn top_level<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let mut at = skip_space(json, 0);
    if json.as_bytes().get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    loop {
        at = skip_space(json, at);
        if json.as_bytes().get(at) != Some(&b'"') {
            return None;
        }
        let name_end = string_end(json, at + 1)?;
        let name = &json[at + 1..name_end];
        at = skip_space(json, name_end + 1);
        if json.as_bytes().get(at) != Some(&b':') {
            return None;
        }
        let start = skip_space(json, at + 1);
        let end = value_end(json, start)?;
        if name == key {
            return Some(&json[start..end]);
        }
        at = skip_space(json, end);
        if json.as_bytes().get(at) != Some(&b',') {
            return None;
        }
        at += 1;
    }
}

fn skip_space(json: &str, from: usize) -> usize {
    let rest = json.as_bytes().get(from..).unwrap_or_default();
    from + rest
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count()
}

/// The index of the quote that closes the string whose text starts at `from`. Plain
/// text is skipped eight bytes at a time, straight to the next quote or backslash,
/// and a run of escapes in one go.
fn string_end(json: &str, from: usize) -> Option<usize> {
    let bytes = json.as_bytes();
    let mut at = from;
    while at < bytes.len() {
        if let Some(chunk) = bytes.get(at..at + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            let hits = matches(word, b'"') | matches(word, b'\\');
            if hits == 0 {
                at += 8;
                continue;
            }
            // The lowest flagged byte is always a true match.
            at += hits.trailing_zeros() as usize / 8;
        }
        match bytes[at] {
            b'"' => return Some(at),
            b'\\' => {
                // Escapes come in runs (backslashes, quotes): skip a whole run at once.
                at += 2;
                while bytes.get(at) == Some(&b'\\') {
                    at += 2;
                }
            }
            _ => at += 1,
        }
    }
    None
}

/// The high bit of each byte of `word` that equals `byte`, at least for the lowest such
/// byte (the classic SWAR zero-byte test; a borrow may flag bytes above a match).
fn matches(word: u64, byte: u8) -> u64 {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The index just past the value that starts at `start`.
fn value_end(json: &str, start: usize) -> Option<usize> {
    let bytes = json.as_bytes();
    match bytes.get(start)? {
        b'"' => string_end(json, start + 1).map(|end| end + 1),
        b'{' | b'[' => container_end(json, start),
        _ => {
            let rest = &bytes[start..];
            let len = rest
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(rest.len());
            (len > 0).then_some(start + len)
        }
    }
}

/// The index just past the object or array that opens at `start`, strings skipped whole.
fn container_end(json: &str, start: usize) -> Option<usize> {
    let bytes = json.as_bytes();
    let mut depth = 0usize;
    let mut at = start;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b'"' => at = string_end(json, at + 1)?,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(at + 1);
                }
            }
            _ => {}
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_nesting_do_not_fool_it() {
        let data = r#"{"a":"x\\","success":"no","b":["success",{"success":false}],"c":"\"success\":false"}"#;
        assert_eq!(top_level(data, "success"), Some(r#""no""#));
        assert_eq!(
            top_level(data, "b"),
            Some(r#"["success",{"success":false}]"#)
        );
        assert_eq!(top_level(data, "c"), Some(r#""\"success\":false""#));
        assert_eq!(
            top_level(r#"{"a":"\\\"","success":true}"#, "success"),
            Some("true")
        );
    }

    #[test]
    fn malformed_or_empty_input_finds_nothing() {
        for json in [
            "",
            "{",
            "{}",
            "null",
            r#"{"a""#,
            r#"{"a":"#,
            r#"{"a":"unterminated}"#,
        ] {
            assert_eq!(top_level(json, "a"), None, "{json}");
        }
        assert_eq!(top_level(r#" { "a" : 1 } "#, "a"), Some("1"));
    }

    #[test]
    fn quotes_and_backslashes_at_every_offset_of_a_word_are_found() {
        for pad in 0..17 {
            let text = "x".repeat(pad);
            for tail in [r#"\""#, r#"\"q\\"#, r#"\u0001\\\\"#, "é€"] {
                let data = format!(r#"{{"a":"{text}{tail}","success":{pad}}}"#);
                assert_eq!(
                    top_level(&data, "success"),
                    Some(pad.to_string().as_str()),
                    "{data}"
                );
            }
        }
    }

    #[test]
    fn long_runs_of_backslashes_are_linear() {
        let agent = "\\\\".repeat(32 * 1024);
        let data = format!(r#"{{"user":"root","user_agent":"{agent}","success":false}}"#);
        assert_eq!(top_level(&data, "success"), Some("false"));
    }
}
