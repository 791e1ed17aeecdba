//! Example rule `group-routing`: tell the owners of each group a new user joins, and the extra
//! addresses configured for that group.

use std::collections::BTreeMap;

use herald_sdk::{Event, Message, Payload, Recipient, Rule, config, export_rule, safe};
use serde::Deserialize;

/// `config:` keys.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// Extra addresses per group name, e.g. `{lab: [lab-admin@example.org]}`.
    extra: BTreeMap<String, Vec<String>>,
}

pub struct GroupRouting;

impl Rule for GroupRouting {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let Payload::UserCreated(created) = &event.data else {
            return Ok(Vec::new());
        };
        let settings: Settings = config::get()?;
        let user = safe::header_value(&created.user.name);
        let mails = created.groups.iter().map(|group| {
            let name = safe::header_value(&group.name);
            let mut mail = Message::new(
                format!("[OMERO] {user} joined {name}"),
                format!("{user} is a new member of {name}.\n"),
            )
            .to(Recipient::GroupOwners(group.name.clone()));
            for address in settings.extra.get(&group.name).into_iter().flatten() {
                mail = mail.to(Recipient::Address(address.clone()));
            }
            mail
        });
        Ok(mails.collect())
    }
}

export_rule!(GroupRouting, config = Settings);
