//! `herald outbox` and `herald rules`: the admin's view of queued mail and rule health.

use crate::support::{Scratch, assert_exit, fixture_wasm, stderr, stdout};

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

fn quarantine_config() -> String {
    format!(
        "state_dir: var\nrules:\n  - name: bad\n    module: {}\n    on: [test.bad]\n    config: {{misdeed: panic}}\n",
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
}
