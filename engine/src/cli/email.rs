//! `herald email`: OMERO's `omero admin email`, queued durably, with real delivery results.

use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::{CliError, Context, Loaded, Outcome, load};
use crate::deliver::Deliverer;
use crate::event::Event;
use crate::manage::broadcast::{self, Counts, EXIT_FAILED, Refusal, Request};
use crate::store::{Ingested, Store};

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

pub fn run(ctx: &Context, args: Args) -> Outcome {
    let loaded = load(ctx)?;
    let mut request = args.request(body_text(&args.text)?);
    if request.everyone && request.has_targets() {
        eprintln!("Warning: users and groups ignored");
    }
    print_notices(request.drop_unknown(loaded.evaluator.directory()));
    let invalid_extra = print_notices(request.drop_invalid_extra());
    if let Err(refusal) = request.validate(&loaded.config, &loaded.evaluator) {
        return Ok(refused(refusal));
    }
    let mut store = Store::open(&loaded.config.store.path)?;
    if let Err(refusal) = broadcast::refuse_quarantined(&loaded.evaluator, &store)? {
        return Ok(refused(refusal));
    }
    let event = request.event("herald://cli/email");
    let seq = queue(&loaded, &mut store, &event)?;
    report(&loaded, store, seq, args.wait, invalid_extra)
}

impl Args {
    fn request(&self, body: String) -> Request {
        Request {
            subject: self.subject.clone(),
            body,
            everyone: self.everyone,
            inactive: self.inactive,
            user_ids: self.user_ids.clone(),
            user_names: self.user_names.clone(),
            group_ids: self.group_ids.clone(),
            group_names: self.group_names.clone(),
            extra: self.extra.clone(),
        }
    }
}

/// Print each notice on stderr; how many there were.
fn print_notices(notices: Vec<String>) -> usize {
    for notice in &notices {
        eprintln!("{notice}");
    }
    notices.len()
}

fn refused(Refusal(code, message): Refusal) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(code)
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
        None => Counts::of(&store, seq)?,
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
        let counts = Counts::of(store, seq)?;
        if counts.queued == 0 || Instant::now() >= deadline {
            return Ok(counts);
        }
        std::thread::sleep(Duration::from_millis(200).min(deadline - Instant::now()));
    }
}
