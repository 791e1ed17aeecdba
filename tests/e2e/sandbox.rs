//! The sandbox's empty WASI, seen from inside a rule: no files, environment or sockets; clocks
//! that read the event's time; random numbers that depend on the event and nothing else.

use std::collections::BTreeMap;

use crate::support::{Scratch, assert_exit, fixture_wasm};

const TIME: &str = "2026-11-23T09:00:00.123Z";

fn config() -> String {
    format!(
        "state_dir: var\ningest: {{custom_types: [test.probe]}}\nrules:\n  - name: probe\n    module: {}\n    on: [test.probe]\n    \
         limits: {{wall_time: 10s}}\n",
        fixture_wasm("herald-rule-wasi-probe").display()
    )
}

/// Run the probe on events `one` and `two`; each one's report, as `name -> value`.
fn probe() -> BTreeMap<String, BTreeMap<String, String>> {
    let scratch = Scratch::with_config(&config());
    let events: String = ["one", "two"]
        .iter()
        .map(|id| {
            format!(
                "{{\"id\":\"{id}\",\"source\":\"t\",\"type\":\"test.probe\",\"time\":\"{TIME}\"}}\n"
            )
        })
        .collect();
    std::fs::write(scratch.path("events.jsonl"), events).unwrap();
    let out = scratch.herald_own(&["send", scratch.path("events.jsonl").to_str().unwrap()]);
    assert_exit(&out, 0);
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT json_extract(mail, '$.subject'), json_extract(mail, '$.text') FROM outbox")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .map(|(subject, text)| {
            let id = subject.trim_start_matches("wasi probe ").to_owned();
            let lines = text
                .lines()
                .filter_map(|l| l.split_once(": "))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            (id, lines)
        })
        .collect()
}

#[test]
fn rules_see_no_files_environment_or_sockets() {
    let reports = probe();
    assert_eq!(reports.len(), 2, "{reports:?}");
    let report = &reports["one"];
    for key in [
        "read-dir /",
        "read-dir .",
        "open /etc/passwd",
        "write /tmp/probe",
        "stdin",
        "tcp connect 127.0.0.1:25",
        "tcp listen",
        "udp bind",
        "dns localhost",
    ] {
        let value = &report[key];
        assert!(value.starts_with("denied"), "{key}: {value}\n{report:#?}");
    }
    assert_eq!(report["env vars"], "none");
    assert_eq!(report["args"], "none");
}

#[test]
fn clocks_read_the_event_time_and_random_is_seeded_by_the_event() {
    let first = probe();
    let event_ms = chrono::DateTime::parse_from_rfc3339(TIME)
        .unwrap()
        .timestamp_millis();
    for report in first.values() {
        assert_eq!(report["wall clock ms"], event_ms.to_string(), "{report:#?}");
        assert_eq!(report["monotonic elapsed ns"], "0", "{report:#?}");
    }
    let random = ["insecure seed hash", "random u64", "random bytes"];
    for key in random {
        assert_ne!(
            first["one"][key], first["two"][key],
            "{key}: same for two events"
        );
    }
    // A second run from scratch: the same event ids give the same numbers.
    let second = probe();
    for id in ["one", "two"] {
        for key in random {
            assert_eq!(first[id][key], second[id][key], "{id} {key}");
        }
    }
}
