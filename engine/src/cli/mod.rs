//! The `herald` command line: argument parsing, exit codes, and dispatch to the commands.

mod config_cmd;
mod deliver_cmd;
mod email;
mod expect;
mod export_cmd;
mod mail_cmd;
mod outbox_cmd;
mod replay;
mod report;
mod rule_cmd;
mod rules_cmd;
mod send;
mod serve_cmd;
mod sources_cmd;
mod status_cmd;
mod test_cmd;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError, DirectorySource, LogFormat};
use crate::directory::{self, Directory};
use crate::evaluate::Evaluator;

/// Herald: OMERO notifications through sandboxed WebAssembly rules and a durable outbox.
#[derive(Parser, Debug)]
#[command(name = "herald", version, about, propagate_version = true)]
pub struct Cli {
    /// The config file; paths inside it are relative to it.
    #[arg(
        long,
        global = true,
        env = "HERALD_CONFIG",
        default_value = "etc/herald.yaml"
    )]
    config: PathBuf,
    /// Override the config's state_dir (store, mail folder, cache).
    #[arg(long, global = true, env = "HERALD_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay recorded events through the rules (a dry run unless --deliver).
    Replay(replay::Args),
    /// Ingest events (one JSON event, a JSON array, or JSON Lines; `-` is stdin).
    Send(send::Args),
    /// Email users, like `omero admin email`: queued durably, real results with --wait.
    Email(email::Args),
    /// List, show, retry, cancel or purge queued mail.
    #[command(subcommand)]
    Outbox(outbox_cmd::Command),
    /// The configured rules and their health; release a quarantined rule.
    Rules {
        #[command(subcommand)]
        command: Option<rules_cmd::Command>,
    },
    /// Deliver the queued messages that are due.
    Deliver(deliver_cmd::Args),
    /// Run the service: the HTTP API, evaluation and delivery in one process, until SIGTERM.
    Serve(serve_cmd::Args),
    /// Ask the running service what it is doing (readiness, outbox, rules), with an admin token.
    Status(status_cmd::Args),
    /// The OMERO sources with their cursor, lag, last error and events emitted (from the store).
    Sources(sources_cmd::Args),
    /// Check or convert configuration.
    #[command(subcommand)]
    Config(config_cmd::Command),
    /// Test mail delivery.
    #[command(subcommand)]
    Mail(mail_cmd::Command),
    /// Write journaled events since a time as JSON Lines (for `herald replay`).
    Export(export_cmd::Args),
    /// Write a rule: `rule new NAME`, `rule build`, `rule run RULE.wasm --event E.json` (no herald.yaml needed).
    #[command(subcommand)]
    Rule(rule_cmd::Command),
    /// Build a rule crate and run its cases (tests/cases/*.yaml); exit 1 on any failure.
    Test(test_cmd::Args),
}

/// A failure with the exit code the contract gives it.
#[derive(Debug)]
pub enum CliError {
    /// 2: usage, config or input errors. Nothing was stored.
    Usage(String),
    /// 1: a runtime failure.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for CliError {
    fn from(err: anyhow::Error) -> Self {
        CliError::Runtime(err)
    }
}

impl From<crate::store::StoreError> for CliError {
    fn from(err: crate::store::StoreError) -> Self {
        CliError::Runtime(err.into())
    }
}

impl From<ConfigError> for CliError {
    fn from(err: ConfigError) -> Self {
        CliError::Usage(err.to_string())
    }
}

type Outcome = Result<ExitCode, CliError>;

/// sysexits' EX_TEMPFAIL: the store refused the write; retrying later is safe.
const EXIT_TEMPFAIL: u8 = 75;

/// Parse the arguments, run the command, and map the result to an exit code.
pub fn main() -> ExitCode {
    die_quietly_on_a_closed_pipe();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(CliError::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(CliError::Runtime(err)) => match crate::store::temporary_failure(&err) {
            Some(account) => {
                eprintln!("error: {account}\n  nothing was stored; fix the store and retry");
                ExitCode::from(EXIT_TEMPFAIL)
            }
            None => {
                eprintln!("error: {err:#}");
                ExitCode::from(1)
            }
        },
    }
}

fn run(cli: Cli) -> Outcome {
    let ctx = Context {
        config_path: cli.config,
        state_dir: cli.state_dir,
    };
    // The log format is in the config; a config that does not load is reported by the command.
    let format = ctx.config().map(|c| c.log.format).unwrap_or_default();
    init_tracing(format);
    match cli.command {
        Command::Replay(args) => replay::run(&ctx, args),
        Command::Send(args) => send::run(&ctx, args),
        Command::Email(args) => email::run(&ctx, args),
        Command::Outbox(cmd) => outbox_cmd::run(&ctx, cmd),
        Command::Rules { command } => rules_cmd::run(&ctx, command),
        Command::Deliver(args) => deliver_cmd::run(&ctx, args),
        Command::Serve(args) => serve_cmd::run(&ctx, args),
        Command::Sources(args) => sources_cmd::run(&ctx, args),
        Command::Status(args) => status_cmd::run(&ctx, args),
        Command::Config(cmd) => config_cmd::run(&ctx, cmd),
        Command::Mail(cmd) => mail_cmd::run(&ctx, cmd),
        Command::Export(args) => export_cmd::run(&ctx, args),
        Command::Rule(cmd) => rule_cmd::run(cmd),
        Command::Test(args) => test_cmd::run(args),
    }
}

/// A closed stdout or stderr (`herald outbox list | head -1`) ends the command the way it
/// ends `cat` or `ls`: SIGPIPE kills it quietly (a shell reports 141), instead of the Rust
/// default of ignoring SIGPIPE, which turns the first print into a panic and exit 101.
/// Dying there is safe: every store write is one transaction, and a killed `deliver` is
/// what the crash tests cover. Sockets are unaffected (Rust sends with MSG_NOSIGNAL).
fn die_quietly_on_a_closed_pipe() {
    // SAFETY: setting a signal's disposition to the default has no preconditions; it runs
    // first thing in `main`, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Logs on stderr, as text or JSON (`log.format`), filtered by `HERALD_LOG`.
fn init_tracing(format: LogFormat) {
    let filter = log_filter(std::env::var("HERALD_LOG").ok().as_deref());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// `HERALD_LOG`: a bare level (`debug`) is Herald's own lines at that level, other crates
/// (the wasm compiler, HTTP, SQLite) staying at `warn`; a full filter (`herald=debug,
/// cranelift=info`) is taken as written, so a crate named there is shown.
fn log_filter(spec: Option<&str>) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    match spec.map(str::trim) {
        None | Some("") => EnvFilter::new("warn"),
        Some(level) if LEVELS.contains(&level.to_ascii_lowercase().as_str()) => {
            EnvFilter::new(format!("warn,herald={level}"))
        }
        Some(spec) => EnvFilter::try_new(spec).unwrap_or_else(|err| {
            eprintln!("warning: HERALD_LOG={spec:?} is not a log filter ({err}); using warn");
            EnvFilter::new("warn")
        }),
    }
}

/// What every command gets from the global options.
pub struct Context {
    config_path: PathBuf,
    state_dir: Option<PathBuf>,
}

impl Context {
    /// Load the config, and warn about settings that put the SMTP password at risk.
    fn config(&self) -> Result<Config, CliError> {
        let config = Config::load(&self.config_path, self.state_dir.as_deref())?;
        for warning in config.smtp_warnings() {
            eprintln!("warning: {warning}");
        }
        Ok(config)
    }
}

/// The config, the directory and the loaded rules.
struct Loaded {
    config: Config,
    evaluator: Evaluator,
}

impl Loaded {
    /// Failures in a row after which a rule is quarantined.
    fn quarantine_after(&self) -> u32 {
        self.config.sandbox.quarantine_after
    }
}

fn load(ctx: &Context) -> Result<Loaded, CliError> {
    let config = ctx.config()?;
    let directory = directory_of(&config)?;
    let evaluator = Evaluator::new(&config, Arc::new(directory))
        .map_err(|e| CliError::Usage(format!("{e:#}")))?;
    Ok(Loaded { config, evaluator })
}

/// Evaluate every pending journal event, printing each one's outcomes as it commits.
fn evaluate_reporting(
    store: &mut crate::store::Store,
    loaded: &Loaded,
    json: bool,
) -> Result<report::Tally, CliError> {
    evaluate_reporting_with(store, loaded, json, || {})
}

/// [`evaluate_reporting`], calling `committed` after each event is committed.
fn evaluate_reporting_with(
    store: &mut crate::store::Store,
    loaded: &Loaded,
    json: bool,
    committed: impl Fn(),
) -> Result<report::Tally, CliError> {
    let mut tally = report::Tally::default();
    let mut out = std::io::stdout().lock();
    let mut print_err = None;
    crate::pipeline::evaluate_pending(
        store,
        &loaded.evaluator,
        loaded.quarantine_after(),
        |done| {
            tally.add(&done.outcomes, &done.skipped_rules);
            let seen = report::EventReport {
                event: &done.event,
                outcomes: &done.outcomes,
                quarantined: &done.skipped_rules,
            };
            let printed = report::print(&mut out, seen, json, report::Detail::Brief);
            if let Err(err) = printed {
                print_err.get_or_insert(err);
            }
            committed();
        },
    )?;
    match print_err {
        Some(err) => Err(CliError::Runtime(err.into())),
        None => Ok(tally),
    }
}

/// The directory the config names: its file, or OMERO's database (the stored snapshot, with a
/// warning, when the database cannot be read). Warns when no admin has an email.
fn directory_of(config: &Config) -> Result<Directory, CliError> {
    let (directory, fix) = match &config.directory.source {
        DirectorySource::File => (
            load_directory(&config.directory.path)?,
            format!("an `email:` in {}", config.directory.path.display()),
        ),
        DirectorySource::OmeroDb { db, .. } => {
            let loaded = crate::sources::omero::directory::load(db, &config.store.path);
            if let Some(stale) = &loaded.stale {
                eprintln!("warning: {stale}");
            }
            let fix = "an email in OMERO (directory.source: omero-db)".to_owned();
            (loaded.directory, fix)
        }
    };
    warn_if_no_admin_email(&directory, &fix);
    Ok(directory)
}

fn load_directory(path: &Path) -> Result<Directory, CliError> {
    Directory::load(path).map_err(|err| CliError::Usage(err.to_string()))
}

/// Only `herald serve` makes ticks: `config check` says so for each scheduled rule.
fn warn_about_schedules(config: &Config) {
    for rule in config
        .rules
        .iter()
        .filter(|r| r.enabled && r.schedule.is_some())
    {
        eprintln!(
            "note: rule {} has a schedule; only `herald serve` makes its `herald.tick` events",
            rule.name
        );
    }
}

/// OMERO's root has no email by default, so admin mail goes nowhere: say so.
fn warn_if_no_admin_email(dir: &Directory, fix: &str) {
    if dir
        .admins()
        .iter()
        .any(|u| directory::valid_email(u).is_some())
    {
        return;
    }
    eprintln!(
        "warning: no admin (member of the `system` group) has a valid email, so mail to admins goes nowhere.\n  \
         fix: give root, or another member of `system`, {fix}"
    );
}
