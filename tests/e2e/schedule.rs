//! Scheduled rules under the real `herald serve`: ticks fire, a restart never doubles one, missed ticks follow `missed`.

use std::time::Duration;

use crate::serve::{Served, log_of};
use crate::smtp::{aiosmtpd, header, received_raw, scratch_with_rules};
use crate::support::{Scratch, assert_exit, stderr, wait_for};

/// `herald serve` (the serve tests' harness) with `rules` (YAML list items) and mail kept queued.
fn serving(scratch: &Scratch, rules: &str) -> Served {
    serving_with(scratch, &format!("mail: {{from: \"\"}}\nrules:\n{rules}"))
}

/// `herald serve` with `yaml` (state in `var/`), once it answers `/healthz`.
fn serving_with(scratch: &Scratch, yaml: &str) -> Served {
    Served::start(scratch, yaml, &[])
}

/// SIGTERM, and a clean exit (0).
fn stop(mut served: Served) {
    let status = served.terminate();
    assert!(status.success(), "herald serve exited with {status}");
}

/// A rule that runs on ticks only (failed-login sends nothing for a tick, so its run is `ok`).
fn rule(name: &str, schedule: &str, missed: &str) -> String {
    format!(
        "  - {{name: {name}, module: builtin:failed-login, schedule: \"{schedule}\", missed: {missed}}}\n"
    )
}

/// The (id, time) of every tick journaled, in journal order.
fn ticks(scratch: &Scratch) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, time FROM events WHERE type = 'herald.tick' ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Pretend Herald was last up (its ticks journaled through) at `instant`.
fn last_up_at(scratch: &Scratch, instant: &str) {
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let secs = chrono::DateTime::parse_from_rfc3339(instant)
        .unwrap()
        .timestamp();
    let changed = conn
        .execute("UPDATE schedule_state SET through = ?1", [secs])
        .unwrap();
    assert_eq!(changed, 1, "the rule's schedule state was saved at start");
}

#[test]
fn a_rule_on_a_schedule_of_seconds_fires() {
    let scratch = Scratch::with_config("");
    let serving = serving(&scratch, &rule("beat", "* * * * * *", "latest"));
    let fired = wait_for(Duration::from_secs(20), || {
        scratch.count(
            "SELECT count(*) FROM rule_runs r JOIN events e ON e.seq = r.event_seq \
             WHERE e.type = 'herald.tick' AND r.rule = 'beat' AND r.state = 'ok'",
        ) >= 2
    });
    stop(serving);
    assert!(fired, "no ticks evaluated; log:\n{}", log_of(&scratch));
    let ticks = ticks(&scratch);
    for (id, time) in &ticks {
        assert_eq!(id, &format!("beat@{time}"), "a tick's id is rule@instant");
    }
    let mut times: Vec<_> = ticks.iter().map(|(_, t)| t.clone()).collect();
    times.dedup();
    assert_eq!(times.len(), ticks.len(), "one tick per instant: {ticks:?}");
}

/// Only instants in the past: 2020-01-01 and 2021-01-01, midnight UTC.
const PAST: &str = "0 0 0 1 1 * 2020,2021";

#[test]
fn a_missed_tick_is_caught_up_once_for_the_latest_instant() {
    let scratch = Scratch::with_config("");
    let rules = rule("digest", PAST, "latest");
    // The first start saves where the schedule stands and catches nothing up.
    stop(serving(&scratch, &rules));
    assert!(ticks(&scratch).is_empty(), "a first start ticks nothing");
    last_up_at(&scratch, "2019-06-01T00:00:00Z");
    stop(serving(&scratch, &rules));
    assert_eq!(
        ticks(&scratch),
        [(
            "digest@2021-01-01T00:00:00Z".into(),
            "2021-01-01T00:00:00Z".into()
        )],
        "one catch-up tick, for the most recent missed instant"
    );
    // Caught up: a further restart sends no other tick.
    stop(serving(&scratch, &rules));
    assert_eq!(ticks(&scratch).len(), 1);
}

#[test]
fn missed_none_sends_no_catch_up_tick() {
    let scratch = Scratch::with_config("");
    let rules = rule("digest", PAST, "none");
    stop(serving(&scratch, &rules));
    last_up_at(&scratch, "2019-06-01T00:00:00Z");
    stop(serving(&scratch, &rules));
    assert!(ticks(&scratch).is_empty(), "{:?}", ticks(&scratch));
}

#[test]
fn a_restart_does_not_double_a_tick() {
    let scratch = Scratch::with_config("");
    let rules = rule("digest", PAST, "latest");
    stop(serving(&scratch, &rules));
    last_up_at(&scratch, "2019-06-01T00:00:00Z");
    stop(serving(&scratch, &rules));
    // A crash between journaling the tick and saving the schedule state: the
    // restart journals the same instant again, and the store keeps it once.
    last_up_at(&scratch, "2019-06-01T00:00:00Z");
    stop(serving(&scratch, &rules));
    assert_eq!(ticks(&scratch).len(), 1, "{:?}", ticks(&scratch));
    assert_eq!(
        scratch.count("SELECT count(*) FROM rule_runs WHERE rule = 'digest'"),
        1,
        "the rule ran once for its one tick"
    );
}

#[test]
fn a_live_schedule_restarted_journals_each_instant_once() {
    let scratch = Scratch::with_config("");
    let rules = rule("beat", "* * * * * *", "latest");
    for _ in 0..2 {
        let serving = serving(&scratch, &rules);
        let before = ticks(&scratch).len();
        assert!(wait_for(Duration::from_secs(20), || ticks(&scratch).len()
            >= before + 2));
        stop(serving);
    }
    let ticks = ticks(&scratch);
    let mut times: Vec<_> = ticks.iter().map(|(_, t)| t.clone()).collect();
    times.sort();
    times.dedup();
    assert_eq!(
        times.len(),
        ticks.len(),
        "an instant ticked twice: {ticks:?}"
    );
}

/// Rewrite the served `herald.yaml` with `edit`, then SIGHUP and wait for the `n`th reload.
fn reload_with(served: &Served, scratch: &Scratch, n: usize, edit: impl Fn(String) -> String) {
    let path = scratch.path("herald.yaml");
    std::fs::write(&path, edit(std::fs::read_to_string(&path).unwrap())).unwrap();
    served.signal(libc::SIGHUP);
    let reloaded = wait_for(Duration::from_secs(60), || {
        log_of(scratch).matches("reloaded the config").count() >= n
    });
    assert!(reloaded, "reload {n} not logged:\n{}", log_of(scratch));
}

#[test]
fn a_reload_that_adds_a_schedule_ticks_at_once_and_one_that_removes_it_stops() {
    let scratch = Scratch::with_config("");
    let quiet = rule("quiet", PAST, "latest");
    let served = serving(&scratch, &quiet);
    let beat = rule("beat", "* * * * * *", "latest");
    reload_with(&served, &scratch, 1, |yaml| {
        yaml.replace(&quiet, &(quiet.clone() + &beat))
    });
    let beating = wait_for(Duration::from_secs(20), || {
        scratch.count("SELECT count(*) FROM events WHERE id LIKE 'beat@%'") >= 2
    });
    assert!(
        beating,
        "no ticks after the reload; log:\n{}",
        log_of(&scratch)
    );

    reload_with(&served, &scratch, 2, |yaml| yaml.replace(&beat, ""));
    // A tick due at the very moment of the swap may still be journaled; none after it.
    std::thread::sleep(Duration::from_millis(1500));
    let after_removal = scratch.count("SELECT count(*) FROM events WHERE id LIKE 'beat@%'");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        scratch.count("SELECT count(*) FROM events WHERE id LIKE 'beat@%'"),
        after_removal,
        "a removed schedule still ticks"
    );
    stop(served);
    let ids: Vec<String> = ticks(&scratch).into_iter().map(|(id, _)| id).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique, ids, "an instant ticked twice");
}

#[test]
fn a_bad_schedule_is_a_config_error_naming_the_key_and_line() {
    let scratch = Scratch::with_config(
        "rules:\n  - name: digest\n    module: builtin:failed-login\n    schedule: \"0 0 25 * * *\"\n",
    );
    let out = scratch.herald_own(&["serve"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(":4:"), "{err}");
    assert!(err.contains("rules[0].schedule"), "{err}");
    assert!(err.contains("seconds first"), "{err}");
    let scratch = Scratch::with_config(
        "rules:\n  - name: digest\n    module: builtin:failed-login\n    \
         schedule: \"0 0 8 * * *\"\n    missed: all\n",
    );
    let out = scratch.herald_own(&["serve"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains(":5:") && err.contains("rules[0].missed"),
        "{err}"
    );
    assert!(err.contains("latest") && err.contains("none"), "{err}");
}

/// The admins with an email in `etc/directory.yaml` (root has none): each gets its own envelope.
const ADMINS: [&str; 2] = ["alice@example.org", "bob@example.org"];

/// `n` failed logins as `user`, one minute apart from 09:00, ids `<prefix>-<i>`.
fn failures(prefix: &str, user: &str, n: u32) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"specversion\":\"1.0\",\"id\":\"{prefix}-{i}\",\"source\":\"omero://test\",\
                 \"type\":\"omero.login.failed\",\"time\":\"2026-11-23T09:{i:02}:00Z\",\
                 \"data\":{{\"user\":\"{user}\",\"remote_addr\":\"192.0.2.7\"}}}}\n"
            )
        })
        .collect()
}

/// (subject, recipients) of each message aiosmtpd received, sorted.
fn subjects_and_recipients(server: &crate::smtp::Server) -> Vec<(String, String)> {
    let mut got: Vec<(String, String)> = received_raw(server)
        .into_iter()
        .map(|(data, rcpt)| {
            let text = String::from_utf8_lossy(&data).replace("\r\n", "\n");
            (header(&text, "Subject").unwrap_or_default(), rcpt.join(","))
        })
        .collect();
    got.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    got
}

#[test]
fn the_throttle_sends_one_mail_for_many_failures_within_its_window() {
    let server = aiosmtpd(&[]);
    let scratch = scratch_with_rules(
        server.port,
        "",
        "  - {name: throttle, module: builtin:failed-login-throttle, on: [omero.login.failed], \
         config: {window: 1h}}\n",
    );
    // Five failures in five minutes, in two runs: the window outlives each process.
    std::fs::write(scratch.path("a.jsonl"), failures("a", "root", 3)).unwrap();
    std::fs::write(scratch.path("b.jsonl"), failures("b", "root", 2)).unwrap();
    for file in ["a.jsonl", "b.jsonl"] {
        let path = scratch.path(file);
        let out = scratch.herald_own(&["send", path.to_str().unwrap(), "--deliver"]);
        assert_exit(&out, 0);
    }
    let want: Vec<(String, String)> = ADMINS
        .iter()
        .map(|a| {
            (
                "[OMERO] Login failed for 'root'".to_owned(),
                (*a).to_owned(),
            )
        })
        .collect();
    assert_eq!(subjects_and_recipients(&server), want, "one mail per admin");
}

#[test]
fn the_digest_mails_one_summary_on_its_tick() {
    let server = aiosmtpd(&[]);
    let rules = "  - {name: digest, module: builtin:failed-login-digest, on: [omero.login.failed], \
                 schedule: \"* * * * * *\"}\n";
    let scratch = scratch_with_rules(server.port, "", rules);
    // Four failures are collected (no mail) before the service starts.
    let mut events = failures("a", "root", 3);
    events.push_str(&failures("b", "alice", 1));
    std::fs::write(scratch.path("events.jsonl"), events).unwrap();
    let path = scratch.path("events.jsonl");
    assert_exit(&scratch.herald_own(&["send", path.to_str().unwrap()]), 0);
    let yaml = std::fs::read_to_string(scratch.path("herald.yaml")).unwrap();
    let serving = serving_with(&scratch, &yaml);
    let arrived = wait_for(Duration::from_secs(30), || {
        received_raw(&server).len() >= ADMINS.len()
    });
    assert!(arrived, "no summary; log:\n{}", log_of(&scratch));
    // Later ticks find nothing collected and send nothing.
    let later = ticks(&scratch).len();
    assert!(wait_for(Duration::from_secs(10), || ticks(&scratch).len()
        >= later + 2));
    stop(serving);
    let want: Vec<(String, String)> = ADMINS
        .iter()
        .map(|a| {
            (
                "[OMERO] Failed logins: 4 since the last digest".to_owned(),
                (*a).to_owned(),
            )
        })
        .collect();
    assert_eq!(subjects_and_recipients(&server), want);
    let (body, _) = &received_raw(&server)[0];
    let body = String::from_utf8_lossy(body);
    assert!(body.contains("'root': 3\r\n"), "{body}");
    assert!(body.contains("'alice': 1\r\n"), "{body}");
}
