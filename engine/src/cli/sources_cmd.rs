//! `herald sources`: each configured OMERO source with its cursor, lag, last error and events emitted.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::{Context, Outcome, report};
use crate::config::{Config, DirectorySource};
use crate::store::{SourceState, Store};

/// Read from the store, so it works whether or not `herald serve` is running.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Context, args: Args) -> Outcome {
    let config = ctx.config()?;
    let store = Store::open(&config.store.path)?;
    let states = store.source_states()?;
    let rows = listing(&config, &store, &states)?;
    if args.json {
        report::print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let header = ["SOURCE", "CURSOR", "LAG", "EMITTED", "LAST ERROR"];
    let table = report::table(&header, rows.iter().map(cells));
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

/// One JSON object per configured source (and the database directory, when configured).
fn listing(config: &Config, store: &Store, states: &[SourceState]) -> anyhow::Result<Vec<Value>> {
    let mut rows: Vec<Value> = config
        .sources
        .iter()
        .map(|source| {
            let name = source.name();
            let state = states.iter().find(|s| s.source == name);
            row(&name, state)
        })
        .collect();
    if let DirectorySource::OmeroDb { .. } = config.directory.source {
        let taken = store.directory_snapshot()?.map(|(_, taken_at)| taken_at);
        rows.push(json!({
            "source": "directory (omero-db)",
            "cursor": taken.map_or_else(|| "no snapshot yet".to_owned(), |t| format!("snapshot taken at {t}")),
            "lag": null, "emitted": null, "last_error": null,
        }));
    }
    Ok(rows)
}

fn row(name: &str, state: Option<&SourceState>) -> Value {
    let Some(state) = state else {
        return json!({"source": name, "cursor": "not started", "lag": null, "emitted": 0, "last_error": null});
    };
    let lag = state.cursor.get("behind").cloned().unwrap_or(Value::Null);
    let mut cursor = state.cursor.clone();
    if let Some(map) = cursor.as_object_mut() {
        map.remove("behind");
    }
    json!({
        "source": name,
        "cursor": cursor,
        "lag": lag,
        "emitted": state.emitted,
        "last_error": state.last_error,
        "last_error_at": state.last_error_at,
        "updated_at": state.updated_at,
    })
}

fn cells(row: &Value) -> Vec<String> {
    let show = |value: &Value| match value {
        Value::Null => "-".to_owned(),
        // Errors and cursors can carry text from OMERO's database and logs.
        Value::String(text) => report::printable(text),
        other => other.to_string(),
    };
    vec![
        show(&row["source"]),
        show(&row["cursor"]),
        show(&row["lag"]),
        show(&row["emitted"]),
        show(&row["last_error"]),
    ]
}
