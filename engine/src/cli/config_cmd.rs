//! `herald config`: validate the configuration.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;

use super::{CliError, Context, Outcome, load_directory};
use crate::evaluate::Evaluator;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate the config, the directory and every rule module; name the key and the fix.
    Check,
}

pub fn run(ctx: &Context, cmd: Command) -> Outcome {
    match cmd {
        Command::Check => check(ctx),
    }
}

fn check(ctx: &Context) -> Outcome {
    let config = ctx.config()?;
    let directory = load_directory(&config.directory.path)?;
    super::warn_if_no_admin_email(&directory, &config.directory.path);
    let evaluator = Evaluator::new(&config, Arc::new(directory))
        .map_err(|e| CliError::Usage(format!("{e:#}")))?;
    println!("{}: ok", config.file.display());
    for rule in evaluator.rules() {
        println!("  rule {}: on {}", rule.name, rule.on.join(", "));
    }
    let disabled = config.rules.iter().filter(|r| !r.enabled).count();
    if disabled > 0 {
        println!("  ({disabled} rule(s) disabled)");
    }
    Ok(ExitCode::SUCCESS)
}
