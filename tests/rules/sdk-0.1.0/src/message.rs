//! Builders for messages and recipients.

use crate::{Addressing, Header, Message, Recipient};

impl Message {
    /// A message with a subject and a plain-text body, to nobody yet.
    /// Recipients get one message each unless [`Message::together`] is used.
    pub fn new(subject: impl Into<String>, text: impl Into<String>) -> Self {
        Message {
            to: Vec::new(),
            cc: Vec::new(),
            reply_to: Vec::new(),
            subject: subject.into(),
            text: text.into(),
            html: None,
            headers: Vec::new(),
            addressing: Addressing::Individual,
        }
    }

    /// Add a To: recipient.
    pub fn to(mut self, recipient: impl Into<Recipient>) -> Self {
        self.to.push(recipient.into());
        self
    }

    /// Add a Cc: recipient.
    pub fn cc(mut self, recipient: impl Into<Recipient>) -> Self {
        self.cc.push(recipient.into());
        self
    }

    /// Add a Reply-To: address.
    pub fn reply_to(mut self, address: impl Into<String>) -> Self {
        self.reply_to.push(address.into());
        self
    }

    /// Add an HTML alternative; the plain text stays.
    pub fn html(mut self, html: impl Into<String>) -> Self {
        self.html = Some(html.into());
        self
    }

    /// Add an extra header (an `X-` header, or one the engine allows).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Send one message with every recipient in To: (and Cc:) instead of
    /// one message per recipient.
    pub fn together(mut self) -> Self {
        self.addressing = Addressing::Together;
        self
    }
}

/// A bare string is an email address.
impl From<&str> for Recipient {
    fn from(address: &str) -> Self {
        Recipient::Address(address.to_owned())
    }
}

/// A bare string is an email address.
impl From<String> for Recipient {
    fn from(address: String) -> Self {
        Recipient::Address(address)
    }
}
