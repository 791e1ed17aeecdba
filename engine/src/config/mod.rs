//! The YAML configuration (`etc/herald.yaml`): the validated types and how a file is loaded.

mod checks;
mod delivery;
mod diagnostic;
mod hints;
mod ingest;
mod limits;
pub(crate) mod omero;
mod raw;
mod scalar;
mod serve;
mod smtp;
mod smtp_listener;
mod sources;
#[cfg(test)]
mod tests;
mod units;
mod values;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use serde::Deserialize;

pub(crate) use diagnostic::at_line;
pub use diagnostic::{Diagnostic, LoadError, Location};
#[cfg(test)]
pub(crate) use diagnostic::{at, expect_invalid};
pub use ingest::IngestConfig;
pub use serve::{
    HttpConfig, LogConfig, LogFormat, Scope, ServeConfig, ServerTls, TokenConfig, TokenSource,
};
pub use smtp::{DkimAlgorithm, DkimSettings, MinTls, PasswordSource, TlsMode};
pub use smtp_listener::{ListenerUser, OmeroMail, SmtpListenerConfig};
pub use sources::{
    DbConnection, DirectorySource, EventlogConfig, LogConfig as OmeroLogConfig, ProbeConfig,
    SourceConfig, Start, WebLogConfig,
};
pub(crate) use yaml::{Seg, Source, parse_yaml, read_yaml};

use checks::RuleChecks;
use hints::config_hint;
use raw::RawConfig;
use units::{KIB, MIB};

/// Why the config could not be loaded. Its `Display` names the file, line, key path and fix.
pub type ConfigError = LoadError;

/// What to do when the config file cannot be read.
const READ_FIX: &str = "pass --config PATH or set HERALD_CONFIG";

/// The loaded and validated configuration. Every path is resolved against the config file's
/// directory (relative paths stay relative to the current directory; nothing is canonicalized).
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The config file, as given.
    pub file: PathBuf,
    /// Where Herald keeps its state; `../var` beside the config file unless overridden.
    pub state_dir: PathBuf,
    /// How mail is sent.
    pub mail: MailConfig,
    /// The durable store (journal and outbox).
    pub store: StoreConfig,
    /// The directory file (users and groups).
    pub directory: DirectoryConfig,
    /// The wasm sandbox.
    pub sandbox: SandboxConfig,
    /// Retries, queue lifetime and the delivery workers' leases.
    pub delivery: DeliveryConfig,
    /// The rules, in file order.
    pub rules: Vec<RuleConfig>,
    /// `herald serve`'s HTTP API.
    pub http: HttpConfig,
    /// `herald serve`'s process settings.
    pub serve: ServeConfig,
    /// Log format.
    pub log: LogConfig,
    /// What ingest admits: size caps and which event types.
    pub ingest: IngestConfig,
    /// Herald as OMERO's mail relay (`herald serve`), when the section is present.
    pub smtp_listener: Option<SmtpListenerConfig>,
    /// The OMERO event sources `herald serve` runs (eventlog, logs, probe).
    pub sources: Vec<SourceConfig>,
}

/// The `delivery` section: when a failed message is tried again, and when it is given up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeliveryConfig {
    /// The shortest wait before a retry (Postfix: 300 s).
    pub min_backoff: Duration,
    /// The longest wait before a retry (Postfix: 4000 s).
    pub max_backoff: Duration,
    /// After this long in the queue a message is a dead letter (Postfix: 5 days).
    pub max_lifetime: Duration,
    /// Up to this much of each wait is added at random, so an outage does not end in a flood.
    pub jitter_percent: u8,
    /// How long a worker holds the rows it took; a worker that dies releases them this way.
    pub lease: Duration,
    /// How often `herald deliver` looks for due rows when it runs until stopped.
    pub poll_interval: Duration,
}

/// The `mail` section.
#[derive(Clone, Debug, PartialEq)]
pub struct MailConfig {
    /// The sender; `None` when `from: ""`, which (as in OMERO) disables sending.
    pub from: Option<Mailbox>,
    /// Which transport delivers the mail.
    pub transport: TransportKind,
    /// Where the file transport writes `.eml` files; `{state_dir}/mail` by default.
    pub file_dir: PathBuf,
    /// The SMTP server, used when `transport: smtp`.
    pub smtp: SmtpConfig,
}

/// The `mail.smtp` section, mirroring `omero.mail.*` with OMERO's defaults. It holds where the
/// password comes from, never the password itself.
#[derive(Clone, Debug, PartialEq)]
pub struct SmtpConfig {
    /// `omero.mail.host`: `localhost`.
    pub host: String,
    /// `omero.mail.port`: 25.
    pub port: u16,
    /// The EHLO name; the machine's host name when absent.
    pub hello_name: Option<String>,
    /// `none` (OMERO's default), `starttls` (required) or `tls` (implicit, SMTPS).
    pub tls: TlsMode,
    /// `omero.mail.username`; AUTH is used when set.
    pub username: Option<String>,
    /// Where the password is read from when sending.
    pub password: Option<PasswordSource>,
    /// An extra CA certificate (PEM) trusted besides the system's, for private relays.
    pub ca_file: Option<PathBuf>,
    /// The lowest TLS version accepted.
    pub min_tls: MinTls,
    /// `omero.mail.smtp.connectiontimeout`: TCP connect (and the TLS handshake for `tls`).
    pub connect_timeout: Duration,
    /// `omero.mail.smtp.timeout`: each command's reply (greeting, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA).
    pub command_timeout: Duration,
    /// Sending the message body and reading the reply to the final `.`.
    pub data_timeout: Duration,
    /// Connections open at once.
    pub max_connections: u32,
    /// DKIM signing, when set.
    pub dkim: Option<DkimSettings>,
}

/// The mail transport: `file` writes `.eml` files, `smtp` talks to a server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// Write each message as an `.eml` file into `mail.file_dir`.
    #[default]
    File,
    /// Send over SMTP.
    Smtp,
}

/// The `store` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// The SQLite database file; `{state_dir}/herald.db` by default.
    pub path: PathBuf,
}

/// The `directory` section.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectoryConfig {
    /// The directory file; `directory.yaml` beside the config file by default.
    pub path: PathBuf,
    /// Where the directory is read from: that file, or OMERO's database.
    pub source: DirectorySource,
}

/// The `sandbox` section.
#[derive(Clone, Debug, PartialEq)]
pub struct SandboxConfig {
    /// Where compiled components are cached; `{state_dir}/cache` by default.
    pub cache_dir: PathBuf,
    /// The default limits of every rule invocation.
    pub limits: Limits,
    /// Quarantine a rule after this many failed invocations in a row (0: never).
    pub quarantine_after: u32,
}

/// The limits of one rule invocation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Wasm fuel (roughly instructions).
    pub fuel: u64,
    /// Maximum linear memory, in bytes.
    pub memory_bytes: u64,
    /// Maximum wall-clock time.
    pub wall_time: Duration,
    /// Maximum wasm stack, in bytes.
    pub stack_bytes: u64,
    /// Maximum number of messages returned.
    pub max_messages: u32,
    /// Maximum total bytes of subjects, bodies and headers returned.
    pub max_output_bytes: u64,
    /// Maximum recipients after directory expansion.
    pub max_recipients: u32,
    /// Maximum bytes of guest stderr and `log()` output kept.
    pub max_log_bytes: u64,
}

impl Limits {
    /// The limits of a Python rule (`lang: python`): these limits, raised to what a
    /// componentize-py component needs at least: its interpreter is pre-initialised in a
    /// memory image of about 12 MiB and one event costs about 0.6M fuel and 4 ms, so
    /// memory is at least 64 MiB, fuel 5e8 and wall time 1 s (docs/writing-rules.md,
    /// "Limits of a Python rule").
    pub fn for_python(self) -> Limits {
        Limits {
            fuel: self.fuel.max(PYTHON_FUEL),
            memory_bytes: self.memory_bytes.max(PYTHON_MEMORY),
            wall_time: self.wall_time.max(PYTHON_WALL_TIME),
            ..self
        }
    }
}

/// A Python rule's least fuel, memory and wall time ([`Limits::for_python`]).
pub const PYTHON_FUEL: u64 = 500_000_000;
pub const PYTHON_MEMORY: u64 = 64 * MIB;
pub const PYTHON_WALL_TIME: Duration = Duration::from_secs(1);

/// The language a rule was written in (`lang:` of a rule entry): it sets the default limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Rust, or any small component: `sandbox.limits` as they are.
    #[default]
    Rust,
    /// A componentize-py component: [`Limits::for_python`].
    Python,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 10_000_000,
            memory_bytes: 16 * MIB,
            wall_time: Duration::from_millis(100),
            stack_bytes: 512 * KIB,
            max_messages: 100,
            max_output_bytes: MIB,
            max_recipients: 1000,
            max_log_bytes: 64 * KIB,
        }
    }
}

/// One entry of `rules`.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleConfig {
    /// The unique rule name.
    pub name: String,
    /// The wasm component that implements the rule.
    pub module: ModuleRef,
    /// The event types the rule is subscribed to.
    pub on: Vec<String>,
    /// When the rule also runs on a timer (`herald.tick` events).
    pub schedule: Option<Schedule>,
    /// What happens to ticks missed while Herald was down (`missed`, default `latest`).
    pub missed: Missed,
    /// Whether the rule runs at all.
    pub enabled: bool,
    /// The rule's own settings (always a JSON object).
    pub config: serde_json::Value,
    /// The limits: the rule's overrides merged over `sandbox.limits`.
    pub limits: Limits,
}

/// Ticks missed while Herald was down: `latest` sends one catch-up tick, `none` sends none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Missed {
    /// One catch-up tick for the most recent missed instant.
    #[default]
    Latest,
    /// No catch-up: the schedule resumes at its next instant.
    None,
}

/// A cron schedule (6 or 7 fields, seconds first) with the text it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// The schedule as written in the config.
    pub source: String,
    /// The parsed schedule.
    pub cron: cron::Schedule,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Where a rule's component comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ModuleRef {
    /// A rule embedded in the binary, by its name in `crate::builtin::names()`.
    Builtin(String),
    /// A `.wasm` file, resolved against the config file's directory.
    Path(PathBuf),
}

impl fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleRef::Builtin(name) => write!(f, "builtin:{name}"),
            ModuleRef::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

impl Config {
    /// Load and validate `file`; `state_dir` overrides the file's `state_dir` when given (a
    /// relative override is relative to the current directory).
    pub fn load(file: &Path, state_dir: Option<&Path>) -> Result<Config, ConfigError> {
        let text = read_yaml(file, "config", READ_FIX)?;
        Self::from_str(&text, file, state_dir)
    }

    /// Parse and validate config text; `file` is used to resolve relative paths and in messages.
    pub fn from_str(
        text: &str,
        file: &Path,
        state_dir: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = parse_yaml(text, file, config_hint)?;
        let config = raw.resolve(file, state_dir);
        smtp::check(Source { text, file }, &config.mail.smtp)?;
        RuleChecks(Source { text, file }).run(&config.rules, &config.ingest)?;
        Ok(config)
    }

    /// The rule called `name`.
    pub fn rule(&self, name: &str) -> Option<&RuleConfig> {
        self.rules.iter().find(|rule| rule.name == name)
    }

    /// The From: used to render mail for display (`replay --expect`, `outbox show`):
    /// `mail.from`, or OMERO's default when an empty `from` disables sending.
    pub fn display_sender(&self) -> Mailbox {
        self.mail
            .from
            .clone()
            .or_else(raw::default_sender)
            .expect("the default sender is a valid mailbox")
    }
}
