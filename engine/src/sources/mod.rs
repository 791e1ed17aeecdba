//! Sources: everything that produces events and hands them to ingest (the HTTP API, the scheduler).

pub mod http;
pub mod schedule;
