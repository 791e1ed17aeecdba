//! Hostile event data through the real binary: caps and time floor at ingest, default rules that still alert,
//! and quarantined rules reported as such.

use crate::support::{Scratch, assert_exit, fixture_wasm, stderr, stdout};

/// `ingest.max_string_bytes`' default: the largest string an event may hold.
const STRING_CAP: usize = 64 * 1024;

fn write(scratch: &Scratch, name: &str, lines: &[String]) -> String {
    let path = scratch.path(name);
    std::fs::write(&path, lines.join("\n")).unwrap();
    path.to_str().unwrap().to_owned()
}

fn login_failed(id: &str, user: &str, user_agent: &str) -> String {
    serde_json::json!({"specversion": "1.0", "id": id, "source": "omero://test", "type": "omero.login.failed",
        "time": "2026-11-23T09:00:00Z", "data": {"user": user, "remote_addr": "192.0.2.7", "user_agent": user_agent}})
    .to_string()
}

fn nothing_stored(scratch: &Scratch) {
    if scratch.path("var/herald.db").exists() {
        assert_eq!(scratch.count("SELECT count(*) FROM events"), 0);
    }
}

#[test]
fn a_time_before_1900_is_refused_naming_time_and_1900_is_accepted() {
    let scratch = Scratch::new();
    let event = |id: &str, time: &str| {
        format!(
            r#"{{"id":"{id}","source":"s","type":"omero.server.up","time":"{time}","data":{{"server":"x"}}}}"#
        )
    };
    let file = write(
        &scratch,
        "old.jsonl",
        &[
            event("ok", "2026-01-01T00:00:00Z"),
            event("old", "1899-12-31T23:59:59Z"),
        ],
    );
    let out = scratch.herald(&["send", &file]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(
            "line 2: event old: `time` 1899-12-31T23:59:59Z is before 1900-01-01T00:00:00Z"
        ),
        "{err}"
    );
    assert!(err.contains("leave `time` out"), "{err}");
    nothing_stored(&scratch);

    let file = write(
        &scratch,
        "1900.jsonl",
        &[event("first", "1900-01-01T00:00:00Z")],
    );
    let out = scratch.herald(&["send", &file]);
    assert_exit(&out, 0);
    assert_eq!(scratch.count("SELECT count(*) FROM events"), 1);
}

#[test]
fn an_oversize_string_is_refused_naming_line_and_field_path() {
    let scratch = Scratch::new();
    let file = write(
        &scratch,
        "big.jsonl",
        &[
            login_failed("fine", "root", "Mozilla/5.0"),
            login_failed("big", "root", &"u".repeat(STRING_CAP + 1)),
        ],
    );
    let out = scratch.herald(&["send", &file]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "line 2: event big: `data.user_agent` is a string of {} bytes; the cap is 65536 (ingest.max_string_bytes)",
            STRING_CAP + 1
        )),
        "{err}"
    );
    assert!(err.contains("nothing was stored"), "{err}");
    nothing_stored(&scratch);
}

#[test]
fn an_oversize_event_is_refused_and_the_cap_is_configurable() {
    let scratch = Scratch::with_config("state_dir: var\ningest:\n  max_event_bytes: 2KiB\n");
    let strings: Vec<String> = (0..40).map(|i| format!("{i:060}")).collect();
    let event = serde_json::json!({"id": "wide", "source": "s", "type": "x.y", "data": strings})
        .to_string();
    let small = r#"{"id":"small","source":"s","type":"x.y"}"#.to_owned();
    let file = write(&scratch, "wide.jsonl", &[small, event]);
    let out = scratch.herald_own(&["send", &file]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("line 2: the event is 2")
            && err.contains("the cap is 2048 (ingest.max_event_bytes)"),
        "{err}"
    );
    nothing_stored(&scratch);
}

#[test]
fn an_unknown_ingest_key_names_file_line_key_path_and_fix() {
    let scratch = Scratch::with_config("state_dir: var\ningest:\n  max_strings: 1KiB\n");
    let out = scratch.herald_own(&["config", "check"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("herald.yaml:3:3: ingest.max_strings: unknown field `max_strings`"),
        "{err}"
    );
    assert!(err.contains("fix: remove `max_strings`"), "{err}");
}

/// The shipped failed-login rule, but in enriched mode, so the user agent goes into the body too.
fn enriched_failed_login() -> Scratch {
    Scratch::with_config(
        "state_dir: var\nrules:\n  - name: failed-login\n    module: builtin:failed-login\n    on: [omero.login.failed]\n    \
         config: {contact_system: true, on_specific_users: [root], mode: enriched, web_url: \"https://omero.example.org/?u={name}\"}\n",
    )
}

fn assert_huge_user_agents_do_not_silence_the_alert(scratch: &Scratch, own: bool) {
    // Backslashes: each one is an escape in `data_json`, the costliest text for a rule to read.
    let huge = "\\".repeat(STRING_CAP);
    let mut lines: Vec<String> = (0..5)
        .map(|i| login_failed(&format!("huge-{i}"), "root", &huge))
        .collect();
    lines.push(login_failed("real", "root", "Mozilla/5.0"));
    let file = write(scratch, "logins.jsonl", &lines);
    let run = |args: &[&str]| {
        if own {
            scratch.herald_own(args)
        } else {
            scratch.herald(args)
        }
    };
    let out = run(&["send", "--deliver", &file]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("0 failed invocations"),
        "{}",
        stdout(&out)
    );
    let rules = run(&["rules", "list", "--json"]);
    let rules: Vec<serde_json::Value> = serde_json::from_str(&stdout(&rules)).unwrap();
    let rule = rules.iter().find(|r| r["rule"] == "failed-login").unwrap();
    assert_eq!(rule["state"], "active", "{rule}");
    // alice and bob are the admins with an email in etc/directory.yaml.
    let real: Vec<_> = scratch
        .mails()
        .into_iter()
        .filter(|(name, _)| name.starts_with("real--failed-login--"))
        .collect();
    assert_eq!(real.len(), 2, "the last, normal login is still reported");
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE state = 'sent'"),
        12
    );
}

#[test]
fn five_failed_logins_with_a_user_agent_at_the_cap_leave_the_rule_active_and_the_next_is_sent() {
    assert_huge_user_agents_do_not_silence_the_alert(&Scratch::new(), false);
    assert_huge_user_agents_do_not_silence_the_alert(&enriched_failed_login(), true);
}

#[test]
fn failed_login_with_a_user_agent_at_the_cap_costs_far_less_than_its_fuel() {
    // Backslashes: each one is an escape in `data_json`, the costliest text to read.
    let huge = "\\".repeat(STRING_CAP);
    for scratch in [Scratch::new(), enriched_failed_login()] {
        let file = write(
            &scratch,
            "one.jsonl",
            &[login_failed("huge", "root", &huge)],
        );
        let out = if scratch.path("herald.yaml").exists() {
            scratch.herald_own(&["replay", "--json", &file])
        } else {
            scratch.herald(&["replay", "--json", &file])
        };
        assert_exit(&out, 0);
        let report: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        let rule = &report["rules"][0];
        assert_eq!(rule["ok"], true, "{rule}");
        let fuel = rule["fuel"].as_u64().unwrap();
        assert!(fuel < 2_000_000, "{fuel} of the 10,000,000 budget");
    }
}

#[test]
fn a_user_name_with_a_newline_still_alerts_with_a_safe_subject() {
    let scratch = Scratch::with_config(
        "state_dir: var\nrules:\n  - name: failed-login\n    module: builtin:failed-login\n    on: [omero.login.failed]\n    \
         config: {contact_system: true, on_all_users: true}\n",
    );
    let file = write(
        &scratch,
        "nl.jsonl",
        &[login_failed("nl", "root\r\nBcc: evil@example.org", "x")],
    );
    let out = scratch.herald_own(&["send", "--deliver", &file]);
    assert_exit(&out, 0);
    let mails = scratch.mails();
    assert_eq!(mails.len(), 2, "{}", stdout(&out));
    for (_, bytes) in mails {
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains("Subject: [OMERO] Login failed for 'root  Bcc: evil@example.org'\r\n"),
            "{text}"
        );
        assert!(!text.contains("\nBcc:"), "{text}");
    }
}

#[test]
fn a_quarantined_rule_is_reported_as_quarantined_not_as_matched_by_no_rule() {
    let scratch = Scratch::with_config(&format!(
        "state_dir: var\ningest: {{custom_types: [test.bad]}}\nsandbox: {{quarantine_after: 1}}\nrules:\n  - name: bad\n    module: {}\n    on: [test.bad]\n    config: {{misdeed: error}}\n",
        fixture_wasm("herald-rule-hostile").display()
    ));
    let event = |id: &str| format!(r#"{{"id":"{id}","source":"s","type":"test.bad"}}"#);
    let file = write(&scratch, "bad.jsonl", &[event("b1"), event("b2")]);
    let out = scratch.herald_own(&["send", &file]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let second = text.split("b2 test.bad").nth(1).expect("b2 is reported");
    let second = second.split("\nevaluated").next().unwrap();
    assert!(!second.contains("matched by no rule"), "{text}");
    assert!(
        second.contains(
            "bad: SKIPPED: the rule is quarantined; release it with `herald rules release bad`"
        ),
        "{text}"
    );
    assert!(text.contains("0 events matched by no rule"), "{text}");
    assert!(
        text.contains("1 invocations skipped (rule quarantined)"),
        "{text}"
    );

    let file = write(&scratch, "more.jsonl", &[event("b3")]);
    let out = scratch.herald_own(&["replay", "--deliver", "--json", &file]);
    assert_exit(&out, 0);
    let report: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(report["rules"][0]["rule"], "bad");
    assert_eq!(report["rules"][0]["reason"], "quarantined");
}
