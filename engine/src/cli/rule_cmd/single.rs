//! `herald rule run`: one rule, the events of one file, no herald.yaml; and what `herald test` shares.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use super::{python, usage};
use crate::cli::report::{self, Detail, EventReport};
use crate::cli::{CliError, Outcome};
use crate::config::{Limits, Missed, ModuleRef, RuleConfig};
use crate::directory::Directory;
use crate::evaluate::{Evaluator, Failure, KvRead, MemoryKv, Trial};
use crate::event::{Event, SizeCaps};

/// The sample directory a rule runs against when none is given (etc/directory.yaml).
const SAMPLE_DIRECTORY: &str = include_str!("../../../../etc/directory.yaml");

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The rule's component (`herald rule build` writes NAME.wasm).
    wasm: PathBuf,
    /// The events: one JSON event, a JSON array, or JSON Lines.
    #[arg(long)]
    event: PathBuf,
    /// The rule's config, as JSON or YAML text, e.g. '{"tell_owners": false}'
    /// (`--config` is Herald's own, global option: the herald.yaml).
    #[arg(long, value_name = "JSON|YAML")]
    rule_config: Option<String>,
    /// The directory file (users and groups); Herald's sample directory otherwise.
    #[arg(long, value_name = "FILE")]
    directory: Option<PathBuf>,
    /// One JSON object per event instead of the human report.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Outcome {
    let config = match &args.rule_config {
        Some(text) => parse_config(text)?,
        None => serde_json::json!({}),
    };
    let (limits, cache) = python::run_settings(&args.wasm);
    let rule = rule_config(&args.wasm, config, limits);
    let directory = load_directory(args.directory.as_deref())?;
    let evaluator = evaluator(&rule, cache, directory)?;
    let events = read_events(&args.event)?;
    let mut failed = 0;
    let mut out = std::io::stdout().lock();
    for (event, trial) in events.iter().zip(run_all(&evaluator, &events, false)) {
        failed += usize::from(trial.outcome.result.is_err());
        let seen = EventReport {
            event,
            outcomes: std::slice::from_ref(&trial.outcome),
            quarantined: &[],
        };
        report::print(&mut out, seen, args.json, Detail::Full)
            .map_err(|e| CliError::Runtime(e.into()))?;
        if !args.json {
            eprintln!("  {}", usage_line(&trial, &rule.limits));
            if let Some(trace) = wasm_backtrace(&trial) {
                let trace = report::printable_lines(trace);
                eprintln!("  wasm backtrace:\n{}", indent(&trace, "    "));
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `--config` text: JSON or YAML, which must be a map.
pub(crate) fn parse_config(text: &str) -> Result<serde_json::Value, CliError> {
    let value: serde_json::Value = serde_yaml::from_str(text)
        .map_err(|err| usage(format!("--rule-config is neither JSON nor YAML: {err}")))?;
    match value {
        serde_json::Value::Object(_) => Ok(value),
        serde_json::Value::Null => Ok(serde_json::json!({})),
        _ => Err(usage(
            "--rule-config must be a map of the rule's settings, e.g. '{\"tell_owners\": false}'",
        )),
    }
}

/// A rule entry for a component outside any herald.yaml, named after its file.
pub(crate) fn rule_config(wasm: &Path, config: serde_json::Value, limits: Limits) -> RuleConfig {
    let name = wasm
        .file_stem()
        .map_or("rule".into(), |s| s.to_string_lossy().into_owned());
    RuleConfig {
        name,
        module: ModuleRef::Path(wasm.to_owned()),
        on: Vec::new(),
        schedule: None,
        missed: Missed::default(),
        enabled: true,
        config,
        limits,
    }
}

/// The directory at `path`, or the sample one.
pub(crate) fn load_directory(path: Option<&Path>) -> Result<Directory, CliError> {
    let loaded = match path {
        Some(path) => Directory::load(path),
        None => Directory::parse(SAMPLE_DIRECTORY, Path::new("<sample directory>")),
    };
    loaded.map_err(usage)
}

/// Load one rule, naming the module when it cannot load (a missing `export_rule!` is named).
pub(crate) fn evaluator(
    rule: &RuleConfig,
    cache_dir: Option<PathBuf>,
    directory: Directory,
) -> Result<Evaluator, CliError> {
    Evaluator::from_rules(&[rule], rule.limits, cache_dir, Arc::new(directory))
        .map_err(|err| usage(format!("{err:#}")))
}

pub(crate) fn read_events(path: &Path) -> Result<Vec<Event>, CliError> {
    crate::cli::send::read(path, &SizeCaps::default())
}

/// Run the evaluator's one rule on the events in order, sharing a key-value store as
/// `herald replay` does: every event, or (`subscribed_only`) those the engine would give
/// it (its `on:` types and its own ticks).
pub(crate) fn run_all(
    evaluator: &Evaluator,
    events: &[Event],
    subscribed_only: bool,
) -> Vec<Trial> {
    let memory = Arc::new(MemoryKv::default());
    let kv: Arc<dyn KvRead> = memory.clone();
    let rule = &evaluator.rules()[0];
    events
        .iter()
        .filter(|event| !subscribed_only || rule.subscribed(event))
        .map(|event| {
            let trial = evaluator.trial(rule, event, &kv);
            if trial.outcome.result.is_ok() {
                memory.apply(&trial.outcome.rule, &trial.outcome.kv_writes);
            }
            trial
        })
        .collect()
}

/// The wasm backtrace worth showing: none for a Python exception, whose traceback (in the
/// failure) says more than the interpreter's frames.
pub(crate) fn wasm_backtrace(trial: &Trial) -> Option<&str> {
    let python = matches!(
        &trial.outcome.result,
        Err(Failure::Panic { message }) if message.contains("\nTraceback (most recent call last):")
    );
    trial.backtrace.as_deref().filter(|_| !python)
}

/// "fuel 52,311 of 10,000,000 (0.5%), memory 1.1 MiB of 16.0 MiB, 0.3 ms"
pub(crate) fn usage_line(trial: &Trial, limits: &Limits) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    format!(
        "fuel {} of {} ({:.1}%), memory {:.1} MiB of {:.1} MiB, {:.1} ms",
        thousands(trial.outcome.fuel_used),
        thousands(limits.fuel),
        trial.outcome.fuel_used as f64 * 100.0 / limits.fuel as f64,
        mib(trial.memory_bytes),
        mib(limits.memory_bytes),
        trial.outcome.elapsed.as_secs_f64() * 1000.0
    )
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| format!("{prefix}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_text_is_json_or_yaml_and_a_map() {
        assert_eq!(
            parse_config("{\"a\": 1}").unwrap(),
            serde_json::json!({"a": 1})
        );
        assert_eq!(
            parse_config("a: true\nb: [x]").unwrap(),
            serde_json::json!({"a": true, "b": ["x"]})
        );
        assert!(parse_config("[1, 2]").is_err());
        assert!(parse_config("{unclosed").is_err());
    }

    #[test]
    fn numbers_get_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234), "1,234");
        assert_eq!(thousands(10_000_000), "10,000,000");
    }

    #[test]
    fn the_sample_directory_loads() {
        let dir = load_directory(None).unwrap();
        assert_eq!(dir.user_by_name("dave").unwrap().id, 5);
    }
}
