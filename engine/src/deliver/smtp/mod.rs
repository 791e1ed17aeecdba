//! The SMTP transport: sessions with a deadline on every phase, each result classified.

mod capped;
pub(crate) mod classify;
mod hold;
mod session;
mod tls;

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, bail};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;

pub use classify::{Class, Report};
pub use session::{Job, Settings};

use super::transport::{Session as _, Transport};
use crate::config::{PasswordSource, SmtpConfig, TlsMode};
use crate::mail::MailKey;
use classify::classify;
use session::Session;
use tls::Tls;

/// Sends messages to one SMTP server, at most `max_connections` sessions at once.
#[derive(Clone)]
pub struct SmtpTransport {
    settings: Arc<Settings>,
    max_connections: usize,
}

/// One open session and the settings its phases are timed by.
pub struct SmtpSession {
    session: Session,
    settings: Arc<Settings>,
}

impl SmtpTransport {
    /// Read the password and load the trust roots.
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
        Ok(SmtpTransport {
            settings: Arc::new(settings),
            max_connections: config.max_connections.max(1) as usize,
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

    /// Send every job outside the outbox (`mail test`, benchmarks), one envelope each, on
    /// up to `max_connections` sessions; the reports come back in the jobs' order.
    pub fn send_all(&self, jobs: Vec<Job>) -> Vec<Report> {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                let report = Report::failed(Class::Transient, format!("cannot start tokio: {err}"));
                return jobs.iter().map(|_| report.clone()).collect();
            }
        };
        let count = jobs.len();
        let mut queue: Vec<(usize, Job)> = jobs.into_iter().enumerate().collect();
        queue.reverse();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        let mut reports: Vec<Option<Report>> = vec![None; count];
        runtime.block_on(async {
            let mut lanes = tokio::task::JoinSet::new();
            for _ in 0..self.max_connections.min(count) {
                let (this, queue) = (self.clone(), queue.clone());
                lanes.spawn(async move { this.lane(&queue).await });
            }
            while let Some(Ok(done)) = lanes.join_next().await {
                for (index, report) in done {
                    reports[index] = Some(report);
                }
            }
        });
        reports
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Report::failed(Class::Transient, "not sent".into())))
            .collect()
    }

    /// One session taking jobs from the shared queue until it is empty or the session breaks.
    async fn lane(&self, queue: &std::sync::Mutex<Vec<(usize, Job)>>) -> Vec<(usize, Report)> {
        let mut out = Vec::new();
        let mut session: Option<SmtpSession> = None;
        let key = MailKey {
            source: String::new(),
            event_id: String::new(),
            rule: String::new(),
            recipient: String::new(),
        };
        while let Some((index, job)) = queue.lock().ok().and_then(|mut q| q.pop()) {
            let open = match session.as_mut() {
                Some(open) => open,
                None => match self.open().await {
                    Ok(open) => session.insert(open),
                    Err(report) => {
                        out.push((index, report));
                        continue;
                    }
                },
            };
            match open.send(&key, &job).await {
                Ok(report) => out.push((index, report)),
                Err(report) => {
                    session = None;
                    out.push((index, report));
                }
            }
        }
        if let Some(session) = session {
            session.close().await;
        }
        out
    }
}

impl Transport for SmtpTransport {
    type Session = SmtpSession;

    fn max_sessions(&self) -> usize {
        self.max_connections
    }

    async fn open(&self) -> Result<SmtpSession, Report> {
        let session = Session::open(&self.settings)
            .await
            .map_err(|failure| classify(&failure))?;
        Ok(SmtpSession {
            session,
            settings: self.settings.clone(),
        })
    }
}

impl super::transport::Session for SmtpSession {
    async fn send(&mut self, key: &MailKey, job: &Job) -> Result<Report, Report> {
        self.send_gated(key, job, std::future::ready(true)).await
    }

    async fn send_gated(
        &mut self,
        _key: &MailKey,
        job: &Job,
        gate: impl Future<Output = bool> + Send,
    ) -> Result<Report, Report> {
        match self.session.send(&self.settings, job, gate).await {
            Ok(reply) => Ok(Report::sent(
                reply.code().into(),
                reply.message().collect::<Vec<_>>().join(" "),
            )),
            Err(failure) => Err(classify(&failure)),
        }
    }

    async fn alive(&mut self) -> bool {
        self.session.alive(&self.settings).await
    }

    async fn close(self) {
        self.session.quit().await;
    }
}

/// The login, with the password read now from its file or variable.
fn credentials(config: &SmtpConfig) -> anyhow::Result<Option<Credentials>> {
    let (Some(user), Some(source)) = (&config.username, &config.password) else {
        return Ok(None);
    };
    let password = source.read().with_context(|| match source {
        PasswordSource::File(path) => format!(
            "cannot read mail.smtp.password_file {}; fix: create it with the password \
             on one line, readable only by Herald",
            path.display()
        ),
        PasswordSource::Env(name) => {
            format!("mail.smtp.password_env names ${name}, which is not set; fix: export it")
        }
    })?;
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

    /// Greet with 64 MiB and no line end; what the session reports, and whether Herald hung up first.
    fn endless_greeting(tls: TlsMode) -> (Report, bool) {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut client, _) = listener.accept().unwrap();
            let chunk = vec![b'x'; 64 * 1024];
            let mut written = client.write_all(b"220 ").map(|()| 4);
            // 64 MiB without a line end, unless the client hangs up first.
            while let Ok(n) = written {
                if n >= 64 << 20 {
                    break;
                }
                written = client.write_all(&chunk).map(|()| n + chunk.len());
            }
            written.err().is_some()
        });
        let config = SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            tls,
            ..SmtpConfig::default()
        };
        let transport = SmtpTransport::new(&config).unwrap();
        let job = Job {
            from: "a@example.org".parse().unwrap(),
            to: "b@example.org".parse().unwrap(),
            bytes: b"Subject: x\r\n\r\nx\r\n".to_vec(),
        };
        let report = transport.send_all(vec![job]).remove(0);
        (report, server.join().unwrap())
    }

    #[test]
    fn an_endless_greeting_line_is_cut_off_at_the_cap() {
        let (report, hung_up) = endless_greeting(TlsMode::None);
        assert_eq!(report.class, Class::Transient, "{report:?}");
        assert!(
            report.text.contains("reply line longer than"),
            "{}",
            report.text
        );
        assert!(hung_up, "Herald hung up before reading it all");
    }

    #[test]
    fn an_endless_greeting_on_a_starttls_session_is_cut_off_at_the_volume_cap() {
        let (report, hung_up) = endless_greeting(TlsMode::Starttls);
        assert_eq!(report.class, Class::Transient, "{report:?}");
        assert!(
            report.text.contains("without being asked"),
            "{}",
            report.text
        );
        assert!(hung_up, "Herald read the whole 64 MiB");
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
}
