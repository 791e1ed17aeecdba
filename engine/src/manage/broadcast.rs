//! A broadcast (`herald email`, `POST /v1/broadcast`): OMERO's checks, in OMERO's order, and the event it queues.

use chrono::Utc;

use crate::config::Config;
use crate::directory::Directory;
use crate::evaluate::Evaluator;
use crate::event::{Broadcast, Event, EventData, types};
use crate::store::Store;

/// OMERO's exit code for a `no-body` error.
pub const EXIT_NO_BODY: u8 = 12;
/// OMERO's exit code for every other failure.
pub const EXIT_FAILED: u8 = 13;

/// Who gets what: the subject, the body and the recipients.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub subject: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub everyone: bool,
    #[serde(default)]
    pub inactive: bool,
    #[serde(default)]
    pub user_ids: Vec<i64>,
    #[serde(default)]
    pub user_names: Vec<String>,
    #[serde(default)]
    pub group_ids: Vec<i64>,
    #[serde(default)]
    pub group_names: Vec<String>,
    #[serde(default)]
    pub extra: Vec<String>,
}

/// An OMERO-style refusal: the exit code and the lines it prints.
#[derive(Debug)]
pub struct Refusal(pub u8, pub String);

impl Request {
    pub fn has_targets(&self) -> bool {
        !(self.user_ids.is_empty()
            && self.user_names.is_empty()
            && self.group_ids.is_empty()
            && self.group_names.is_empty())
    }

    /// Drop unknown users and groups, as OMERO does (not fatal); one notice line each.
    pub fn drop_unknown(&mut self, dir: &Directory) -> Vec<String> {
        let mut notices = Vec::new();
        let mut known = |found: bool, what: &str, key: &dyn std::fmt::Display| {
            if !found {
                notices.push(format!("Unknown {what}: {key}"));
            }
            found
        };
        self.user_ids
            .retain(|id| known(dir.user_by_id(*id).is_some(), "user", id));
        self.user_names
            .retain(|name| known(dir.user_by_name(name).is_some(), "user", name));
        self.group_ids
            .retain(|id| known(dir.group_by_id(*id).is_some(), "group", id));
        self.group_names
            .retain(|name| known(dir.group_by_name(name).is_some(), "group", name));
        notices
    }

    /// Drop extra addresses that are not valid; one notice line each.
    pub fn drop_invalid_extra(&mut self) -> Vec<String> {
        let mut notices = Vec::new();
        self.extra
            .retain(|addr| match addr.trim().parse::<lettre::Address>() {
                Ok(_) => true,
                Err(err) => {
                    notices.push(format!("Invalid email address: {addr} ({err})"));
                    false
                }
            });
        notices
    }

    /// OMERO's checks, in OMERO's order.
    pub fn validate(&self, config: &Config, evaluator: &Evaluator) -> Result<(), Refusal> {
        if !self.everyone && !self.has_targets() && self.extra.is_empty() {
            return Err(Refusal(
                EXIT_NO_BODY,
                "ApiUsageException:No recipients specified.".into(),
            ));
        }
        if config.mail.from.is_none() {
            return Err(failed("no-sender", "mail.from cannot be empty."));
        }
        if self.subject.trim().is_empty() {
            return Err(failed("no-subject", "Email must contain subject."));
        }
        if self.body.trim().is_empty() {
            return Err(Refusal(
                EXIT_NO_BODY,
                "ApiUsageException:Email must contain body.".into(),
            ));
        }
        if !broadcast_rules(evaluator).any(|_| true) {
            return Err(failed(
                "no-rule",
                "no rule handles herald.broadcast; add `- {name: broadcast, module: builtin:broadcast, on: [herald.broadcast]}` to the rules",
            ));
        }
        Ok(())
    }

    /// The `herald.broadcast` event, its id unique to this moment and process, from `source`.
    pub fn event(&self, source: &str) -> Event {
        let now = Utc::now();
        let data = Broadcast {
            subject: self.subject.clone(),
            body: self.body.clone(),
            html: None,
            everyone: self.everyone,
            inactive: self.inactive,
            user_ids: self.user_ids.clone(),
            user_names: self.user_names.clone(),
            group_ids: self.group_ids.clone(),
            group_names: self.group_names.clone(),
            extra: self.extra.clone(),
        };
        let data_json = serde_json::json!({
            "subject": data.subject, "body": data.body, "everyone": data.everyone, "inactive": data.inactive,
            "user_ids": data.user_ids, "user_names": data.user_names, "group_ids": data.group_ids,
            "group_names": data.group_names, "extra": data.extra,
        });
        Event {
            id: format!(
                "broadcast-{}-{}-{}",
                now.format("%Y%m%dT%H%M%S%.6fZ"),
                std::process::id(),
                next_serial()
            ),
            source: source.into(),
            kind: types::BROADCAST.into(),
            time: now,
            data_json,
            data: EventData::Broadcast(data),
        }
    }
}

/// A counter so two broadcasts in the same microsecond of one process get distinct ids.
fn next_serial() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// `Failed to send emails:\n<name>: <message>` with OMERO's exit code 13.
pub fn failed(name: &str, message: &str) -> Refusal {
    Refusal(
        EXIT_FAILED,
        format!("Failed to send emails:\n{name}: {message}"),
    )
}

/// A rule failed on the broadcast: `Failed to send emails:\n<rule>: <reason>`.
pub fn failed_with(failure: &str) -> Refusal {
    Refusal(EXIT_FAILED, format!("Failed to send emails:\n{failure}"))
}

fn broadcast_rules(evaluator: &Evaluator) -> impl Iterator<Item = &crate::evaluate::LoadedRule> {
    evaluator
        .rules()
        .iter()
        .filter(|r| r.on.iter().any(|t| t == types::BROADCAST))
}

/// Refused when a broadcast rule is quarantined: the broadcast would reach nobody.
pub fn refuse_quarantined(
    evaluator: &Evaluator,
    store: &Store,
) -> anyhow::Result<Result<(), Refusal>> {
    let quarantined = store.quarantined()?;
    let rule = broadcast_rules(evaluator)
        .map(|r| r.name.clone())
        .find(|name| quarantined.contains(name));
    Ok(match rule {
        Some(rule) => Err(failed(
            "no-rule",
            &format!(
                "the rule {rule} is quarantined; release it with `herald rules release {rule}`"
            ),
        )),
        None => Ok(()),
    })
}

/// One broadcast's outbox rows: still queued, sent, and failed for good.
#[derive(Debug, Default, serde::Serialize)]
pub struct Counts {
    pub queued: i64,
    pub sent: i64,
    pub dead: i64,
}

impl Counts {
    pub fn total(&self) -> i64 {
        self.queued + self.sent + self.dead
    }

    /// The counts of the event journaled as `seq`.
    pub fn of(store: &Store, seq: i64) -> anyhow::Result<Counts> {
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
}
