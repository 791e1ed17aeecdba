//! Default rule `new-group`: tell root (user id 0) when an OMERO group is created (OMERO's newGroupMailSender).

use herald_sdk::omero::{self, Mode, Summary, class};
use herald_sdk::{Event, GroupCreated, Message, Payload, Recipient, Rule, config, export_rule};

/// OMERO's root user, the only recipient.
const ROOT: i64 = 0;

/// The rule's `config` keys: `mode`, `subject_prefix`, `web_url`.
/// `web_url` placeholders: `{id}` and `{name}` of the new group.
type Settings = omero::SenderSettings;

pub struct NewGroup;

impl Rule for NewGroup {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let Payload::GroupCreated(created) = &event.data else {
            return Ok(Vec::new());
        };
        let settings: Settings = config::get()?;
        let subject = format!(
            "{}INSERT ExperimenterGroup notification",
            settings.subject_prefix
        );
        let mail = match settings.mode {
            Mode::Parity => Message::new(
                subject,
                omero::modified_objects(class::EXPERIMENTER_GROUP, &[created.group.id], "INSERT"),
            ),
            Mode::Enriched => enriched(&event, created, &settings).message(subject),
        };
        Ok(vec![mail.to(Recipient::UserId(ROOT))])
    }
}

/// The enriched body: the group, when, and the optional link.
fn enriched(event: &Event, created: &GroupCreated, settings: &Settings) -> Summary {
    let group = &created.group;
    let id = group.id.to_string();
    let url = settings
        .web_url
        .as_deref()
        .map(|t| omero::link(t, &[("id", &id), ("name", &group.name)]));
    Summary::new(format!("A new OMERO group was created: {}.", group.name))
        .fact("Group", group.name.clone())
        .fact("Group id", id.clone())
        .fact("Time", event.time.clone())
        .link_opt("Open in OMERO.web", url)
}

export_rule!(NewGroup, config = Settings);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::Group;
    use herald_sdk::testing::{TestHost, event};

    fn created(id: i64, name: &str) -> Event {
        event(
            "omero.group.created",
            Payload::GroupCreated(GroupCreated {
                group: Group {
                    id,
                    name: name.into(),
                },
            }),
        )
    }

    #[test]
    fn parity_goes_to_root_only() {
        TestHost::new().install();
        let out = NewGroup::handle(created(9, "microscopy")).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].subject,
            "[OMERO] INSERT ExperimenterGroup notification"
        );
        assert_eq!(
            out[0].text,
            "Modified objects:\nclass ome.model.meta.ExperimenterGroup:9 - INSERT\n"
        );
        assert_eq!(out[0].html, None);
        assert!(matches!(out[0].to[..], [Recipient::UserId(0)]));
    }

    #[test]
    fn enriched_names_the_group_and_links() {
        TestHost::new()
            .config(
                serde_json::json!({"mode": "enriched", "subject_prefix": "[lab] ",
                "web_url": "https://omero.example.org/webadmin/group/edit/{id}"}),
            )
            .install();
        let out = NewGroup::handle(created(9, "<micro>")).unwrap();
        assert_eq!(
            out[0].subject,
            "[lab] INSERT ExperimenterGroup notification"
        );
        assert_eq!(
            out[0].text,
            "A new OMERO group was created: <micro>.\n\n\
             Group: <micro>\nGroup id: 9\nTime: 2026-01-01T00:00:00Z\n\n\
             Open in OMERO.web: https://omero.example.org/webadmin/group/edit/9\n\n\
             Automated email sent by the OMERO server.\n"
        );
        let html = out[0].html.as_deref().unwrap();
        assert!(html.contains("<td>&lt;micro&gt;</td>"));
        assert!(matches!(out[0].to[..], [Recipient::UserId(0)]));
    }

    #[test]
    fn unknown_config_key_is_an_error() {
        TestHost::new()
            .config(serde_json::json!({"web-url": "x"}))
            .install();
        assert!(NewGroup::handle(created(1, "x")).is_err());
    }
}
