//! `mail.received`: a mail Herald's SMTP listener took that is not one of OMERO's stock mails.
//!
//! ```
//! use herald_sdk::mail::MailReceived;
//!
//! let data = r#"{"envelope": {"mail_from": "omero@example.org", "rcpt_to": ["alice@example.org"],
//!   "client": "127.0.0.1", "helo": "omero", "tls": false, "authenticated": false},
//!   "message_id": "m1@omero", "subject": "Hello", "from": "omero@example.org",
//!   "headers": [["Subject", "Hello"]], "text": "Hi\n", "truncated": false, "size": 40}"#;
//! let mail = MailReceived::parse(data).unwrap();
//! assert_eq!(mail.envelope.rcpt_to, ["alice@example.org"]);
//! assert_eq!(mail.header("subject"), Some("Hello"));
//! assert!(!mail.purged);
//! ```

use serde::Deserialize;

/// The event type.
pub const MAIL_RECEIVED: &str = "mail.received";

/// The `data` of a `mail.received` event (see docs/events.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MailReceived {
    pub envelope: Envelope,
    pub message_id: Option<String>,
    /// Decoded (RFC 2047).
    pub subject: String,
    /// The From header as sent.
    pub from: Option<String>,
    /// The first 100 header fields, unfolded, each value cut at 1000 bytes.
    pub headers: Vec<(String, String)>,
    /// The first text part, decoded, LF line ends, cut at 64 KiB; `""` once purged.
    pub text: String,
    /// The text was cut.
    pub truncated: bool,
    /// The message's size in bytes.
    pub size: u64,
    /// The body was purged after delivery (only seen when an event is read back later).
    pub purged: bool,
}

/// The SMTP envelope and how the client came.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Envelope {
    /// MAIL FROM, `""` for the null sender.
    pub mail_from: String,
    /// RCPT TO, in order.
    pub rcpt_to: Vec<String>,
    /// The client's IP address.
    pub client: String,
    /// The client's EHLO name.
    pub helo: String,
    pub tls: bool,
    pub authenticated: bool,
}

impl MailReceived {
    /// Read an event's `data-json`.
    pub fn parse(data_json: &str) -> Result<MailReceived, String> {
        serde_json::from_str(data_json).map_err(|err| format!("mail.received data: {err}"))
    }

    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
