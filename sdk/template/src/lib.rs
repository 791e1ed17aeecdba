//! Rule `{{name}}`: welcome each new OMERO user, and tell the owners of the groups they joined.

use herald_sdk::{Event, Message, Payload, Recipient, Rule, config, export_rule, safe};
use serde::Deserialize;

/// The rule's `config:` keys in herald.yaml (see `herald-rule.yaml`). Unknown keys are an error.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// Put before every subject.
    subject_prefix: String,
    /// Also tell the owners of each group the new user joined.
    tell_owners: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            subject_prefix: "[OMERO] ".into(),
            tell_owners: true,
        }
    }
}

pub struct Welcome;

impl Rule for Welcome {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let Payload::UserCreated(created) = &event.data else {
            return Ok(Vec::new()); // not an event this rule is about: send nothing
        };
        let settings: Settings = config::get()?;
        // Event data is the sender's: keep line breaks out of subjects.
        let name = safe::header_value(&created.user.name);
        let welcome = Message::new(
            format!("{}Welcome to OMERO, {name}", settings.subject_prefix),
            format!("Hello {name},\n\nyour OMERO account is ready.\n"),
        )
        .to(Recipient::UserId(created.user.id));
        let mut mails = vec![welcome];
        if settings.tell_owners {
            for group in &created.groups {
                let group_name = safe::header_value(&group.name);
                mails.push(
                    Message::new(
                        format!("{}{name} joined {group_name}", settings.subject_prefix),
                        format!("{name} is a new member of your group {group_name}.\n"),
                    )
                    .to(Recipient::GroupOwners(group.name.clone())),
                );
            }
        }
        Ok(mails)
    }
}

export_rule!(Welcome, config = Settings);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::testing::{TestHost, at, event, handle};
    use herald_sdk::{Group, User, UserCreated};

    #[test]
    fn owners_can_be_left_out() {
        TestHost::new()
            .config(herald_sdk::serde_json::json!({"tell_owners": false}))
            .install();
        let user = User {
            id: 5,
            name: "dave".into(),
            first_name: None,
            last_name: None,
            email: None,
        };
        let groups = vec![Group {
            id: 3,
            name: "lab".into(),
        }];
        let created = event(
            "omero.user.created",
            Payload::UserCreated(UserCreated { user, groups }),
        );
        // `handle` checks the answer as the engine does (addresses, headers, caps).
        let mails = handle::<Welcome>(at(created, "2026-11-23T09:00:00Z")).unwrap();
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].subject, "[OMERO] Welcome to OMERO, dave");
    }
}
