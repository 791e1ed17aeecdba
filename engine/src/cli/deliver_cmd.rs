//! `herald deliver`: send the queued messages that are due.

use std::process::ExitCode;

use chrono::Utc;

use super::{CliError, Context, Outcome};
use crate::deliver::{Deliverer, Summary, Transport};
use crate::store::Store;

/// Runs the delivery workers: until stopped, or once with --until-empty.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Deliver what is due now, then exit (1 if any delivery failed).
    #[arg(long)]
    until_empty: bool,
}

pub fn run(ctx: &Context, args: Args) -> Outcome {
    let config = ctx.config()?;
    let deliverer =
        Deliverer::from_config(&config).map_err(|e| CliError::Usage(format!("{e:#}")))?;
    let mut store = Store::open(&config.store.path)?;
    if !args.until_empty {
        return forever(&deliverer, &mut store, config.delivery.poll_interval);
    }
    let summary = deliverer.deliver_due(&mut store, Utc::now())?;
    print_summary(&deliverer, &summary);
    Ok(if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Deliver what is due, then look again every `poll`, until the process is
/// stopped. Stopping it at any moment is safe: rows it held come back when
/// their lease runs out, and a message it was sending is retried with the
/// same Message-ID.
fn forever(deliverer: &Deliverer, store: &mut Store, poll: std::time::Duration) -> Outcome {
    eprintln!(
        "delivering until stopped; looking for due mail every {}",
        humantime::format_duration(poll)
    );
    loop {
        let summary = deliverer.deliver_due(store, Utc::now())?;
        if summary.sent + summary.failed > 0 {
            print_summary(deliverer, &summary);
        }
        std::thread::sleep(poll);
    }
}

/// How many were sent and where; for SMTP, how the failures split and the first one.
pub fn print_summary(deliverer: &Deliverer, summary: &Summary) {
    match deliverer.transport() {
        Transport::File(file) => println!(
            "delivered {} message(s) to {}, {} failed (kept queued)",
            summary.sent,
            file.dir().display(),
            summary.failed
        ),
        Transport::Smtp(smtp) => print_smtp(&smtp.endpoint(), summary),
    }
}

fn print_smtp(endpoint: &str, summary: &Summary) {
    println!(
        "delivered {} message(s) to {endpoint}, {} failed",
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
