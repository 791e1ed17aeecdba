//! `herald deliver`: send the queued messages that are due.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;

use super::report::Tally;
use super::{CliError, Context, Loaded, Outcome, load};
use crate::deliver::{Configured, Deliverer, Summary, shutdown};
use crate::serve::wake::Wake;
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

/// How long sessions stay open between the delivery rounds of [`evaluate_and_deliver`].
const KEEP_SESSIONS: Duration = Duration::from_secs(30);

/// Evaluate the pending events, reporting each, while a second thread delivers the mail they
/// queue, so that sending starts with the first commit rather than after the last event.
/// `evaluated` sees the tally once evaluation is done; the delivery summary is printed last.
pub fn evaluate_and_deliver(
    store: &mut Store,
    loaded: &Loaded,
    json: bool,
    evaluated: impl FnOnce(&Tally),
) -> Result<Tally, CliError> {
    let deliverer = match Deliverer::from_config(&loaded.config) {
        Ok(deliverer) => deliverer.keep_sessions(KEEP_SESSIONS),
        Err(err) => {
            // Nothing can be sent, but the events are still evaluated into the outbox.
            evaluated(&super::evaluate_reporting(store, loaded, json)?);
            return Err(CliError::Usage(format!("{err:#}")));
        }
    };
    let queued = Wake::default();
    let done = AtomicBool::new(false);
    let path = &loaded.config.store.path;
    let (tally, summary) = std::thread::scope(|scope| {
        let delivery = scope.spawn(|| deliver_while_queued(&deliverer, path, &queued, &done));
        let tally = super::evaluate_reporting_with(store, loaded, json, || queued.ring());
        done.store(true, Ordering::SeqCst);
        queued.ring();
        let summary = delivery
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (tally, summary)
    });
    let tally = tally?;
    evaluated(&tally);
    print_summary(&deliverer, &summary?);
    Ok(tally)
}

/// Deliver what is due each time evaluation queues more, until it is `done` and a last
/// pass found nothing more; then close the sessions kept between passes.
fn deliver_while_queued(
    deliverer: &Deliverer,
    path: &Path,
    queued: &Wake,
    done: &AtomicBool,
) -> anyhow::Result<Summary> {
    let mut store = Store::open(path)?;
    let mut total = Summary::default();
    loop {
        let last = done.load(Ordering::SeqCst);
        total.add(deliverer.deliver_due(&mut store, Utc::now())?);
        if last || deliverer.stopping() {
            break;
        }
        queued.wait(Duration::from_millis(100));
    }
    deliverer.close_idle();
    Ok(total)
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
