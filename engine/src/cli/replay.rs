//! `herald replay`: run recorded events through the rules, as a dry run or for real.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;

use super::expect::{self, Produced};
use super::report::{self, Detail, EventReport, Tally};
use super::{CliError, Context, Outcome, load};
use crate::evaluate::{KvRead, MemoryKv, RuleOutcome};
use crate::ingest;
use crate::store::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Recorded events: JSON Lines, a JSON array, or one JSON event.
    file: PathBuf,
    /// Go through the store, the outbox and the transport instead of printing.
    #[arg(long)]
    deliver: bool,
    /// One JSON object per event instead of the human report.
    #[arg(long)]
    json: bool,
    /// Compare the mail produced with the `.eml` files in DIR, byte for byte;
    /// exit 1 and show a diff on any difference.
    #[arg(long, value_name = "DIR", conflicts_with = "deliver")]
    expect: Option<PathBuf>,
    /// With --expect: rewrite DIR to hold exactly the mail produced.
    #[arg(long, requires = "expect")]
    bless: bool,
    /// Compare rule sets: the config whose rules are tried (with --against); only the mail
    /// that differs from --against's is shown, and the exit is 1 when any does.
    #[arg(long, value_name = "A.yaml", requires = "against", conflicts_with_all = ["deliver", "expect"])]
    rules: Option<PathBuf>,
    /// The config to compare --rules with (what is deployed today).
    #[arg(long, value_name = "B.yaml", requires = "rules")]
    against: Option<PathBuf>,
}

/// Exit 0 when every invocation succeeded (and the mail matched --expect),
/// 1 when any failed or differed (after all ran).
pub fn run(ctx: &Context, args: Args) -> Outcome {
    if let (Some(rules), Some(against)) = (&args.rules, &args.against) {
        return compare_rule_sets(ctx, &args.file, rules, against);
    }
    let loaded = load(ctx)?;
    let events = super::send::read(&args.file, &loaded.config.ingest.caps)?;
    if args.deliver {
        let tally = replay_for_real(&loaded, events, args.json)?;
        eprintln!("replayed {}", tally.line());
        return Ok(exit(tally.failed == 0));
    }
    let mut produced = Produced::default();
    let tally = dry_run(&loaded, &events, args.json, &mut produced)?;
    eprintln!("replayed {}", tally.line());
    let matched = match &args.expect {
        Some(dir) => check_expected(dir, &produced, args.bless)?,
        None => true,
    };
    Ok(exit(tally.failed == 0 && matched))
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Compare with (or, blessing, rewrite) the golden folder; true when it matched.
fn check_expected(dir: &Path, produced: &Produced, bless: bool) -> Result<bool, CliError> {
    if bless {
        let written = expect::bless(dir, produced)?;
        eprintln!("blessed {}: {written} file(s)", dir.display());
        return Ok(true);
    }
    let diffs = expect::compare(dir, produced, &mut std::io::stdout().lock())?;
    if diffs.is_empty() {
        eprintln!("every message matches {}", dir.display());
        return Ok(true);
    }
    eprintln!(
        "{} file(s) differ from {}: {} changed, {} missing, {} unexpected",
        diffs.changed.len() + diffs.missing.len() + diffs.unexpected.len(),
        dir.display(),
        diffs.changed.len(),
        diffs.missing.len(),
        diffs.unexpected.len()
    );
    Ok(false)
}

/// Replay `file` through the configs `rules` and `against` and print only the mail that differs.
fn compare_rule_sets(ctx: &Context, file: &Path, rules: &Path, against: &Path) -> Outcome {
    let load_config = |path: &Path| {
        load(&Context {
            config_path: path.to_owned(),
            state_dir: ctx.state_dir.clone(),
        })
    };
    let (new, old) = (load_config(rules)?, load_config(against)?);
    let events = super::send::read(file, &new.config.ingest.caps)?;
    let (mut with_new, mut with_old) = (Produced::default(), Produced::default());
    let tally_new = evaluate_all(&new, &events, &mut with_new, |_, _| Ok(()))?;
    let tally_old = evaluate_all(&old, &events, &mut with_old, |_, _| Ok(()))?;
    let names = (
        against.to_string_lossy().into_owned(),
        rules.to_string_lossy().into_owned(),
    );
    let diffs = expect::compare_sets(
        &with_old,
        &with_new,
        (&names.0, &names.1),
        &mut std::io::stdout().lock(),
    )?;
    eprintln!("{}: {}", names.1, tally_new.line());
    eprintln!("{}: {}", names.0, tally_old.line());
    eprintln!(
        "{} message(s) differ: {} changed, {} only with {}, {} only with {}",
        diffs.changed.len() + diffs.missing.len() + diffs.unexpected.len(),
        diffs.changed.len(),
        diffs.unexpected.len(),
        names.1,
        diffs.missing.len(),
        names.0
    );
    Ok(exit(diffs.is_empty()))
}

fn dry_run(
    loaded: &super::Loaded,
    events: &[crate::event::Event],
    json: bool,
    produced: &mut Produced,
) -> Result<Tally, CliError> {
    let mut out = std::io::stdout().lock();
    evaluate_all(loaded, events, produced, |event, outcomes| {
        let seen = EventReport {
            event,
            outcomes,
            quarantined: &[],
        };
        report::print(&mut out, seen, json, Detail::Full).map_err(|e| CliError::Runtime(e.into()))
    })
}

/// Evaluate every event in order with an in-memory kv store, collecting the mail;
/// `each` sees every event's outcomes.
fn evaluate_all(
    loaded: &super::Loaded,
    events: &[crate::event::Event],
    produced: &mut Produced,
    mut each: impl FnMut(&crate::event::Event, &[RuleOutcome]) -> Result<(), CliError>,
) -> Result<Tally, CliError> {
    let from = loaded.config.display_sender();
    let memory = Arc::new(MemoryKv::default());
    let kv: Arc<dyn KvRead> = memory.clone();
    let mut tally = Tally::default();
    for event in events {
        let outcomes = loaded.evaluator.evaluate(event, &kv);
        for outcome in outcomes.iter().filter(|o| o.result.is_ok()) {
            memory.apply(&outcome.rule, &outcome.kv_writes);
        }
        tally.add(&outcomes, &[]);
        produced.add(event, &outcomes, &from)?;
        each(event, &outcomes)?;
    }
    Ok(tally)
}

fn replay_for_real(
    loaded: &super::Loaded,
    events: Vec<crate::event::Event>,
    json: bool,
) -> Result<Tally, CliError> {
    let mut store = Store::open(&loaded.config.store.path)?;
    let journaled = ingest::journal(&mut store, &events, Utc::now())?;
    if journaled.duplicates > 0 {
        eprintln!(
            "{} events were journaled before and are not evaluated again",
            journaled.duplicates
        );
    }
    super::deliver_cmd::evaluate_and_deliver(&mut store, loaded, json, |_| {})
}
