//! `herald deliver`: send the queued messages that are due.

use std::process::ExitCode;

use chrono::Utc;

use super::{CliError, Context, Loaded, Outcome, load};
use crate::deliver::{Configured, Deliverer, Summary, shutdown};
use crate::store::Store;

/// Runs the pipeline's workers: journaled events still pending (say, after a
/// crash) are evaluated, then due mail is delivered; until stopped, or once
/// with --until-empty. SIGTERM or SIGINT stops it cleanly: no new rows are
/// taken, sessions in flight finish (within a grace period), their outcomes are
/// recorded, and it exits 0.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Work through what is pending and due now (waiting for rows other live workers hold),
    /// then exit (1 if any delivery failed).
    #[arg(long)]
    until_empty: bool,
}

pub fn run(ctx: &Context, args: Args) -> Outcome {
    let loaded = load(ctx)?;
    let deliverer =
        Deliverer::from_config(&loaded.config).map_err(|e| CliError::Usage(format!("{e:#}")))?;
    let mut store = Store::open(&loaded.config.store.path)?;
    shutdown::install();
    if !args.until_empty {
        return forever(&loaded, &deliverer, &mut store);
    }
    evaluate_pending(&loaded, &mut store)?;
    let summary = deliverer.deliver_until_empty(&mut store, Utc::now())?;
    print_summary(&deliverer, &summary);
    say_if_stopped(&deliverer);
    Ok(if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Deliver what is due, then look again every `poll`, until SIGTERM or SIGINT.
/// Even a SIGKILL is safe: the rows it held are taken over by the next worker
/// on this host at once (elsewhere, when their lease runs out), and a message
/// it was sending is retried with the same Message-ID.
fn forever(loaded: &Loaded, deliverer: &Deliverer, store: &mut Store) -> Outcome {
    let poll = loaded.config.delivery.poll_interval;
    eprintln!(
        "delivering until stopped; looking for pending events and due mail every {}",
        humantime::format_duration(poll)
    );
    while !deliverer.stopping() {
        match round(loaded, deliverer, store) {
            Ok(summary) if summary.sent + summary.failed > 0 => print_summary(deliverer, &summary),
            Ok(_) => {}
            // A busy, full or read-only store is waited out, not fatal to the worker.
            Err(err) => match crate::store::temporary_failure(&err) {
                Some(account) => tracing::warn!("{account}; trying again"),
                None => return Err(err.into()),
            },
        }
        shutdown::sleep(shutdown::global(), poll);
    }
    say_if_stopped(deliverer);
    Ok(ExitCode::SUCCESS)
}

fn say_if_stopped(deliverer: &Deliverer) {
    if deliverer.stopping() {
        eprintln!("stopped by a signal: sessions in flight were finished and recorded");
    }
}

fn round(loaded: &Loaded, deliverer: &Deliverer, store: &mut Store) -> anyhow::Result<Summary> {
    evaluate_pending(loaded, store)?;
    deliverer.deliver_due(store, Utc::now())
}

/// Evaluate journaled events that no process finished evaluating.
fn evaluate_pending(loaded: &Loaded, store: &mut Store) -> anyhow::Result<()> {
    let done = crate::pipeline::evaluate_pending(
        store,
        &loaded.evaluator,
        loaded.quarantine_after(),
        |_| {},
    )?;
    if done > 0 {
        eprintln!("evaluated {done} pending event(s)");
    }
    Ok(())
}

/// How many were sent and where, how the failures split, and the first one.
pub fn print_summary(deliverer: &Deliverer, summary: &Summary) {
    let to = match deliverer.transport() {
        Configured::File(file) => file.dir().display().to_string(),
        Configured::Smtp(smtp) => smtp.endpoint(),
    };
    println!(
        "delivered {} message(s) to {to}, {} failed",
        summary.sent, summary.failed
    );
    if summary.failed == 0 {
        return;
    }
    println!(
        "  {} transient, {} ambiguous, {} config (kept queued for a retry: `herald outbox list --state deferred`); {} permanent (dead)",
        summary.transient, summary.ambiguous, summary.config, summary.permanent
    );
    if let Some(first) = &summary.first_error {
        println!("  first failure: {first}");
    }
}
