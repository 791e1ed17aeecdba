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

#[test]
fn a_451_for_a_while_then_accepted_follows_the_schedule_and_arrives_once() {
    let busy = aiosmtpd(&["--reply", "alice@example.org=451 4.3.0 mailbox busy"]);
    let port = busy.port;
    let scratch = scratch(port);
    assert_exit(&deliver(&scratch), 1);
    assert_exit(&deliver(&scratch), 0); // not due yet: nothing is tried early
    assert_eq!(alice_attempts(&scratch).len(), 1);

    std::thread::sleep(Duration::from_millis(1300));
    assert_exit(&deliver(&scratch), 1);
    drop(busy);
    let fixed = aiosmtpd_on(port, &[]);
    std::thread::sleep(Duration::from_millis(2300));
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
