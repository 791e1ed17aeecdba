//! A wake-up call between threads: one side rings, the other sleeps until rung or a timeout.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// Rung when there is work; a ring while nobody waits is kept for the next wait.
#[derive(Default)]
pub struct Wake {
    rung: Mutex<bool>,
    bell: Condvar,
}

impl Wake {
    /// Say there is work.
    pub fn ring(&self) {
        *self.rung.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.bell.notify_all();
    }

    /// Sleep until rung or `timeout` passed; clears the ring.
    pub fn wait(&self, timeout: Duration) {
        let rung = self.rung.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut rung, _) = self
            .bell
            .wait_timeout_while(rung, timeout, |rung| !*rung)
            .unwrap_or_else(PoisonError::into_inner);
        *rung = false;
    }
}
