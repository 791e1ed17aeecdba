//! Default rule `new-user`: tell every admin when an OMERO user is created (OMERO's newUserMailSender).

use herald_sdk::omero::{self, Mode, Summary, class};
use herald_sdk::{Event, Message, Payload, Recipient, Rule, UserCreated, config, export_rule};

/// The rule's `config` keys: `mode`, `subject_prefix`, `web_url`.
/// `web_url` placeholders: `{id}` and `{name}` of the new user.
type Settings = omero::SenderSettings;

pub struct NewUser;

impl Rule for NewUser {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let Payload::UserCreated(created) = &event.data else {
            return Ok(Vec::new());
        };
        let settings: Settings = config::get()?;
        let subject = format!(
            "{}INSERT Experimenter notification",
            settings.subject_prefix
        );
        let mail = match settings.mode {
            Mode::Parity => Message::new(
                subject,
                omero::modified_objects(class::EXPERIMENTER, &[created.user.id], "INSERT"),
            ),
            Mode::Enriched => enriched(&event, created, &settings).message(subject),
        };
        Ok(vec![mail.to(Recipient::Admins)])
    }
}

/// The enriched body: who, their email and groups, when, and the optional link.
fn enriched(event: &Event, created: &UserCreated, settings: &Settings) -> Summary {
    let user = &created.user;
    let id = user.id.to_string();
    let url = settings
        .web_url
        .as_deref()
        .map(|t| omero::link(t, &[("id", &id), ("name", &user.name)]));
    let groups: Vec<&str> = created.groups.iter().map(|g| g.name.as_str()).collect();
    let none = || "none".to_owned();
    Summary::new(format!(
        "A new OMERO user was created: {}.",
        omero::display_name(user)
    ))
    .fact("User", omero::display_name(user))
    .fact("User id", id.clone())
    .fact(
        "Email",
        user.email
            .clone()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(none),
    )
    .fact(
        "Groups",
        Some(groups.join(", "))
            .filter(|g| !g.is_empty())
            .unwrap_or_else(none),
    )
    .fact("Time", event.time.clone())
    .link_opt("Open in OMERO.web", url)
}

export_rule!(NewUser, config = Settings);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::testing::{TestHost, event};
    use herald_sdk::{Group, User};

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

    fn created_gina() -> Event {
        let user = User {
            id: 52,
            name: "gina".into(),
            first_name: Some("Gina".into()),
            last_name: Some("Tonic & Co".into()),
            email: Some("gina@example.org".into()),
        };
        let groups = vec![
            Group {
                id: 3,
                name: "lab".into(),
            },
            Group {
                id: 4,
                name: "imaging".into(),
            },
        ];
        event(
            "omero.user.created",
            Payload::UserCreated(UserCreated { user, groups }),
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
        assert_eq!(out[0].html, None);
        assert!(matches!(out[0].to[..], [Recipient::Admins]));
    }

    #[test]
    fn parity_ignores_names_and_web_url() {
        TestHost::new()
            .config(serde_json::json!({"mode": "parity", "web_url": "https://x/{id}"}))
            .install();
        let out = NewUser::handle(created_gina()).unwrap();
        assert_eq!(
            out[0].text,
            "Modified objects:\nclass ome.model.meta.Experimenter:52 - INSERT\n"
        );
        assert_eq!(out[0].html, None);
    }

    #[test]
    fn enriched_names_the_user_and_links() {
        TestHost::new()
            .config(serde_json::json!({"mode": "enriched",
                "web_url": "https://omero.example.org/webadmin/experimenter/edit/{id}?n={name}"}))
            .install();
        let out = NewUser::handle(created_gina()).unwrap();
        assert_eq!(out[0].subject, "[OMERO] INSERT Experimenter notification");
        assert_eq!(
            out[0].text,
            "A new OMERO user was created: Gina Tonic & Co (gina).\n\n\
             User: Gina Tonic & Co (gina)\nUser id: 52\nEmail: gina@example.org\n\
             Groups: lab, imaging\nTime: 2026-01-01T00:00:00Z\n\n\
             Open in OMERO.web: https://omero.example.org/webadmin/experimenter/edit/52?n=gina\n\n\
             Automated email sent by the OMERO server.\n"
        );
        let html = out[0].html.as_deref().unwrap();
        assert!(
            html.contains("<td>Gina Tonic &amp; Co (gina)</td>"),
            "{html}"
        );
        assert!(matches!(out[0].to[..], [Recipient::Admins]));
    }

    #[test]
    fn enriched_without_email_groups_or_link() {
        TestHost::new()
            .config(serde_json::json!({"mode": "enriched"}))
            .install();
        let out = NewUser::handle(created(7)).unwrap();
        assert!(
            out[0]
                .text
                .contains("User: bob\nUser id: 7\nEmail: none\nGroups: none\n")
        );
        assert!(!out[0].text.contains("OMERO.web"));
    }

    #[test]
    fn unknown_config_key_is_an_error() {
        TestHost::new()
            .config(serde_json::json!({"mood": "x"}))
            .install();
        let err = NewUser::handle(created(1)).unwrap_err();
        assert!(err.contains("unknown field `mood`"), "{err}");
    }

    #[test]
    fn unknown_mode_is_an_error() {
        TestHost::new()
            .config(serde_json::json!({"mode": "rich"}))
            .install();
        assert!(NewUser::handle(created(1)).is_err());
    }
}
