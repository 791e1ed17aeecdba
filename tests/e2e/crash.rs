//! Crash tests: SIGKILL the real binary at chosen points and at random, restart, and count what reached the sink.
//!
//! Every expected message must arrive; a message may arrive twice only when the
//! process died between handing it to the server and recording that, and every
//! such case is reported (outbox `ambiguous`, an `interrupted` attempt).

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::smtp::{Server, free_port};
use crate::support::{Scratch, assert_exit};

/// Two admins with an email (alice, bob) in etc/directory.yaml: two messages per event.
const PER_EVENT: usize = 2;

/// smtp-sink that dumps every message it accepts into its own folder.
struct Sink {
    server: Option<Server>,
    dump: tempfile::TempDir,
    port: u16,
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
        let mut sink = Sink {
            server: None,
            dump,
            port: free_port(),
        };
        sink.restart(delay);
        sink
    }

    /// Replace the server on the same port and folder (to change or drop its delay).
    fn restart(&mut self, delay: Option<&str>) {
        self.server = None;
        let template = format!("{}/%s.", self.dump.path().display());
        let mut options = vec!["-d", template.as_str()];
        if let Some(delay) = delay {
            options.extend(["-W", delay]);
        }
        self.server = Some(crate::smtp::smtp_sink_on(self.port, &options));
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
}

fn scratch(port: u16) -> Scratch {
    Scratch::with_config(&format!(
        "state_dir: var\nmail:\n  transport: smtp\n  smtp: {{host: 127.0.0.1, port: {port}, hello_name: herald.test}}\n\
         delivery: {{lease: 1s, min_backoff: 1s, max_backoff: 2s, jitter_percent: 0, poll_interval: 100ms}}\n\
         rules:\n  - {{name: new-user, module: builtin:new-user, on: [omero.user.created]}}\n"
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

fn kill_after(mut child: Child, after: Duration) -> bool {
    std::thread::sleep(after);
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    killed
}

/// Restart after the crash: wait out the leases, then work until nothing is queued.
fn recover(scratch: &Scratch) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(1100));
        let out = herald(scratch, None, &["deliver", "--until-empty"])
            .output()
            .unwrap();
        assert!(
            out.status.code().is_some(),
            "recovery run died: {:?}",
            out.status
        );
        if scratch.count("SELECT count(*) FROM outbox WHERE state <> 'sent'") == 0
            && scratch.count("SELECT count(*) FROM events WHERE state = 'pending'") == 0
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not drain after the crash"
        );
    }
}

/// (delivered distinct, duplicates, lost, reported ambiguous)
fn tally(scratch: &Scratch, sink: &Sink, events: usize) -> (usize, usize, usize, usize) {
    let received = sink.received();
    let delivered = received.len();
    let duplicates: usize = received.values().map(|n| n - 1).sum();
    let lost = (events * PER_EVENT).saturating_sub(delivered);
    let ambiguous = scratch.count("SELECT coalesce(sum(ambiguous), 0) FROM outbox") as usize;
    (delivered, duplicates, lost, ambiguous)
}

fn assert_nothing_lost(
    scratch: &Scratch,
    sink: &Sink,
    events: usize,
    max_duplicates: Option<usize>,
) {
    let (delivered, duplicates, lost, ambiguous) = tally(scratch, sink, events);
    assert_eq!(
        lost,
        0,
        "lost messages: delivered {delivered} of {}",
        events * PER_EVENT
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox"),
        (events * PER_EVENT) as i64
    );
    assert!(
        duplicates <= ambiguous,
        "{duplicates} duplicates but only {ambiguous} reported"
    );
    if let Some(max) = max_duplicates {
        assert!(
            duplicates <= max,
            "{duplicates} duplicates, expected at most {max}"
        );
    }
}

#[test]
fn kill_just_after_ingest_was_acknowledged() {
    let sink = Sink::start(None);
    let scratch = scratch(sink.port);
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
    assert_nothing_lost(&scratch, &sink, 5, Some(0));
}

#[test]
fn kill_during_evaluation() {
    let sink = Sink::start(None);
    let scratch = scratch(sink.port);
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
    assert_nothing_lost(&scratch, &sink, 5, Some(0));
}

/// Send 3 events through a sink that stalls at `delay`, SIGKILL herald while it waits,
/// then recover against the same sink without the stall.
fn kill_while_the_server_stalls(delay: &str, tag: &str) -> (Sink, Scratch) {
    let mut sink = Sink::start(Some(delay));
    let scratch = scratch(sink.port);
    let file = events(&scratch, tag, 3);
    let child = herald(&scratch, None, &["send", &file, "--deliver"])
        .spawn()
        .unwrap();
    assert!(
        kill_after(child, Duration::from_millis(2500)),
        "herald finished before the kill"
    );
    sink.restart(None);
    recover(&scratch);
    (sink, scratch)
}

#[test]
fn kill_during_smtp_before_the_final_dot() {
    let (sink, scratch) = kill_while_the_server_stalls("data:5", "data");
    assert_nothing_lost(&scratch, &sink, 3, Some(0));
    assert!(scratch.count("SELECT count(*) FROM attempts WHERE outcome = 'interrupted'") > 0);
}

#[test]
fn kill_during_smtp_after_the_final_dot() {
    let (sink, scratch) = kill_while_the_server_stalls(".:5", "dot");
    assert_nothing_lost(&scratch, &sink, 3, None);
}

#[test]
fn kill_while_marking_rows_sent() {
    let sink = Sink::start(None);
    let scratch = scratch(sink.port);
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
    let sent_before_crash: usize = sink.received().values().sum();
    assert_eq!(
        sent_before_crash,
        4 * PER_EVENT,
        "the batch reached the server before the kill"
    );
    recover(&scratch);
    let (_, duplicates, lost, ambiguous) = tally(&scratch, &sink, 4);
    assert_eq!(lost, 0);
    assert_eq!(
        duplicates,
        4 * PER_EVENT,
        "every unrecorded row is sent again"
    );
    assert_eq!(ambiguous, duplicates, "and every one of them is reported");
}

#[test]
fn randomized_kills_lose_nothing() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = StdRng::seed_from_u64(seed);
    let sink = Sink::start(None);
    let scratch = scratch(sink.port);
    let points = [
        None,
        Some("after-journal"),
        Some("before-evaluation-commit"),
        Some("before-delivery-record"),
    ];
    let started = Instant::now();
    let (mut kills, mut events_sent) = (0, 0);
    for round in 0..8 {
        if started.elapsed() > Duration::from_secs(45) {
            break;
        }
        let file = events(&scratch, &format!("r{round}"), 4);
        events_sent += 4;
        let worker = herald(&scratch, None, &["deliver"]).spawn().unwrap();
        let point = points[rng.random_range(0..points.len())];
        let sender = herald(&scratch, point, &["send", &file, "--deliver"])
            .output()
            .unwrap();
        kills += usize::from(sender.status.signal() == Some(9));
        kills += usize::from(kill_after(
            worker,
            Duration::from_millis(rng.random_range(50..600)),
        ));
    }
    recover(&scratch);
    let (delivered, duplicates, lost, ambiguous) = tally(&scratch, &sink, events_sent);
    println!(
        "crash loop (seed {seed}): kills {kills}, events {events_sent}, delivered {delivered}, \
         duplicates {duplicates} (reported ambiguous {ambiguous}), lost {lost}"
    );
    assert_nothing_lost(&scratch, &sink, events_sent, None);
    assert!(kills > 0, "the loop killed nothing");
}
