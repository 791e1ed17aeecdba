//! Delivery sessions on tokio tasks: each holds a row and the next from the recorder, and sends them.
//!
//! One session opens first; only once it is up do the others start, so a server
//! that is down or refuses the login costs one connection, and every further row
//! of the run is reported "not attempted" (kept) rather than tried again.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use super::recorder::{Reply, Request};
use super::shutdown;
use super::smtp::{Class, Job, Report};
use super::transport::{Session, Transport, not_released};
use crate::store::{Attempt, Held, OutboxRow};

/// The first failure to open a session in this run; later rows needing a session are not tried.
type Down = Arc<Mutex<Option<Report>>>;

/// Run the sessions until nothing is due, a stop is asked for, or the store fails.
pub async fn run<T: Transport>(shared: Arc<Shared<T>>, requests: mpsc::UnboundedSender<Request>) {
    let down: Down = Arc::default();
    let (opened, first_opened) = oneshot::channel();
    let mut sessions = tokio::task::JoinSet::new();
    let first = Lane::new(&shared, &requests, &down, Some(opened));
    sessions.spawn(first.run());
    if first_opened.await == Ok(true) {
        for _ in 1..shared.transport.max_sessions() {
            sessions.spawn(Lane::new(&shared, &requests, &down, None).run());
        }
    }
    drop(requests);
    while let Some(joined) = sessions.join_next().await {
        if let Err(err) = joined {
            tracing::error!(%err, "a delivery session failed; its row comes back when its lease ends");
        }
    }
}

/// One session's loop and what it shares.
struct Lane<T: Transport> {
    shared: Arc<Shared<T>>,
    requests: mpsc::UnboundedSender<Request>,
    down: Down,
    /// Set on the first lane: told whether its session opened.
    opened: Option<oneshot::Sender<bool>>,
    /// The first lane marks rows "not attempted" once opening failed; the others stop.
    first: bool,
    session: Option<T::Session>,
}

impl<T: Transport> Lane<T> {
    fn new(
        shared: &Arc<Shared<T>>,
        requests: &mpsc::UnboundedSender<Request>,
        down: &Down,
        opened: Option<oneshot::Sender<bool>>,
    ) -> Lane<T> {
        Lane {
            shared: shared.clone(),
            requests: requests.clone(),
            down: down.clone(),
            first: opened.is_some(),
            opened,
            session: None,
        }
    }

    /// Send rows until none is due, a stop is asked for, or the store fails. The session
    /// holds the row it sends and the next one; each round with the recorder commits the
    /// previous outcome while the next message's envelope and body are written.
    async fn run(mut self) {
        let mut held: VecDeque<OutboxRow> = VecDeque::new();
        let mut done: Option<Attempt> = None;
        loop {
            if shutdown::requested(self.shared.stop) || self.gave_up() {
                let released = held.drain(..).map(|row| Held::of(&row)).collect();
                let _ = ask(&self.requests, done.take(), None, released, 0).await;
                break;
            }
            let next = held.pop_front();
            let want = HELD - held.len() - usize::from(next.is_some());
            let sending = next.as_ref().map(Held::of);
            let ack = ask(&self.requests, done.take(), sending, Vec::new(), want);
            let Some(row) = next else {
                match ack.await {
                    Ok(Reply::Rows { rows, .. }) if !rows.is_empty() => held.extend(rows),
                    _ => break,
                }
                continue;
            };
            let (report, reply) = self.deliver(&row, ack).await;
            let Reply::Rows { rows, .. } = reply else {
                break;
            };
            held.extend(rows);
            done = Some(self.shared.attempt(&row, Utc::now(), report));
        }
        self.tell_opened(false);
        if let Some(session) = self.session.take() {
            let closing = if shutdown::requested(self.shared.stop) {
                Some(session)
            } else {
                self.shared.idle.put(session)
            };
            if let Some(session) = closing {
                session.close().await;
            }
        }
    }

    /// A lane other than the first stops once opening a session failed.
    fn gave_up(&self) -> bool {
        !self.first && self.session.is_none() && lock(&self.down).is_some()
    }

    /// Send one row while `ack` (the round that marks it as being sent) commits; its final
    /// `.` goes only once the round is committed and the row's lease still holds.
    async fn deliver(&mut self, row: &OutboxRow, ack: Ack) -> (Report, Reply) {
        let (verdict, gate) = oneshot::channel();
        let answered = async move {
            let reply = ack.await.unwrap_or(Reply::Failed);
            let _ = verdict.send(matches!(reply, Reply::Rows { go: true, .. }));
            reply
        };
        let gate = async move { gate.await.unwrap_or(false) };
        let (report, reply) = tokio::join!(self.send(row, gate), answered);
        match reply {
            Reply::Rows { go: false, .. } => (not_released(), reply),
            _ => (report, reply),
        }
    }

    /// Render and send one row, its end held until `gate`; the report says what happened.
    async fn send(&mut self, row: &OutboxRow, gate: impl Future<Output = bool> + Send) -> Report {
        let job = match render_job(&self.shared, row) {
            Ok(job) => job,
            Err(report) => return report,
        };
        if self.session.is_none()
            && let Err(report) = self.open().await
        {
            return report;
        }
        let Some(session) = self.session.as_mut() else {
            return Report::failed(Class::Transient, "no session".into());
        };
        let stop = self.shared.stop;
        let sent = tokio::select! {
            sent = session.send_gated(&row.key, &job, gate) => sent,
            () = shutdown::grace_expired(stop, self.shared.grace) => Err(abandoned(self.shared.grace)),
        };
        sent.unwrap_or_else(|report| {
            // A failed or abandoned session is dropped (closing its connection), never reused.
            self.session = None;
            report
        })
    }

    async fn open(&mut self) -> Result<(), Report> {
        if let Some(first) = lock(&self.down).clone() {
            return Err(not_attempted(first));
        }
        if let Some(session) = kept(&self.shared).await {
            self.session = Some(session);
            self.tell_opened(true);
            return Ok(());
        }
        match self.shared.transport.open().await {
            Ok(session) => {
                self.session = Some(session);
                self.tell_opened(true);
                Ok(())
            }
            Err(report) => {
                lock(&self.down).get_or_insert_with(|| report.clone());
                self.tell_opened(false);
                Err(report)
            }
        }
    }

    fn tell_opened(&mut self, opened: bool) {
        if let Some(tell) = self.opened.take() {
            let _ = tell.send(opened);
        }
    }
}

/// A session kept from an earlier round that still answers; stale or dead ones are closed.
async fn kept<T: Transport>(shared: &Shared<T>) -> Option<T::Session> {
    loop {
        let (kept, stale) = shared.idle.take();
        for session in stale {
            session.close().await;
        }
        let mut session = kept?;
        if session.alive().await {
            return Some(session);
        }
        tracing::debug!("a session kept open between rounds is gone; trying the next");
    }
}

/// Rows a session holds at most: the one it sends and the next.
const HELD: usize = 2;

/// The answer to a request, once its round is committed.
type Ack = oneshot::Receiver<Reply>;

/// Send a request to the recorder; the answer comes once its round is committed.
fn ask(
    requests: &mpsc::UnboundedSender<Request>,
    done: Option<Attempt>,
    sending: Option<Held>,
    released: Vec<Held>,
    want: usize,
) -> Ack {
    let (reply, answer) = oneshot::channel();
    // A recorder that is gone drops the request, and the answer reads as `Failed`.
    let _ = requests.send(Request {
        done,
        sending,
        released,
        want,
        reply,
    });
    answer
}

/// The envelope of a row; rendering never takes the run down, even on a panic.
fn render_job<T: Transport>(shared: &Shared<T>, row: &OutboxRow) -> Result<Job, Report> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| shared.job(row))) {
        Ok(Ok(job)) => Ok(job),
        Ok(Err(err)) => Err(Report::failed(Class::Transient, format!("{err:#}"))),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Report::failed(
                Class::Transient,
                format!("rendering the message failed (a bug in Herald): {what}"),
            ))
        }
    }
}

/// The report of a send cut short by a stop whose grace period ran out.
fn abandoned(grace: std::time::Duration) -> Report {
    Report::failed(
        Class::Ambiguous,
        format!(
            "herald was asked to stop (SIGTERM/SIGINT) and the session did not finish within {}; \
             the server may have the message, so it is retried with the same Message-ID",
            humantime::format_duration(grace)
        ),
    )
}

/// A message left untried because the server already failed in this run: kept for retry.
pub fn not_attempted(first: Report) -> Report {
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

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
