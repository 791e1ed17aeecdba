//! `herald send`: journal events, evaluate them into the outbox, optionally deliver.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::Utc;

use super::report::Tally;
use super::{CliError, Context, Outcome, load};
use crate::event::{Event, SizeCaps};
use crate::ingest::{self, ReadError};
use crate::store::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// One JSON event, a JSON array of events, or JSON Lines; `-` reads stdin.
    file: PathBuf,
    /// Also deliver what is due once the events are evaluated.
    #[arg(long)]
    deliver: bool,
    /// Only journal the events; evaluate them later (`herald send` or `serve`).
    #[arg(long, conflicts_with = "deliver")]
    no_evaluate: bool,
}

/// Read and validate every event; any invalid one refuses the whole input.
pub fn read(path: &Path, caps: &SizeCaps) -> Result<Vec<Event>, CliError> {
    ingest::read_events(path, Utc::now(), caps).map_err(|err| match err {
        ReadError::Io(err) => CliError::Usage(format!("{err:#}")),
        ReadError::Invalid(errors) => {
            let lines: Vec<String> = errors
                .iter()
                .map(|e| format!("  {}: {e}", path.display()))
                .collect();
            CliError::Usage(format!(
                "{} invalid event(s); nothing was stored:\n{}",
                errors.len(),
                lines.join("\n")
            ))
        }
    })
}

pub fn run(ctx: &Context, args: Args) -> Outcome {
    let loaded = load(ctx)?;
    let events = read(&args.file, &loaded.config.ingest.caps)?;
    let mut store = Store::open(&loaded.config.store.path)?;
    let journaled = ingest::journal(&mut store, &events, Utc::now())?;
    println!(
        "journaled {} new event(s), {} duplicate(s) acknowledged",
        journaled.new, journaled.duplicates
    );
    if args.no_evaluate {
        return Ok(ExitCode::SUCCESS);
    }
    let evaluated = |tally: &Tally| println!("evaluated {}", tally.line());
    if args.deliver {
        super::deliver_cmd::evaluate_and_deliver(&mut store, &loaded, false, evaluated)?;
    } else {
        evaluated(&super::evaluate_reporting(&mut store, &loaded, false)?);
    }
    Ok(ExitCode::SUCCESS)
}
