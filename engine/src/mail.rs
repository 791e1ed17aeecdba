//! The resolved mail that evaluation queues and delivery sends: one per recipient.

use serde::{Deserialize, Serialize};

/// One outgoing copy of a message, for exactly one envelope recipient.
///
/// Headers (To, Cc, Subject…) are what the recipient sees; `recipient` is
/// where this copy goes. A rule's message addressed "together" to three
/// people becomes three `Mail`s with identical headers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    /// The envelope recipient (RCPT TO), lower-cased.
    pub recipient: String,
    pub to: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply_to: Vec<String>,
    pub subject: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

/// The identity of one outbox row: which event, which rule, which recipient.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MailKey {
    pub source: String,
    pub event_id: String,
    pub rule: String,
    pub recipient: String,
}

impl MailKey {
    /// A short stable hex digest of the key, used in Message-ID and file names.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in [&self.source, &self.event_id, &self.rule, &self.recipient] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        hex::encode(&hash.finalize()[..12])
    }
}
