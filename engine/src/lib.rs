//! Herald: OMERO server events in, sandboxed wasm rules decide, a durable outbox delivers the mail.
//!
//! The pipeline, one module per stage: [`ingest`] → [`store`] (journal) →
//! [`evaluate`] (wasm rules) → [`store`] (outbox) → [`deliver`].

pub mod builtin;
pub mod cli;
pub mod config;
pub(crate) mod crashpoint;
pub mod deliver;
pub mod directory;
pub mod evaluate;
pub mod event;
pub(crate) mod ingest;
pub mod mail;
pub mod manage;
pub(crate) mod memory;
pub mod metrics;
pub mod pipeline;
pub mod serve;
pub mod sources;
pub mod store;
