//! OMERO's stock mails through the relay: typed events, the `omero_mail` modes, and bodies purged at rest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::relay::{NO_RULES, Submit, message, scratch, start, submit, wait_received};
use crate::serve::log_of;
use crate::smtp::{aiosmtpd, received_raw};
use crate::support::{Scratch, fixture_wasm, repo, wait_for};

/// The golden mail of a recording whose file name starts with `prefix`: OMERO's exact texts,
/// as the default rules reproduce them in parity mode.
fn golden(case: &str, prefix: &str) -> Vec<u8> {
    let dir = repo().join("tests/recordings").join(case).join("expected");
    let file = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .min()
        .unwrap_or_else(|| panic!("no golden {case}/{prefix}"));
    std::fs::read(file).unwrap()
}

/// A stock mail as OMERO sends it: from omero@…, to one recipient.
fn stock(case: &str, prefix: &str, to: &str) -> Submit {
    Submit {
        from: "omero@localhost".into(),
        to: vec![to.into()],
        data: golden(case, prefix),
    }
}

/// (type, data) of every journaled event, in order.
fn events(scratch: &Scratch) -> Vec<(String, Value)> {
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT type, envelope FROM events ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|row| {
            let (kind, envelope) = row.unwrap();
            let envelope: Value = serde_json::from_str(&envelope).unwrap();
            (kind, envelope["data"].clone())
        })
        .collect()
}

#[test]
fn each_stock_mail_becomes_its_typed_event_and_other_mail_is_mail_received() {
    let upstream = aiosmtpd(&[]);
    let scratch = scratch();
    let (_served, port) = start(&scratch, upstream.port, "", NO_RULES);
    let mails = [
        stock(
            "server-up-down",
            "up-1--server-up--alice",
            "alice@example.org",
        ),
        stock(
            "server-up-down",
            "down-1--server-down--alice",
            "alice@example.org",
        ),
        stock("failed-login-stock", "fl-1", "alice@example.org"),
        stock(
            "new-user-group",
            "nu-1--new-user--alice",
            "alice@example.org",
        ),
        stock("new-user-group", "ng-1", "root@example.org"),
        stock("new-comment", "nc-1", "alice@example.org"),
        stock("web-error", "we-1--web-error--ops", "ops@example.org"),
        stock("web-error", "we-5--web-error--ops", "ops@example.org"),
        message(1, "bob@example.org"),
    ];
    assert_eq!(submit(port, &mails), [250; 9]);
    wait_received(&upstream, 9, &scratch);
    let events = events(&scratch);
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "omero.server.up",
            "omero.server.down",
            "omero.login.failed",
            "omero.user.created",
            "omero.group.created",
            "omero.comment.added",
            "omero.web.error",
            "omero.web.error",
            "mail.received"
        ]
    );
    assert_eq!(events[0].1["server"], "omero.example.org", "the EHLO name");
    assert_eq!(events[2].1["user"], "root");
    assert_eq!(events[3].1["user"]["id"], 52);
    assert_eq!(events[4].1["group"]["id"], 9);
    assert_eq!(events[5].1["comment"]["id"], 901);
    assert_eq!(events[6].1["status"], 500);
    assert_eq!(events[6].1["path"], "/webclient/save/");
    assert_eq!(events[7].1["status"], 404);
    let received = &events[8].1;
    assert_eq!(received["subject"], "relay test 1");
    assert_eq!(received["envelope"]["rcpt_to"][0], "bob@example.org");
    assert_eq!(received["message_id"], "m1@omero.test");
    assert!(received["size"].as_u64().unwrap() > 900);
}

const STOCK_RULES: &str =
    "  - {name: server-up, module: builtin:server-up, on: [omero.server.up]}\n";

/// Three copies of "Server started" (OMERO sends one per admin) under `mode`: the upstream's
/// messages, and the journal's server.up events and outbox rows by rule.
fn server_up_copies(mode: &str, expect: usize) -> (Vec<String>, i64, Vec<(String, i64)>) {
    let upstream = aiosmtpd(&[]);
    let scratch = scratch();
    let probe = fixture_wasm("herald-rule-wasi-probe");
    let rules = format!(
        "{STOCK_RULES}  - {{name: probe, module: {}, on: [omero.server.up]}}\n",
        probe.display()
    );
    let extra = format!("  omero_mail: {mode}\n");
    let (_served, port) = start(&scratch, upstream.port, &extra, &rules);
    let copies = [
        stock(
            "server-up-down",
            "up-1--server-up--alice",
            "alice@example.org",
        ),
        stock("server-up-down", "up-1--server-up--bob", "bob@example.org"),
        stock(
            "server-up-down",
            "up-1--server-up--root",
            "root@example.org",
        ),
    ];
    assert_eq!(submit(port, &copies), [250; 3]);
    wait_received(&upstream, expect, &scratch);
    std::thread::sleep(Duration::from_secs(2));
    let got: Vec<String> = received_raw(&upstream)
        .into_iter()
        .map(|(bytes, rcpt)| {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let subject = crate::smtp::header(&text, "Subject").unwrap_or_default();
            format!("{} {subject}", rcpt.join(","))
        })
        .collect();
    let ups = scratch.count("SELECT count(*) FROM events WHERE type = 'omero.server.up'");
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT rule, count(*) FROM outbox GROUP BY rule ORDER BY rule")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!log_of(&scratch).contains("quarantined"));
    (got, ups, rows)
}

#[test]
fn relay_mode_relays_the_copies_and_only_custom_rules_run_on_one_event() {
    let (got, ups, rows) = server_up_copies("relay", 4);
    assert_eq!(ups, 1, "three copies, one event");
    assert_eq!(rows, [("probe".into(), 1), ("relay".into(), 3)]);
    assert_eq!(got.len(), 4, "{got:?}");
}

#[test]
fn replace_mode_relays_nothing_and_the_default_rule_makes_the_mail() {
    let (got, ups, rows) = server_up_copies("replace", 3);
    assert_eq!(ups, 1);
    // The admins with an email in etc/directory.yaml: alice and bob.
    assert_eq!(rows, [("probe".into(), 1), ("server-up".into(), 2)]);
    assert_eq!(got.len(), 3, "{got:?}");
}

#[test]
fn both_mode_relays_the_copies_and_every_rule_runs() {
    let (got, ups, rows) = server_up_copies("both", 6);
    assert_eq!(ups, 1);
    assert_eq!(
        rows,
        [
            ("probe".into(), 1),
            ("relay".into(), 3),
            ("server-up".into(), 2)
        ]
    );
    assert_eq!(got.len(), 6, "{got:?}");
}

/// A password-reset mail as OMERO sends it: the new password in clear (after enough text
/// that the row spills into SQLite's overflow pages, which a purge frees).
fn reset_mail(secret: &str) -> Submit {
    let padding = "Please keep this message private.\r\n".repeat(600);
    let data = format!(
        "From: omero@localhost\r\nTo: alice@example.org\r\nSubject: OMERO - Reset password\r\n\
         Message-ID: <reset-1@omero.test>\r\n\r\nDear alice,\r\n{padding}\
         your new password is {secret}\r\n"
    );
    Submit {
        from: "omero@localhost".into(),
        to: vec!["alice@example.org".into()],
        data: data.into_bytes(),
    }
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if std::fs::read(&path)
            .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_delivered_password_reset_is_found_nowhere_under_the_state_dir() {
    let secret = "Zq8-hunter2-s3cret-73";
    let upstream = aiosmtpd(&[]);
    let scratch = scratch();
    let (_served, port) = start(&scratch, upstream.port, "", NO_RULES);
    assert_eq!(submit(port, &[reset_mail(secret)]), [250]);
    let received = wait_received(&upstream, 1, &scratch);
    assert!(String::from_utf8_lossy(&received[0].0).contains(secret));
    let gone = wait_for(Duration::from_secs(20), || {
        files_holding(&scratch.path("var"), secret.as_bytes()).is_empty()
    });
    assert!(
        gone,
        "still on disk in {:?}",
        files_holding(&scratch.path("var"), secret.as_bytes())
    );
    assert_eq!(
        scratch.count(
            "SELECT count(*) FROM relay_messages WHERE raw IS NULL AND purged_at IS NOT NULL"
        ),
        1
    );
    // `herald outbox show` says so, and shows the trace header and nothing of the body.
    let shown = scratch.herald_with(
        &scratch.path("herald.yaml"),
        &["outbox", "show", "1", "--json"],
    );
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let message = shown["message"].as_str().unwrap();
    assert!(
        message.starts_with("Received: from omero.example.org"),
        "{message}"
    );
    assert!(message.contains("the body was purged") && !message.contains(secret));
    // The attempt log keeps the outcome, the journal the event without its text.
    assert_eq!(
        scratch.count("SELECT count(*) FROM attempts WHERE outcome = 'sent'"),
        1
    );
    let events = events(&scratch);
    assert_eq!(events[0].1["subject"], "OMERO - Reset password");
    assert_eq!(events[0].1["text"], "");
    assert!(
        !log_of(&scratch).contains(secret),
        "a body was logged (HERALD_LOG=debug)"
    );
}

#[test]
fn keep_body_keeps_the_password_reset_in_the_store() {
    let secret = "Kp4-keep-this-body-19";
    let upstream = aiosmtpd(&[]);
    let scratch = scratch();
    let (_served, port) = start(&scratch, upstream.port, "  keep_body: true\n", NO_RULES);
    assert_eq!(submit(port, &[reset_mail(secret)]), [250]);
    wait_received(&upstream, 1, &scratch);
    std::thread::sleep(Duration::from_secs(3));
    assert!(!files_holding(&scratch.path("var"), secret.as_bytes()).is_empty());
    assert_eq!(
        scratch.count("SELECT count(*) FROM relay_messages WHERE raw IS NOT NULL"),
        1
    );
    let shown = scratch.herald_with(
        &scratch.path("herald.yaml"),
        &["outbox", "show", "1", "--json"],
    );
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert!(
        shown["message"].as_str().unwrap().contains(secret),
        "the relayed bytes are shown"
    );
}

#[test]
fn a_relayed_mail_refused_for_good_is_a_dead_letter_and_its_body_is_purged_too() {
    let secret = "Dd7-dead-letter-body-42";
    let upstream = aiosmtpd(&["--reply", "alice@example.org=550 5.1.1 no such user"]);
    let scratch = scratch();
    let (_served, port) = start(&scratch, upstream.port, "", NO_RULES);
    assert_eq!(submit(port, &[reset_mail(secret)]), [250]);
    let dead = wait_for(Duration::from_secs(30), || {
        scratch.count("SELECT count(*) FROM outbox WHERE rule = 'relay' AND state = 'dead'") == 1
    });
    assert!(dead, "log:\n{}", log_of(&scratch));
    let gone = wait_for(Duration::from_secs(20), || {
        files_holding(&scratch.path("var"), secret.as_bytes()).is_empty()
    });
    assert!(
        gone,
        "{:?}",
        files_holding(&scratch.path("var"), secret.as_bytes())
    );
    let detail: String = rusqlite::Connection::open(scratch.path("var/herald.db"))
        .unwrap()
        .query_row("SELECT detail FROM attempts", [], |r| r.get(0))
        .unwrap();
    assert!(
        detail.contains("550"),
        "the attempt log keeps the outcome: {detail}"
    );
}

/// A relayed stock mail's event, as the listener journals it in `relay` mode.
fn relayed_user_created(id: &str, user: u32, skip_stock_rules: bool) -> Value {
    serde_json::json!({
        "specversion": "1.0", "id": id, "source": "smtp://herald.test", "type": "omero.user.created",
        "time": "2026-11-28T09:00:00Z",
        "data": {
            "user": {"id": user, "name": format!("u{user}")},
            "mail": {"skip_stock_rules": skip_stock_rules}
        }
    })
}

#[test]
fn herald_send_beside_serve_also_skips_the_stock_rules_for_a_relayed_stock_mail() {
    // `herald deliver` or `send` may evaluate what `serve` journaled: the stock-sender rules must
    // skip a relayed stock mail there too, or the admins get OMERO's mail twice.
    let scratch = Scratch::with_config(
        "state_dir: var\nmail: {from: \"\"}\nrules:\n  \
         - {name: new-user, module: builtin:new-user, on: [omero.user.created]}\n",
    );
    let lines = [
        relayed_user_created("relayed", 70, true),
        relayed_user_created("replaced", 71, false),
    ]
    .map(|event| event.to_string())
    .join("\n");
    std::fs::write(scratch.path("events.jsonl"), lines).unwrap();
    let out = scratch.herald_own(&["send", scratch.path("events.jsonl").to_str().unwrap()]);
    crate::support::assert_exit(&out, 0);
    let queued_for = |id: &str| {
        scratch.count(&format!(
            "SELECT count(*) FROM outbox o JOIN events e ON e.seq = o.event_seq WHERE e.id = '{id}'"
        ))
    };
    assert_eq!(queued_for("relayed"), 0, "the original already went out");
    assert_eq!(
        queued_for("replaced"),
        2,
        "the rule makes the mail (two admins)"
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM rule_runs WHERE rule = 'new-user'"),
        1
    );
}
