//! Cross-source dedup: one OMERO happening reported by two sources (the log and the probe, the
//! eventlog and the SMTP listener) within a short window is evaluated once.
//!
//! Each typed OMERO event belongs to a family (what it is about: the server, a user's login,
//! a user, a group, a comment, a web path) with a window. An event is a duplicate when the
//! latest original of its family journaled within the window (by event time; latest by journal
//! order, which clock skew between hosts cannot reorder) is of the same type, came from *another*
//! source, and has not yet absorbed an event from this source. It is then kept in the journal,
//! marked `duplicate_of` that original and already done: it runs no rule and sends no mail.
//! Taking the latest original keeps a down, an up and another down apart; absorbing at most one
//! event per source keeps two failed logins in a row apart.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, params};

use super::{Ingested, Result};
use crate::event::{Event, EventData};

const MINUTE: i64 = 60_000;

/// The family of `event`'s happening and how far apart (ms) two reports of it may be.
pub fn family(event: &Event) -> Option<(String, i64)> {
    let (family, window) = match &event.data {
        EventData::ServerUp(_) | EventData::ServerDown(_) => {
            ("omero.server".to_owned(), 5 * MINUTE)
        }
        EventData::LoginFailed(failed) => (format!("login:{}", failed.user), MINUTE / 2),
        EventData::UserCreated(created) => (format!("user:{}", created.user.id), 5 * MINUTE),
        EventData::GroupCreated(created) => (format!("group:{}", created.group.id), 5 * MINUTE),
        EventData::CommentAdded(added) => (format!("comment:{}", added.comment.id), 5 * MINUTE),
        EventData::WebError(error) => (format!("web:{} {}", error.status, error.path), MINUTE),
        _ => return None,
    };
    Some((family, window))
}

/// The journal seq of the original `event` repeats, if it is a duplicate.
pub fn reported_elsewhere(tx: &Transaction<'_>, event: &Event) -> Result<Option<i64>> {
    let Some((family, window)) = family(event) else {
        return Ok(None);
    };
    let at = event.time.timestamp_millis();
    let latest: Option<(i64, String, String)> = tx
        .query_row(
            "SELECT event_seq, kind, source FROM happenings WHERE family = ?1 AND original IS NULL \
             AND at BETWEEN ?2 AND ?3 ORDER BY event_seq DESC LIMIT 1",
            params![family, at - window, at + window],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let Some((seq, kind, source)) = latest else {
        return Ok(None);
    };
    if kind != event.kind || source == event.source {
        return Ok(None);
    }
    let absorbed: Option<i64> = tx
        .prepare_cached("SELECT 1 FROM happenings WHERE original = ?1 AND source = ?2")?
        .query_row(params![seq, event.source], |row| row.get(0))
        .optional()?;
    Ok(absorbed.is_none().then_some(seq))
}

/// Remember `event`'s happening, journaled under `seq` (a duplicate of `original`, or an original).
pub fn record(tx: &Transaction<'_>, event: &Event, seq: i64, original: Option<i64>) -> Result<()> {
    if let Some((family, _)) = family(event) {
        tx.execute(
            "INSERT INTO happenings (family, kind, source, at, event_seq, original) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                family,
                event.kind,
                event.source,
                event.time.timestamp_millis(),
                seq,
                original
            ],
        )?;
    }
    Ok(())
}

/// Keep `event` in the journal as a duplicate of `original`: done, never evaluated.
pub fn journal_duplicate(
    tx: &Transaction<'_>,
    event: &Event,
    original: i64,
    now: DateTime<Utc>,
) -> Result<Ingested> {
    tx.execute(
        "INSERT INTO events (source, id, type, time, envelope, received_at, state, evaluated_at, duplicate_of) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'done', ?6, ?7)",
        params![
            event.source,
            event.id,
            event.kind,
            event.time_rfc3339(),
            event.to_json().to_string(),
            now.to_rfc3339(),
            original
        ],
    )?;
    record(tx, event, tx.last_insert_rowid(), Some(original))?;
    tracing::info!(
        source = %event.source,
        id = %event.id,
        duplicate_of = original,
        "the same {} was already reported by another source; journaled as a duplicate",
        event.kind
    );
    Ok(Ingested::Duplicate(original))
}
