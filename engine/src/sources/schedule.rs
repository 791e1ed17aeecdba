//! The schedule source: journals a `herald.tick` for each scheduled rule at each instant of its cron line.
//!
//! A tick's id is `<rule>@<instant>` (source `herald:schedule`), so journaling the same
//! instant twice (a crash between the journal and the saved state, two processes) stores
//! it once. The store keeps, per rule, the instant through which ticks are journaled; at
//! start, instants missed while Herald was down get one catch-up tick for the latest of
//! them (`missed: latest`) or none (`missed: none`). A rule's first start ticks nothing.
//! A reload that adds, changes or removes a schedule takes effect at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};

use super::readiness::Part;
use crate::config::{Config, Missed, Schedule};
use crate::event::{self, Event, types};
use crate::store::Store;
use crate::store::writer::Writer;

/// The CloudEvents `source` of every tick.
pub const SOURCE: &str = "herald:schedule";

/// How often a sleeping scheduler looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// One enabled rule with a schedule, and what it does with missed ticks.
#[derive(Clone, Debug)]
pub struct Scheduled {
    pub rule: String,
    pub schedule: Schedule,
    pub missed: Missed,
}

/// The enabled rules of `config` that have a `schedule`.
pub fn scheduled(config: &Config) -> Vec<Scheduled> {
    config
        .rules
        .iter()
        .filter(|rule| rule.enabled)
        .filter_map(|rule| {
            Some(Scheduled {
                rule: rule.name.clone(),
                schedule: rule.schedule.clone()?,
                missed: rule.missed,
            })
        })
        .collect()
}

/// The tick event for `rule` at `instant`.
pub fn tick(rule: &Scheduled, instant: DateTime<Utc>) -> Event {
    let at = instant.to_rfc3339_opts(SecondsFormat::Secs, true);
    let envelope = serde_json::json!({
        "specversion": "1.0",
        "id": format!("{}@{at}", rule.rule),
        "source": SOURCE,
        "type": types::TICK,
        "time": at,
        "data": {"schedule": rule.schedule.source, "rule": rule.rule},
    });
    event::from_json(envelope, instant).expect("a tick is a valid event")
}

/// The catch-up instant at start: the latest instant in `(through, now]` under `latest`.
pub fn catch_up(
    rule: &Scheduled,
    through: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let through = through?;
    if rule.missed == Missed::None {
        return None;
    }
    let latest = rule
        .schedule
        .cron
        .after(&(now + chrono::Duration::nanoseconds(1)))
        .next_back()?;
    (latest > through).then_some(latest)
}

/// How long the scheduler waits before trying again after a refused write, at most.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The rule set in force: its generation (bumped at each reload) and its config.
pub type Current<'a> = &'a dyn Fn() -> (u64, Arc<Config>);

/// Run the scheduler on this thread until `stop` is set.
///
/// The scheduled rules are read from `current` and read again whenever its generation
/// changes (a reload), so a schedule added, changed or removed takes effect at once. A
/// write the store refuses is logged and tried again with a growing pause (ticks are
/// idempotent by id, so trying again never doubles one); `ready` says where it stands.
pub fn run(
    current: Current<'_>,
    mut store: Store,
    writer: Writer,
    stop: &AtomicBool,
    ready: &Part,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start the scheduler")?;
    let journal = |event: Event| {
        runtime
            .block_on(writer.journal(vec![event]))
            .map(drop)
            .map_err(anyhow::Error::from)
    };
    let mut plan: Option<Plan> = None;
    let mut pause = Duration::from_secs(1);
    while !stop.load(Ordering::SeqCst) {
        let (generation, config) = current();
        let step = match plan.as_mut() {
            Some(plan) if plan.generation == generation => plan.fire_due(&mut store, &journal),
            _ => Plan::start(generation, &config, plan.as_ref(), &mut store, &journal).map(
                |started| {
                    plan = Some(started);
                    ready.ready();
                },
            ),
        };
        match step {
            Ok(()) => {
                pause = Duration::from_secs(1);
                sleep_until(plan.as_ref().and_then(Plan::earliest), stop);
            }
            Err(err) => {
                let account =
                    crate::store::temporary_failure(&err).unwrap_or_else(|| format!("{err:#}"));
                tracing::warn!(
                    "the scheduler cannot journal a tick: {account}; trying again in {pause:?}"
                );
                ready.failing(account);
                sleep_for(pause, stop);
                pause = (pause * 2).min(MAX_BACKOFF);
            }
        }
    }
    Ok(())
}

/// The scheduled rules of one rule set and the next instant of each.
struct Plan {
    generation: u64,
    rules: Vec<Scheduled>,
    next: Vec<Option<DateTime<Utc>>>,
}

impl Plan {
    /// Catch up what each rule missed (per its `missed`) and note where each stands now. A rule
    /// whose schedule is unchanged since `before` (the plan of the set a reload replaced) goes on
    /// from where it was.
    fn start(
        generation: u64,
        config: &Config,
        before: Option<&Plan>,
        store: &mut Store,
        journal: &dyn Fn(Event) -> anyhow::Result<()>,
    ) -> anyhow::Result<Plan> {
        let rules = scheduled(config);
        let now = Utc::now();
        let mut next = Vec::with_capacity(rules.len());
        for rule in &rules {
            if let Some(slot) = before.and_then(|plan| plan.slot_of(rule)) {
                next.push(slot);
                continue;
            }
            if let Some(instant) = catch_up(rule, store.schedule_through(&rule.rule)?, now) {
                tracing::info!(rule = %rule.rule, %instant, "catching up a missed tick");
                journal(tick(rule, instant))?;
            }
            store.set_schedule_through(&rule.rule, now)?;
            next.push(rule.schedule.cron.after(&now).next());
        }
        Ok(Plan {
            generation,
            rules,
            next,
        })
    }

    /// Journal every tick that is due; a rule's next instant moves only once its tick is stored.
    fn fire_due(
        &mut self,
        store: &mut Store,
        journal: &dyn Fn(Event) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let due = Utc::now();
        for (rule, slot) in self.rules.iter().zip(self.next.iter_mut()) {
            let Some(instant) = *slot else { continue };
            if instant > due {
                continue;
            }
            journal(tick(rule, instant))?;
            store.set_schedule_through(&rule.rule, instant)?;
            *slot = rule.schedule.cron.after(&instant).next();
        }
        Ok(())
    }

    /// The next instant of `rule` in this plan, if it has the same rule on the same schedule.
    fn slot_of(&self, rule: &Scheduled) -> Option<Option<DateTime<Utc>>> {
        let at = self
            .rules
            .iter()
            .position(|r| r.rule == rule.rule && r.schedule.source == rule.schedule.source)?;
        Some(self.next[at])
    }

    fn earliest(&self) -> Option<DateTime<Utc>> {
        self.next.iter().flatten().min().copied()
    }
}

/// Sleep for `pause`, waking to look at `stop`.
fn sleep_for(pause: Duration, stop: &AtomicBool) {
    let until = std::time::Instant::now() + pause;
    while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < until {
        std::thread::sleep(STOP_POLL.min(until - std::time::Instant::now()));
    }
}

/// Sleep until `instant` (or for good without one), waking to look at `stop`.
fn sleep_until(instant: Option<DateTime<Utc>>, stop: &AtomicBool) {
    let left = instant.map_or(STOP_POLL, |at| {
        (at - Utc::now()).to_std().unwrap_or(Duration::ZERO)
    });
    if !stop.load(Ordering::SeqCst) {
        std::thread::sleep(left.min(STOP_POLL));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(cron: &str, missed: Missed) -> Scheduled {
        Scheduled {
            rule: "digest".into(),
            schedule: Schedule {
                source: cron.into(),
                cron: cron.parse().unwrap(),
            },
            missed,
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn latest_catches_up_the_most_recent_missed_instant_only() {
        let daily = rule("0 0 8 * * *", Missed::Latest);
        let now = at("2026-11-28T09:00:00Z");
        let missed = catch_up(&daily, Some(at("2026-11-25T09:00:00Z")), now);
        assert_eq!(missed, Some(at("2026-11-28T08:00:00Z")));
        // Nothing missed since the last instant journaled.
        assert_eq!(
            catch_up(&daily, Some(at("2026-11-28T08:00:00Z")), now),
            None
        );
        // An instant exactly now counts as missed.
        assert_eq!(
            catch_up(
                &daily,
                Some(at("2026-11-27T08:00:00Z")),
                at("2026-11-28T08:00:00Z")
            ),
            Some(at("2026-11-28T08:00:00Z"))
        );
    }

    #[test]
    fn none_and_a_first_start_catch_nothing_up() {
        let now = at("2026-11-28T09:00:00Z");
        let none = rule("0 0 8 * * *", Missed::None);
        assert_eq!(catch_up(&none, Some(at("2026-11-20T00:00:00Z")), now), None);
        let latest = rule("0 0 8 * * *", Missed::Latest);
        assert_eq!(catch_up(&latest, None, now), None);
    }

    #[test]
    fn a_tick_is_addressed_to_its_rule_with_an_id_from_the_instant() {
        let tick = tick(
            &rule("0 0 8 * * *", Missed::Latest),
            at("2026-11-28T08:00:00Z"),
        );
        assert_eq!(tick.id, "digest@2026-11-28T08:00:00Z");
        assert_eq!(tick.source, SOURCE);
        assert_eq!(tick.time_rfc3339(), "2026-11-28T08:00:00Z");
        let event::EventData::Tick(data) = tick.data else {
            panic!("not a tick: {:?}", tick.data)
        };
        assert_eq!(
            (data.rule.as_str(), data.schedule.as_str()),
            ("digest", "0 0 8 * * *")
        );
    }

    #[test]
    fn a_refused_tick_keeps_its_instant_due_and_the_next_try_journals_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("herald.db")).unwrap();
        let due = at("2026-11-28T08:00:00Z");
        let mut plan = Plan {
            generation: 0,
            rules: vec![rule("0 0 8 * * *", Missed::Latest)],
            next: vec![Some(due)],
        };
        let refused = |_: Event| -> anyhow::Result<()> { anyhow::bail!("disk full") };
        assert!(plan.fire_due(&mut store, &refused).is_err());
        assert_eq!(plan.next, [Some(due)], "the refused instant is still due");
        assert_eq!(store.schedule_through("digest").unwrap(), None);

        let journaled = std::cell::RefCell::new(Vec::new());
        let taken = |event: Event| -> anyhow::Result<()> {
            journaled.borrow_mut().push(event.id);
            Ok(())
        };
        plan.fire_due(&mut store, &taken).unwrap();
        assert_eq!(*journaled.borrow(), ["digest@2026-11-28T08:00:00Z"]);
        assert_eq!(store.schedule_through("digest").unwrap(), Some(due));
        assert!(plan.next[0].unwrap() > due);
    }
}
