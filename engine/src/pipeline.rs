//! Runs the stages in order: pending journal events through evaluation into the outbox.

use std::sync::Arc;

use chrono::Utc;

use crate::evaluate::{Evaluator, KvRead, RuleOutcome};
use crate::event::Event;
use crate::store::{Committed, Store};

/// Pending events taken from the journal per round.
const BATCH: usize = 64;

/// One evaluated event and what was committed for it.
pub struct Evaluated {
    pub event: Event,
    pub outcomes: Vec<RuleOutcome>,
    pub committed: Committed,
}

/// Evaluate every pending event and commit each in its own transaction.
/// `each` sees every event as it is committed (for progress and reports).
pub fn evaluate_pending(
    store: &mut Store,
    evaluator: &Evaluator,
    mut each: impl FnMut(&Evaluated),
) -> anyhow::Result<usize> {
    let kv: Arc<dyn KvRead> = store.kv_reader()?;
    let mut done = 0;
    loop {
        let pending = store.pending(BATCH)?;
        if pending.is_empty() {
            return Ok(done);
        }
        for item in pending {
            let outcomes = evaluator.evaluate(&item.event, &kv);
            let committed =
                store.commit_evaluation(item.seq, &item.event, &outcomes, Utc::now())?;
            each(&Evaluated {
                event: item.event,
                outcomes,
                committed,
            });
            done += 1;
        }
    }
}
