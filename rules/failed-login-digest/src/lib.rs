//! Example rule `failed-login-digest`: collect failed logins in kv and mail the admins one summary on each tick.
//!
//! Each failed login adds to one kv value (per username: a count, the last time
//! and address). On its `herald.tick` (a `schedule` in the rule entry) the rule
//! mails the admins what it collected and clears it; the mail and the clearing
//! commit together. A tick with nothing collected sends nothing.

use std::collections::BTreeMap;

use herald_sdk::{
    Event, Message, Payload, Recipient, Rule, config, export_rule, kv, log, omero, safe,
};
use serde::{Deserialize, Serialize};

/// The kv key that holds what was collected since the last summary.
const KEY: &str = "collected";
/// The most usernames kept one by one; failures for more are only counted. With
/// [`NAME_CHARS`] this keeps the value well under the host's 64 KiB cap.
const MAX_USERS: usize = 100;
/// The most characters kept of a username or an address.
const NAME_CHARS: usize = 64;

/// The rule's `config` keys.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// Prepended to the subject; default `[OMERO] `.
    subject_prefix: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            subject_prefix: omero::default_subject_prefix(),
        }
    }
}

/// What was collected since the last summary.
#[derive(Default, Serialize, Deserialize)]
struct Collected {
    /// Failed logins in all.
    total: u64,
    /// Per username (cut to [`NAME_CHARS`]), at most [`MAX_USERS`] of them.
    users: BTreeMap<String, Seen>,
    /// Failed logins for usernames past [`MAX_USERS`].
    others: u64,
}

/// One username's failures.
#[derive(Default, Serialize, Deserialize)]
struct Seen {
    count: u64,
    last_time: String,
    last_from: String,
}

impl Collected {
    /// What kv holds; an unreadable value starts afresh (and says so in the log).
    fn load() -> Collected {
        let Some(bytes) = kv::get(KEY) else {
            return Collected::default();
        };
        serde_json::from_slice(&bytes).unwrap_or_else(|err| {
            log::warn(&format!(
                "the collected digest was unreadable ({err}); starting afresh"
            ));
            Collected::default()
        })
    }

    fn add(&mut self, user: &str, time: &str, from: Option<&str>) {
        self.total = self.total.saturating_add(1);
        let name = safe::one_line(user, NAME_CHARS);
        if !self.users.contains_key(&name) && self.users.len() >= MAX_USERS {
            self.others = self.others.saturating_add(1);
            return;
        }
        let seen = self.users.entry(name).or_default();
        seen.count = seen.count.saturating_add(1);
        seen.last_time = safe::one_line(time, NAME_CHARS);
        seen.last_from = from.map_or_else(String::new, |a| safe::one_line(a, NAME_CHARS));
    }

    /// The summary's body: usernames by count, most first; two short lines each.
    fn body(&self) -> String {
        let mut users: Vec<_> = self.users.iter().collect();
        users.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        let mut text = format!(
            "{} failed login(s) since the last digest, for {} username(s):\n\n",
            self.total,
            self.users.len() + usize::from(self.others > 0)
        );
        for (name, seen) in users {
            let from = match seen.last_from.as_str() {
                "" => String::new(),
                from => format!(" from {from}"),
            };
            text.push_str(&format!(
                "  '{name}': {}\n    last at {}{from}\n",
                seen.count, seen.last_time
            ));
        }
        if self.others > 0 {
            text.push_str(&format!("  other usernames: {}\n", self.others));
        }
        text
    }
}

pub struct FailedLoginDigest;

impl Rule for FailedLoginDigest {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        match &event.data {
            Payload::LoginFailed(failed) if omero::login_definitely_failed(&event.data_json) => {
                let mut collected = Collected::load();
                collected.add(&failed.user, &event.time, failed.remote_addr.as_deref());
                let value = serde_json::to_vec(&collected).map_err(|e| e.to_string())?;
                kv::set(KEY, &value, None);
                Ok(Vec::new())
            }
            Payload::Tick(_) => summary(),
            _ => Ok(Vec::new()),
        }
    }
}

/// The tick: one mail to the admins with what was collected, which is then cleared.
fn summary() -> Result<Vec<Message>, String> {
    let collected = Collected::load();
    if collected.total == 0 {
        return Ok(Vec::new());
    }
    let settings: Settings = config::get()?;
    kv::delete(KEY);
    let subject = format!(
        "{}Failed logins: {} since the last digest",
        settings.subject_prefix, collected.total
    );
    Ok(vec![
        Message::new(subject, collected.body()).to(Recipient::Admins),
    ])
}

export_rule!(FailedLoginDigest, config = Settings);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::testing::{TestHost, event};
    use herald_sdk::{LoginFailed, Tick};

    fn failed(name: &str) -> Event {
        event(
            "omero.login.failed",
            Payload::LoginFailed(LoginFailed {
                user: name.into(),
                remote_addr: Some("192.0.2.7".into()),
                user_agent: None,
            }),
        )
    }

    fn tick() -> Event {
        event(
            "herald.tick",
            Payload::Tick(Tick {
                schedule: "0 0 8 * * *".into(),
                rule: "digest".into(),
            }),
        )
    }

    #[test]
    fn a_tick_mails_one_summary_then_starts_afresh() {
        TestHost::new().install();
        for name in ["root", "alice", "root"] {
            assert!(FailedLoginDigest::handle(failed(name)).unwrap().is_empty());
        }
        let out = FailedLoginDigest::handle(tick()).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].subject,
            "[OMERO] Failed logins: 3 since the last digest"
        );
        assert!(
            out[0]
                .text
                .contains("'root': 2\n    last at 2026-01-01T00:00:00Z from 192.0.2.7\n")
        );
        assert!(out[0].text.find("'root'") < out[0].text.find("'alice'"));
        assert!(FailedLoginDigest::handle(tick()).unwrap().is_empty());
    }

    #[test]
    fn hostile_names_are_cut_and_counted_past_the_cap() {
        TestHost::new().install();
        for i in 0..(MAX_USERS + 5) {
            let name = format!("u{i}\r\n{}", "é".repeat(1000));
            FailedLoginDigest::handle(failed(&name)).unwrap();
        }
        let stored = TestHost::current().kv[KEY].len();
        assert!(stored < 60 * 1024, "{stored} bytes");
        let out = FailedLoginDigest::handle(tick()).unwrap();
        assert!(
            out[0].text.contains("other usernames: 5"),
            "{}",
            out[0].text
        );
        assert!(!out[0].subject.contains('\n'));
    }

    #[test]
    fn an_unreadable_store_starts_afresh() {
        TestHost::new().install();
        kv::set(KEY, b"\xff not json", None);
        FailedLoginDigest::handle(failed("root")).unwrap();
        let out = FailedLoginDigest::handle(tick()).unwrap();
        assert!(
            out[0].text.starts_with("1 failed login(s)"),
            "{}",
            out[0].text
        );
    }
}
