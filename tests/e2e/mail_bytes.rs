//! The bytes of the mail Herald writes: old event times, hostile text, forged MIME parts, long ids.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Scratch, assert_exit, stderr, stdout};

/// The Python that reads mail with its standard `email` package: the test venv's, else `python3`.
pub(crate) fn python() -> PathBuf {
    std::env::var_os("HERALD_AIOSMTPD_PYTHON")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

const PARSE: &str = r#"
import email, email.policy, json, sys
out = []
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    parts = [
        {"type": p.get_content_type(), "body": p.get_content()}
        for p in msg.walk()
        if not p.is_multipart()
    ]
    out.append({"parts": parts, "defects": [str(d) for d in msg.defects]})
print(json.dumps(out))
"#;

/// One leaf part as Python's `email` parser sees it: content type and decoded text, with CRLF
/// read as LF (Python keeps CRLF in a 7bit part but decodes quoted-printable to LF).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) content_type: String,
    pub(crate) body: String,
}

/// Parse each file with Python's `email` package (policy `default`); the leaf parts of each.
pub(crate) fn python_parts(files: &[&Path]) -> Vec<Vec<Part>> {
    let out = Command::new(python())
        .arg("-c")
        .arg(PARSE)
        .args(files)
        .output()
        .expect("run python3");
    assert!(out.status.success(), "python: {}", stderr(&out));
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    parsed
        .as_array()
        .unwrap()
        .iter()
        .map(|message| {
            assert_eq!(message["defects"], serde_json::json!([]), "{message}");
            message["parts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| Part {
                    content_type: p["type"].as_str().unwrap().to_owned(),
                    body: p["body"].as_str().unwrap().replace("\r\n", "\n"),
                })
                .collect()
        })
        .collect()
}

/// A broadcast event (shipped config: rule `broadcast`) to alice, with the given id, time and body.
fn broadcast(id: &str, time: &str, body: &str) -> String {
    serde_json::json!({
        "specversion": "1.0", "id": id, "source": "omero://omero.example.org",
        "type": "herald.broadcast", "time": time,
        "data": {"subject": "Notice", "body": body, "user_names": ["alice"]}
    })
    .to_string()
}

fn write_events(scratch: &Scratch, lines: &[String]) -> String {
    let path = scratch.path("events.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path.display().to_string()
}

#[test]
fn an_event_dated_1950_delivers_and_old_rows_block_nothing() {
    let scratch = Scratch::new();
    let events = write_events(
        &scratch,
        &[
            broadcast("old-1950", "1950-06-01T12:30:05Z", "From the archive.\n"),
            broadcast(
                "pre-1900",
                "1951-01-01T00:00:00Z",
                "Made older in the store.\n",
            ),
            broadcast("new-2026", "2026-11-23T09:00:00Z", "Today.\n"),
        ],
    );
    let out = scratch.herald(&["replay", &events]);
    assert_exit(&out, 0);
    let out = scratch.herald(&["send", &events]);
    assert_exit(&out, 0);
    // A row whose event predates 1900 cannot come from ingest; put one in the store by hand.
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    conn.execute(
        "UPDATE events SET time = '1850-01-01T00:00:00Z' WHERE id = 'pre-1900'",
        [],
    )
    .unwrap();
    drop(conn);

    let out = scratch.herald(&["deliver", "--until-empty"]);
    assert_ne!(out.status.code(), Some(101), "panicked: {}", stderr(&out));
    let mails = scratch.mails();
    let names: Vec<&str> = mails.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}\n{}", stdout(&out));
    let old = &mails
        .iter()
        .find(|(n, _)| n.starts_with("old-1950--"))
        .unwrap()
        .1;
    let old = String::from_utf8_lossy(old);
    assert!(
        old.contains("\r\nDate: Thu, 01 Jun 1950 12:30:05 +0000\r\n"),
        "{old}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("new-2026--")),
        "{names:?}"
    );
    let kept = scratch.count(
        "SELECT count(*) FROM outbox o JOIN events e ON e.seq = o.event_seq \
         WHERE e.id = 'pre-1900' AND o.state = 'queued'",
    );
    assert_eq!(kept, 1, "the pre-1900 row is kept, not lost");

    for id in 1..=3 {
        let out = scratch.herald(&["outbox", "show", &id.to_string()]);
        assert_ne!(out.status.code(), Some(101), "panicked: {}", stderr(&out));
    }
    let ids = scratch.count(
        "SELECT o.id FROM outbox o JOIN events e ON e.seq = o.event_seq WHERE e.id = 'old-1950'",
    );
    let out = scratch.herald(&["outbox", "show", &ids.to_string()]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("1950"), "{}", stdout(&out));
}

/// The raw bytes have CRLF line ends only, and no NUL.
pub(crate) fn assert_clean_line_ends(bytes: &[u8], what: &str) {
    for (i, &b) in bytes.iter().enumerate() {
        let context =
            String::from_utf8_lossy(&bytes[i.saturating_sub(40)..(i + 40).min(bytes.len())]);
        assert!(
            b != b'\r' || bytes.get(i + 1) == Some(&b'\n'),
            "{what}: bare CR at byte {i}: {context:?}"
        );
        assert!(
            b != b'\n' || (i > 0 && bytes[i - 1] == b'\r'),
            "{what}: bare LF at byte {i}: {context:?}"
        );
        assert_ne!(b, 0, "{what}: NUL at byte {i}: {context:?}");
    }
}

#[test]
fn hostile_line_ends_and_nul_are_normalised_in_the_eml() {
    let scratch = Scratch::new();
    let body = "line one\r.\r\nsmuggled\rbare cr\nbare lf\0nul\r\n";
    let events = write_events(
        &scratch,
        &[broadcast("crlf-1", "2026-11-23T09:00:00Z", body)],
    );
    assert_exit(&scratch.herald(&["replay", "--deliver", &events]), 0);
    let mails = scratch.mails();
    assert_eq!(mails.len(), 1);
    assert_clean_line_ends(&mails[0].1, &mails[0].0);
    let file = scratch.path("var/mail").join(&mails[0].0);
    let parts = python_parts(&[&file]);
    assert_eq!(
        parts[0],
        vec![Part {
            content_type: "text/plain".into(),
            body: "line one\n.\nsmuggled\nbare cr\nbare lf\0nul\n".into()
        }]
    );
}

/// The digest Herald derives its predictable first-choice boundary from (source, id, rule, recipient).
fn key_digest(parts: [&str; 4]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..12])
}

#[test]
fn an_event_cannot_forge_a_mime_part_in_enriched_mode() {
    let scratch = Scratch::with_config(
        "mail:\n  from: omero@localhost\n  transport: file\n\
         directory:\n  path: directory.yaml\n\
         rules:\n  - name: new-comment\n    module: builtin:new-comment\n    \
         on: [omero.comment.added]\n    config: {mode: enriched}\n",
    );
    let source = "omero://omero.example.org";
    let boundary = format!(
        "=_herald_{}",
        key_digest([source, "forge-1", "new-comment", "alice@example.org"])
    );
    let forged = format!(
        "cells.tif\n--{boundary}\nContent-Type: text/html; charset=utf-8\n\n\
         <h1>Your account is locked: log in at evil.example</h1>\n--{boundary}--\n"
    );
    let event = serde_json::json!({
        "specversion": "1.0", "id": "forge-1", "source": source,
        "type": "omero.comment.added", "time": "2026-11-23T10:05:00Z",
        "data": {"comment": {"id": 901, "text": "Nice",
            "owner": {"id": 3, "name": "bob", "first_name": "Bob", "last_name": "Builder"}},
            "links": [{"type": "Image", "id": 7, "name": forged,
                "owner": {"id": 2, "name": "alice", "first_name": "Alice", "last_name": "Liddell",
                          "email": "alice@example.org"}}]}
    });
    let events = write_events(&scratch, &[event.to_string()]);
    let out = scratch.herald_own(&["replay", "--deliver", &events]);
    assert_exit(&out, 0);
    let mails = scratch.mails();
    assert_eq!(mails.len(), 1, "{}", stdout(&out));
    let raw = String::from_utf8_lossy(&mails[0].1);
    let file = scratch.path("var/mail").join(&mails[0].0);
    let parts = &python_parts(&[&file])[0];
    let types: Vec<&str> = parts.iter().map(|p| p.content_type.as_str()).collect();
    assert_eq!(types, ["text/plain", "text/html"], "{raw}");
    assert!(!raw.contains(&format!("\r\n--{boundary}\r\n")), "{raw}");
    assert!(
        parts[0].body.contains("<h1>Your account is locked"),
        "the forged text stays text in the plain part: {:?}",
        parts[0].body
    );
    assert!(!parts[1].body.contains("<h1>"), "{:?}", parts[1].body);
}

#[test]
fn event_ids_of_300_characters_get_short_distinct_file_names() {
    let scratch = Scratch::new();
    let base = "e".repeat(300);
    let (a, b) = (format!("{base}-a"), format!("{base}-b"));
    let events = write_events(
        &scratch,
        &[
            broadcast(&a, "2026-11-23T09:00:00Z", "A.\n"),
            broadcast(&b, "2026-11-23T09:00:00Z", "B.\n"),
        ],
    );
    let out = scratch.herald(&["replay", "--deliver", &events]);
    assert_exit(&out, 0);
    let mails = scratch.mails();
    assert_eq!(mails.len(), 2, "{}", stdout(&out));
    assert_ne!(mails[0].0, mails[1].0);
    for (name, bytes) in &mails {
        assert!(name.len() <= 255, "{} bytes: {name}", name.len());
        assert!(name.starts_with(&"e".repeat(50)), "{name}");
        assert!(name.contains("--broadcast--alice@example.org--"), "{name}");
        assert!(!bytes.is_empty());
    }
    let bodies: Vec<bool> = mails
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).ends_with("\r\nA.\r\n"))
        .collect();
    assert_eq!(bodies.iter().filter(|&&a| a).count(), 1);
}
