//! Crash points for the crash tests: `HERALD_CRASH_AT=<point>` makes the process SIGKILL itself there.
//!
//! This is how the tests stop the real binary at an exact moment (just after a
//! journal commit, before an outbox commit, between an SMTP reply and marking
//! the row sent). Unset, it costs one cached comparison per point.

use std::sync::OnceLock;

/// The points a crash test may name.
pub const POINTS: &[&str] = &[
    "after-journal",
    "before-evaluation-commit",
    "before-delivery-record",
];

/// Kill the process with SIGKILL if `HERALD_CRASH_AT` names `point`.
pub fn reached(point: &str) {
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    let wanted = WANTED.get_or_init(|| std::env::var("HERALD_CRASH_AT").ok());
    if wanted.as_deref() == Some(point) {
        eprintln!("crash point {point}: killing this process (HERALD_CRASH_AT)");
        // SAFETY: kill(2) on our own pid with a valid signal number.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
