//! `herald export --since T`: journaled events as JSON Lines, for `herald replay`.

use std::io::Write;
use std::process::ExitCode;

use super::{CliError, Context, Outcome};
use crate::store::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Events whose time is at or after this: an RFC 3339 time or an age such as 7d.
    #[arg(long)]
    since: String,
}

pub fn run(ctx: &Context, args: Args) -> Outcome {
    let since = crate::manage::parse_time(&args.since)
        .map_err(|err| CliError::Usage(format!("--since: {err}")))?;
    let config = ctx.config()?;
    let store = Store::open(&config.store.path)?;
    let mut out = std::io::stdout().lock();
    let count = store.export_since(since, |envelope| {
        writeln!(out, "{envelope}")?;
        Ok(())
    })?;
    out.flush().map_err(|e| CliError::Runtime(e.into()))?;
    eprintln!(
        "exported {count} event(s) since {}",
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    Ok(ExitCode::SUCCESS)
}
