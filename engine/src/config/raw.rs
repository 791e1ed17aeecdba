//! The config file as written (serde model) and how it resolves into a [`Config`].

use std::path::Path;

use lettre::message::Mailbox;
use serde::Deserialize;

use super::delivery::RawDelivery;
use super::ingest::RawIngest;
use super::limits::LimitsPatch;
use super::serve::{RawHttp, RawLog, RawServe};
use super::smtp::RawSmtp;
use super::smtp_listener::RawSmtpListener;
use super::sources::{RawDirectory, RawSource};
use super::values::{EventTypes, ModuleSpec, PathValue, RuleName, Sender};
use super::{
    Config, DirectoryConfig, Lang, Limits, MailConfig, Missed, ModuleRef, RuleConfig,
    SandboxConfig, Schedule, StoreConfig, TransportKind,
};

/// Failures in a row after which a rule is quarantined, unless configured.
const DEFAULT_QUARANTINE_AFTER: u32 = 5;

/// The sender used when `mail.from` is absent: OMERO's default.
const DEFAULT_FROM: &str = "omero@localhost";

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    state_dir: Option<PathValue>,
    mail: Option<RawMail>,
    store: Option<RawPathSection>,
    directory: Option<RawDirectory>,
    sources: Option<Vec<RawSource>>,
    sandbox: Option<RawSandbox>,
    delivery: Option<RawDelivery>,
    ingest: Option<RawIngest>,
    rules: Option<Vec<RawRule>>,
    http: Option<RawHttp>,
    serve: Option<RawServe>,
    log: Option<RawLog>,
    smtp_listener: Option<RawSmtpListener>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMail {
    from: Option<Sender>,
    transport: Option<TransportKind>,
    file_dir: Option<PathValue>,
    smtp: Option<RawSmtp>,
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
    quarantine_after: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: RuleName,
    module: ModuleSpec,
    on: Option<EventTypes>,
    schedule: Option<Schedule>,
    missed: Option<Missed>,
    enabled: Option<bool>,
    config: Option<serde_json::Map<String, serde_json::Value>>,
    lang: Option<Lang>,
    limits: Option<LimitsPatch>,
}
impl RawConfig {
    /// Apply defaults and resolve paths against the config file's directory.
    pub(super) fn resolve(self, file: &Path, state_dir: Option<&Path>) -> Config {
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
            smtp: mail.smtp.unwrap_or_default().resolve(base),
        };
        let store = StoreConfig {
            path: in_state(self.store.and_then(|s| s.path), "herald.db"),
        };
        let mut directory = self.directory.unwrap_or_default();
        let directory = DirectoryConfig {
            path: base.join(
                directory
                    .path
                    .take()
                    .map_or_else(|| "directory.yaml".into(), |p| p.0),
            ),
            source: directory.source(base),
        };
        let sandbox = self.sandbox.unwrap_or_default();
        let sandbox = SandboxConfig {
            cache_dir: in_state(sandbox.cache_dir, "cache"),
            limits: sandbox.limits.unwrap_or_default().over(Limits::default()),
            quarantine_after: sandbox.quarantine_after.unwrap_or(DEFAULT_QUARANTINE_AFTER),
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
            delivery: self.delivery.unwrap_or_default().resolve(),
            ingest: self.ingest.unwrap_or_default().resolve(),
            rules,
            http: self.http.unwrap_or_default().resolve(base),
            serve: self.serve.unwrap_or_default().resolve(),
            log: self.log.unwrap_or_default().resolve(),
            smtp_listener: self.smtp_listener.map(|l| l.resolve(base)),
            sources: self
                .sources
                .unwrap_or_default()
                .into_iter()
                .map(|source| source.resolve(base))
                .collect(),
        }
    }
}

impl RawRule {
    fn resolve(self, base: &Path, defaults: Limits) -> RuleConfig {
        let module = match self.module.0 {
            ModuleRef::Path(path) => ModuleRef::Path(base.join(path)),
            builtin => builtin,
        };
        let defaults = match self.lang.unwrap_or_default() {
            Lang::Rust => defaults,
            Lang::Python => defaults.for_python(),
        };
        RuleConfig {
            name: self.name.0,
            module,
            on: self.on.map(|on| on.0).unwrap_or_default(),
            schedule: self.schedule,
            missed: self.missed.unwrap_or_default(),
            enabled: self.enabled.unwrap_or(true),
            config: serde_json::Value::Object(self.config.unwrap_or_default()),
            limits: self.limits.unwrap_or_default().over(defaults),
        }
    }
}

pub(super) fn default_sender() -> Option<Mailbox> {
    Some(
        DEFAULT_FROM
            .parse()
            .expect("the default sender is a valid mailbox"),
    )
}
