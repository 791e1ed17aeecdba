//! Crash points for the crash tests: `HERALD_CRASH_AT=<point>` makes the process SIGKILL itself there.
//!
//! This is how the tests stop the real binary at an exact moment (just after a
//! journal commit, before an outbox commit, between an SMTP reply and marking
//! the row sent). Unset, it costs one cached comparison per point.

use std::sync::OnceLock;

/// The points a crash test may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// Just after an ingest transaction committed, before it is acknowledged.
    AfterJournal,
    /// Rules ran; their outbox rows are not committed yet.
    BeforeEvaluationCommit,
    /// A server replied; the outcome is not recorded yet.
    BeforeDeliveryRecord,
}

impl Point {
    /// The name `HERALD_CRASH_AT` uses.
    pub fn name(self) -> &'static str {
        match self {
            Point::AfterJournal => "after-journal",
            Point::BeforeEvaluationCommit => "before-evaluation-commit",
            Point::BeforeDeliveryRecord => "before-delivery-record",
        }
    }
}

/// Kill the process with SIGKILL if `HERALD_CRASH_AT` names `point`.
pub fn reached(point: Point) {
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    let wanted = WANTED.get_or_init(|| std::env::var("HERALD_CRASH_AT").ok());
    let point = point.name();
    if wanted.as_deref() == Some(point) {
        eprintln!("crash point {point}: killing this process (HERALD_CRASH_AT)");
        // SAFETY: kill(2) on our own pid with a valid signal number.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
