//! Deliver: take due outbox rows, render them, hand them to the transport, record the outcome.

pub mod file;
pub mod render;

use anyhow::bail;
use chrono::{DateTime, Utc};
use lettre::message::Mailbox;

use crate::config::{Config, TransportKind};
use crate::store::{Attempt, OutboxRow, Store};
pub use file::FileTransport;

/// Rows fetched from the store per round.
const BATCH: usize = 256;

/// Where messages go.
pub enum Transport {
    File(FileTransport),
}

/// What one delivery run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub sent: usize,
    pub failed: usize,
}

/// Sends due outbox rows through one transport.
pub struct Deliverer {
    transport: Transport,
    from: Mailbox,
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
        let transport = match config.mail.transport {
            TransportKind::File => Transport::File(FileTransport::new(&config.mail.file_dir)),
            TransportKind::Smtp => {
                bail!("mail.transport: smtp is not available in this version; use `file`")
            }
        };
        Ok(Deliverer { transport, from })
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Deliver every row that is due now, until none is left.
    pub fn deliver_due(&self, store: &mut Store, now: DateTime<Utc>) -> anyhow::Result<Summary> {
        let mut summary = Summary::default();
        loop {
            let rows = store.due(now, BATCH)?;
            if rows.is_empty() {
                return Ok(summary);
            }
            for row in rows {
                let attempt = self.attempt(&row, Utc::now());
                match attempt.new_state {
                    "sent" => summary.sent += 1,
                    _ => summary.failed += 1,
                }
                store.record_attempt(&attempt)?;
            }
        }
    }

    fn attempt(&self, row: &OutboxRow, at: DateTime<Utc>) -> Attempt {
        let sent = render::render(row, &self.from).and_then(|message| match &self.transport {
            Transport::File(file) => file.send(&row.key, &message.formatted()),
        });
        match sent {
            Ok(path) => Attempt {
                outbox_id: row.id,
                at,
                outcome: "sent",
                code: None,
                detail: format!("written to {}", path.display()),
                new_state: "sent",
                next_attempt_at: None,
            },
            // A message that cannot be rendered or written is kept: it is
            // retried on the next run rather than lost.
            Err(err) => Attempt {
                outbox_id: row.id,
                at,
                outcome: "transient",
                code: None,
                detail: format!("{err:#}"),
                new_state: "queued",
                next_attempt_at: Some(at + chrono::Duration::minutes(5)),
            },
        }
    }
}
