//! The background stages of `herald serve`: evaluation and delivery, each on its own thread.
//!
//! Evaluation runs the wasm rules, which must never run on a tokio worker (the WASI
//! sync shim would panic there), so it has a plain thread, woken when ingest
//! journals events. Delivery reuses the `Deliverer` (sessions on its own tokio
//! runtime, outcomes committed by the store writer with ingest), woken when evaluation
//! commits outbox rows, and looking again every `delivery.poll_interval` for rows
//! that became due (retries) or were released by another worker.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::live::Live;
use super::wake::Wake;
use crate::deliver::{Deliverer, shutdown};
use crate::store::Store;

/// What wakes the stages, and what they tell each other.
#[derive(Default)]
pub struct Bells {
    /// Rung by ingest after a commit that journaled new events.
    pub journaled: Wake,
    /// Rung by evaluation after a commit that queued mail, and at a stop.
    pub queued: Wake,
}

impl Bells {
    /// Wake every stage (at a stop, so each sees the flag at once).
    pub fn ring_all(&self) {
        self.journaled.ring();
        self.queued.ring();
    }
}

/// How often evaluation looks for pending events even when not woken.
const EVALUATE_POLL: Duration = Duration::from_secs(1);

/// Evaluate pending events until a stop is asked for. Each event is committed in its own
/// transaction; at a stop the event in flight is finished and the others stay pending for the
/// next start (past the grace period even the one in flight is left: it never committed).
///
/// The rule set is taken from `live` before each pass; a reload ends the pass after the event
/// in flight commits, so every event is evaluated once, by the old set or the new one whole.
pub fn evaluate(mut store: Store, live: Arc<Live>, bells: Arc<Bells>) {
    while !shutdown::requested(shutdown::global()) {
        let generation = live.generation();
        let set = live.current();
        let quarantine_after = set.config.sandbox.quarantine_after;
        let mut queued = false;
        let going_on =
            || !shutdown::requested(shutdown::global()) && live.generation() == generation;
        let done = crate::pipeline::evaluate_pending_while(
            &mut store,
            &set.evaluator,
            quarantine_after,
            going_on,
            |done| {
                crate::metrics::evaluated(done.outcomes.iter().map(|o| crate::metrics::RuleRun {
                    rule: &o.rule,
                    ok: o.result.is_ok(),
                    seconds: o.elapsed.as_secs_f64(),
                    fuel: o.fuel_used,
                }));
                if done.committed.queued > 0 {
                    queued = true;
                    bells.queued.ring();
                }
            },
        );
        match done {
            Ok(n) if n > 0 => tracing::debug!(events = n, queued, "evaluated pending events"),
            Ok(_) => {}
            Err(err) => match crate::store::temporary_failure(&err) {
                Some(account) => tracing::warn!("evaluation: {account}; trying again"),
                None => tracing::error!("evaluation failed: {err:#}; trying again"),
            },
        }
        if live.generation() != generation {
            continue; // a reload: the rest pending goes to the new set at once
        }
        bells.journaled.wait(EVALUATE_POLL);
    }
}

/// Deliver due rows until a stop is asked for; sessions in flight then finish within the grace.
pub fn deliver(mut store: Store, deliverer: Deliverer, poll: Duration, bells: Arc<Bells>) {
    while !deliverer.stopping() {
        match deliverer.deliver_due(&mut store, Utc::now()) {
            Ok(summary) if summary.sent + summary.failed > 0 => tracing::info!(
                sent = summary.sent,
                failed = summary.failed,
                "delivery round"
            ),
            Ok(_) => {}
            Err(err) => match crate::store::temporary_failure(&err) {
                Some(account) => tracing::warn!("delivery: {account}; trying again"),
                None => tracing::error!("delivery failed: {err:#}; trying again"),
            },
        }
        bells.queued.wait(poll);
    }
    deliverer.close_idle();
}
