//! `herald deliver`: send the queued messages that are due.

use std::process::ExitCode;

use chrono::Utc;

use super::{CliError, Context, Outcome};
use crate::deliver::{Deliverer, Summary, Transport};
use crate::store::Store;

/// Delivers every row that is due now, then exits.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(ctx: &Context, _args: Args) -> Outcome {
    let config = ctx.config()?;
    let deliverer =
        Deliverer::from_config(&config).map_err(|e| CliError::Usage(format!("{e:#}")))?;
    let mut store = Store::open(&config.store.path)?;
    let summary = deliverer.deliver_due(&mut store, Utc::now())?;
    print_summary(&deliverer, &summary);
    Ok(if summary.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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
        "  {} transient, {} ambiguous, {} config (kept queued, retried in 5 minutes); {} permanent (dead)",
        summary.transient, summary.ambiguous, summary.config, summary.permanent
    );
    if let Some(first) = &summary.first_error {
        println!("  first failure: {first}");
    }
}
