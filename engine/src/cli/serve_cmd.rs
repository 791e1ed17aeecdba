//! `herald serve`: the long-running service (HTTP ingest, evaluation and delivery in one process).

use std::process::ExitCode;
use std::sync::Arc;

use super::{CliError, Context, Outcome, load};
use crate::deliver::Deliverer;
use crate::serve::live::RuleSet;
use crate::sources::http::auth::Tokens;

/// Runs until SIGTERM or SIGINT, then drains and exits 0.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(ctx: &Context, _args: Args) -> Outcome {
    // Signals first: a SIGHUP while the rules compile must not kill the process.
    let process = crate::serve::Process::new().map_err(CliError::Runtime)?;
    tracing::debug!("signals caught; loading the config, directory and rules");
    let loaded = load(ctx)?;
    // What compiling the rules used is free now; a service should not keep it resident.
    crate::memory::return_freed();
    let tokens =
        Tokens::load(&loaded.config.http.tokens).map_err(|e| CliError::Usage(format!("{e:#}")))?;
    let deliverer = match Deliverer::from_config(&loaded.config) {
        Ok(deliverer) => Some(deliverer),
        Err(err) => {
            tracing::warn!("{err:#}");
            None
        }
    };
    crate::serve::run(
        process,
        &loaded.config,
        tokens,
        loaded.evaluator,
        deliverer,
        reloader(ctx),
    )
    .map_err(CliError::Runtime)?;
    eprintln!("herald serve: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Loads the config, directory and rules again from the same files, as at start.
fn reloader(ctx: &Context) -> crate::serve::reload::Loader {
    let ctx = Context {
        config_path: ctx.config_path.clone(),
        state_dir: ctx.state_dir.clone(),
    };
    Box::new(move || {
        let loaded = load(&ctx).map_err(|err| match err {
            CliError::Usage(message) => anyhow::anyhow!(message),
            CliError::Runtime(err) => err,
        })?;
        Ok(RuleSet {
            config: Arc::new(loaded.config),
            evaluator: Arc::new(loaded.evaluator),
        })
    })
}
