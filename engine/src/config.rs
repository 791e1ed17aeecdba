//! The YAML configuration (`etc/herald.yaml`): schema, defaults, validation and admin-friendly errors.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;
use serde::Deserialize;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess,
    Unexpected, Visitor,
};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The sender used when `mail.from` is absent: OMERO's default.
const DEFAULT_FROM: &str = "omero@localhost";

// ---------------------------------------------------------------------------------------------
// The validated configuration
// ---------------------------------------------------------------------------------------------

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
    /// The rules, in file order.
    pub rules: Vec<RuleConfig>,
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryConfig {
    /// The directory file; `directory.yaml` beside the config file by default.
    pub path: PathBuf,
}

/// The `sandbox` section.
#[derive(Clone, Debug, PartialEq)]
pub struct SandboxConfig {
    /// Where compiled components are cached; `{state_dir}/cache` by default.
    pub cache_dir: PathBuf,
    /// The default limits of every rule invocation.
    pub limits: Limits,
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
    /// Whether the rule runs at all.
    pub enabled: bool,
    /// The rule's own settings (always a JSON object).
    pub config: serde_json::Value,
    /// The limits: the rule's overrides merged over `sandbox.limits`.
    pub limits: Limits,
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
        let text = std::fs::read_to_string(file).map_err(|error| ConfigError::Read {
            file: file.to_path_buf(),
            error,
        })?;
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
        RuleChecks { text, file }.run(&config.rules)?;
        Ok(config)
    }

    /// The rule called `name`.
    pub fn rule(&self, name: &str) -> Option<&RuleConfig> {
        self.rules.iter().find(|rule| rule.name == name)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why the config could not be loaded. Its `Display` names the file, line, key path and fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "cannot read config {}: {error}\n  fix: pass --config PATH or set HERALD_CONFIG",
        file.display()
    )]
    Read {
        /// The config file.
        file: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// The file was read but is not a valid config.
    #[error("{0}")]
    Invalid(Diagnostic),
}

impl ConfigError {
    /// Where and what the problem is, unless the file could not be read at all.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid(diagnostic) => Some(diagnostic),
        }
    }
}

impl From<Diagnostic> for ConfigError {
    fn from(diagnostic: Diagnostic) -> Self {
        ConfigError::Invalid(diagnostic)
    }
}

/// A problem in a YAML file Herald reads: where it is, what is wrong and how to fix it.
///
/// Displays as `FILE:LINE:COLUMN: KEY.PATH: MESSAGE` and a second line `  fix: FIX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as given.
    pub file: PathBuf,
    /// Where in the file, when known.
    pub location: Option<Location>,
    /// The key path, such as `rules[1].limits.fuel` (empty for the whole document).
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

/// A 1-based line and column in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(at) = self.location {
            write!(f, ":{}:{}", at.line, at.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}\n  fix: {}", self.message, self.fix)
    }
}

impl std::error::Error for Diagnostic {}

// ---------------------------------------------------------------------------------------------
// The file as written (serde model)
// ---------------------------------------------------------------------------------------------

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<PathValue>,
    mail: Option<RawMail>,
    store: Option<RawPathSection>,
    directory: Option<RawPathSection>,
    sandbox: Option<RawSandbox>,
    rules: Option<Vec<RawRule>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMail {
    from: Option<Sender>,
    transport: Option<TransportKind>,
    file_dir: Option<PathValue>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPathSection {
    path: Option<PathValue>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSandbox {
    cache_dir: Option<PathValue>,
    limits: Option<LimitsPatch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: RuleName,
    module: ModuleSpec,
    on: Option<EventTypes>,
    schedule: Option<Schedule>,
    enabled: Option<bool>,
    config: Option<serde_json::Map<String, serde_json::Value>>,
    limits: Option<LimitsPatch>,
}

/// Limits as written: each key optional, merged over the defaults.
#[derive(Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsPatch {
    fuel: Option<Fuel>,
    memory: Option<MemorySize>,
    wall_time: Option<WallTime>,
    stack: Option<StackSize>,
    max_messages: Option<Count>,
    max_output: Option<OutputSize>,
    max_recipients: Option<Count>,
    max_log: Option<LogSize>,
}

impl LimitsPatch {
    /// These overrides applied over `base`.
    fn over(self, base: Limits) -> Limits {
        Limits {
            fuel: self.fuel.map_or(base.fuel, |v| v.0),
            memory_bytes: self.memory.map_or(base.memory_bytes, |v| v.0),
            wall_time: self.wall_time.map_or(base.wall_time, |v| v.0),
            stack_bytes: self.stack.map_or(base.stack_bytes, |v| v.0),
            max_messages: self.max_messages.map_or(base.max_messages, |v| v.0),
            max_output_bytes: self.max_output.map_or(base.max_output_bytes, |v| v.0),
            max_recipients: self.max_recipients.map_or(base.max_recipients, |v| v.0),
            max_log_bytes: self.max_log.map_or(base.max_log_bytes, |v| v.0),
        }
    }
}

impl RawConfig {
    /// Apply defaults and resolve paths against the config file's directory.
    fn resolve(self, file: &Path, state_dir: Option<&Path>) -> Config {
        let base = file.parent().unwrap_or(Path::new(""));
        let state_dir = match state_dir {
            Some(dir) => dir.to_path_buf(),
            None => base.join(self.state_dir.map_or_else(|| "../var".into(), |p| p.0)),
        };
        let in_state = |value: Option<PathValue>, default: &str| {
            value.map_or_else(|| state_dir.join(default), |p| base.join(p.0))
        };
        let mail = self.mail.unwrap_or_default();
        let mail = MailConfig {
            from: mail.from.map_or_else(default_sender, |s| s.0),
            transport: mail.transport.unwrap_or_default(),
            file_dir: in_state(mail.file_dir, "mail"),
        };
        let store = StoreConfig {
            path: in_state(self.store.and_then(|s| s.path), "herald.db"),
        };
        let directory = DirectoryConfig {
            path: base.join(
                self.directory
                    .and_then(|d| d.path)
                    .map_or_else(|| "directory.yaml".into(), |p| p.0),
            ),
        };
        let sandbox = self.sandbox.unwrap_or_default();
        let sandbox = SandboxConfig {
            cache_dir: in_state(sandbox.cache_dir, "cache"),
            limits: sandbox.limits.unwrap_or_default().over(Limits::default()),
        };
        let rules = self
            .rules
            .unwrap_or_default()
            .into_iter()
            .map(|rule| rule.resolve(base, sandbox.limits))
            .collect();
        Config {
            file: file.to_path_buf(),
            state_dir,
            mail,
            store,
            directory,
            sandbox,
            rules,
        }
    }
}

impl RawRule {
    fn resolve(self, base: &Path, defaults: Limits) -> RuleConfig {
        let module = match self.module.0 {
            ModuleRef::Path(path) => ModuleRef::Path(base.join(path)),
            builtin => builtin,
        };
        RuleConfig {
            name: self.name.0,
            module,
            on: self.on.map(|on| on.0).unwrap_or_default(),
            schedule: self.schedule,
            enabled: self.enabled.unwrap_or(true),
            config: serde_json::Value::Object(self.config.unwrap_or_default()),
            limits: self.limits.unwrap_or_default().over(defaults),
        }
    }
}

fn default_sender() -> Option<Mailbox> {
    Some(
        DEFAULT_FROM
            .parse()
            .expect("the default sender is a valid mailbox"),
    )
}

/// "builtin:a, builtin:b" for messages.
fn builtin_list() -> String {
    let names: Vec<String> = crate::builtin::names()
        .map(|name| format!("builtin:{name}"))
        .collect();
    if names.is_empty() {
        "(none are built in)".to_owned()
    } else {
        names.join(", ")
    }
}

// ---------------------------------------------------------------------------------------------
// Checks that need the whole file
// ---------------------------------------------------------------------------------------------

/// Cross-entry checks on the rules, reported with the line found by [`locate`].
struct RuleChecks<'a> {
    text: &'a str,
    file: &'a Path,
}

impl RuleChecks<'_> {
    fn run(&self, rules: &[RuleConfig]) -> Result<(), ConfigError> {
        for (index, rule) in rules.iter().enumerate() {
            self.unique_name(rules, index)?;
            self.has_trigger(rule, index)?;
            self.module_exists(rule, index)?;
        }
        Ok(())
    }

    fn unique_name(&self, rules: &[RuleConfig], index: usize) -> Result<(), ConfigError> {
        let name = &rules[index].name;
        let Some(first) = rules[..index].iter().position(|rule| &rule.name == name) else {
            return Ok(());
        };
        let first_at = locate(self.text, &[Seg::Key("rules"), Seg::Index(first)]);
        Err(self.error(
            index,
            "name",
            format!(
                "the rule name `{name}` is already used by rules[{first}]{}",
                at_line(first_at)
            ),
            format!("give each rule its own name, e.g. `{name}-2`"),
        ))
    }

    fn has_trigger(&self, rule: &RuleConfig, index: usize) -> Result<(), ConfigError> {
        if !rule.on.is_empty() || rule.schedule.is_some() {
            return Ok(());
        }
        Err(self.error(
            index,
            "on",
            format!(
                "rule `{}` would never run: it has no event types in `on` and no `schedule`",
                rule.name
            ),
            "list the event types it reacts to, e.g. `on: [omero.user.created]`, or add a \
             `schedule` such as \"0 0 8 * * *\""
                .to_owned(),
        ))
    }

    fn module_exists(&self, rule: &RuleConfig, index: usize) -> Result<(), ConfigError> {
        let ModuleRef::Path(path) = &rule.module else {
            return Ok(());
        };
        if path.is_file() {
            return Ok(());
        }
        let problem = if path.exists() {
            "is not a file"
        } else {
            "does not exist"
        };
        Err(self.error(
            index,
            "module",
            format!("the module file {} {problem}", path.display()),
            format!(
                "build the rule (`cargo build --target wasm32-wasip2 --release`) and point `module` \
                 at its .wasm file, relative to {}; or use a built-in rule: {}",
                self.base_dir(),
                builtin_list()
            ),
        ))
    }

    fn base_dir(&self) -> String {
        match self.file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => format!("{}/", dir.display()),
            _ => "the current directory".to_owned(),
        }
    }

    fn error(&self, index: usize, key: &str, message: String, fix: String) -> ConfigError {
        let path = [Seg::Key("rules"), Seg::Index(index), Seg::Key(key)];
        diagnostic_at(self.text, self.file, &path, message, fix).into()
    }
}

/// " (line N)" when the line is known.
pub(crate) fn at_line(location: Option<Location>) -> String {
    location.map_or_else(String::new, |at| format!(" (line {})", at.line))
}

// ---------------------------------------------------------------------------------------------
// Validated values, checked inside the deserializer so that serde_yaml reports their line
// ---------------------------------------------------------------------------------------------

/// A YAML scalar as seen by [`Check`].
#[derive(Clone, Copy)]
enum Scalar<'a> {
    Int(u64),
    Neg(i64),
    Str(&'a str),
}

impl Scalar<'_> {
    fn unexpected(&self) -> Unexpected<'_> {
        match *self {
            Scalar::Int(n) => Unexpected::Unsigned(n),
            Scalar::Neg(n) => Unexpected::Signed(n),
            Scalar::Str(s) => Unexpected::Str(s),
        }
    }
}

/// A visitor that accepts a scalar when `check` returns `Ok`. On `Err(reason)` it fails with
/// "invalid value: …, expected …" (plus the reason in parentheses when not empty).
struct Check<T, F> {
    expected: String,
    check: F,
    value: PhantomData<T>,
}

/// Deserialize one scalar through `check`; maps and lists fail with "invalid type".
fn check_scalar<'de, D, T, F>(d: D, expected: impl Into<String>, check: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: Fn(Scalar<'_>) -> Result<T, String>,
{
    d.deserialize_any(Check {
        expected: expected.into(),
        check,
        value: PhantomData,
    })
}

/// Deserialize one scalar as text (a plain `2024` is the text "2024") through `check`.
fn check_text<'de, D, T, F>(d: D, expected: impl Into<String>, check: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: Fn(&str) -> Result<T, String>,
{
    let check = |scalar: Scalar<'_>| match scalar {
        Scalar::Str(text) => check(text),
        _ => rejected(),
    };
    d.deserialize_str(Check {
        expected: expected.into(),
        check,
        value: PhantomData,
    })
}

impl<T, F: Fn(Scalar<'_>) -> Result<T, String>> Check<T, F> {
    fn finish<E: de::Error>(self, scalar: Scalar<'_>) -> Result<T, E> {
        (self.check)(scalar).map_err(|reason| {
            let reason = if reason.is_empty() {
                reason
            } else {
                format!(" ({reason})")
            };
            let found = scalar.unexpected();
            E::custom(format_args!(
                "invalid value: {found}, expected {}{reason}",
                self.expected
            ))
        })
    }
}

impl<'de, T, F: Fn(Scalar<'_>) -> Result<T, String>> Visitor<'de> for Check<T, F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expected)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.finish(Scalar::Int(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.finish(u64::try_from(v).map_or(Scalar::Neg(v), Scalar::Int))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.finish(Scalar::Str(v))
    }
}

/// No reason beyond "expected …".
fn rejected<T>() -> Result<T, String> {
    Err(String::new())
}

/// A non-empty path string.
struct PathValue(PathBuf);

impl<'de> Deserialize<'de> for PathValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_text(d, "a path", |text| match text.trim() {
            "" => rejected(),
            _ => Ok(PathValue(text.into())),
        })
    }
}

/// `mail.from`: a mailbox, or `""` for "sending disabled".
struct Sender(Option<Mailbox>);

impl<'de> Deserialize<'de> for Sender {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected = "an address like `OMERO <omero@example.org>`, or \"\" to disable sending";
        check_text(d, expected, |text| match text.trim() {
            "" => Ok(Sender(None)),
            address => address
                .parse()
                .map(|m| Sender(Some(m)))
                .or_else(|_| rejected()),
        })
    }
}

/// A rule name: `[a-z0-9][a-z0-9-]*`.
struct RuleName(String);

fn is_rule_name(name: &str) -> bool {
    let lower_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    name.starts_with(lower_alnum) && name.chars().all(|c| lower_alnum(c) || c == '-')
}

impl<'de> Deserialize<'de> for RuleName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected =
            "a rule name of lowercase letters, digits and dashes, starting with a letter or digit";
        check_text(d, expected, |text| {
            if is_rule_name(text) {
                Ok(RuleName(text.to_owned()))
            } else {
                rejected()
            }
        })
    }
}

/// `module`: `builtin:NAME` (checked against the embedded rules) or a path (checked later).
struct ModuleSpec(ModuleRef);

impl<'de> Deserialize<'de> for ModuleSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected = format!("one of {} or a path to a .wasm file", builtin_list());
        check_text(d, expected, |text| module_ref(text.trim()).map(ModuleSpec))
    }
}

fn module_ref(text: &str) -> Result<ModuleRef, String> {
    match text.strip_prefix("builtin:") {
        Some(name) if crate::builtin::names().any(|known| known == name) => {
            Ok(ModuleRef::Builtin(name.to_owned()))
        }
        Some(name) => Err(format!("there is no built-in rule `{name}`")),
        None if text.is_empty() => rejected(),
        None => Ok(ModuleRef::Path(text.into())),
    }
}

/// `on`: a list of event types, or a single one.
struct EventTypes(Vec<String>);

/// One event type: non-empty, no whitespace.
struct EventType(String);

const EVENT_TYPE: &str = "an event type such as omero.user.created (no spaces)";

fn event_type(text: &str) -> Result<String, String> {
    let valid = !text.is_empty() && !text.contains(char::is_whitespace);
    if valid {
        Ok(text.to_owned())
    } else {
        rejected()
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_text(d, EVENT_TYPE, |text| event_type(text).map(EventType))
    }
}

impl<'de> Deserialize<'de> for EventTypes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EventTypesVisitor)
    }
}

struct EventTypesVisitor;

impl<'de> Visitor<'de> for EventTypesVisitor {
    type Value = EventTypes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of event types, e.g. [omero.user.created]")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<EventTypes, E> {
        let invalid = || E::invalid_value(Unexpected::Str(v), &EVENT_TYPE);
        event_type(v)
            .map(|t| EventTypes(vec![t]))
            .map_err(|_| invalid())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EventTypes, A::Error> {
        let mut types = Vec::new();
        while let Some(EventType(t)) = seq.next_element()? {
            types.push(t);
        }
        Ok(EventTypes(types))
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected = "a cron schedule of 6 or 7 fields, seconds first";
        check_text(d, expected, |text| parse_schedule(text.trim()))
    }
}

fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let fields = text.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(format!(
            "it has {fields} fields; Herald's cron starts with a seconds field"
        ));
    }
    let cron = text.parse::<cron::Schedule>().map_err(|err| {
        // cron's message is "EXPR\n   ^\nREASON"; keep the reason.
        let message = err.to_string();
        message.lines().skip(2).collect::<Vec<_>>().join(" ")
    })?;
    Ok(Schedule {
        source: text.to_owned(),
        cron,
    })
}

/// `fuel`: above 0.
#[derive(Clone, Copy)]
struct Fuel(u64);

impl<'de> Deserialize<'de> for Fuel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_scalar(d, "a fuel budget above 0", |s| match s {
            Scalar::Int(n) if n > 0 => Ok(Fuel(n)),
            _ => rejected(),
        })
    }
}

/// A count above 0 that fits a u32.
#[derive(Clone, Copy)]
struct Count(u32);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_scalar(
            d,
            format!("a whole number from 1 to {}", u32::MAX),
            |s| match s {
                Scalar::Int(n) => u32::try_from(n)
                    .ok()
                    .filter(|&n| n > 0)
                    .map(Count)
                    .ok_or_default(),
                _ => rejected(),
            },
        )
    }
}

/// `wall_time`: a humantime duration above 0 and at most 60s.
#[derive(Clone, Copy)]
struct WallTime(Duration);

const MAX_WALL_TIME: Duration = Duration::from_secs(60);

impl<'de> Deserialize<'de> for WallTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_scalar(d, "a duration above 0 and at most 60s", |s| {
            let time = match s {
                Scalar::Str(text) => {
                    humantime::parse_duration(text.trim()).map_err(|e| e.to_string())?
                }
                Scalar::Int(_) => return Err("a unit is needed, e.g. 100ms".to_owned()),
                Scalar::Neg(_) => return rejected(),
            };
            let in_range = !time.is_zero() && time <= MAX_WALL_TIME;
            if in_range {
                Ok(WallTime(time))
            } else {
                rejected()
            }
        })
    }
}

/// A byte size from `MIN` to `MAX`: a plain integer, or a whole number with a unit.
#[derive(Clone, Copy)]
struct Size<const MIN: u64, const MAX: u64>(u64);

type MemorySize = Size<{ 64 * KIB }, { 4 * GIB }>;
type StackSize = Size<{ 64 * KIB }, { 64 * MIB }>;
type OutputSize = Size<KIB, GIB>;
type LogSize = Size<0, GIB>;

impl<const MIN: u64, const MAX: u64> Size<MIN, MAX> {
    fn range() -> String {
        format!("from {} to {}", show_size(MIN), show_size(MAX))
    }

    /// The fix hint for a key of this size type.
    fn hint(example: &str) -> String {
        format!(
            "write a size {} as bytes or with a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. {example}",
            Self::range()
        )
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Size<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_scalar(d, format!("a size {}", Self::range()), |s| {
            let bytes = match s {
                Scalar::Int(n) => n,
                Scalar::Str(text) => parse_size(text).ok_or_default()?,
                Scalar::Neg(_) => return rejected(),
            };
            if (MIN..=MAX).contains(&bytes) {
                Ok(Size(bytes))
            } else {
                rejected()
            }
        })
    }
}

/// "16MiB", "512 KiB", "1MB", "100" (bytes); units are case-insensitive.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => KIB,
        "mib" => MIB,
        "gib" => GIB,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(multiplier)
}

/// A size in the largest binary unit that divides it exactly.
fn show_size(bytes: u64) -> String {
    let unit = [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")]
        .into_iter()
        .find(|&(size, _)| bytes != 0 && bytes.is_multiple_of(size));
    match unit {
        Some((size, name)) => format!("{}{name}", bytes / size),
        None => format!("{bytes} bytes"),
    }
}

/// `Option::ok_or(String::new())` for the checks above.
trait OkOrDefault<T> {
    fn ok_or_default(self) -> Result<T, String>;
}

impl<T> OkOrDefault<T> for Option<T> {
    fn ok_or_default(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

// ---------------------------------------------------------------------------------------------
// Fix hints
// ---------------------------------------------------------------------------------------------

/// The fix hint for a config key, by its name.
fn config_hint(key: &str) -> Option<String> {
    let hint = match key {
        "state_dir" => {
            "write a directory path, relative to the config file's directory, e.g. ../var"
        }
        "mail" => "write a map with some of: from, transport, file_dir",
        "from" => "write an address like `OMERO <omero@example.org>`, or \"\" to disable sending",
        "transport" => "write `file` (writes .eml files into file_dir) or `smtp`",
        "file_dir" | "cache_dir" => {
            "write a directory path, relative to the config file's directory"
        }
        "path" => "write a file path, relative to the config file's directory",
        "store" | "directory" => "write a map with the key `path`",
        "sandbox" => "write a map with some of: cache_dir, limits",
        "limits" => {
            "write a map with some of: fuel, memory, wall_time, stack, max_messages, max_output, \
             max_recipients, max_log"
        }
        "fuel" => "set fuel to a positive number of instructions, e.g. 10000000",
        "memory" => return Some(MemorySize::hint("16MiB")),
        "stack" => return Some(StackSize::hint("512KiB")),
        "max_output" => return Some(OutputSize::hint("1MiB")),
        "max_log" => return Some(LogSize::hint("64KiB")),
        "wall_time" => "write a duration above 0 and at most 60s, with a unit, e.g. 100ms or 2s",
        "max_messages" => "set a whole number above 0, e.g. 100",
        "max_recipients" => "set a whole number above 0, e.g. 1000",
        "rules" => "write a list of rules, each item starting with `- name: ...`",
        "name" => {
            "use lowercase letters, digits and dashes, starting with a letter or digit, e.g. new-user"
        }
        "module" => {
            return Some(format!(
                "write one of {} or a path to a .wasm file, relative to the config file's directory",
                builtin_list()
            ));
        }
        "on" => "list the event types the rule reacts to, e.g. `on: [omero.user.created]`",
        "schedule" => {
            "write a cron line in quotes with seconds first: sec min hour day month weekday [year], \
             e.g. \"0 0 8 * * *\" for 08:00:00 every day"
        }
        "enabled" => "write true or false",
        "config" => {
            "write a map of the rule's settings with text keys, e.g. `config: {mode: parity}`"
        }
        _ => return None,
    };
    Some(hint.to_owned())
}

/// The fix for a deserialization error: by the kind of message, else by the nearest key with a hint.
fn fix_for(path: &str, message: &str, hint: fn(&str) -> Option<String>) -> String {
    let mut keys = path
        .rsplit('.')
        .map(|segment| segment.split('[').next().unwrap_or(segment));
    let key = keys.clone().next().unwrap_or_default();
    if message.starts_with("unknown field") {
        return format!(
            "remove `{key}` or correct its spelling; the keys allowed here are listed above"
        );
    }
    if message.starts_with("unknown variant") {
        return "use one of the values listed above".to_owned();
    }
    if let Some(field) = quoted_after(message, "missing field `") {
        let hint = hint(field).map_or_else(String::new, |hint| format!("; {hint}"));
        return format!("add `{field}:` to this entry{hint}");
    }
    if let Some(field) = quoted_after(message, "duplicate field `") {
        return format!("keep only one `{field}:` in this entry");
    }
    if message.contains("more than one document") {
        return "keep a single YAML document: remove the `---` separators".to_owned();
    }
    if is_syntax_error(message) {
        return "fix the YAML syntax at this line: check the indentation, close quotes and brackets, \
                and quote values that start with * & ! % @ ` { [ or contain \": \""
            .to_owned();
    }
    keys.find_map(hint)
        .unwrap_or_else(|| "correct this value".to_owned())
}

/// `x` from "PREFIXx`…".
fn quoted_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    message.strip_prefix(prefix)?.split('`').next()
}

fn is_syntax_error(message: &str) -> bool {
    const MARKERS: [&str; 7] = [
        "while parsing",
        "while scanning",
        "did not find expected",
        "could not find expected",
        "found character",
        "found unexpected",
        "mapping values are not allowed",
    ];
    MARKERS.iter().any(|marker| message.contains(marker))
}

// ---------------------------------------------------------------------------------------------
// YAML plumbing shared with the directory file
// ---------------------------------------------------------------------------------------------

/// Deserialize `text`, turning any error into a [`Diagnostic`] with line, key path and a fix
/// from [`fix_for`] with the file's `hint` table.
pub(crate) fn parse_yaml<T: DeserializeOwned>(
    text: &str,
    file: &Path,
    hint: fn(&str) -> Option<String>,
) -> Result<T, Diagnostic> {
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text)).map_err(|err| {
        let tracked = err.path().to_string();
        let inner = err.into_inner();
        let location = inner.location().map(|l| Location {
            line: l.line(),
            column: l.column(),
        });
        let (path, message) = split_message(&inner.to_string(), &tracked, location);
        let fix = fix_for(&path, &message, hint);
        Diagnostic {
            file: file.to_path_buf(),
            location,
            path,
            message,
            fix,
        }
    })
}

/// The key path and bare message of a serde_yaml error, given the path serde_path_to_error
/// tracked. serde_yaml writes "PATH: MESSAGE at line L column C"; its PATH is the right one for
/// a missing field (the tracked path then ends at the last key read), the tracked one otherwise
/// (it includes an unknown key). Unknown (`?`) steps are dropped.
fn split_message(full: &str, tracked: &str, location: Option<Location>) -> (String, String) {
    let message = match location {
        Some(at) => full.replacen(&format!(" at line {} column {}", at.line, at.column), "", 1),
        None => full.to_owned(),
    };
    let (own_path, message) = match message.split_once(": ") {
        Some((head, rest)) if !head.is_empty() && tracked.starts_with(head) => (head, rest),
        _ => ("", message.as_str()),
    };
    let path = if message.starts_with("missing field") {
        own_path
    } else {
        tracked
    };
    let path = path.trim_end_matches(['?', '.']);
    (path.to_owned(), message.to_owned())
}

/// One step of a key path.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Seg<'a> {
    /// A map key.
    Key(&'a str),
    /// A list index.
    Index(usize),
}

/// `rules[1].name` for `[Key("rules"), Index(1), Key("name")]`.
pub(crate) fn key_path(path: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) if out.is_empty() => out.push_str(key),
            Seg::Key(key) => out.extend([".", key]),
            Seg::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// A diagnostic for a check made after deserialization, located by [`locate`].
pub(crate) fn diagnostic_at(
    text: &str,
    file: &Path,
    path: &[Seg<'_>],
    message: String,
    fix: String,
) -> Diagnostic {
    let location = locate(text, path);
    Diagnostic {
        file: file.to_path_buf(),
        location,
        path: key_path(path),
        message,
        fix,
    }
}

/// The line and column of the value at `path`, or of its nearest present ancestor.
///
/// It re-reads the document with a seed that fails on purpose at that value, so serde_yaml
/// reports the value's own position.
pub(crate) fn locate(text: &str, path: &[Seg<'_>]) -> Option<Location> {
    (0..=path.len()).rev().find_map(|len| {
        let err = Probe(&path[..len])
            .deserialize(serde_yaml::Deserializer::from_str(text))
            .err()?;
        err.location().map(|l| Location {
            line: l.line(),
            column: l.column(),
        })
    })
}

/// Walks down `path` and fails at the value found there (or at a scalar standing in its way).
struct Probe<'p, 'k>(&'p [Seg<'k>]);

/// Fails at whatever value it is given.
struct Found;

impl Visitor<'_> for Found {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nothing (locating a value)")
    }
}

impl<'de> DeserializeSeed<'de> for Probe<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.0.is_empty() {
            d.deserialize_any(Found)
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Probe<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map or a list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<serde_yaml::Value>()? {
            match self.0 {
                [Seg::Key(want), rest @ ..] if key.as_str() == Some(*want) => {
                    map.next_value_seed(Probe(rest))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let more = match self.0 {
                [Seg::Index(want), rest @ ..] if *want == index => {
                    seq.next_element_seed(Probe(rest))?
                }
                _ => seq.next_element::<IgnoredAny>()?.map(drop),
            };
            if more.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "etc/herald.yaml";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_str(text, Path::new(FILE), None)
    }

    fn builtin() -> &'static str {
        crate::builtin::names()
            .next()
            .expect("at least one built-in rule")
    }

    /// The diagnostic of a config that must fail.
    fn fail(text: &str) -> Diagnostic {
        match parse(text) {
            Err(ConfigError::Invalid(diagnostic)) => diagnostic,
            Err(other) => panic!("expected a diagnostic, got {other}"),
            Ok(config) => panic!("expected an error, got {config:?}"),
        }
    }

    fn at(line: usize, column: usize) -> Option<Location> {
        Some(Location { line, column })
    }

    fn rule_yaml(extra: &str) -> String {
        format!(
            "rules:\n  - name: r\n    module: builtin:{}\n    on: [a.b]\n{extra}",
            builtin()
        )
    }

    #[test]
    fn empty_file_gives_defaults_resolved_beside_the_config() {
        let config = parse("").unwrap();
        assert_eq!(config.file, PathBuf::from(FILE));
        assert_eq!(config.state_dir, PathBuf::from("etc/../var"));
        assert_eq!(config.mail.from, Some("omero@localhost".parse().unwrap()));
        assert_eq!(config.mail.transport, TransportKind::File);
        assert_eq!(config.mail.file_dir, PathBuf::from("etc/../var/mail"));
        assert_eq!(config.store.path, PathBuf::from("etc/../var/herald.db"));
        assert_eq!(config.directory.path, PathBuf::from("etc/directory.yaml"));
        assert_eq!(config.sandbox.cache_dir, PathBuf::from("etc/../var/cache"));
        assert_eq!(config.sandbox.limits, Limits::default());
        assert!(config.rules.is_empty());
    }

    #[test]
    fn default_limits_match_the_documented_values() {
        let limits = Limits::default();
        assert_eq!(limits.fuel, 10_000_000);
        assert_eq!(limits.memory_bytes, 16 * 1024 * 1024);
        assert_eq!(limits.wall_time, Duration::from_millis(100));
        assert_eq!(limits.stack_bytes, 512 * 1024);
        assert_eq!((limits.max_messages, limits.max_recipients), (100, 1000));
        assert_eq!(
            (limits.max_output_bytes, limits.max_log_bytes),
            (1024 * 1024, 64 * 1024)
        );
    }

    #[test]
    fn null_sections_mean_defaults() {
        let config = parse("mail:\nstore:\nsandbox:\n  limits:\nrules:\n").unwrap();
        assert_eq!(config.store.path, PathBuf::from("etc/../var/herald.db"));
        assert_eq!(config.sandbox.limits, Limits::default());
    }

    #[test]
    fn paths_are_relative_to_the_config_file_and_absolute_paths_stay() {
        let text = "state_dir: state\nmail: {file_dir: /srv/mail}\nstore: {path: db/h.db}\n\
                    directory: {path: ../dir.yaml}\nsandbox: {cache_dir: c}\n";
        let config = parse(text).unwrap();
        assert_eq!(config.state_dir, PathBuf::from("etc/state"));
        assert_eq!(config.mail.file_dir, PathBuf::from("/srv/mail"));
        assert_eq!(config.store.path, PathBuf::from("etc/db/h.db"));
        assert_eq!(config.directory.path, PathBuf::from("etc/../dir.yaml"));
        assert_eq!(config.sandbox.cache_dir, PathBuf::from("etc/c"));
    }

    #[test]
    fn state_dir_override_wins_and_moves_the_defaults() {
        let config =
            Config::from_str("state_dir: x", Path::new(FILE), Some(Path::new("/tmp/h"))).unwrap();
        assert_eq!(config.state_dir, PathBuf::from("/tmp/h"));
        assert_eq!(config.store.path, PathBuf::from("/tmp/h/herald.db"));
        assert_eq!(config.mail.file_dir, PathBuf::from("/tmp/h/mail"));
    }

    #[test]
    fn a_config_in_the_current_directory_resolves_to_plain_relative_paths() {
        let config = Config::from_str("", Path::new("herald.yaml"), None).unwrap();
        assert_eq!(config.state_dir, PathBuf::from("../var"));
        let config = Config::from_str("state_dir: 2024", Path::new("herald.yaml"), None).unwrap();
        assert_eq!(
            config.state_dir,
            PathBuf::from("2024"),
            "a number-like path is text"
        );
        assert_eq!(config.directory.path, PathBuf::from("directory.yaml"));
    }

    #[test]
    fn a_full_rule_is_parsed_and_its_limits_merged_over_the_sandbox_defaults() {
        let text = format!(
            "sandbox:\n  limits: {{memory: 32MiB, wall_time: 2s}}\n\
             rules:\n  - name: new-user\n    module: builtin:{}\n    on: [omero.user.created, x.y]\n\
             \x20   schedule: \"0 0 8 * * *\"\n    enabled: false\n    config: {{mode: parity, n: [1]}}\n\
             \x20   limits: {{fuel: 5000000, stack: 1MiB, max_log: 0}}\n",
            builtin()
        );
        let config = parse(&text).unwrap();
        let rule = config.rule("new-user").unwrap();
        assert_eq!(rule.module, ModuleRef::Builtin(builtin().to_owned()));
        assert_eq!(rule.module.to_string(), format!("builtin:{}", builtin()));
        assert_eq!(rule.on, ["omero.user.created", "x.y"]);
        assert_eq!(rule.schedule.as_ref().unwrap().source, "0 0 8 * * *");
        assert!(!rule.enabled);
        assert_eq!(rule.config, serde_json::json!({"mode": "parity", "n": [1]}));
        let expected = Limits {
            fuel: 5_000_000,
            memory_bytes: 32 * MIB,
            wall_time: Duration::from_secs(2),
            stack_bytes: MIB,
            max_log_bytes: 0,
            ..Limits::default()
        };
        assert_eq!(rule.limits, expected);
        assert_eq!(config.sandbox.limits.fuel, 10_000_000);
        assert!(config.rule("nope").is_none());
    }

    #[test]
    fn rule_defaults_are_enabled_empty_config_and_sandbox_limits() {
        let rule = parse(&rule_yaml("")).unwrap().rules.remove(0);
        assert!(rule.enabled);
        assert_eq!(rule.config, serde_json::json!({}));
        assert_eq!(rule.limits, Limits::default());
        assert!(rule.schedule.is_none());
    }

    #[test]
    fn zero_fuel_names_file_line_column_key_path_and_fix() {
        let d = fail(&rule_yaml("    limits:\n      fuel: 0\n"));
        assert_eq!(d.location, at(6, 13));
        assert_eq!(d.path, "rules[0].limits.fuel");
        assert_eq!(
            d.to_string(),
            "etc/herald.yaml:6:13: rules[0].limits.fuel: invalid value: integer `0`, expected a fuel \
             budget above 0\n  fix: set fuel to a positive number of instructions, e.g. 10000000"
        );
    }

    #[test]
    fn unknown_key_lists_the_allowed_keys_and_says_to_remove_it() {
        let d = fail(&rule_yaml("    limits:\n      fule: 3\n"));
        assert_eq!(d.location, at(6, 7));
        assert_eq!(d.path, "rules[0].limits.fule");
        assert!(
            d.message
                .starts_with("unknown field `fule`, expected one of `fuel`"),
            "{}",
            d.message
        );
        assert!(
            d.fix.starts_with("remove `fule` or correct its spelling"),
            "{}",
            d.fix
        );
    }

    #[test]
    fn unknown_top_level_key_is_reported() {
        let d = fail("state_dir: x\nsmtp: {}\n");
        assert_eq!((d.location, d.path.as_str()), (at(2, 1), "smtp"));
        assert!(d.message.contains("unknown field `smtp`"));
    }

    #[test]
    fn missing_required_keys_say_what_to_add() {
        let d = fail(&format!("rules:\n  - module: builtin:{}\n", builtin()));
        assert_eq!(d.path, "rules[0]");
        assert_eq!(d.location, at(2, 5));
        assert_eq!(d.message, "missing field `name`");
        assert!(
            d.fix
                .starts_with("add `name:` to this entry; use lowercase"),
            "{}",
            d.fix
        );
        let d = fail("rules:\n  - name: a\n    on: [x]\n");
        assert!(
            d.fix.starts_with("add `module:` to this entry"),
            "{}",
            d.fix
        );
    }

    #[test]
    fn sizes_accept_bytes_and_units_within_bounds() {
        let limits = |v: &str| {
            parse(&format!("sandbox:\n  limits: {{memory: {v}}}\n")).map(|c| c.sandbox.limits)
        };
        assert_eq!(limits("65536").unwrap().memory_bytes, 65536);
        assert_eq!(limits("512KiB").unwrap().memory_bytes, 512 * KIB);
        assert_eq!(limits("1MB").unwrap().memory_bytes, 1_000_000);
        assert_eq!(limits("4 gib").unwrap().memory_bytes, 4 * GIB);
        for bad in ["1KiB", "5GiB", "16M", "-1", "1.5MiB"] {
            let Err(ConfigError::Invalid(d)) = limits(bad) else {
                panic!("{bad} accepted")
            };
            assert_eq!(d.path, "sandbox.limits.memory");
            assert!(
                d.message.contains("expected a size from 64KiB to 4GiB"),
                "{}",
                d.message
            );
            assert!(d.fix.contains("e.g. 16MiB"), "{}", d.fix);
        }
        let d = fail("sandbox:\n  limits:\n    stack: 128MiB\n");
        assert_eq!(d.location, at(3, 12));
        assert!(d.message.contains("from 64KiB to 64MiB"), "{}", d.message);
    }

    #[test]
    fn wall_time_needs_a_unit_and_stays_within_a_minute() {
        let wall = |v: &str| {
            parse(&format!("sandbox: {{limits: {{wall_time: {v}}}}}"))
                .map(|c| c.sandbox.limits.wall_time)
        };
        assert_eq!(wall("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(wall("1min").unwrap(), Duration::from_secs(60));
        let Err(ConfigError::Invalid(d)) = wall("100") else {
            panic!()
        };
        assert!(
            d.message.contains("(a unit is needed, e.g. 100ms)"),
            "{}",
            d.message
        );
        for bad in ["0s", "61s", "soon"] {
            let Err(ConfigError::Invalid(d)) = wall(bad) else {
                panic!("{bad} accepted")
            };
            assert_eq!(d.path, "sandbox.limits.wall_time");
            assert!(d.fix.contains("e.g. 100ms"));
        }
    }

    #[test]
    fn counts_must_be_positive_and_fit() {
        let d = fail("sandbox: {limits: {max_messages: 0}}");
        assert!(
            d.message.contains("expected a whole number from 1 to"),
            "{}",
            d.message
        );
        assert_eq!(d.fix, "set a whole number above 0, e.g. 100");
        let d = fail("sandbox: {limits: {max_recipients: 5000000000}}");
        assert_eq!(d.path, "sandbox.limits.max_recipients");
    }

    #[test]
    fn sender_may_be_a_named_mailbox_or_empty_for_disabled() {
        let from = |v: &str| parse(&format!("mail: {{from: {v}}}")).map(|c| c.mail.from);
        assert_eq!(from("\"\"").unwrap(), None);
        let named = from("\"OMERO <omero@example.org>\"").unwrap().unwrap();
        assert_eq!(named.name.as_deref(), Some("OMERO"));
        assert_eq!(named.email.to_string(), "omero@example.org");
        assert_eq!(from("~").unwrap(), default_sender());
        let Err(ConfigError::Invalid(d)) = from("not-an-address") else {
            panic!()
        };
        assert_eq!(d.path, "mail.from");
        assert!(d.fix.contains("\"\" to disable sending"));
    }

    #[test]
    fn transport_is_file_or_smtp() {
        assert_eq!(
            parse("mail: {transport: smtp}").unwrap().mail.transport,
            TransportKind::Smtp
        );
        let d = fail("mail:\n  transport: smpt\n");
        assert_eq!((d.location, d.path.as_str()), (at(2, 14), "mail.transport"));
        assert!(
            d.message
                .contains("unknown variant `smpt`, expected `file` or `smtp`"),
            "{}",
            d.message
        );
        assert_eq!(d.fix, "use one of the values listed above");
    }

    #[test]
    fn unknown_builtin_lists_the_builtins() {
        let d = fail("rules:\n  - name: a\n    module: builtin:nope\n    on: [x]\n");
        assert_eq!(
            (d.location, d.path.as_str()),
            (at(3, 13), "rules[0].module")
        );
        assert!(
            d.message.contains("there is no built-in rule `nope`"),
            "{}",
            d.message
        );
        assert!(d.message.contains(&format!("builtin:{}", builtin())));
        assert!(d.fix.contains(&format!("builtin:{}", builtin())));
    }

    #[test]
    fn module_paths_resolve_against_the_config_directory_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/rules")).unwrap();
        std::fs::write(dir.path().join("etc/rules/x.wasm"), b"\0asm").unwrap();
        let file = dir.path().join("etc/herald.yaml");
        let text = "rules:\n  - name: x\n    module: rules/x.wasm\n    on: [a]\n";
        std::fs::write(&file, text).unwrap();
        let config = Config::load(&file, None).unwrap();
        let expected = dir.path().join("etc/rules/x.wasm");
        assert_eq!(config.rules[0].module, ModuleRef::Path(expected.clone()));
        assert_eq!(
            config.rules[0].module.to_string(),
            expected.display().to_string()
        );

        let missing = "rules:\n  - name: x\n    on: [a]\n    module: rules/y.wasm\n";
        let Err(ConfigError::Invalid(d)) = Config::from_str(missing, &file, None) else {
            panic!()
        };
        assert_eq!(
            (d.location, d.path.as_str()),
            (at(4, 13), "rules[0].module")
        );
        assert!(
            d.message.ends_with("etc/rules/y.wasm does not exist"),
            "{}",
            d.message
        );
        assert!(
            d.fix.contains("wasm32-wasip2") && d.fix.contains("builtin:"),
            "{}",
            d.fix
        );
        let a_dir = "rules:\n  - name: x\n    on: [a]\n    module: rules\n";
        let Err(ConfigError::Invalid(d)) = Config::from_str(a_dir, &file, None) else {
            panic!()
        };
        assert!(d.message.ends_with("is not a file"), "{}", d.message);
    }

    #[test]
    fn duplicate_rule_names_point_at_the_second_and_mention_the_first() {
        let rule = format!(
            "  - name: dup\n    module: builtin:{}\n    on: [a]\n",
            builtin()
        );
        let d = fail(&format!("rules:\n{rule}{rule}"));
        assert_eq!((d.location, d.path.as_str()), (at(5, 11), "rules[1].name"));
        assert_eq!(
            d.message,
            "the rule name `dup` is already used by rules[0] (line 2)"
        );
        assert_eq!(d.fix, "give each rule its own name, e.g. `dup-2`");
    }

    #[test]
    fn a_rule_needs_events_or_a_schedule() {
        let d = fail(&format!(
            "rules:\n  - name: idle\n    module: builtin:{}\n",
            builtin()
        ));
        assert_eq!((d.location, d.path.as_str()), (at(2, 5), "rules[0].on"));
        assert!(d.message.contains("would never run"));
        assert!(d.fix.contains("schedule"));
        let d = fail(&format!(
            "rules:\n  - name: idle\n    module: builtin:{}\n    on: []\n",
            builtin()
        ));
        assert_eq!(d.location, at(4, 9));
        let scheduled = format!(
            "rules:\n  - name: t\n    module: builtin:{}\n    schedule: 0 0 8 * * *\n",
            builtin()
        );
        assert_eq!(parse(&scheduled).unwrap().rules[0].on, Vec::<String>::new());
    }

    #[test]
    fn on_accepts_one_event_type_and_rejects_spaces() {
        let one = format!(
            "rules:\n  - name: a\n    module: builtin:{}\n    on: omero.user.created\n",
            builtin()
        );
        assert_eq!(parse(&one).unwrap().rules[0].on, ["omero.user.created"]);
        let d = fail(&rule_yaml("").replace("[a.b]", "[a.b, \"a b\"]"));
        assert_eq!((d.location, d.path.as_str()), (at(4, 15), "rules[0].on[1]"));
        assert!(
            d.message.contains("expected an event type"),
            "{}",
            d.message
        );
        assert!(d.fix.contains("on: [omero.user.created]"), "{}", d.fix);
    }

    #[test]
    fn rule_names_are_lowercase_dashed() {
        let numeric = parse(&rule_yaml("").replace("name: r", "name: 404")).unwrap();
        assert_eq!(numeric.rules[0].name, "404");
        let d = fail(&rule_yaml("").replace("name: r", "name: New_User"));
        assert_eq!((d.location, d.path.as_str()), (at(2, 11), "rules[0].name"));
        assert!(d.fix.contains("e.g. new-user"));
    }

    #[test]
    fn schedules_need_six_or_seven_fields() {
        let d = fail(&rule_yaml("    schedule: \"0 8 * * *\"\n"));
        assert_eq!(
            (d.location, d.path.as_str()),
            (at(5, 15), "rules[0].schedule")
        );
        assert!(d.message.contains("it has 5 fields"), "{}", d.message);
        assert!(d.fix.contains("\"0 0 8 * * *\""));
        let d = fail(&rule_yaml("    schedule: \"0 0 25 * * *\"\n"));
        assert!(d.message.contains("Hours"), "{}", d.message);
    }

    #[test]
    fn rule_config_must_be_a_map() {
        let d = fail(&rule_yaml("    config: [1, 2]\n"));
        assert_eq!(
            (d.location, d.path.as_str()),
            (at(5, 13), "rules[0].config")
        );
        assert!(
            d.message.contains("invalid type: sequence, expected a map"),
            "{}",
            d.message
        );
        assert!(d.fix.contains("config: {mode: parity}"));
    }

    #[test]
    fn syntax_errors_give_the_line_and_a_syntax_fix() {
        let d = fail("mail:\n  from: a@b.c\n transport: file\n");
        assert_eq!((d.location, d.path.as_str()), (at(3, 2), ""));
        assert!(d.fix.starts_with("fix the YAML syntax"), "{}", d.fix);
        let d = fail("rules:\n  - name: a\n    schedule: * * * * * *\n");
        assert!(d.fix.starts_with("fix the YAML syntax"), "{}", d.fix);
    }

    #[test]
    fn a_missing_file_says_how_to_point_at_another() {
        let err = Config::load(Path::new("/nonexistent/herald.yaml"), None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot read config /nonexistent/herald.yaml: "),
            "{text}"
        );
        assert!(
            text.ends_with("\n  fix: pass --config PATH or set HERALD_CONFIG"),
            "{text}"
        );
    }

    #[test]
    fn locate_finds_nested_values_and_falls_back_to_the_parent() {
        let text = "a:\n  b: [1, {c: 2}]\nd: 3\n";
        assert_eq!(locate(text, &[Seg::Key("d")]), at(3, 4));
        assert_eq!(
            locate(
                text,
                &[Seg::Key("a"), Seg::Key("b"), Seg::Index(1), Seg::Key("c")]
            ),
            at(2, 14)
        );
        assert_eq!(locate(text, &[Seg::Key("a"), Seg::Key("zz")]), at(2, 3));
        assert_eq!(
            key_path(&[Seg::Key("a"), Seg::Index(1), Seg::Key("c")]),
            "a[1].c"
        );
    }

    #[test]
    fn sizes_show_in_the_largest_exact_unit() {
        assert_eq!(show_size(4 * GIB), "4GiB");
        assert_eq!(show_size(64 * KIB), "64KiB");
        assert_eq!(show_size(0), "0 bytes");
        assert_eq!(parse_size("1 KB"), Some(1000));
        assert_eq!(parse_size("99999999999GiB"), None);
    }
}
