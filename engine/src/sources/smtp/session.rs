//! One SMTP session: commands parsed by smtp-proto, DATA under a size cap and deadlines, STARTTLS, AUTH.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use smtp_proto::request::receiver::{DataReceiver, RequestReceiver};
use smtp_proto::{
    AUTH_LOGIN, AUTH_PLAIN, EXT_8BIT_MIME, EXT_AUTH, EXT_ENHANCED_STATUS_CODES, EXT_PIPELINING,
    EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS, EhloResponse, Error as ProtoError, Request, Response,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::Shared;
use super::accept::Envelope;

/// Recipients per message at most (RFC 5321 asks servers to take at least 100).
const MAX_RECIPIENTS: usize = 100;
/// Longest address taken (RFC 5321: 64 + 1 + 255).
const MAX_ADDRESS: usize = 320;
/// Bad commands in one session before it is closed.
const MAX_ERRORS: u32 = 10;
/// Commands that move no mail (NOOP, RSET, VRFY, HELP, HELO, EHLO) since the last accepted
/// message before the session is closed, so a client cannot hold its slot forever by sending
/// one every few minutes (Postfix's `smtpd_junk_command_limit` is also 100).
const MAX_JUNK: u32 = 100;
/// The pause before refusing a login, which slows password guessing (Postfix sleeps 1 s on
/// errors too).
const LOGIN_REFUSED_PAUSE: Duration = Duration::from_secs(1);
/// How long a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(30);
/// How long the last reply and the close may take: a client that stops reading (over TLS the
/// close must send data too) must not keep its connection slot.
const CLOSING: Duration = Duration::from_secs(5);

/// The connection: plain, or TLS after STARTTLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Only while the handshake runs.
    Gone,
}

/// Why a session ends early.
#[derive(Debug)]
enum Cut {
    Closed,
    Timeout,
    Io(std::io::Error),
}

/// One client's session state.
struct Session<'a> {
    shared: &'a Shared,
    stream: Stream,
    peer: SocketAddr,
    input: Vec<u8>,
    out: Vec<u8>,
    requests: RequestReceiver,
    helo: Option<String>,
    mail_from: Option<String>,
    recipients: Vec<String>,
    errors: u32,
    /// Commands that moved no mail since the last accepted message.
    junk: u32,
    tls: bool,
    /// The user who logged in (AUTH), if any.
    user: Option<String>,
}

/// Serve one client until it quits, breaks a limit or a deadline, or the connection drops.
pub(super) async fn run(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let mut session = Session {
        shared,
        stream: Stream::Plain(stream),
        peer,
        input: Vec::new(),
        out: Vec::new(),
        requests: RequestReceiver::default(),
        helo: None,
        mail_from: None,
        recipients: Vec::new(),
        errors: 0,
        junk: 0,
        tls: false,
        user: None,
    };
    match session.serve().await {
        Ok(()) | Err(Cut::Closed) => {}
        Err(Cut::Timeout) => {
            tracing::info!(client = %peer, "SMTP client too slow: cut off");
            crate::metrics::smtp("timeout");
            session.reply(421, [4, 4, 2], "Timeout, closing connection");
            let _ = tokio::time::timeout(CLOSING, session.flush()).await;
        }
        Err(Cut::Io(err)) => tracing::debug!(client = %peer, %err, "SMTP connection lost"),
    }
    let _ = tokio::time::timeout(CLOSING, session.stream.shutdown()).await;
}

impl Session<'_> {
    async fn serve(&mut self) -> Result<(), Cut> {
        let greeting = format!("{} ESMTP Herald", self.shared.config.hostname);
        self.out
            .extend_from_slice(format!("220 {greeting}\r\n").as_bytes());
        loop {
            let deadline = Instant::now() + self.shared.config.command_timeout;
            let request = self.next_request(deadline).await?;
            let go_on = match request {
                Ok(request) => self.handle(request).await?,
                Err(err) => self.refuse(&err),
            };
            if !go_on {
                self.flush().await?;
                return Ok(());
            }
        }
    }

    /// The next command; replies queued so far are flushed before waiting (PIPELINING).
    async fn next_request(
        &mut self,
        deadline: Instant,
    ) -> Result<Result<Request<String>, ProtoError>, Cut> {
        loop {
            let mut bytes = self.input.iter();
            let parsed = self.requests.ingest(&mut bytes).map(Request::into_owned);
            let consumed = self.input.len() - bytes.as_slice().len();
            self.input.drain(..consumed);
            match parsed {
                Err(ProtoError::NeedsMoreData { .. }) => {
                    self.flush().await?;
                    self.fill(deadline).await?;
                }
                other => return Ok(other),
            }
        }
    }

    /// Read more input, by `deadline`.
    async fn fill(&mut self, deadline: Instant) -> Result<(), Cut> {
        let mut chunk = [0u8; 16 * 1024];
        let read = timeout_at(deadline, self.stream.read(&mut chunk))
            .await
            .map_err(|_| Cut::Timeout)?
            .map_err(Cut::Io)?;
        if read == 0 {
            return Err(Cut::Closed);
        }
        self.input.extend_from_slice(&chunk[..read]);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Cut> {
        if self.out.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.shared.config.command_timeout;
        let out = std::mem::take(&mut self.out);
        timeout_at(deadline, self.stream.write_all(&out))
            .await
            .map_err(|_| Cut::Timeout)?
            .map_err(Cut::Io)?;
        timeout_at(deadline, self.stream.flush())
            .await
            .map_err(|_| Cut::Timeout)?
            .map_err(Cut::Io)
    }

    fn reply(&mut self, code: u16, esc: [u8; 3], text: &str) {
        let _ = Response::new(code, esc[0], esc[1], esc[2], text).write(&mut self.out);
    }

    /// A command smtp-proto could not read: 500 or 501; true while the session goes on.
    fn refuse(&mut self, err: &ProtoError) -> bool {
        match err {
            ProtoError::UnknownCommand => self.reply(500, [5, 5, 1], "Command not recognised"),
            ProtoError::ResponseTooLong => self.reply(500, [5, 5, 2], "Line too long"),
            ProtoError::InvalidSenderAddress => self.reply(501, [5, 1, 7], "Invalid sender"),
            ProtoError::InvalidRecipientAddress => self.reply(501, [5, 1, 3], "Invalid recipient"),
            ProtoError::SyntaxError { syntax } => {
                self.reply(501, [5, 5, 4], &format!("Syntax: {syntax}"))
            }
            ProtoError::InvalidParameter { param } => {
                self.reply(501, [5, 5, 4], &format!("Invalid parameter {param}"))
            }
            ProtoError::UnsupportedParameter { .. } => {
                self.reply(555, [5, 5, 4], "Unsupported parameter")
            }
            _ => self.reply(500, [5, 5, 2], "Syntax error"),
        }
        self.count_error()
    }

    /// Count a client error; past `MAX_ERRORS` the session closes (421).
    fn count_error(&mut self) -> bool {
        self.errors += 1;
        if self.errors < MAX_ERRORS {
            return true;
        }
        self.reply(421, [4, 7, 0], "Too many errors, closing connection");
        false
    }

    /// Count a command that moves no mail; past `MAX_JUNK` the session closes (421).
    fn count_junk(&mut self) -> bool {
        self.junk += 1;
        if self.junk <= MAX_JUNK {
            return true;
        }
        self.reply(
            421,
            [4, 7, 0],
            "Too many commands without mail, closing connection",
        );
        false
    }

    /// Act on one command; false ends the session.
    async fn handle(&mut self, request: Request<String>) -> Result<bool, Cut> {
        let junk = matches!(
            request,
            Request::Noop { .. }
                | Request::Rset
                | Request::Vrfy { .. }
                | Request::Help { .. }
                | Request::Helo { .. }
                | Request::Ehlo { .. }
        );
        if junk && !self.count_junk() {
            return Ok(false);
        }
        match request {
            Request::Ehlo { host } => self.ehlo(host),
            Request::Helo { host } => {
                self.reset();
                self.helo = Some(host);
                let name = self.shared.config.hostname.clone();
                self.reply(250, [2, 0, 0], &name);
            }
            Request::Mail { from } => {
                return Ok(self.mail(from.address, from.size));
            }
            Request::Rcpt { to } => return Ok(self.rcpt(to.address)),
            Request::Data => return self.data().await,
            Request::Rset => {
                self.reset();
                self.reply(250, [2, 0, 0], "Reset");
            }
            Request::Noop { .. } => self.reply(250, [2, 0, 0], "OK"),
            Request::Quit => {
                self.reply(221, [2, 0, 0], "Bye");
                return Ok(false);
            }
            Request::Vrfy { .. } => self.reply(252, [2, 5, 0], "Cannot verify, but will relay"),
            Request::Help { .. } => self.reply(214, [2, 0, 0], "See RFC 5321"),
            Request::StartTls => return self.starttls().await,
            Request::Auth {
                mechanism,
                initial_response,
            } => return self.auth(mechanism, initial_response).await,
            other => {
                self.reply(502, [5, 5, 1], &format!("{} not implemented", other.name()));
                return Ok(self.count_error());
            }
        }
        Ok(true)
    }

    fn ehlo(&mut self, host: String) {
        self.reset();
        self.helo = Some(host);
        let mut ehlo = EhloResponse::new(self.shared.config.hostname.as_str());
        ehlo.capabilities =
            EXT_SIZE | EXT_PIPELINING | EXT_8BIT_MIME | EXT_ENHANCED_STATUS_CODES | EXT_SMTP_UTF8;
        if self.shared.tls.is_some() && !self.tls {
            ehlo.capabilities |= EXT_START_TLS;
        }
        if self.tls && !self.shared.logins.is_empty() {
            ehlo.capabilities |= EXT_AUTH;
            ehlo.auth_mechanisms = AUTH_PLAIN | AUTH_LOGIN;
        }
        ehlo.size = self.shared.config.max_size;
        let _ = ehlo.write(&mut self.out);
    }

    fn mail(&mut self, address: String, size: usize) -> bool {
        if self.helo.is_none() {
            self.reply(503, [5, 5, 1], "Say EHLO first");
            return self.count_error();
        }
        if self.mail_from.is_some() {
            self.reply(503, [5, 5, 1], "Nested MAIL command");
            return self.count_error();
        }
        if !self.shared.logins.is_empty() && self.user.is_none() {
            self.reply(530, [5, 7, 0], "Authentication required");
            return self.count_error();
        }
        if address.len() > MAX_ADDRESS {
            self.reply(501, [5, 1, 7], "Sender address too long");
            return self.count_error();
        }
        if size > self.shared.config.max_size {
            crate::metrics::smtp("too_big");
            self.reply(552, [5, 3, 4], "Message size exceeds the limit");
            return true;
        }
        self.mail_from = Some(address);
        self.reply(250, [2, 1, 0], "OK");
        true
    }

    fn rcpt(&mut self, address: String) -> bool {
        if self.mail_from.is_none() {
            self.reply(503, [5, 5, 1], "Need MAIL before RCPT");
            return self.count_error();
        }
        if address.is_empty() || address.len() > MAX_ADDRESS {
            self.reply(501, [5, 1, 3], "Invalid recipient");
            return self.count_error();
        }
        // Taken only if delivery can send to it: otherwise the row would retry until it died.
        if address.parse::<lettre::Address>().is_err() {
            self.reply(
                553,
                [5, 1, 3],
                "Recipient address not deliverable as written",
            );
            return self.count_error();
        }
        if self.recipients.len() >= MAX_RECIPIENTS {
            self.reply(452, [4, 5, 3], "Too many recipients");
            return true;
        }
        if !self
            .recipients
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&address))
        {
            self.recipients.push(address);
        }
        self.reply(250, [2, 1, 5], "OK");
        true
    }

    /// DATA: read the message under `max_size` and `data_timeout`, journal it, then answer.
    async fn data(&mut self) -> Result<bool, Cut> {
        if self.mail_from.is_none() || self.recipients.is_empty() {
            self.reply(503, [5, 5, 1], "Need MAIL and RCPT before DATA");
            return Ok(self.count_error());
        }
        self.reply(354, [2, 0, 0], "End data with <CR><LF>.<CR><LF>");
        self.flush().await?;
        let deadline = Instant::now() + self.shared.config.data_timeout;
        let (body, too_big) = self.read_data(deadline).await?;
        if too_big || self.over_the_cap_as_relayed(&body) {
            crate::metrics::smtp("too_big");
            self.reset();
            self.reply(552, [5, 3, 4], "Message size exceeds the limit");
            return Ok(true);
        }
        let envelope = Envelope {
            helo: self.helo.clone().unwrap_or_default(),
            client: self.peer,
            mail_from: self.mail_from.take().unwrap_or_default(),
            recipients: std::mem::take(&mut self.recipients),
            tls: self.tls,
            authenticated: self.user.is_some(),
        };
        match self.shared.acceptor.accept(&envelope, &body).await {
            Ok(()) => {
                crate::metrics::smtp("accepted");
                self.junk = 0;
                self.reply(250, [2, 0, 0], "Queued durably");
            }
            Err(err) => {
                crate::metrics::smtp("not_stored");
                tracing::error!(client = %self.peer, "cannot journal a received message: {err}");
                self.reply(
                    451,
                    [4, 3, 0],
                    "Cannot store the message now, try again later",
                );
            }
        }
        Ok(true)
    }

    /// Whether `body`, its bare line ends made CRLF as relayed, is over `max_size`. Normalising
    /// at most doubles a body, so one under half the cap is not walked a second time.
    fn over_the_cap_as_relayed(&self, body: &[u8]) -> bool {
        let max = self.shared.config.max_size;
        body.len() > max / 2 && super::accept::normalised_len(body) > max
    }

    /// The message up to the final dot; past `max_size` the rest is read and dropped.
    async fn read_data(&mut self, deadline: Instant) -> Result<(Vec<u8>, bool), Cut> {
        let mut receiver = DataReceiver::new();
        let mut body = Vec::new();
        let mut too_big = false;
        loop {
            let mut bytes = self.input.iter();
            let done = receiver.ingest(&mut bytes, &mut body);
            let consumed = self.input.len() - bytes.as_slice().len();
            self.input.drain(..consumed);
            if body.len() > self.shared.config.max_size {
                too_big = true;
                body.clear();
            }
            if done {
                return Ok((body, too_big));
            }
            self.fill(deadline).await?;
        }
    }

    /// STARTTLS: answer 220, drop anything the client sent after it, then the handshake.
    async fn starttls(&mut self) -> Result<bool, Cut> {
        let Some(acceptor) = self.shared.tls.clone().filter(|_| !self.tls) else {
            self.reply(502, [5, 5, 1], "STARTTLS not available");
            return Ok(self.count_error());
        };
        self.reply(220, [2, 0, 0], "Ready to start TLS");
        self.flush().await?;
        self.input.clear();
        self.requests = RequestReceiver::default();
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(Cut::Closed);
        };
        let stream = tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp))
            .await
            .map_err(|_| Cut::Timeout)?
            .map_err(Cut::Io)?;
        self.stream = Stream::Tls(Box::new(stream));
        self.tls = true;
        self.reset();
        self.helo = None;
        Ok(true)
    }

    /// AUTH PLAIN or LOGIN, over TLS only; true while the session goes on.
    async fn auth(&mut self, mechanism: u64, initial: String) -> Result<bool, Cut> {
        if self.shared.logins.is_empty() {
            self.reply(503, [5, 5, 1], "AUTH is not offered here");
            return Ok(self.count_error());
        }
        if !self.tls {
            self.reply(538, [5, 7, 11], "Encryption required: STARTTLS first");
            return Ok(self.count_error());
        }
        if self.user.is_some() {
            self.reply(503, [5, 5, 1], "Already authenticated");
            return Ok(self.count_error());
        }
        let login = match mechanism {
            AUTH_PLAIN => self.plain(initial).await?,
            AUTH_LOGIN => self.login(initial).await?,
            _ => {
                self.reply(504, [5, 5, 4], "Use PLAIN or LOGIN");
                return Ok(self.count_error());
            }
        };
        let Some((username, password)) = login else {
            self.reply(501, [5, 5, 2], "Cannot decode the credentials");
            return Ok(self.count_error());
        };
        if self.check(&username, &password) {
            tracing::info!(client = %self.peer, user = ?username, "SMTP login");
            self.user = Some(username);
            self.reply(235, [2, 7, 0], "Authentication successful");
            return Ok(true);
        }
        tracing::warn!(client = %self.peer, user = ?username, "SMTP login refused");
        tokio::time::sleep(LOGIN_REFUSED_PAUSE).await;
        self.reply(535, [5, 7, 8], "Authentication credentials invalid");
        Ok(self.count_error())
    }

    /// PLAIN: `authzid NUL user NUL password`, given with AUTH or after a 334.
    async fn plain(&mut self, initial: String) -> Result<Option<(String, Vec<u8>)>, Cut> {
        let answer = match initial.as_str() {
            "" => self.challenge("").await?,
            "=" => Vec::new(),
            _ => initial.into_bytes(),
        };
        let Some(decoded) = decode(&answer) else {
            return Ok(None);
        };
        let mut parts = decoded.splitn(3, |&b| b == 0).skip(1);
        let (Some(user), Some(password)) = (parts.next(), parts.next()) else {
            return Ok(None);
        };
        Ok(String::from_utf8(user.to_vec())
            .ok()
            .map(|user| (user, password.to_vec())))
    }

    /// LOGIN: the user name (given with AUTH, or asked for), then the password.
    async fn login(&mut self, initial: String) -> Result<Option<(String, Vec<u8>)>, Cut> {
        let user = match initial.as_str() {
            "" => self.challenge("VXNlcm5hbWU6").await?,
            _ => initial.into_bytes(),
        };
        let password = self.challenge("UGFzc3dvcmQ6").await?;
        let (Some(user), Some(password)) = (decode(&user), decode(&password)) else {
            return Ok(None);
        };
        Ok(String::from_utf8(user).ok().map(|user| (user, password)))
    }

    /// Send `334 <prompt>` and read the client's one-line answer (`*` cancels: empty).
    async fn challenge(&mut self, prompt: &str) -> Result<Vec<u8>, Cut> {
        self.out
            .extend_from_slice(format!("334 {prompt}\r\n").as_bytes());
        self.flush().await?;
        let deadline = Instant::now() + self.shared.config.command_timeout;
        let line = self.read_line(deadline).await?;
        Ok(if line == b"*" { Vec::new() } else { line })
    }

    /// One line of at most 12 KiB (without its CRLF); a longer one ends the session.
    async fn read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, Cut> {
        loop {
            if let Some(end) = self.input.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.input.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.input.len() > 12 * 1024 {
                return Err(Cut::Closed);
            }
            self.fill(deadline).await?;
        }
    }

    /// Whether `username` and `password` are one of the logins (compared in constant time).
    fn check(&self, username: &str, password: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.shared
            .logins
            .iter()
            .any(|login| login.username == username && bool::from(login.password.ct_eq(password)))
    }

    /// Forget the transaction in progress (RSET, EHLO, after a message).
    fn reset(&mut self) {
        self.mail_from = None;
        self.recipients.clear();
    }
}

/// Standard base64, as AUTH uses it.
fn decode(text: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}
