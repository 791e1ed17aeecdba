//! `herald replay`: run recorded events through the rules, as a dry run or for real.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::Utc;

use super::report::{self, Detail, Tally};
use super::{CliError, Context, Outcome, load};
use crate::deliver::Deliverer;
use crate::evaluate::{KvRead, MemoryKv};
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
}

/// Exit 0 when every invocation succeeded, 1 when any failed (after all ran).
pub fn run(ctx: &Context, args: Args) -> Outcome {
    let loaded = load(ctx)?;
    let events = super::send::read(&args.file)?;
    let tally = if args.deliver {
        replay_for_real(&loaded, events, args.json)?
    } else {
        dry_run(&loaded, &events, args.json)?
    };
    eprintln!("replayed {}", tally.line());
    Ok(if tally.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn dry_run(
    loaded: &super::Loaded,
    events: &[crate::event::Event],
    json: bool,
) -> Result<Tally, CliError> {
    let memory = Arc::new(MemoryKv::default());
    let kv: Arc<dyn KvRead> = memory.clone();
    let mut tally = Tally::default();
    let mut out = std::io::stdout().lock();
    for event in events {
        let outcomes = loaded.evaluator.evaluate(event, &kv);
        for outcome in outcomes.iter().filter(|o| o.result.is_ok()) {
            memory.apply(&outcome.rule, &outcome.kv_writes);
        }
        tally.add(&outcomes);
        print(&mut out, event, &outcomes, json, Detail::Full)?;
    }
    Ok(tally)
}

fn replay_for_real(
    loaded: &super::Loaded,
    events: Vec<crate::event::Event>,
    json: bool,
) -> Result<Tally, CliError> {
    let deliverer =
        Deliverer::from_config(&loaded.config).map_err(|e| CliError::Usage(format!("{e:#}")))?;
    let mut store = Store::open(&loaded.config.store.path)?;
    let journaled = ingest::journal(&mut store, &events, Utc::now())?;
    if journaled.duplicates > 0 {
        eprintln!(
            "{} events were journaled before and are not evaluated again",
            journaled.duplicates
        );
    }
    let mut tally = Tally::default();
    let mut out = std::io::stdout().lock();
    let mut print_err = None;
    crate::pipeline::evaluate_pending(&mut store, &loaded.evaluator, |done| {
        tally.add(&done.outcomes);
        if let Err(err) = print(&mut out, &done.event, &done.outcomes, json, Detail::Brief) {
            print_err.get_or_insert(err);
        }
    })?;
    if let Some(err) = print_err {
        return Err(err);
    }
    let summary = deliverer.deliver_due(&mut store, Utc::now())?;
    super::deliver_cmd::print_summary(&deliverer, &summary);
    Ok(tally)
}

fn print(
    out: &mut impl Write,
    event: &crate::event::Event,
    outcomes: &[crate::evaluate::RuleOutcome],
    json: bool,
    detail: Detail,
) -> Result<(), CliError> {
    let written = if json {
        writeln!(out, "{}", report::json(event, outcomes))
    } else {
        report::human(out, event, outcomes, detail)
    };
    written.map_err(|e| CliError::Runtime(e.into()))
}
