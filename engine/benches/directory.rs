//! Benchmark: how directory size (100 to 100,000 users) scales loading, lookups and rule evaluation.
//!
//! `cargo bench --bench directory` prints, per size, the load time and the memory the loaded
//! directory holds, then medians in microseconds of the lookups rules use and of two whole
//! sandboxed evaluations (rule + output checks + recipient expansion): the new-user rule, whose
//! mail goes to the admins, and a broadcast to everyone.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/directory.rs"]
mod generated;
#[path = "common/timing.rs"]
mod timing;

use herald::config::Limits;
use herald::directory::Directory;
use herald::evaluate::host::{HostState, Invocation};
use herald::evaluate::sandbox::{Prepared, Sandbox};
use herald::evaluate::{KvRead, MemoryKv, convert, output};
use herald::event::{self, Event};

const SIZES: [usize; 4] = [100, 1_000, 10_000, 100_000];

fn main() {
    let work = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_recipients: 1_000_000,
        ..Limits::default()
    };
    let sandbox = Sandbox::new(limits.memory_bytes, None);
    let new_user = sandbox
        .prepare(herald::builtin::wasm("new-user").unwrap(), &limits)
        .unwrap();
    let broadcast = sandbox
        .prepare(herald::builtin::wasm("broadcast").unwrap(), &limits)
        .unwrap();
    println!("directory size: load, held memory, and medians per call (2 cores, release build)");
    println!(
        "{:>8}  {:>8}  {:>7}  {:>10}  {:>10}  {:>10}  {:>12}  {:>14}  {:>16}",
        "users",
        "load ms",
        "MiB",
        "groups_of",
        "lab",
        "admins",
        "active_users",
        "new-user event",
        "broadcast, all"
    );
    for users in SIZES {
        let path = work.path().join(format!("directory-{users}.yaml"));
        generated::write(&path, users);
        let before = rss_kib();
        let start = Instant::now();
        let directory = Arc::new(Directory::load(&path).expect("the generated directory loads"));
        let load = start.elapsed();
        let held = rss_kib().saturating_sub(before) as f64 / 1024.0;
        let mid = (users / 2 + 2) as i64;
        let runs = if users >= 100_000 { 30 } else { 300 };
        let lookups = [
            median(runs, || drop(black_box(directory.groups_of(mid)))),
            median(runs, || drop(black_box(directory.members("lab7")))),
            median(runs, || drop(black_box(directory.admins()))),
            median(runs, || drop(black_box(directory.active_users()))),
        ];
        let created = user_created(mid);
        let everyone = broadcast_to_everyone();
        let evaluations = [
            median(runs, || evaluate(&new_user, &created, &directory, &limits)),
            median(runs.min(30), || {
                evaluate(&broadcast, &everyone, &directory, &limits)
            }),
        ];
        println!(
            "{users:>8}  {:>8.1}  {held:>7.1}  {:>10.2}  {:>10.2}  {:>10.2}  {:>12.1}  {:>14.1}  {:>16.1}",
            load.as_secs_f64() * 1e3,
            micros(lookups[0]),
            micros(lookups[1]),
            micros(lookups[2]),
            micros(lookups[3]),
            micros(evaluations[0]),
            micros(evaluations[1]),
        );
        drop(directory);
    }
    println!(
        "(MiB: resident memory the loaded directory added; groups_of, lab and admins are index \
         lookups, active_users lists every active user; \"broadcast, all\" expands every user's address)"
    );
}

/// One sandboxed evaluation: fresh instance, the rule, output checks and recipient expansion.
fn evaluate(rule: &Prepared, event: &Event, directory: &Arc<Directory>, limits: &Limits) {
    let kv: Arc<dyn KvRead> = Arc::new(MemoryKv::default());
    let invocation = Invocation {
        rule: "bench",
        config_json: Arc::from("{}"),
        directory: directory.clone(),
        kv,
        limits,
        time_unix_ms: event.time.timestamp_millis(),
        seed: 7,
    };
    let ran = rule.invoke(HostState::new(&invocation), &convert::event(event), limits);
    let messages = ran.result.expect("the rule runs");
    black_box(output::resolve(messages, directory, limits).expect("the output resolves"));
}

fn user_created(id: i64) -> Event {
    let json = format!(
        r#"{{"id":"bench-{id}","source":"omero://bench","type":"omero.user.created",
            "time":"2026-11-23T09:15:00Z","data":{{"user":{{"id":{id},"name":"u{id}"}}}}}}"#
    );
    event::from_str(&json, chrono::Utc::now()).unwrap()
}

fn broadcast_to_everyone() -> Event {
    let json = r#"{"id":"bench-all","source":"herald://bench","type":"herald.broadcast",
        "time":"2026-11-23T09:15:00Z","data":{"subject":"Maintenance","body":"Down at 6.","everyone":true}}"#;
    event::from_str(json, chrono::Utc::now()).unwrap()
}

fn median(runs: usize, f: impl FnMut()) -> Duration {
    timing::percentile(&timing::sorted_times(1, runs, f), 50)
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Resident memory of this process now, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
