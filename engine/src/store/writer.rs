//! The one writer of `herald serve`: a thread that commits every waiting request in one transaction (group commit).
//!
//! Callers hand over validated events to journal, or a delivery round to record, and
//! wait for the answer. Whatever requests are waiting when the writer looks are written
//! together, with one fsync, and each caller is answered only once that commit is
//! durable. (Delivery rounds stay synced here, unlike the CLI's written rounds: see
//! `Store::written` for why.) So ingest and the delivery recorder never wait for SQLite's write lock
//! behind each other's fsync. A failed commit fails every request in it (nothing of
//! them was stored); when it held both journal and delivery requests, each part is
//! tried again alone first, so one part's failure is its own.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::relay::Inbound;
use super::{Attempt, Claimed, Held, Ingested, Round, Store};
use crate::event::Event;

/// At most this many events are journaled in one transaction.
const MAX_GROUP: usize = 10_000;

/// One request to the writer.
enum Job {
    Journal(Journal),
    Record(Record),
}

/// Events to journal, and where the answer goes.
struct Journal {
    events: Vec<Event>,
    /// The mail the first event came from (the SMTP listener), journaled in the same commit.
    mail: Option<Inbound>,
    reply: oneshot::Sender<Result<Vec<Ingested>, String>>,
}

/// A delivery recorder's round ([`Round`] with what it borrows owned), and where the answer goes.
struct Record {
    attempts: Vec<Attempt>,
    sending: Vec<Held>,
    released: Vec<Held>,
    claims: usize,
    now: DateTime<Utc>,
    lease: Duration,
    reply: oneshot::Sender<Result<Claimed, String>>,
}

impl Record {
    fn round(&self) -> Round<'_> {
        Round {
            attempts: &self.attempts,
            sending: &self.sending,
            released: &self.released,
            claims: self.claims,
        }
    }
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
            .send(Job::Journal(Journal {
                events,
                mail,
                reply,
            }))
            .map_err(|_| WriteFailed::Stopped)?;
        answer
            .await
            .map_err(|_| WriteFailed::Stopped)?
            .map_err(WriteFailed::Store)
    }

    /// Commit a delivery round, as [`Store::record_and_claim`] does, in the next group.
    /// Blocks until it is durable: call it from a plain thread (the delivery recorder),
    /// never from async code.
    pub fn record(
        &self,
        round: &Round<'_>,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claimed, WriteFailed> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Record(Record {
                attempts: round.attempts.to_vec(),
                sending: round.sending.to_vec(),
                released: round.released.to_vec(),
                claims: round.claims,
                now,
                lease,
                reply,
            }))
            .map_err(|_| WriteFailed::Stopped)?;
        answer
            .blocking_recv()
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
        let mut size = group[0].size();
        while size < MAX_GROUP {
            let Ok(more) = inbox.try_recv() else { break };
            size += more.size();
            group.push(more);
        }
        let done = commit(store, group, &wanted);
        if done.events || done.mail {
            journaled(done);
        }
    }
}

impl Job {
    /// How many events it journals, towards [`MAX_GROUP`].
    fn size(&self) -> usize {
        match self {
            Job::Journal(journal) => journal.events.len(),
            Job::Record(_) => 0,
        }
    }
}

/// What one transaction wrote: each journal's results in order, then each round's claim.
type Written = (Vec<Ingested>, Vec<Claimed>);

/// Journal the group's events, with the received mail of any job, and record the rounds, in
/// one transaction.
fn write(
    store: &mut Store,
    journals: &[Journal],
    settled: &[bool],
    records: &[Record],
) -> super::Result<Written> {
    let mut events = Vec::new();
    let mut mails = Vec::new();
    for journal in journals {
        if let Some(mail) = &journal.mail {
            mails.push((events.len(), mail));
        }
        events.extend(journal.events.iter());
    }
    store.immediate("cannot commit the journal", |tx| {
        let ingested = super::relay::journal(tx, &events, settled, &mails, Utc::now())?;
        let claimed = records
            .iter()
            .map(|r| super::outbox::record_round(tx, &r.round(), r.now, r.lease, false))
            .collect::<super::Result<Vec<_>>>()?;
        Ok((ingested, claimed))
    })
}

/// Write a group in one transaction and answer each job; what it journaled. When a group of
/// both kinds fails, each part is tried alone, so a journal's failure never fails a round.
fn commit(store: &mut Store, group: Vec<Job>, wanted: &impl Fn(&Event) -> bool) -> Journaled {
    let (mut journals, mut records) = (Vec::new(), Vec::new());
    for job in group {
        match job {
            Job::Journal(journal) => journals.push(journal),
            Job::Record(record) => records.push(record),
        }
    }
    let settled: Vec<bool> = journals
        .iter()
        .flat_map(|j| j.events.iter())
        .map(|event| !wanted(event))
        .collect();
    match write(store, &journals, &settled, &records) {
        Ok((ingested, claimed)) => {
            answer_records(records, Ok(claimed));
            answer_journals(journals, &settled, Ok(ingested))
        }
        Err(_) if !journals.is_empty() && !records.is_empty() => {
            let ingested = write(store, &journals, &settled, &[]);
            let journaled = answer_journals(
                journals,
                &settled,
                ingested.map(|(ingested, _)| ingested).map_err(account),
            );
            for record in records {
                let claimed = write(store, &[], &[], std::slice::from_ref(&record));
                answer_records(vec![record], claimed.map(|(_, c)| c).map_err(account));
            }
            journaled
        }
        Err(err) => {
            let account = account(err);
            answer_records(records, Err(account.clone()));
            answer_journals(journals, &settled, Err(account))
        }
    }
}

/// How a failed commit is told to its callers: the operator's account of a temporary failure.
fn account(err: super::StoreError) -> String {
    let err = anyhow::Error::from(err);
    super::temporary_failure(&err).unwrap_or_else(|| format!("{err:#}"))
}

fn answer_records(records: Vec<Record>, claimed: Result<Vec<Claimed>, String>) {
    match claimed {
        Ok(claimed) => {
            for (record, claimed) in records.into_iter().zip(claimed) {
                // A recorder that went away (its run ended) needs no answer.
                let _ = record.reply.send(Ok(claimed));
            }
        }
        Err(account) => {
            if !records.is_empty() {
                tracing::error!(
                    "cannot record {} delivery round(s): {account}",
                    records.len()
                );
            }
            for record in records {
                let _ = record.reply.send(Err(account.clone()));
            }
        }
    }
}

/// Answer each journal's caller with its own results; what the commit stored, for the bells.
fn answer_journals(
    journals: Vec<Journal>,
    settled: &[bool],
    ingested: Result<Vec<Ingested>, String>,
) -> Journaled {
    let mail = journals.iter().any(|j| j.mail.is_some());
    let count: usize = journals.iter().map(|j| j.events.len()).sum();
    let results = match ingested {
        Ok(results) => results,
        Err(account) => {
            if !journals.is_empty() {
                tracing::error!("cannot journal {count} event(s): {account}");
            }
            for journal in journals {
                let _ = journal.reply.send(Err(account.clone()));
            }
            return Journaled::default();
        }
    };
    // An empty group is a readiness probe, not an ingest commit.
    if count > 0 {
        crate::metrics::commit_batch(count);
    }
    let events = journals.iter().flat_map(|j| j.events.iter());
    for (event, result) in events.zip(&results) {
        let duplicate = matches!(result, Ingested::Duplicate(_));
        crate::metrics::event_received(&event.kind, duplicate);
    }
    let to_evaluate = results
        .iter()
        .zip(settled)
        .any(|(r, settled)| matches!(r, Ingested::New(_)) && !settled);
    let mut results = results.into_iter();
    for journal in journals {
        let mine = results.by_ref().take(journal.events.len()).collect();
        // A caller that went away (its connection closed) needs no answer.
        let _ = journal.reply.send(Ok(mine));
    }
    Journaled {
        events: to_evaluate,
        mail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> Event {
        let text = format!(
            r#"{{"id":"{id}","source":"s","type":"mail.received","data":{{"subject":"s"}}}}"#
        );
        crate::event::from_str(&text, Utc::now()).unwrap()
    }

    fn journal(id: &str, mail: Option<Inbound>) -> (Job, oneshot::Receiver<JournalAnswer>) {
        let (reply, answer) = oneshot::channel();
        let events = vec![event(id)];
        (
            Job::Journal(Journal {
                events,
                mail,
                reply,
            }),
            answer,
        )
    }

    type JournalAnswer = Result<Vec<Ingested>, String>;

    fn claim(claims: usize) -> (Job, oneshot::Receiver<Result<Claimed, String>>) {
        let (reply, answer) = oneshot::channel();
        let record = Record {
            attempts: vec![],
            sending: vec![],
            released: vec![],
            claims,
            now: Utc::now(),
            lease: Duration::from_secs(60),
            reply,
        };
        (Job::Record(record), answer)
    }

    /// A received mail relayed to `to`: one outbox row per recipient.
    fn mail(to: &[&str]) -> Inbound {
        Inbound {
            dedup: "d".into(),
            mail_from: "omero@example.org".into(),
            recipients: to.iter().map(|r| r.to_string()).collect(),
            received: "Received: by herald".into(),
            raw: b"Subject: s\r\n\r\nbody\r\n".to_vec(),
            subject: "s".into(),
            relay: true,
            keep_body: false,
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("herald.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn a_journal_and_a_round_waiting_together_are_both_answered_from_one_commit() {
        let (_dir, mut store) = store();
        let (job, _) = journal("first", Some(mail(&["a@example.org", "b@example.org"])));
        commit(&mut store, vec![job], &|_| false);
        let (journal_job, journaled) = journal("second", None);
        let (record_job, recorded) = claim(5);
        let done = commit(&mut store, vec![journal_job, record_job], &|_| true);
        assert!(done.events, "the new event waits for evaluation");
        assert!(matches!(
            journaled.blocking_recv().unwrap().unwrap()[..],
            [Ingested::New(_)]
        ));
        let claimed = recorded.blocking_recv().unwrap().unwrap();
        assert_eq!(claimed.rows.len(), 2, "both relay rows are leased");
    }

    #[test]
    fn a_journal_that_fails_does_not_fail_the_round_it_was_grouped_with() {
        let (_dir, mut store) = store();
        let (job, _) = journal("first", Some(mail(&["a@example.org"])));
        commit(&mut store, vec![job], &|_| false);
        store
            .conn
            .execute_batch(
                "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.id = 'poison'
                 BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
            )
            .unwrap();
        let (journal_job, journaled) = journal("poison", None);
        let (record_job, recorded) = claim(5);
        let done = commit(&mut store, vec![journal_job, record_job], &|_| true);
        assert!(!done.events && !done.mail, "nothing was journaled");
        let refused = journaled.blocking_recv().unwrap().unwrap_err();
        assert!(refused.contains("poisoned"), "{refused}");
        let claimed = recorded.blocking_recv().unwrap().unwrap();
        assert_eq!(claimed.rows.len(), 1, "the round was committed alone");
        let (job, again) = journal("poison", None);
        commit(&mut store, vec![job], &|_| true);
        assert!(
            again.blocking_recv().unwrap().is_err(),
            "still refused alone"
        );
    }
}
