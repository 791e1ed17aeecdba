//! Default rule `failed-login`: tell the admins and/or the user when a login fails (OMERO's FailedLoginMailSender).

use herald_sdk::omero::{self, Mode, Summary};
use herald_sdk::{
    Event, LoginFailed, Message, Payload, Recipient, Rule, config, directory, export_rule, safe,
};
use serde::Deserialize;

/// The rule's `config` keys. OMERO's stock example is
/// `{contact_system: true, on_specific_users: [root]}`; with every knob at
/// its default the rule sends nothing.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// Mail all admins (OMERO's `contactSystem`). Default false.
    contact_system: bool,
    /// Mail the user whose login failed (`contactUser`); the engine reports
    /// the recipient when the name is unknown or has no email. Default false.
    contact_user: bool,
    /// Fire for every username, unknown ones too (`onAllUsers`). Default false.
    on_all_users: bool,
    /// Fire for these usernames (`onSpecificUsers`). Default empty.
    on_specific_users: Vec<String>,
    /// `parity` (default) or `enriched` (adds the user's name, the remote
    /// address, the user agent, the time, a link and an HTML part).
    mode: Mode,
    /// Prepended to the subject; default `[OMERO] `.
    subject_prefix: String,
    /// Enriched mode only: a link template; `{name}` is the tried username
    /// (percent-encoded). Default: no link.
    web_url: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            contact_system: false,
            contact_user: false,
            on_all_users: false,
            on_specific_users: Vec::new(),
            mode: Mode::Parity,
            subject_prefix: omero::default_subject_prefix(),
            web_url: None,
        }
    }
}

impl Settings {
    /// Whether a failed login as `name` fires at all.
    fn fires_for(&self, name: &str) -> bool {
        self.on_all_users || self.on_specific_users.iter().any(|n| n == name)
    }

    /// Who hears of a failed login as `name`.
    fn recipients(&self, name: &str) -> Vec<Recipient> {
        let mut to = Vec::new();
        if self.contact_system {
            to.push(Recipient::Admins);
        }
        if self.contact_user {
            to.push(Recipient::UserName(name.to_owned()));
        }
        to
    }
}

pub struct FailedLogin;

impl Rule for FailedLogin {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let Payload::LoginFailed(failed) = &event.data else {
            return Ok(Vec::new());
        };
        let settings: Settings = config::get()?;
        if !omero::login_definitely_failed(&event.data_json) || !settings.fires_for(&failed.user) {
            return Ok(Vec::new());
        }
        let to = settings.recipients(&failed.user);
        if to.is_empty() {
            return Ok(Vec::new());
        }
        let subject = format!(
            "{}Login failed for '{}'",
            settings.subject_prefix,
            safe::header_value(&failed.user)
        );
        let mut mail = match settings.mode {
            Mode::Parity => Message::new(subject, omero::DEFAULT_BODY),
            Mode::Enriched => enriched(&event, failed, &settings).message(subject),
        };
        mail.to = to;
        Ok(vec![mail])
    }
}

/// The enriched body: who (with the full name when the directory knows the
/// user), from where, when, and the optional link.
fn enriched(event: &Event, failed: &LoginFailed, settings: &Settings) -> Summary {
    let who = match directory::user_by_name(&failed.user) {
        Some(user) => omero::display_name(&user),
        None => format!("{} (not a known user)", failed.user),
    };
    let url = settings
        .web_url
        .as_deref()
        .map(|t| omero::link(t, &[("name", &failed.user)]));
    let unknown = || "unknown".to_owned();
    Summary::new(format!("A login as '{}' failed.", failed.user))
        .fact("User", who)
        .fact(
            "Remote address",
            failed.remote_addr.clone().unwrap_or_else(unknown),
        )
        .fact(
            "User agent",
            failed.user_agent.clone().unwrap_or_else(unknown),
        )
        .fact("Time", event.time.clone())
        .link_opt("Open in OMERO.web", url)
}

export_rule!(FailedLogin, config = Settings);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::User;
    use herald_sdk::testing::{TestHost, event};
    use serde_json::json;

    fn failed(name: &str, data_json: &str) -> Event {
        let mut ev = event(
            "omero.login.failed",
            Payload::LoginFailed(LoginFailed {
                user: name.into(),
                remote_addr: Some("192.0.2.7".into()),
                user_agent: None,
            }),
        );
        ev.data_json = data_json.into();
        ev
    }

    fn run(config: serde_json::Value, name: &str) -> Vec<Message> {
        run_json(config, name, &format!(r#"{{"user":"{name}"}}"#))
    }

    fn run_json(config: serde_json::Value, name: &str, data_json: &str) -> Vec<Message> {
        let alice = User {
            id: 2,
            name: "alice".into(),
            first_name: Some("Alice".into()),
            last_name: Some("Liddell".into()),
            email: Some("alice@example.org".into()),
        };
        TestHost::new().config(config).user(alice).install();
        FailedLogin::handle(failed(name, data_json)).unwrap()
    }

    fn recipients(out: &[Message]) -> String {
        format!("{:?}", out[0].to).replace("Recipient::", "")
    }

    #[test]
    fn defaults_send_nothing() {
        assert!(run(json!({}), "root").is_empty());
    }

    #[test]
    fn stock_example_mails_admins_for_root_only() {
        let config = json!({"contact_system": true, "on_specific_users": ["root"]});
        let out = run(config.clone(), "root");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].subject, "[OMERO] Login failed for 'root'");
        assert_eq!(out[0].text, "Automated email sent by the OMERO server.\n");
        assert_eq!(out[0].html, None);
        assert!(matches!(out[0].to[..], [Recipient::Admins]));
        assert!(run(config, "alice").is_empty());
    }

    #[test]
    fn contact_user_names_the_tried_user() {
        let out = run(
            json!({"contact_user": true, "on_specific_users": ["alice"]}),
            "alice",
        );
        assert!(matches!(&out[0].to[..], [Recipient::UserName(n)] if n == "alice"));
    }

    #[test]
    fn both_contacts_go_in_one_message() {
        let out = run(
            json!({"contact_system": true, "contact_user": true, "on_specific_users": ["alice"]}),
            "alice",
        );
        assert_eq!(out.len(), 1);
        assert_eq!(recipients(&out), r#"[Admins, UserName("alice")]"#);
    }

    #[test]
    fn firing_without_any_contact_sends_nothing() {
        assert!(run(json!({"on_all_users": true}), "alice").is_empty());
        assert!(run(json!({"on_specific_users": ["alice"]}), "alice").is_empty());
    }

    #[test]
    fn contacts_without_a_trigger_send_nothing() {
        assert!(
            run(
                json!({"contact_system": true, "contact_user": true}),
                "alice"
            )
            .is_empty()
        );
    }

    #[test]
    fn on_all_users_fires_for_unknown_names_too() {
        let out = run(
            json!({"contact_system": true, "contact_user": true, "on_all_users": true}),
            "mallory",
        );
        assert_eq!(out[0].subject, "[OMERO] Login failed for 'mallory'");
        // The engine reports mallory as unknown; the rule just names her.
        assert_eq!(recipients(&out), r#"[Admins, UserName("mallory")]"#);
    }

    #[test]
    fn specific_users_match_exact_names() {
        let config = json!({"contact_system": true, "on_specific_users": ["root", "bob"]});
        assert_eq!(run(config.clone(), "bob").len(), 1);
        assert!(run(config.clone(), "Bob").is_empty());
        assert!(run(config, "alice").is_empty());
    }

    #[test]
    fn on_all_users_with_specific_users_fires_for_everyone() {
        let config =
            json!({"contact_system": true, "on_all_users": true, "on_specific_users": ["root"]});
        assert_eq!(run(config, "alice").len(), 1);
    }

    #[test]
    fn success_other_than_false_sends_nothing() {
        let config = json!({"contact_system": true, "on_all_users": true});
        for data in [
            r#"{"user":"root","success":true}"#,
            r#"{"user":"root","success":null}"#,
            r#"{"user":"root","success":"unknown"}"#,
        ] {
            assert!(run_json(config.clone(), "root", data).is_empty(), "{data}");
        }
        assert_eq!(
            run_json(config.clone(), "root", r#"{"user":"root","success":false}"#).len(),
            1
        );
        assert_eq!(run_json(config, "root", r#"{"user":"root"}"#).len(), 1);
    }

    #[test]
    fn subject_prefix_is_configurable() {
        let out = run(
            json!({"contact_system": true, "on_all_users": true, "subject_prefix": ""}),
            "x",
        );
        assert_eq!(out[0].subject, "Login failed for 'x'");
    }

    #[test]
    fn enriched_known_user() {
        let config = json!({"contact_system": true, "on_all_users": true, "mode": "enriched",
                            "web_url": "https://omero.example.org/webadmin/?user={name}"});
        let out = run(config, "alice");
        assert_eq!(out[0].subject, "[OMERO] Login failed for 'alice'");
        assert_eq!(
            out[0].text,
            "A login as 'alice' failed.\n\n\
             User: Alice Liddell (alice)\nRemote address: 192.0.2.7\nUser agent: unknown\n\
             Time: 2026-01-01T00:00:00Z\n\n\
             Open in OMERO.web: https://omero.example.org/webadmin/?user=alice\n\n\
             Automated email sent by the OMERO server.\n"
        );
        assert!(
            out[0]
                .html
                .as_deref()
                .unwrap()
                .contains("<td>Alice Liddell (alice)</td>")
        );
    }

    #[test]
    fn enriched_unknown_user_is_escaped_in_html() {
        let config = json!({"contact_system": true, "on_all_users": true, "mode": "enriched"});
        let out = run(config, "<script>");
        assert!(out[0].text.contains("User: <script> (not a known user)\n"));
        let html = out[0].html.as_deref().unwrap();
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn config_typos_fail_loudly() {
        TestHost::new()
            .config(json!({"contact_sytem": true}))
            .install();
        let err = FailedLogin::handle(failed("root", "{}")).unwrap_err();
        assert!(err.contains("unknown field `contact_sytem`"), "{err}");
        TestHost::new()
            .config(json!({"on_specific_users": "root"}))
            .install();
        assert!(FailedLogin::handle(failed("root", "{}")).is_err());
    }
}
