//! The hold on a message's final `.`: its bytes wait in the stream until the session's previous outcome is committed.
//!
//! A session writes the next message's envelope and body while the recorder commits
//! the outcome of the message before it; only the final `.` must wait, because once the
//! server has it the message may be delivered. [`Capped`](super::capped::Capped) asks the
//! hold what to do with each write: while a body is being written, writes are gathered
//! (the body and the `.` then leave in one write); after the body, they wait for the
//! verdict. A release sends them; a refusal drops them, and the session with them, so the
//! server never sees the end of that message.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

/// Bytes gathered while a body is written before they are sent anyway (the body may be large).
pub const GATHER_MAX: usize = 64 * 1024;

/// Shared by one session and its stream.
#[derive(Debug, Default)]
pub struct Hold {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    stage: Stage,
    /// Whether the gathered bytes may leave: unknown yet, yes, or never.
    verdict: Option<bool>,
    /// The stream's task, waiting for the verdict.
    waiter: Option<Waker>,
    /// Every gathered byte was handed to the kernel (so the server may have the `.`).
    sent: bool,
}

/// Where the current message is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stage {
    /// No message body in progress: writes go straight out.
    #[default]
    Idle,
    /// The body is being written: writes are gathered, up to [`GATHER_MAX`].
    Body,
    /// The body is written: what follows (the `.`) waits for the verdict.
    Dot,
}

/// What the stream should do with bytes it has gathered, when it is asked to read.
#[derive(Debug, PartialEq, Eq)]
pub enum Gathered {
    /// Send them, then read.
    Send,
    /// Wait: the verdict is not known yet (the waker is kept).
    Wait,
    /// Never send them: the session is being given up.
    Drop,
}

impl Hold {
    pub fn new() -> Arc<Hold> {
        Arc::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A body starts; `verdict` is known already when nothing has to be waited for.
    pub fn begin(&self, verdict: Option<bool>) {
        *self.lock() = State {
            stage: Stage::Body,
            verdict,
            waiter: None,
            sent: false,
        };
    }

    /// The body is written; the `.` comes next.
    pub fn body_written(&self) {
        self.lock().stage = Stage::Dot;
    }

    /// The previous outcome is committed (`true`), or the store failed (`false`).
    pub fn decide(&self, release: bool) {
        let mut state = self.lock();
        state.verdict = Some(release);
        if let Some(waker) = state.waiter.take() {
            waker.wake();
        }
    }

    /// The message is over, whatever happened: writes go straight out again.
    pub fn end(&self) -> bool {
        let mut state = self.lock();
        let sent = state.sent;
        *state = State::default();
        sent
    }

    pub fn stage(&self) -> Stage {
        self.lock().stage
    }

    /// Asked by the stream before it reads, holding gathered bytes.
    pub fn gathered(&self, waker: &Waker) -> Gathered {
        let mut state = self.lock();
        if state.stage != Stage::Dot {
            return Gathered::Send;
        }
        match state.verdict {
            Some(true) => Gathered::Send,
            Some(false) => Gathered::Drop,
            None => {
                state.waiter = Some(waker.clone());
                Gathered::Wait
            }
        }
    }

    /// Every gathered byte is with the kernel now.
    pub fn mark_sent(&self) {
        let mut state = self.lock();
        if state.stage == Stage::Dot {
            state.sent = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dot_waits_for_the_verdict_and_a_refusal_drops_it() {
        let hold = Hold::new();
        let waker = Waker::noop();
        hold.begin(None);
        assert_eq!(hold.gathered(waker), Gathered::Send, "a body alone may go");
        hold.body_written();
        assert_eq!(hold.gathered(waker), Gathered::Wait);
        hold.decide(false);
        assert_eq!(hold.gathered(waker), Gathered::Drop);
        assert!(!hold.end(), "nothing was sent");
        assert_eq!(hold.stage(), Stage::Idle);
    }

    #[test]
    fn a_release_sends_and_is_remembered() {
        let hold = Hold::new();
        hold.begin(Some(true));
        hold.body_written();
        assert_eq!(hold.gathered(Waker::noop()), Gathered::Send);
        hold.mark_sent();
        assert!(hold.end());
    }
}
