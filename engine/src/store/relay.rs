//! Store: mail taken by the SMTP listener, journaled with its event, relayed through the outbox, purged after.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use super::{Ingested, Result, Store, StoreError, connect, ingest_one};
use crate::event::Event;
use crate::mail::{Mail, MailKey};

/// The `rule` of outbox rows that relay a received message to its envelope recipients.
pub const RELAY_RULE: &str = "relay";

/// One message as the SMTP listener took it, ready to be journaled with its event.
#[derive(Clone, Debug)]
pub struct Inbound {
    /// The retransmission key: a digest of the Message-ID (or the bytes) and the envelope.
    pub dedup: String,
    /// The envelope sender (MAIL FROM), empty for the null sender.
    pub mail_from: String,
    /// The envelope recipients (RCPT TO), in order, without repeats.
    pub recipients: Vec<String>,
    /// The `Received:` header field Herald adds in front of the message (without CRLF).
    pub received: String,
    /// The message: CRLF line ends, no NUL.
    pub raw: Vec<u8>,
    /// The Subject, for `herald outbox list`.
    pub subject: String,
    /// Queue one outbox row per recipient (false: a stock mail that rules replace).
    pub relay: bool,
    /// Keep the bytes after delivery (`smtp_listener.keep_body`).
    pub keep_body: bool,
}

/// What delivery needs to send a relayed row: the envelope sender and the bytes.
#[derive(Clone, Debug)]
pub struct RelayBody {
    pub mail_from: String,
    pub received: String,
    pub raw: Vec<u8>,
}

/// Why a relayed row cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum RelayBodyError {
    #[error(
        "the body of this relayed message was purged after it was delivered or dead; \
             set smtp_listener.keep_body: true to keep bodies for retries by hand"
    )]
    Purged,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Journal `events` and, in the same transaction, each received mail of `mails` (an index
    /// into `events` and the mail that event came from). A retransmission (same dedup key) is
    /// stored once. `settled` is as for [`Store::ingest_all`]. Durable when this returns.
    pub fn ingest_mail(
        &mut self,
        events: &[Event],
        settled: &[bool],
        mails: &[(usize, &Inbound)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Ingested>> {
        let events: Vec<&Event> = events.iter().collect();
        self.immediate("cannot commit the received mail", |tx| {
            journal(tx, &events, settled, mails, now)
        })
    }

    /// Purge the bodies of received mail whose event is evaluated and whose outbox rows are
    /// all final (sent, dead or cancelled): the bytes, the event's text and the mails' text.
    /// Follow with [`Store::truncate_wal`], so no old copy stays in the WAL. Returns how many
    /// messages were purged.
    pub fn purge_relayed(&mut self, now: DateTime<Utc>) -> Result<usize> {
        self.immediate("cannot purge the relayed bodies", |tx| {
            let done = finished(tx)?;
            for &(id, seq) in &done {
                purge_one(tx, id, seq, now)?;
            }
            Ok(done.len())
        })
    }

    /// Copy the WAL into the database and truncate it to nothing (true when it was complete).
    pub fn truncate_wal(&self) -> Result<bool> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(busy == 0)
    }

    /// What a relayed row sends, for `herald outbox show`: Herald's `Received:` and the bytes
    /// (or a note once they were purged); `None` for rule mail.
    pub fn relayed_message(&self, outbox_id: i64) -> Result<Option<Vec<u8>>> {
        let found: Option<(String, Option<Vec<u8>>)> = self
            .conn
            .query_row(
                "SELECT r.received, r.raw FROM outbox o
                 JOIN relay_messages r ON r.id = o.relay_id WHERE o.id = ?1",
                [outbox_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(found.map(|(received, raw)| {
            let mut bytes = received.into_bytes();
            bytes.extend_from_slice(b"\r\n");
            match raw {
                Some(raw) => bytes.extend_from_slice(&raw),
                None => bytes.extend_from_slice(
                    b"\r\n(the body was purged once delivered or dead; \
                      smtp_listener.keep_body: true keeps it)\r\n",
                ),
            }
            bytes
        }))
    }

    /// Received messages whose body is still stored (not purged, not kept).
    pub fn unpurged_count(&self) -> Result<i64> {
        self.conn
            .query_row(
                "SELECT count(*) FROM relay_messages WHERE purged_at IS NULL AND keep_body = 0",
                [],
                |r| r.get(0),
            )
            .map_err(Into::into)
    }
}

/// Journal `events` (each pending, or evaluated already when its `settled` entry is true) and
/// each received mail of `mails` with the event it came from, inside `tx`.
pub(super) fn journal(
    tx: &Transaction<'_>,
    events: &[&Event],
    settled: &[bool],
    mails: &[(usize, &Inbound)],
    now: DateTime<Utc>,
) -> Result<Vec<Ingested>> {
    let mut results = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let settled = settled.get(index).copied().unwrap_or(false);
        results.push(ingest_one(tx, event, settled, now)?);
    }
    for &(index, mail) in mails {
        let (Some(event), Some(result)) = (events.get(index), results.get(index)) else {
            continue;
        };
        let seq = match *result {
            Ingested::New(seq) | Ingested::Duplicate(seq) => seq,
        };
        insert_mail(tx, seq, event, mail, now)?;
    }
    Ok(results)
}

/// Insert a received message and its relay rows; false for a retransmission.
fn insert_mail(
    tx: &Transaction<'_>,
    seq: i64,
    event: &Event,
    mail: &Inbound,
    now: DateTime<Utc>,
) -> Result<bool> {
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO relay_messages
             (event_seq, dedup, mail_from, recipients, received, size, raw, keep_body, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            seq,
            mail.dedup,
            mail.mail_from,
            serde_json::to_string(&mail.recipients)?,
            mail.received,
            mail.raw.len() as i64,
            mail.raw,
            mail.keep_body,
            now.to_rfc3339()
        ])?;
    if inserted == 0 {
        return Ok(false);
    }
    let relay_id = tx.last_insert_rowid();
    if mail.relay {
        for recipient in &mail.recipients {
            queue_relay(tx, seq, event, relay_id, recipient, &mail.subject, now)?;
        }
    }
    Ok(true)
}

/// One outbox row that relays message `relay_id` to `recipient`.
fn queue_relay(
    tx: &Transaction<'_>,
    seq: i64,
    event: &Event,
    relay_id: i64,
    recipient: &str,
    subject: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let lower = recipient.to_lowercase();
    let key = MailKey {
        source: event.source.clone(),
        event_id: event.id.clone(),
        rule: RELAY_RULE.into(),
        recipient: lower.clone(),
    };
    let mail = Mail {
        recipient: lower.clone(),
        to: vec![recipient.to_owned()],
        cc: Vec::new(),
        reply_to: Vec::new(),
        subject: subject.to_owned(),
        text: String::new(),
        html: None,
        headers: Vec::new(),
    };
    tx.prepare_cached("INSERT OR IGNORE INTO outbox (event_seq, rule, recipient, mail, digest, state, next_attempt_at, created_at, relay_id)
         VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8)")?.execute(
        params![
            seq,
            RELAY_RULE,
            lower,
            serde_json::to_string(&mail)?,
            key.digest(),
            now.timestamp_millis(),
            now.to_rfc3339(),
            relay_id
        ],
    )?;
    Ok(())
}

/// (message id, event seq) of bodies that may go now.
fn finished(tx: &Transaction<'_>) -> Result<Vec<(i64, i64)>> {
    let mut stmt = tx.prepare_cached(
        "SELECT r.id, r.event_seq FROM relay_messages r JOIN events e ON e.seq = r.event_seq
         WHERE r.purged_at IS NULL AND r.keep_body = 0 AND e.state = 'done'
           AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_seq = r.event_seq AND o.state = 'queued')",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
}

fn purge_one(tx: &Transaction<'_>, id: i64, seq: i64, now: DateTime<Utc>) -> Result<()> {
    tx.prepare_cached("UPDATE relay_messages SET raw = NULL, purged_at = ?2 WHERE id = ?1")?
        .execute(params![id, now.to_rfc3339()])?;
    let envelope: Option<String> = tx
        .prepare_cached("SELECT envelope FROM events WHERE seq = ?1")?
        .query_row([seq], |r| r.get(0))
        .optional()?;
    if let Some(envelope) = envelope {
        let mut value: Value = serde_json::from_str(&envelope)?;
        if let Some(data) = value.get_mut("data") {
            scrub(data);
        }
        tx.prepare_cached("UPDATE events SET envelope = ?2 WHERE seq = ?1")?
            .execute(params![seq, value.to_string()])?;
    }
    // The rules' mail for this event may quote the text too: keep headers and subject only.
    tx.prepare_cached(
        "UPDATE outbox SET mail = json_remove(json_set(mail, '$.text', ''), '$.html')
         WHERE event_seq = ?1 AND state != 'queued'",
    )?
    .execute([seq])?;
    Ok(())
}

/// Remove what may hold a secret from an event's data: the text, a traceback, request data.
fn scrub(data: &mut Value) {
    let Some(object) = data.as_object_mut() else {
        return;
    };
    if object.contains_key("text") {
        object.insert("text".into(), Value::String(String::new()));
    }
    object.remove("request");
    if let Some(exception) = object.get_mut("exception").and_then(Value::as_object_mut) {
        exception.insert("traceback".into(), Value::String(String::new()));
        exception.insert("value".into(), Value::String(String::new()));
    }
    object.insert("purged".into(), Value::Bool(true));
}

/// Reads the bytes of relayed rows for delivery, on a connection of its own (opened on first use).
pub struct RelayBodies {
    path: PathBuf,
    conn: Mutex<Option<Connection>>,
}

impl RelayBodies {
    pub fn new(path: &Path) -> RelayBodies {
        RelayBodies {
            path: path.to_owned(),
            conn: Mutex::new(None),
        }
    }

    /// The body of outbox row `outbox_id` when it relays a received message; `None` for rule mail.
    pub fn body(&self, outbox_id: i64) -> std::result::Result<Option<RelayBody>, RelayBodyError> {
        let mut guard = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if guard.is_none() {
            *guard = Some(connect(&self.path)?);
        }
        let conn = guard.as_ref().expect("opened above");
        let found: Option<(String, String, Option<Vec<u8>>)> = conn
            .query_row(
                "SELECT r.mail_from, r.received, r.raw FROM outbox o
                 JOIN relay_messages r ON r.id = o.relay_id WHERE o.id = ?1",
                [outbox_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(StoreError::from)?;
        match found {
            None => Ok(None),
            Some((_, _, None)) => Err(RelayBodyError::Purged),
            Some((mail_from, received, Some(raw))) => Ok(Some(RelayBody {
                mail_from,
                received,
                raw,
            })),
        }
    }
}
