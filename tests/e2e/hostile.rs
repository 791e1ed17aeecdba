//! Hostile rules fail only their own invocation, with a named reason, and queue nothing.

use crate::support::{Scratch, assert_exit, fixture_wasm, stdout};

/// (rule name, misdeed, extra limits, the reason the CLI must print)
const CASES: &[(&str, &str, &str, &str)] = &[
    ("fuel", "loop", "", "FAILED out of fuel"),
    (
        "deadline",
        "loop",
        "{fuel: 1000000000000, wall_time: 30ms}",
        "FAILED deadline",
    ),
    ("memory", "memory", "", "FAILED memory"),
    ("stack", "recursion", "", "FAILED stack overflow"),
    (
        "panic",
        "panic",
        "",
        "FAILED panic: hostile rule panicked on purpose",
    ),
    (
        "flood",
        "flood",
        "{memory: 256MiB, fuel: 1000000000000, wall_time: 10s}",
        "FAILED output cap: returned 100000 messages",
    ),
    (
        "inject",
        "header-injection",
        "",
        "FAILED invalid header: message 0: the subject",
    ),
    (
        "badaddr",
        "invalid-address",
        "",
        "FAILED invalid address: message 0 to[0]: \"not an address\"",
    ),
    (
        "error",
        "error",
        "",
        "FAILED rule error: refusing on purpose",
    ),
];

fn config() -> String {
    let wasm = fixture_wasm("herald-rule-hostile");
    let mut yaml = String::from("state_dir: var\nrules:\n");
    yaml.push_str("  - {name: new-user, module: builtin:new-user, on: [omero.user.created]}\n");
    for (name, misdeed, limits, _) in CASES {
        yaml.push_str(&format!(
            "  - name: {name}\n    module: {}\n    on: [test.{name}]\n    config: {{misdeed: {misdeed}}}\n",
            wasm.display()
        ));
        if !limits.is_empty() {
            yaml.push_str(&format!("    limits: {limits}\n"));
        }
    }
    yaml
}

/// Each hostile event is followed by a user-created event that must still work.
fn recording() -> String {
    let mut lines = Vec::new();
    for (i, (name, ..)) in CASES.iter().enumerate() {
        lines.push(format!(
            r#"{{"id":"bad-{i}","source":"t","type":"test.{name}","time":"2026-11-23T09:00:00Z"}}"#
        ));
        lines.push(format!(
            r#"{{"id":"good-{i}","source":"t","type":"omero.user.created","time":"2026-11-23T09:00:00Z","data":{{"user":{{"id":{},"name":"u{i}"}}}}}}"#,
            100 + i
        ));
    }
    lines.join("\n") + "\n"
}

#[test]
fn each_hostile_rule_fails_alone_with_its_reason() {
    let scratch = Scratch::with_config(&config());
    std::fs::write(scratch.path("events.jsonl"), recording()).unwrap();
    let out = scratch.herald_own(&[
        "replay",
        "--deliver",
        scratch.path("events.jsonl").to_str().unwrap(),
    ]);
    assert_exit(&out, 1); // some invocations failed; everything else ran
    let text = stdout(&out);
    for (name, _, _, reason) in CASES {
        assert!(
            text.contains(&format!("  {name}: {reason}")),
            "no `{name}: {reason}` in\n{text}"
        );
    }
    // The good rule ran after every hostile one: two admins with email each time.
    assert_eq!(
        text.matches("new-user: 2 message(s)").count(),
        CASES.len(),
        "{text}"
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE rule <> 'new-user'"),
        0
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE rule = 'new-user'"),
        2 * CASES.len() as i64
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM rule_runs WHERE state = 'failed'"),
        CASES.len() as i64
    );
    assert_eq!(scratch.mails().len(), 2 * CASES.len());
}

#[test]
fn reasons_are_recorded_with_codes() {
    let scratch = Scratch::with_config(&config());
    std::fs::write(scratch.path("events.jsonl"), recording()).unwrap();
    let _ = scratch.herald_own(&["send", scratch.path("events.jsonl").to_str().unwrap()]);
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT rule, code FROM rule_runs WHERE state = 'failed' ORDER BY rule")
        .unwrap();
    let codes: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected = [
        ("badaddr", "invalid-address"),
        ("deadline", "deadline"),
        ("error", "rule-error"),
        ("flood", "output-cap"),
        ("fuel", "out-of-fuel"),
        ("inject", "invalid-header"),
        ("memory", "memory"),
        ("panic", "panic"),
        ("stack", "stack-overflow"),
    ];
    let got: Vec<(&str, &str)> = codes
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(got, expected);
}
