//! The recorded corpus: every case in tests/recordings/<case>/ replays byte-exact against its golden mail.
//!
//! A case is `herald.yaml` + `events.jsonl` + `expected/*.eml`. Set HERALD_BLESS=1 to rewrite the
//! expected folders from what the rules produce now (then read the diff before committing).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::mail_bytes::python_parts;
use crate::support::{Scratch, assert_exit, repo, stderr, stdout};

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/recordings"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("herald.yaml").exists())
        .collect();
    cases.sort();
    cases
}

fn replay(scratch: &Scratch, case: &Path, expected: &Path) -> std::process::Output {
    let mut args = vec![
        "replay".to_owned(),
        case.join("events.jsonl").display().to_string(),
        "--expect".to_owned(),
        expected.display().to_string(),
    ];
    if std::env::var_os("HERALD_BLESS").is_some() {
        args.push("--bless".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    scratch.herald_with(&case.join("herald.yaml"), &args)
}

#[test]
fn every_recorded_case_matches_its_golden_mail() {
    let cases = cases();
    assert!(cases.len() >= 5, "the corpus went missing: {cases:?}");
    for case in cases {
        let scratch = Scratch::new();
        let out = replay(&scratch, &case, &case.join("expected"));
        assert_exit(&out, 0);
        assert!(
            stderr(&out).contains("every message matches") || stderr(&out).contains("blessed"),
            "{}: {}",
            case.display(),
            stderr(&out)
        );
    }
}

#[test]
fn a_changed_golden_file_fails_with_a_diff() {
    let case = repo().join("tests/recordings/new-user-group");
    let scratch = Scratch::new();
    let expected = scratch.path("expected");
    std::fs::create_dir_all(&expected).unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(case.join("expected")).unwrap() {
        let path = entry.unwrap().path();
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        std::fs::copy(&path, expected.join(path.file_name().unwrap())).unwrap();
    }
    names.sort();
    let victim = expected.join(&names[0]);
    let text = std::fs::read_to_string(&victim)
        .unwrap()
        .replace("INSERT", "UPDATE");
    std::fs::write(&victim, text).unwrap();
    std::fs::write(expected.join("stale.eml"), "not produced\r\n").unwrap();
    std::fs::remove_file(expected.join(&names[1])).unwrap();

    let out = replay(&scratch, &case, &expected);
    if std::env::var_os("HERALD_BLESS").is_some() {
        return;
    }
    assert_exit(&out, 1);
    let text = stdout(&out);
    assert!(text.contains(&format!("changed: {}", names[0])), "{text}");
    assert!(
        text.contains("-Subject: [OMERO] UPDATE"),
        "no diff line in {text}"
    );
    assert!(
        text.contains("+Subject: [OMERO] INSERT"),
        "no diff line in {text}"
    );
    assert!(text.contains("missing: stale.eml"), "{text}");
    assert!(
        text.contains(&format!("unexpected: {}", names[1])),
        "{text}"
    );
    assert!(
        stderr(&out).contains("3 file(s) differ"),
        "{}",
        stderr(&out)
    );
}

/// One single-part mail a rule produced, as `replay --json` reports it, with its `.eml`.
struct Produced {
    rule: String,
    text: String,
    file: PathBuf,
    bytes: Vec<u8>,
}

/// Replay a case for real (file transport) with `--json`: every single-part mail with the text
/// its rule wrote (from the JSON report, not from the golden files) and the `.eml` written.
fn produced_plain_mails(scratch: &Scratch, case: &Path) -> Vec<Produced> {
    let events = case.join("events.jsonl").display().to_string();
    let out = scratch.herald_with(
        &case.join("herald.yaml"),
        &["replay", "--deliver", "--json", &events],
    );
    assert_exit(&out, 0);
    let mails = scratch.mails();
    let mut produced = Vec::new();
    for line in stdout(&out).lines().filter(|l| l.starts_with('{')) {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        for rule in event["rules"].as_array().unwrap() {
            for mail in rule["mails"].as_array().into_iter().flatten() {
                if !mail["html"].is_null() {
                    continue;
                }
                let prefix = format!(
                    "{}--{}--{}--",
                    event["id"].as_str().unwrap(),
                    rule["rule"].as_str().unwrap(),
                    mail["recipient"].as_str().unwrap()
                );
                let (name, bytes) = mails
                    .iter()
                    .find(|(name, _)| name.starts_with(&prefix))
                    .unwrap_or_else(|| panic!("{}: no .eml for {prefix}", case.display()));
                produced.push(Produced {
                    rule: rule["rule"].as_str().unwrap().to_owned(),
                    text: mail["text"].as_str().unwrap().to_owned(),
                    file: scratch.path("var/mail").join(name),
                    bytes: bytes.clone(),
                });
            }
        }
    }
    produced
}

/// The rules every stock OMERO sender and the broadcast map to; the corpus must cover each.
const PARITY_RULES: [&str; 8] = [
    "server-up",
    "server-down",
    "failed-login",
    "new-user",
    "new-group",
    "new-comment",
    "web-error",
    "broadcast",
];

fn assert_covers_every_parity_rule(seen: &BTreeSet<String>) {
    for rule in PARITY_RULES {
        assert!(
            seen.contains(rule),
            "no single-part mail of {rule} in the corpus: {seen:?}"
        );
    }
}

#[test]
fn every_parity_and_broadcast_body_is_the_rules_text_with_crlf_byte_for_byte() {
    let mut seen = BTreeSet::new();
    for case in cases() {
        let scratch = Scratch::new();
        for mail in produced_plain_mails(&scratch, &case) {
            let raw = String::from_utf8(mail.bytes).unwrap();
            let (head, body) = raw.split_once("\r\n\r\n").unwrap();
            assert!(
                head.ends_with("\r\nContent-Transfer-Encoding: 7bit"),
                "{}: {head}",
                mail.file.display()
            );
            let want = mail.text.replace("\r\n", "\n").replace('\n', "\r\n");
            assert_eq!(body, want, "{}", mail.file.display());
            seen.insert(mail.rule);
        }
    }
    assert_covers_every_parity_rule(&seen);
}

#[test]
fn python_reads_every_parity_mail_with_the_exact_omero_body() {
    let mut seen = BTreeSet::new();
    for case in cases() {
        let scratch = Scratch::new();
        let mails = produced_plain_mails(&scratch, &case);
        let files: Vec<&Path> = mails.iter().map(|m| m.file.as_path()).collect();
        for (mail, parts) in mails.iter().zip(python_parts(&files)) {
            assert_eq!(parts.len(), 1, "{}", mail.file.display());
            assert_eq!(parts[0].content_type, "text/plain");
            assert_eq!(parts[0].body, mail.text, "{}", mail.file.display());
            seen.insert(mail.rule.clone());
        }
    }
    assert_covers_every_parity_rule(&seen);
}
