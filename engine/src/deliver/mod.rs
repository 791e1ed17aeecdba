//! Deliver: take due outbox rows, render them, hand them to the transport, record the outcome.

pub mod file;
pub mod render;
pub mod retry;
pub mod smtp;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::dkim::{DkimConfig, DkimSigningAlgorithm, DkimSigningKey};

use crate::config::{Config, DkimAlgorithm, DkimSettings, TransportKind};
use crate::store::{Attempt, OutboxRow, Store};
pub use file::FileTransport;
pub use smtp::{Class, Job, Report, SmtpTransport};

/// Rows the file transport leases per round.
const FILE_BATCH: usize = 32;

/// Where messages go.
pub enum Transport {
    File(FileTransport),
    Smtp(SmtpTransport),
}

/// What one delivery run did. `failed` counts every row not sent; the other counts split it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub sent: usize,
    pub failed: usize,
    /// Kept queued: 4xx, refused, reset, timeouts, TLS failures.
    pub transient: usize,
    /// Dead: 5xx.
    pub permanent: usize,
    /// Kept queued: the connection was lost after the final `.`.
    pub ambiguous: usize,
    /// Kept queued: the config and the server do not fit.
    pub config: usize,
    /// The first failure of the run, for the summary line.
    pub first_error: Option<String>,
}

impl Summary {
    fn count(&mut self, attempt: &Attempt) {
        match attempt.outcome {
            "sent" => self.sent += 1,
            "permanent" => self.permanent += 1,
            "ambiguous" => self.ambiguous += 1,
            "config" => self.config += 1,
            _ => self.transient += 1,
        }
        if attempt.outcome != "sent" {
            self.failed += 1;
            self.first_error
                .get_or_insert_with(|| attempt.detail.clone());
        }
    }
}

/// Sends due outbox rows through one transport.
pub struct Deliverer {
    transport: Transport,
    from: Mailbox,
    dkim: Option<DkimConfig>,
    policy: retry::Policy,
    lease: std::time::Duration,
}

impl Deliverer {
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
            TransportKind::File => Transport::File(FileTransport::new(&config.mail.file_dir)),
            TransportKind::Smtp => Transport::Smtp(SmtpTransport::new(smtp)?),
        };
        let dkim = smtp.dkim.as_ref().map(dkim_config).transpose()?;
        Ok(Deliverer {
            transport,
            from,
            dkim,
            policy: retry::Policy::from(&config.delivery),
            lease: config.delivery.lease,
        })
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The sender of every message.
    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    /// Deliver every row that is due now, until none is left. Rows are leased
    /// first, so a second worker (or a restart after a crash) never sends a row
    /// that this one holds, and a row this worker dies holding comes back when
    /// its lease runs out.
    pub fn deliver_due(&self, store: &mut Store, now: DateTime<Utc>) -> anyhow::Result<Summary> {
        let mut summary = Summary::default();
        loop {
            // Lease from the real clock each round, so a long run never hands out
            // leases that have already expired; small rounds keep the window in
            // which a crash can leave sent-but-unrecorded rows small.
            let round = Utc::now().max(now);
            let rows = store.claim_due(round, self.lease, self.batch())?;
            if rows.is_empty() {
                break;
            }
            for attempt in self.attempts(&rows) {
                crate::crashpoint::reached("before-delivery-record");
                summary.count(&attempt);
                store.record_attempt(&attempt)?;
            }
        }
        if let Transport::Smtp(smtp) = &self.transport {
            smtp.close();
        }
        Ok(summary)
    }

    /// Rows per round: enough to keep every SMTP connection busy, no more.
    fn batch(&self) -> usize {
        match &self.transport {
            Transport::File(_) => FILE_BATCH,
            Transport::Smtp(smtp) => 2 * smtp.max_connections(),
        }
    }

    /// Render the message of a row (DKIM-signed when configured).
    pub fn render(&self, row: &OutboxRow) -> anyhow::Result<Message> {
        let mut message = render::render(row, &self.from)?;
        if let Some(dkim) = &self.dkim {
            message.sign(dkim);
        }
        Ok(message)
    }

    fn attempts(&self, rows: &[OutboxRow]) -> Vec<Attempt> {
        match &self.transport {
            Transport::File(file) => rows
                .iter()
                .map(|row| self.file_attempt(file, row))
                .collect(),
            Transport::Smtp(smtp) => self.smtp_attempts(smtp, rows),
        }
    }

    fn file_attempt(&self, file: &FileTransport, row: &OutboxRow) -> Attempt {
        let at = Utc::now();
        let written = self
            .render(row)
            .and_then(|message| file.send(&row.key, &message.formatted()));
        match written {
            Ok(path) => self.attempt(
                row,
                at,
                Report::sent(0, format!("written to {}", path.display())),
            ),
            // A message that cannot be rendered or written is kept: it is
            // retried later rather than lost.
            Err(err) => self.attempt(row, at, transient(format!("{err:#}"))),
        }
    }

    /// Render every row, send the rendered ones together, and pair each row with its report.
    fn smtp_attempts(&self, smtp: &SmtpTransport, rows: &[OutboxRow]) -> Vec<Attempt> {
        let mut reports: Vec<Option<Report>> = vec![None; rows.len()];
        let mut jobs = Vec::new();
        let mut sent_index = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            match self.job(row) {
                Ok(job) => {
                    jobs.push(job);
                    sent_index.push(index);
                }
                Err(err) => reports[index] = Some(transient(format!("{err:#}"))),
            }
        }
        for (index, report) in sent_index.into_iter().zip(smtp.send_all(jobs)) {
            reports[index] = Some(report);
        }
        let at = Utc::now();
        rows.iter()
            .zip(reports)
            .map(|(row, report)| self.attempt(row, at, report.expect("every row has a report")))
            .collect()
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
            outcome: report.class.as_str(),
            code,
            detail,
            new_state: decision.state,
            next_attempt_at: decision.next_attempt_at,
        }
    }

    /// One envelope for one row: its single recipient.
    pub fn job(&self, row: &OutboxRow) -> anyhow::Result<Job> {
        let message = self.render(row)?;
        let to = row
            .key
            .recipient
            .parse()
            .with_context(|| format!("recipient {:?} is not an address", row.key.recipient))?;
        Ok(Job {
            from: self.from.email.clone(),
            to,
            bytes: render::smtp_data(message.formatted()),
        })
    }
}

fn transient(text: String) -> Report {
    Report {
        class: Class::Transient,
        code: None,
        text,
        before_message: false,
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
