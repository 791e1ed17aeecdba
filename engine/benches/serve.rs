//! Benchmark: `herald serve` over HTTP: ingest rate from 32 clients, event-to-SMTP latency, peak RSS.
//!
//! `cargo bench --bench serve` starts the real binary on loopback ports and prints, next to
//! the store's own insert rate measured in the same run:
//! - events/s for single-event requests and for batches of 100, from 32 concurrent clients;
//! - accepted (202) → mail accepted by smtp-sink, p50/p99, under a steady 500 events/s;
//! - the service's peak RSS (VmHWM) after each run.
//!
//! Traffic goes to 127.0.0.1 only, and every loop is bounded by a count.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "common/cpu.rs"]
#[allow(dead_code)] // each bench target compiles this file; not all use all of it
mod cpu;
#[path = "common/directory.rs"]
mod generated;
#[path = "common/postfix.rs"]
#[allow(dead_code)] // this bench uses the sink only
mod postfix;

use chrono::{DateTime, Utc};
use herald::event::{self, Event};
use herald::store::Store;
use postfix::Sink;

const TOKEN: &str = "bench-ingest-token-0123456789";
const CLIENTS: usize = 32;
const SINGLE_EVENTS: usize = 6_400;
const BATCH: usize = 100;
const BATCHED_EVENTS: usize = 64_000;
const RATE: u64 = 500;
const LATENCY_EVENTS: usize = 3_000;
/// Users in the large directory of the last latency run.
const LARGE_DIRECTORY: usize = 100_000;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let work = tempfile::tempdir().unwrap();
    println!(
        "herald serve, HTTP ingest on 127.0.0.1 from {CLIENTS} clients (2 cores shared by all)"
    );
    let raw_single = store_rate(&work.path().join("raw1.db"), 1, SINGLE_EVENTS);
    let raw_batched = store_rate(&work.path().join("raw100.db"), BATCH, BATCHED_EVENTS);
    println!(
        "  baseline: Store::ingest in process, 1 event per transaction   {raw_single:>9.0} events/s"
    );
    println!(
        "  baseline: Store::ingest in process, {BATCH} per transaction     {raw_batched:>9.0} events/s"
    );

    let sample = root.join("etc/directory.yaml");
    let single = Service::start(&sample, &work.path().join("single"), None);
    let rate = single.post_all(SINGLE_EVENTS, 1);
    println!(
        "  single-event requests                                          {rate:>9.0} events/s  ({:.0}% of 1/tx baseline)",
        100.0 * rate / raw_single
    );
    println!("    peak RSS {} MiB", single.peak_rss_mib());
    drop(single);

    let batched = Service::start(&sample, &work.path().join("batched"), None);
    let rate = batched.post_all(BATCHED_EVENTS, BATCH);
    println!(
        "  batches of {BATCH}                                                {rate:>9.0} events/s  ({:.0}% of {BATCH}/tx baseline)",
        100.0 * rate / raw_batched
    );
    println!("    peak RSS {} MiB", batched.peak_rss_mib());
    drop(batched);

    let sink = Sink::start(&postfix::tools_dir());
    let service = Service::start(&sample, &work.path().join("latency"), Some(sink.port));
    let (p50, p99, rows) = service.latency(LATENCY_EVENTS, RATE);
    println!(
        "accepted → mail accepted by smtp-sink, {LATENCY_EVENTS} new-user events at {RATE}/s ({rows} mails)"
    );
    println!("  p50 {p50:.1} ms   p99 {p99:.1} ms");
    println!("  peak RSS {} MiB", service.peak_rss_mib());
    drop(service);

    let large = work.path().join("large-directory.yaml");
    generated::write(&large, LARGE_DIRECTORY);
    let service = Service::start(&large, &work.path().join("large"), Some(sink.port));
    let (p50, p99, rows) = service.latency(LATENCY_EVENTS, RATE);
    println!("the same with a {LARGE_DIRECTORY}-user directory file ({rows} mails)");
    println!("  p50 {p50:.1} ms   p99 {p99:.1} ms");
    println!(
        "  peak RSS {} MiB, resident after the run {} MiB",
        service.peak_rss_mib(),
        service.rss_mib()
    );
}

/// A `omero.user.created` event as JSON; `tag` keeps runs apart.
fn user_created(tag: &str, i: usize) -> serde_json::Value {
    serde_json::json!({
        "specversion": "1.0", "id": format!("{tag}-{i}"), "source": "omero://bench",
        "type": "omero.user.created", "time": "2026-11-23T09:00:00Z",
        "data": {"user": {"id": 1000 + i, "name": format!("u{i}"), "email": format!("u{i}@example.org")}}
    })
}

/// Events/s of `Store::ingest` with `batch` events per transaction.
fn store_rate(path: &Path, batch: usize, count: usize) -> f64 {
    let mut store = Store::open(path).unwrap();
    let events: Vec<Event> = (0..count)
        .map(|i| event::from_json(user_created("raw", i), Utc::now()).unwrap())
        .collect();
    let start = Instant::now();
    for chunk in events.chunks(batch) {
        store.ingest(chunk, Utc::now()).unwrap();
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// A running `herald serve`, killed when dropped.
struct Service {
    child: Child,
    port: u16,
    state: PathBuf,
    agent: ureq::Agent,
}

impl Service {
    /// Start it in `dir` with `directory`; with `smtp` mail goes to that port, without it
    /// mail stays queued.
    fn start(directory: &Path, dir: &Path, smtp: Option<u16>) -> Service {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("ingest.token"), TOKEN).unwrap();
        let mail = match smtp {
            Some(port) => format!(
                "{{from: omero@example.org, transport: smtp, smtp: {{host: 127.0.0.1, port: {port}, max_connections: 4}}}}"
            ),
            None => "{from: \"\"}".to_owned(),
        };
        let port = free_port();
        let config = format!(
            "state_dir: var\nmail: {mail}\ndirectory: {{path: {}}}\nrules:\n  \
             - {{name: new-user, module: builtin:new-user, on: [omero.user.created]}}\n\
             http:\n  listen: 127.0.0.1:{port}\n  tokens:\n    \
             - {{name: bench, scope: ingest, token_file: ingest.token}}\n",
            directory.display()
        );
        std::fs::write(dir.join("herald.yaml"), config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("--config")
            .arg(dir.join("herald.yaml"))
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start herald serve");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let service = Service {
            child,
            port,
            state: dir.join("var/herald.db"),
            agent,
        };
        service.wait_healthy();
        service
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        let healthy = || self.agent.get(&url).call().is_ok_and(|r| r.status() == 200);
        while !healthy() {
            assert!(Instant::now() < deadline, "herald serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// POST `count` events in requests of `per_request` from `CLIENTS` threads; events/s.
    fn post_all(&self, count: usize, per_request: usize) -> f64 {
        let requests = count / per_request;
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..CLIENTS {
                let next = next.clone();
                scope.spawn(move || {
                    loop {
                        let request = next.fetch_add(1, Ordering::Relaxed);
                        if request >= requests {
                            break;
                        }
                        let first = request * per_request;
                        self.post(first..first + per_request, "rate");
                    }
                });
            }
        });
        count as f64 / start.elapsed().as_secs_f64()
    }

    /// POST the events numbered `range` (one event, or a batch) and insist on 202.
    fn post(&self, range: std::ops::Range<usize>, tag: &str) {
        let (media, body) = match range.len() {
            1 => (
                "application/cloudevents+json",
                user_created(tag, range.start).to_string(),
            ),
            _ => {
                let events: Vec<_> = range.map(|i| user_created(tag, i)).collect();
                (
                    "application/cloudevents-batch+json",
                    serde_json::Value::from(events).to_string(),
                )
            }
        };
        let status = self
            .agent
            .post(format!("http://127.0.0.1:{}/v1/events", self.port))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Content-Type", media)
            .send(body)
            .expect("herald serve answered")
            .status();
        assert_eq!(status, 202);
    }

    /// Post `count` events at `rate` per second; p50 and p99 of accepted → sent (ms), and the mail count.
    fn latency(&self, count: usize, rate: u64) -> (f64, f64, usize) {
        let tick = Duration::from_micros(1_000_000 / rate);
        let start = Instant::now();
        let mut accepted = HashMap::new();
        for i in 0..count {
            let due = start + tick * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            self.post(i..i + 1, "lat");
            accepted.insert(format!("lat-{i}"), Utc::now());
        }
        let sent = self.wait_sent(count);
        let mut latencies: Vec<f64> = sent
            .iter()
            .map(|(id, at)| (*at - accepted[id]).num_microseconds().unwrap() as f64 / 1e3)
            .collect();
        latencies.sort_by(f64::total_cmp);
        let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
        let rows = self.count("SELECT count(*) FROM outbox WHERE state = 'sent'");
        self.report_failed_runs();
        (pct(50), pct(99), rows)
    }

    /// Once every event's mail is sent: each event id with the time its last mail was accepted.
    fn wait_sent(&self, events: usize) -> Vec<(String, DateTime<Utc>)> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let queued = self.count("SELECT count(*) FROM outbox WHERE state != 'sent'");
            let done = self.count("SELECT count(*) FROM events WHERE state = 'done'");
            if queued == 0 && done == events {
                break;
            }
            assert!(Instant::now() < deadline, "mail was not all sent in time");
            std::thread::sleep(Duration::from_millis(200));
        }
        let conn = rusqlite::Connection::open(&self.state).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT e.id, max(a.at) FROM attempts a JOIN outbox o ON o.id = a.outbox_id \
                 JOIN events e ON e.seq = o.event_seq WHERE a.outcome = 'sent' GROUP BY e.id",
            )
            .unwrap();
        stmt.query_map([], |row| {
            let at: String = row.get(1)?;
            Ok((row.get(0)?, at.parse::<DateTime<Utc>>().unwrap()))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    /// Rule runs that failed (each one an event that queued no mail), with their reasons.
    fn report_failed_runs(&self) {
        let conn = rusqlite::Connection::open(&self.state).unwrap();
        let mut stmt = conn
            .prepare("SELECT code, count(*) FROM rule_runs WHERE state = 'failed' GROUP BY code")
            .unwrap();
        let failed: Vec<(String, i64)> = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (code, count) in failed {
            println!("  {count} rule run(s) failed: {code}");
        }
    }

    fn count(&self, sql: &str) -> usize {
        let conn = rusqlite::Connection::open(&self.state).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as usize
    }

    /// VmHWM of the service, in MiB.
    fn peak_rss_mib(&self) -> u64 {
        self.status_mib("VmHWM:")
    }

    /// VmRSS of the service now, in MiB.
    fn rss_mib(&self) -> u64 {
        self.status_mib("VmRSS:")
    }

    fn status_mib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        kib / 1024
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
