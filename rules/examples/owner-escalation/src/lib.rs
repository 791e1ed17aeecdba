//! Example rule `owner-escalation`: after `after` failed logins of one user within `window_seconds`,
//! mail the owners of that user's groups (once per window).

use herald_sdk::{
    Event, Message, Payload, Recipient, Rule, config, directory, export_rule, kv, safe,
};
use serde::Deserialize;

/// `config:` keys.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// Failed logins that make an escalation.
    after: u32,
    /// How long failures are counted, from the first one.
    window_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            after: 3,
            window_seconds: 3600,
        }
    }
}

pub struct OwnerEscalation;

impl Rule for OwnerEscalation {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let Payload::LoginFailed(failed) = &event.data else {
            return Ok(Vec::new());
        };
        let settings: Settings = config::get()?;
        // Only known users have groups (and owners) to tell.
        let Some(user) = directory::user_by_name(&failed.user) else {
            return Ok(Vec::new());
        };
        let key = format!("count:{}", user.id);
        let count =
            kv::get(&key).map_or(0, |v| u32::from_le_bytes(v.try_into().unwrap_or([0; 4]))) + 1;
        kv::set(&key, &count.to_le_bytes(), Some(settings.window_seconds));
        if count != settings.after {
            return Ok(Vec::new());
        }
        let name = safe::header_value(&user.name);
        let owners = directory::groups_of(user.id)
            .into_iter()
            .filter(|g| !["system", "user", "guest"].contains(&g.name.as_str()))
            .map(|g| Recipient::GroupOwners(g.name));
        let mut mail = Message::new(
            format!("[OMERO] {count} failed logins for {name}"),
            format!(
                "{name}, a member of your group, failed to log in {count} times; the last at {}.\n",
                event.time
            ),
        );
        for owner in owners {
            mail = mail.to(owner);
        }
        Ok(vec![mail])
    }
}

export_rule!(OwnerEscalation, config = Settings);
