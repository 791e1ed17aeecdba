//! Runs the stages in order: pending journal events through evaluation into the outbox.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::directory;
use crate::evaluate::{Evaluator, KvRead, RuleOutcome};
use crate::event::Event;
use crate::store::{Committed, HealthPolicy, Store};

/// Pending events taken from the journal per round.
const BATCH: usize = 64;

/// One evaluated event and what was committed for it.
pub struct Evaluated {
    pub event: Event,
    pub outcomes: Vec<RuleOutcome>,
    /// Subscribed rules that were not run because they are quarantined.
    pub skipped_rules: Vec<String>,
    pub committed: Committed,
}

/// Evaluate every pending event and commit each in its own transaction.
/// Quarantined rules are skipped; a rule that fails `quarantine_after` times
/// in a row is quarantined and the admins are told once.
/// `each` sees every event as it is committed (for progress and reports).
pub fn evaluate_pending(
    store: &mut Store,
    evaluator: &Evaluator,
    quarantine_after: u32,
    each: impl FnMut(&Evaluated),
) -> anyhow::Result<usize> {
    evaluate_pending_while(store, evaluator, quarantine_after, || true, each)
}

/// [`evaluate_pending`], asking `go_on` before each event: once it says no, the events
/// not started stay pending (for `herald serve` stopping on SIGTERM). The rules that rebuild
/// OMERO's stock senders skip the events of stock mails whose original was relayed, whichever
/// command evaluates them (`serve`, or `deliver`/`send` beside it).
///
/// Evaluations are committed in groups (one written transaction, each event's rows whole):
/// up to [`COMMIT_GROUP`] events or [`COMMIT_WINDOW`] of work. A group ends early after an
/// event whose rules wrote key-value data or failed, so the next event reads those writes
/// and sees a rule that failure quarantined, exactly as if each event committed alone.
pub fn evaluate_pending_while(
    store: &mut Store,
    evaluator: &Evaluator,
    quarantine_after: u32,
    go_on: impl Fn() -> bool,
    mut each: impl FnMut(&Evaluated),
) -> anyhow::Result<usize> {
    let kv: Arc<dyn KvRead> = store.kv_reader()?;
    let stock_rules: Vec<String> = evaluator
        .rules()
        .iter()
        .filter(|rule| rule.stock_sender)
        .map(|rule| rule.name.clone())
        .collect();
    let admins = admin_addresses(evaluator);
    let health = HealthPolicy {
        quarantine_after,
        notify: &admins,
    };
    let mut done = 0;
    loop {
        let pending = store.pending(BATCH)?;
        if pending.is_empty() {
            return Ok(done);
        }
        let mut group = Group::new(store)?;
        for item in pending {
            if !go_on() {
                done += group.commit(store, &health, &mut each)?;
                return Ok(done);
            }
            if group.add(store, evaluator, &kv, &stock_rules, item)? {
                done += group.commit(store, &health, &mut each)?;
                group = Group::new(store)?;
            }
        }
        done += group.commit(store, &health, &mut each)?;
    }
}

/// At most this many evaluated events share one commit.
pub const COMMIT_GROUP: usize = 64;

/// Nor more than this much evaluation, so that mail is not held back for a group.
pub const COMMIT_WINDOW: Duration = Duration::from_millis(20);

/// Evaluated events waiting for their common commit.
struct Group {
    items: Vec<(crate::store::Pending, Vec<RuleOutcome>, Vec<String>)>,
    quarantined: HashSet<String>,
    started: Instant,
}

impl Group {
    fn new(store: &Store) -> anyhow::Result<Group> {
        Ok(Group {
            items: Vec::new(),
            quarantined: store.quarantined()?,
            started: Instant::now(),
        })
    }

    /// Evaluate `item` into the group; true when the group must be committed now.
    fn add(
        &mut self,
        store: &mut Store,
        evaluator: &Evaluator,
        kv: &Arc<dyn KvRead>,
        stock_rules: &[String],
        item: crate::store::Pending,
    ) -> anyhow::Result<bool> {
        let quarantined = &self.quarantined;
        let relayed = stock_mail_relayed(&item.event);
        let stock = |rule: &str| relayed && stock_rules.iter().any(|r| r == rule);
        let (outcomes, mut skipped_rules) = evaluator.evaluate_skipping(&item.event, kv, |rule| {
            quarantined.contains(rule) || stock(rule)
        });
        skipped_rules.retain(|rule| !stock(rule));
        for rule in &skipped_rules {
            tracing::warn!(
                rule,
                event = %item.event.id,
                "rule is quarantined, so it was skipped; release it with `herald rules release {rule}`"
            );
            store.count_skipped(rule)?;
        }
        let ends = outcomes
            .iter()
            .any(|o| o.result.is_err() || !o.kv_writes.is_empty());
        self.items.push((item, outcomes, skipped_rules));
        Ok(ends || self.items.len() >= COMMIT_GROUP || self.started.elapsed() >= COMMIT_WINDOW)
    }

    /// Commit every event of the group in one transaction; `each` then sees each one.
    fn commit(
        self,
        store: &mut Store,
        health: &HealthPolicy<'_>,
        each: &mut impl FnMut(&Evaluated),
    ) -> anyhow::Result<usize> {
        if self.items.is_empty() {
            return Ok(0);
        }
        crate::crashpoint::reached(crate::crashpoint::Point::BeforeEvaluationCommit);
        let batch: Vec<_> = self
            .items
            .iter()
            .map(|(item, outcomes, _)| (item.seq, &item.event, outcomes.as_slice()))
            .collect();
        let committed = store.commit_evaluations(&batch, health, Utc::now())?;
        let count = self.items.len();
        for ((item, outcomes, skipped_rules), committed) in self.items.into_iter().zip(committed) {
            for q in &committed.quarantined {
                tracing::error!(rule = %q.rule, failures = q.failures, reason = %q.reason, "rule quarantined; admins notified");
            }
            each(&Evaluated {
                event: item.event,
                outcomes,
                skipped_rules,
                committed,
            });
        }
        Ok(count)
    }
}

/// True for the event of an OMERO stock mail that the SMTP listener relayed as it came
/// (`smtp_listener.omero_mail: relay`): the admins already have the original.
fn stock_mail_relayed(event: &Event) -> bool {
    event.source.starts_with("smtp://")
        && event.data_json.pointer("/mail/skip_stock_rules") == Some(&serde_json::Value::Bool(true))
}

/// The admins' valid addresses: who hears of a quarantined rule.
fn admin_addresses(evaluator: &Evaluator) -> Vec<String> {
    let dir = evaluator.directory();
    dir.admins()
        .into_iter()
        .filter_map(|user| directory::valid_email(user).map(|address| address.to_string()))
        .collect()
}
