//! Deliver: take due outbox rows, render them, hand them to the transport, record the outcome.

pub(crate) mod file;
mod idle;
mod recorder;
mod relay;
pub(crate) mod render;
pub(crate) mod retry;
pub(crate) mod shutdown;
pub mod smtp;
pub(crate) mod transport;
mod workers;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::dkim::{DkimConfig, DkimSigningAlgorithm, DkimSigningKey};
use tokio::sync::mpsc;

use crate::config::{Config, DkimAlgorithm, DkimSettings, TransportKind};
use crate::store::relay::{RELAY_RULE, RelayBodies, RelayBody};
use crate::store::writer::Writer;
use crate::store::{Attempt, OutboxRow, Outcome, RowState, Store};
pub use file::FileTransport;
pub use smtp::{Class, Job, Report, SmtpTransport};
pub use transport::{Configured, Session, Transport};

/// How often `deliver_until_empty` looks again while another live worker holds rows.
const LEASED_POLL: Duration = Duration::from_millis(100);

/// What one delivery run did, by what happened to each row. `failed` counts every row
/// not sent; the other counts split it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub sent: usize,
    pub failed: usize,
    /// Kept queued: 4xx, refused, reset, timeouts, TLS failures.
    pub transient: usize,
    /// Dead: a 5xx about the message, or too old to try again.
    pub permanent: usize,
    /// Kept queued: the connection was lost after the final `.`.
    pub ambiguous: usize,
    /// Kept queued: the config and the server do not fit (including a refused login).
    pub config: usize,
    /// The first failure of the run, for the summary line.
    pub first_error: Option<String>,
}

impl Summary {
    /// Count one recorded attempt by what it did to its row.
    pub fn count(&mut self, attempt: &Attempt) {
        match (attempt.new_state, attempt.outcome) {
            (RowState::Sent, _) => self.sent += 1,
            (RowState::Dead | RowState::Cancelled, _) => self.permanent += 1,
            (RowState::Queued, Outcome::Ambiguous) => self.ambiguous += 1,
            // A 5xx that kept the row (a refused login) is about the config, not the message.
            (RowState::Queued, Outcome::Config | Outcome::Permanent) => self.config += 1,
            (RowState::Queued, _) => self.transient += 1,
        }
        if attempt.new_state != RowState::Sent {
            self.failed += 1;
            self.first_error
                .get_or_insert_with(|| attempt.detail.clone());
        }
    }

    /// Count a row set dead because its stored form could not be read.
    pub fn count_unreadable(&mut self, detail: String) {
        self.failed += 1;
        self.permanent += 1;
        self.first_error.get_or_insert(detail);
    }

    /// Add another run's counts to these.
    pub fn add(&mut self, other: Summary) {
        self.sent += other.sent;
        self.failed += other.failed;
        self.transient += other.transient;
        self.permanent += other.permanent;
        self.ambiguous += other.ambiguous;
        self.config += other.config;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

impl From<Class> for Outcome {
    fn from(class: Class) -> Outcome {
        match class {
            Class::Sent => Outcome::Sent,
            Class::Transient => Outcome::Transient,
            Class::Permanent => Outcome::Permanent,
            Class::Ambiguous => Outcome::Ambiguous,
            Class::Config => Outcome::Config,
        }
    }
}

/// What the sessions of a run share: the transport and how a message is made and judged.
pub struct Shared<T: Transport> {
    transport: T,
    /// Sessions kept open between rounds (`herald serve` only).
    idle: idle::IdleSessions<T::Session>,
    from: Mailbox,
    dkim: Option<DkimConfig>,
    policy: retry::Policy,
    /// Set by SIGTERM/SIGINT (or a test): take no new rows.
    stop: &'static AtomicBool,
    /// How long sessions in flight may finish after a stop.
    grace: Duration,
    /// Where relayed rows' bytes are read (messages the SMTP listener took).
    relay: Option<RelayBodies>,
    /// DKIM for relayed bytes, when `mail.smtp.dkim` is set.
    relay_dkim: Option<relay::RelaySigner>,
}

/// Sends due outbox rows through one transport.
pub struct Deliverer<T: Transport = Configured> {
    shared: Arc<Shared<T>>,
    runtime: tokio::runtime::Runtime,
    lease: Duration,
    /// `herald serve`'s one writer, which records outcomes with ingest's commits; none: the
    /// run's own connection records them.
    writer: Option<Writer>,
}

impl Deliverer<Configured> {
    /// The configured transport, or why nothing can be sent.
    pub fn from_config(config: &Config) -> anyhow::Result<Deliverer> {
        let Some(from) = config.mail.from.clone() else {
            bail!(
                "mail.from is empty, which disables sending (as in OMERO); messages stay queued. \
                 Set mail.from in {} to send them",
                config.file.display()
            );
        };
        let smtp = &config.mail.smtp;
        let transport = match config.mail.transport {
            TransportKind::File => {
                Configured::File(Arc::new(FileTransport::new(&config.mail.file_dir)))
            }
            TransportKind::Smtp => Configured::Smtp(SmtpTransport::new(smtp)?),
        };
        let dkim = smtp.dkim.as_ref().map(dkim_config).transpose()?;
        let mut deliverer = Deliverer::new(
            transport,
            from,
            retry::Policy::from(&config.delivery),
            config.delivery.lease,
        )?;
        deliverer.shared_mut().dkim = dkim;
        deliverer.shared_mut().relay = Some(RelayBodies::new(&config.store.path));
        deliverer.shared_mut().relay_dkim = smtp
            .dkim
            .as_ref()
            .map(relay::RelaySigner::new)
            .transpose()?;
        Ok(deliverer)
    }
}

impl<T: Transport> Deliverer<T> {
    /// A deliverer for any transport, stopped by SIGTERM/SIGINT once `shutdown::install` ran.
    pub fn new(
        transport: T,
        from: Mailbox,
        policy: retry::Policy,
        lease: Duration,
    ) -> anyhow::Result<Deliverer<T>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the delivery runtime")?;
        Ok(Deliverer {
            shared: Arc::new(Shared {
                transport,
                idle: idle::IdleSessions::new(None),
                from,
                dkim: None,
                policy,
                stop: shutdown::global(),
                grace: shutdown::GRACE,
                relay: None,
                relay_dkim: None,
            }),
            runtime,
            lease,
            writer: None,
        })
    }

    /// Stop on `flag` instead of the signal flag, with this grace period (for tests).
    pub fn with_stop(mut self, flag: &'static AtomicBool, grace: Duration) -> Deliverer<T> {
        let shared = self.shared_mut();
        shared.stop = flag;
        shared.grace = grace;
        self
    }

    /// Keep sessions open between rounds for up to `keep_for` (for a long-running worker);
    /// [`Deliverer::close_idle`] closes them.
    pub fn keep_sessions(mut self, keep_for: Duration) -> Deliverer<T> {
        self.shared_mut().idle.set_keep_for(Some(keep_for));
        self
    }

    /// Record outcomes through `writer` (in the same commits as what it journals), not through
    /// the store each run is given.
    pub fn record_through(mut self, writer: Writer) -> Deliverer<T> {
        self.writer = Some(writer);
        self
    }

    /// Close (QUIT) every session kept between rounds.
    pub fn close_idle(&self) {
        let idle = self.shared.idle.drain();
        self.runtime.block_on(async {
            for session in idle {
                session.close().await;
            }
        });
    }

    fn shared_mut(&mut self) -> &mut Shared<T> {
        Arc::get_mut(&mut self.shared).expect("no run holds the shared state between runs")
    }

    pub fn transport(&self) -> &T {
        &self.shared.transport
    }

    /// The sender of every message.
    pub fn from(&self) -> &Mailbox {
        &self.shared.from
    }

    /// Whether a stop (SIGTERM/SIGINT) was asked for.
    pub fn stopping(&self) -> bool {
        shutdown::requested(self.shared.stop)
    }

    /// Deliver every row that is due now, until none is left or a stop is asked for.
    ///
    /// Sessions run on tokio tasks; a recorder thread owns the store and commits each
    /// outcome as its reply arrives (grouped with whatever else is waiting). A session
    /// holds its next row and writes that message while the outcome before it commits,
    /// but sends its final `.` only once the commit is done. Rows are leased to this
    /// process, so a second worker never sends a row this one holds; if this process
    /// dies, its leases are reclaimed by the next claim on this host (or run out elsewhere).
    pub fn deliver_due(&self, store: &mut Store, now: DateTime<Utc>) -> anyhow::Result<Summary> {
        let (requests, inbox) = mpsc::unbounded_channel();
        let lease = self.lease;
        std::thread::scope(|scope| {
            let ledger = match &self.writer {
                Some(writer) => recorder::Ledger::Writer(writer),
                None => recorder::Ledger::Store(store),
            };
            let recorder = scope.spawn(move || recorder::run(ledger, inbox, lease, now));
            self.runtime
                .block_on(workers::run(self.shared.clone(), requests));
            let (summary, stored) = recorder
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            stored.map(|()| summary)
        })
    }

    /// Deliver what is due, and keep looking while another live worker holds rows (their
    /// outcome may make them due again, or they are sent); return once none is held or a
    /// stop is asked for. Rows of workers that died on this host are taken over at once.
    pub fn deliver_until_empty(
        &self,
        store: &mut Store,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Summary> {
        let mut total = self.deliver_due(store, now)?;
        while !self.stopping() && store.leased_count(Utc::now())? > 0 {
            shutdown::sleep(self.shared.stop, LEASED_POLL);
            total.add(self.deliver_due(store, Utc::now())?);
        }
        Ok(total)
    }

    /// Render the message of a row (DKIM-signed when configured).
    pub fn render(&self, row: &OutboxRow) -> anyhow::Result<Message> {
        self.shared.render(row)
    }

    /// One envelope for one row: its single recipient.
    pub fn job(&self, row: &OutboxRow) -> anyhow::Result<Job> {
        self.shared.job(row)
    }
}

impl<T: Transport> Shared<T> {
    fn render(&self, row: &OutboxRow) -> anyhow::Result<Message> {
        let mut message = render::render(row, &self.from)?;
        if let Some(dkim) = &self.dkim {
            message.sign(dkim);
        }
        Ok(message)
    }

    fn job(&self, row: &OutboxRow) -> anyhow::Result<Job> {
        let to = row
            .key
            .recipient
            .parse()
            .with_context(|| format!("recipient {:?} is not an address", row.key.recipient))?;
        if row.key.rule == RELAY_RULE
            && let Some(body) = self
                .relay
                .as_ref()
                .map(|r| r.body(row.id))
                .transpose()?
                .flatten()
        {
            return Ok(self.relay_job(body, to));
        }
        let message = self.render(row)?;
        Ok(Job {
            from: self.from.email.clone(),
            to,
            bytes: message.formatted(),
        })
    }

    /// A received message, relayed as it came with Herald's `Received:` in front (and a
    /// DKIM-Signature when configured); the original
    /// envelope sender is kept (the null sender, which lettre cannot send, becomes `mail.from`).
    fn relay_job(&self, body: RelayBody, to: lettre::Address) -> Job {
        let from = body
            .mail_from
            .parse()
            .unwrap_or_else(|_| self.from.email.clone());
        let bytes = relay::bytes(&body.received, &body.raw, self.relay_dkim.as_ref());
        Job { from, to, bytes }
    }

    /// The attempt a report makes: sent, dead (permanent, or too old), or
    /// queued again after the retry policy's backoff.
    fn attempt(&self, row: &OutboxRow, at: DateTime<Utc>, report: Report) -> Attempt {
        let seed = (row.id as u64)
            .wrapping_mul(31)
            .wrapping_add(row.attempts as u64);
        // A 5xx before MAIL FROM (a refused login, a blocklisted greeting) says
        // nothing about this message: keep it, retried like a config error.
        let class = match report.class {
            Class::Permanent if report.before_message => Class::Config,
            class => class,
        };
        let mut decision = self.policy.decide(class, row.queued_at, at, seed);
        if class != report.class {
            decision
                .note
                .get_or_insert_with(|| "the message is kept: fix the server or the config".into());
        }
        let code = report.code.filter(|&code| code != 0);
        let mut detail = match (report.class, code) {
            (Class::Sent, Some(code)) => format!("{code} {}", report.text),
            _ => report.text,
        };
        if let Some(note) = decision.note {
            detail = format!("{detail}; {note}");
        }
        Attempt {
            outbox_id: row.id,
            lease: row.lease,
            at,
            outcome: report.class.into(),
            code,
            detail,
            new_state: decision.state,
            next_attempt_at: decision.next_attempt_at,
        }
    }
}

fn dkim_config(settings: &DkimSettings) -> anyhow::Result<DkimConfig> {
    let key = std::fs::read_to_string(&settings.key_file).with_context(|| {
        format!(
            "cannot read mail.smtp.dkim.key_file {}",
            settings.key_file.display()
        )
    })?;
    let algorithm = match settings.algorithm {
        DkimAlgorithm::Rsa => DkimSigningAlgorithm::Rsa,
        DkimAlgorithm::Ed25519 => DkimSigningAlgorithm::Ed25519,
    };
    let key = DkimSigningKey::new(key.trim(), algorithm).map_err(|err| {
        anyhow::anyhow!(
            "mail.smtp.dkim.key_file {} is not a {:?} key ({err}); fix: rsa needs a PKCS#1 PEM \
             (BEGIN RSA PRIVATE KEY), ed25519 the base64 private key",
            settings.key_file.display(),
            settings.algorithm
        )
    })?;
    Ok(render::dkim_config(
        settings.selector.clone(),
        settings.domain.clone(),
        key,
    ))
}

#[cfg(test)]
mod tests;
