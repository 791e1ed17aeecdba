//! Retries follow the backoff schedule and deliver once; dead letters come back with `herald outbox retry`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::smtp::{Server, aiosmtpd, aiosmtpd_on, header, maildir};
use crate::support::{Scratch, assert_exit, stdout};

const EVENT: &str = r#"{"id":"r1","source":"s","type":"omero.user.created","time":"2026-11-23T09:00:00Z","data":{"user":{"id":9,"name":"ivy"}}}"#;

/// New-user mail over SMTP to `port`, with a 1–2 s backoff and no jitter.
fn scratch(port: u16) -> Scratch {
    let scratch = Scratch::with_config(&config(port));
    std::fs::write(scratch.path("event.json"), EVENT).unwrap();
    assert_exit(
        &scratch.herald_own(&["send", scratch.path("event.json").to_str().unwrap()]),
        0,
    );
    scratch
}

fn config(port: u16) -> String {
    format!(
        "state_dir: var\nmail:\n  transport: smtp\n  smtp: {{host: 127.0.0.1, port: {port}, hello_name: herald.test}}\n\
         delivery: {{min_backoff: 1s, max_backoff: 2s, jitter_percent: 0}}\n\
         rules:\n  - {{name: new-user, module: builtin:new-user, on: [omero.user.created]}}\n"
    )
}

fn deliver(scratch: &Scratch) -> std::process::Output {
    scratch.herald_own(&["deliver", "--until-empty"])
}

/// (outcome, code, at) of alice's attempts, oldest first.
fn alice_attempts(scratch: &Scratch) -> Vec<(String, Option<i64>, DateTime<Utc>)> {
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT a.outcome, a.code, a.at FROM attempts a JOIN outbox o ON o.id = a.outbox_id
             WHERE o.recipient = 'alice@example.org' ORDER BY a.rowid",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?)))
        .unwrap()
        .map(|row| {
            let (outcome, code, at) = row.unwrap();
            (
                outcome,
                code,
                DateTime::parse_from_rfc3339(&at)
                    .unwrap()
                    .with_timezone(&Utc),
            )
        })
        .collect()
}

fn to_alice(server: &Server) -> usize {
    maildir(server)
        .iter()
        .filter(|m| header(m, "To").as_deref() == Some("alice@example.org"))
        .count()
}

/// alice's row: (created_at, next_attempt_at) as stored.
fn alice_schedule(scratch: &Scratch) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    conn.query_row(
        "SELECT created_at, next_attempt_at FROM outbox WHERE recipient = 'alice@example.org'",
        [],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?)),
    )
    .map(|(created, next)| {
        (
            DateTime::parse_from_rfc3339(&created)
                .unwrap()
                .with_timezone(&Utc),
            next.and_then(DateTime::from_timestamp_millis),
        )
    })
    .unwrap()
}

/// The stored retry time is the attempt's time plus the message's age clamped to
/// [min_backoff 1s, max_backoff 2s] (no jitter), to the millisecond.
fn assert_scheduled_by_the_policy(scratch: &Scratch) -> DateTime<Utc> {
    let (created, next) = alice_schedule(scratch);
    let next = next.expect("a retry time is stored");
    let last = alice_attempts(scratch).last().unwrap().2;
    let age = (last - created).to_std().unwrap();
    let delay = age.clamp(Duration::from_secs(1), Duration::from_secs(2));
    let want = last + chrono::Duration::from_std(delay).unwrap();
    let off = (next - want).num_milliseconds().abs();
    assert!(off <= 1, "next attempt at {next}, the policy says {want}");
    next
}

/// Wait until `at` has passed (polling the clock, not guessing a sleep).
fn until(at: DateTime<Utc>) {
    while Utc::now() <= at {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_451_for_a_while_then_accepted_follows_the_schedule_and_arrives_once() {
    let busy = aiosmtpd(&["--reply", "alice@example.org=451 4.3.0 mailbox busy"]);
    let port = busy.port;
    let scratch = scratch(port);
    assert_exit(&deliver(&scratch), 1);
    let first_retry = assert_scheduled_by_the_policy(&scratch);
    if Utc::now() < first_retry {
        assert_exit(&deliver(&scratch), 0); // not due yet: nothing is tried early
        assert_eq!(alice_attempts(&scratch).len(), 1);
    }

    until(first_retry);
    assert_exit(&deliver(&scratch), 1);
    let second_retry = assert_scheduled_by_the_policy(&scratch);
    drop(busy);
    let fixed = aiosmtpd_on(port, &[]);
    until(second_retry);
    assert_exit(&deliver(&scratch), 0);
    assert_exit(&deliver(&scratch), 0);

    let attempts = alice_attempts(&scratch);
    let outcomes: Vec<(&str, Option<i64>)> = attempts.iter().map(|a| (a.0.as_str(), a.1)).collect();
    assert_eq!(
        outcomes,
        [
            ("transient", Some(451)),
            ("transient", Some(451)),
            ("sent", Some(250))
        ]
    );
    for pair in attempts.windows(2) {
        let gap = (pair[1].2 - pair[0].2).to_std().unwrap();
        assert!(
            gap >= Duration::from_secs(1),
            "retried before min_backoff: {gap:?}"
        );
    }
    assert_eq!(to_alice(&fixed), 1, "alice's mail arrives exactly once");
}

#[test]
fn a_dead_letter_is_delivered_after_the_fix_and_outbox_retry() {
    let refusing = aiosmtpd(&["--reply", "alice@example.org=550 5.1.1 no such user"]);
    let scratch = scratch(refusing.port);
    assert_exit(&deliver(&scratch), 1);
    let dead = scratch.herald_own(&["outbox", "list", "--state", "dead", "--json"]);
    let dead: Vec<serde_json::Value> = serde_json::from_str(&stdout(&dead)).unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("no such user")
    );

    // The admin points Herald at a relay that takes the mail, then retries the dead letters.
    let relay = aiosmtpd(&[]);
    std::fs::write(scratch.path("herald.yaml"), config(relay.port)).unwrap();
    let retry = scratch.herald_own(&["outbox", "retry", "--dead"]);
    assert_exit(&retry, 0);
    assert_eq!(stdout(&retry), "1 dead row(s) queued again\n");
    assert_exit(&deliver(&scratch), 0);
    assert_eq!(to_alice(&relay), 1);
    assert_eq!(to_alice(&refusing), 0);
    let outcomes: Vec<String> = alice_attempts(&scratch).into_iter().map(|a| a.0).collect();
    assert_eq!(outcomes, ["permanent", "sent"]);
}

/// Run herald on `scratch`'s config with the SMTP password in $HERALD_TEST_SMTP_PW.
fn with_password(scratch: &Scratch, password: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(crate::support::repo())
        .arg("--config")
        .arg(scratch.path("herald.yaml"))
        .arg("--state-dir")
        .arg(scratch.path("var"))
        .args(args)
        .env("HERALD_TEST_SMTP_PW", password)
        .output()
        .unwrap()
}

#[test]
fn a_refused_login_is_reported_as_kept_not_dead_by_send_and_mail_test() {
    let (_certs, server, scratch) = crate::smtp::tls_with_auth("--smtps", "tls");
    std::fs::write(scratch.path("event.json"), EVENT).unwrap();
    let event = scratch.path("event.json");
    let out = with_password(
        &scratch,
        "wrong",
        &["send", event.to_str().unwrap(), "--deliver"],
    );
    assert_exit(&out, 0);
    let report = stdout(&out);
    assert!(
        report.contains("0 permanent (dead)") && report.contains("1 config"),
        "the refused login is a config failure and nothing is dead:\n{report}"
    );
    assert!(report.contains("the message is kept"), "{report}");
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE state = 'queued'"),
        2,
        "both rows are kept"
    );
    assert!(maildir(&server).is_empty());

    let out = with_password(
        &scratch,
        "wrong",
        &["mail", "test", "--to", "dave@example.org"],
    );
    assert_exit(&out, 1);
    let diagnosis = stdout(&out);
    assert!(
        diagnosis.contains("would be kept and retried") && !diagnosis.contains("(dead)"),
        "{diagnosis}"
    );
    assert!(diagnosis.contains("535"), "{diagnosis}");
}
