//! The outbox seen by delivery workers and admins: leases, listing, retry, cancel, purge.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, params};

use super::{
    Attempt, OutboxRow, Outcome, Result, RowState, Store, StoreError, decode_row, raw_row,
};
use crate::store::owner::Owner;

/// One outbox row as `herald outbox list` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Listed {
    pub id: i64,
    pub state: ListState,
    pub attempts: i64,
    /// Deliveries that may have gone through (dropped after the final `.`).
    pub ambiguous: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub rule: String,
    pub source: String,
    pub event_id: String,
    pub recipient: String,
    pub subject: String,
    pub created_at: String,
    pub sent_at: Option<String>,
    pub last_error: Option<String>,
    /// While a worker holds the row: until when, and which process (`host:pid:start`).
    pub leased_until: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    /// The worker holding the row may have handed its message over (its final `.` may be
    /// out); false while the row is only held, waiting its turn.
    pub sending: bool,
}

/// The states `herald outbox list` tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListState {
    /// Never tried.
    Queued,
    /// Tried, a retry pending.
    Deferred,
    Sent,
    Dead,
    Cancelled,
}

impl ListState {
    pub const NAMES: [&'static str; 5] = ["queued", "deferred", "sent", "dead", "cancelled"];

    pub fn as_str(self) -> &'static str {
        match self {
            ListState::Queued => "queued",
            ListState::Deferred => "deferred",
            ListState::Sent => "sent",
            ListState::Dead => "dead",
            ListState::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for ListState {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        [
            ListState::Queued,
            ListState::Deferred,
            ListState::Sent,
            ListState::Dead,
            ListState::Cancelled,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
        .ok_or_else(|| {
            format!(
                "`{text}` is not a state; use one of {}",
                Self::NAMES.join(", ")
            )
        })
    }
}

/// Which rows `list_outbox` returns.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub state: Option<ListState>,
    pub rule: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: usize,
}

/// One recorded delivery attempt.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AttemptLog {
    pub at: String,
    pub outcome: String,
    pub code: Option<i64>,
    pub detail: String,
}

/// What delivery reads of a row, in [`raw_row`]'s order (LEFT JOIN: a row whose event is
/// gone is read as unreadable rather than skipped).
const ROW: &str = "SELECT o.id, e.source, e.id, o.rule, o.recipient, e.time, o.mail, o.attempts,
        max(o.created_at, coalesce(o.retried_at, '')), o.lease_until,
        o.lease_until IS NOT NULL AND o.sending
    FROM outbox o LEFT JOIN events e ON e.seq = o.event_seq";

/// A row a worker holds, named with the lease it holds it by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub id: i64,
    pub lease: Option<i64>,
}

impl Held {
    pub fn of(row: &OutboxRow) -> Held {
        Held {
            id: row.id,
            lease: row.lease,
        }
    }
}

/// What one recorder round writes and asks for.
#[derive(Debug, Default)]
pub struct Round<'a> {
    pub attempts: &'a [Attempt],
    /// Rows whose final `.` goes once this round is committed (synced in `herald serve`; in a
    /// delivery run of its own, written, and synced by the flusher within 100 ms).
    pub sending: &'a [Held],
    /// Held rows given back unsent (a session that stops).
    pub released: &'a [Held],
    /// How many due rows to lease.
    pub claims: usize,
}

/// What a round leased, which rows of `sending` had lost their lease (not to be sent), and
/// why each due row that could not be read was set dead.
#[derive(Debug, Default)]
pub struct Claimed {
    pub rows: Vec<OutboxRow>,
    pub lost: Vec<i64>,
    pub unreadable: Vec<String>,
}

/// The rows as admins see them. Every column is cast to the type it is read as, and a mail
/// that is not JSON shows an `(unreadable)` subject, so one damaged row never fails a listing.
const LISTED: &str = "SELECT o.id AS id,
        CASE WHEN o.state = 'queued' AND o.attempts > 0 THEN 'deferred' ELSE o.state END AS state,
        CAST(o.attempts AS INTEGER) AS attempts, CAST(o.ambiguous AS INTEGER) AS ambiguous,
        CAST(o.next_attempt_at AS INTEGER) AS next_attempt_at, CAST(o.rule AS TEXT) AS rule,
        CAST(coalesce(e.source, '') AS TEXT) AS source, CAST(coalesce(e.id, '') AS TEXT) AS event_id,
        CAST(o.recipient AS TEXT) AS recipient,
        CASE WHEN json_valid(o.mail) THEN CAST(json_extract(o.mail, '$.subject') AS TEXT)
             ELSE '(unreadable)' END AS subject,
        CAST(o.created_at AS TEXT) AS created_at, CAST(o.sent_at AS TEXT) AS sent_at,
        CAST(o.last_error AS TEXT) AS last_error,
        CASE WHEN o.state = 'queued' THEN CAST(o.lease_until AS INTEGER) END AS lease_until,
        CASE WHEN o.state = 'queued' THEN CAST(o.lease_owner AS TEXT) END AS lease_owner,
        o.state = 'queued' AND o.lease_until IS NOT NULL AND o.sending AS sending
    FROM outbox o LEFT JOIN events e ON e.seq = o.event_seq";

impl Store {
    /// Lease up to `limit` due rows for `lease`, marked as being sent: no other worker gets
    /// them until the lease expires or its owner is seen to be dead.
    ///
    /// A row whose earlier lease ended without an outcome while it was being sent was held
    /// by a worker that died while sending it: the message may have gone out, so the row is
    /// counted as ambiguous and an `interrupted` attempt is logged before it is sent again
    /// with the same Message-ID.
    pub fn claim_due(
        &mut self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxRow>> {
        let round = Round {
            claims: limit,
            ..Round::default()
        };
        self.round(&round, now, lease, true)
            .map(|claimed| claimed.rows)
    }

    /// One round of the delivery recorder, in one written transaction (synced in a group by the
    /// flusher, see [`Store::written`]): record finished attempts, mark the rows whose final
    /// `.` may now go, give back rows that will not be sent, and lease up to `claims` due rows
    /// (held, not yet being sent).
    pub fn record_and_claim(
        &mut self,
        round: &Round<'_>,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claimed> {
        self.round(round, now, lease, false)
    }

    fn round(
        &mut self,
        round: &Round<'_>,
        now: DateTime<Utc>,
        lease: Duration,
        sending_at_once: bool,
    ) -> Result<Claimed> {
        self.written("cannot commit the delivery outcomes", |tx| {
            record_round(tx, round, now, lease, sending_at_once)
        })
    }

    /// When the oldest queued row that is due now became due (ms since the epoch), if any.
    pub fn oldest_due_millis(&self, now: DateTime<Utc>) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT min(next_attempt_at) FROM outbox WHERE state = 'queued' AND next_attempt_at <= ?1",
                [now.timestamp_millis()],
                |r| r.get(0),
            )
            .map_err(Into::into)
    }

    /// Queued rows that a live worker holds now: `deliver --until-empty` waits for them.
    pub fn leased_count(&self, now: DateTime<Utc>) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT count(*) FROM outbox WHERE state = 'queued' AND lease_until > ?1",
                [now.timestamp_millis()],
                |r| r.get(0),
            )
            .map_err(Into::into)
    }

    /// One row with what delivery needs to render it.
    pub fn outbox_row(&self, id: i64) -> Result<Option<OutboxRow>> {
        let raw = self
            .conn
            .prepare_cached(&format!("{ROW} WHERE o.id = ?1"))?
            .query_row([id], raw_row)
            .optional()?;
        raw.map(decode_row).transpose()
    }

    /// Rows for `herald outbox list`, newest first.
    pub fn list_outbox(&self, filter: &Filter) -> Result<Vec<Listed>> {
        let sql = format!(
            "SELECT * FROM ({LISTED}) WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR rule = ?2)
             AND (?3 IS NULL OR created_at >= ?3) ORDER BY id DESC LIMIT ?4"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let since = filter.since.map(|t| t.to_rfc3339());
        let limit = if filter.limit == 0 {
            i64::MAX
        } else {
            filter.limit as i64
        };
        let state = filter.state.map(ListState::as_str);
        let rows = stmt.query_map(params![state, filter.rule, since, limit], listed)?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// One row as `herald outbox show` prints it.
    pub fn listed(&self, id: i64) -> Result<Option<Listed>> {
        let sql = format!("SELECT * FROM ({LISTED}) WHERE id = ?1");
        self.conn
            .query_row(&sql, [id], listed)
            .optional()
            .map_err(Into::into)
    }

    /// Every attempt made for one row, oldest first.
    pub fn attempts(&self, id: i64) -> Result<Vec<AttemptLog>> {
        let mut stmt = self.conn.prepare(
            "SELECT at, outcome, code, detail FROM attempts WHERE outbox_id = ?1 ORDER BY rowid",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok(AttemptLog {
                at: r.get(0)?,
                outcome: r.get(1)?,
                code: r.get(2)?,
                detail: r.get(3)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// Make a dead (or deferred) row due now. False when there is no such row
    /// or it was sent or cancelled.
    pub fn retry_row(&mut self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let changed = self.conn.execute(
            "UPDATE outbox SET state = 'queued', next_attempt_at = ?2, lease_until = NULL, lease_owner = NULL, sending = 0, retried_at = ?3
             WHERE id = ?1 AND state IN ('dead', 'queued') AND (lease_until IS NULL OR lease_until <= ?2)",
            params![id, now.timestamp_millis(), now.to_rfc3339()],
        )?;
        Ok(changed == 1)
    }

    /// Make every dead row due now; returns how many.
    pub fn retry_dead(&mut self, now: DateTime<Utc>) -> Result<usize> {
        let changed = self.conn.execute(
            "UPDATE outbox SET state = 'queued', next_attempt_at = ?1, lease_until = NULL, lease_owner = NULL, sending = 0, retried_at = ?2
             WHERE state = 'dead'",
            params![now.timestamp_millis(), now.to_rfc3339()],
        )?;
        Ok(changed)
    }

    /// Cancel a row that is not sent yet. False when there is no such row or it was sent.
    pub fn cancel_row(&mut self, id: i64) -> Result<bool> {
        let changed = self.conn.execute(
            "UPDATE outbox SET state = 'cancelled', lease_until = NULL, lease_owner = NULL, sending = 0
             WHERE id = ?1 AND state IN ('queued', 'dead') AND (lease_until IS NULL OR lease_until <= ?2)",
            params![id, Utc::now().timestamp_millis()],
        )?;
        Ok(changed == 1)
    }

    /// Delete rows sent before `before`, with their attempts; returns how many.
    pub fn purge_sent(&mut self, before: DateTime<Utc>) -> Result<usize> {
        let cutoff = before.to_rfc3339();
        self.immediate("cannot purge the sent rows", |tx| {
            tx.prepare_cached("DELETE FROM attempts WHERE outbox_id IN (SELECT id FROM outbox WHERE state = 'sent' AND sent_at < ?1)")?.execute(
                [&cutoff],
            )?;
            let purged = tx
                .prepare_cached("DELETE FROM outbox WHERE state = 'sent' AND sent_at < ?1")?
                .execute([&cutoff])?;
            Ok(purged)
        })
    }
}
/// Apply one attempt to its row (only while the lease it was claimed with holds) and log it.
pub(super) fn record(tx: &Transaction<'_>, attempt: &Attempt) -> Result<bool> {
    tx.prepare_cached(
        "INSERT INTO attempts (outbox_id, at, outcome, code, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        attempt.outbox_id,
        attempt.at.to_rfc3339(),
        attempt.outcome.as_str(),
        attempt.code,
        attempt.detail
    ])?;
    let sent = attempt.new_state == RowState::Sent;
    let changed = tx
        .prepare_cached(
            "UPDATE outbox SET attempts = attempts + 1, state = ?2, next_attempt_at = ?3,
                lease_until = NULL, lease_owner = NULL, sending = 0, ambiguous = ambiguous + ?6,
                last_error = CASE WHEN ?8 THEN NULL ELSE ?4 END,
                sent_at = CASE WHEN ?8 THEN ?5 ELSE sent_at END
         WHERE id = ?1 AND state = 'queued' AND lease_until IS ?7",
        )?
        .execute(params![
            attempt.outbox_id,
            attempt.new_state.as_str(),
            attempt.next_attempt_at.map(|t| t.timestamp_millis()),
            attempt.detail,
            attempt.at.to_rfc3339(),
            attempt.outcome == Outcome::Ambiguous,
            attempt.lease,
            sent
        ])?;
    if changed == 0 {
        tracing::warn!(
            row = attempt.outbox_id,
            outcome = attempt.outcome.as_str(),
            "the row's lease was lost (it outlived delivery.lease, or was cancelled or retried meanwhile); only the attempt was logged"
        );
    }
    Ok(changed == 1)
}

/// Mark a held row as being sent, if its lease still holds; false when it was lost
/// (expired and taken by another worker, cancelled or retried): then it must not be sent.
fn mark_sending(tx: &Transaction<'_>, held: &Held) -> Result<bool> {
    let changed = tx
        .prepare_cached(
            "UPDATE outbox SET sending = 1 WHERE id = ?1 AND state = 'queued' AND lease_until IS ?2",
        )?
        .execute(params![held.id, held.lease])?;
    Ok(changed == 1)
}

/// Give back a held row that was not sent, so that it is due again at once.
fn release(tx: &Transaction<'_>, held: &Held) -> Result<()> {
    tx.prepare_cached(
        "UPDATE outbox SET lease_until = NULL, lease_owner = NULL
         WHERE id = ?1 AND state = 'queued' AND lease_until IS ?2 AND sending = 0",
    )?
    .execute(params![held.id, held.lease])?;
    Ok(())
}

/// One recorder round inside `tx`: the outcomes, the rows now being sent (those whose lease
/// was lost are named in `lost`), the rows given back, then the new leases (marked as being
/// sent at once when `sending_at_once`).
pub(super) fn record_round(
    tx: &Transaction<'_>,
    round: &Round<'_>,
    now: DateTime<Utc>,
    lease: Duration,
    sending_at_once: bool,
) -> Result<Claimed> {
    for attempt in round.attempts {
        record(tx, attempt)?;
    }
    let mut lost = Vec::new();
    for held in round.sending {
        if !mark_sending(tx, held)? {
            lost.push(held.id);
        }
    }
    for held in round.released {
        release(tx, held)?;
    }
    let mut unreadable = Vec::new();
    let rows = match round.claims {
        0 => Vec::new(),
        _ => claim(tx, now, lease, round.claims, &mut unreadable)?,
    };
    if sending_at_once {
        for row in &rows {
            mark_sending(tx, &Held::of(row))?;
        }
    }
    Ok(Claimed {
        rows,
        lost,
        unreadable,
    })
}

/// Lease up to `limit` due rows to this process, after ending the leases of dead owners.
/// A row that cannot be read (its stored mail or event is damaged) is set dead with the
/// reason, so it never blocks the rows behind it.
fn claim(
    tx: &Transaction<'_>,
    now: DateTime<Utc>,
    lease: Duration,
    limit: usize,
    unreadable: &mut Vec<String>,
) -> Result<Vec<OutboxRow>> {
    reclaim_from_the_dead(tx, now)?;
    let too_long = || StoreError::OutOfRange(format!("delivery.lease {lease:?} is too long"));
    let until = chrono::Duration::from_std(lease)
        .ok()
        .and_then(|lease| now.checked_add_signed(lease))
        .ok_or_else(too_long)?;
    let due = due_rows(tx, now, limit)?;
    let owner = Owner::this().to_string();
    let mut picked = Vec::with_capacity(due.len());
    for (id, interrupted, raw) in due {
        let mut row = match raw.map_err(StoreError::from).and_then(decode_row) {
            Ok(row) => row,
            Err(err) => {
                unreadable.push(set_unreadable_dead(tx, id, now, &err)?);
                continue;
            }
        };
        tx.prepare_cached("UPDATE outbox SET lease_until = ?2, lease_owner = ?4, sending = 0, ambiguous = ambiguous + ?3 WHERE id = ?1")?.execute(
            params![id, until.timestamp_millis(), interrupted, owner],
        )?;
        if interrupted {
            log_interrupted(tx, id, now)?;
        }
        row.lease = Some(until.timestamp_millis());
        picked.push(row);
    }
    Ok(picked)
}

/// A due row: its id, whether an earlier lease ended without an outcome, and its columns.
type Due = (i64, bool, rusqlite::Result<super::RawRow>);

/// The next `limit` due rows, oldest first, each read on its own so a damaged one stays alone.
fn due_rows(tx: &Transaction<'_>, now: DateTime<Utc>, limit: usize) -> Result<Vec<Due>> {
    let mut stmt = tx.prepare_cached(&format!(
        "{ROW} WHERE o.state = 'queued' AND o.next_attempt_at <= ?1
           AND (o.lease_until IS NULL OR o.lease_until <= ?1)
         ORDER BY o.next_attempt_at, o.id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![now.timestamp_millis(), limit as i64], |r| {
        Ok((r.get(0)?, r.get(10).unwrap_or(false), raw_row(r)))
    })?;
    rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
}

/// Set a row that cannot be read dead, log why as its attempt, and tell the admin; returns why.
fn set_unreadable_dead(
    tx: &Transaction<'_>,
    id: i64,
    now: DateTime<Utc>,
    err: &StoreError,
) -> Result<String> {
    let detail = format!(
        "the stored row cannot be read, so it cannot be sent: {err}; it is kept as dead \
         (`herald outbox show {id}`)"
    );
    tracing::error!(row = id, "{detail}");
    tx.prepare_cached("INSERT INTO attempts (outbox_id, at, outcome, code, detail) VALUES (?1, ?2, 'unreadable', NULL, ?3)")?
        .execute(params![id, now.to_rfc3339(), detail])?;
    tx.prepare_cached(
        "UPDATE outbox SET state = 'dead', attempts = attempts + 1, lease_until = NULL,
            lease_owner = NULL, sending = 0, last_error = ?2 WHERE id = ?1",
    )?
    .execute(params![id, detail])?;
    Ok(detail)
}

/// End at once the leases held by processes on this host that are gone: their rows
/// need not wait for `delivery.lease` to run out.
fn reclaim_from_the_dead(tx: &Transaction<'_>, now: DateTime<Utc>) -> Result<()> {
    let owners: Vec<String> = {
        let mut stmt = tx.prepare_cached(
            "SELECT DISTINCT lease_owner FROM outbox
             WHERE state = 'queued' AND lease_until > ?1 AND lease_owner IS NOT NULL",
        )?;
        let rows = stmt.query_map([now.timestamp_millis()], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for text in owners {
        let dead = Owner::parse(&text).is_some_and(|owner| owner.provably_dead());
        if !dead {
            continue;
        }
        let rows = tx.prepare_cached("UPDATE outbox SET lease_until = ?2 WHERE state = 'queued' AND lease_owner = ?1 AND lease_until > ?2")?.execute(
            params![text, now.timestamp_millis()],
        )?;
        tracing::warn!(owner = %text, rows, "the process holding these rows is gone; their leases end now");
    }
    Ok(())
}

/// The attempt a dead worker could not record.
fn log_interrupted(tx: &Transaction<'_>, id: i64, now: DateTime<Utc>) -> Result<()> {
    tx.prepare_cached("INSERT INTO attempts (outbox_id, at, outcome, code, detail) VALUES (?1, ?2, 'interrupted', NULL, ?3)")?.execute(
        params![
            id,
            now.to_rfc3339(),
            "the worker holding this row stopped (or outlived delivery.lease) while sending it; \
             the message may have been delivered, so it is sent again with the same Message-ID"
        ],
    )?;
    Ok(())
}

fn listed(r: &rusqlite::Row<'_>) -> rusqlite::Result<Listed> {
    let next: Option<i64> = r.get(4)?;
    Ok(Listed {
        id: r.get(0)?,
        state: r.get::<_, String>(1)?.parse().map_err(|err: String| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, err.into())
        })?,
        attempts: r.get(2)?,
        ambiguous: r.get(3)?,
        next_attempt_at: next.and_then(DateTime::from_timestamp_millis),
        rule: r.get(5)?,
        source: r.get(6)?,
        event_id: r.get(7)?,
        recipient: r.get(8)?,
        subject: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
        created_at: r.get(10)?,
        sent_at: r.get(11)?,
        last_error: r.get(12)?,
        leased_until: r
            .get::<_, Option<i64>>(13)?
            .and_then(DateTime::from_timestamp_millis),
        lease_owner: r.get(14)?,
        sending: r.get(15)?,
    })
}
