//! Sources: everything that produces events and hands them to ingest (the HTTP API, the scheduler, OMERO).

pub mod http;
pub mod omero;
pub mod readiness;
pub mod schedule;
pub mod smtp;
pub mod tls;

use std::sync::atomic::AtomicBool;

use crate::store::writer::Writer;
use readiness::Readiness;

/// What `herald serve` hands every long-running source.
#[derive(Clone)]
pub struct Feed {
    /// Journals events with group commit and answers once they are durable.
    pub writer: Writer,
    /// Where a source registers the part `/readyz` waits for.
    pub readiness: Readiness,
    /// Set at SIGTERM/SIGINT: take no new input, finish what is in flight.
    pub stop: &'static AtomicBool,
    /// Changes to `true` at the same moment as `stop`, for sources that wait on tokio.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// The service's tokio runtime, for sources that run as tasks.
    pub runtime: tokio::runtime::Handle,
}

impl Feed {
    /// Resolves once a stop is asked for.
    pub async fn stopped(&self) {
        let mut stopping = self.stopping.clone();
        // An error means the sender is gone: the process is stopping anyway.
        let _ = stopping.wait_for(|stop| *stop).await;
    }
}
