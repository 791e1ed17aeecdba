//! Starts the long-running event sources of `herald serve` (the scheduler, and any configured source).

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::live::{Live, RuleSet};
use crate::config::{Config, DirectorySource, SourceConfig};
use crate::directory::Directory;
use crate::evaluate::Evaluator;
use crate::sources::omero::{blitz, directory, eventlog, logfile, probe, weblog};
use crate::sources::{Feed, schedule, smtp};
use crate::store::Store;

/// Start every source; each registers its readiness part with `feed` before this returns.
pub fn start(
    config: &Config,
    feed: &Feed,
    live: &Arc<Live>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let directory_changed = start_directory(config, feed, live);
    let mut threads = Vec::new();
    for source in &config.sources {
        threads.extend(start_omero(config, source, feed, &directory_changed)?);
    }
    threads.push(start_schedule(config, feed, live)?);
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

/// Where the eventlog source asks for a directory refresh (and is answered once it is in force).
type Refresh = Option<mpsc::Sender<oneshot::Sender<()>>>;

/// With `directory.source: omero-db`, refresh the directory on a period and on eventlog changes.
fn start_directory(config: &Config, feed: &Feed, live: &Arc<Live>) -> Refresh {
    let DirectorySource::OmeroDb { db, refresh } = &config.directory.source else {
        return None;
    };
    let (requests, asked) = mpsc::channel(16);
    let refresher = directory::Refresher {
        db: db.clone(),
        every: *refresh,
        store: config.store.path.clone(),
        ready: feed.readiness.part("directory"),
        requests: asked,
        apply: Arc::new(swap_directory(live.clone())),
        current: directory::stored(&config.store.path),
    };
    feed.runtime.spawn(refresher.run(feed.clone()));
    Some(requests)
}

/// Puts a directory in force: the rule set in force, compiled again around it, swapped whole.
fn swap_directory(live: Arc<Live>) -> impl Fn(Directory) + Send + Sync {
    move |directory| {
        let current = live.current();
        match Evaluator::new(&current.config, Arc::new(directory)) {
            Ok(evaluator) => live.swap(RuleSet {
                config: current.config.clone(),
                evaluator: Arc::new(evaluator),
            }),
            Err(err) => tracing::error!("the new directory is not in force: {err:#}"),
        }
    }
}

/// Start one configured OMERO source: a task of the service's runtime, or a thread for a log file.
fn start_omero(
    config: &Config,
    source: &SourceConfig,
    feed: &Feed,
    directory_changed: &Refresh,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    match source {
        SourceConfig::Eventlog(eventlog) => {
            let source = eventlog::Eventlog {
                config: eventlog.clone(),
                feed: feed.clone(),
                store: Arc::new(Mutex::new(Store::open(&config.store.path)?)),
                ready: feed.readiness.part(eventlog::NAME),
                directory: directory_changed.clone(),
            };
            feed.runtime.spawn(source.run());
        }
        SourceConfig::Log(log) => {
            let lines = Box::new(blitz::BlitzLines {
                server: log.server.clone(),
                logins: blitz::Logins::default(),
            });
            let uri = format!("omero-log://{}{}", log.server, log.path.display());
            let source = log_source(
                config,
                source,
                feed,
                (&log.path, uri),
                log.poll,
                log.timezone.as_deref(),
                lines,
            )?;
            return Ok(Some(super::spawn("herald-omero-log", move || {
                source.run()
            })?));
        }
        SourceConfig::WebLog(log) => {
            let lines = Box::new(weblog::WebLines {
                host: log.server.clone(),
            });
            let uri = format!("omero-web-log://{}{}", log.server, log.path.display());
            let source = log_source(
                config,
                source,
                feed,
                (&log.path, uri),
                log.poll,
                log.timezone.as_deref(),
                lines,
            )?;
            return Ok(Some(super::spawn("herald-omero-web-log", move || {
                source.run()
            })?));
        }
        SourceConfig::Probe(probe) => {
            let name = source.name();
            let source = probe::Probe {
                config: probe.clone(),
                ready: feed.readiness.part(name.clone()),
                name,
                feed: feed.clone(),
                store: Arc::new(Mutex::new(Store::open(&config.store.path)?)),
            };
            feed.runtime.spawn(source.run());
        }
    }
    Ok(None)
}

/// A log file source: the file and the CloudEvents `source` of its events.
fn log_source(
    config: &Config,
    source: &SourceConfig,
    feed: &Feed,
    (path, uri): (&std::path::Path, String),
    poll: std::time::Duration,
    zone: Option<&str>,
    lines: Box<dyn logfile::Lines>,
) -> anyhow::Result<logfile::LogSource> {
    let name = source.name();
    Ok(logfile::LogSource {
        ready: feed.readiness.part(name.clone()),
        source: uri,
        name,
        path: path.to_owned(),
        poll,
        zone: logfile::zone(zone)?,
        feed: feed.clone(),
        store: Store::open(&config.store.path)?,
        lines,
    })
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
