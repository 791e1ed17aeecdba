//! Example rule `failed-login-throttle`: mail the admins about a failed login at most once per user per window.
//!
//! The first failure for a username mails; the rule then keeps a key for that
//! username in its kv store that expires `window` after the event's time, and
//! sends nothing for that username while the key is there.

use herald_sdk::{Event, Message, Payload, Recipient, Rule, config, export_rule, kv, omero, safe};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The most characters of a username shown in a subject or body.
const NAME_CHARS: usize = 64;

/// The rule's `config` keys.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// How long one username stays quiet after its mail: seconds, or a number
    /// with a unit `s`, `m`, `h` or `d` (e.g. `30m`). Default `1h`.
    window: Window,
    /// Also mail the user whose login failed. Default false.
    contact_user: bool,
    /// Prepended to the subject; default `[OMERO] `.
    subject_prefix: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window: Window(3600),
            contact_user: false,
            subject_prefix: omero::default_subject_prefix(),
        }
    }
}

/// A window in seconds, written as seconds or with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window(u64);

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        let seconds = match Raw::deserialize(d)? {
            Raw::Seconds(s) => Some(s),
            Raw::Text(text) => parse_window(&text),
        };
        match seconds {
            Some(s) if s > 0 => Ok(Window(s)),
            _ => Err(serde::de::Error::custom(
                "window must be above 0: seconds, or a number with s, m, h or d, e.g. 1h",
            )),
        }
    }
}

/// `90`, `90s`, `30m`, `1h`, `2d` (humantime) as whole seconds.
fn parse_window(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.parse::<u64>() {
        Ok(seconds) => Some(seconds),
        Err(_) => humantime::parse_duration(text).ok().map(|d| d.as_secs()),
    }
}

/// The window as people say it: `1h`, `30m`, `90s`.
fn show_window(seconds: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(seconds)).to_string()
}

/// The kv key for a username: a fixed-length digest, whatever the name holds.
fn key_for(user: &str) -> String {
    let digest = Sha256::digest(user.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("quiet:{hex}")
}

pub struct FailedLoginThrottle;

impl Rule for FailedLoginThrottle {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let Payload::LoginFailed(failed) = &event.data else {
            return Ok(Vec::new());
        };
        if !omero::login_definitely_failed(&event.data_json) {
            return Ok(Vec::new());
        }
        let settings: Settings = config::get()?;
        let key = key_for(&failed.user);
        if kv::get(&key).is_some() {
            return Ok(Vec::new());
        }
        kv::set(&key, event.time.as_bytes(), Some(settings.window.0));
        Ok(vec![mail(
            &event,
            &failed.user,
            failed.remote_addr.as_deref(),
            &settings,
        )])
    }
}

/// The one mail for this username in this window.
fn mail(event: &Event, user: &str, from: Option<&str>, settings: &Settings) -> Message {
    let name = safe::one_line(user, NAME_CHARS);
    let subject = format!("{}Login failed for '{name}'", settings.subject_prefix);
    let from = from.map_or_else(
        || "an unknown address".to_owned(),
        |a| safe::one_line(a, NAME_CHARS),
    );
    let window = show_window(settings.window.0);
    let text = format!(
        "A login as '{name}' failed at {} from {from}.\n\n\
         Further failed logins as '{name}' are not mailed for {window}.\n",
        safe::one_line(&event.time, NAME_CHARS)
    );
    let mut mail = Message::new(subject, text).to(Recipient::Admins);
    if settings.contact_user {
        mail = mail.to(Recipient::UserName(user.to_owned()));
    }
    mail
}

export_rule!(FailedLoginThrottle, config = Settings);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_sdk::LoginFailed;
    use herald_sdk::testing::{TestHost, event};
    use serde_json::json;

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

    #[test]
    fn one_mail_per_user_per_window() {
        TestHost::new().config(json!({"window": "30m"})).install();
        let first = FailedLoginThrottle::handle(failed("root")).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].subject, "[OMERO] Login failed for 'root'");
        assert!(
            first[0].text.contains("not mailed for 30m"),
            "{}",
            first[0].text
        );
        assert!(
            FailedLoginThrottle::handle(failed("root"))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            FailedLoginThrottle::handle(failed("alice")).unwrap().len(),
            1
        );
    }

    #[test]
    fn hostile_names_give_one_line_subjects_and_bounded_keys() {
        TestHost::new().install();
        let name = format!("ro\r\not\u{0}{}", "x".repeat(10_000));
        let out = FailedLoginThrottle::handle(failed(&name)).unwrap();
        assert!(!out[0].subject.contains(['\r', '\n', '\0']));
        assert!(out[0].subject.chars().count() < 100);
        assert!(key_for(&name).len() <= 256);
    }

    #[test]
    fn windows_parse_with_units() {
        assert_eq!(parse_window("90"), Some(90));
        assert_eq!(parse_window("30m"), Some(1800));
        assert_eq!(parse_window("1h"), Some(3600));
        assert_eq!(parse_window("2d"), Some(172_800));
        assert_eq!(parse_window("soon"), None);
        assert_eq!(parse_window("h"), None);
        assert_eq!(show_window(3600), "1h");
        assert_eq!(show_window(5400), "1h 30m");
    }

    #[test]
    fn a_bad_window_is_an_error_naming_it() {
        TestHost::new().config(json!({"window": "soon"})).install();
        let err = FailedLoginThrottle::handle(failed("root")).unwrap_err();
        assert!(err.contains("window"), "{err}");
    }
}
