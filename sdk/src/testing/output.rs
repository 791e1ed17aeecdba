//! The engine's checks on a rule's answer, for native tests: caps, header injection, addresses.

use crate::{Message, Recipient};

/// `limits.max_messages` by default.
pub const MAX_MESSAGES: usize = 100;
/// `limits.max_output` by default: subjects, bodies, headers and recipients together.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// RFC 5322's limit on a line, which a header must fit in.
const MAX_HEADER_LINE: usize = 998;

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

/// Refuse what the engine refuses, with its wording: too many messages or bytes, a
/// subject or header with a line break, a header the engine owns, an invalid address.
///
/// ```
/// use herald_sdk::{Message, Recipient};
/// let ok = Message::new("Hello", "Hi\n").to(Recipient::Address("alice@example.org".into()));
/// assert!(herald_sdk::testing::check(&[ok]).is_ok());
/// let bad = Message::new("Hello", "Hi\n").to(Recipient::Address("alice at example".into()));
/// let err = herald_sdk::testing::check(&[bad]).unwrap_err();
/// assert!(err.contains("is not a valid email address"), "{err}");
/// ```
pub fn check(messages: &[Message]) -> Result<(), String> {
    if messages.len() > MAX_MESSAGES {
        return Err(format!(
            "returned {} messages; the cap is {MAX_MESSAGES} (limits.max_messages)",
            messages.len()
        ));
    }
    let bytes: usize = messages.iter().map(message_bytes).sum();
    if bytes > MAX_OUTPUT_BYTES {
        return Err(format!(
            "returned {bytes} bytes of messages; the cap is {MAX_OUTPUT_BYTES} (limits.max_output)"
        ));
    }
    for (index, message) in messages.iter().enumerate() {
        check_message(message).map_err(|err| format!("message {index}: {err}"))?;
    }
    Ok(())
}

fn check_message(m: &Message) -> Result<(), String> {
    if has_line_break(&m.subject) {
        return Err(format!(
            "the subject {:?} contains CR, LF or NUL (header injection)",
            m.subject
        ));
    }
    for header in &m.headers {
        check_header_name(&header.name)?;
        if has_line_break(&header.value) {
            return Err(format!(
                "header {} value {:?} contains CR, LF or NUL (header injection)",
                header.name, header.value
            ));
        }
        if header.name.len() + 2 + header.value.len() > MAX_HEADER_LINE {
            return Err(format!(
                "header {} is longer than {MAX_HEADER_LINE} bytes",
                header.name
            ));
        }
    }
    let literal = m.to.iter().chain(&m.cc).filter_map(|r| match r {
        Recipient::Address(text) => Some(text.as_str()),
        _ => None,
    });
    for address in literal.chain(m.reply_to.iter().map(String::as_str)) {
        if !valid_mailbox(address) {
            return Err(format!("{address:?} is not a valid email address"));
        }
    }
    Ok(())
}

fn message_bytes(m: &Message) -> usize {
    let recipient = |r: &Recipient| match r {
        Recipient::Address(s)
        | Recipient::UserName(s)
        | Recipient::Group(s)
        | Recipient::GroupOwners(s) => s.len(),
        Recipient::UserId(_) | Recipient::Admins | Recipient::ActiveUsers => 8,
    };
    let recipients: usize = m.to.iter().chain(&m.cc).map(recipient).sum();
    let headers: usize = m.headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    let reply_to: usize = m.reply_to.iter().map(String::len).sum();
    m.subject.len()
        + m.text.len()
        + m.html.as_ref().map_or(0, String::len)
        + headers
        + reply_to
        + recipients
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

/// `addr@example.org` or `Name <addr@example.org>`: a dot-atom local part and a domain of
/// letter-digit-hyphen labels (or an `[address literal]`), as the engine's parser takes.
fn valid_mailbox(text: &str) -> bool {
    let text = text.trim();
    let address = match (text.rfind('<'), text.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        _ => text,
    };
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    valid_local(local) && valid_domain(domain)
}

fn valid_local(local: &str) -> bool {
    const SPECIAL: &str = "!#$%&'*+-/=?^_`{|}~";
    let atom = |a: &str| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_alphanumeric() || SPECIAL.contains(c))
    };
    local.len() <= 64 && local.split('.').all(atom)
}

fn valid_domain(domain: &str) -> bool {
    if domain.starts_with('[') && domain.ends_with(']') {
        return domain.len() > 2;
    }
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    domain.len() <= 253 && domain.split('.').all(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_like_the_engine() {
        for good in [
            "alice@example.org",
            "Alice <alice@example.org>",
            "a.b+c@localhost",
            "x@[127.0.0.1]",
        ] {
            assert!(valid_mailbox(good), "{good}");
        }
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.org",
            "a..b@example.org",
            "a b@example.org",
            "alice@exa mple.org",
            "alice@-example.org",
            "alice@example..org",
        ] {
            assert!(!valid_mailbox(bad), "{bad}");
        }
    }

    #[test]
    fn injection_and_engine_headers_are_refused() {
        let base = || Message::new("s", "t\n").to(Recipient::Admins);
        assert!(check(&[base()]).is_ok());
        let err = check(&[Message::new("a\r\nBcc: x@y.z", "t")]).unwrap_err();
        assert!(err.contains("header injection"), "{err}");
        let err = check(&[base().header("From", "x@y.z")]).unwrap_err();
        assert!(err.contains("set by the engine"), "{err}");
        assert!(check(&[base().header("X-Lab", "ok")]).is_ok());
        let many: Vec<Message> = (0..=MAX_MESSAGES).map(|_| base()).collect();
        assert!(check(&many).unwrap_err().contains("limits.max_messages"));
    }
}
