//! The transport seam: a transport opens sessions, and a session hands over one message at a time.
//!
//! The delivery loop only knows these two traits, so it is unit-tested with a stub
//! transport and runs the file and SMTP transports the same way.

use std::future::Future;
use std::sync::Arc;

use super::file::FileTransport;
use super::smtp::{Class, Job, Report, SmtpSession, SmtpTransport};
use crate::mail::MailKey;

/// Where messages go: opens sessions, at most `max_sessions` at once.
pub trait Transport: Send + Sync + 'static {
    type Session: Session;

    /// How many sessions may run at once.
    fn max_sessions(&self) -> usize;

    /// Open a session, or the report of why none can be opened (nothing was sent).
    fn open(&self) -> impl Future<Output = Result<Self::Session, Report>> + Send;
}

/// One open session.
pub trait Session: Send + 'static {
    /// Hand one message over. `Ok` is the accepted report; `Err` a failed one, after which
    /// the session must not be used again.
    fn send(
        &mut self,
        key: &MailKey,
        job: &Job,
    ) -> impl Future<Output = Result<Report, Report>> + Send;

    /// [`Session::send`], with the end of the message held until `gate` says yes: a no
    /// fails the send with nothing delivered. This one waits for the gate first; SMTP
    /// writes the envelope and body meanwhile and holds only the final `.`.
    fn send_gated(
        &mut self,
        key: &MailKey,
        job: &Job,
        gate: impl Future<Output = bool> + Send,
    ) -> impl Future<Output = Result<Report, Report>> + Send {
        async move {
            match gate.await {
                true => self.send(key, job).await,
                false => Err(not_released()),
            }
        }
    }

    /// Whether the session can still be used (a session kept idle between rounds is asked).
    fn alive(&mut self) -> impl Future<Output = bool> + Send;

    /// Close the session politely (QUIT).
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// The report of a message whose end was not released: nothing was delivered.
pub fn not_released() -> Report {
    Report::failed(
        Class::Transient,
        "not sent: the outcome of the message before it could not be recorded, or this row's \
         lease was lost meanwhile"
            .into(),
    )
}

/// The transport `mail.transport` names.
pub enum Configured {
    File(Arc<FileTransport>),
    Smtp(SmtpTransport),
}

/// A session of the configured transport.
pub enum ConfiguredSession {
    File(Arc<FileTransport>),
    Smtp(Box<SmtpSession>),
}

impl Transport for Configured {
    type Session = ConfiguredSession;

    fn max_sessions(&self) -> usize {
        match self {
            // Files are written at once; a few sessions let their outcomes share a commit.
            Configured::File(_) => 4,
            Configured::Smtp(smtp) => smtp.max_connections(),
        }
    }

    async fn open(&self) -> Result<ConfiguredSession, Report> {
        match self {
            Configured::File(file) => Ok(ConfiguredSession::File(file.clone())),
            Configured::Smtp(smtp) => smtp
                .open()
                .await
                .map(|session| ConfiguredSession::Smtp(Box::new(session))),
        }
    }
}

impl Session for ConfiguredSession {
    async fn send(&mut self, key: &MailKey, job: &Job) -> Result<Report, Report> {
        match self {
            ConfiguredSession::File(file) => match file.send(key, &job.bytes) {
                Ok(path) => Ok(Report::sent(0, format!("written to {}", path.display()))),
                // A message that cannot be written is kept: it is retried later rather than lost.
                Err(err) => Err(Report::failed(Class::Transient, format!("{err:#}"))),
            },
            ConfiguredSession::Smtp(smtp) => smtp.send(key, job).await,
        }
    }

    async fn send_gated(
        &mut self,
        key: &MailKey,
        job: &Job,
        gate: impl Future<Output = bool> + Send,
    ) -> Result<Report, Report> {
        match self {
            ConfiguredSession::Smtp(smtp) => smtp.send_gated(key, job, gate).await,
            ConfiguredSession::File(_) => match gate.await {
                true => self.send(key, job).await,
                false => Err(not_released()),
            },
        }
    }

    async fn alive(&mut self) -> bool {
        match self {
            ConfiguredSession::File(_) => true,
            ConfiguredSession::Smtp(smtp) => smtp.alive().await,
        }
    }

    async fn close(self) {
        if let ConfiguredSession::Smtp(smtp) = self {
            smtp.close().await;
        }
    }
}
