//! The recorded corpus: every case in tests/recordings/<case>/ replays byte-exact against its golden mail.
//!
//! A case is `herald.yaml` + `events.jsonl` + `expected/*.eml`. Set HERALD_BLESS=1 to rewrite the
//! expected folders from what the rules produce now (then read the diff before committing).

use std::path::{Path, PathBuf};

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
