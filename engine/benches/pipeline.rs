//! End to end with the real `herald` binary into Postfix's smtp-sink, each figure next to smtp-source in the same run.
//!
//! - `herald replay --deliver` of new-user events (two mails each) at 4 and 16 SMTP
//!   sessions, in a fresh state directory (rules compiled on the way) and again with the
//!   compiled-rule cache warm; the reference is smtp-source sending as many messages over
//!   as many sessions into the same sink.
//! - A broadcast: `herald email --everyone` to 10,000 users, then `herald deliver
//!   --until-empty`, in a fresh state dir; then `herald email --everyone --wait` with the
//!   compiled rules cached; against smtp-source sending 10,000 messages.
//! - Rules per event: `herald replay` (no delivery) with 1 to 10 rules subscribed to each event.
//! - Cold start: a one-event `herald send` with the compiled rules cached, and with none.
//!
//! Run with `cargo bench --bench pipeline` (after `make test-deps`).

#[path = "common/cpu.rs"]
#[allow(dead_code)] // each bench target compiles this file; not all use all of it
mod cpu;
#[path = "common/disk.rs"]
mod disk;
#[path = "common/postfix.rs"]
mod postfix;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postfix::Sink;

/// New-user events replayed end to end (each mails the two admins of the sample directory).
const EVENTS: usize = 2_000;
const MAILS_PER_EVENT: usize = 2;
/// Users mailed by the broadcast.
const BROADCAST_USERS: usize = 10_000;
/// Runs of each cold-start case; the median is printed.
const STARTS: usize = 9;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let usr = postfix::tools_dir();
    let work = tempfile::tempdir().unwrap();
    let events = write_events(&work.path().join("events.jsonl"), "cold", EVENTS);
    println!("end to end on 127.0.0.1 (2 cores shared by herald, smtp-sink and smtp-source)");
    for sessions in [4, 16] {
        let sink = Sink::start(&usr);
        let mails = EVENTS * MAILS_PER_EVENT;
        let (reference, direct_cpu) = sink.direct(&usr, sessions, mails);
        let dir = work.path().join(format!("e2e-{sessions}"));
        let directory = root.join("etc/directory.yaml");
        write_config(&dir, sink.port, sessions, &directory);
        let cold = replay_rate(&dir, &events, mails);
        let warm_events = write_events(&dir.join("warm.jsonl"), "warm", EVENTS);
        let warm_dir = dir.join("warm");
        std::fs::create_dir_all(&warm_dir).unwrap();
        copy_cache(&dir.join("var/cache"), &warm_dir.join("cache"));
        let (sink_before, herald_before) = (sink.cpu(), cpu::of_waited_children());
        let warm_start = Instant::now();
        let warm = replay_rate_in(&dir, &warm_dir, &warm_events, mails);
        let warm_cpu = cpu::Split {
            source: Duration::ZERO,
            herald: cpu::of_waited_children() - herald_before,
            sink: sink.cpu() - sink_before,
            wall: warm_start.elapsed(),
        };
        let bound = disk::overlapped_bound(sessions, disk::commits_per_second(), reference);
        println!("  {sessions:>2} sessions, {EVENTS} events, {mails} mails");
        println!("    smtp-source → smtp-sink                         {reference:>8.0} mails/s");
        println!(
            "    disk bound had each outcome been synced (they are synced in groups now) {bound:>8.0} mails/s"
        );
        print_against(
            "herald replay --deliver, fresh state dir    ",
            cold,
            reference,
            bound,
        );
        print_against(
            "herald replay --deliver, compiled rules cached",
            warm,
            reference,
            bound,
        );
        println!(
            "    CPU per mail (source + herald + sink), rules cached: {}",
            cpu::Split::compare(&direct_cpu, &warm_cpu, mails)
        );
    }
    broadcast(work.path(), &usr);
    rules_per_event(root, work.path());
    cold_start(root, work.path());
}

/// `herald replay` (journal + evaluate, no delivery) of `EVENTS` events with 1 to 10 rules
/// subscribed to each (copies of new-user), compiled rules cached: events/s and rule runs/s.
fn rules_per_event(root: &Path, work: &Path) {
    println!(
        "rules per event: herald replay of {EVENTS} new-user events, no delivery, rules cached"
    );
    for rules in [1, 2, 5, 10] {
        let dir = work.join(format!("rules-{rules}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = format!(
            "state_dir: var\nmail: {{from: \"\"}}\ndirectory: {{path: {}}}\nrules:\n",
            root.join("etc/directory.yaml").display()
        );
        for k in 0..rules {
            let _ = writeln!(
                config,
                "  - {{name: new-user-{k}, module: builtin:new-user, on: [omero.user.created]}}"
            );
        }
        std::fs::write(dir.join("herald.yaml"), config).unwrap();
        // A first run compiles and caches; the second is measured.
        let warmup = write_events(&dir.join("warmup.jsonl"), "warmup", 10);
        timed_rate(herald(&dir).arg("replay").arg(&warmup), 10);
        let events = write_events(&dir.join("events.jsonl"), "rules", EVENTS);
        let rate = timed_rate(herald(&dir).arg("replay").arg(&events), EVENTS);
        println!(
            "  {rules:>2} rule(s) per event   {rate:>8.0} events/s   {:>8.0} rule runs/s",
            rate * rules as f64
        );
    }
}

fn print_against(what: &str, rate: f64, reference: f64, bound: f64) {
    println!(
        "    {what}    {rate:>8.0} mails/s  ({:.0}% of smtp-source, {:.0}% of the disk bound)",
        100.0 * rate / reference,
        100.0 * rate / bound
    );
}

/// `path`: JSON Lines of `count` new-user events, ids `<tag>-<i>`.
fn write_events(path: &Path, tag: &str, count: usize) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut text = String::new();
    for i in 0..count {
        let _ = writeln!(
            text,
            r#"{{"specversion":"1.0","id":"{tag}-{i}","source":"omero://bench","type":"omero.user.created","time":"2026-11-28T09:00:00Z","data":{{"user":{{"id":{},"name":"u{i}","email":"u{i}@example.org"}}}}}}"#,
            100 + i
        );
    }
    std::fs::write(path, text).unwrap();
    path.to_owned()
}

fn write_config(dir: &Path, port: u16, sessions: usize, directory: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let config = format!(
        "state_dir: var\nmail: {{from: omero@example.org, transport: smtp, smtp: {{host: 127.0.0.1, \
         port: {port}, max_connections: {sessions}}}}}\ndirectory: {{path: {}}}\nrules:\n  \
         - {{name: new-user, module: builtin:new-user, on: [omero.user.created]}}\n",
        directory.display()
    );
    std::fs::write(dir.join("herald.yaml"), config).unwrap();
}

fn herald(config_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .arg("--config")
        .arg(config_dir.join("herald.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Mails per second of one `herald replay --deliver` in the config's own state dir.
fn replay_rate(dir: &Path, events: &Path, mails: usize) -> f64 {
    timed_rate(herald(dir).args(["replay", "--deliver"]).arg(events), mails)
}

/// The same in `state_dir`.
fn replay_rate_in(dir: &Path, state_dir: &Path, events: &Path, mails: usize) -> f64 {
    let mut command = herald(dir);
    command.arg("--state-dir").arg(state_dir);
    timed_rate(command.args(["replay", "--deliver"]).arg(events), mails)
}

fn timed_rate(command: &mut Command, count: usize) -> f64 {
    let start = Instant::now();
    let out = command.output().expect("run herald");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "herald failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    count as f64 / took.as_secs_f64()
}

fn copy_cache(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).expect("the cold run left a compiled-rule cache") {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// `herald email --everyone` to a directory of `BROADCAST_USERS`, then delivery until empty.
fn broadcast(work: &Path, usr: &Path) {
    let sink = Sink::start(usr);
    let dir = work.join("broadcast");
    std::fs::create_dir_all(&dir).unwrap();
    let directory = dir.join("directory.yaml");
    std::fs::write(&directory, directory_of(BROADCAST_USERS)).unwrap();
    write_config(&dir, sink.port, 16, &directory);
    let mut config = std::fs::read_to_string(dir.join("herald.yaml")).unwrap();
    // As in etc/herald.yaml: a broadcast to everyone legitimately has this many recipients.
    config.push_str(
        "  - {name: broadcast, module: builtin:broadcast, on: [herald.broadcast], \
         limits: {max_recipients: 1000000}}\n",
    );
    std::fs::write(dir.join("herald.yaml"), config).unwrap();
    let reference = postfix::source_rate(usr, sink.port, 16, BROADCAST_USERS);
    let start = Instant::now();
    let queued = herald(&dir)
        .args([
            "email",
            "--everyone",
            "Maintenance tonight",
            "OMERO is down 22:00-23:00.",
        ])
        .output()
        .unwrap();
    assert!(
        queued.status.success(),
        "{}",
        String::from_utf8_lossy(&queued.stderr)
    );
    let took_queue = start.elapsed();
    let delivered = herald(&dir)
        .args(["deliver", "--until-empty"])
        .output()
        .unwrap();
    assert!(
        delivered.status.success(),
        "{}",
        String::from_utf8_lossy(&delivered.stderr)
    );
    let rate = BROADCAST_USERS as f64 / start.elapsed().as_secs_f64();
    let bound = disk::overlapped_bound(16, disk::commits_per_second(), reference);
    println!("broadcast to {BROADCAST_USERS} users, 16 sessions");
    println!("  smtp-source → smtp-sink                           {reference:>8.0} mails/s");
    println!(
        "  disk bound had each outcome been synced (they are synced in groups now) {bound:>8.0} mails/s"
    );
    println!(
        "  herald email --everyone + deliver --until-empty, fresh state dir   {rate:>8.0} mails/s  ({:.0}% of smtp-source, {:.0}% of the disk bound; queued in {} ms)",
        100.0 * rate / reference,
        100.0 * rate / bound,
        took_queue.as_millis()
    );
    let cached = broadcast_cached(&dir);
    println!(
        "  herald email --everyone --wait, compiled rules cached                {cached:>8.0} mails/s  ({:.0}% of smtp-source)",
        100.0 * cached / reference,
    );
}

/// The broadcast as an admin sends it on a running installation: the rules compiled and
/// cached already (by `serve` or an earlier command), one `herald email --everyone --wait`
/// that queues and then delivers until every row is final. A fresh store, the same cache.
fn broadcast_cached(dir: &Path) -> f64 {
    let state = dir.join("cached");
    copy_cache(&dir.join("var/cache"), &state.join("cache"));
    let mut command = herald(dir);
    command.arg("--state-dir").arg(&state).args([
        "email",
        "--everyone",
        "--wait",
        "600",
        "Maintenance tonight",
        "OMERO is down 22:00-23:00.",
    ]);
    let start = Instant::now();
    let out = command.stdout(Stdio::piped()).output().expect("run herald");
    let took = start.elapsed();
    let said = String::from_utf8_lossy(&out.stdout);
    let all = format!("Successfully sent {BROADCAST_USERS} of {BROADCAST_USERS} emails");
    assert!(
        out.status.success() && said.contains(&all),
        "herald email --wait: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    BROADCAST_USERS as f64 / took.as_secs_f64()
}

/// A directory of `users` active users with an email each.
fn directory_of(users: usize) -> String {
    let mut text = String::from("users:\n");
    for i in 0..users {
        let id = 10 + i;
        let _ = writeln!(
            text,
            "  - {{id: {id}, name: user{i}, first_name: U, last_name: N{i}, email: user{i}@example.org}}"
        );
    }
    text.push_str(
        "groups:\n  - {id: 0, name: system, members: [0, 10]}\n  - {id: 1, name: user, members: [",
    );
    let members: Vec<String> = (0..users).map(|i| (10 + i).to_string()).collect();
    text.push_str(&members.join(", "));
    text.push_str("]}\n");
    text
}

/// Median wall time of a one-event `herald send` with the rules compiled and cached, and with no cache.
fn cold_start(root: &Path, work: &Path) {
    let dir = work.join("start");
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "state_dir: var\nmail: {{from: \"\"}}\ndirectory: {{path: {}}}\nrules:\n  \
         - {{name: new-user, module: builtin:new-user, on: [omero.user.created]}}\n",
        root.join("etc/directory.yaml").display()
    );
    std::fs::write(dir.join("herald.yaml"), config).unwrap();
    let event = write_events(&dir.join("event.jsonl"), "start", 1);
    let mut cached = Vec::new();
    let mut uncached = Vec::new();
    for run in 0..STARTS {
        let state = dir.join(format!("state-{run}"));
        uncached.push(send_once(&dir, &state, &event));
        // The same event again is a duplicate: start, journal nothing new, exit.
        cached.push(send_once(&dir, &state, &event));
    }
    println!("cold start, a one-event `herald send` (median of {STARTS})");
    println!(
        "  compiled rules cached   {:>6.1} ms",
        median_ms(&mut cached)
    );
    println!(
        "  no cache (compiles)     {:>6.1} ms",
        median_ms(&mut uncached)
    );
}

fn send_once(dir: &Path, state: &Path, event: &Path) -> Duration {
    let start = Instant::now();
    let out = herald(dir)
        .arg("--state-dir")
        .arg(state)
        .arg("send")
        .arg(event)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

fn median_ms(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1000.0
}
