//! Hostile rules fail only their own invocation, with a named reason, queue nothing and keep no
//! store writes; a good rule on the same event, and the same rule run again, still work.

use std::path::Path;

use crate::support::{Scratch, assert_exit, bare_fixture_wasm, fixture_wasm, stdout};

/// (rule name, misdeed, extra limits, the reason the CLI must print)
type Case = (&'static str, &'static str, &'static str, &'static str);

const CASES: &[Case] = &[
    // A long wall time, so only the fuel budget can stop it, however loaded the machine is.
    ("fuel", "loop", "{wall_time: 60s}", "FAILED out of fuel"),
    // Long enough that the same rule, run again well-behaved, finishes in time under load.
    (
        "deadline",
        "loop",
        "{fuel: 1000000000000, wall_time: 1s}",
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
        "stderr",
        "stderr-flood",
        "{max_log: 4KiB}",
        "FAILED output cap: the rule wrote more than 4096 bytes to stderr (limits.max_log)",
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

/// The cases that apply to the hostile rule built like the embedded rules (no WASI): all but
/// the stderr flood, as it has no stderr (its panic report goes through `log`).
fn bare_cases() -> Vec<Case> {
    CASES
        .iter()
        .filter(|(_, misdeed, ..)| *misdeed != "stderr-flood")
        .copied()
        .collect()
}

/// Each hostile rule, `new-user`, and `bystander`: the same module behaving, on every test event.
fn config(wasm: &Path, cases: &[Case]) -> String {
    // Wall time to spare for every rule, so under load each fails for its own reason only.
    let every: Vec<String> = cases
        .iter()
        .map(|(name, ..)| format!("test.{name}"))
        .collect();
    let mut yaml = format!(
        "state_dir: var\ningest: {{custom_types: [{}]}}\nsandbox:\n  limits: {{wall_time: 10s}}\nrules:\n",
        every.join(", ")
    );
    yaml.push_str("  - {name: new-user, module: builtin:new-user, on: [omero.user.created]}\n");
    for (name, misdeed, limits, _) in cases {
        yaml.push_str(&format!(
            "  - name: {name}\n    module: {}\n    on: [test.{name}]\n    config: {{misdeed: {misdeed}}}\n",
            wasm.display()
        ));
        if !limits.is_empty() {
            yaml.push_str(&format!("    limits: {limits}\n"));
        }
    }
    yaml.push_str(&format!(
        "  - name: bystander\n    module: {}\n    on: [{}]\n    config: {{misdeed: none}}\n",
        wasm.display(),
        every.join(", ")
    ));
    yaml
}

/// Per case: the hostile event (the bystander runs on it too), a user-created event that must
/// still work, and the same event type again with `behave: true`, checking for `seen:bad-<i>`.
fn recording(cases: &[Case]) -> String {
    let mut lines = Vec::new();
    let time = r#""time":"2026-11-23T09:00:00Z""#;
    for (i, (name, ..)) in cases.iter().enumerate() {
        lines.push(format!(
            r#"{{"id":"bad-{i}","source":"t","type":"test.{name}",{time}}}"#
        ));
        lines.push(format!(
            r#"{{"id":"good-{i}","source":"t","type":"omero.user.created",{time},"data":{{"user":{{"id":{},"name":"u{i}"}}}}}}"#,
            100 + i
        ));
        lines.push(format!(
            r#"{{"id":"again-{i}","source":"t","type":"test.{name}",{time},"data":{{"behave":true,"check":"bad-{i}"}}}}"#
        ));
    }
    lines.join("\n") + "\n"
}

fn strings(scratch: &Scratch, sql: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn each_hostile_rule_fails_alone_with_its_reason() {
    fails_alone_with_its_reason(&fixture_wasm("herald-rule-hostile"), CASES);
}

#[test]
fn each_hostile_rule_without_wasi_fails_alone_with_its_reason() {
    fails_alone_with_its_reason(&bare_fixture_wasm("herald-rule-hostile"), &bare_cases());
}

fn fails_alone_with_its_reason(wasm: &Path, cases: &[Case]) {
    let scratch = Scratch::with_config(&config(wasm, cases));
    std::fs::write(scratch.path("events.jsonl"), recording(cases)).unwrap();
    let out = scratch.herald_own(&[
        "replay",
        "--deliver",
        scratch.path("events.jsonl").to_str().unwrap(),
    ]);
    assert_exit(&out, 1); // some invocations failed; everything else ran
    let text = stdout(&out);
    for (name, _, _, reason) in cases {
        assert!(
            text.contains(&format!("  {name}: {reason}")),
            "no `{name}: {reason}` in\n{text}"
        );
    }
    // The good rule ran after every hostile one: two admins with email each time.
    assert_eq!(
        text.matches("new-user: 2 message(s)").count(),
        cases.len(),
        "{text}"
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE rule = 'new-user'"),
        2 * cases.len() as i64
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM rule_runs WHERE state = 'failed'"),
        cases.len() as i64
    );
    // Each hostile rule, run again on the `behave` event, works: one mail each, and the store
    // it sees does not hold what its failed invocation wrote.
    for (i, (name, ..)) in cases.iter().enumerate() {
        let subjects = strings(
            &scratch,
            &format!("SELECT json_extract(mail, '$.subject') FROM outbox WHERE rule = '{name}'"),
        );
        assert_eq!(
            subjects,
            [format!("behaved on again-{i}; seen:bad-{i} stored: false")],
            "rule {name}"
        );
        let keys = strings(
            &scratch,
            &format!("SELECT key FROM kv WHERE rule = '{name}' ORDER BY key"),
        );
        assert_eq!(keys, [format!("seen:again-{i}")], "rule {name}: kv");
    }
    // The bystander ran on every hostile event as well; its writes there were kept.
    let mut expected: Vec<String> = (0..cases.len())
        .flat_map(|i| {
            [
                format!("behaved on again-{i}; seen:bad-{i} stored: true"),
                "well behaved".to_owned(),
            ]
        })
        .collect();
    expected.sort();
    let mut bystander = strings(
        &scratch,
        "SELECT json_extract(mail, '$.subject') FROM outbox WHERE rule = 'bystander'",
    );
    bystander.sort();
    assert_eq!(bystander, expected);
    assert_eq!(
        scratch.count("SELECT count(*) FROM kv WHERE rule = 'bystander'"),
        2 * cases.len() as i64
    );
    assert_eq!(scratch.mails().len(), 2 * cases.len() + 3 * cases.len());
}

#[test]
fn reasons_are_recorded_with_codes() {
    let wasm = fixture_wasm("herald-rule-hostile");
    let scratch = Scratch::with_config(&config(&wasm, CASES));
    std::fs::write(scratch.path("events.jsonl"), recording(CASES)).unwrap();
    let out = scratch.herald_own(&["send", scratch.path("events.jsonl").to_str().unwrap()]);
    // `send` journaled and evaluated every event: a rule's failure is recorded, not an error.
    assert_exit(&out, 0);
    let events = 3 * CASES.len();
    assert!(
        stdout(&out).contains(&format!(
            "evaluated {events} events: {} messages, {} failed invocations",
            5 * CASES.len(),
            CASES.len()
        )),
        "{}",
        stdout(&out)
    );
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
        ("stderr", "output-cap"),
    ];
    let got: Vec<(&str, &str)> = codes
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn log_lines_past_max_log_are_dropped_and_counted_without_failing_the_rule() {
    let yaml = format!(
        "state_dir: var\ningest: {{custom_types: [test.chatty]}}\nrules:\n  - name: chatty\n    module: {}\n    on: [test.chatty]\n    \
         config: {{misdeed: log-flood}}\n    limits: {{max_log: 4KiB}}\n",
        fixture_wasm("herald-rule-hostile").display()
    );
    let scratch = Scratch::with_config(&yaml);
    let event = r#"{"id":"e1","source":"t","type":"test.chatty","time":"2026-11-23T09:00:00Z"}"#;
    std::fs::write(scratch.path("event.json"), event).unwrap();
    let out = scratch.herald_own(&["replay", scratch.path("event.json").to_str().unwrap()]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("chatty: 1 message(s)"), "{text}");
    // 4096 bytes: "misbehaving (log-flood) on e1" (29) and four 1000-byte lines fit; 996 do not.
    let kept = text
        .lines()
        .filter(|l| l.ends_with(&"y".repeat(1000)))
        .count();
    assert_eq!(kept, 4, "{text}");
    assert!(
        text.contains("log warn: 996 log lines dropped (limits.max_log)"),
        "{text}"
    );
}
