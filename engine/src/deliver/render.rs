//! Render an outbox row as RFC 5322 bytes, deterministically: same row, same bytes.
//!
//! Everything in a row is treated as hostile: line breaks are normalised to CRLF, a body is
//! sent exactly as the rule wrote it (no line added), a part is never declared 7bit when it
//! holds control characters, and a multipart boundary never occurs in the content it separates.

use std::time::SystemTime;

use anyhow::Context;
use chrono::{DateTime, Datelike, Utc};
use lettre::Message;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningKey,
};
use lettre::message::header::{
    self, ContentTransferEncoding, ContentType, HeaderName, HeaderValue,
};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use sha2::{Digest, Sha256};

use crate::mail::MailKey;
use crate::store::OutboxRow;

/// The earliest year a Date header is rendered for (ingest refuses earlier events).
pub const FIRST_YEAR: i32 = 1900;

/// The Message-ID of a row: stable across retries and replays.
pub fn message_id(key: &MailKey, from: &Mailbox) -> String {
    format!("<{}@{}>", key.digest(), from.email.domain())
}

/// Build the message: Date is the event's time, Message-ID derives from
/// the row's key, and the MIME boundary from the key and the content.
pub fn render(row: &OutboxRow, from: &Mailbox) -> anyhow::Result<Message> {
    let date = rfc5322_date(row.event_time)
        .with_context(|| format!("cannot render outbox row {}", row.id))?;
    let mut message = build(row, from)
        .with_context(|| format!("cannot build the message for outbox row {}", row.id))?;
    let name = HeaderName::new_from_ascii_str("Date");
    message
        .headers_mut()
        .insert_raw(HeaderValue::dangerous_new_pre_encoded(
            name,
            date.clone(),
            date,
        ));
    Ok(message)
}

/// The message with a placeholder Date (lettre's own Date cannot hold a time before 1970);
/// `render` puts the event's time in its place.
fn build(row: &OutboxRow, from: &Mailbox) -> anyhow::Result<Message> {
    let mail = &row.mail;
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(header_text(&mail.subject))
        .date(SystemTime::UNIX_EPOCH)
        .message_id(Some(message_id(&row.key, from)));
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
        builder = builder.raw_header(HeaderValue::new(name, header_text(value)));
    }
    let message = match &mail.html {
        None => builder
            .header(header::MIME_VERSION_1_0)
            .header(ContentType::TEXT_PLAIN)
            .body(body(&mail.text, false)),
        Some(html) => {
            let text_part = part(ContentType::TEXT_PLAIN, body(&mail.text, true));
            let html_part = part(ContentType::TEXT_HTML, body(html, true));
            let content = [
                mail.text.as_bytes().to_vec(),
                html.as_bytes().to_vec(),
                text_part.formatted(),
                html_part.formatted(),
            ];
            builder.multipart(
                MultiPart::alternative()
                    .boundary(boundary(&row.key, &content))
                    .singlepart(text_part)
                    .singlepart(html_part),
            )
        }
    };
    Ok(message?)
}

/// How messages are DKIM-signed: relaxed/relaxed canonicalization, signing From, Subject, To,
/// Date and Message-ID. (lettre's default signs headers `simple`, but the DKIM-Signature it
/// hashes is folded differently from the one it writes, so receivers fail the signature.)
pub fn dkim_config(selector: String, domain: String, key: DkimSigningKey) -> DkimConfig {
    let headers = ["From", "Subject", "To", "Date", "Message-ID"]
        .into_iter()
        .map(HeaderName::new_from_ascii_str)
        .collect();
    let relaxed = DkimCanonicalization {
        header: DkimCanonicalizationType::Relaxed,
        body: DkimCanonicalizationType::Relaxed,
    };
    DkimConfig::new(selector, domain, key, headers, relaxed)
}

/// The bytes to hand lettre's DATA writer, which always ends the data with CRLF `.` CRLF:
/// a message that already ends with CRLF gives up that CRLF, since the terminator's first CRLF
/// ends the last line (RFC 5321 4.1.1.4), so the server receives exactly the rendered message.
pub fn smtp_data(bytes: &[u8]) -> &[u8] {
    bytes.strip_suffix(b"\r\n").unwrap_or(bytes)
}

/// An RFC 5322 date-time in UTC, for any time from [`FIRST_YEAR`] to 9999.
pub fn rfc5322_date(time: DateTime<Utc>) -> anyhow::Result<String> {
    anyhow::ensure!(
        (FIRST_YEAR..=9999).contains(&time.year()),
        "the event time {} is outside the years {FIRST_YEAR}-9999 that a Date header can carry",
        time.to_rfc3339()
    );
    Ok(time.format("%a, %d %b %Y %H:%M:%S +0000").to_string())
}

fn mailbox(text: &str) -> anyhow::Result<Mailbox> {
    header_text(text)
        .parse()
        .with_context(|| format!("{text:?} is not a valid mailbox"))
}

/// A header value with every line break (CRLF, CR, LF) folded into one space and other
/// control characters replaced, so no raw CR, LF or NUL can reach a header.
pub fn header_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push(' ');
            }
            '\t' => out.push(c),
            c if c.is_control() => out.push(char::REPLACEMENT_CHARACTER),
            c => out.push(c),
        }
    }
    out
}

/// Text with every line break (CRLF, bare CR, bare LF) made a single LF, which lettre then
/// writes as CRLF: no bare CR or LF can reach the wire.
pub fn normalise_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// The encoded body of a text part. lettre picks 7bit, quoted-printable or base64 from the
/// content; a part that lettre would declare 7bit is quoted-printable instead when it holds a
/// control character (NUL included), and base64 when, inside a multipart, a line could be
/// read as a boundary.
fn body(text: &str, in_multipart: bool) -> Body {
    let text = normalise_line_breaks(text);
    let encoding = if in_multipart && text.split('\n').any(|line| line.starts_with("--")) {
        Some(ContentTransferEncoding::Base64)
    } else if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        Some(ContentTransferEncoding::QuotedPrintable)
    } else {
        None
    };
    match encoding {
        None => Body::new(text),
        Some(encoding) => Body::new_with_encoding(text, encoding)
            .expect("quoted-printable and base64 accept any content"),
    }
}

fn part(content_type: ContentType, body: Body) -> SinglePart {
    SinglePart::builder().header(content_type).body(body)
}

/// `=_herald_<key digest>`, unless that string occurs in the content (as the rule wrote it or
/// as encoded in its part): then a hash of the key, the content and a counter, re-derived
/// until it occurs nowhere.
fn boundary(key: &MailKey, parts: &[Vec<u8>]) -> String {
    let occurs = |candidate: &str| {
        parts.iter().any(|p| {
            p.windows(candidate.len())
                .any(|w| w == candidate.as_bytes())
        })
    };
    let first = format!("=_herald_{}", key.digest());
    if !occurs(&first) {
        return first;
    }
    (1u64..)
        .map(|counter| {
            let mut hash = Sha256::new();
            hash.update(key.digest());
            for part in parts {
                hash.update(part);
            }
            hash.update(counter.to_le_bytes());
            format!("=_herald_{}", hex::encode(&hash.finalize()[..16]))
        })
        .find(|candidate| !occurs(candidate))
        .expect("a finite content cannot hold every candidate")
}

/// A row's message as it would be sent (a relayed one as received), or why its stored form
/// cannot be read or rendered: for `herald outbox show` and `GET /v1/outbox/{id}`.
pub fn stored_message(
    store: &crate::store::Store,
    id: i64,
    from: &Mailbox,
) -> crate::store::Result<Result<Vec<u8>, String>> {
    if let Some(relayed) = store.relayed_message(id)? {
        return Ok(Ok(relayed));
    }
    Ok(match store.outbox_row(id) {
        Ok(Some(row)) => render(&row, from)
            .map(|message| message.formatted())
            .map_err(|err| format!("{err:#}")),
        Ok(None) => Err("the row has no event".into()),
        Err(err) => Err(err.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::Mail;

    fn row(text: &str, html: Option<&str>, time: &str) -> OutboxRow {
        let time = DateTime::parse_from_rfc3339(time).unwrap().to_utc();
        OutboxRow {
            id: 1,
            key: MailKey {
                source: "s".into(),
                event_id: "e".into(),
                rule: "r".into(),
                recipient: "alice@example.org".into(),
            },
            event_time: time,
            mail: Mail {
                recipient: "alice@example.org".into(),
                to: vec!["alice@example.org".into()],
                cc: vec![],
                reply_to: vec![],
                subject: "Hi".into(),
                text: text.into(),
                html: html.map(str::to_owned),
                headers: vec![],
            },
            attempts: 0,
            queued_at: time,
            lease: None,
        }
    }

    fn bytes(row: &OutboxRow) -> Vec<u8> {
        render(row, &"omero@localhost".parse().unwrap())
            .unwrap()
            .formatted()
    }

    fn split(bytes: &[u8]) -> (String, String) {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_owned(), body.to_owned())
    }

    #[test]
    fn body_is_the_rules_text_with_crlf_and_nothing_appended() {
        let (_, body) = split(&bytes(&row("one\ntwo\n", None, "2026-01-01T00:00:00Z")));
        assert_eq!(body, "one\r\ntwo\r\n");
        let (_, body) = split(&bytes(&row("no newline", None, "2026-01-01T00:00:00Z")));
        assert_eq!(body, "no newline");
    }

    #[test]
    fn times_from_1900_render_a_date_and_earlier_ones_are_an_error() {
        for (time, date) in [
            ("1950-06-01T12:30:05Z", "Thu, 01 Jun 1950 12:30:05 +0000"),
            ("1900-01-01T00:00:00Z", "Mon, 01 Jan 1900 00:00:00 +0000"),
            ("1969-12-31T23:59:59Z", "Wed, 31 Dec 1969 23:59:59 +0000"),
            ("2026-11-23T09:00:00Z", "Mon, 23 Nov 2026 09:00:00 +0000"),
        ] {
            let (head, _) = split(&bytes(&row("x\n", None, time)));
            assert!(head.contains(&format!("\r\nDate: {date}\r\n")), "{head}");
            assert_eq!(head.matches("Date:").count(), 1, "{head}");
        }
        let err = render(
            &row("x\n", None, "1899-12-31T23:59:59Z"),
            &"omero@localhost".parse().unwrap(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("1900"), "{err:#}");
    }

    #[test]
    fn bare_cr_and_lf_become_crlf_and_nul_is_never_sent_as_7bit() {
        let out = bytes(&row("a\r.\r\nb\nc\rd\0e\n", None, "2026-01-01T00:00:00Z"));
        for (i, &b) in out.iter().enumerate() {
            if b == b'\r' {
                assert_eq!(out.get(i + 1), Some(&b'\n'), "bare CR at {i}");
            }
            if b == b'\n' {
                assert_eq!(out[i - 1], b'\r', "bare LF at {i}");
            }
        }
        assert!(!out.contains(&0));
        let (head, body) = split(&out);
        assert!(
            head.contains("Content-Transfer-Encoding: quoted-printable"),
            "{head}"
        );
        assert_eq!(body, "a\r\n.\r\nb\r\nc\r\nd=00e\r\n");
    }

    #[test]
    fn header_values_never_carry_raw_line_breaks() {
        assert_eq!(header_text("a\r\nBcc: x\ry\nz\0"), "a Bcc: x y z\u{fffd}");
    }

    #[test]
    fn a_boundary_in_the_content_is_re_derived_and_boundary_lines_are_base64() {
        let plain = row("t\n", Some("<p>h</p>\n"), "2026-01-01T00:00:00Z");
        let predicted = format!("=_herald_{}", plain.key.digest());
        assert!(split(&bytes(&plain)).0.contains(&predicted));
        let forged = format!("x {predicted}\n--{predicted}\nContent-Type: text/html\n\n<h1>!\n");
        let hostile = row(&forged, Some("<p>h</p>\n"), "2026-01-01T00:00:00Z");
        let out = String::from_utf8(bytes(&hostile)).unwrap();
        assert!(!out.contains(&format!("--{predicted}")), "{out}");
        assert_eq!(out.matches("Content-Transfer-Encoding: base64").count(), 1);
    }
}
