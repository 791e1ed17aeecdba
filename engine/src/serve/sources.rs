//! Starts the long-running event sources of `herald serve` (the scheduler, and any configured source).

use std::sync::Arc;
use std::thread::JoinHandle;

use super::live::Live;
use crate::config::Config;
use crate::sources::{Feed, schedule};
use crate::store::Store;

/// Start every source; each registers its readiness part with `feed` before this returns.
pub fn start(
    config: &Config,
    feed: &Feed,
    live: &Arc<Live>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    Ok(vec![start_schedule(config, feed, live)?])
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
