//! The recorder: one thread that owns the store during a delivery run and commits in groups.
//!
//! Each session sends the outcome of the message it just finished, together with
//! its wish for the next row, and waits for the answer. Whatever is waiting when
//! the recorder looks is committed in one transaction (one fsync): the outcomes
//! first, then the new leases. A session therefore starts its next MAIL FROM only
//! after its previous outcome is on disk, and a crash can leave unrecorded at
//! most the one message in flight on each session.
//!
//! Once a claim finds fewer due rows than were asked for, the run is drained: later
//! requests get their outcomes recorded but no new row, so the run ends within one
//! message per session. A long-running worker then starts the next run with every
//! session, instead of one session carrying a trickle of new rows alone while the
//! others, told "nothing due" once, have already left.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::Summary;
use crate::store::{Attempt, OutboxRow, Store};

/// What a session asks of the recorder.
pub struct Request {
    /// The outcome of the session's previous message, committed before anything else.
    pub done: Option<Attempt>,
    /// Whether the session wants another row (false when it is stopping).
    pub more: bool,
    pub reply: oneshot::Sender<Reply>,
}

/// The recorder's answer, sent once the commit is durable.
pub enum Reply {
    /// The outcome is committed and this row is leased to the session.
    Row(Box<OutboxRow>),
    /// The outcome is committed; nothing (more) is due.
    Empty,
    /// The store failed: the session stops.
    Failed,
}

/// Serve requests until every session has hung up. Returns what was recorded and the
/// first store error, if any (after one, every request is answered `Failed`).
pub fn run(
    store: &mut Store,
    mut requests: mpsc::UnboundedReceiver<Request>,
    lease: Duration,
    start: DateTime<Utc>,
) -> (Summary, anyhow::Result<()>) {
    let mut summary = Summary::default();
    let mut failed = None;
    let mut drained = false;
    while let Some(first) = requests.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(more) = requests.try_recv() {
            batch.push(more);
        }
        if failed.is_some() {
            answer(batch, Vec::new(), false);
            continue;
        }
        let attempts: Vec<Attempt> = batch.iter_mut().filter_map(|r| r.done.take()).collect();
        let wanted = match drained {
            true => 0,
            false => batch.iter().filter(|r| r.more).count(),
        };
        if !attempts.is_empty() {
            crate::crashpoint::reached(crate::crashpoint::Point::BeforeDeliveryRecord);
        }
        // Lease from the real clock, so a long run never hands out leases that have expired.
        let now = Utc::now().max(start);
        match store.record_and_claim(&attempts, wanted, now, lease) {
            Ok(rows) => {
                drained |= rows.len() < wanted;
                for attempt in &attempts {
                    summary.count(attempt);
                    crate::metrics::delivery(attempt.outcome.as_str());
                }
                answer(batch, rows, true);
            }
            Err(err) => {
                failed = Some(err);
                answer(batch, Vec::new(), false);
            }
        }
    }
    (summary, failed.map_or(Ok(()), |err| Err(err.into())))
}

/// Hand each session that wanted a row one of `rows` (or `Empty`), or `Failed` to all.
fn answer(batch: Vec<Request>, rows: Vec<OutboxRow>, ok: bool) {
    let mut rows = rows.into_iter();
    for request in batch {
        let reply = match (ok, request.more) {
            (false, _) => Reply::Failed,
            (true, false) => Reply::Empty,
            (true, true) => rows
                .next()
                .map_or(Reply::Empty, |row| Reply::Row(Box::new(row))),
        };
        // A session that went away (its task ended) needs no answer.
        let _ = request.reply.send(reply);
    }
}
