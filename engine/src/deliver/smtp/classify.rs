//! What one SMTP attempt came to: sent, transient, permanent, ambiguous or a configuration error.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::Duration;

use lettre::transport::smtp::Error as SmtpError;

/// The step of the SMTP session a result belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Name resolution and the TCP connect.
    Connect,
    /// The TLS handshake of implicit TLS (`tls: tls`).
    TlsHandshake,
    /// The server's greeting and the reply to EHLO.
    Greeting,
    /// STARTTLS and its handshake.
    StartTls,
    /// AUTH.
    Auth,
    /// MAIL FROM.
    MailFrom,
    /// RCPT TO.
    RcptTo,
    /// DATA (before the body).
    Data,
    /// Writing the message body.
    Body,
    /// The reply to the final `.`: from here the server may already have the message.
    FinalDot,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::TlsHandshake => "TLS handshake",
            Phase::Greeting => "greeting/EHLO",
            Phase::StartTls => "STARTTLS",
            Phase::Auth => "AUTH",
            Phase::MailFrom => "MAIL FROM",
            Phase::RcptTo => "RCPT TO",
            Phase::Data => "DATA",
            Phase::Body => "message body",
            Phase::FinalDot => "end of data (final `.`)",
        })
    }
}

/// Why a step failed.
#[derive(Debug)]
pub enum Cause {
    /// No reply within the phase's deadline.
    Timeout(Duration),
    /// An error from the SMTP client (a reply code, a dropped connection, TLS).
    Smtp(SmtpError),
    /// An I/O error of our own socket (connect, implicit TLS handshake).
    Io(io::Error),
    /// The server and the config cannot work together.
    Config(String),
}

/// A failed step.
#[derive(Debug)]
pub struct Failure {
    pub phase: Phase,
    pub cause: Cause,
}

/// The class of an attempt, as recorded in `attempts.outcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The server accepted the message (2xx after the final `.`).
    Sent,
    /// Try again later: 4xx, refused, reset, timeouts, TLS failures.
    Transient,
    /// The server refused for good (5xx).
    Permanent,
    /// The connection was lost after the final `.`: the message may have been delivered.
    Ambiguous,
    /// The server and the config do not fit: fix the config.
    Config,
}

impl Class {
    /// `sent`, `transient`, `permanent`, `ambiguous` or `config`.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Sent => "sent",
            Class::Transient => "transient",
            Class::Permanent => "permanent",
            Class::Ambiguous => "ambiguous",
            Class::Config => "config",
        }
    }
}

/// One classified result: class, SMTP code if any, and a plain-language text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub class: Class,
    pub code: Option<u16>,
    /// The server's reply for `Sent`; otherwise the step, the reason and what to do.
    pub text: String,
    /// The failure came before MAIL FROM (connect, TLS, greeting, AUTH): it is about the
    /// server or the config, not this message, so even a 5xx must not make it a dead letter.
    pub before_message: bool,
}

impl Report {
    /// A failure with no SMTP code, about this message (not before it).
    pub fn failed(class: Class, text: String) -> Report {
        Report {
            class,
            code: None,
            text,
            before_message: false,
        }
    }

    /// The report of an accepted message.
    pub fn sent(code: u16, reply: String) -> Report {
        Report {
            class: Class::Sent,
            before_message: false,
            code: Some(code),
            text: reply,
        }
    }
}

/// Classify a failed step.
pub fn classify(failure: &Failure) -> Report {
    let phase = failure.phase;
    let (class, code, reason) = match &failure.cause {
        Cause::Timeout(limit) => timeout(phase, *limit),
        Cause::Config(reason) => (Class::Config, None, reason.clone()),
        Cause::Io(err) => (Class::Transient, None, io_reason(phase, err)),
        Cause::Smtp(err) => smtp_error(phase, err),
    };
    Report {
        class,
        code,
        text: format!("{phase}: {reason}"),
        before_message: matches!(
            phase,
            Phase::Connect | Phase::TlsHandshake | Phase::Greeting | Phase::StartTls | Phase::Auth
        ),
    }
}

fn timeout(phase: Phase, limit: Duration) -> (Class, Option<u16>, String) {
    let secs = humantime::format_duration(limit);
    if phase == Phase::FinalDot {
        let reason = format!(
            "no reply to the final `.` within {secs}; the server may have the message, so it is \
             retried with the same Message-ID (raise data_timeout if the server is slow)"
        );
        return (Class::Ambiguous, None, reason);
    }
    let key = if phase == Phase::Connect {
        "connect_timeout"
    } else {
        "command_timeout"
    };
    let reason = format!("the server did not answer within {secs} ({key}); will retry");
    (Class::Transient, None, reason)
}

fn smtp_error(phase: Phase, err: &SmtpError) -> (Class, Option<u16>, String) {
    if let Some(code) = err.status() {
        let code = u16::from(code);
        let text = source_text(err);
        let class = if err.is_permanent() {
            Class::Permanent
        } else {
            Class::Transient
        };
        let reason = match (phase, class) {
            (Phase::Auth, Class::Permanent) => format!(
                "the server refused the login: {code} {text} (check mail.smtp.username and the password)"
            ),
            _ => format!("the server replied {code} {text}"),
        };
        return (class, Some(code), reason);
    }
    if phase == Phase::FinalDot {
        let reason = format!(
            "the connection was lost after the final `.` ({}); the server may have the message, \
             so it is retried with the same Message-ID",
            chain(err)
        );
        return (Class::Ambiguous, None, reason);
    }
    if let Some(tls) = find_rustls(err) {
        return (Class::Transient, None, tls_reason(tls));
    }
    if err.is_tls() {
        return (
            Class::Transient,
            None,
            format!("TLS failed: {}", chain(err)),
        );
    }
    let reason = format!(
        "the connection failed ({}); will retry on a new connection",
        chain(err)
    );
    (Class::Transient, None, reason)
}

fn io_reason(phase: Phase, err: &io::Error) -> String {
    if let Some(tls) = rustls_in_io(err) {
        return tls_reason(tls);
    }
    match err.kind() {
        io::ErrorKind::ConnectionRefused => {
            "connection refused: nothing listens there (check mail.smtp.host and port, and that \
             the SMTP server runs); will retry"
                .to_owned()
        }
        io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof => {
            format!("the server closed the connection during {phase} ({err}); will retry")
        }
        _ => format!("{err}; will retry"),
    }
}

fn tls_reason(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(why) => format!(
            "the server's TLS certificate is not trusted ({why:?}); if the relay uses a private CA, \
             set mail.smtp.ca_file to its PEM file; will retry"
        ),
        other => format!("the TLS handshake failed ({other}); will retry"),
    }
}

/// The rustls error somewhere in `err`'s chain (tokio-rustls wraps it in an `io::Error`).
fn find_rustls<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = err.downcast_ref::<io::Error>().and_then(rustls_in_io) {
            return Some(tls);
        }
        next = err.source();
    }
    None
}

fn rustls_in_io(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

/// The server's text of a reply error (lettre keeps it as the error's source).
fn source_text(err: &SmtpError) -> String {
    err.source().map_or_else(String::new, |s| s.to_string())
}

/// An error and its sources, `a: b: c`.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(err) = next {
        let part = err.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        next = err.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(phase: Phase, cause: Cause) -> Report {
        classify(&Failure { phase, cause })
    }

    #[test]
    fn timeouts_are_transient_except_after_the_final_dot() {
        let limit = Duration::from_secs(2);
        let report = class(Phase::Greeting, Cause::Timeout(limit));
        assert_eq!((report.class, report.code), (Class::Transient, None));
        assert!(
            report.text.contains("within 2s (command_timeout)"),
            "{}",
            report.text
        );
        let report = class(Phase::FinalDot, Cause::Timeout(limit));
        assert_eq!(report.class, Class::Ambiguous);
        assert!(report.text.contains("same Message-ID"), "{}", report.text);
    }

    #[test]
    fn refused_and_reset_are_transient_with_a_plain_reason() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let report = class(Phase::Connect, Cause::Io(refused));
        assert_eq!(report.class, Class::Transient);
        assert!(
            report.text.starts_with("connect: connection refused"),
            "{}",
            report.text
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        let report = class(Phase::Greeting, Cause::Io(reset));
        assert!(
            report.text.contains("closed the connection"),
            "{}",
            report.text
        );
    }

    #[test]
    fn untrusted_certificate_is_transient_and_names_ca_file() {
        let err = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, err);
        let report = class(Phase::TlsHandshake, Cause::Io(wrapped));
        assert_eq!(report.class, Class::Transient);
        assert!(report.text.contains("not trusted") && report.text.contains("ca_file"));
    }

    #[test]
    fn config_problems_are_their_own_class() {
        let report = class(Phase::StartTls, Cause::Config("no STARTTLS".into()));
        assert_eq!(report.class, Class::Config);
        assert_eq!(Class::Config.as_str(), "config");
    }
}
