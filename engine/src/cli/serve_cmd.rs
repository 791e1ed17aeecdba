//! `herald serve`: the long-running service (HTTP ingest, evaluation and delivery in one process).

use std::process::ExitCode;

use super::{CliError, Context, Outcome, load};
use crate::deliver::Deliverer;
use crate::sources::http::auth::Tokens;

/// Runs until SIGTERM or SIGINT, then drains and exits 0.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(ctx: &Context, _args: Args) -> Outcome {
    let loaded = load(ctx)?;
    let tokens =
        Tokens::load(&loaded.config.http.tokens).map_err(|e| CliError::Usage(format!("{e:#}")))?;
    let deliverer = match Deliverer::from_config(&loaded.config) {
        Ok(deliverer) => Some(deliverer),
        Err(err) => {
            tracing::warn!("{err:#}");
            None
        }
    };
    crate::serve::run(&loaded.config, tokens, loaded.evaluator, deliverer)
        .map_err(CliError::Runtime)?;
    eprintln!("herald serve: stopped");
    Ok(ExitCode::SUCCESS)
}
