//! One SMTP session: our own TCP_NODELAY socket, and a deadline on every phase.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Quit, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::net::TcpStream;

use super::capped::Capped;
use super::classify::{Cause, Failure, Phase};
use super::hold::Hold;
use super::tls::{SmtpsStream, Tls};
use crate::config::TlsMode;

/// The mechanisms Herald offers, in order of preference.
const MECHANISMS: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];
/// How long QUIT may take when a session is closed after its work.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything needed to open a session; the password is inside `credentials` and never shown.
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub hello: ClientId,
    pub mode: TlsMode,
    /// Present unless `mode` is `none`.
    pub tls: Option<Tls>,
    pub credentials: Option<Credentials>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("mode", &self.mode)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "[redacted]"),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("data_timeout", &self.data_timeout)
            .finish_non_exhaustive()
    }
}

/// An open, greeted (and, as configured, encrypted and authenticated) connection.
pub struct Session {
    conn: AsyncSmtpConnection,
    /// The server offers PIPELINING (RFC 2920): the envelope goes in one write.
    pipelining: bool,
    /// Shared with the stream: holds each final `.` until its gate opens.
    hold: Arc<Hold>,
}

/// One message: its envelope and its bytes.
pub struct Job {
    pub from: Address,
    pub to: Address,
    pub bytes: Vec<u8>,
}

/// SMTP commands written together, each with its own CRLF.
struct Pipelined<'a, const N: usize>([&'a (dyn fmt::Display + Sync); N]);

impl<const N: usize> fmt::Display for Pipelined<'_, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|command| command.fmt(f))
    }
}

/// An EHLO reply line that offers PIPELINING (keywords are case-insensitive).
fn is_pipelining(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .is_some_and(|keyword| keyword.eq_ignore_ascii_case("PIPELINING"))
}

/// Run `fut` with a deadline, naming the phase on failure.
async fn step<T>(
    phase: Phase,
    limit: Duration,
    fut: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, fut).await {
        Err(_) => Err(fail(phase, Cause::Timeout(limit))),
        Ok(Err(err)) => Err(fail(phase, Cause::Smtp(err))),
        Ok(Ok(value)) => Ok(value),
    }
}

fn fail(phase: Phase, cause: Cause) -> Failure {
    Failure { phase, cause }
}

impl Session {
    /// Connect, read the greeting, EHLO, STARTTLS and AUTH as configured.
    pub async fn open(s: &Settings) -> Result<Session, Failure> {
        let tcp = connect(s).await?;
        let greet = s.command_timeout;
        let hold = Hold::new();
        let conn = match (&s.mode, &s.tls) {
            (TlsMode::Tls, Some(tls)) => {
                let handshake = tls.connector.connect(tls.server_name.clone(), tcp);
                let stream = match tokio::time::timeout(greet, handshake).await {
                    Err(_) => return Err(fail(Phase::TlsHandshake, Cause::Timeout(greet))),
                    Ok(Err(err)) => return Err(fail(Phase::TlsHandshake, Cause::Io(err))),
                    Ok(Ok(stream)) => Capped::new(SmtpsStream(stream), &hold),
                };
                let hello = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &s.hello);
                step(Phase::Greeting, greet, hello).await?
            }
            // lettre wraps this stream in TLS after STARTTLS: cap its volume, not its lines.
            (TlsMode::Starttls, _) => {
                let stream = Capped::below_tls(tcp, &hold);
                let hello = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &s.hello);
                step(Phase::Greeting, greet, hello).await?
            }
            _ => {
                let stream = Capped::new(tcp, &hold);
                let hello = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &s.hello);
                step(Phase::Greeting, greet, hello).await?
            }
        };
        let mut session = Session {
            conn,
            pipelining: false,
            hold,
        };
        session.starttls(s).await?;
        session.pipelining = session.offers_pipelining(s).await?;
        session.auth(s).await?;
        Ok(session)
    }

    /// Whether the server offers PIPELINING. lettre keeps only the EHLO keywords it knows,
    /// so Herald asks once more (RFC 5321 allows a second EHLO; it resets nothing that
    /// matters before the first MAIL). A server that refuses it is simply not pipelined to.
    async fn offers_pipelining(&mut self, s: &Settings) -> Result<bool, Failure> {
        let ehlo = self.conn.command(Ehlo::new(s.hello.clone()));
        match tokio::time::timeout(s.command_timeout, ehlo).await {
            Err(_) => Err(fail(Phase::Greeting, Cause::Timeout(s.command_timeout))),
            Ok(Ok(reply)) => Ok(reply.message().any(is_pipelining)),
            Ok(Err(err)) if err.is_permanent() || err.is_transient() => Ok(false),
            Ok(Err(err)) => Err(fail(Phase::Greeting, Cause::Smtp(err))),
        }
    }

    async fn starttls(&mut self, s: &Settings) -> Result<(), Failure> {
        let (TlsMode::Starttls, Some(tls)) = (&s.mode, &s.tls) else {
            return Ok(());
        };
        if !self.conn.can_starttls() {
            let reason = format!(
                "tls is `starttls` but {}:{} does not offer STARTTLS, so the password and mail \
                 would go in clear; fix: use `tls: tls` if it is an SMTPS port (465), or ask for \
                 STARTTLS to be enabled",
                s.host, s.port
            );
            return Err(fail(Phase::StartTls, Cause::Config(reason)));
        }
        let upgrade = self.conn.starttls(tls.starttls.clone(), &s.hello);
        step(Phase::StartTls, s.command_timeout, upgrade).await
    }

    async fn auth(&mut self, s: &Settings) -> Result<(), Failure> {
        let Some(credentials) = &s.credentials else {
            return Ok(());
        };
        if self
            .conn
            .server_info()
            .get_auth_mechanism(&MECHANISMS)
            .is_none()
        {
            let reason = format!(
                "username is set but the server offers no AUTH mechanism Herald speaks (PLAIN, \
                 LOGIN); it says: {}. fix: servers often offer AUTH only after TLS, so set \
                 `tls: starttls` or `tls: tls`; or remove username if the relay needs no login",
                self.conn.server_info()
            );
            return Err(fail(Phase::Auth, Cause::Config(reason)));
        }
        let login = self.conn.auth(&MECHANISMS, credentials);
        step(Phase::Auth, s.command_timeout, login).await.map(drop)
    }

    /// Send one message over this session, its final `.` held until `gate` says yes (a no
    /// fails the send with nothing delivered). After any error the session must be dropped.
    pub async fn send(
        &mut self,
        s: &Settings,
        job: &Job,
        gate: impl Future<Output = bool>,
    ) -> Result<Response, Failure> {
        let limit = s.command_timeout;
        let mail = Mail::new(Some(job.from.clone()), self.mail_params(&job.bytes));
        let rcpt = Rcpt::new(job.to.clone(), vec![]);
        if self.pipelining {
            // One write, then the three replies in order (RFC 2920). Any refusal fails the
            // send before a byte of the body is written, and the session is dropped, so
            // nothing is delivered.
            let envelope = Pipelined([&mail, &rcpt, &Data]);
            step(Phase::MailFrom, limit, self.conn.command(envelope)).await?;
            step(Phase::RcptTo, limit, self.conn.read_response()).await?;
            step(Phase::Data, limit, self.conn.read_response()).await?;
        } else {
            step(Phase::MailFrom, limit, self.conn.command(mail)).await?;
            step(Phase::RcptTo, limit, self.conn.command(rcpt)).await?;
            step(Phase::Data, limit, self.conn.command(Data)).await?;
        }
        let bytes = crate::deliver::render::smtp_data(&job.bytes);
        self.body(s, bytes, gate).await
    }

    /// Write the body and, once `gate` says yes, the final `.`, and read its reply. Whether
    /// the `.` reached the kernel decides whether a failure is ambiguous.
    async fn body(
        &mut self,
        s: &Settings,
        bytes: &[u8],
        gate: impl Future<Output = bool>,
    ) -> Result<Response, Failure> {
        let hold = self.hold.clone();
        hold.begin(None);
        let parts = Written {
            part: Some(bytes),
            hold: &hold,
        };
        let body = step(Phase::Body, s.data_timeout, self.conn.message_iter(parts));
        let decided = async {
            let release = gate.await;
            hold.decide(release);
        };
        let (result, ()) = tokio::join!(body, decided);
        let dot_sent = hold.end();
        result.map_err(|mut failure| {
            if dot_sent {
                failure.phase = Phase::FinalDot;
            }
            failure
        })
    }

    fn mail_params(&self, bytes: &[u8]) -> Vec<MailParameter> {
        let eight_bit = !bytes.is_ascii()
            && self
                .conn
                .server_info()
                .supports_feature(Extension::EightBitMime);
        if eight_bit {
            vec![MailParameter::Body(MailBodyParameter::EightBitMime)]
        } else {
            vec![]
        }
    }

    /// Say QUIT, briefly; the connection closes either way.
    /// Whether the server still answers (NOOP within `command_timeout`): a session kept
    /// between rounds is checked so before it is used again.
    pub async fn alive(&mut self, s: &Settings) -> bool {
        let noop = self.conn.test_connected();
        tokio::time::timeout(s.command_timeout, noop)
            .await
            .unwrap_or(false)
    }

    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(QUIT_TIMEOUT, self.conn.command(Quit)).await;
    }
}

/// Yields the body once, then tells the hold that all of it was written (lettre writes each
/// part before asking for the next, and the final `.` after the last).
struct Written<'a> {
    part: Option<&'a [u8]>,
    hold: &'a Hold,
}

impl<'a> Iterator for Written<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let part = self.part.take();
        if part.is_none() {
            self.hold.body_written();
        }
        part
    }
}

/// Resolve and connect within `connect_timeout`, trying each address; TCP_NODELAY on.
async fn connect(s: &Settings) -> Result<TcpStream, Failure> {
    let limit = s.connect_timeout;
    let attempt = async {
        let mut last = None;
        for addr in tokio::net::lookup_host((s.host.as_str(), s.port)).await? {
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    tcp.set_nodelay(true)?;
                    return Ok(tcp);
                }
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} has no address", s.host),
            )
        }))
    };
    match tokio::time::timeout(limit, attempt).await {
        Err(_) => Err(fail(Phase::Connect, Cause::Timeout(limit))),
        Ok(Err(err)) => Err(fail(Phase::Connect, Cause::Io(err))),
        Ok(Ok(tcp)) => Ok(tcp),
    }
}
