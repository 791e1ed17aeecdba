//! Property tests: every default rule, compiled to wasm and run through the engine's evaluate path
//! (sandbox, fuel, output caps, header and address checks), never fails on an event that passed ingest.
//!
//! Events are generated with arbitrary unicode (control characters included), strings up to the
//! ingest cap, and many entries; only what ingest admits is evaluated. Each rule runs in parity and
//! in enriched mode where it has one, set to fire as often as it can. The deadline is raised so a
//! loaded test machine cannot fail a case; fuel, memory and every output cap stay at their defaults.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use herald::config::Config;
use herald::directory::Directory;
use herald::evaluate::{Evaluator, KvRead, MemoryKv};
use herald::event::{self, SizeCaps};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{Map, Value, json};

use crate::support::repo;

/// The default rules, each set to fire as often as it can; the enriched ones with links.
const RULES: &str = r#"
sandbox:
  limits: {wall_time: 60s}
rules:
  - {name: failed-login, module: builtin:failed-login, on: [omero.login.failed],
     config: {contact_system: true, contact_user: true, on_all_users: true}}
  - {name: failed-login-enriched, module: builtin:failed-login, on: [omero.login.failed],
     config: {contact_system: true, contact_user: true, on_all_users: true, mode: enriched, web_url: "https://o.example.org/?u={name}"}}
  - {name: new-user, module: builtin:new-user, on: [omero.user.created]}
  - {name: new-user-enriched, module: builtin:new-user, on: [omero.user.created],
     config: {mode: enriched, web_url: "https://o.example.org/?u={id}&n={name}"}}
  - {name: new-group, module: builtin:new-group, on: [omero.group.created]}
  - {name: new-group-enriched, module: builtin:new-group, on: [omero.group.created],
     config: {mode: enriched, web_url: "https://o.example.org/?g={id}&n={name}"}}
  - {name: new-comment, module: builtin:new-comment, on: [omero.comment.added]}
  - {name: new-comment-enriched, module: builtin:new-comment, on: [omero.comment.added],
     config: {mode: enriched, web_url: "https://o.example.org/?show={type}-{id}&c={comment_id}"}}
  - {name: server-up, module: builtin:server-up, on: [omero.server.up]}
  - {name: server-up-enriched, module: builtin:server-up, on: [omero.server.up],
     config: {mode: enriched, web_url: "https://{server}/"}}
  - {name: server-down, module: builtin:server-down, on: [omero.server.down]}
  - {name: server-down-enriched, module: builtin:server-down, on: [omero.server.down],
     config: {mode: enriched, web_url: "https://{server}/"}}
  - {name: web-error, module: builtin:web-error, on: [omero.web.error],
     config: {web_admins: [["Web Admin", "webadmin@example.org"], ["Ops", "ops@example.org"]]}}
  - {name: broadcast, module: builtin:broadcast, on: [herald.broadcast], limits: {max_recipients: 1000000}}
"#;

/// The fuel budget of every rule (`sandbox.limits.fuel`'s default); each must stay within half of it.
const FUEL: u64 = 10_000_000;

thread_local! {
    static ENGINE: (Evaluator, tempfile::TempDir) = engine();
}

fn engine() -> (Evaluator, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let config =
        Config::from_str(RULES, &repo().join("etc/herald.yaml"), Some(state.path())).unwrap();
    let directory = Directory::load(&repo().join("etc/directory.yaml")).unwrap();
    let evaluator = Evaluator::new(&config, Arc::new(directory)).unwrap();
    (evaluator, state)
}

/// Evaluate an event as ingest would admit it; `Ok(false)` when ingest refuses it (over a cap).
fn evaluate(envelope: Value) -> Result<bool, TestCaseError> {
    let now = DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let Ok(event) = event::admit(envelope, now, &SizeCaps::default()) else {
        return Ok(false);
    };
    ENGINE.with(|(evaluator, _)| {
        let kv: Arc<dyn KvRead> = Arc::new(MemoryKv::default());
        let outcomes = evaluator.evaluate(&event, &kv);
        prop_assert!(!outcomes.is_empty(), "no rule ran for {}", event.kind);
        for outcome in &outcomes {
            let rule = &outcome.rule;
            let resolved = match &outcome.result {
                Ok(resolved) => resolved,
                Err(failure) => {
                    return Err(TestCaseError::fail(format!(
                        "{rule} failed on {} (fuel {}): {failure}",
                        event.kind, outcome.fuel_used
                    )));
                }
            };
            prop_assert!(
                outcome.fuel_used < FUEL / 2,
                "{rule} used {} fuel",
                outcome.fuel_used
            );
            for mail in &resolved.mails {
                prop_assert!(
                    !mail.subject.chars().any(char::is_control),
                    "{rule}: {:?}",
                    mail.subject
                );
            }
        }
        Ok(true)
    })
}

/// Any unicode text, control characters included; hostile line breaks; or long up to the string cap.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => any::<String>(),
        2 => "[a-z\r\n\t\u{0}\u{1b}\u{7f}\u{85}\u{2028} .:<>&'\"\\\\]{0,40}",
        1 => long_text(),
    ]
}

/// A short random piece repeated up to somewhere between 1 byte and the 64 KiB string cap.
fn long_text() -> impl Strategy<Value = String> {
    ("[a-zé€😀\r\n\u{1}'\\\\<]{1,8}", 1usize..=64 * 1024).prop_map(|(piece, bytes)| {
        let mut out = String::with_capacity(bytes);
        while out.len() + piece.len() <= bytes {
            out.push_str(&piece);
        }
        out
    })
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(text())
}

fn id() -> impl Strategy<Value = i64> {
    prop_oneof![0i64..8, any::<i64>()]
}

fn user() -> impl Strategy<Value = Value> {
    (id(), text(), opt_text(), opt_text(), opt_text()).prop_map(|(id, name, first, last, email)| {
        json!({"id": id, "name": name, "first_name": first, "last_name": last, "email": email})
    })
}

fn group() -> impl Strategy<Value = Value> {
    (id(), text()).prop_map(|(id, name)| json!({"id": id, "name": name}))
}

fn object() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![4 => Just("Image".to_owned()), 1 => text()];
    (kind, id(), opt_text(), prop::option::of(user())).prop_map(
        |(kind, id, name, owner)| json!({"type": kind, "id": id, "name": name, "owner": owner}),
    )
}

/// Many small links (up to `ingest.max_items`), each to an image of its own owner.
fn many_links() -> impl Strategy<Value = Vec<Value>> {
    (1usize..90).prop_map(|n| {
        (0..n as i64)
            .map(|i| json!({"type": "Image", "id": i, "owner": {"id": i + 100, "name": "o"}}))
            .collect()
    })
}

/// A Django request dict: a few arbitrary entries, or very many small ones.
fn dict() -> impl Strategy<Value = Value> {
    let few = prop::collection::vec((text(), text()), 0..6);
    let many = (0usize..250).prop_map(|n| {
        (0..n)
            .map(|i| (format!("K{i}"), "v\u{1}".to_owned()))
            .collect()
    });
    prop_oneof![4 => few, 1 => many].prop_map(|pairs: Vec<(String, String)>| {
        Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect::<Map<_, _>>(),
        )
    })
}

fn data_for(kind: &'static str) -> BoxedStrategy<Value> {
    match kind {
        "omero.login.failed" => (prop_oneof![Just("root".to_owned()), text()], opt_text(), opt_text())
            .prop_map(|(user, addr, agent)| json!({"user": user, "remote_addr": addr, "user_agent": agent}))
            .boxed(),
        "omero.user.created" => (user(), prop::collection::vec(group(), 0..4))
            .prop_map(|(user, groups)| json!({"user": user, "groups": groups}))
            .boxed(),
        "omero.group.created" => group().prop_map(|group| json!({"group": group})).boxed(),
        "omero.comment.added" => {
            let links = prop_oneof![4 => prop::collection::vec(object(), 0..6), 1 => many_links()];
            (id(), text(), user(), links)
                .prop_map(|(id, text, owner, links)| {
                    json!({"comment": {"id": id, "text": text, "owner": owner}, "links": links})
                })
                .boxed()
        }
        "omero.server.up" => (text(), opt_text())
            .prop_map(|(server, version)| json!({"server": server, "version": version}))
            .boxed(),
        "omero.server.down" => (text(), opt_text())
            .prop_map(|(server, reason)| json!({"server": server, "reason": reason}))
            .boxed(),
        "omero.web.error" => web_error().boxed(),
        "herald.broadcast" => broadcast().boxed(),
        _ => unreachable!("{kind}"),
    }
}

fn web_error() -> impl Strategy<Value = Value> {
    let status = prop_oneof![Just(404u16), Just(500), Just(502), any::<u16>()];
    let request = prop::option::of((dict(), dict(), dict(), dict()));
    let exception = prop::option::of((text(), text(), text()));
    let strings = (
        text(),
        text(),
        text(),
        text(),
        opt_text(),
        opt_text(),
        opt_text(),
    );
    (status, strings, any::<bool>(), exception, request).prop_map(
        |(status, (method, path, url, host, referer, agent, addr), internal_ip, exception, request)| {
            let exception = exception.map(|(kind, value, tb)| json!({"type": kind, "value": value, "traceback": tb}));
            let request = request.map(|(get, post, cookies, meta)| {
                json!({"GET": get, "POST": post, "COOKIES": cookies, "META": meta})
            });
            json!({"status": status, "method": method, "path": path, "url": url, "host": host,
                   "referer": referer, "user_agent": agent, "remote_addr": addr, "internal_ip": internal_ip,
                   "exception": exception, "request": request})
        },
    )
}

fn broadcast() -> impl Strategy<Value = Value> {
    let ids = prop_oneof![
        4 => prop::collection::vec(id(), 0..20),
        1 => (0usize..500).prop_map(|n| (0..n as i64).collect()),
    ];
    let names = || prop::collection::vec(text(), 0..5);
    let extra = prop::collection::vec("[a-z]{1,10}@example\\.org", 0..4);
    (
        text(),
        text(),
        opt_text(),
        any::<bool>(),
        any::<bool>(),
        ids,
        names(),
        names(),
        extra,
    )
        .prop_map(
            |(subject, body, html, everyone, inactive, ids, user_names, group_names, extra)| {
                json!({"subject": subject, "body": body, "html": html, "everyone": everyone,
                   "inactive": inactive, "user_ids": ids, "user_names": user_names,
                   "group_ids": [0, 1, 3], "group_names": group_names, "extra": extra})
            },
        )
}

const KINDS: [&str; 8] = [
    "omero.login.failed",
    "omero.user.created",
    "omero.group.created",
    "omero.comment.added",
    "omero.server.up",
    "omero.server.down",
    "omero.web.error",
    "herald.broadcast",
];

/// A whole envelope: a random id and time from 1900 on, and the type's data.
fn envelope() -> impl Strategy<Value = Value> {
    let time = -2_208_988_800i64..7_258_118_400;
    (prop::sample::select(&KINDS[..]), "[!-~]{1,40}", time).prop_flat_map(|(kind, id, secs)| {
        let time = DateTime::from_timestamp(secs, 0).unwrap().to_rfc3339();
        data_for(kind).prop_map(move |data| {
            json!({"specversion": "1.0", "id": id, "source": "omero://prop", "type": kind, "time": time, "data": data})
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn default_rules_never_fail_on_an_admitted_event(envelope in envelope()) {
        evaluate(envelope)?;
    }
}

/// Hand-picked hostile events at the caps, each of which must be admitted and reported.
#[test]
fn hostile_events_at_the_caps_are_admitted_and_every_rule_succeeds() {
    let cap = 64 * 1024;
    let huge = "\r\n\u{0}".repeat(cap / 6);
    let events = [
        json!({"type": "omero.login.failed", "data": {"user": "root\r\nBcc: x@example.org", "user_agent": "x".repeat(cap)}}),
        json!({"type": "omero.web.error", "data": {"status": 500, "method": "GET", "path": "/a\u{0}b\r\nX: y", "url": "u", "host": "h",
            "request": {"META": {"HTTP_COOKIE": huge, "HTTP_X": "\u{1}".repeat(cap / 16)}}}}),
        json!({"type": "omero.comment.added", "data": {"comment": {"id": 1, "text": "é".repeat(cap / 2), "owner": {"id": 9, "name": "x"}},
            "links": (0..80).map(|i| json!({"type": "Image", "id": i, "owner": {"id": i + 10, "name": "o"}})).collect::<Vec<_>>()}}),
        json!({"type": "herald.broadcast", "data": {"subject": "a\r\nBcc: x@example.org", "body": "b", "user_ids": (0..500).collect::<Vec<i64>>()}}),
    ];
    for (i, mut event) in events.into_iter().enumerate() {
        event["id"] = json!(format!("hostile-{i}"));
        event["source"] = json!("omero://prop");
        let kind = event["type"].clone();
        match evaluate(event) {
            Ok(admitted) => assert!(admitted, "ingest refused the {kind} event"),
            Err(err) => panic!("{kind}: {err}"),
        }
    }
}

#[test]
fn the_generated_events_reach_the_caps() {
    // A sanity check on the generator itself: long strings and many entries are really produced.
    let long = long_text();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let longest = (0..200)
        .map(|_| long.new_tree(&mut runner).unwrap().current().len())
        .max()
        .unwrap();
    assert!(longest > 60 * 1024, "{longest}");
    assert!(Path::new(&repo().join("etc/directory.yaml")).exists());
}
