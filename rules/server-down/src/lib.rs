//! Default rule `server-down`: tell every admin when the OMERO server shuts down (OMERO's ServerDownMailSender).

use herald_sdk::omero::{self, Mode, Summary};
use herald_sdk::{Event, Message, Payload, Recipient, Rule, ServerDown, config, export_rule};

/// The rule's `config` keys: `mode`, `subject_prefix`, `web_url`.
/// `web_url` placeholders: `{server}`, the server's name.
type Settings = omero::SenderSettings;

pub struct ServerDownRule;

impl Rule for ServerDownRule {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let Payload::ServerDown(down) = &event.data else {
            return Ok(Vec::new());
        };
        let settings: Settings = config::get()?;
        let subject = format!("{}Server shutdown", settings.subject_prefix);
        let mail = match settings.mode {
            Mode::Parity => Message::new(subject, omero::DEFAULT_BODY),
            Mode::Enriched => enriched(&event, down, &settings).message(subject),
        };
        Ok(vec![mail.to(Recipient::Admins)])
    }
}

/// The enriched body: server, reason, time and the optional link.
fn enriched(event: &Event, down: &ServerDown, settings: &Settings) -> Summary {
    let url = settings
        .web_url
        .as_deref()
        .map(|t| omero::link(t, &[("server", &down.server)]));
    let mut summary = Summary::new(format!(
        "The OMERO server {} is shutting down.",
        down.server
    ))
    .fact("Server", down.server.clone());
    if let Some(reason) = &down.reason {
        summary = summary.fact("Reason", reason.clone());
    }
    summary
        .fact("Time", event.time.clone())
        .link_opt("Open OMERO.web", url)
}

export_rule!(ServerDownRule, config = Settings);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::testing::{TestHost, event};

    fn down(reason: Option<&str>) -> Event {
        event(
            "omero.server.down",
            Payload::ServerDown(ServerDown {
                server: "omero.example.org".into(),
                reason: reason.map(Into::into),
            }),
        )
    }

    #[test]
    fn parity_goes_to_all_admins_with_the_default_body() {
        TestHost::new().install();
        let out = ServerDownRule::handle(down(Some("maintenance"))).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].subject, "[OMERO] Server shutdown");
        assert_eq!(out[0].text, "Automated email sent by the OMERO server.\n");
        assert_eq!(out[0].html, None);
        assert!(matches!(out[0].to[..], [Recipient::Admins]));
    }

    #[test]
    fn subject_prefix_is_configurable() {
        TestHost::new()
            .config(serde_json::json!({"subject_prefix": "[lab] "}))
            .install();
        let out = ServerDownRule::handle(down(None)).unwrap();
        assert_eq!(out[0].subject, "[lab] Server shutdown");
    }

    #[test]
    fn enriched_adds_server_reason_time_link_and_html() {
        TestHost::new()
            .config(
                serde_json::json!({"mode": "enriched", "web_url": "https://{server}/webclient/"}),
            )
            .install();
        let out = ServerDownRule::handle(down(Some("maintenance"))).unwrap();
        assert_eq!(out[0].subject, "[OMERO] Server shutdown");
        assert_eq!(
            out[0].text,
            "The OMERO server omero.example.org is shutting down.\n\n\
             Server: omero.example.org\nReason: maintenance\nTime: 2026-01-01T00:00:00Z\n\n\
             Open OMERO.web: https://omero.example.org/webclient/\n\n\
             Automated email sent by the OMERO server.\n"
        );
        let html = out[0].html.as_deref().unwrap();
        assert!(html.contains("<a href=\"https://omero.example.org/webclient/\">"));
        assert!(matches!(out[0].to[..], [Recipient::Admins]));
    }

    #[test]
    fn enriched_without_reason_or_link() {
        TestHost::new()
            .config(serde_json::json!({"mode": "enriched"}))
            .install();
        let out = ServerDownRule::handle(down(None)).unwrap();
        assert!(!out[0].text.contains("Reason"));
        assert!(!out[0].text.contains("Open OMERO.web"));
    }

    #[test]
    fn other_events_send_nothing() {
        TestHost::new().install();
        let ev = event("x", Payload::Custom("{}".into()));
        assert!(ServerDownRule::handle(ev).unwrap().is_empty());
    }

    #[test]
    fn unknown_config_key_is_an_error() {
        TestHost::new()
            .config(serde_json::json!({"mood": "x"}))
            .install();
        let err = ServerDownRule::handle(down(None)).unwrap_err();
        assert!(err.contains("unknown field `mood`"), "{err}");
    }
}
