//! One test case: its YAML, running it against the rule, and the verdict with a readable diff.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::cli::CliError;
use crate::cli::rule_cmd::single;
use crate::config::{Limits, RuleConfig, parse_yaml, read_yaml};
use crate::evaluate::{Failure, Trial};
use crate::event::{self, Event, SizeCaps};
use crate::mail::Mail;

/// A case as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    /// What the case is about (shown nowhere else; for the reader).
    #[serde(default, rename = "description")]
    _description: Option<String>,
    /// A file of events (relative to the case), one inline event, or a list of them.
    event: serde_json::Value,
    /// The rule's config for this case, instead of herald-rule.yaml's.
    config: Option<serde_json::Value>,
    /// A directory file (relative to the case); Herald's sample directory otherwise.
    directory: Option<PathBuf>,
    expect: Expect,
}

/// What the case expects: the messages, or an error containing a text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    messages: Option<Vec<CaseMail>>,
    error: Option<String>,
}

/// One message as the recipients see it (the engine's copies for each recipient of one
/// message are one entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseMail {
    to: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cc: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reply_to: Vec<String>,
    subject: String,
    text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    html: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
}

impl From<&Mail> for CaseMail {
    fn from(mail: &Mail) -> Self {
        CaseMail {
            to: mail.to.clone(),
            cc: mail.cc.clone(),
            reply_to: mail.reply_to.clone(),
            subject: mail.subject.clone(),
            text: mail.text.clone(),
            html: mail.html.clone(),
            headers: mail.headers.iter().cloned().collect(),
        }
    }
}

/// A loaded case, ready to run.
pub(super) struct Case {
    events: Vec<Event>,
    config: Option<serde_json::Value>,
    directory: Option<PathBuf>,
    expect: Expect,
}

impl Case {
    pub(super) fn load(file: &Path) -> Result<Case, CliError> {
        let text = read_yaml(file, "test case", "check the path")?;
        let raw: RawCase =
            parse_yaml(&text, file, case_hint).map_err(|d| CliError::Usage(d.to_string()))?;
        if raw.expect.messages.is_some() == raw.expect.error.is_some() {
            return Err(CliError::Usage(format!(
                "{}: expect: give either `messages:` (a list, [] for none) or `error:` (a text the failure contains)",
                file.display()
            )));
        }
        let dir = file.parent().unwrap_or(Path::new("."));
        Ok(Case {
            events: events(&raw.event, dir, file)?,
            config: raw.config,
            directory: raw.directory.map(|d| dir.join(d)),
            expect: raw.expect,
        })
    }

    /// Run the case against `base` (its config replaced by the case's, when given).
    pub(super) fn run(
        self,
        base: &RuleConfig,
        cache_dir: Option<PathBuf>,
    ) -> Result<Verdict, CliError> {
        let mut rule = base.clone();
        if let Some(config) = self.config {
            rule.config = config;
        }
        let directory = single::load_directory(self.directory.as_deref())?;
        let evaluator = single::evaluator(&rule, cache_dir, directory)?;
        // As in the engine, the rule sees only what it is `on` (and its own ticks) when
        // herald-rule.yaml says what that is.
        let subscribed_only = !rule.on.is_empty() || rule.schedule.is_some();
        let trials = single::run_all(&evaluator, &self.events, subscribed_only);
        Ok(Verdict {
            trials,
            expect: self.expect,
        })
    }
}

/// The case's events: a file, one inline event or a list of them.
fn events(value: &serde_json::Value, dir: &Path, file: &Path) -> Result<Vec<Event>, CliError> {
    let inline = |value: &serde_json::Value| {
        event::admit(value.clone(), Utc::now(), &SizeCaps::default())
            .map_err(|err| CliError::Usage(format!("{}: event: {err}", file.display())))
    };
    match value {
        serde_json::Value::String(path) => single::read_events(&dir.join(path)),
        serde_json::Value::Array(items) => items.iter().map(inline).collect(),
        serde_json::Value::Object(_) => Ok(vec![inline(value)?]),
        _ => Err(CliError::Usage(format!(
            "{}: event: write a file path (relative to the case), an event, or a list of events",
            file.display()
        ))),
    }
}

fn case_hint(key: &str) -> Option<String> {
    let hint = match key {
        "event" => {
            "write a file path relative to the case, e.g. ../../events/user-created.json, or an event"
        }
        "expect" => "write `messages:` (each with to, subject, text) or `error:`",
        "to" | "cc" | "reply_to" => "write a list of email addresses, e.g. [alice@example.org]",
        "config" => "write a map of the rule's settings",
        "directory" => "write a directory file path, relative to the case",
        _ => {
            "keys of a case: description, event, config, directory, expect; of a message: to, cc, reply_to, subject, text, html, headers"
        }
    };
    Some(hint.to_owned())
}

/// What running a case gave, against what it expected.
pub(super) struct Verdict {
    trials: Vec<Trial>,
    expect: Expect,
}

impl Verdict {
    fn failure(&self) -> Option<&Failure> {
        self.trials
            .iter()
            .find_map(|t| t.outcome.result.as_ref().err())
    }

    fn produced(&self) -> Vec<CaseMail> {
        let mut mails: Vec<CaseMail> = Vec::new();
        for trial in &self.trials {
            let Ok(resolved) = &trial.outcome.result else {
                continue;
            };
            for mail in resolved.mails.iter().map(CaseMail::from) {
                // A message sent `together` is one copy per recipient with the same headers.
                if mails.last() != Some(&mail) {
                    mails.push(mail);
                }
            }
        }
        mails
    }

    pub(super) fn passed(&self) -> bool {
        match (&self.expect.error, self.failure()) {
            (Some(text), Some(failure)) => failure.to_string().contains(text.as_str()),
            (Some(_), None) | (None, Some(_)) => false,
            (None, None) => Some(self.produced()) == self.expect.messages,
        }
    }

    /// Fuel and memory of the costliest invocation, against the limits.
    pub(super) fn usage(&self, limits: &Limits) -> String {
        let Some(trial) = self.trials.iter().max_by_key(|t| t.outcome.fuel_used) else {
            return "the rule was not called (no event it is on)".to_owned();
        };
        let events = self.trials.len();
        let each = if events > 1 {
            " (costliest of the events)"
        } else {
            ""
        };
        format!("{}{each}", single::usage_line(trial, limits))
    }

    /// Why the case failed: the diff of messages, or the failure with its backtrace.
    pub(super) fn explain(&self) -> String {
        let mut out = String::new();
        if let Some(failure) = self.failure() {
            let _ = writeln!(out, "the rule failed: {failure}");
            if let Some(text) = &self.expect.error {
                let _ = writeln!(out, "expected a failure containing: {text}");
            }
            for trial in &self.trials {
                for log in &trial.outcome.logs {
                    let _ = writeln!(out, "log {}: {}", log.level, log.message);
                }
                if let Some(trace) = single::wasm_backtrace(trial) {
                    let _ = writeln!(out, "wasm backtrace:\n{}", single::indent(trace, "  "));
                }
            }
            return out;
        }
        if let Some(text) = &self.expect.error {
            let _ = writeln!(
                out,
                "expected a failure containing {text:?}, but the rule succeeded"
            );
        }
        let expected = self.expect.messages.clone().unwrap_or_default();
        out.push_str(&diff(&expected, &self.produced()));
        out
    }
}

/// A unified diff of the messages as YAML: `-` expected, `+` produced.
fn diff(expected: &[CaseMail], produced: &[CaseMail]) -> String {
    let yaml = |mails: &[CaseMail]| serde_yaml::to_string(mails).unwrap_or_default();
    let (expected, produced) = (yaml(expected), yaml(produced));
    let diff = similar::TextDiff::from_lines(&expected, &produced);
    diff.unified_diff()
        .context_radius(3)
        .header("expected (the case)", "produced (the rule)")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(subject: &str) -> CaseMail {
        CaseMail {
            to: vec!["a@example.org".into()],
            cc: vec![],
            reply_to: vec![],
            subject: subject.into(),
            text: "line one\nline two\n".into(),
            html: None,
            headers: BTreeMap::new(),
        }
    }

    #[test]
    fn the_diff_shows_the_changed_line_only() {
        let out = diff(&[mail("Hello")], &[mail("Hullo")]);
        assert!(out.contains("-  subject: Hello"), "{out}");
        assert!(out.contains("+  subject: Hullo"), "{out}");
        assert!(!out.contains("-  to:"), "{out}");
        assert_eq!(diff(&[mail("x")], &[mail("x")]), "");
    }
}
