//! Store: the SQLite journal of events, the outbox, rule runs and the rules' key-value data.

mod error;
mod export;
mod flush;
mod happening;
mod health;
mod omero;
mod outbox;
pub(crate) mod owner;
pub mod relay;
mod schedule;
mod schema;
pub mod writer;

pub use error::{Refusal, Result, StoreError};
pub use health::{Quarantined, RuleHealth};
pub use omero::SourceState;
pub use outbox::{AttemptLog, Claimed, Filter, Held, ListState, Listed, Round};
pub use owner::Owner;

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use error::During;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::evaluate::{KvRead, KvWrite, RuleOutcome, kv::KvEntry};
use crate::event::{self, Event};
use crate::mail::{Mail, MailKey};

/// The SQLite store (WAL mode). The journal and every other commit sync before they return;
/// evaluation results and delivery rounds are synced in groups by the flusher ([`Store::written`]).
pub struct Store {
    /// Every commit on this connection syncs (`synchronous=FULL`): nothing ever changes that.
    conn: Connection,
    path: PathBuf,
    /// The rules' key-value reader, opened at its first use and kept (opening a connection
    /// cost each evaluation pass about a third of a millisecond).
    kv: OnceCell<Arc<SqliteKv>>,
    /// The connection for written commits (`synchronous=NORMAL`), opened at the first one.
    written: Option<Connection>,
    /// Syncs the written commits of every store on this file (last: it syncs once more after
    /// the connections close).
    flusher: Arc<flush::Flusher>,
}

/// Sync the written commits of every store in the process now: `herald serve` does it before
/// it exits, since a stage that outlived the shutdown grace never drops its store.
pub fn sync_written_commits() {
    flush::sync_all();
}

/// What ingest did with one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingested {
    /// Journaled now, under this sequence number.
    New(i64),
    /// This (source, id) was journaled before; nothing was stored.
    Duplicate(i64),
}

/// An event waiting for evaluation.
pub struct Pending {
    pub seq: i64,
    pub event: Event,
}

/// What committing one evaluation wrote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Committed {
    pub queued: usize,
    /// Rows that already existed (an evaluation repeated after a crash).
    pub already_queued: usize,
    /// Rules this evaluation pushed into quarantine (their admins are told by mail).
    pub quarantined: Vec<Quarantined>,
    /// Another process committed this event first; nothing was written.
    pub already_evaluated: bool,
}

/// How evaluation outcomes feed rule health.
#[derive(Clone, Copy, Debug)]
pub struct HealthPolicy<'a> {
    /// Quarantine a rule after this many failures in a row (0: never).
    pub quarantine_after: u32,
    /// Who is told, once, when a rule is quarantined (the admins' addresses).
    pub notify: &'a [String],
}

/// One queued message, with what delivery needs to render it.
#[derive(Clone, Debug)]
pub struct OutboxRow {
    pub id: i64,
    pub key: MailKey,
    pub event_time: DateTime<Utc>,
    pub mail: Mail,
    pub attempts: i64,
    /// When the row was queued, or last retried by hand: the message's age counts from here.
    pub queued_at: DateTime<Utc>,
    /// The lease this worker holds (Unix ms), the token that lets it record the outcome.
    pub lease: Option<i64>,
}

impl Store {
    /// Open (creating the file and its folder if needed) and migrate.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: dir.to_owned(),
                source,
            })?;
        }
        let conn = connect(path)?;
        schema::migrate(&conn).during(|| format!("cannot migrate {}", path.display()))?;
        // The flusher syncs the WAL that SQLite names after the file it opened.
        let opened = conn
            .path()
            .filter(|opened| !opened.is_empty())
            .map_or_else(|| path.to_owned(), PathBuf::from);
        Ok(Store {
            flusher: flush::Flusher::of(&opened),
            conn,
            path: path.to_owned(),
            kv: OnceCell::new(),
            written: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Journal events in one transaction; duplicates of (source, id) are
    /// acknowledged without being stored again. Durable when this returns.
    pub fn ingest(&mut self, events: &[Event], now: DateTime<Utc>) -> Result<Vec<Ingested>> {
        self.ingest_all(events, &[], now)
    }

    /// [`Store::ingest`] for events held anywhere (the writer's requests), without copying them.
    /// An event whose `settled` entry is true needs no evaluation (no rule in force wants it):
    /// it is journaled as evaluated, so evaluation spends no commit on it.
    pub fn ingest_all<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a Event>,
        settled: &[bool],
        now: DateTime<Utc>,
    ) -> Result<Vec<Ingested>> {
        let events: Vec<&Event> = events.into_iter().collect();
        self.immediate("cannot commit the journal", |tx| {
            relay::journal(tx, &events, settled, &[], now)
        })
    }

    /// Run `work` in one write transaction and commit it (durable when this returns); `what`
    /// says which commit failed. Nothing of `work` is stored when it fails.
    pub(crate) fn immediate<T>(
        &mut self,
        what: &str,
        work: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        self.refuse_after_a_failed_sync()?;
        let began = std::time::Instant::now();
        let changes = self.conn.total_changes();
        let done = commit(&mut self.conn, what, work)?;
        // Its sync covered every frame written before it, by any store on the file. A commit
        // that changed nothing wrote nothing, and SQLite syncs nothing for it.
        if self.conn.total_changes() != changes {
            self.flusher.synced(began);
        }
        Ok(done)
    }

    /// After a failed sync of the WAL nothing is known to be on disk since the last good one:
    /// commit nothing more, so no client is told something is stored that may not be.
    fn refuse_after_a_failed_sync(&self) -> Result<()> {
        match self.flusher.failure() {
            Some(error) => Err(StoreError::SyncFailed {
                wal: self.flusher.wal().to_owned(),
                error,
            }),
            None => Ok(()),
        }
    }

    /// Run `work` in one write transaction and commit it without waiting for the disk: when
    /// this returns the commit survives the process dying, and within
    /// [`flush::FLUSH_WITHIN`] the flusher has synced it, so it survives a power loss too.
    ///
    /// Only for what a lost commit merely repeats: evaluation results (the event is journaled
    /// durably and is evaluated again) and the delivery rounds of a run on its own connection
    /// (a lost outcome sends its message again; Postfix does not sync its own "delivered"
    /// marks either). Never for anything a client was told is accepted. `herald serve`'s
    /// writer keeps its rounds synced: there a written round pushed its pages into the next
    /// journal commit, which an SMTP client at one session waits for (the relay's accept rate
    /// fell by about a fifth).
    pub(crate) fn written<T>(
        &mut self,
        what: &str,
        work: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        self.refuse_after_a_failed_sync()?;
        let conn = match &mut self.written {
            Some(conn) => conn,
            None => {
                let conn = written_connection(&self.path)?;
                self.flusher
                    .start()
                    .map_err(|source| StoreError::Thread { source })?;
                self.written.insert(conn)
            }
        };
        let done = commit(conn, what, work)?;
        self.flusher.written();
        Ok(done)
    }

    /// Whether a written commit still waits for the flusher's sync.
    pub fn unsynced(&self) -> bool {
        self.flusher.unsynced()
    }

    /// Events journaled but not evaluated yet, oldest first.
    pub fn pending(&self, limit: usize) -> Result<Vec<Pending>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, envelope, received_at FROM events WHERE state = 'pending' ORDER BY seq LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        rows.map(|row| {
            let (seq, envelope, received) = row?;
            Ok(Pending {
                seq,
                event: decode_event(&envelope, &received)?,
            })
        })
        .collect()
    }

    /// Write the evaluation's outbox rows and rule runs, apply its kv
    /// writes, and mark the event done, all in one transaction.
    pub fn commit_evaluation(
        &mut self,
        seq: i64,
        event: &Event,
        outcomes: &[RuleOutcome],
        health: &HealthPolicy<'_>,
        now: DateTime<Utc>,
    ) -> Result<Committed> {
        let mut committed = self.commit_evaluations(&[(seq, event, outcomes)], health, now)?;
        Ok(committed.pop().unwrap_or_default())
    }

    /// [`Store::commit_evaluation`] for several events in one written transaction (synced by
    /// the flusher, see [`Store::written`]): each event's rows are written whole or not at
    /// all, since they all commit together.
    pub fn commit_evaluations(
        &mut self,
        evaluations: &[(i64, &Event, &[RuleOutcome])],
        health: &HealthPolicy<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Committed>> {
        self.written("cannot commit the evaluation", |tx| {
            evaluations
                .iter()
                .map(|&(seq, event, outcomes)| {
                    write_evaluation(tx, seq, event, outcomes, health, now)
                })
                .collect()
        })
    }

    /// Record a delivery attempt and, when it succeeded, mark the row sent.
    /// The row changes only while this worker's lease holds: a worker that
    /// outlived its lease (or a row cancelled meanwhile) leaves the row as it
    /// is, and only the attempt is logged. Returns whether the row changed.
    pub fn record_attempt(&mut self, attempt: &Attempt) -> Result<bool> {
        self.immediate("cannot record the attempt", |tx| {
            outbox::record(tx, attempt)
        })
    }

    /// Counts of outbox rows by state.
    pub fn outbox_counts(&self) -> Result<Vec<(String, i64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT state, count(*) FROM outbox GROUP BY state ORDER BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// True once the event journaled as `seq` has been evaluated (or does not exist).
    pub fn evaluated(&self, seq: i64) -> Result<bool> {
        let pending: Option<i64> = self
            .conn
            .query_row(
                "SELECT 1 FROM events WHERE seq = ?1 AND state = 'pending'",
                [seq],
                |r| r.get(0),
            )
            .optional()?;
        Ok(pending.is_none())
    }

    /// Counts of one event's outbox rows by state (queued, sent, dead…).
    pub fn event_outbox_counts(&self, seq: i64) -> Result<Vec<(String, i64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT state, count(*) FROM outbox WHERE event_seq = ?1 GROUP BY state ORDER BY state",
        )?;
        let rows = stmt.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// How many recipients of one event's successful rule runs were skipped
    /// because they have no valid email.
    pub fn no_email_count(&self, seq: i64) -> Result<usize> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT skipped FROM rule_runs WHERE event_seq = ?1 AND skipped IS NOT NULL",
        )?;
        let lists = stmt.query_map([seq], |r| r.get::<_, String>(0))?;
        let mut count = 0;
        for list in lists {
            let entries: Vec<serde_json::Value> = serde_json::from_str(&list?)?;
            count += entries.iter().filter(|e| e["kind"] == "no-email").count();
        }
        Ok(count)
    }

    /// The first failure recorded for one event's rule runs, as "rule: reason".
    pub fn first_failure(&self, seq: i64) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT rule || ': ' || reason FROM rule_runs WHERE event_seq = ?1 AND state = 'failed' ORDER BY rule LIMIT 1",
                [seq],
                |r| r.get(0),
            )
            .optional()
            .map_err(Into::into)
    }

    /// A reader for the rules' key-value data, on a connection of its own that the store keeps.
    pub fn kv_reader(&self) -> Result<Arc<dyn KvRead>> {
        if let Some(kv) = self.kv.get() {
            return Ok(kv.clone());
        }
        let kv = Arc::new(SqliteKv {
            conn: Mutex::new(connect(&self.path)?),
        });
        Ok(self.kv.get_or_init(|| kv).clone())
    }
}

/// One event's evaluation inside `tx`: its rule runs, health, outbox rows and kv writes,
/// and the event marked done (unless another process evaluated it first: its commit stands).
fn write_evaluation(
    tx: &Transaction<'_>,
    seq: i64,
    event: &Event,
    outcomes: &[RuleOutcome],
    health: &HealthPolicy<'_>,
    now: DateTime<Utc>,
) -> Result<Committed> {
    let claimed = tx.prepare_cached("UPDATE events SET state = 'done', evaluated_at = ?2 WHERE seq = ?1 AND state = 'pending'")?.execute(
        params![seq, now.to_rfc3339()],
    )?;
    if claimed == 0 {
        return Ok(Committed {
            already_evaluated: true,
            ..Committed::default()
        });
    }
    let mut committed = Committed {
        quarantined: health::record_outcomes(tx, outcomes, health.quarantine_after, now)?,
        ..Committed::default()
    };
    for quarantined in &committed.quarantined {
        for admin in health.notify {
            let mail = quarantine_notice(quarantined, event, admin);
            let key = format!("quarantine:{}", quarantined.rule);
            queue(tx, seq, event, &key, &mail, now)?;
        }
    }
    for outcome in outcomes {
        record_run(tx, seq, outcome, now)?;
        if let Ok(resolved) = &outcome.result {
            for mail in &resolved.mails {
                match queue(tx, seq, event, &outcome.rule, mail, now)? {
                    true => committed.queued += 1,
                    false => committed.already_queued += 1,
                }
            }
            apply_kv(tx, &outcome.rule, &outcome.kv_writes)?;
        }
    }
    Ok(committed)
}

/// One delivery attempt and the row's next state.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub outbox_id: i64,
    /// The lease the row was claimed with; the outcome is applied only while it still holds.
    pub lease: Option<i64>,
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
    pub code: Option<u16>,
    pub detail: String,
    pub new_state: RowState,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// What one attempt came to, as `attempts.outcome` records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server accepted the message (or the file was written).
    Sent,
    /// Try again later: 4xx, refused, reset, timeouts, TLS failures.
    Transient,
    /// The server refused for good (5xx).
    Permanent,
    /// The connection was lost after the final `.`: the message may have been delivered.
    Ambiguous,
    /// The server and the config do not fit.
    Config,
    /// The worker holding the row stopped while sending it (logged when the row is claimed again).
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Transient => "transient",
            Outcome::Permanent => "permanent",
            Outcome::Ambiguous => "ambiguous",
            Outcome::Config => "config",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// The state of an outbox row, as the `outbox.state` column holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowState {
    Queued,
    Sent,
    Dead,
    Cancelled,
}

impl RowState {
    pub fn as_str(self) -> &'static str {
        match self {
            RowState::Queued => "queued",
            RowState::Sent => "sent",
            RowState::Dead => "dead",
            RowState::Cancelled => "cancelled",
        }
    }
}

/// A connection whose commits are written to the WAL and synced later by the flusher (WAL
/// mode stays consistent with `synchronous=NORMAL`; only durability waits).
fn written_connection(path: &Path) -> Result<Connection> {
    let conn = connect(path)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Commit `work` in one write transaction on `conn`; `what` says which commit failed.
fn commit<T>(
    conn: &mut Connection,
    what: &str,
    work: impl FnOnce(&Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let done = work(&tx)?;
    tx.commit().during(|| what.to_owned())?;
    Ok(done)
}

fn connect(path: &Path) -> Result<Connection> {
    let mut conn =
        Connection::open(path).during(|| format!("cannot open the store {}", path.display()))?;
    // WAL with synchronous=FULL: a commit is on disk before it returns,
    // so an acknowledged event survives power loss. (Written commits lower it on their own
    // connection.)
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Freed content is overwritten, so a purged mail body leaves no copy in free pages.
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.busy_handler(Some(wait_for_the_writer))?;
    // One plan per statement whatever its parameters: otherwise a new `LIMIT ?` value
    // re-prepares the cached statement (the delivery recorder's claim did on most commits).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // Room for every statement the store prepares once (the default keeps 16).
    conn.set_prepared_statement_cache_capacity(STATEMENTS);
    Ok(conn)
}

/// Prepared statements kept per connection.
const STATEMENTS: usize = 96;

/// How often, and how long in all, a connection waits for another one's write to end.
const BUSY_POLLS: i32 = 10_000;

/// SQLite's busy handler: retry after 100 µs for the first 10 ms, then every millisecond, about
/// 10 s in all. (SQLite's own `busy_timeout` sleeps 1, 2, 5 … 100 ms, far longer than one of
/// Herald's commits lasts, which stalled the ingest writer behind an evaluation commit.)
fn wait_for_the_writer(polls: i32) -> bool {
    if polls >= BUSY_POLLS {
        return false;
    }
    let pause = if polls < 100 { 100 } else { 1_000 };
    std::thread::sleep(std::time::Duration::from_micros(pause));
    true
}

/// Journal one event (pending, or evaluated already when `settled`) unless it is a duplicate.
fn ingest_one(
    tx: &Transaction<'_>,
    ev: &Event,
    settled: bool,
    now: DateTime<Utc>,
) -> Result<Ingested> {
    let existing: Option<i64> = tx
        .prepare_cached("SELECT seq FROM events WHERE source = ?1 AND id = ?2")?
        .query_row(params![ev.source, ev.id], |r| r.get(0))
        .optional()?;
    if let Some(seq) = existing {
        return Ok(Ingested::Duplicate(seq));
    }
    if let Some(original) = happening::reported_elsewhere(tx, ev)? {
        return happening::journal_duplicate(tx, ev, original, now);
    }
    let now = now.to_rfc3339();
    let (state, evaluated_at) = if settled {
        ("done", Some(now.as_str()))
    } else {
        ("pending", None)
    };
    tx.prepare_cached(
        "INSERT INTO events (source, id, type, time, envelope, received_at, state, evaluated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        ev.source,
        ev.id,
        ev.kind,
        ev.time_rfc3339(),
        ev.to_json().to_string(),
        now,
        state,
        evaluated_at
    ])?;
    let seq = tx.last_insert_rowid();
    happening::record(tx, ev, seq, None)?;
    Ok(Ingested::New(seq))
}

fn decode_event(envelope: &str, received_at: &str) -> Result<Event> {
    let received = DateTime::parse_from_rfc3339(received_at)?.with_timezone(&Utc);
    let value = serde_json::from_str(envelope)?;
    event::from_json(value, received).map_err(|err| StoreError::Unreadable {
        what: "a journaled event".into(),
        detail: err.to_string(),
    })
}

fn record_run(
    tx: &Transaction<'_>,
    seq: i64,
    outcome: &RuleOutcome,
    now: DateTime<Utc>,
) -> Result<()> {
    let (state, code, reason, mails, skipped) = match &outcome.result {
        Ok(r) => (
            "ok",
            None,
            None,
            r.mails.len() as i64,
            skipped_json(&r.skipped),
        ),
        Err(f) => ("failed", Some(f.code()), Some(f.to_string()), 0, None),
    };
    tx.prepare_cached("INSERT OR REPLACE INTO rule_runs (event_seq, rule, state, code, reason, mails, skipped, fuel, micros, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")?.execute(
        params![
            seq,
            outcome.rule,
            state,
            code,
            reason,
            mails,
            skipped,
            outcome.fuel_used as i64,
            outcome.elapsed.as_micros() as i64,
            now.to_rfc3339()
        ],
    )?;
    Ok(())
}

fn skipped_json(skipped: &[crate::evaluate::Skipped]) -> Option<String> {
    if skipped.is_empty() {
        return None;
    }
    let list: Vec<_> = skipped
        .iter()
        .map(|s| serde_json::json!({"recipient": s.recipient, "kind": s.kind, "reason": s.reason}))
        .collect();
    Some(serde_json::Value::Array(list).to_string())
}

/// Insert one outbox row; false when (event, rule, recipient) was queued before.
fn queue(
    tx: &Transaction<'_>,
    seq: i64,
    event: &Event,
    rule: &str,
    mail: &Mail,
    now: DateTime<Utc>,
) -> Result<bool> {
    let key = MailKey {
        source: event.source.clone(),
        event_id: event.id.clone(),
        rule: rule.to_owned(),
        recipient: mail.recipient.clone(),
    };
    let inserted = tx.prepare_cached("INSERT OR IGNORE INTO outbox (event_seq, rule, recipient, mail, digest, state, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7)")?.execute(
        params![
            seq,
            rule,
            mail.recipient,
            serde_json::to_string(mail)?,
            key.digest(),
            now.timestamp_millis(),
            now.to_rfc3339()
        ],
    )?;
    Ok(inserted == 1)
}

/// The one mail admins get when a rule is quarantined.
fn quarantine_notice(q: &Quarantined, event: &Event, admin: &str) -> Mail {
    Mail {
        recipient: admin.to_lowercase(),
        to: vec![admin.to_owned()],
        cc: Vec::new(),
        reply_to: Vec::new(),
        subject: format!("[Herald] rule {} quarantined", q.rule),
        text: format!(
            "Herald stopped running the rule `{rule}` after {n} failures in a row.\n\n\
             Last failure, on event {id} ({kind}):\n{reason}\n\n\
             The rule is skipped until you release it:\n    herald rules release {rule}\n",
            rule = q.rule,
            n = q.failures,
            id = event.id,
            kind = event.kind,
            reason = q.reason,
        ),
        html: None,
        headers: vec![("Auto-Submitted".into(), "auto-generated".into())],
    }
}

fn apply_kv(tx: &Transaction<'_>, rule: &str, writes: &[KvWrite]) -> Result<()> {
    for write in writes {
        match &write.entry {
            Some(entry) => tx.prepare_cached("INSERT OR REPLACE INTO kv (rule, key, value, expires_at) VALUES (?1, ?2, ?3, ?4)")?.execute(
                params![rule, write.key, entry.value, entry.expires_unix_ms],
            )?,
            None => tx.prepare_cached("DELETE FROM kv WHERE rule = ?1 AND key = ?2")?.execute(
                params![rule, write.key],
            )?,
        };
    }
    Ok(())
}

/// The first ten columns of the outbox's `ROW` query, before decoding.
type RawRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    Option<i64>,
);

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

fn decode_row(raw: RawRow) -> Result<OutboxRow> {
    let (id, source, event_id, rule, recipient, time, mail, attempts, queued_at, lease) = raw;
    Ok(OutboxRow {
        id,
        key: MailKey {
            source,
            event_id,
            rule,
            recipient,
        },
        event_time: DateTime::parse_from_rfc3339(&time)?.with_timezone(&Utc),
        mail: serde_json::from_str(&mail).during(|| format!("outbox row {id} is unreadable"))?,
        attempts,
        queued_at: DateTime::parse_from_rfc3339(&queued_at)?.with_timezone(&Utc),
        lease,
    })
}

/// Reads committed kv entries on a connection of its own.
struct SqliteKv {
    conn: Mutex<Connection>,
}

impl KvRead for SqliteKv {
    fn get(&self, rule: &str, key: &str) -> Option<KvEntry> {
        let conn = self.conn.lock().expect("kv connection lock");
        let found = conn
            .query_row(
                "SELECT value, expires_at FROM kv WHERE rule = ?1 AND key = ?2",
                params![rule, key],
                |r| {
                    Ok(KvEntry {
                        value: r.get(0)?,
                        expires_unix_ms: r.get(1)?,
                    })
                },
            )
            .optional();
        found.unwrap_or_else(|err| {
            tracing::error!(%err, rule, key, "kv read failed; the rule sees the key as missing");
            None
        })
    }
}

#[cfg(test)]
mod tests;

/// When `err` is the store refusing writes (disk full, read-only, I/O error),
/// a plain-language account of it: the caller may retry once that is fixed.
pub fn temporary_failure(err: &anyhow::Error) -> Option<String> {
    StoreError::refusal_in(err).map(|refusal| format!("{refusal}: {err:#}"))
}
