//! Render an outbox row as RFC 5322 bytes, deterministically: same row, same bytes.

use std::time::SystemTime;

use anyhow::Context;
use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use crate::mail::MailKey;
use crate::store::OutboxRow;

/// The Message-ID of a row: stable across retries and replays.
pub fn message_id(key: &MailKey, from: &Mailbox) -> String {
    format!("<{}@{}>", key.digest(), from.email.domain())
}

/// Build the message: Date is the event's time, Message-ID derives from
/// the row's key, and MIME boundaries from the Message-ID.
pub fn render(row: &OutboxRow, from: &Mailbox) -> anyhow::Result<Message> {
    let mail = &row.mail;
    let id = message_id(&row.key, from);
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(mail.subject.clone())
        .date(SystemTime::from(row.event_time))
        .message_id(Some(id.clone()));
    for to in &mail.to {
        builder = builder.to(mailbox(to)?);
    }
    for cc in &mail.cc {
        builder = builder.cc(mailbox(cc)?);
    }
    for reply_to in &mail.reply_to {
        builder = builder.reply_to(mailbox(reply_to)?);
    }
    for (name, value) in &mail.headers {
        let name = HeaderName::new_from_ascii(name.clone())
            .map_err(|_| anyhow::anyhow!("invalid header name {name:?}"))?;
        builder = builder.raw_header(HeaderValue::new(name, value.clone()));
    }
    let message = match &mail.html {
        None => builder.singlepart(SinglePart::plain(mail.text.clone())),
        Some(html) => builder.multipart(
            MultiPart::alternative()
                .boundary(boundary(&row.key))
                .singlepart(SinglePart::plain(mail.text.clone()))
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html.clone()),
                ),
        ),
    };
    message.with_context(|| format!("cannot build the message for outbox row {}", row.id))
}

fn mailbox(text: &str) -> anyhow::Result<Mailbox> {
    text.parse()
        .with_context(|| format!("{text:?} is not a valid mailbox"))
}

fn boundary(key: &MailKey) -> String {
    format!("=_herald_{}", key.digest())
}
