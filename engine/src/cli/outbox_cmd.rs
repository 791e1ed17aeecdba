//! `herald outbox`: list, show, retry, cancel and purge queued mail.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::report::printable;
use super::{CliError, Context, Outcome, report};
use crate::deliver::render;
use crate::store::{Filter, ListState, Listed, Owner, Store};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List outbox rows, newest first.
    List {
        /// queued (never tried), deferred (retry pending), sent, dead or cancelled.
        #[arg(long, value_parser = |name: &str| name.parse::<ListState>())]
        state: Option<ListState>,
        /// Only this rule's rows.
        #[arg(long)]
        rule: Option<String>,
        /// Only rows queued since this time: RFC 3339, or an age such as `2h` or `7d`.
        #[arg(long, value_parser = crate::manage::parse_time)]
        since: Option<DateTime<Utc>>,
        /// At most this many rows (0: all).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Print one row: the whole message and every attempt.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Make a dead or deferred row due now (or every dead row with --dead).
    Retry {
        #[arg(required_unless_present = "dead", conflicts_with = "dead")]
        id: Option<i64>,
        #[arg(long)]
        dead: bool,
    },
    /// Cancel a row that has not been sent.
    Cancel { id: i64 },
    /// Delete rows sent before a time (RFC 3339, or an age such as `30d`).
    Purge {
        #[arg(long, value_parser = crate::manage::parse_time)]
        sent_before: DateTime<Utc>,
    },
}

pub fn run(ctx: &Context, cmd: Command) -> Outcome {
    let config = ctx.config()?;
    let mut store = Store::open(&config.store.path)?;
    match cmd {
        Command::List {
            state,
            rule,
            since,
            limit,
            json,
        } => list(
            &store,
            &Filter {
                state,
                rule,
                since,
                limit,
            },
            json,
        ),
        Command::Show { id, json } => show(&store, &config, id, json),
        Command::Retry { id, dead } => retry(&mut store, id, dead),
        Command::Cancel { id } => one_row(store.cancel_row(id)?, id, "cancelled", "queued or dead"),
        Command::Purge { sent_before } => {
            println!("purged {} sent row(s)", store.purge_sent(sent_before)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list(store: &Store, filter: &Filter, json: bool) -> Outcome {
    let rows = store.list_outbox(filter)?;
    if json {
        report::print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let header = [
        "ID",
        "STATE",
        "TRIES",
        "NEXT",
        "RULE",
        "EVENT",
        "RECIPIENT",
        "SUBJECT",
        "LEASE",
        "LAST ERROR",
    ];
    println!("{}", report::table(&header, rows.iter().map(row_cells)));
    eprintln!("{} row(s)", rows.len());
    Ok(ExitCode::SUCCESS)
}

fn row_cells(row: &Listed) -> Vec<String> {
    let next = match (row.state, row.next_attempt_at) {
        (ListState::Queued | ListState::Deferred, Some(at)) => {
            at.format("%Y-%m-%d %H:%M:%S").to_string()
        }
        _ => String::new(),
    };
    let cells = [
        row.id.to_string(),
        row.state.as_str().to_owned(),
        row.attempts.to_string(),
        next,
        row.rule.clone(),
        row.event_id.clone(),
        row.recipient.clone(),
        shorten(&row.subject, 40),
        lease(row).unwrap_or_default(),
        shorten(row.last_error.as_deref().unwrap_or(""), 50),
    ];
    cells.iter().map(|cell| printable(cell)).collect()
}

/// `sending until HH:MM:SS by host:pid:start` while a worker holds the row (`held` while
/// it only waits its turn), saying when that worker is gone (its lease is taken over by
/// the next `deliver` on this host).
fn lease(row: &Listed) -> Option<String> {
    let until = row.leased_until.filter(|&until| until > Utc::now())?;
    let owner = row.lease_owner.as_deref().unwrap_or("unknown");
    let dead = Owner::parse(owner).is_some_and(|o| o.provably_dead());
    let gone = if dead { " (gone)" } else { "" };
    let how = if row.sending { "sending" } else { "held" };
    Some(format!(
        "{how} until {} by {owner}{gone}",
        until.format("%H:%M:%S")
    ))
}

/// Like `printable`, but keeps line breaks and tabs (for a whole message).
fn printable_lines(text: &str) -> String {
    text.split('\n')
        .map(|line| {
            line.split('\t')
                .map(printable)
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn show(store: &Store, config: &crate::config::Config, id: i64, json: bool) -> Outcome {
    let Some(listed) = store.listed(id)? else {
        return Err(CliError::Usage(format!(
            "no outbox row {id}; `herald outbox list` shows them"
        )));
    };
    let attempts = store.attempts(id)?;
    let message = render::stored_message(store, id, &config.display_sender())?;
    if json {
        let value = serde_json::json!({
            "row": listed, "attempts": attempts,
            "message": message.as_ref().map(|m| String::from_utf8_lossy(m)).ok(),
            "unreadable": message.as_ref().err(),
        });
        report::print_json(&value)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "row {id}: {} after {} attempt(s), rule {}, event {} ({})",
        listed.state.as_str(),
        listed.attempts,
        printable(&listed.rule),
        printable(&listed.event_id),
        printable(&listed.source)
    );
    if let Some(lease) = lease(&listed) {
        println!("{}", printable(&lease));
    }
    if listed.ambiguous > 0 {
        println!(
            "{} attempt(s) may have been delivered (dropped after the final `.`)",
            listed.ambiguous
        );
    }
    match &message {
        Ok(message) => println!(
            "\n{}",
            printable_lines(&String::from_utf8_lossy(message).replace("\r\n", "\n"))
        ),
        Err(why) => println!("\nthe stored message cannot be read: {}", printable(why)),
    }
    println!("attempts:");
    for a in &attempts {
        let code = a.code.map(|c| format!(" {c}")).unwrap_or_default();
        println!("  {}  {}{code}  {}", a.at, a.outcome, printable(&a.detail));
    }
    if attempts.is_empty() {
        println!("  none yet");
    }
    Ok(ExitCode::SUCCESS)
}

fn retry(store: &mut Store, id: Option<i64>, dead: bool) -> Outcome {
    if dead {
        println!("{} dead row(s) queued again", store.retry_dead(Utc::now())?);
        return Ok(ExitCode::SUCCESS);
    }
    let id = id.expect("clap requires an id without --dead");
    one_row(
        store.retry_row(id, Utc::now())?,
        id,
        "queued again",
        "dead or deferred",
    )
}

fn one_row(changed: bool, id: i64, done: &str, allowed: &str) -> Outcome {
    if changed {
        println!("row {id} {done}");
        return Ok(ExitCode::SUCCESS);
    }
    Err(CliError::Usage(format!(
        "row {id} was not changed: it does not exist or is not {allowed} (`herald outbox show {id}`)"
    )))
}
