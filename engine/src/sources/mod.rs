//! Sources: everything that produces events and hands them to ingest (so far: the HTTP API).

pub mod http;
