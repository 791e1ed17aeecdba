//! `herald export --since` and `herald replay --rules A --against B` on the real binary:
//! journaled events go out as JSON Lines, and only the mail that differs is shown.

use crate::support::{Scratch, assert_exit, repo, stderr, stdout};

/// A config with the recorded new-user and new-group rules; `group_config` is new-group's.
fn config(group_config: &str) -> String {
    format!(
        "state_dir: var\ndirectory: {{path: {}}}\nrules:\n  \
         - {{name: new-user, module: builtin:new-user, on: [omero.user.created]}}\n  \
         - {{name: new-group, module: builtin:new-group, on: [omero.group.created], config: {group_config}}}\n",
        repo().join("tests/recordings/directory.yaml").display()
    )
}

#[test]
fn export_writes_journaled_events_since_a_time_and_replay_shows_the_one_mail_that_differs() {
    let scratch = Scratch::with_config(&config("{}"));
    std::fs::write(
        scratch.path("new.yaml"),
        config("{subject_prefix: \"[LAB] \"}"),
    )
    .unwrap();
    let events = repo().join("tests/recordings/new-user-group/events.jsonl");
    assert_exit(&scratch.herald_own(&["send", events.to_str().unwrap()]), 0);

    let all = scratch.herald_own(&["export", "--since", "2026-01-01T00:00:00Z"]);
    assert_exit(&all, 0);
    let lines: Vec<String> = stdout(&all).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("\"id\":\"nu-1\"") && lines[1].contains("\"id\":\"ng-1\""),
        "{lines:?}"
    );
    let later = scratch.herald_own(&["export", "--since", "2026-11-23T09:00:30Z"]);
    assert_eq!(stdout(&later).lines().count(), 1, "{}", stdout(&later));
    assert!(
        stderr(&later).contains("exported 1 event(s)"),
        "{}",
        stderr(&later)
    );
    let exported = scratch.path("week.jsonl");
    std::fs::write(&exported, stdout(&all)).unwrap();

    let (new, old) = (scratch.path("new.yaml"), scratch.path("herald.yaml"));
    let compared = scratch.herald_own(&[
        "replay",
        exported.to_str().unwrap(),
        "--rules",
        new.to_str().unwrap(),
        "--against",
        old.to_str().unwrap(),
    ]);
    assert_exit(&compared, 1);
    let out = stdout(&compared);
    assert_eq!(out.matches("changed: ").count(), 1, "{out}");
    assert!(
        out.contains("changed: ng-1--new-group--root@example.org--"),
        "{out}"
    );
    assert!(out.contains("\n-Subject: [OMERO] "), "{out}");
    assert!(out.contains("\n+Subject: [LAB] "), "{out}");
    assert!(
        !out.contains("new-user"),
        "the new-user mail is the same and not shown\n{out}"
    );
    assert!(
        stderr(&compared).contains("1 message(s) differ: 1 changed, 0 only with"),
        "{}",
        stderr(&compared)
    );

    let same = scratch.herald_own(&[
        "replay",
        exported.to_str().unwrap(),
        "--rules",
        old.to_str().unwrap(),
        "--against",
        old.to_str().unwrap(),
    ]);
    assert_exit(&same, 0);
    assert!(stdout(&same).is_empty(), "{}", stdout(&same));
    assert!(
        stderr(&same).contains("0 message(s) differ"),
        "{}",
        stderr(&same)
    );
}

#[test]
fn expect_on_a_missing_folder_points_at_bless() {
    let scratch = Scratch::with_config(&config("{}"));
    let events = repo().join("tests/recordings/new-user-group/events.jsonl");
    let missing = scratch.path("no-such-folder");
    let out = scratch.herald_own(&[
        "replay",
        events.to_str().unwrap(),
        "--expect",
        missing.to_str().unwrap(),
    ]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("run again with --bless"),
        "{}",
        stderr(&out)
    );
}
