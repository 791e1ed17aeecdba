//! `herald rules`: the configured rules with their health, and releasing a quarantined one.

use std::process::ExitCode;

use clap::Subcommand;

use super::{CliError, Context, Outcome, report};
use crate::store::Store;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List every configured rule with its state (the default).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Lift a rule's quarantine: it runs again from the next event.
    Release { rule: String },
}

pub fn run(ctx: &Context, cmd: Option<Command>) -> Outcome {
    let config = ctx.config()?;
    let mut store = Store::open(&config.store.path)?;
    match cmd.unwrap_or(Command::List { json: false }) {
        Command::List { json } => list(&config, &store, json),
        Command::Release { rule } => release(&mut store, &rule),
    }
}

fn list(config: &crate::config::Config, store: &Store, json: bool) -> Outcome {
    let rows = crate::manage::rules::listing(config, store)?;
    if json {
        report::print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let header = ["RULE", "STATE", "FAILURES", "SKIPPED", "ON", "LAST FAILURE"];
    let table = report::table(&header, rows.iter().map(row_cells));
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

fn row_cells(row: &serde_json::Value) -> Vec<String> {
    let on = row["on"]
        .as_array()
        .map(|on| on.iter().map(text).collect::<Vec<_>>().join(", "));
    vec![
        text(&row["rule"]),
        text(&row["state"]),
        row["consecutive_failures"].to_string(),
        row["skipped"].to_string(),
        on.unwrap_or_default(),
        text(&row["last_reason"]),
    ]
}

fn text(value: &serde_json::Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn release(store: &mut Store, rule: &str) -> Outcome {
    if store.release_rule(rule)? {
        println!("rule {rule} released; it runs again from the next event");
        return Ok(ExitCode::SUCCESS);
    }
    Err(CliError::Usage(format!(
        "rule {rule} is not quarantined (`herald rules` lists them)"
    )))
}
