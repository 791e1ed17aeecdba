//! Accept: one received message becomes its events and its relay record, journaled durably before the 250.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use chrono::{DateTime, Utc};
use mail_parser::MessageParser;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::recognise::{Recognised, recognise};
use crate::config::{OmeroMail, SmtpListenerConfig};
use crate::directory::Directory;
use crate::event::{Event, EventData, types};
use crate::store::relay::Inbound;
use crate::store::writer::{WriteFailed, Writer};

/// The directory in force now (it follows reloads).
pub type DirectorySource = Arc<dyn Fn() -> Arc<Directory> + Send + Sync>;

/// At most this much of a body goes into an event's `text` (the relayed bytes are whole).
const MAX_TEXT: usize = 64 * 1024;
/// At most this many headers, each value cut at `MAX_HEADER`, go into `mail.received`.
const MAX_HEADERS: usize = 100;
const MAX_HEADER: usize = 1000;
/// Stock-mail windows remembered at most (the oldest are forgotten first).
const MAX_WINDOWS: usize = 10_000;

/// The SMTP envelope and how the client came.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub helo: String,
    pub client: SocketAddr,
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub tls: bool,
    pub authenticated: bool,
}

/// Turns received messages into journaled events and relay rows.
pub struct Acceptor {
    hostname: String,
    source: String,
    omero_mail: OmeroMail,
    keep_body: bool,
    window: std::time::Duration,
    writer: Writer,
    directory: DirectorySource,
    /// Stock mails seen lately: content digest → when its window opened.
    windows: Mutex<HashMap<String, (Instant, DateTime<Utc>)>>,
}

impl Acceptor {
    pub fn new(config: &SmtpListenerConfig, writer: Writer, directory: DirectorySource) -> Self {
        Acceptor {
            hostname: config.hostname.clone(),
            source: format!("smtp://{}", config.hostname),
            omero_mail: config.omero_mail,
            keep_body: config.keep_body,
            window: config.dedup_window,
            writer,
            directory,
            windows: Mutex::default(),
        }
    }

    /// Journal the message (its events and its bytes) and return once that is durable.
    pub async fn accept(&self, envelope: &Envelope, data: &[u8]) -> Result<(), WriteFailed> {
        let (events, inbound) = self.prepare(envelope, data, Utc::now());
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        tracing::debug!(
            client = %envelope.client, size = inbound.raw.len(), events = ?kinds,
            relay = inbound.relay, "SMTP message journaled"
        );
        self.writer.journal_mail(events, inbound).await.map(|_| ())
    }

    /// The events and the relay record of one message.
    fn prepare(
        &self,
        envelope: &Envelope,
        data: &[u8],
        now: DateTime<Utc>,
    ) -> (Vec<Event>, Inbound) {
        let raw = normalise(data);
        let parsed = Parsed::of(&raw);
        let dedup = dedup_key(envelope, parsed.message_id.as_deref(), &raw);
        let found = recognise(
            &parsed.subject,
            &parsed.text,
            &envelope.helo,
            &(self.directory)(),
        );
        let relay = self.relays(&found);
        let mut events: Vec<Event> = found
            .iter()
            .filter_map(|r| self.typed_event(r, &parsed, relay, now))
            .collect();
        if events.is_empty() {
            events.push(self.received_event(envelope, &parsed, &dedup, raw.len(), now));
        }
        let received = received_header(&self.hostname, envelope, &dedup, now);
        let inbound = Inbound {
            dedup,
            mail_from: envelope.mail_from.clone(),
            recipients: envelope.recipients.clone(),
            received,
            raw,
            subject: cap(&parsed.subject, MAX_HEADER),
            // What is not recognised is always relayed.
            relay: relay || events[0].kind == types::MAIL_RECEIVED,
            keep_body: self.keep_body,
        };
        (events, inbound)
    }

    /// Whether the original of a recognised stock mail goes out (`omero_mail`). A comment's
    /// mail does not say which image or who wrote it, so rules cannot replace it: it is relayed.
    fn relays(&self, found: &[Recognised]) -> bool {
        let incomplete = found.iter().any(|r| r.kind == types::COMMENT_ADDED);
        self.omero_mail != OmeroMail::Replace || incomplete
    }

    fn typed_event(
        &self,
        found: &Recognised,
        parsed: &Parsed,
        relayed: bool,
        now: DateTime<Utc>,
    ) -> Option<Event> {
        let mut data = found.data.clone();
        data["mail"] = json!({
            "message_id": parsed.message_id, "relayed": relayed, "omero_mail": self.mode(),
            "skip_stock_rules": relayed && self.omero_mail == OmeroMail::Relay,
        });
        let id = match &found.key {
            Some(key) => key.clone(),
            None => self.windowed_id(found, now),
        };
        self.event(id, found.kind, data, now)
    }

    fn mode(&self) -> &'static str {
        match self.omero_mail {
            OmeroMail::Relay => "relay",
            OmeroMail::Replace => "replace",
            OmeroMail::Both => "both",
        }
    }

    /// `<type>/<content digest>/<window start>`: the copies OMERO sends (one per recipient)
    /// within `dedup_window` of the first share one id, so the journal keeps one event.
    fn windowed_id(&self, found: &Recognised, now: DateTime<Utc>) -> String {
        let digest = hex::encode(&Sha256::digest(format!("{}\0{}", found.kind, found.data))[..12]);
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = Instant::now();
        windows.retain(|_, (opened, _)| seen.duration_since(*opened) < self.window);
        if windows.len() >= MAX_WINDOWS {
            windows.clear();
        }
        let (_, opened) = *windows.entry(digest.clone()).or_insert((seen, now));
        format!("{}/{digest}/{}", found.kind, opened.timestamp_millis())
    }

    fn received_event(
        &self,
        envelope: &Envelope,
        parsed: &Parsed,
        dedup: &str,
        size: usize,
        now: DateTime<Utc>,
    ) -> Event {
        let data = json!({
            "envelope": {
                "mail_from": envelope.mail_from, "rcpt_to": envelope.recipients,
                "client": envelope.client.ip().to_string(), "helo": envelope.helo,
                "tls": envelope.tls, "authenticated": envelope.authenticated,
            },
            "message_id": parsed.message_id,
            "subject": cap(&parsed.subject, MAX_HEADER),
            "from": parsed.from,
            "headers": parsed.headers,
            "text": cap(&parsed.text, MAX_TEXT),
            "truncated": parsed.text.len() > MAX_TEXT,
            "size": size,
        });
        Event {
            id: format!("mail-{}", &dedup[..32]),
            source: self.source.clone(),
            kind: types::MAIL_RECEIVED.to_owned(),
            time: now,
            data: EventData::Custom(data.clone()),
            data_json: data,
        }
    }

    fn event(&self, id: String, kind: &str, data_json: Value, now: DateTime<Utc>) -> Option<Event> {
        let data = match EventData::parse(kind, &data_json) {
            Ok(data) => data,
            Err(err) => {
                tracing::warn!(
                    kind,
                    "a recognised mail did not make a valid event ({err}); kept as mail.received"
                );
                return None;
            }
        };
        Some(Event {
            id,
            source: self.source.clone(),
            kind: kind.to_owned(),
            time: now,
            data_json,
            data,
        })
    }
}

/// What the events need from the message, read by mail-parser (a message it cannot read
/// has an empty subject and text; the bytes are still relayed).
struct Parsed {
    message_id: Option<String>,
    subject: String,
    from: Option<String>,
    text: String,
    headers: Vec<(String, String)>,
}

impl Parsed {
    fn of(raw: &[u8]) -> Parsed {
        let Some(message) = MessageParser::default().parse(raw) else {
            return Parsed {
                message_id: None,
                subject: String::new(),
                from: None,
                text: String::new(),
                headers: Vec::new(),
            };
        };
        let headers = message
            .headers_raw()
            .take(MAX_HEADERS)
            .map(|(name, value)| (cap(name, MAX_HEADER), cap(&unfold(value), MAX_HEADER)))
            .collect();
        Parsed {
            message_id: message.message_id().map(|id| cap(id, MAX_HEADER)),
            subject: message.subject().unwrap_or_default().to_owned(),
            from: message
                .header_raw("From")
                .map(|f| cap(&unfold(f), MAX_HEADER)),
            text: message
                .body_text(0)
                .map(|t| t.replace("\r\n", "\n"))
                .unwrap_or_default(),
            headers,
        }
    }
}

/// A header value on one line, without its leading space.
fn unfold(value: &str) -> String {
    value
        .replace("\r\n", "")
        .replace('\n', "")
        .trim()
        .to_owned()
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn cap(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The message as relayed: every line end CRLF (a bare CR or LF becomes one), no NUL.
pub fn normalise(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64);
    each_normalised(data, |bytes| out.extend_from_slice(bytes));
    out
}

/// How long [`normalise`] makes `data` (bare line ends grow to two bytes), without making it:
/// `max_size` holds for what is relayed, not only for what was received.
pub fn normalised_len(data: &[u8]) -> usize {
    let mut len = 0;
    each_normalised(data, |bytes| len += bytes.len());
    len
}

/// Hand [`normalise`]'s output to `emit`, piece by piece.
fn each_normalised(data: &[u8], mut emit: impl FnMut(&[u8])) {
    let mut bytes = data.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        match byte {
            0 => {}
            b'\r' => {
                bytes.next_if_eq(&b'\n');
                emit(b"\r\n");
            }
            b'\n' => emit(b"\r\n"),
            other => emit(&[other]),
        }
    }
}

/// A client retransmitting the same message (same Message-ID, or the same bytes when it has
/// none, and the same envelope) gets the same key, so it is stored once.
fn dedup_key(envelope: &Envelope, message_id: Option<&str>, raw: &[u8]) -> String {
    let mut hash = Sha256::new();
    match message_id {
        Some(id) => hash.update(format!("id:{id}")),
        None => hash.update(Sha256::digest(raw)),
    }
    hash.update([0]);
    hash.update(envelope.mail_from.as_bytes());
    for rcpt in &envelope.recipients {
        hash.update([0]);
        hash.update(rcpt.to_lowercase().as_bytes());
    }
    hex::encode(hash.finalize())
}

/// Herald's trace field (RFC 5321 4.4): who handed the message over, how, and when.
fn received_header(hostname: &str, envelope: &Envelope, dedup: &str, now: DateTime<Utc>) -> String {
    let helo: String = envelope
        .helo
        .chars()
        .filter(|c| c.is_ascii_graphic() && !"()[];".contains(*c))
        .take(64)
        .collect();
    // A name with nothing printable left would make `from  ([ip])`.
    let helo = if helo.is_empty() { "unknown" } else { &helo };
    let with = match (envelope.tls, envelope.authenticated) {
        (false, false) => "ESMTP",
        (true, false) => "ESMTPS",
        (false, true) => "ESMTPA",
        (true, true) => "ESMTPSA",
    };
    format!(
        "Received: from {helo} ([{}]) by {hostname} (Herald) with {with} id {}; {}",
        envelope.client.ip(),
        &dedup[..16],
        now.format("%a, %d %b %Y %H:%M:%S +0000")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acceptor(mode: OmeroMail) -> (Acceptor, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("herald.db")).unwrap();
        let (writer, _thread) = Writer::spawn(store, |_| true, |_| {}).unwrap();
        let config = SmtpListenerConfig {
            omero_mail: mode,
            ..SmtpListenerConfig::default()
        };
        let directory: DirectorySource = Arc::new(|| {
            Arc::new(Directory::parse("users: []\n", std::path::Path::new("d.yaml")).unwrap())
        });
        (Acceptor::new(&config, writer, directory), dir)
    }

    fn envelope(rcpt: &str) -> Envelope {
        Envelope {
            helo: "omero.example.org".into(),
            client: "127.0.0.1:5000".parse().unwrap(),
            mail_from: "omero@example.org".into(),
            recipients: vec![rcpt.into()],
            tls: false,
            authenticated: false,
        }
    }

    #[test]
    fn other_mail_is_mail_received_as_the_sdk_reads_it() {
        let (acceptor, _dir) = acceptor(OmeroMail::Relay);
        let data =
            b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <a@b>\r\n\r\nHi\r\nthere\r\n";
        let (events, inbound) = acceptor.prepare(&envelope("x@example.org"), data, Utc::now());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, types::MAIL_RECEIVED);
        assert!(inbound.relay);
        let mail = herald_sdk::mail::MailReceived::parse(&events[0].data_json.to_string()).unwrap();
        assert_eq!(mail.subject, "Gr\u{fc}\u{df}e");
        assert_eq!(mail.text, "Hi\nthere\n");
        assert_eq!(mail.message_id.as_deref(), Some("a@b"));
        assert_eq!(mail.envelope.rcpt_to, ["x@example.org"]);
        assert_eq!(mail.size, data.len() as u64);
        assert_eq!(events[0].id, format!("mail-{}", &inbound.dedup[..32]));
    }

    #[test]
    fn copies_of_a_stock_mail_share_one_event_and_modes_decide_the_relay() {
        let up =
            b"Subject: [OMERO] Server started\r\n\r\nAutomated email sent by the OMERO server.\r\n";
        let (relay, _a) = acceptor(OmeroMail::Relay);
        let now = Utc::now();
        let (first, inbound) = relay.prepare(&envelope("a@example.org"), up, now);
        let (second, _) = relay.prepare(
            &envelope("b@example.org"),
            up,
            now + chrono::Duration::seconds(5),
        );
        assert_eq!(first[0].kind, types::SERVER_UP);
        assert_eq!(first[0].id, second[0].id);
        assert!(inbound.relay);
        assert_eq!(first[0].data_json["mail"]["skip_stock_rules"], true);
        let (replace, _b) = acceptor(OmeroMail::Replace);
        let (events, inbound) = replace.prepare(&envelope("a@example.org"), up, now);
        assert!(!inbound.relay);
        assert_eq!(events[0].data_json["mail"]["skip_stock_rules"], false);
        let comment = b"Subject: [OMERO] INSERT CommentAnnotation notification\r\n\r\n\
            Modified objects:\r\nclass ome.model.annotations.CommentAnnotation:9 - INSERT\r\n";
        let (events, inbound) = replace.prepare(&envelope("a@example.org"), comment, now);
        assert_eq!(events[0].id, "omero.comment.added/9");
        assert!(inbound.relay, "a comment's mail cannot be replaced");
    }

    #[test]
    fn normalising_makes_every_line_end_crlf_and_drops_nul() {
        assert_eq!(normalise(b"a\nb\r\nc\rd\0e\r\n"), b"a\r\nb\r\nc\r\nde\r\n");
        assert_eq!(normalise(b"\r\r\n\n"), b"\r\n\r\n\r\n");
    }

    #[test]
    fn the_normalised_length_is_what_normalising_makes() {
        for data in [
            &b"a\nb\r\nc\rd\0e\r\n"[..],
            b"\n\n\n\n",
            b"\r\r\n\n",
            b"",
            b"plain",
        ] {
            assert_eq!(normalised_len(data), normalise(data).len(), "{data:?}");
        }
        assert_eq!(
            normalised_len(&[b'\n'; 1000]),
            2000,
            "bare line ends double"
        );
    }

    #[test]
    fn the_dedup_key_follows_the_message_id_and_the_envelope() {
        let env = |rcpt: &str| Envelope {
            helo: "omero".into(),
            client: "127.0.0.1:5000".parse().unwrap(),
            mail_from: "omero@example.org".into(),
            recipients: vec![rcpt.into()],
            tls: false,
            authenticated: false,
        };
        let a = dedup_key(&env("a@example.org"), Some("<1@x>"), b"one");
        assert_eq!(a, dedup_key(&env("A@example.org"), Some("<1@x>"), b"two"));
        assert_ne!(a, dedup_key(&env("b@example.org"), Some("<1@x>"), b"one"));
        assert_ne!(
            dedup_key(&env("a@example.org"), None, b"one"),
            dedup_key(&env("a@example.org"), None, b"two")
        );
    }

    #[test]
    fn the_received_header_keeps_hostile_helo_names_out() {
        let env = Envelope {
            helo: "evil\r\nBcc: x (y) [z]".into(),
            client: "127.0.0.1:5000".parse().unwrap(),
            mail_from: String::new(),
            recipients: vec![],
            tls: true,
            authenticated: false,
        };
        let now = DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
            .unwrap()
            .to_utc();
        let header = received_header("relay.example.org", &env, &"ab".repeat(32), now);
        assert_eq!(
            header,
            "Received: from evilBcc:xyz ([127.0.0.1]) by relay.example.org (Herald) with ESMTPS \
             id abababababababab; Sat, 28 Nov 2026 10:00:00 +0000"
        );
        let blank = Envelope {
            helo: "\u{e9}( )\t".into(),
            ..env
        };
        let header = received_header("relay.example.org", &blank, &"ab".repeat(32), now);
        assert!(
            header.starts_with("Received: from unknown ([127.0.0.1]) by"),
            "{header}"
        );
    }
}
