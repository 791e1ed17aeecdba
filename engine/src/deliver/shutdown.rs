//! SIGTERM and SIGINT: stop taking new rows, let sessions in flight finish within a grace period.
//!
//! The handler only sets a flag (async-signal-safe); the delivery loop reads it
//! between messages. A second signal gets the default action (the process dies),
//! which is still safe: a dead holder's leases are reclaimed at once on this host.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long sessions in flight may take to finish once a stop was asked for.
pub const GRACE: Duration = Duration::from_secs(10);

static STOP: AtomicBool = AtomicBool::new(false);

/// The flag the signal handler sets.
pub fn global() -> &'static AtomicBool {
    &STOP
}

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Catch SIGTERM and SIGINT (once each; a second one kills as usual).
pub fn install() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction with a handler that only stores to an atomic, and
        // SA_RESETHAND so the next signal gets the default action.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Whether a stop was asked for (by a signal, unless `flag` is a test's own).
pub fn requested(flag: &AtomicBool) -> bool {
    flag.load(Ordering::SeqCst)
}

/// Resolves `grace` after a stop was asked for; never before.
pub async fn grace_expired(flag: &AtomicBool, grace: Duration) {
    while !requested(flag) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(grace).await;
}

/// Sleep up to `total`, waking early when a stop is asked for.
pub fn sleep(flag: &AtomicBool, total: Duration) {
    let step = Duration::from_millis(50);
    let mut left = total;
    while !requested(flag) && !left.is_zero() {
        let now = step.min(left);
        std::thread::sleep(now);
        left -= now;
    }
}
