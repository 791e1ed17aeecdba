//! `herald email`: OMERO's `omero admin email`, queued durably, with real delivery results.

use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::{CliError, Context, Loaded, Outcome, load};
use crate::deliver::Deliverer;
use crate::directory::Directory;
use crate::event::{Broadcast, Event, EventData, types};
use crate::store::{Ingested, Store};

/// OMERO's exit code for a `no-body` error.
const EXIT_NO_BODY: u8 = 12;
/// OMERO's exit code for every other failure.
const EXIT_FAILED: u8 = 13;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The subject (no prefix is added).
    subject: String,
    /// The body, words joined by single spaces; absent or `-` reads stdin.
    text: Vec<String>,
    /// Every active user (every user with --inactive).
    #[arg(long)]
    everyone: bool,
    /// Include users who are not active (not members of `user`).
    #[arg(long)]
    inactive: bool,
    #[arg(long = "user-id", value_name = "ID")]
    user_ids: Vec<i64>,
    #[arg(long = "user-name", value_name = "NAME")]
    user_names: Vec<String>,
    #[arg(long = "group-id", value_name = "ID")]
    group_ids: Vec<i64>,
    #[arg(long = "group-name", value_name = "NAME")]
    group_names: Vec<String>,
    /// An address outside the directory (repeatable).
    #[arg(long = "extra", value_name = "ADDR")]
    extra: Vec<String>,
    /// Deliver now and wait up to SECS for the real results (sent, failed, no email, invalid).
    #[arg(long, value_name = "SECS")]
    wait: Option<u64>,
}

/// An OMERO-style refusal: the exit code and the lines it prints.
struct Refusal(u8, String);

pub fn run(ctx: &Context, mut args: Args) -> Outcome {
    let loaded = load(ctx)?;
    let body = body_text(&args.text)?;
    if args.everyone && has_targets(&args) {
        eprintln!("Warning: users and groups ignored");
    }
    drop_unknown(&mut args, loaded.evaluator.directory());
    let invalid_extra = drop_invalid_extra(&mut args.extra);
    if let Err(Refusal(code, message)) = validate(&loaded, &args, &body) {
        eprintln!("{message}");
        return Ok(ExitCode::from(code));
    }
    let mut store = Store::open(&loaded.config.store.path)?;
    if let Some(rule) = quarantined_broadcast(&loaded, &store)? {
        let message = format!(
            "the rule {rule} is quarantined; release it with `herald rules release {rule}`"
        );
        let Refusal(code, text) = failed("no-rule", &message);
        eprintln!("{text}");
        return Ok(ExitCode::from(code));
    }
    let event = broadcast_event(&args, body);
    let seq = queue(&loaded, &mut store, &event)?;
    report(&loaded, store, seq, args.wait, invalid_extra)
}

/// A broadcast rule that would be skipped: the broadcast would reach nobody.
fn quarantined_broadcast(loaded: &Loaded, store: &Store) -> anyhow::Result<Option<String>> {
    let quarantined = store.quarantined()?;
    let broadcast_rules = loaded
        .evaluator
        .rules()
        .iter()
        .filter(|r| r.on.iter().any(|t| t == types::BROADCAST));
    Ok(broadcast_rules
        .map(|r| r.name.clone())
        .find(|name| quarantined.contains(name)))
}

fn body_text(words: &[String]) -> Result<String, CliError> {
    let text = words.join(" ");
    if !text.is_empty() && text != "-" {
        return Ok(text);
    }
    let mut stdin = String::new();
    std::io::stdin()
        .read_to_string(&mut stdin)
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("cannot read the body from stdin: {e}")))?;
    Ok(stdin)
}

fn has_targets(args: &Args) -> bool {
    !(args.user_ids.is_empty()
        && args.user_names.is_empty()
        && args.group_ids.is_empty()
        && args.group_names.is_empty())
}

/// Unknown users and groups are reported and dropped, as OMERO does; not fatal.
fn drop_unknown(args: &mut Args, dir: &Directory) {
    args.user_ids
        .retain(|id| known(dir.user_by_id(*id).is_some(), "user", id));
    args.user_names
        .retain(|name| known(dir.user_by_name(name).is_some(), "user", name));
    args.group_ids
        .retain(|id| known(dir.group_by_id(*id).is_some(), "group", id));
    args.group_names
        .retain(|name| known(dir.group_by_name(name).is_some(), "group", name));
}

fn known(found: bool, what: &str, key: &dyn std::fmt::Display) -> bool {
    if !found {
        eprintln!("Unknown {what}: {key}");
    }
    found
}

/// Drop extra addresses that are not valid; return how many were dropped.
fn drop_invalid_extra(extra: &mut Vec<String>) -> usize {
    let before = extra.len();
    extra.retain(|addr| match addr.trim().parse::<lettre::Address>() {
        Ok(_) => true,
        Err(err) => {
            eprintln!("Invalid email address: {addr} ({err})");
            false
        }
    });
    before - extra.len()
}

/// OMERO's checks, in OMERO's order.
fn validate(loaded: &Loaded, args: &Args, body: &str) -> Result<(), Refusal> {
    if !args.everyone && !has_targets(args) && args.extra.is_empty() {
        return Err(Refusal(
            EXIT_NO_BODY,
            "ApiUsageException:No recipients specified.".into(),
        ));
    }
    if loaded.config.mail.from.is_none() {
        return Err(failed("no-sender", "mail.from cannot be empty."));
    }
    if args.subject.trim().is_empty() {
        return Err(failed("no-subject", "Email must contain subject."));
    }
    if body.trim().is_empty() {
        return Err(Refusal(
            EXIT_NO_BODY,
            "ApiUsageException:Email must contain body.".into(),
        ));
    }
    if !loaded
        .evaluator
        .rules()
        .iter()
        .any(|r| r.on.iter().any(|t| t == types::BROADCAST))
    {
        return Err(failed(
            "no-rule",
            "no rule handles herald.broadcast; add `- {name: broadcast, module: builtin:broadcast, on: [herald.broadcast]}` to the rules",
        ));
    }
    Ok(())
}

fn failed(name: &str, message: &str) -> Refusal {
    Refusal(
        EXIT_FAILED,
        format!("Failed to send emails:\n{name}: {message}"),
    )
}

fn broadcast_event(args: &Args, body: String) -> Event {
    let now = Utc::now();
    let data = Broadcast {
        subject: args.subject.clone(),
        body,
        html: None,
        everyone: args.everyone,
        inactive: args.inactive,
        user_ids: args.user_ids.clone(),
        user_names: args.user_names.clone(),
        group_ids: args.group_ids.clone(),
        group_names: args.group_names.clone(),
        extra: args.extra.clone(),
    };
    let data_json = serde_json::json!({
        "subject": data.subject, "body": data.body, "everyone": data.everyone, "inactive": data.inactive,
        "user_ids": data.user_ids, "user_names": data.user_names, "group_ids": data.group_ids,
        "group_names": data.group_names, "extra": data.extra,
    });
    Event {
        id: format!(
            "broadcast-{}-{}",
            now.format("%Y%m%dT%H%M%S%.6fZ"),
            std::process::id()
        ),
        source: "herald://cli/email".into(),
        kind: types::BROADCAST.into(),
        time: now,
        data_json,
        data: EventData::Broadcast(data),
    }
}

/// Journal the broadcast and evaluate it into the outbox before returning.
fn queue(loaded: &Loaded, store: &mut Store, event: &Event) -> Result<i64, CliError> {
    let seq = match store.ingest(std::slice::from_ref(event), Utc::now())?[0] {
        Ingested::New(seq) | Ingested::Duplicate(seq) => seq,
    };
    crate::pipeline::evaluate_pending(store, &loaded.evaluator, loaded.quarantine_after(), |_| {})?;
    Ok(seq)
}

/// The counts OMERO prints, from what the rule and the delivery really did.
fn report(
    loaded: &Loaded,
    mut store: Store,
    seq: i64,
    wait: Option<u64>,
    invalid_extra: usize,
) -> Outcome {
    let no_email = store.no_email_count(seq)?;
    if let Some(failure) = store.first_failure(seq)? {
        eprintln!("Failed to send emails:\n{failure}");
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    let counts = match wait {
        Some(secs) => deliver_for(loaded, &mut store, seq, Duration::from_secs(secs))?,
        None => state_counts(&store, seq)?,
    };
    match wait {
        Some(_) => println!(
            "Successfully sent {} of {} emails",
            counts.sent,
            counts.total()
        ),
        None => println!("Queued {} emails", counts.total()),
    }
    print_counts(&counts, no_email, invalid_extra);
    Ok(if counts.dead > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_counts(counts: &Counts, no_email: usize, invalid: usize) {
    if counts.dead > 0 {
        println!("{} emails failed", counts.dead);
    }
    if counts.queued > 0 && counts.sent > 0 {
        println!(
            "{} emails still queued; `herald deliver` sends them",
            counts.queued
        );
    }
    if no_email > 0 {
        println!("{no_email} users had no email address");
    }
    if invalid > 0 {
        println!("{invalid} email addresses were invalid");
    }
}

#[derive(Default)]
struct Counts {
    queued: i64,
    sent: i64,
    dead: i64,
}

impl Counts {
    fn total(&self) -> i64 {
        self.queued + self.sent + self.dead
    }
}

fn state_counts(store: &Store, seq: i64) -> anyhow::Result<Counts> {
    let mut counts = Counts::default();
    for (state, n) in store.event_outbox_counts(seq)? {
        match state.as_str() {
            "sent" => counts.sent += n,
            "dead" | "cancelled" => counts.dead += n,
            _ => counts.queued += n,
        }
    }
    Ok(counts)
}

/// Deliver until this broadcast's rows are all final or `wait` has passed.
fn deliver_for(
    loaded: &Loaded,
    store: &mut Store,
    seq: i64,
    wait: Duration,
) -> Result<Counts, CliError> {
    let deliverer =
        Deliverer::from_config(&loaded.config).map_err(|e| CliError::Usage(format!("{e:#}")))?;
    let deadline = Instant::now() + wait;
    loop {
        deliverer.deliver_due(store, Utc::now())?;
        let counts = state_counts(store, seq)?;
        if counts.queued == 0 || Instant::now() >= deadline {
            return Ok(counts);
        }
        std::thread::sleep(Duration::from_millis(200).min(deadline - Instant::now()));
    }
}
