//! Sessions kept open between the delivery rounds of `herald serve`, so a steady trickle of mail does not reconnect each round.
//!
//! A session goes back here when its round has no more rows, and the next round's
//! lanes take the freshest one before opening another. One older than `keep_for`
//! is closed instead. A kept session the server has meanwhile closed fails its next
//! command before any message data; the lane then opens a fresh session and sends
//! that row again at once (see `workers.rs`).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Idle sessions, newest last.
pub struct IdleSessions<S> {
    slots: Mutex<Vec<(S, Instant)>>,
    /// `None`: sessions are closed at the end of each round (one-shot commands).
    keep_for: Option<Duration>,
}

impl<S> IdleSessions<S> {
    pub fn new(keep_for: Option<Duration>) -> Self {
        IdleSessions {
            slots: Mutex::new(Vec::new()),
            keep_for,
        }
    }

    pub fn set_keep_for(&mut self, keep_for: Option<Duration>) {
        self.keep_for = keep_for;
    }

    /// The freshest session still within `keep_for`, and the ones too old, to close.
    pub fn take(&self) -> (Option<S>, Vec<S>) {
        let Some(keep_for) = self.keep_for else {
            return (None, Vec::new());
        };
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let (fresh, stale): (Vec<_>, Vec<_>) = std::mem::take(&mut *slots)
            .into_iter()
            .partition(|(_, since)| since.elapsed() < keep_for);
        *slots = fresh;
        let taken = slots.pop().map(|(session, _)| session);
        (
            taken,
            stale.into_iter().map(|(session, _)| session).collect(),
        )
    }

    /// Keep `session` for the next round; it comes back when sessions are not kept.
    pub fn put(&self, session: S) -> Option<S> {
        if self.keep_for.is_none() {
            return Some(session);
        }
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((session, Instant::now()));
        None
    }

    /// Every kept session, to close.
    pub fn drain(&self) -> Vec<S> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *slots)
            .into_iter()
            .map(|(session, _)| session)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_freshest_is_taken_and_stale_ones_come_back_to_close() {
        let idle = IdleSessions::new(Some(Duration::from_millis(50)));
        assert_eq!(idle.put("old"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(idle.put("a"), None);
        assert_eq!(idle.put("b"), None);
        assert_eq!(idle.take(), (Some("b"), vec!["old"]));
        assert_eq!(idle.take(), (Some("a"), vec![]));
        assert_eq!(idle.take(), (None, vec![]));
    }

    #[test]
    fn without_keep_for_nothing_is_kept() {
        let idle = IdleSessions::new(None);
        assert_eq!(idle.put("s"), Some("s"));
        assert_eq!(idle.take(), (None, vec![]));
        assert!(idle.drain().is_empty());
    }
}
