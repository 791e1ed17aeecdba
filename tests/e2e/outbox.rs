//! `herald outbox` and `herald rules`: the admin's view of queued mail and rule health.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Scratch, assert_exit, fixture_wasm, smtp_sink, stderr, stdout, wait_for};

const EVENT: &str = r#"{"id":"u1","source":"s","type":"omero.user.created","time":"2026-11-23T09:00:00Z","data":{"user":{"id":9,"name":"ivy"}}}"#;

fn queued_scratch() -> Scratch {
    let scratch = Scratch::new();
    std::fs::write(scratch.path("e.json"), EVENT).unwrap();
    assert_exit(
        &scratch.herald(&["send", scratch.path("e.json").to_str().unwrap()]),
        0,
    );
    scratch
}

fn rows_json(scratch: &Scratch, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["outbox", "list", "--json"];
    all.extend_from_slice(args);
    let out = scratch.herald(&all);
    assert_exit(&out, 0);
    serde_json::from_str::<Vec<serde_json::Value>>(&stdout(&out)).unwrap()
}

#[test]
fn list_cancel_deliver_show_and_purge() {
    let scratch = queued_scratch();
    let rows = rows_json(&scratch, &["--state", "queued"]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let human = stdout(&scratch.herald(&["outbox", "list"]));
    assert!(
        human.contains("[OMERO] INSERT Experimenter notification"),
        "{human}"
    );

    let bob = rows
        .iter()
        .find(|r| r["recipient"] == "bob@example.org")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_exit(&scratch.herald(&["outbox", "cancel", &bob.to_string()]), 0);
    assert_exit(&scratch.herald(&["deliver", "--until-empty"]), 0);
    assert_eq!(scratch.mails().len(), 1, "a cancelled row is not delivered");
    assert_eq!(rows_json(&scratch, &["--state", "cancelled"]).len(), 1);

    let sent = rows_json(&scratch, &["--state", "sent", "--rule", "new-user"]);
    assert_eq!(sent.len(), 1);
    let id = sent[0]["id"].as_i64().unwrap().to_string();
    let show = stdout(&scratch.herald(&["outbox", "show", &id]));
    assert!(
        show.contains("Subject: [OMERO] INSERT Experimenter notification"),
        "{show}"
    );
    assert!(
        show.contains("class ome.model.meta.Experimenter:9 - INSERT"),
        "{show}"
    );
    assert!(
        show.contains("sent  written to"),
        "the attempt is listed: {show}"
    );

    let again = scratch.herald(&["outbox", "retry", &id]);
    assert_exit(&again, 2);
    assert!(
        stderr(&again).contains("is not dead or deferred"),
        "{}",
        stderr(&again)
    );

    let purge = scratch.herald(&["outbox", "purge", "--sent-before", "2999-01-01T00:00:00Z"]);
    assert_exit(&purge, 0);
    assert_eq!(stdout(&purge), "purged 1 sent row(s)\n");
    assert!(rows_json(&scratch, &["--state", "sent"]).is_empty());
}

#[test]
fn a_row_damaged_on_disk_is_set_dead_with_its_reason_and_the_others_still_go() {
    let scratch = queued_scratch();
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let damaged: i64 = conn
        .query_row(
            "UPDATE outbox SET mail = '{not json' WHERE recipient = 'alice@example.org' \
             RETURNING id",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(conn);
    let out = scratch.herald(&["deliver", "--until-empty"]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("1 permanent (dead)") && stdout(&out).contains("cannot be read"),
        "{}",
        stdout(&out)
    );
    assert_eq!(scratch.mails().len(), 1, "bob's message still went");
    let dead = rows_json(&scratch, &["--state", "dead"]);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["id"], damaged);
    let show = scratch.herald(&["outbox", "show", &damaged.to_string()]);
    assert_exit(&show, 0);
    assert!(
        stdout(&show).contains("the stored message cannot be read")
            && stdout(&show).contains("unreadable"),
        "{}",
        stdout(&show)
    );
}

#[test]
fn purge_deletes_only_rows_sent_strictly_before_the_cutoff() {
    let scratch = queued_scratch();
    let more = r#"{"id":"u2","source":"s","type":"omero.user.created","time":"2026-11-23T09:00:00Z","data":{"user":{"id":10,"name":"joy"}}}"#;
    std::fs::write(scratch.path("e2.json"), more).unwrap();
    assert_exit(
        &scratch.herald(&["send", scratch.path("e2.json").to_str().unwrap()]),
        0,
    );
    assert_exit(&scratch.herald(&["deliver", "--until-empty"]), 0);
    // Four sent rows: one a day before the cutoff, one a millisecond before, one exactly
    // at it, one after; and a fifth row still queued.
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let times = [
        "2026-01-01T00:00:00+00:00",
        "2026-01-01T23:59:59.999+00:00",
        "2026-01-02T00:00:00+00:00",
        "2026-01-02T00:00:00.001+00:00",
    ];
    for (id, at) in (1..=4).zip(times) {
        conn.execute(
            "UPDATE outbox SET sent_at = ?2 WHERE id = ?1",
            rusqlite::params![id, at],
        )
        .unwrap();
    }
    std::fs::write(scratch.path("e3.json"), more.replace("u2", "u3")).unwrap();
    assert_exit(
        &scratch.herald(&["send", scratch.path("e3.json").to_str().unwrap()]),
        0,
    );
    let queued_before = scratch.count("SELECT count(*) FROM outbox WHERE state = 'queued'");

    let purge = scratch.herald(&["outbox", "purge", "--sent-before", "2026-01-02T00:00:00Z"]);
    assert_exit(&purge, 0);
    assert_eq!(stdout(&purge), "purged 2 sent row(s)\n");
    let left: Vec<i64> = rows_json(&scratch, &["--state", "sent"])
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        left,
        [4, 3],
        "the row at the cutoff and the one after it survive"
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM attempts WHERE outbox_id IN (1, 2)"),
        0
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM attempts WHERE outbox_id IN (3, 4)"),
        2
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE state = 'queued'"),
        queued_before,
        "rows not sent are never purged"
    );
}

#[test]
fn outbox_list_escapes_control_characters_from_event_data() {
    let scratch = Scratch::new();
    let event = r#"{"id":"evil\u001b[2J\u0007\r\nX","source":"s\u001b]0;pwned\u0007","type":"omero.user.created","time":"2026-11-23T09:00:00Z","data":{"user":{"id":9,"name":"ivy"}}}"#;
    std::fs::write(scratch.path("e.json"), event).unwrap();
    assert_exit(
        &scratch.herald(&["send", scratch.path("e.json").to_str().unwrap()]),
        0,
    );
    let list = scratch.herald(&["outbox", "list"]);
    assert_exit(&list, 0);
    let text = stdout(&list);
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "raw control characters reach the terminal: {text:?}"
    );
    assert!(text.contains("evil\\u{1b}[2J\\u{7}\\r\\nX"), "{text}");
    let id = rows_json(&scratch, &[])[0]["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let show = stdout(&scratch.herald(&["outbox", "show", &id]));
    assert!(
        !show
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'),
        "raw control characters in `outbox show`: {show:?}"
    );
}

/// An SMTP config for the new-user rule towards `port`, with a 5-minute lease.
fn smtp_config(port: u16) -> String {
    format!(
        "state_dir: var\nmail:\n  transport: smtp\n  smtp: {{host: 127.0.0.1, port: {port}, hello_name: herald.test, max_connections: 2}}\n\
         delivery: {{lease: 5m, poll_interval: 100ms}}\n\
         rules:\n  - {{name: new-user, module: builtin:new-user, on: [omero.user.created]}}\n"
    )
}

fn spawn_deliver(scratch: &Scratch, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("--config")
        .arg(scratch.path("herald.yaml"))
        .arg("--state-dir")
        .arg(scratch.path("var"))
        .arg("deliver")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn leased(scratch: &Scratch) -> i64 {
    scratch.count("SELECT count(*) FROM outbox WHERE state = 'queued' AND lease_until IS NOT NULL")
}

#[test]
fn a_killed_workers_lease_is_shown_with_its_owner_and_taken_over_at_once() {
    let stalling = smtp_sink(&["-W", "data:60"]);
    let scratch = Scratch::with_config(&smtp_config(stalling.port));
    std::fs::write(scratch.path("e.json"), EVENT).unwrap();
    assert_exit(
        &scratch.herald_own(&["send", scratch.path("e.json").to_str().unwrap()]),
        0,
    );
    let mut worker = spawn_deliver(&scratch, &["--until-empty"]);
    let pid = worker.id();
    // A message is being sent (the server stalls it at DATA).
    let sending = "SELECT count(*) FROM outbox WHERE lease_until IS NOT NULL AND sending = 1";
    assert!(wait_for(Duration::from_secs(30), || scratch.count(sending) > 0));
    worker.kill().unwrap(); // SIGKILL
    assert_eq!(worker.wait().unwrap().signal(), Some(9));

    let rows: Vec<serde_json::Value> = {
        let out = scratch.herald_own(&["outbox", "list", "--json"]);
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let held: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| !r["lease_owner"].is_null())
        .collect();
    assert!(!held.is_empty(), "{rows:?}");
    for row in &held {
        let owner = row["lease_owner"].as_str().unwrap();
        assert!(owner.contains(&format!(":{pid}:")), "{owner}");
        assert!(!row["leased_until"].is_null());
    }
    let human = stdout(&scratch.herald_own(&["outbox", "list"]));
    assert!(
        human.contains(&format!(":{pid}:")) && human.contains("(gone)"),
        "{human}"
    );

    drop(stalling);
    let sink = smtp_sink(&[]);
    std::fs::write(scratch.path("herald.yaml"), smtp_config(sink.port)).unwrap();
    let start = Instant::now();
    assert_exit(&scratch.herald_own(&["deliver", "--until-empty"]), 0);
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "it waited for the lease"
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE state <> 'sent'"),
        0
    );
    // Only the rows whose message was being handed over may have gone out.
    let sending = held.iter().filter(|row| row["sending"] == true).count();
    assert!(sending >= 1, "the stalled message was being sent: {held:?}");
    assert_eq!(
        scratch.count("SELECT count(*) FROM attempts WHERE outcome = 'interrupted'"),
        sending as i64
    );
}

#[test]
fn until_empty_waits_for_rows_a_live_worker_holds() {
    let slow = smtp_sink(&["-W", "data:2"]);
    let scratch = Scratch::with_config(&smtp_config(slow.port));
    std::fs::write(scratch.path("e.json"), EVENT).unwrap();
    assert_exit(
        &scratch.herald_own(&["send", scratch.path("e.json").to_str().unwrap()]),
        0,
    );
    let mut worker = spawn_deliver(&scratch, &[]);
    assert!(wait_for(Duration::from_secs(30), || leased(&scratch) == 2));
    let out = scratch.herald_own(&["deliver", "--until-empty"]);
    assert_exit(&out, 0);
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE state <> 'sent'"),
        0,
        "--until-empty returned while another worker still held rows"
    );
    // SAFETY: kill(2) on our own child with a valid signal.
    unsafe { libc::kill(worker.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(worker.wait().unwrap().code(), Some(0));
}

fn quarantine_config() -> String {
    format!(
        "state_dir: var\ningest: {{custom_types: [test.bad]}}\nrules:\n  - name: bad\n    module: {}\n    on: [test.bad]\n    config: {{misdeed: panic}}\n",
        fixture_wasm("herald-rule-hostile").display()
    )
}

#[test]
fn a_rule_failing_five_times_in_a_row_is_quarantined_admins_told_once() {
    let scratch = Scratch::with_config(&quarantine_config());
    let events: Vec<String> = (0..7)
        .map(|i| format!(r#"{{"id":"b{i}","source":"s","type":"test.bad"}}"#))
        .collect();
    std::fs::write(scratch.path("bad.jsonl"), events.join("\n")).unwrap();
    let out = scratch.herald_own(&["send", scratch.path("bad.jsonl").to_str().unwrap()]);
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("rule quarantined; admins notified"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("rule is quarantined, so it was skipped"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM rule_runs WHERE rule = 'bad'"),
        5
    );
    // alice and bob are the admins with an email in etc/directory.yaml: one notice each.
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE rule = 'quarantine:bad'"),
        2
    );

    let rules = scratch.herald_own(&["rules", "list", "--json"]);
    let rules: Vec<serde_json::Value> = serde_json::from_str(&stdout(&rules)).unwrap();
    assert_eq!(rules[0]["state"], "quarantined");
    assert_eq!(rules[0]["consecutive_failures"], 5);
    assert_eq!(rules[0]["skipped"], 2);

    assert_exit(&scratch.herald_own(&["rules", "release", "bad"]), 0);
    let again = scratch.herald_own(&["rules", "release", "bad"]);
    assert_exit(&again, 2);
    assert!(stdout(&scratch.herald_own(&["rules"])).contains("active"));

    // Released, the rule runs again; five more failures trip it again, and the admins
    // are told again (one new notice each).
    let events: Vec<String> = (7..12)
        .map(|i| format!(r#"{{"id":"b{i}","source":"s","type":"test.bad"}}"#))
        .collect();
    std::fs::write(scratch.path("bad2.jsonl"), events.join("\n")).unwrap();
    let out = scratch.herald_own(&["send", scratch.path("bad2.jsonl").to_str().unwrap()]);
    assert_exit(&out, 0);
    assert_eq!(
        scratch.count("SELECT count(*) FROM rule_runs WHERE rule = 'bad'"),
        10,
        "the released rule ran on every new event"
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE rule = 'quarantine:bad'"),
        4,
        "a second trip notifies again"
    );
    let rules = scratch.herald_own(&["rules", "list", "--json"]);
    let rules: Vec<serde_json::Value> = serde_json::from_str(&stdout(&rules)).unwrap();
    assert_eq!(rules[0]["state"], "quarantined");
}
