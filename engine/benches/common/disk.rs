//! The disk's own bound for durable work: one-row SQLite commits per second with the store's pragmas.

use std::time::Instant;

/// One-row durable SQLite commits per second (WAL, synchronous=FULL, like the store), in a
/// fresh temp dir on the same file system as the benchmarks' state directories.
pub fn commits_per_second() -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("fsync.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)", [])
        .unwrap();
    // The store's WAL is mostly overwritten in place once checkpoints restart it, which syncs
    // faster than a growing file: checkpoint often and warm up until the WAL has wrapped.
    conn.pragma_update(None, "wal_autocheckpoint", 100).unwrap();
    let row = vec![0u8; 1024];
    for _ in 0..150 {
        conn.execute("INSERT INTO t (v) VALUES (?1)", [&row])
            .unwrap();
    }
    let commits = 300;
    let start = Instant::now();
    for _ in 0..commits {
        conn.execute("INSERT INTO t (v) VALUES (?1)", [&row])
            .unwrap();
    }
    commits as f64 / start.elapsed().as_secs_f64()
}

/// The most messages/s the relay can accept over `sessions` sessions when each session waits
/// for one durable commit per message (before its `250`), if that commit were its only cost: each message
/// takes the direct exchange's own time (`sessions / direct`) plus one commit (`1 / commits`),
/// in series, and at best every session shares each commit. `commits` is [`commits_per_second`].
#[allow(dead_code)] // each bench target compiles this file; not all use both bounds
pub fn bound(sessions: usize, commits: f64, direct: f64) -> f64 {
    let sessions = sessions as f64;
    sessions / (sessions / direct + 1.0 / commits)
}

/// The same for delivery, where each session's commit overlaps its next exchange (the next
/// message is written while the previous outcome commits; only its final `.` waits): a message
/// costs the longer of the two, so the bound is `min(direct, sessions × commits)`.
#[allow(dead_code)] // each bench target compiles this file; not all use both bounds
pub fn overlapped_bound(sessions: usize, commits: f64, direct: f64) -> f64 {
    direct.min(sessions as f64 * commits)
}
