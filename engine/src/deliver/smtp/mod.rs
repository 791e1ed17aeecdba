//! The SMTP transport: bounded concurrent sessions on a private tokio runtime, each result classified.

pub mod classify;
mod session;
mod tls;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;

pub use classify::{Class, Report};
pub use session::{Job, Settings};

use crate::config::{PasswordSource, SmtpConfig, TlsMode};
use classify::classify;
use session::Session;
use tls::Tls;

/// Sends messages to one SMTP server, at most `max_connections` at once.
pub struct SmtpTransport {
    runtime: tokio::runtime::Runtime,
    settings: Arc<Settings>,
    /// Sessions that finished their last message cleanly, kept for the next batch.
    idle: Arc<Mutex<Vec<Session>>>,
    max_connections: usize,
}

type Queue = Arc<Mutex<VecDeque<(usize, Job)>>>;
/// The first failure to open a session in a batch; later messages needing a session are not tried.
type Down = Arc<Mutex<Option<Report>>>;

impl SmtpTransport {
    /// Read the password, load the trust roots, and start the runtime.
    pub fn new(config: &SmtpConfig) -> anyhow::Result<SmtpTransport> {
        let tls = match config.tls {
            TlsMode::None => None,
            _ => Some(Tls::new(
                &config.host,
                config.ca_file.as_deref(),
                config.min_tls,
            )?),
        };
        let settings = Settings {
            host: config.host.clone(),
            port: config.port,
            hello: config
                .hello_name
                .clone()
                .map_or_else(ClientId::default, ClientId::Domain),
            mode: config.tls,
            tls,
            credentials: credentials(config)?,
            connect_timeout: config.connect_timeout,
            command_timeout: config.command_timeout,
            data_timeout: config.data_timeout,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the SMTP runtime")?;
        Ok(SmtpTransport {
            runtime,
            settings: Arc::new(settings),
            idle: Arc::default(),
            max_connections: config.max_connections as usize,
        })
    }

    /// How many sessions run at once.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// `smtp://host:port (tls mode)` for messages.
    pub fn endpoint(&self) -> String {
        let s = &self.settings;
        let mode = match s.mode {
            TlsMode::None => "no TLS",
            TlsMode::Starttls => "STARTTLS",
            TlsMode::Tls => "implicit TLS",
        };
        format!("smtp://{}:{} ({mode})", s.host, s.port)
    }

    /// Send every job, one envelope each; the reports come back in the jobs' order.
    ///
    /// Without an idle session, one session is opened first: if the server is down or refuses
    /// the login, one message carries the failure and the others are not tried.
    pub fn send_all(&self, jobs: Vec<Job>) -> Vec<Report> {
        let count = jobs.len();
        if count == 0 {
            return Vec::new();
        }
        let mut queue: VecDeque<(usize, Job)> = jobs.into_iter().enumerate().collect();
        let mut reports: Vec<Option<Report>> = vec![None; count];
        self.runtime.block_on(async {
            if let Err(report) = self.probe().await {
                let mut rest = queue.drain(..);
                if let Some((first, _)) = rest.next() {
                    reports[first] = Some(report.clone());
                }
                for (index, _) in rest {
                    reports[index] = Some(not_attempted(report.clone()));
                }
                return;
            }
            let queue: Queue = Arc::new(Mutex::new(queue));
            let down: Down = Arc::default();
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..self.max_connections.min(count) {
                let (settings, idle) = (self.settings.clone(), self.idle.clone());
                set.spawn(worker(settings, idle, queue.clone(), down.clone()));
            }
            while let Some(done) = set.join_next().await {
                for (index, report) in done.expect("an SMTP worker panicked") {
                    reports[index] = Some(report);
                }
            }
        });
        reports
            .into_iter()
            .map(|r| r.expect("every job is reported"))
            .collect()
    }

    /// Make sure one session is open (idle), or say why none can be.
    async fn probe(&self) -> Result<(), Report> {
        if !lock(&self.idle).is_empty() {
            return Ok(());
        }
        let session = Session::open(&self.settings)
            .await
            .map_err(|failure| classify(&failure))?;
        lock(&self.idle).push(session);
        Ok(())
    }

    /// QUIT the idle sessions.
    pub fn close(&self) {
        let sessions: Vec<Session> = std::mem::take(&mut *lock(&self.idle));
        self.runtime.block_on(async {
            for session in sessions {
                session.quit().await;
            }
        });
    }
}

impl Drop for SmtpTransport {
    fn drop(&mut self) {
        self.close();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Take jobs until none is left; a session that failed is dropped, never reused.
async fn worker(
    settings: Arc<Settings>,
    idle: Arc<Mutex<Vec<Session>>>,
    queue: Queue,
    down: Down,
) -> Vec<(usize, Report)> {
    let mut session = lock(&idle).pop();
    let mut out = Vec::new();
    loop {
        let Some((index, job)) = lock(&queue).pop_front() else {
            break;
        };
        let open = match session.as_mut() {
            Some(open) => open,
            None => match open_session(&settings, &down).await {
                Ok(open) => session.insert(open),
                Err(report) => {
                    out.push((index, report));
                    continue;
                }
            },
        };
        let report = match open.send(&settings, &job).await {
            Ok(reply) => Report::sent(
                reply.code().into(),
                reply.message().collect::<Vec<_>>().join(" "),
            ),
            Err(failure) => {
                session = None;
                classify(&failure)
            }
        };
        out.push((index, report));
    }
    if let Some(session) = session {
        lock(&idle).push(session);
    }
    out
}

/// A new session, unless one already failed to open in this batch.
async fn open_session(settings: &Settings, down: &Down) -> Result<Session, Report> {
    if let Some(first) = lock(down).clone() {
        return Err(not_attempted(first));
    }
    Session::open(settings).await.map_err(|failure| {
        let report = classify(&failure);
        lock(down).get_or_insert_with(|| report.clone());
        report
    })
}

/// A message left untried because the server already failed in this batch: kept for retry.
fn not_attempted(first: Report) -> Report {
    let class = match first.class {
        Class::Config => Class::Config,
        _ => Class::Transient,
    };
    Report {
        class,
        code: None,
        before_message: true,
        text: format!(
            "not attempted: opening a connection already failed in this run: {}",
            first.text
        ),
    }
}

/// The login, with the password read now from its file or variable.
fn credentials(config: &SmtpConfig) -> anyhow::Result<Option<Credentials>> {
    let (Some(user), Some(source)) = (&config.username, &config.password) else {
        return Ok(None);
    };
    let password = match source {
        PasswordSource::File(path) => std::fs::read_to_string(path)
            .with_context(|| {
                format!(
                    "cannot read mail.smtp.password_file {}; fix: create it with the password \
                     on one line, readable only by Herald",
                    path.display()
                )
            })?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        PasswordSource::Env(name) => std::env::var(name).with_context(|| {
            format!("mail.smtp.password_env names ${name}, which is not set; fix: export it")
        })?,
    };
    if password.is_empty() {
        bail!(
            "the SMTP password for `{user}` is empty; fix: put it in the password file or variable"
        );
    }
    Ok(Some(Credentials::new(user.clone(), password)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let config = SmtpConfig {
            username: Some("omero".into()),
            password: Some(PasswordSource::Env("HERALD_UNIT_TEST_PW".into())),
            ..SmtpConfig::default()
        };
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var("HERALD_UNIT_TEST_PW", "hunter2") };
        let transport = SmtpTransport::new(&config).unwrap();
        let shown = format!("{:?}", transport.settings);
        assert!(
            shown.contains("[redacted]") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn a_missing_password_variable_is_a_clear_error() {
        let config = SmtpConfig {
            username: Some("omero".into()),
            password: Some(PasswordSource::Env("HERALD_UNIT_TEST_UNSET".into())),
            ..SmtpConfig::default()
        };
        let err = SmtpTransport::new(&config).err().unwrap().to_string();
        assert!(
            err.contains("$HERALD_UNIT_TEST_UNSET, which is not set"),
            "{err}"
        );
    }

    #[test]
    fn rows_not_attempted_are_never_killed() {
        let first = Report {
            class: Class::Permanent,
            code: Some(535),
            text: "AUTH: refused".into(),
            before_message: true,
        };
        let report = not_attempted(first);
        assert_eq!((report.class, report.code), (Class::Transient, None));
    }
}
