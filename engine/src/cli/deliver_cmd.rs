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

/// One line: how many were sent, how many failed, and where they went.
pub fn print_summary(deliverer: &Deliverer, summary: &Summary) {
    let Transport::File(file) = deliverer.transport();
    println!(
        "delivered {} message(s) to {}, {} failed (kept queued)",
        summary.sent,
        file.dir().display(),
        summary.failed
    );
}
