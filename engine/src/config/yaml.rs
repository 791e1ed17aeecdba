//! Reading YAML with diagnostics: parse errors and later checks both name line, key path and fix.

use std::fmt;
use std::path::Path;

use serde::de::{
    DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

use super::diagnostic::{Diagnostic, LoadError, Location};

/// Read `file` as text; `what` names it and `fix` says what to do when it cannot be read.
pub(crate) fn read_yaml(
    file: &Path,
    what: &'static str,
    fix: &'static str,
) -> Result<String, LoadError> {
    std::fs::read_to_string(file).map_err(|error| LoadError::Read {
        what,
        file: file.to_path_buf(),
        error,
        fix,
    })
}

/// Deserialize `text`, turning any error into a [`Diagnostic`] with line, key path and a fix
/// from [`fix_for`] with the file's `hint` table.
pub(crate) fn parse_yaml<T: DeserializeOwned>(
    text: &str,
    file: &Path,
    hint: fn(&str) -> Option<String>,
) -> Result<T, Diagnostic> {
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text)).map_err(|err| {
        let tracked = err.path().to_string();
        let inner = err.into_inner();
        let location = inner.location().map(|l| Location {
            line: l.line(),
            column: l.column(),
        });
        let (path, message) = split_message(&inner.to_string(), &tracked, location);
        let fix = fix_for(&path, &message, hint);
        Diagnostic {
            file: file.to_path_buf(),
            location,
            path,
            message,
            fix,
        }
    })
}

/// The key path and bare message of a serde_yaml error, given the path serde_path_to_error
/// tracked. serde_yaml writes "PATH: MESSAGE at line L column C"; its PATH is the right one for
/// a missing field (the tracked path then ends at the last key read), the tracked one otherwise
/// (it includes an unknown key). Unknown (`?`) steps are dropped.
fn split_message(full: &str, tracked: &str, location: Option<Location>) -> (String, String) {
    let message = match location {
        Some(at) => full.replacen(&format!(" at line {} column {}", at.line, at.column), "", 1),
        None => full.to_owned(),
    };
    let (own_path, message) = match message.split_once(": ") {
        Some((head, rest)) if !head.is_empty() && tracked.starts_with(head) => (head, rest),
        _ => ("", message.as_str()),
    };
    let path = if message.starts_with("missing field") {
        own_path
    } else {
        tracked
    };
    let path = path.trim_end_matches(['?', '.']);
    (path.to_owned(), message.to_owned())
}

/// One step of a key path.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Seg<'a> {
    /// A map key.
    Key(&'a str),
    /// A list index.
    Index(usize),
}

/// `rules[1].name` for `[Key("rules"), Index(1), Key("name")]`.
pub(super) fn key_path(path: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) if out.is_empty() => out.push_str(key),
            Seg::Key(key) => out.extend([".", key]),
            Seg::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// A document read without error, for the checks made after deserialization.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    /// The document's text.
    pub(crate) text: &'a str,
    /// The file it came from, as given.
    pub(crate) file: &'a Path,
}

impl Source<'_> {
    /// Where the value at `path` is, as [`locate`] finds it.
    pub(crate) fn locate(&self, path: &[Seg<'_>]) -> Option<Location> {
        locate(self.text, path)
    }

    /// The error for a failed check of the value at `path`.
    pub(crate) fn error(&self, path: &[Seg<'_>], message: String, fix: String) -> LoadError {
        LoadError::Invalid(Diagnostic {
            file: self.file.to_path_buf(),
            location: self.locate(path),
            path: key_path(path),
            message,
            fix,
        })
    }
}

/// The line and column of the value at `path`, or of its nearest present ancestor.
///
/// It re-reads the document with a seed that fails on purpose at that value, so serde_yaml
/// reports the value's own position.
pub(super) fn locate(text: &str, path: &[Seg<'_>]) -> Option<Location> {
    (0..=path.len()).rev().find_map(|len| {
        let err = Probe(&path[..len])
            .deserialize(serde_yaml::Deserializer::from_str(text))
            .err()?;
        err.location().map(|l| Location {
            line: l.line(),
            column: l.column(),
        })
    })
}

/// Walks down `path` and fails at the value found there (or at a scalar standing in its way).
struct Probe<'p, 'k>(&'p [Seg<'k>]);

/// Fails at whatever value it is given.
struct Found;

impl Visitor<'_> for Found {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nothing (locating a value)")
    }
}

impl<'de> DeserializeSeed<'de> for Probe<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.0.is_empty() {
            d.deserialize_any(Found)
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Probe<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map or a list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<serde_yaml::Value>()? {
            match self.0 {
                [Seg::Key(want), rest @ ..] if key.as_str() == Some(*want) => {
                    map.next_value_seed(Probe(rest))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let more = match self.0 {
                [Seg::Index(want), rest @ ..] if *want == index => {
                    seq.next_element_seed(Probe(rest))?
                }
                _ => seq.next_element::<IgnoredAny>()?.map(drop),
            };
            if more.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }
}

/// The fix for a deserialization error: by the kind of message, else by the nearest key with a hint.
fn fix_for(path: &str, message: &str, hint: fn(&str) -> Option<String>) -> String {
    let mut keys = path
        .rsplit('.')
        .map(|segment| segment.split('[').next().unwrap_or(segment));
    let key = keys.clone().next().unwrap_or_default();
    if message.starts_with("unknown field") {
        return format!(
            "remove `{key}` or correct its spelling; the keys allowed here are listed above"
        );
    }
    if message.starts_with("unknown variant") {
        return "use one of the values listed above".to_owned();
    }
    if let Some(field) = quoted_after(message, "missing field `") {
        let hint = hint(field).map_or_else(String::new, |hint| format!("; {hint}"));
        return format!("add `{field}:` to this entry{hint}");
    }
    if let Some(field) = quoted_after(message, "duplicate field `") {
        return format!("keep only one `{field}:` in this entry");
    }
    if message.contains("more than one document") {
        return "keep a single YAML document: remove the `---` separators".to_owned();
    }
    if is_syntax_error(message) {
        return "fix the YAML syntax at this line: check the indentation, close quotes and brackets, \
                and quote values that start with * & ! % @ ` { [ or contain \": \""
            .to_owned();
    }
    keys.find_map(hint)
        .unwrap_or_else(|| "correct this value".to_owned())
}

/// `x` from "PREFIXx`…".
fn quoted_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    message.strip_prefix(prefix)?.split('`').next()
}

fn is_syntax_error(message: &str) -> bool {
    const MARKERS: [&str; 7] = [
        "while parsing",
        "while scanning",
        "did not find expected",
        "could not find expected",
        "found character",
        "found unexpected",
        "mapping values are not allowed",
    ];
    MARKERS.iter().any(|marker| message.contains(marker))
}
