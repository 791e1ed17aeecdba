//! A recorded user-created event becomes one byte-exact .eml per admin with an email.

use crate::support::{Scratch, assert_exit, repo, stderr, stdout};

const RECORDING: &str = "tests/recordings/skeleton.jsonl";
const GOLDEN: &str = "tests/recordings/skeleton.expected";

fn golden() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(repo().join(GOLDEN))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn replay_into_fresh_state() -> Vec<(String, Vec<u8>)> {
    let scratch = Scratch::new();
    let out = scratch.herald(&["replay", "--deliver", RECORDING]);
    assert_exit(&out, 0);
    scratch.mails()
}

#[test]
fn user_created_is_one_eml_per_admin_with_email_byte_exact() {
    let mails = replay_into_fresh_state();
    if std::env::var_os("HERALD_BLESS").is_some() {
        let dir = repo().join(GOLDEN);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &mails {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let expected = golden();
    let names: Vec<&str> = mails.iter().map(|(n, _)| n.as_str()).collect();
    let expected_names: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, expected_names);
    for ((name, got), (_, want)) in mails.iter().zip(&expected) {
        assert_eq!(
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(want),
            "{name} differs from {GOLDEN}/{name}"
        );
    }
    // Two admins have an email (alice, bob) and two events create users.
    assert_eq!(mails.len(), 4);
}

#[test]
fn two_replays_give_identical_bytes() {
    assert_eq!(replay_into_fresh_state(), replay_into_fresh_state());
}

#[test]
fn replaying_into_the_same_store_queues_nothing_twice() {
    let scratch = Scratch::new();
    assert_exit(&scratch.herald(&["replay", "--deliver", RECORDING]), 0);
    let first = scratch.mails();
    let again = scratch.herald(&["replay", "--deliver", RECORDING]);
    assert_exit(&again, 0);
    assert!(
        stderr(&again).contains("3 events were journaled before"),
        "{}",
        stderr(&again)
    );
    assert_eq!(scratch.mails(), first);
    assert_eq!(scratch.count("SELECT count(*) FROM outbox"), 4);
    assert_eq!(scratch.count("SELECT count(*) FROM events"), 3);
}

#[test]
fn dry_run_prints_messages_and_stores_nothing() {
    let scratch = Scratch::new();
    let out = scratch.herald(&["replay", RECORDING]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("-> alice@example.org  [OMERO] INSERT Experimenter notification"),
        "{text}"
    );
    assert!(
        text.contains("| class ome.model.meta.Experimenter:52 - INSERT"),
        "{text}"
    );
    assert!(
        text.contains("skipped user root (id 0): has no email address"),
        "{text}"
    );
    assert!(
        text.contains("evt-0002 omero.thumbnail.generated"),
        "{text}"
    );
    assert!(text.contains("matched by no rule"), "{text}");
    assert!(!scratch.path("var/herald.db").exists());
    assert!(scratch.mails().is_empty());
}

#[test]
fn unsubscribed_event_is_journaled_and_reported() {
    let scratch = Scratch::new();
    let event = scratch.path("custom.json");
    std::fs::write(
        &event,
        r#"{"id":"c1","source":"s","type":"lab.coffee.empty","data":{}}"#,
    )
    .unwrap();
    let out = scratch.herald(&["send", event.to_str().unwrap()]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("matched by no rule"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM events WHERE state = 'done'"),
        1
    );
    assert_eq!(scratch.count("SELECT count(*) FROM outbox"), 0);
}
