//! `herald mail test`: send one test message through the configured transport and say what happened.

use std::process::ExitCode;
use std::time::SystemTime;

use clap::Subcommand;
use lettre::Message;
use lettre::message::Mailbox;

use super::{CliError, Context, Outcome};
use crate::deliver::{Class, Configured, Deliverer, Job, Report};
use crate::mail::MailKey;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Send one test message through the configured transport; print the server's reply or
    /// a diagnosis (exit 1).
    Test(TestArgs),
}

#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Who receives the test message.
    #[arg(long)]
    to: String,
}

pub fn run(ctx: &Context, cmd: Command) -> Outcome {
    match cmd {
        Command::Test(args) => test(ctx, &args),
    }
}

fn test(ctx: &Context, args: &TestArgs) -> Outcome {
    let config = ctx.config()?;
    let to: Mailbox = args
        .to
        .parse()
        .map_err(|e| CliError::Usage(format!("--to {:?} is not an address: {e}", args.to)))?;
    let deliverer =
        Deliverer::from_config(&config).map_err(|e| CliError::Usage(format!("{e:#}")))?;
    let message = test_message(deliverer.from(), &to)?;
    match deliverer.transport() {
        Configured::File(file) => {
            let key = MailKey {
                source: "herald".to_owned(),
                event_id: format!("mail-test-{}", unix_millis()),
                rule: "mail-test".to_owned(),
                recipient: to.email.to_string(),
            };
            let path = file.send(&key, &message.formatted())?;
            println!(
                "transport is `file`: the test message was written to {}",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Configured::Smtp(smtp) => {
            let job = Job {
                from: deliverer.from().email.clone(),
                to: to.email.clone(),
                bytes: message.formatted(),
            };
            let report = smtp.send_all(vec![job]).remove(0);
            Ok(print_report(&smtp.endpoint(), &to, &report))
        }
    }
}

fn test_message(from: &Mailbox, to: &Mailbox) -> Result<Message, CliError> {
    let id = format!("<herald-test-{}@{}>", unix_millis(), from.email.domain());
    Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject("[OMERO] Herald test message")
        .message_id(Some(id))
        .body(
            "This is a test message sent by `herald mail test`.\n\
             If you can read it, Herald can deliver mail through this server.\n"
                .to_owned(),
        )
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("cannot build the test message: {e}")))
}

/// Print the reply or the diagnosis; exit 0 only when the server took the message.
fn print_report(endpoint: &str, to: &Mailbox, report: &Report) -> ExitCode {
    if report.class == Class::Sent {
        let code = report.code.unwrap_or_default();
        println!("sent to {} via {endpoint}", to.email);
        println!("server replied: {code} {}", report.text);
        return ExitCode::SUCCESS;
    }
    let code = report.code.map_or_else(String::new, |c| format!(" ({c})"));
    println!("not sent to {} via {endpoint}", to.email);
    println!("{}{code}: {}", verdict(report), report.text);
    ExitCode::from(1)
}

/// What the failure would do to a queued message, as delivery decides it.
fn verdict(report: &Report) -> &'static str {
    if report.class == Class::Permanent && report.before_message {
        return "refused before any message was sent (greeting or login), so a queued message \
                would be kept and retried after delivery.max_backoff, never given up; fix mail.smtp";
    }
    match report.class {
        Class::Sent => "sent",
        Class::Transient => "temporary failure, a queued message would be retried",
        Class::Permanent => "refused for good, a queued message would be given up (dead)",
        Class::Ambiguous => {
            "outcome unknown, the server may have the message; a queued one would be retried"
        }
        Class::Config => "configuration problem, fix mail.smtp",
    }
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}
