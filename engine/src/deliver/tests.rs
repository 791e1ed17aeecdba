//! Delivery loop tests with a stub transport: outcome-before-next-send, one open on a refused
//! login, stopping, and taking over the rows of a dead worker. No server needed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;

use super::*;
use crate::evaluate::{Resolved, RuleOutcome};
use crate::mail::{Mail, MailKey};
use crate::store::HealthPolicy;

/// What the stub saw.
#[derive(Default)]
struct Seen {
    opens: usize,
    sent: Vec<String>,
    in_flight: usize,
    max_in_flight: usize,
    /// Sends that began while an earlier send of the same session had no recorded attempt.
    unrecorded: Vec<String>,
    /// Sessions closed (QUIT).
    closed: usize,
    /// Kept sessions answer as if the server had closed them while idle.
    idle_dead: bool,
    /// The next send queues this event (to this many recipients) before it finishes, as
    /// evaluation queues rows while a run goes on.
    queue_later: Option<(&'static str, usize)>,
}

/// A transport that accepts everything after a short pause, unless told otherwise.
struct Stub {
    db: PathBuf,
    seen: Arc<Mutex<Seen>>,
    sessions: usize,
    open_error: Option<Report>,
    /// Set this flag once this many messages were accepted.
    stop_after: Option<(usize, &'static AtomicBool)>,
    /// A send to this recipient never finishes.
    hang_on: Option<String>,
}

struct StubSession {
    db: PathBuf,
    seen: Arc<Mutex<Seen>>,
    stop_after: Option<(usize, &'static AtomicBool)>,
    hang_on: Option<String>,
    mine: Vec<String>,
}

impl Transport for Stub {
    type Session = StubSession;

    fn max_sessions(&self) -> usize {
        self.sessions
    }

    async fn open(&self) -> Result<StubSession, Report> {
        self.seen.lock().unwrap().opens += 1;
        if let Some(report) = &self.open_error {
            return Err(report.clone());
        }
        Ok(StubSession {
            db: self.db.clone(),
            seen: self.seen.clone(),
            stop_after: self.stop_after,
            hang_on: self.hang_on.clone(),
            mine: Vec::new(),
        })
    }
}

impl Session for StubSession {
    async fn send(&mut self, key: &MailKey, _job: &Job) -> Result<Report, Report> {
        self.check_recorded(&key.recipient);
        {
            let mut seen = self.seen.lock().unwrap();
            seen.in_flight += 1;
            seen.max_in_flight = seen.max_in_flight.max(seen.in_flight);
        }
        if self.hang_on.as_deref() == Some(key.recipient.as_str()) {
            if let Some((_, flag)) = self.stop_after {
                flag.store(true, Ordering::SeqCst);
            }
            std::future::pending::<()>().await;
        }
        let late = self.seen.lock().unwrap().queue_later.take();
        if let Some((id, n)) = late {
            // Long enough for every other session to have asked for a row and been told none.
            tokio::time::sleep(Duration::from_millis(100)).await;
            queue_event(&mut Store::open(&self.db).unwrap(), id, n);
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
        let mut seen = self.seen.lock().unwrap();
        seen.in_flight -= 1;
        seen.sent.push(key.recipient.clone());
        if let Some((after, flag)) = self.stop_after
            && seen.sent.len() >= after
        {
            flag.store(true, Ordering::SeqCst);
        }
        self.mine.push(key.recipient.clone());
        Ok(Report::sent(250, "ok".into()))
    }

    async fn alive(&mut self) -> bool {
        !self.seen.lock().unwrap().idle_dead
    }

    async fn close(self) {
        self.seen.lock().unwrap().closed += 1;
    }
}

impl StubSession {
    /// Every message this session sent before must have its attempt on disk by now, and
    /// the one it sends now must be marked as being sent.
    fn check_recorded(&self, next: &str) {
        let conn = rusqlite::Connection::open(&self.db).unwrap();
        let sending: i64 = conn
            .query_row(
                "SELECT sending FROM outbox WHERE recipient = ?1",
                [next],
                |r| r.get(0),
            )
            .unwrap();
        if sending != 1 {
            let mut seen = self.seen.lock().unwrap();
            seen.unrecorded.push(format!(
                "{next} was sent before it was marked as being sent"
            ));
        }
        for earlier in &self.mine {
            let recorded: i64 = conn
                .query_row(
                    "SELECT count(*) FROM attempts a JOIN outbox o ON o.id = a.outbox_id
                     WHERE o.recipient = ?1",
                    [earlier],
                    |r| r.get(0),
                )
                .unwrap();
            if recorded == 0 {
                let mut seen = self.seen.lock().unwrap();
                seen.unrecorded
                    .push(format!("{next} began before {earlier} was recorded"));
            }
        }
    }
}

fn stub(db: PathBuf, sessions: usize) -> Stub {
    Stub {
        db,
        seen: Arc::default(),
        sessions,
        open_error: None,
        stop_after: None,
        hang_on: None,
    }
}

fn flag() -> &'static AtomicBool {
    Box::leak(Box::new(AtomicBool::new(false)))
}

/// A store with one event queued to `n` recipients `u<i>@example.org`.
fn store_with(n: usize) -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    let mut store = Store::open(&path).unwrap();
    queue_event(&mut store, "e1", n);
    (dir, path, store)
}

/// Journal event `id` and queue it to `n` recipients `<id>-u<i>@example.org`.
fn queue_event(store: &mut Store, id: &str, n: usize) {
    let text =
        format!(r#"{{"id":"{id}","source":"s","type":"omero.server.up","data":{{"server":"x"}}}}"#);
    let event = crate::event::from_str(&text, Utc::now()).unwrap();
    store
        .ingest(std::slice::from_ref(&event), Utc::now())
        .unwrap();
    let pending = store.pending(1).unwrap().remove(0);
    let mails = (0..n)
        .map(|i| Mail {
            recipient: recipient(id, i),
            to: vec![recipient(id, i)],
            cc: vec![],
            reply_to: vec![],
            subject: "s".into(),
            text: "t\n".into(),
            html: None,
            headers: vec![],
        })
        .collect();
    let outcome = RuleOutcome {
        rule: "r".into(),
        result: Ok(Resolved {
            mails,
            skipped: vec![],
        }),
        logs: vec![],
        kv_writes: vec![],
        fuel_used: 1,
        elapsed: Duration::ZERO,
    };
    let health = HealthPolicy {
        quarantine_after: 0,
        notify: &[],
    };
    store
        .commit_evaluation(pending.seq, &pending.event, &[outcome], &health, Utc::now())
        .unwrap();
}

/// The first event's recipients are `u<i>@example.org`, as the older tests expect.
fn recipient(id: &str, i: usize) -> String {
    match id {
        "e1" => format!("u{i}@example.org"),
        _ => format!("{id}-u{i}@example.org"),
    }
}

fn deliverer(stub: Stub, stop: &'static AtomicBool, grace: Duration) -> Deliverer<Stub> {
    Deliverer::new(
        stub,
        "omero@example.org".parse().unwrap(),
        retry::Policy::default(),
        Duration::from_secs(60),
    )
    .unwrap()
    .with_stop(stop, grace)
}

fn count(path: &PathBuf, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn each_outcome_is_committed_before_its_session_sends_again() {
    let (_dir, path, mut store) = store_with(24);
    let stub = stub(path.clone(), 3);
    let seen = stub.seen.clone();
    let summary = deliverer(stub, flag(), Duration::from_secs(5))
        .deliver_due(&mut store, Utc::now())
        .unwrap();
    assert_eq!((summary.sent, summary.failed), (24, 0));
    let seen = seen.lock().unwrap();
    assert!(seen.unrecorded.is_empty(), "{:?}", seen.unrecorded);
    assert_eq!(seen.sent.len(), 24, "each row sent once");
    assert!(
        seen.max_in_flight <= 3,
        "at most max_sessions in flight: {}",
        seen.max_in_flight
    );
    assert!(seen.opens <= 3, "{} sessions opened", seen.opens);
    assert_eq!(
        count(&path, "SELECT count(*) FROM outbox WHERE state = 'sent'"),
        24
    );
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM outbox WHERE lease_until IS NOT NULL"
        ),
        0
    );
}

#[test]
fn a_refused_login_opens_once_keeps_every_row_and_counts_none_as_dead() {
    let (_dir, path, mut store) = store_with(5);
    let mut stub = stub(path.clone(), 4);
    stub.open_error = Some(Report {
        class: Class::Permanent,
        code: Some(535),
        text: "AUTH: the server refused the login".into(),
        before_message: true,
    });
    let seen = stub.seen.clone();
    let summary = deliverer(stub, flag(), Duration::from_secs(5))
        .deliver_due(&mut store, Utc::now())
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().opens,
        1,
        "one connection, not one per row"
    );
    assert_eq!(
        (
            summary.sent,
            summary.failed,
            summary.permanent,
            summary.config,
            summary.transient
        ),
        (0, 5, 0, 1, 4),
        "{summary:?}"
    );
    assert_eq!(
        count(&path, "SELECT count(*) FROM outbox WHERE state = 'queued'"),
        5
    );
}

#[test]
fn a_stop_takes_no_new_rows_and_records_the_ones_in_flight() {
    let (_dir, path, mut store) = store_with(10);
    let stop = flag();
    let mut stub = stub(path.clone(), 1);
    stub.stop_after = Some((3, stop));
    let d = deliverer(stub, stop, Duration::from_secs(5));
    let summary = d.deliver_until_empty(&mut store, Utc::now()).unwrap();
    assert!(d.stopping());
    assert_eq!(summary.sent, 3, "{summary:?}");
    assert_eq!(
        count(&path, "SELECT count(*) FROM outbox WHERE state = 'sent'"),
        3
    );
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM outbox WHERE lease_until IS NOT NULL"
        ),
        0
    );
    assert_eq!(count(&path, "SELECT count(*) FROM attempts"), 3);
}

#[test]
fn a_send_that_outlives_the_grace_is_abandoned_as_ambiguous_and_released() {
    let (_dir, path, mut store) = store_with(3);
    let stop = flag();
    let mut stub = stub(path.clone(), 1);
    stub.stop_after = Some((usize::MAX, stop));
    stub.hang_on = Some("u0@example.org".into());
    let summary = deliverer(stub, stop, Duration::from_millis(200))
        .deliver_due(&mut store, Utc::now())
        .unwrap();
    assert_eq!((summary.sent, summary.ambiguous), (0, 1), "{summary:?}");
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM outbox WHERE ambiguous = 1 AND state = 'queued' AND lease_until IS NULL"
        ),
        1
    );
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM attempts WHERE detail LIKE '%asked to stop%'"
        ),
        1
    );
}

/// Lease both rows to a process that has exited; `sending` says whether it was sending them.
fn leased_to_a_dead_process(path: &std::path::Path, sending: bool) {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let dead = crate::store::Owner {
        pid,
        ..crate::store::Owner::this().clone()
    };
    let far = (Utc::now() + chrono::Duration::hours(1)).timestamp_millis();
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute(
        "UPDATE outbox SET lease_until = ?1, lease_owner = ?2, sending = ?3",
        rusqlite::params![far, dead.to_string(), sending],
    )
    .unwrap();
}

/// Deliver two rows a dead process held (`sending` or not): (sent, interrupted, ambiguous).
fn taken_over_from_a_dead_process(sending: bool) -> (usize, i64, i64) {
    let (_dir, path, mut store) = store_with(2);
    leased_to_a_dead_process(&path, sending);
    let stub = stub(path.clone(), 1);
    let summary = deliverer(stub, flag(), Duration::from_secs(5))
        .deliver_until_empty(&mut store, Utc::now())
        .unwrap();
    let interrupted = "SELECT count(*) FROM attempts WHERE outcome = 'interrupted'";
    (
        summary.sent,
        count(&path, interrupted),
        count(&path, "SELECT sum(ambiguous) FROM outbox"),
    )
}

#[test]
fn rows_held_by_a_dead_process_are_taken_over_at_once() {
    assert_eq!(taken_over_from_a_dead_process(true), (2, 2, 2));
}

#[test]
fn rows_a_dead_process_only_held_are_taken_over_without_a_doubt() {
    // A row that was held but never being sent cannot have gone out.
    assert_eq!(taken_over_from_a_dead_process(false), (2, 0, 0));
}

#[test]
fn rows_held_by_a_live_process_are_left_alone() {
    let (_dir, path, mut store) = store_with(1);
    let live = crate::store::Owner {
        host: "another-host".into(),
        pid: 1,
        start: 1,
    };
    let soon = (Utc::now() + chrono::Duration::milliseconds(600)).timestamp_millis();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE outbox SET lease_until = ?1, lease_owner = ?2",
        rusqlite::params![soon, live.to_string()],
    )
    .unwrap();
    let d = deliverer(stub(path.clone(), 1), flag(), Duration::from_secs(5));
    assert_eq!(d.deliver_due(&mut store, Utc::now()).unwrap().sent, 0);
    // --until-empty waits for the holder instead of calling the queue empty; here the
    // lease runs out and the row is sent (as possibly delivered before).
    let summary = d.deliver_until_empty(&mut store, Utc::now()).unwrap();
    assert_eq!(summary.sent, 1, "{summary:?}");
}

#[test]
fn sessions_kept_between_rounds_are_reused_and_a_dead_one_is_replaced() {
    let (_dir, path, mut store) = store_with(4);
    let stub = stub(path.clone(), 2);
    let seen = stub.seen.clone();
    let deliverer =
        deliverer(stub, flag(), Duration::from_secs(5)).keep_sessions(Duration::from_secs(30));
    assert_eq!(
        deliverer.deliver_due(&mut store, Utc::now()).unwrap().sent,
        4
    );
    let opened = seen.lock().unwrap().opens;
    assert!(opened >= 1);
    assert_eq!(seen.lock().unwrap().closed, 0, "kept, not closed");

    queue_event(&mut store, "e2", 4);
    assert_eq!(
        deliverer.deliver_due(&mut store, Utc::now()).unwrap().sent,
        4
    );
    assert_eq!(
        seen.lock().unwrap().opens,
        opened,
        "the second round opened nothing"
    );

    // The server closed the kept sessions while they were idle: they are replaced, and no
    // row fails for it.
    seen.lock().unwrap().idle_dead = true;
    queue_event(&mut store, "e3", 4);
    let third = deliverer.deliver_due(&mut store, Utc::now()).unwrap();
    assert_eq!((third.sent, third.failed), (4, 0));
    assert!(seen.lock().unwrap().opens > opened);
    assert_eq!(
        count(
            &path,
            "SELECT count(*) FROM attempts WHERE outcome != 'sent'"
        ),
        0
    );

    let closed_before = seen.lock().unwrap().closed;
    deliverer.close_idle();
    assert!(
        seen.lock().unwrap().closed > closed_before,
        "close_idle says QUIT"
    );
    assert_eq!(seen.lock().unwrap().sent.len(), 12);
}

#[test]
fn without_keep_sessions_each_round_closes_its_sessions() {
    let (_dir, path, mut store) = store_with(2);
    let stub = stub(path, 1);
    let seen = stub.seen.clone();
    let deliverer = deliverer(stub, flag(), Duration::from_secs(5));
    deliverer.deliver_due(&mut store, Utc::now()).unwrap();
    queue_event(&mut store, "e2", 2);
    deliverer.deliver_due(&mut store, Utc::now()).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!((seen.opens, seen.closed), (2, 2));
}

#[test]
fn a_run_ends_once_drained_and_rows_queued_meanwhile_go_to_the_next_run() {
    let (_dir, path, mut store) = store_with(1);
    let stub = stub(path.clone(), 2);
    // The second session finds nothing due (the run is drained); then the first session's send
    // queues three rows, as evaluation does while a run goes on.
    stub.seen.lock().unwrap().queue_later = Some(("late", 3));
    let deliverer = deliverer(stub, flag(), Duration::from_secs(5));
    let first = deliverer.deliver_due(&mut store, Utc::now()).unwrap();
    assert_eq!(
        first.sent + first.failed,
        1,
        "the drained run took no late row"
    );
    let second = deliverer.deliver_due(&mut store, Utc::now()).unwrap();
    assert_eq!(second.sent, 3, "the next run sends them");
    assert_eq!(
        count(&path, "SELECT count(*) FROM outbox WHERE state = 'sent'"),
        4
    );
}
