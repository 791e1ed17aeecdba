//! Evaluate: run every rule subscribed to an event, each in a fresh sandbox instance.

mod check;
pub mod convert;
pub(crate) mod failure;
pub mod host;
pub(crate) mod kv;
pub(crate) mod limit;
pub(crate) mod module;
pub mod output;
pub mod sandbox;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

pub use check::ConfigRefused;
pub use failure::Failure;

/// How often a rule whose deadline fired on a starved thread is run again.
pub const STARVED_RETRIES: u32 = 2;

/// Whether `result` is a deadline that fired while the thread got under half of `wall_time`
/// of CPU (`cpu`; unknown counts as busy).
fn starved(result: &Result<Resolved, Failure>, cpu: Option<Duration>, wall_time: Duration) -> bool {
    matches!(result, Err(Failure::Deadline { .. })) && cpu.is_some_and(|cpu| cpu < wall_time / 2)
}

/// The CPU time this thread has used (guest code runs on the calling thread).
fn thread_cpu_time() -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; CLOCK_THREAD_CPUTIME_ID needs nothing else.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    (read == 0).then(|| Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
}
pub use host::LogLine;
pub use kv::{KvRead, KvWrite, MemoryKv};
pub use output::{Resolved, SkipKind, Skipped};

use crate::config::{Config, Limits, ModuleRef, RuleConfig};
use crate::directory::Directory;
use crate::event::{Event, EventData, types};
use host::{HostState, Invocation};
use sandbox::{Prepared, Sandbox};

/// Host bindings generated from `sdk/wit/rule.wit`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "rule",
        imports: { default: trappable },
    });
}

/// One loaded rule: its config and its pre-linked component.
pub struct LoadedRule {
    pub name: String,
    pub on: Vec<String>,
    pub limits: Limits,
    /// One of the embedded rules that rebuild OMERO's stock senders (`builtin::STOCK_SENDERS`).
    pub stock_sender: bool,
    config_json: Arc<str>,
    prepared: Prepared,
}

impl LoadedRule {
    /// Whether this rule runs for `event`: its type is in `on`, or it is
    /// this rule's own scheduled tick.
    pub fn subscribed(&self, event: &Event) -> bool {
        if let (types::TICK, EventData::Tick(tick)) = (event.kind.as_str(), &event.data) {
            return tick.rule == self.name;
        }
        self.on.contains(&event.kind)
    }
}

/// What one rule did with one event.
#[derive(Debug)]
pub struct RuleOutcome {
    pub rule: String,
    pub result: Result<Resolved, Failure>,
    pub logs: Vec<LogLine>,
    /// Store writes, to commit only when `result` is Ok.
    pub kv_writes: Vec<KvWrite>,
    pub fuel_used: u64,
    pub elapsed: Duration,
}

/// One invocation seen from the author's side: the outcome, the memory it took, and
/// where it trapped.
#[derive(Debug)]
pub struct Trial {
    pub outcome: RuleOutcome,
    /// The largest linear memory the instance had, in bytes.
    pub memory_bytes: u64,
    /// The wasm backtrace of a trap (a panic, a limit), innermost frame first.
    pub backtrace: Option<String>,
}

/// The rules of one config, compiled and ready to run.
pub struct Evaluator {
    rules: Vec<LoadedRule>,
    directory: Arc<Directory>,
}

impl Evaluator {
    /// Load every enabled rule of `config`; fails naming the rule that cannot load.
    pub fn new(config: &Config, directory: Arc<Directory>) -> anyhow::Result<Evaluator> {
        let enabled: Vec<&RuleConfig> = config.rules.iter().filter(|r| r.enabled).collect();
        let cache_dir = Some(config.sandbox.cache_dir.clone());
        Self::from_rules(&enabled, config.sandbox.limits, cache_dir, directory).map_err(|err| {
            match err
                .downcast_ref::<ConfigRefused>()
                .and_then(|r| check::locate(config, r))
            {
                Some(located) => located.into(),
                None => err,
            }
        })
    }

    /// Load `rules` (no herald.yaml needed: `herald rule run`, `herald test`); the pool's
    /// slots fit the largest memory limit among them and `defaults`.
    pub fn from_rules(
        rules: &[&RuleConfig],
        defaults: Limits,
        cache_dir: Option<std::path::PathBuf>,
        directory: Arc<Directory>,
    ) -> anyhow::Result<Evaluator> {
        let max_memory = rules
            .iter()
            .map(|r| r.limits.memory_bytes)
            .chain([defaults.memory_bytes])
            .max()
            .unwrap_or(16 << 20);
        let sandbox = Sandbox::new(max_memory, cache_dir);
        let rules = rules
            .iter()
            .map(|rule| load_rule(&sandbox, rule, &directory))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Evaluator { rules, directory })
    }

    pub fn rules(&self) -> &[LoadedRule] {
        &self.rules
    }

    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Whether any rule is subscribed to `event` (one that none wants needs no evaluation).
    pub fn wants(&self, event: &Event) -> bool {
        self.rules.iter().any(|rule| rule.subscribed(event))
    }

    /// Run every subscribed rule on `event`. A failing rule fails alone.
    pub fn evaluate(&self, event: &Event, kv: &Arc<dyn KvRead>) -> Vec<RuleOutcome> {
        self.evaluate_skipping(event, kv, |_| false).0
    }

    /// Like [`Evaluator::evaluate`], but rules for which `skip` says yes (the
    /// quarantined ones) are not run; their names come back second.
    pub fn evaluate_skipping(
        &self,
        event: &Event,
        kv: &Arc<dyn KvRead>,
        skip: impl Fn(&str) -> bool,
    ) -> (Vec<RuleOutcome>, Vec<String>) {
        let wit_event = convert::event(event);
        let mut outcomes = Vec::new();
        let mut skipped = Vec::new();
        for rule in self.rules.iter().filter(|rule| rule.subscribed(event)) {
            if skip(&rule.name) {
                skipped.push(rule.name.clone());
            } else {
                outcomes.push(self.run(rule, event, &wit_event, kv));
            }
        }
        (outcomes, skipped)
    }

    /// Run one loaded rule on `event` whether or not it is subscribed, with what a rule
    /// author wants to see besides the outcome (`herald test`, `herald rule run`).
    pub fn trial(&self, rule: &LoadedRule, event: &Event, kv: &Arc<dyn KvRead>) -> Trial {
        self.run_traced(rule, event, &convert::event(event), kv)
    }

    /// Run `rule` on `event`. A deadline that fired while this thread got less than half the
    /// wall time of CPU says the host was starved (a loaded machine), not that the rule was slow:
    /// the rule is run again, fresh, up to [`STARVED_RETRIES`] times, so a busy machine never
    /// turns into a failed rule and a missing mail. A rule that really spins uses its CPU and
    /// fails at once.
    fn run(
        &self,
        rule: &LoadedRule,
        event: &Event,
        wit_event: &bindings::herald::rule::types::Event,
        kv: &Arc<dyn KvRead>,
    ) -> RuleOutcome {
        let mut retries = 0;
        loop {
            let cpu_before = thread_cpu_time();
            let outcome = self.run_traced(rule, event, wit_event, kv).outcome;
            let cpu = thread_cpu_time()
                .zip(cpu_before)
                .map(|(after, before)| after.saturating_sub(before));
            if !starved(&outcome.result, cpu, rule.limits.wall_time) || retries == STARVED_RETRIES {
                return outcome;
            }
            retries += 1;
            tracing::warn!(
                rule = %rule.name,
                event = %event.id,
                ?cpu,
                "the rule hit its wall-time deadline with little CPU: the machine was busy, not the rule; running it again"
            );
        }
    }

    fn run_traced(
        &self,
        rule: &LoadedRule,
        event: &Event,
        wit_event: &bindings::herald::rule::types::Event,
        kv: &Arc<dyn KvRead>,
    ) -> Trial {
        let started = Instant::now();
        let state = HostState::new(&Invocation {
            rule: &rule.name,
            config_json: rule.config_json.clone(),
            directory: self.directory.clone(),
            kv: kv.clone(),
            limits: &rule.limits,
            time_unix_ms: event.time.timestamp_millis(),
            seed: seed(event, &rule.name),
        });
        let ran = rule.prepared.invoke(state, wit_event, &rule.limits);
        let result = ran
            .result
            .and_then(|messages| output::resolve(messages, &self.directory, &rule.limits));
        let mut logs = ran.state.logs.clone();
        if ran.state.logs_dropped > 0 {
            logs.push(LogLine {
                level: "warn",
                message: format!(
                    "{} log lines dropped (limits.max_log)",
                    ran.state.logs_dropped
                ),
            });
        }
        let memory_bytes = ran.state.peak_memory();
        let kv_writes = if result.is_ok() {
            ran.state.kv.into_writes()
        } else {
            Vec::new()
        };
        let outcome = RuleOutcome {
            rule: rule.name.clone(),
            result,
            logs,
            kv_writes,
            fuel_used: ran.fuel_used,
            elapsed: started.elapsed(),
        };
        Trial {
            outcome,
            memory_bytes,
            backtrace: ran.backtrace,
        }
    }
}

fn load_rule(
    sandbox: &Sandbox,
    rule: &RuleConfig,
    directory: &Arc<Directory>,
) -> anyhow::Result<LoadedRule> {
    let wasm = module_bytes(&rule.module)
        .with_context(|| format!("rule `{}`: cannot read module {}", rule.name, rule.module))?;
    warn_if_python_limits_are_rusts(rule, &wasm);
    let prepared = sandbox
        .prepare(&wasm, &rule.limits)
        .with_context(|| format!("rule `{}`: cannot load module {}", rule.name, rule.module))?;
    check::check(&prepared, rule, directory)?;
    let stock_sender = matches!(&rule.module, ModuleRef::Builtin(name)
        if crate::builtin::STOCK_SENDERS.contains(&name.as_str()));
    Ok(LoadedRule {
        name: rule.name.clone(),
        on: rule.on.clone(),
        limits: rule.limits,
        stock_sender,
        config_json: rule.config.to_string().into(),
        prepared,
    })
}

/// A Python component whose entry lacks `lang: python` gets Rust's smaller limits: say so.
fn warn_if_python_limits_are_rusts(rule: &RuleConfig, wasm: &[u8]) {
    if rule.limits != rule.limits.for_python() && module::is_python_component(wasm) {
        tracing::warn!(
            "rule `{}` is a Python rule (componentize-py) but its limits are below a Python rule's \
             defaults (fuel 5e8, memory 64 MiB, wall time 1 s); add `lang: python` to its entry \
             in herald.yaml, or raise its `limits:`",
            rule.name
        );
    }
}

fn module_bytes(module: &ModuleRef) -> anyhow::Result<Vec<u8>> {
    match module {
        ModuleRef::Builtin(name) => crate::builtin::wasm(name)
            .map(<[u8]>::to_vec)
            .with_context(|| format!("no builtin rule `{name}`")),
        ModuleRef::Path(path) => module::read_component(path).map_err(anyhow::Error::from),
    }
}

/// A per-(event, rule) seed for the rule's random numbers.
fn seed(event: &Event, rule: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(event.source.as_bytes())
        .chain_update([0])
        .chain_update(event.id.as_bytes())
        .chain_update([0])
        .chain_update(rule.as_bytes())
        .finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_deadline_with_little_cpu_counts_as_starved() {
        let wall = Duration::from_millis(100);
        let deadline = Err(Failure::Deadline { wall_time: wall });
        assert!(starved(&deadline, Some(Duration::from_millis(10)), wall));
        // A rule that spun used its CPU: a real failure.
        assert!(!starved(&deadline, Some(Duration::from_millis(95)), wall));
        // CPU time unknown: a real failure.
        assert!(!starved(&deadline, None, wall));
        let ok = Ok(Resolved {
            mails: vec![],
            skipped: vec![],
        });
        assert!(!starved(&ok, Some(Duration::ZERO), wall));
    }

    #[test]
    fn the_thread_cpu_clock_moves_with_work_not_with_sleep() {
        let start = thread_cpu_time().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let slept = thread_cpu_time().unwrap() - start;
        assert!(slept < Duration::from_millis(25), "{slept:?}");
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(0);
        }
        assert!(thread_cpu_time().unwrap() - start >= Duration::from_millis(5));
    }
}
