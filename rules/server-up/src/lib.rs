//! Default rule `server-up`: tell every admin when the OMERO server starts (OMERO's ServerUpMailSender).

use herald_sdk::omero::{self, Mode, Summary};
use herald_sdk::{Event, Message, Payload, Recipient, Rule, ServerUp, config, export_rule};

/// The rule's `config` keys: `mode`, `subject_prefix`, `web_url`.
/// `web_url` placeholders: `{server}`, the server's name.
type Settings = omero::SenderSettings;

pub struct ServerUpRule;

impl Rule for ServerUpRule {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let Payload::ServerUp(up) = &event.data else {
            return Ok(Vec::new());
        };
        let settings: Settings = config::get()?;
        let subject = format!("{}Server started", settings.subject_prefix);
        let mail = match settings.mode {
            Mode::Parity => Message::new(subject, omero::DEFAULT_BODY),
            Mode::Enriched => enriched(&event, up, &settings).message(subject),
        };
        Ok(vec![mail.to(Recipient::Admins)])
    }
}

/// The enriched body: server, version, time and the optional link.
fn enriched(event: &Event, up: &ServerUp, settings: &Settings) -> Summary {
    let url = settings
        .web_url
        .as_deref()
        .map(|t| omero::link(t, &[("server", &up.server)]));
    let mut summary = Summary::new(format!("The OMERO server {} has started.", up.server))
        .fact("Server", up.server.clone());
    if let Some(version) = &up.version {
        summary = summary.fact("Version", version.clone());
    }
    summary
        .fact("Time", event.time.clone())
        .link_opt("Open OMERO.web", url)
}

export_rule!(ServerUpRule, config = Settings);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::testing::{TestHost, event};

    fn up(version: Option<&str>) -> Event {
        event(
            "omero.server.up",
            Payload::ServerUp(ServerUp {
                server: "omero.example.org".into(),
                version: version.map(Into::into),
            }),
        )
    }

    #[test]
    fn parity_goes_to_all_admins_with_the_default_body() {
        TestHost::new().install();
        let out = ServerUpRule::handle(up(Some("5.6.15"))).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].subject, "[OMERO] Server started");
        assert_eq!(out[0].text, "Automated email sent by the OMERO server.\n");
        assert_eq!(out[0].html, None);
        assert!(matches!(out[0].to[..], [Recipient::Admins]));
    }

    #[test]
    fn subject_prefix_is_configurable() {
        TestHost::new()
            .config(serde_json::json!({"subject_prefix": "[lab] "}))
            .install();
        let out = ServerUpRule::handle(up(None)).unwrap();
        assert_eq!(out[0].subject, "[lab] Server started");
    }

    #[test]
    fn enriched_adds_server_version_time_link_and_html() {
        TestHost::new()
            .config(
                serde_json::json!({"mode": "enriched", "web_url": "https://{server}/webclient/"}),
            )
            .install();
        let out = ServerUpRule::handle(up(Some("5.6.15"))).unwrap();
        assert_eq!(out[0].subject, "[OMERO] Server started");
        assert_eq!(
            out[0].text,
            "The OMERO server omero.example.org has started.\n\n\
             Server: omero.example.org\nVersion: 5.6.15\nTime: 2026-01-01T00:00:00Z\n\n\
             Open OMERO.web: https://omero.example.org/webclient/\n\n\
             Automated email sent by the OMERO server.\n"
        );
        let html = out[0].html.as_deref().unwrap();
        assert!(html.contains("<a href=\"https://omero.example.org/webclient/\">"));
        assert!(matches!(out[0].to[..], [Recipient::Admins]));
    }

    #[test]
    fn enriched_without_version_or_link() {
        TestHost::new()
            .config(serde_json::json!({"mode": "enriched"}))
            .install();
        let out = ServerUpRule::handle(up(None)).unwrap();
        assert!(!out[0].text.contains("Version"));
        assert!(!out[0].text.contains("Open OMERO.web"));
    }

    #[test]
    fn other_events_send_nothing() {
        TestHost::new().install();
        let ev = event("x", Payload::Custom("{}".into()));
        assert!(ServerUpRule::handle(ev).unwrap().is_empty());
    }

    #[test]
    fn unknown_config_key_is_an_error() {
        TestHost::new()
            .config(serde_json::json!({"mood": "x"}))
            .install();
        let err = ServerUpRule::handle(up(None)).unwrap_err();
        assert!(err.contains("unknown field `mood`"), "{err}");
    }
}
