//! Benchmark: durable ingest (fsync per commit) one event per transaction vs batched, and event-to-outbox latency.
//!
//! `cargo bench --bench ingest` prints events/s and p50/p99 latency, on a real SQLite file.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use herald::config::Config;
use herald::directory::Directory;
use herald::evaluate::Evaluator;
use herald::event::{self, Event};
use herald::pipeline;
use herald::store::Store;

#[path = "common/timing.rs"]
#[allow(dead_code)]
mod timing;

const EVENTS: usize = 2000;
const BATCH: usize = 100;
const LATENCY_SAMPLES: usize = 2000;
/// The event-to-outbox samples arrive at 500 events/s, the target's load.
const LATENCY_INTERVAL: Duration = Duration::from_millis(2);

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    println!("durable ingest into SQLite (WAL, synchronous=FULL), {EVENTS} events");
    let single = ingest_rate(&dir.path().join("single.db"), "single", 1);
    let batched = ingest_rate(&dir.path().join("batched.db"), "batched", BATCH);
    println!("  one event per transaction      {single:>10.0} events/s");
    println!(
        "  {BATCH} events per transaction     {batched:>10.0} events/s  ({:.1}x)",
        batched / single
    );

    let config = Config::load(&root.join("etc/herald.yaml"), Some(dir.path())).unwrap();
    let directory = Arc::new(Directory::load(&config.directory.path).unwrap());
    let evaluator = Evaluator::new(&config, directory).unwrap();
    let mut store = Store::open(&dir.path().join("latency.db")).unwrap();
    let (mut received, mut accepted): (Vec<_>, Vec<_>) =
        event_to_outbox(&mut store, &evaluator, config.sandbox.quarantine_after)
            .into_iter()
            .unzip();
    println!("event to outbox, evaluating new-user, {LATENCY_SAMPLES} events at 500/s");
    print_latency(
        "received → outbox committed (journal commit, evaluate, outbox commit)",
        &mut received,
    );
    print_latency(
        "accepted (journal committed: the 202) → outbox committed",
        &mut accepted,
    );
}

fn print_latency(what: &str, times: &mut [Duration]) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let pct = |p: usize| ms(timing::percentile(times, p));
    println!("  {what}");
    println!(
        "    p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        pct(50),
        pct(90),
        pct(99),
        ms(times[times.len() - 1])
    );
}

fn user_created(tag: &str, i: usize) -> Event {
    let text = format!(
        r#"{{"id":"{tag}-{i}","source":"omero://bench","type":"omero.user.created","time":"2026-11-23T09:00:00Z","data":{{"user":{{"id":{i},"name":"u{i}"}}}}}}"#
    );
    event::from_str(&text, Utc::now()).unwrap()
}

fn ingest_rate(path: &Path, tag: &str, batch: usize) -> f64 {
    let mut store = Store::open(path).unwrap();
    let events: Vec<Event> = (0..EVENTS).map(|i| user_created(tag, i)).collect();
    let start = Instant::now();
    for chunk in events.chunks(batch) {
        store.ingest(chunk, Utc::now()).unwrap();
    }
    EVENTS as f64 / start.elapsed().as_secs_f64()
}

/// For each event: received → outbox committed, and accepted (journal committed) → outbox committed.
fn event_to_outbox(
    store: &mut Store,
    evaluator: &Evaluator,
    quarantine_after: u32,
) -> Vec<(Duration, Duration)> {
    let begin = Instant::now();
    (0..LATENCY_SAMPLES)
        .map(|i| {
            let due = begin + LATENCY_INTERVAL * i as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let ev = user_created("latency", i);
            let received = Instant::now();
            store.ingest(&[ev], Utc::now()).unwrap();
            let accepted = Instant::now();
            pipeline::evaluate_pending(store, evaluator, quarantine_after, |_| {}).unwrap();
            (received.elapsed(), accepted.elapsed())
        })
        .collect()
}
