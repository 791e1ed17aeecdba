//! Default rule `new-user`: tell every admin when an OMERO user is created (OMERO's newUserMailSender).

use herald_sdk::{Event, Message, Payload, Recipient, Rule, config, export_rule};
use serde::Deserialize;

/// The rule's `config` keys.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// `parity` reproduces OMERO's mail exactly.
    mode: Mode,
    /// Prepended to the subject; OMERO's is `[OMERO] `.
    subject_prefix: String,
}

#[derive(Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Parity,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Parity,
            subject_prefix: "[OMERO] ".into(),
        }
    }
}

pub struct NewUser;

impl Rule for NewUser {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let Payload::UserCreated(created) = event.data else {
            return Ok(Vec::new());
        };
        let settings: Settings = config::get()?;
        let subject = format!(
            "{}INSERT Experimenter notification",
            settings.subject_prefix
        );
        let body = format!(
            "Modified objects:\nclass ome.model.meta.Experimenter:{} - INSERT\n",
            created.user.id
        );
        Ok(vec![Message::new(subject, body).to(Recipient::Admins)])
    }
}

export_rule!(NewUser);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::testing::{TestHost, event};
    use herald_sdk::{User, UserCreated};

    fn created(id: i64) -> Event {
        let user = User {
            id,
            name: "bob".into(),
            first_name: None,
            last_name: None,
            email: None,
        };
        event(
            "omero.user.created",
            Payload::UserCreated(UserCreated {
                user,
                groups: vec![],
            }),
        )
    }

    #[test]
    fn parity_subject_and_body() {
        TestHost::new().install();
        let out = NewUser::handle(created(52)).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].subject, "[OMERO] INSERT Experimenter notification");
        assert_eq!(
            out[0].text,
            "Modified objects:\nclass ome.model.meta.Experimenter:52 - INSERT\n"
        );
        assert!(matches!(out[0].to[..], [Recipient::Admins]));
    }

    #[test]
    fn unknown_config_key_is_an_error() {
        TestHost::new()
            .config(serde_json::json!({"mood": "x"}))
            .install();
        let err = NewUser::handle(created(1)).unwrap_err();
        assert!(err.contains("unknown field `mood`"), "{err}");
    }
}
