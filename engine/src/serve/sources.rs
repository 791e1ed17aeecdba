//! Starts the long-running event sources of `herald serve` (the scheduler, and any configured source).

use std::sync::Arc;
use std::thread::JoinHandle;

use super::live::Live;
use crate::config::Config;
use crate::sources::{Feed, schedule, smtp};
use crate::store::Store;

/// Start every source; each registers its readiness part with `feed` before this returns.
pub fn start(
    config: &Config,
    feed: &Feed,
    live: &Arc<Live>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut threads = vec![start_schedule(config, feed, live)?];
    threads.extend(start_smtp_listener(config, feed, live)?);
    Ok(threads)
}

/// The SMTP listener, when `smtp_listener` is configured; it reads the directory in force.
fn start_smtp_listener(
    config: &Config,
    feed: &Feed,
    live: &Arc<Live>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let Some(listener) = &config.smtp_listener else {
        return Ok(Vec::new());
    };
    let live = live.clone();
    let directory: smtp::DirectorySource =
        Arc::new(move || live.current().evaluator.directory().clone());
    smtp::start(listener, &config.store.path, feed, directory)
}

/// The scheduler always runs, so that a reload that adds a schedule takes effect at once.
fn start_schedule(
    config: &Config,
    feed: &Feed,
    live: &Arc<Live>,
) -> anyhow::Result<JoinHandle<()>> {
    let (store, writer, live) = (
        Store::open(&config.store.path)?,
        feed.writer.clone(),
        live.clone(),
    );
    let (ready, stop) = (feed.readiness.part("schedule"), feed.stop);
    super::spawn("herald-schedule", move || {
        let current = || {
            // The generation first: a swap in between is then seen as a change next time.
            let generation = live.generation();
            (generation, live.current().config.clone())
        };
        if let Err(err) = schedule::run(&current, store, writer, stop, &ready) {
            ready.failing(format!("{err:#}"));
            tracing::error!("the scheduler stopped: {err:#}");
        }
    })
}
