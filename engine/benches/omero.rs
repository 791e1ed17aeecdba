//! Benchmark: the OMERO connector's catch-up rates next to the raw reads they sit on.
//!
//! `cargo bench --bench omero` prints (1) the eventlog source's catch-up rate: 100,000 `eventlog`
//! rows (Experimenter INSERTs) turned into journaled events, next to a plain `SELECT` of the same
//! rows, on a PostgreSQL started in a temp dir (the tests' harness: `make test-deps`), and (2) the
//! Blitz-0.log source's lines/s on a 100 MB log, next to reading the file.

#[path = "../../tests/e2e/omero_pg.rs"]
#[allow(dead_code)]
mod omero_pg;

/// What the tests' PostgreSQL harness needs from the e2e support module.
mod support {
    use std::path::{Path, PathBuf};

    pub fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_owned()
    }

    pub fn free_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }
}

use std::io::{BufWriter, Write};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::config::{DbConnection, EventlogConfig, PasswordSource, Start};
use herald::sources::Feed;
use herald::sources::omero::blitz::{BlitzLines, Logins};
use herald::sources::omero::eventlog::{Eventlog, NAME};
use herald::sources::omero::logfile::Lines;
use herald::sources::omero::tail::{self, Position};
use herald::sources::readiness::Readiness;
use herald::store::Store;
use herald::store::writer::Writer;

/// `eventlog` rows (`HERALD_BENCH_ROWS` overrides, e.g. for a quick functional run).
fn rows() -> i64 {
    env_or("HERALD_BENCH_ROWS", 100_000)
}

/// Log size in bytes (`HERALD_BENCH_LOG_MB` overrides).
fn log_bytes() -> u64 {
    env_or("HERALD_BENCH_LOG_MB", 100) << 20
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    log_rate(dir.path());
    eventlog_rate(dir.path());
}

/// Blitz-0.log: following and parsing vs reading the bytes.
fn log_rate(dir: &std::path::Path) {
    let path = dir.join("Blitz-0.log");
    let lines = write_log(&path);
    let start = Instant::now();
    let bytes = std::fs::read(&path).unwrap().len();
    let read = start.elapsed();
    let start = Instant::now();
    let mut position = Position {
        inode: tail::at_end(&path).unwrap().inode,
        offset: 0,
    };
    let mut parser = BlitzLines {
        server: "omero".into(),
        logins: Logins::default(),
    };
    let (mut seen, mut events) = (0u64, 0u64);
    loop {
        let taken = tail::read(&path, &mut position).unwrap();
        if taken.lines.is_empty() {
            break;
        }
        seen += taken.lines.len() as u64;
        events += taken
            .lines
            .iter()
            .filter(|line| parser.event(line).is_some())
            .count() as u64;
    }
    let followed = start.elapsed();
    assert_eq!(seen, lines);
    println!(
        "Blitz-0.log, {} MB, {lines} lines ({events} events)",
        bytes >> 20
    );
    println!(
        "  read the file                  {:>12.0} lines/s",
        lines as f64 / read.as_secs_f64()
    );
    println!(
        "  omero-log: follow and parse    {:>12.0} lines/s",
        lines as f64 / followed.as_secs_f64()
    );
}

/// A 100 MB log of ServiceHandler lines with a failed login every 100 lines.
fn write_log(path: &std::path::Path) -> u64 {
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    let (mut written, mut lines) = (0u64, 0u64);
    while written < log_bytes() {
        let line = if lines % 100 == 0 {
            "2025-08-29 10:14:06,016 WARN  [  ome.security.auth.LoginAttemptListener] (l.Server-2) 3 failed logins for root. Throttling for 3000\n"
        } else {
            "2025-08-29 10:14:06,008 INFO  [        ome.services.util.ServiceHandler] (l.Server-2)  Executor.doWork -- ome.services.sessions.SessionManagerImpl.executeCheckPasswordRO[alice]\n"
        };
        out.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
        lines += 1;
    }
    out.flush().unwrap();
    lines
}

/// eventlog: the source's catch-up from `start: beginning` vs one plain SELECT of the rows.
fn eventlog_rate(dir: &std::path::Path) {
    let pg = omero_pg::Postgres::start();
    let db = pg.omero();
    let rows = rows();
    db.batch(&format!(
        "INSERT INTO eventlog (id, permissions, action, entitytype, entityid, event) \
         SELECT nextval('seq_eventlog'), -52, 'INSERT', 'ome.model.meta.Experimenter', 0, 0 \
         FROM generate_series(1, {rows})"
    ));
    let start = Instant::now();
    let selected = db.one(
        "SELECT count(*) FROM (SELECT el.id, el.action, el.entitytype, el.entityid, e.time \
         FROM eventlog el LEFT JOIN event e ON e.id = el.event ORDER BY el.id) rows",
    );
    let select = start.elapsed();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store_path = dir.join("herald.db");
    let (writer, _thread) =
        Writer::spawn(Store::open(&store_path).unwrap(), |_| true, |_| {}).unwrap();
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let readiness = Readiness::default();
    let feed = Feed {
        writer,
        readiness: readiness.clone(),
        stop,
        stopping,
        runtime: runtime.handle().clone(),
    };
    // SAFETY: set before any other thread reads the environment.
    unsafe { std::env::set_var("HERALD_BENCH_DB_PASSWORD", omero_pg::HERALD_PASSWORD) };
    let source = Eventlog {
        config: EventlogConfig {
            db: DbConnection {
                url: pg.url(),
                password: Some(PasswordSource::Env("HERALD_BENCH_DB_PASSWORD".into())),
            },
            poll: Duration::from_millis(50),
            gap_grace: Duration::from_secs(300),
            start: Start::Beginning,
            batch: 1000,
            timezone: None,
        },
        feed: feed.clone(),
        store: Arc::new(Mutex::new(Store::open(&store_path).unwrap())),
        ready: readiness.part(NAME),
        directory: None,
    };
    let start = Instant::now();
    runtime.spawn(source.run());
    let reader = Store::open(&store_path).unwrap();
    let end = db.one("SELECT max(id) FROM eventlog");
    loop {
        let cursor = reader.source_cursor(NAME).unwrap().unwrap_or_default();
        let high = serde_json::from_str::<serde_json::Value>(&cursor)
            .ok()
            .and_then(|c| c["high"].as_i64())
            .unwrap_or(0);
        if high >= end {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let caught_up = start.elapsed();
    let _ = stopping_tx.send(true);
    println!("eventlog, {selected} rows (Experimenter INSERTs)");
    println!(
        "  plain SELECT of the rows       {:>12.0} rows/s",
        rows as f64 / select.as_secs_f64()
    );
    println!(
        "  omero-eventlog catch-up        {:>12.0} rows/s (mapped, journaled, cursor saved)",
        rows as f64 / caught_up.as_secs_f64()
    );
}
