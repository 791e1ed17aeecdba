//! Crash tests: SIGKILL (and SIGTERM) the real binary at chosen points, on observed events and at
//! seeded random moments; restart once with `deliver --until-empty`; count what reached the sink.
//!
//! Every expected message must arrive, after one restart and without waiting for a lease
//! to run out (the lease here is 5 minutes). A message may arrive more than once only
//! when a process died between handing it to the server and recording that, so for each
//! Message-ID, times received − 1 ≤ its row's `ambiguous` count, and each kill adds at
//! most one duplicate per SMTP session in flight (`max_connections`).

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::support::{Listening, Scratch, Tap, assert_exit, smtp_sink, wait_for};

/// Two admins with an email (alice, bob) in etc/directory.yaml: two messages per event.
const PER_EVENT: usize = 2;
/// `mail.smtp.max_connections` in these tests: the sessions that can be in flight at a kill.
const SESSIONS: usize = 4;

/// smtp-sink that dumps every message it accepts into one folder, behind a tap that
/// counts what Herald sends; the sink can be replaced while Herald keeps its port.
struct Sink {
    server: Option<Listening>,
    dump: tempfile::TempDir,
    tap: Tap,
}

impl Sink {
    fn start(delay: Option<&str>) -> Sink {
        let dump = tempfile::tempdir().unwrap();
        // smtp-sink drops to `nobody`, which must be able to write the dumps.
        std::fs::set_permissions(
            dump.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let server = Self::spawn(&dump, delay);
        let tap = Tap::to(server.port);
        Sink {
            server: Some(server),
            dump,
            tap,
        }
    }

    fn spawn(dump: &tempfile::TempDir, delay: Option<&str>) -> Listening {
        let template = format!("{}/%s.", dump.path().display());
        let mut options = vec!["-d", template.as_str()];
        if let Some(delay) = delay {
            options.extend(["-W", delay]);
        }
        smtp_sink(&options)
    }

    /// Replace the server (to change or drop its delay); Herald's port stays the same.
    fn restart(&mut self, delay: Option<&str>) {
        self.server = None;
        let server = Self::spawn(&self.dump, delay);
        self.tap.redirect(server.port);
        self.server = Some(server);
    }

    /// Message-ID → how many times it arrived.
    fn received(&self) -> HashMap<String, usize> {
        let mut seen = HashMap::new();
        for entry in std::fs::read_dir(self.dump.path()).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
            if let Some(id) = text.lines().find_map(|l| l.strip_prefix("Message-ID: ")) {
                *seen.entry(id.trim().to_owned()).or_insert(0) += 1;
            }
        }
        seen
    }

    fn total(&self) -> usize {
        self.received().values().sum()
    }

    /// The total once it has not moved for 300 ms: a message whose final dot left the killed
    /// process may still be on its way into the sink's files when the kill returns.
    fn settled_total(&self) -> usize {
        let mut last = self.total();
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.total();
            if now == last {
                return now;
            }
            last = now;
        }
    }
}

fn scratch(sink: &Sink) -> Scratch {
    Scratch::with_config(&format!(
        "state_dir: var\nmail:\n  transport: smtp\n  smtp: {{host: 127.0.0.1, port: {}, hello_name: herald.test, max_connections: {SESSIONS}}}\n\
         delivery: {{lease: 5m, min_backoff: 1s, max_backoff: 2s, jitter_percent: 0, poll_interval: 100ms}}\n\
         rules:\n  - {{name: new-user, module: builtin:new-user, on: [omero.user.created]}}\n",
        sink.tap.port
    ))
}

/// A JSONL file of `n` user-created events with ids `<tag>-<i>`.
fn events(scratch: &Scratch, tag: &str, n: usize) -> String {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id":"{tag}-{i}","source":"s","type":"omero.user.created","time":"2026-11-23T09:00:00Z","data":{{"user":{{"id":{i},"name":"u{i}"}}}}}}"#
            )
        })
        .collect();
    let path = scratch.path(&format!("{tag}.jsonl"));
    std::fs::write(&path, lines.join("\n")).unwrap();
    path.display().to_string()
}

fn herald(scratch: &Scratch, crash_at: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.arg("--config")
        .arg(scratch.path("herald.yaml"))
        .arg("--state-dir")
        .arg(scratch.path("var"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match crash_at {
        Some(point) => cmd.env("HERALD_CRASH_AT", point),
        None => cmd.env_remove("HERALD_CRASH_AT"),
    };
    cmd
}

fn assert_killed(out: &Output) {
    assert_eq!(
        out.status.signal(),
        Some(9),
        "expected SIGKILL, got {:?}",
        out.status
    );
}

/// SIGKILL `child` as soon as `ready` holds (or `limit` passed): (whether `ready` held,
/// whether the child was still running, so that the kill counts).
fn kill_when(mut child: Child, limit: Duration, ready: impl FnMut() -> bool) -> (bool, bool) {
    let seen = wait_for(limit, ready);
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    (seen, alive)
}

/// One restart after the crash: `deliver --until-empty` must leave nothing queued or
/// pending, without waiting for the dead process's leases (5 minutes) to run out.
fn recover(scratch: &Scratch) {
    let start = Instant::now();
    let out = herald(scratch, None, &["deliver", "--until-empty"])
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some(),
        "recovery died: {:?}",
        out.status
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "recovery waited {:?}",
        start.elapsed()
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE state <> 'sent'"),
        0,
        "one restart delivers everything"
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM events WHERE state = 'pending'"),
        0
    );
}

/// Duplicates in all; panics when any Message-ID arrived more often than its row reports.
fn duplicates_within_what_is_reported(scratch: &Scratch, sink: &Sink) -> usize {
    let mut duplicates = 0;
    for (id, times) in sink.received() {
        let digest = id.trim_start_matches('<').split('@').next().unwrap();
        let ambiguous = scratch.count(&format!(
            "SELECT coalesce(max(ambiguous), -1) FROM outbox WHERE digest = '{digest}'"
        ));
        assert!(ambiguous >= 0, "{id} matches no outbox row");
        assert!(
            (times - 1) as i64 <= ambiguous,
            "{id} arrived {times} times but its row reports {ambiguous} ambiguous attempt(s)"
        );
        duplicates += times - 1;
    }
    duplicates
}

/// Nothing lost; duplicates reported per row and at most `SESSIONS` per kill.
fn assert_nothing_lost(scratch: &Scratch, sink: &Sink, events: usize, kills: usize) -> usize {
    let expected = events * PER_EVENT;
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox"),
        expected as i64
    );
    assert_eq!(sink.received().len(), expected, "every message arrives");
    let duplicates = duplicates_within_what_is_reported(scratch, sink);
    assert!(
        duplicates <= kills * SESSIONS,
        "{duplicates} duplicates after {kills} kill(s): more than one per session in flight"
    );
    duplicates
}

fn interrupted(scratch: &Scratch) -> i64 {
    scratch.count("SELECT count(*) FROM attempts WHERE outcome = 'interrupted'")
}

#[test]
fn kill_just_after_ingest_was_acknowledged() {
    let sink = Sink::start(None);
    let scratch = scratch(&sink);
    let file = events(&scratch, "ack", 5);
    assert_killed(
        &herald(
            &scratch,
            Some("after-journal"),
            &["send", &file, "--deliver"],
        )
        .output()
        .unwrap(),
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM events"),
        5,
        "acknowledged means journaled"
    );
    assert_eq!(scratch.count("SELECT count(*) FROM outbox"), 0);
    recover(&scratch);
    assert_eq!(assert_nothing_lost(&scratch, &sink, 5, 1), 0);
}

#[test]
fn kill_during_evaluation() {
    let sink = Sink::start(None);
    let scratch = scratch(&sink);
    let file = events(&scratch, "eval", 5);
    assert_killed(
        &herald(
            &scratch,
            Some("before-evaluation-commit"),
            &["send", &file, "--deliver"],
        )
        .output()
        .unwrap(),
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM events WHERE state = 'pending'"),
        5
    );
    recover(&scratch);
    assert_eq!(assert_nothing_lost(&scratch, &sink, 5, 1), 0);
}

/// Queue 3 events, run `deliver` against a sink that stalls at `delay`, SIGKILL it once
/// the tap saw `seen` (DATA or the final dot), then recover against a sink without the stall.
fn kill_while_the_server_stalls(
    delay: &str,
    tag: &str,
    seen: fn(&Tap) -> usize,
) -> (Sink, Scratch, usize) {
    let mut sink = Sink::start(Some(delay));
    let scratch = scratch(&sink);
    let file = events(&scratch, tag, 3);
    assert_exit(
        &herald(&scratch, None, &["send", &file]).output().unwrap(),
        0,
    );
    let child = herald(&scratch, None, &["deliver", "--until-empty"])
        .spawn()
        .unwrap();
    let (got_there, alive) = kill_when(child, Duration::from_secs(30), || seen(&sink.tap) > 0);
    assert!(
        got_there && alive,
        "herald never got there, or finished before the kill"
    );
    let dots_at_kill = sink.tap.dots();
    sink.restart(None);
    recover(&scratch);
    (sink, scratch, dots_at_kill)
}

#[test]
fn kill_during_smtp_before_the_final_dot() {
    let (sink, scratch, dots_at_kill) = kill_while_the_server_stalls("data:60", "data", Tap::data);
    assert_eq!(dots_at_kill, 0, "no final dot was sent before the kill");
    assert_eq!(assert_nothing_lost(&scratch, &sink, 3, 1), 0);
    // Only a row marked as being sent is logged `interrupted`: at most one per session.
    assert!(interrupted(&scratch) as usize <= SESSIONS);
}

#[test]
fn kill_during_smtp_after_the_final_dot() {
    let (sink, scratch, dots_at_kill) = kill_while_the_server_stalls(".:60", "dot", Tap::dots);
    assert!(dots_at_kill >= 1, "the kill came after a final dot");
    assert_nothing_lost(&scratch, &sink, 3, 1);
    // Each row whose final dot the server saw was leased when the process died, so it
    // was sent again with an `interrupted` attempt and counted as ambiguous.
    assert!(interrupted(&scratch) as usize >= dots_at_kill);
    assert!(scratch.count("SELECT sum(ambiguous) FROM outbox") >= 1);
}

#[test]
fn kill_while_marking_rows_sent() {
    let sink = Sink::start(None);
    let scratch = scratch(&sink);
    let file = events(&scratch, "mark", 4);
    assert_exit(
        &herald(&scratch, None, &["send", &file]).output().unwrap(),
        0,
    );
    assert_killed(
        &herald(
            &scratch,
            Some("before-delivery-record"),
            &["deliver", "--until-empty"],
        )
        .output()
        .unwrap(),
    );
    let sent_before_crash = sink.settled_total();
    assert!(
        (1..=SESSIONS).contains(&sent_before_crash),
        "{sent_before_crash} messages reached the server before the first outcome was \
         recorded: at most one per session may"
    );
    recover(&scratch);
    let duplicates = assert_nothing_lost(&scratch, &sink, 4, 1);
    assert_eq!(
        duplicates, sent_before_crash,
        "every unrecorded row is sent again"
    );
    // Every row leased at the kill is reported (the sent ones among them), and only those:
    // one per session at most.
    let reported = scratch.count("SELECT sum(ambiguous) FROM outbox") as usize;
    assert!(
        (duplicates..=SESSIONS).contains(&reported),
        "{reported} rows reported ambiguous for {duplicates} duplicates"
    );
}

#[test]
fn sigterm_finishes_the_sessions_in_flight_and_exits_0() {
    let mut sink = Sink::start(Some("data:1"));
    let scratch = scratch(&sink);
    let file = events(&scratch, "term", 6);
    assert_exit(
        &herald(&scratch, None, &["send", &file]).output().unwrap(),
        0,
    );
    let mut worker = herald(&scratch, None, &["deliver"]).spawn().unwrap();
    assert!(wait_for(Duration::from_secs(30), || sink.tap.data() >= 2));
    // SAFETY: kill(2) on our own child with a valid signal.
    unsafe { libc::kill(worker.id() as libc::pid_t, libc::SIGTERM) };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = worker.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "deliver ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE lease_until IS NOT NULL"),
        0,
        "no row is left leased"
    );
    let sent = scratch.count("SELECT count(*) FROM outbox WHERE state = 'sent'") as usize;
    assert_eq!(
        sent,
        sink.total(),
        "every message the server took is recorded"
    );
    assert!(sent < 6 * PER_EVENT, "it stopped taking new rows");
    sink.restart(None);
    recover(&scratch);
    assert_eq!(assert_nothing_lost(&scratch, &sink, 6, 0), 0);
    assert_eq!(interrupted(&scratch), 0);
}

/// Fixed seeds, so a failure can be replayed.
const SEEDS: [u64; 2] = [7, 1_000_003];

#[test]
fn randomized_kills_lose_nothing_and_bound_duplicates() {
    for seed in SEEDS {
        randomized_kills(seed);
    }
}

/// Rounds of: queue 4 events while a `deliver` worker runs, with the sender SIGKILLed at a
/// random crash point (or not), and the worker SIGKILLed once it has sent a random number
/// of DATA commands.
fn randomized_kills(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let sink = Sink::start(None);
    let scratch = scratch(&sink);
    let points = [
        None,
        Some("after-journal"),
        Some("before-evaluation-commit"),
        Some("before-delivery-record"),
    ];
    let (mut kills, mut events_sent) = (0, 0);
    for round in 0..5 {
        let file = events(&scratch, &format!("s{seed}r{round}"), 4);
        events_sent += 4;
        let worker = herald(&scratch, None, &["deliver"]).spawn().unwrap();
        let point = points[rng.random_range(0..points.len())];
        let sender = herald(&scratch, point, &["send", &file, "--deliver"])
            .output()
            .unwrap();
        kills += usize::from(sender.status.signal() == Some(9));
        let target = sink.tap.data() + rng.random_range(1..4);
        let (_, alive) = kill_when(worker, Duration::from_secs(2), || sink.tap.data() >= target);
        kills += usize::from(alive);
    }
    recover(&scratch);
    let duplicates = assert_nothing_lost(&scratch, &sink, events_sent, kills);
    println!(
        "crash loop (seed {seed}): kills {kills}, events {events_sent}, duplicates {duplicates}, \
         interrupted {}",
        interrupted(&scratch)
    );
    assert!(kills > 0, "seed {seed}: the loop killed nothing");
}
