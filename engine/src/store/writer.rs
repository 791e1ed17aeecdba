//! The one ingest writer: a thread that journals every waiting request in one transaction (group commit).
//!
//! Callers hand over validated events and wait for the answer. Whatever requests are
//! waiting when the writer looks are journaled together, with one fsync, and each
//! caller is answered only once that commit is durable. A failed commit fails every
//! request in it (nothing of them was stored), and the next group is tried afresh.

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use super::relay::Inbound;
use super::{Ingested, Store};
use crate::event::Event;

/// At most this many events are journaled in one transaction.
const MAX_GROUP: usize = 10_000;

/// One request: its events, and where the answer goes.
struct Job {
    events: Vec<Event>,
    /// The mail the first event came from (the SMTP listener), journaled in the same commit.
    mail: Option<Inbound>,
    reply: oneshot::Sender<Result<Vec<Ingested>, String>>,
}

/// The handle callers use; the writer stops once every handle is dropped.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
}

/// Why a request was not journaled. Nothing of it was stored.
#[derive(Debug, thiserror::Error)]
pub enum WriteFailed {
    #[error("{0}")]
    Store(String),
    #[error("the store writer has stopped")]
    Stopped,
}

impl Writer {
    /// Start the writer thread on `store`; `journaled` runs after each commit that stored a new
    /// event or received mail, saying which. `wanted` says whether a rule in force wants an
    /// event: one that no rule wants is journaled as evaluated, so it costs evaluation no commit.
    pub fn spawn(
        mut store: Store,
        wanted: impl Fn(&Event) -> bool + Send + 'static,
        journaled: impl Fn(Journaled) + Send + 'static,
    ) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
        let (jobs, inbox) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("herald-writer".into())
            .spawn(move || run(&mut store, inbox, wanted, journaled))?;
        Ok((Writer { jobs }, thread))
    }

    /// Journal `events`; returns once they are durable (or refused as a whole).
    pub async fn journal(&self, events: Vec<Event>) -> Result<Vec<Ingested>, WriteFailed> {
        self.submit(events, None).await
    }

    /// Journal `events` and the received `mail` the first of them came from, in the same
    /// group commit; returns once both are durable (or refused as a whole).
    pub async fn journal_mail(
        &self,
        events: Vec<Event>,
        mail: Inbound,
    ) -> Result<Vec<Ingested>, WriteFailed> {
        self.submit(events, Some(mail)).await
    }

    async fn submit(
        &self,
        events: Vec<Event>,
        mail: Option<Inbound>,
    ) -> Result<Vec<Ingested>, WriteFailed> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                events,
                mail,
                reply,
            })
            .map_err(|_| WriteFailed::Stopped)?;
        answer
            .await
            .map_err(|_| WriteFailed::Stopped)?
            .map_err(WriteFailed::Store)
    }
}

/// What one commit stored, for the stages it wakes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Journaled {
    /// New events to evaluate (not those journaled as evaluated).
    pub events: bool,
    /// Received mail, whose relay rows are queued already.
    pub mail: bool,
}

fn run(
    store: &mut Store,
    mut inbox: mpsc::UnboundedReceiver<Job>,
    wanted: impl Fn(&Event) -> bool,
    journaled: impl Fn(Journaled),
) {
    while let Some(first) = inbox.blocking_recv() {
        let mut group = vec![first];
        let mut size = group[0].events.len();
        while size < MAX_GROUP {
            let Ok(more) = inbox.try_recv() else { break };
            size += more.events.len();
            group.push(more);
        }
        let done = commit(store, group, &wanted);
        if done.events || done.mail {
            journaled(done);
        }
    }
}

/// The group's events, with the received mail of any job in the same transaction.
fn ingest(store: &mut Store, group: &[Job], settled: &[bool]) -> super::Result<Vec<Ingested>> {
    let mut mails = Vec::new();
    let mut first = 0;
    for job in group {
        if let Some(mail) = &job.mail {
            mails.push((first, mail));
        }
        first += job.events.len();
    }
    let events = group.iter().flat_map(|j| j.events.iter());
    if mails.is_empty() {
        store.ingest_all(events, settled, Utc::now())
    } else {
        let events: Vec<Event> = events.cloned().collect();
        store.ingest_mail(&events, settled, &mails, Utc::now())
    }
}

/// Journal a group in one transaction and answer each job; what it stored.
fn commit(store: &mut Store, group: Vec<Job>, wanted: &impl Fn(&Event) -> bool) -> Journaled {
    let mail = group.iter().any(|j| j.mail.is_some());
    let events = || group.iter().flat_map(|j| j.events.iter());
    let count: usize = group.iter().map(|j| j.events.len()).sum();
    let settled: Vec<bool> = events().map(|event| !wanted(event)).collect();
    match ingest(store, &group, &settled) {
        Ok(results) => {
            // An empty group is a readiness probe, not an ingest commit.
            if count > 0 {
                crate::metrics::commit_batch(count);
            }
            for (event, result) in events().zip(&results) {
                let duplicate = matches!(result, Ingested::Duplicate(_));
                crate::metrics::event_received(&event.kind, duplicate);
            }
            let to_evaluate = results
                .iter()
                .zip(&settled)
                .any(|(r, settled)| matches!(r, Ingested::New(_)) && !settled);
            let mut results = results.into_iter();
            for job in group {
                let mine = results.by_ref().take(job.events.len()).collect();
                // A caller that went away (its connection closed) needs no answer.
                let _ = job.reply.send(Ok(mine));
            }
            Journaled {
                events: to_evaluate,
                mail,
            }
        }
        Err(err) => {
            let err = anyhow::Error::from(err);
            let account = super::temporary_failure(&err).unwrap_or_else(|| format!("{err:#}"));
            tracing::error!("cannot journal {count} event(s): {account}");
            for job in group {
                let _ = job.reply.send(Err(account.clone()));
            }
            Journaled::default()
        }
    }
}
