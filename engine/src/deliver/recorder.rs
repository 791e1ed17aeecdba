//! The recorder: one thread that owns the store during a delivery run and commits in groups.
//!
//! Each session holds the row it is sending and one more. When a message is done it
//! sends its outcome, names the held row it sends next and asks for another, then
//! writes that next message's envelope and body while the recorder commits. Whatever
//! is waiting when the recorder looks is committed in one transaction: the outcomes, the
//! rows now being sent, the new leases. The session sends the next final `.` only once
//! that commit is done, so a killed process can leave unrecorded at most the one message
//! whose `.` went out on each session, and only rows marked as being sent are reported
//! interrupted. On a run's own connection the commit is a written one (`Store::written`):
//! in the WAL at once, synced by the flusher within 100 ms, so only a power loss inside
//! that window can send some of its messages again. Through `herald serve`'s writer it is
//! synced before the answer.
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
use crate::store::writer::Writer;
use crate::store::{Attempt, Claimed, Held, OutboxRow, Round, Store};

/// Where the recorder commits: the run's own connection, or `herald serve`'s one writer,
/// which commits the round together with whatever ingest is journaling (one commit for both).
pub enum Ledger<'a> {
    Store(&'a mut Store),
    Writer(&'a Writer),
}

impl Ledger<'_> {
    fn commit(
        &mut self,
        round: &Round<'_>,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Claimed> {
        match self {
            Ledger::Store(store) => Ok(store.record_and_claim(round, now, lease)?),
            Ledger::Writer(writer) => Ok(writer.record(round, now, lease)?),
        }
    }
}

/// What a session asks of the recorder.
pub struct Request {
    /// The outcome of the session's previous message, committed before anything else.
    pub done: Option<Attempt>,
    /// The held row whose final `.` the session sends once this request is answered.
    pub sending: Option<Held>,
    /// Held rows the session gives back unsent (it is stopping).
    pub released: Vec<Held>,
    /// How many more rows the session wants to hold (0 when it is stopping).
    pub want: usize,
    pub reply: oneshot::Sender<Reply>,
}

/// The recorder's answer, sent once the commit is done.
pub enum Reply {
    /// Committed. `rows` are leased to the session (none: nothing more is due); `go` says
    /// whether the `sending` row may be sent (false: its lease was lost meanwhile).
    Rows { rows: Vec<OutboxRow>, go: bool },
    /// The store failed: the session stops.
    Failed,
}

/// Serve requests until every session has hung up. Returns what was recorded and the
/// first store error, if any (after one, every request is answered `Failed`).
pub fn run(
    mut ledger: Ledger<'_>,
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
            fail_all(batch);
            continue;
        }
        let attempts: Vec<Attempt> = batch.iter_mut().filter_map(|r| r.done.take()).collect();
        let sending: Vec<Held> = batch.iter().filter_map(|r| r.sending).collect();
        let released: Vec<Held> = batch.iter().flat_map(|r| r.released.clone()).collect();
        let wanted = match drained {
            true => 0,
            false => batch.iter().map(|r| r.want).sum(),
        };
        if !attempts.is_empty() {
            crate::crashpoint::reached(crate::crashpoint::Point::BeforeDeliveryRecord);
        }
        let round = Round {
            attempts: &attempts,
            sending: &sending,
            released: &released,
            claims: wanted,
        };
        // Lease from the real clock, so a long run never hands out leases that have expired.
        let now = Utc::now().max(start);
        match ledger.commit(&round, now, lease) {
            Ok(claimed) => {
                drained |= claimed.rows.len() < wanted;
                for attempt in &attempts {
                    summary.count(attempt);
                    crate::metrics::delivery(attempt.outcome.as_str());
                }
                for detail in claimed.unreadable {
                    summary.count_unreadable(detail);
                    crate::metrics::delivery("unreadable");
                }
                answer(batch, claimed.rows, &claimed.lost);
            }
            Err(err) => {
                failed = Some(err);
                fail_all(batch);
            }
        }
    }
    (summary, failed.map_or(Ok(()), Err))
}

/// Hand each session the rows it wanted, in order, while they last.
fn answer(batch: Vec<Request>, rows: Vec<OutboxRow>, lost: &[i64]) {
    let mut rows = rows.into_iter();
    for request in batch {
        let go = request.sending.is_none_or(|held| !lost.contains(&held.id));
        let rows = rows.by_ref().take(request.want).collect();
        // A session that went away (its task ended) needs no answer.
        let _ = request.reply.send(Reply::Rows { rows, go });
    }
}

fn fail_all(batch: Vec<Request>) {
    for request in batch {
        let _ = request.reply.send(Reply::Failed);
    }
}
