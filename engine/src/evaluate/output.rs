//! Checks a rule's output against the caps and expands its recipients into one mail per address.

use std::collections::HashSet;

use lettre::message::Mailbox;

use super::bindings::herald::rule::types as wit;
use super::failure::Failure;
use crate::config::Limits;
use crate::directory::{self, Directory};
use crate::mail::Mail;

/// A recipient that gets nothing, and why. Reported, never silently dropped.
#[derive(Clone, Debug, PartialEq)]
pub struct Skipped {
    pub recipient: String,
    pub kind: SkipKind,
    pub reason: String,
}

/// Why a recipient was skipped, for counting (`herald email` reports users without email).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipKind {
    /// A directory user with no email, or one that is not a valid address.
    NoEmail,
    /// A user or group that the directory does not have.
    Unknown,
    /// Already addressed by this rule for this event.
    Duplicate,
    /// A message with no recipients at all.
    NoRecipients,
}

/// A rule's output, checked and expanded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resolved {
    pub mails: Vec<Mail>,
    pub skipped: Vec<Skipped>,
}

/// Headers a rule may set besides `X-*`; the engine owns every other one.
const ALLOWED_HEADERS: &[&str] = &[
    "auto-submitted",
    "precedence",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "in-reply-to",
    "references",
    "keywords",
    "comments",
    "importance",
    "priority",
    "sensitivity",
];

/// RFC 5322's limit on a line, which a header value must fit in.
const MAX_HEADER_LINE: usize = 998;

/// Check the output against `limits` and expand it through the directory.
pub fn resolve(
    messages: Vec<wit::Message>,
    dir: &Directory,
    limits: &Limits,
) -> Result<Resolved, Failure> {
    check_caps(&messages, limits)?;
    let mut resolved = Resolved::default();
    let mut seen = HashSet::new();
    for (index, message) in messages.into_iter().enumerate() {
        check_headers(index, &message)?;
        expand_message(index, message, dir, &mut seen, &mut resolved)?;
    }
    if resolved.mails.len() > limits.max_recipients as usize {
        return Err(Failure::OutputCap {
            message: format!(
                "{} recipients after expansion; the cap is {} (limits.max_recipients)",
                resolved.mails.len(),
                limits.max_recipients
            ),
        });
    }
    Ok(resolved)
}

fn check_caps(messages: &[wit::Message], limits: &Limits) -> Result<(), Failure> {
    if messages.len() > limits.max_messages as usize {
        return Err(Failure::OutputCap {
            message: format!(
                "returned {} messages; the cap is {} (limits.max_messages)",
                messages.len(),
                limits.max_messages
            ),
        });
    }
    let bytes: usize = messages.iter().map(message_bytes).sum();
    if bytes as u64 > limits.max_output_bytes {
        return Err(Failure::OutputCap {
            message: format!(
                "returned {bytes} bytes of messages; the cap is {} (limits.max_output)",
                limits.max_output_bytes
            ),
        });
    }
    Ok(())
}

fn message_bytes(m: &wit::Message) -> usize {
    let recipients: usize = m.to.iter().chain(&m.cc).map(recipient_bytes).sum();
    let headers: usize = m.headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    let reply_to: usize = m.reply_to.iter().map(String::len).sum();
    m.subject.len()
        + m.text.len()
        + m.html.as_ref().map_or(0, String::len)
        + headers
        + reply_to
        + recipients
}

fn recipient_bytes(r: &wit::Recipient) -> usize {
    use wit::Recipient as R;
    match r {
        R::Address(s) | R::UserName(s) | R::Group(s) | R::GroupOwners(s) => s.len(),
        R::UserId(_) | R::Admins | R::ActiveUsers => 8,
    }
}

fn check_headers(index: usize, m: &wit::Message) -> Result<(), Failure> {
    let bad = |message: String| Failure::InvalidHeader {
        message: format!("message {index}: {message}"),
    };
    if has_line_break(&m.subject) {
        return Err(bad(format!(
            "the subject {:?} contains CR, LF or NUL (header injection)",
            m.subject
        )));
    }
    for header in &m.headers {
        check_header_name(&header.name).map_err(bad)?;
        if has_line_break(&header.value) {
            return Err(bad(format!(
                "header {} value {:?} contains CR, LF or NUL (header injection)",
                header.name, header.value
            )));
        }
        if header.name.len() + 2 + header.value.len() > MAX_HEADER_LINE {
            return Err(bad(format!(
                "header {} is longer than {MAX_HEADER_LINE} bytes",
                header.name
            )));
        }
    }
    Ok(())
}

fn has_line_break(text: &str) -> bool {
    text.contains(['\r', '\n', '\0'])
}

fn check_header_name(name: &str) -> Result<(), String> {
    let printable = !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
    if !printable {
        return Err(format!("{name:?} is not a valid header name"));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("x-") || ALLOWED_HEADERS.contains(&lower.as_str()) {
        return Ok(());
    }
    Err(format!(
        "header {name} is set by the engine, not by rules (use an X- header, or one of: {})",
        ALLOWED_HEADERS.join(", ")
    ))
}

/// A deliverable address: what goes in the header and in RCPT TO.
struct Target {
    header: String,
    envelope: String,
}

fn expand_message(
    index: usize,
    message: wit::Message,
    dir: &Directory,
    seen: &mut HashSet<String>,
    out: &mut Resolved,
) -> Result<(), Failure> {
    let to = expand_all(index, "to", &message.to, dir, &mut out.skipped)?;
    let cc = expand_all(index, "cc", &message.cc, dir, &mut out.skipped)?;
    let reply_to = parse_reply_to(index, &message.reply_to)?;
    if message.to.is_empty() && message.cc.is_empty() {
        out.skipped.push(Skipped {
            recipient: format!("message {index}"),
            kind: SkipKind::NoRecipients,
            reason: "the rule gave it no recipients".into(),
        });
    }
    let together = matches!(message.addressing, wit::Addressing::Together);
    let headers: Vec<(String, String)> = message
        .headers
        .into_iter()
        .map(|h| (h.name, h.value))
        .collect();
    for target in dedup(to.iter().chain(&cc)) {
        if !seen.insert(target.envelope.clone()) {
            out.skipped.push(Skipped {
                recipient: target.envelope.clone(),
                kind: SkipKind::Duplicate,
                reason: "already gets a message from this rule for this event".into(),
            });
            continue;
        }
        let (to_hdr, cc_hdr) = if together {
            (headers_of(&to), headers_of(&cc))
        } else {
            (vec![target.header.clone()], Vec::new())
        };
        out.mails.push(Mail {
            recipient: target.envelope.clone(),
            to: to_hdr,
            cc: cc_hdr,
            reply_to: reply_to.clone(),
            subject: message.subject.clone(),
            text: message.text.clone(),
            html: message.html.clone(),
            headers: headers.clone(),
        });
    }
    Ok(())
}

fn headers_of(targets: &[Target]) -> Vec<String> {
    dedup(targets.iter()).map(|t| t.header.clone()).collect()
}

fn dedup<'a>(targets: impl Iterator<Item = &'a Target>) -> impl Iterator<Item = &'a Target> {
    let mut seen = HashSet::new();
    targets.filter(move |t| seen.insert(t.envelope.clone()))
}

fn parse_reply_to(index: usize, addresses: &[String]) -> Result<Vec<String>, Failure> {
    addresses
        .iter()
        .enumerate()
        .map(|(i, a)| parse_mailbox(a, &format!("message {index} reply-to[{i}]")).map(|t| t.header))
        .collect()
}

fn parse_mailbox(text: &str, place: &str) -> Result<Target, Failure> {
    match text.trim().parse::<Mailbox>() {
        Ok(mailbox) => Ok(Target {
            header: mailbox.to_string(),
            envelope: mailbox.email.to_string().to_lowercase(),
        }),
        Err(err) => Err(Failure::InvalidAddress {
            message: format!("{place}: {text:?} is not a valid email address ({err})"),
        }),
    }
}

fn expand_all(
    index: usize,
    field: &str,
    recipients: &[wit::Recipient],
    dir: &Directory,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<Target>, Failure> {
    let mut targets = Vec::new();
    for (i, recipient) in recipients.iter().enumerate() {
        let place = format!("message {index} {field}[{i}]");
        targets.extend(expand(recipient, &place, dir, skipped)?);
    }
    Ok(targets)
}

fn expand(
    recipient: &wit::Recipient,
    place: &str,
    dir: &Directory,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<Target>, Failure> {
    use wit::Recipient as R;
    let users: Vec<&directory::User> = match recipient {
        R::Address(text) => return parse_mailbox(text, place).map(|t| vec![t]),
        R::UserId(id) => found(dir.user_by_id(*id), || format!("user id {id}"), skipped),
        R::UserName(name) => found(dir.user_by_name(name), || format!("user {name}"), skipped),
        R::Group(name) => group(dir, name, false, skipped),
        R::GroupOwners(name) => group(dir, name, true, skipped),
        R::Admins => dir.admins(),
        R::ActiveUsers => dir.active_users(),
    };
    Ok(users
        .into_iter()
        .filter_map(|u| user_target(u, skipped))
        .collect())
}

fn found<'a>(
    user: Option<&'a directory::User>,
    who: impl FnOnce() -> String,
    skipped: &mut Vec<Skipped>,
) -> Vec<&'a directory::User> {
    if user.is_none() {
        skipped.push(Skipped {
            recipient: who(),
            kind: SkipKind::Unknown,
            reason: "no such user in the directory".into(),
        });
    }
    user.into_iter().collect()
}

fn group<'a>(
    dir: &'a Directory,
    name: &str,
    owners_only: bool,
    skipped: &mut Vec<Skipped>,
) -> Vec<&'a directory::User> {
    if dir.group_by_name(name).is_none() {
        skipped.push(Skipped {
            recipient: format!("group {name}"),
            kind: SkipKind::Unknown,
            reason: "no such group in the directory".into(),
        });
    }
    let members = dir.members(name).into_iter();
    members
        .filter(|(_, owner)| *owner || !owners_only)
        .map(|(u, _)| u)
        .collect()
}

fn user_target(user: &directory::User, skipped: &mut Vec<Skipped>) -> Option<Target> {
    match directory::valid_email(user) {
        Some(address) => Some(Target {
            header: address.to_string(),
            envelope: address.to_string().to_lowercase(),
        }),
        None => {
            let reason = match user.email().map(str::trim) {
                None | Some("") => "has no email address".to_owned(),
                Some(bad) => format!("email {bad:?} is not a valid address"),
            };
            skipped.push(Skipped {
                recipient: format!("user {} (id {})", user.name(), user.id),
                kind: SkipKind::NoEmail,
                reason,
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn dir() -> Directory {
        let text = include_str!("../../../etc/directory.yaml");
        Directory::parse(text, Path::new("etc/directory.yaml")).unwrap()
    }

    fn to(address: &str) -> wit::Message {
        wit::Message {
            to: vec![wit::Recipient::Address(address.to_owned())],
            cc: Vec::new(),
            reply_to: Vec::new(),
            subject: "subject".to_owned(),
            text: "body\n".to_owned(),
            html: None,
            headers: Vec::new(),
            addressing: wit::Addressing::Individual,
        }
    }

    fn with_header(name: &str, value: &str) -> wit::Message {
        wit::Message {
            headers: vec![wit::Header {
                name: name.to_owned(),
                value: value.to_owned(),
            }],
            ..to("alice@example.org")
        }
    }

    fn run(messages: Vec<wit::Message>, limits: &Limits) -> Result<Resolved, Failure> {
        resolve(messages, &dir(), limits)
    }

    fn failure(messages: Vec<wit::Message>, limits: &Limits) -> Failure {
        match run(messages, limits) {
            Err(failure) => failure,
            Ok(resolved) => panic!("expected a failure, got {resolved:?}"),
        }
    }

    #[test]
    fn crlf_or_nul_in_a_custom_header_or_the_subject_is_header_injection() {
        let limits = Limits::default();
        for value in ["a\r\nBcc: victim@example.org", "a\nb", "a\rb", "a\0b"] {
            let failed = failure(vec![with_header("X-Tag", value)], &limits);
            assert_eq!(failed.code(), "invalid-header", "{value:?}: {failed}");
            assert!(failed.to_string().contains("X-Tag"), "{failed}");
            let subject = wit::Message {
                subject: value.to_owned(),
                ..to("alice@example.org")
            };
            assert_eq!(failure(vec![subject], &limits).code(), "invalid-header");
        }
        let long = "x".repeat(MAX_HEADER_LINE);
        let failed = failure(vec![with_header("X-Long", &long)], &limits);
        assert!(failed.to_string().contains("longer than 998"), "{failed}");
    }

    #[test]
    fn engine_owned_header_names_are_refused_and_x_headers_pass() {
        let limits = Limits::default();
        for name in [
            "Bcc",
            "bcc",
            "From",
            "To",
            "Cc",
            "Sender",
            "Reply-To",
            "Subject",
            "Date",
            "Message-ID",
            "MIME-Version",
            "Content-Type",
            "Content-Transfer-Encoding",
            "Return-Path",
            "DKIM-Signature",
        ] {
            let failed = failure(vec![with_header(name, "x")], &limits);
            assert_eq!(failed.code(), "invalid-header", "{name}: {failed}");
            assert!(failed.to_string().contains("set by the engine"), "{failed}");
        }
        for name in ["", "X Tag", "X-Tag:", "X-T\u{e9}g"] {
            let failed = failure(vec![with_header(name, "x")], &limits);
            assert!(
                failed.to_string().contains("not a valid header name"),
                "{failed}"
            );
        }
        for name in [
            "X-Herald-Rule",
            "x-lower",
            "List-Id",
            "Auto-Submitted",
            "Precedence",
        ] {
            let resolved = run(vec![with_header(name, "value")], &limits).unwrap();
            assert_eq!(
                resolved.mails[0].headers,
                [(name.to_owned(), "value".to_owned())]
            );
        }
    }

    #[test]
    fn max_output_cap_fails_the_invocation() {
        let limits = Limits {
            max_output_bytes: 100,
            ..Limits::default()
        };
        // subject (7) + address (17) + text: exactly at the cap passes, one byte more fails.
        let sized = |text_len: usize| wit::Message {
            text: "t".repeat(text_len),
            ..to("alice@example.org")
        };
        assert_eq!(run(vec![sized(76)], &limits).unwrap().mails.len(), 1);
        let failed = failure(vec![sized(77)], &limits);
        assert_eq!(failed.code(), "output-cap");
        assert!(
            failed.to_string().contains("101 bytes")
                && failed.to_string().contains("limits.max_output"),
            "{failed}"
        );
        // Headers, HTML and reply-to count too, and the total is over every message.
        let html = wit::Message {
            html: Some("h".repeat(60)),
            ..sized(0)
        };
        assert_eq!(
            failure(vec![html.clone(), html], &limits).code(),
            "output-cap"
        );
        let header = with_header("X-Pad", &"p".repeat(80));
        assert_eq!(failure(vec![header], &limits).code(), "output-cap");
    }

    #[test]
    fn max_messages_cap_fails_the_invocation() {
        let limits = Limits {
            max_messages: 2,
            ..Limits::default()
        };
        let three = vec![
            to("a@example.org"),
            to("b@example.org"),
            to("c@example.org"),
        ];
        let failed = failure(three, &limits);
        assert!(
            failed.to_string().contains("returned 3 messages"),
            "{failed}"
        );
    }

    #[test]
    fn max_recipients_counts_addresses_after_directory_expansion() {
        // Group `lab` has alice, bob and dave, all with email.
        let lab = wit::Message {
            to: vec![wit::Recipient::Group("lab".to_owned())],
            ..to("unused@example.org")
        };
        let two = Limits {
            max_recipients: 2,
            ..Limits::default()
        };
        let failed = failure(vec![lab.clone()], &two);
        assert_eq!(failed.code(), "output-cap");
        assert!(
            failed.to_string().contains("3 recipients after expansion"),
            "{failed}"
        );
        let three = Limits {
            max_recipients: 3,
            ..Limits::default()
        };
        let resolved = run(vec![lab], &three).unwrap();
        let got: Vec<&str> = resolved
            .mails
            .iter()
            .map(|m| m.recipient.as_str())
            .collect();
        assert_eq!(
            got,
            ["alice@example.org", "bob@example.org", "dave@example.org"]
        );
    }

    #[test]
    fn reply_to_must_hold_valid_addresses() {
        let limits = Limits::default();
        let bad = wit::Message {
            reply_to: vec!["help@example.org".to_owned(), "not an address".to_owned()],
            ..to("alice@example.org")
        };
        let failed = failure(vec![bad], &limits);
        assert_eq!(failed.code(), "invalid-address");
        assert!(
            failed
                .to_string()
                .contains("message 0 reply-to[1]: \"not an address\""),
            "{failed}"
        );
        let injected = wit::Message {
            reply_to: vec!["a@example.org\r\nBcc: victim@example.org".to_owned()],
            ..to("alice@example.org")
        };
        assert_eq!(failure(vec![injected], &limits).code(), "invalid-address");
        let good = wit::Message {
            reply_to: vec!["Help Desk <help@example.org>".to_owned()],
            ..to("alice@example.org")
        };
        let resolved = run(vec![good], &limits).unwrap();
        assert_eq!(resolved.mails[0].reply_to, ["Help Desk <help@example.org>"]);
    }

    #[test]
    fn the_same_recipient_twice_gets_one_mail_and_the_second_is_reported() {
        let limits = Limits::default();
        // alice three ways in one message: her address in another case, and her user name.
        let first = wit::Message {
            to: vec![
                wit::Recipient::Address("alice@example.org".to_owned()),
                wit::Recipient::UserName("alice".to_owned()),
            ],
            cc: vec![wit::Recipient::Address("Alice@Example.ORG".to_owned())],
            subject: "first".to_owned(),
            ..to("unused@example.org")
        };
        let second = wit::Message {
            subject: "second".to_owned(),
            ..to("ALICE@example.org")
        };
        let resolved = run(vec![first, second], &limits).unwrap();
        assert_eq!(resolved.mails.len(), 1, "{resolved:?}");
        assert_eq!(resolved.mails[0].subject, "first");
        assert_eq!(resolved.mails[0].recipient, "alice@example.org");
        let duplicates: Vec<&Skipped> = resolved
            .skipped
            .iter()
            .filter(|s| s.kind == SkipKind::Duplicate)
            .collect();
        assert_eq!(duplicates.len(), 1, "{resolved:?}");
        assert_eq!(duplicates[0].recipient, "alice@example.org");
    }

    #[test]
    fn together_addressing_gives_one_row_per_address_with_the_same_headers() {
        let message = wit::Message {
            to: vec![
                wit::Recipient::Address("a@example.org".to_owned()),
                wit::Recipient::Address("b@example.org".to_owned()),
            ],
            addressing: wit::Addressing::Together,
            ..to("unused@example.org")
        };
        let resolved = run(vec![message], &Limits::default()).unwrap();
        let rows: Vec<(&str, &[String])> = resolved
            .mails
            .iter()
            .map(|m| (m.recipient.as_str(), m.to.as_slice()))
            .collect();
        let both = ["a@example.org".to_owned(), "b@example.org".to_owned()];
        assert_eq!(
            rows,
            [("a@example.org", &both[..]), ("b@example.org", &both[..])]
        );
    }
}
