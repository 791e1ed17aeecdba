//! `herald serve`: one process that wires the HTTP source, the group-commit writer, evaluation and delivery.
//!
//! Threads: the store writer (ingest and delivery outcomes, group commit), evaluation
//! (wasm rules, never a tokio worker), delivery (the `Deliverer`, whose recorder commits
//! through the writer), and a tokio runtime for the HTTP API. SIGTERM or SIGINT stops
//! accepting, lets requests, evaluations and SMTP sessions in flight finish within
//! `serve.shutdown_grace`, and leaves the rest queued in the store.

pub mod admin;
mod api;
pub mod live;
pub mod reload;
pub mod signals;
mod sources;
mod stages;
pub(crate) mod wake;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::deliver::{Deliverer, shutdown};
use crate::evaluate::Evaluator;
use crate::sources::Feed;
use crate::sources::http::auth::Tokens;
use crate::sources::http::{self, Ingest};
use crate::sources::readiness::Readiness;
use crate::store::Store;
use crate::store::writer::Writer;
use api::Api;
use live::{Live, RuleSet};
use reload::{Loader, Reloader};
use signals::Signals;
use stages::Bells;
use tokio::signal::unix::Signal;

/// What `herald serve` runs with: built before the config is read, so signals are caught from the start.
pub struct Process {
    pub runtime: tokio::runtime::Runtime,
    pub signals: Signals,
}

impl Process {
    pub fn new() -> anyhow::Result<Process> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("herald-io")
            .enable_all()
            .build()
            .context("cannot start the HTTP runtime")?;
        let signals = Signals::install(&runtime)?;
        Ok(Process { runtime, signals })
    }
}

/// Run until SIGTERM or SIGINT. `deliverer` is `None` when sending is disabled (`mail.from: ""`);
/// `loader` builds a fresh rule set from disk at each reload (SIGHUP, `POST /v1/admin/reload`).
pub fn run(
    process: Process,
    config: &Config,
    tokens: Tokens,
    evaluator: Evaluator,
    deliverer: Option<Deliverer>,
    loader: Loader,
) -> anyhow::Result<()> {
    let Process { runtime, signals } = process;
    let tls = config
        .http
        .tls
        .as_ref()
        .map(|tls| crate::sources::tls::server_config(tls, "http"))
        .transpose()?;
    let bells = Arc::new(Bells::default());
    let journaled = bells.clone();
    let live = Arc::new(Live::new(RuleSet {
        config: Arc::new(config.clone()),
        evaluator: Arc::new(evaluator),
    }));
    let rules = live.clone();
    // An event no rule in force wants is journaled as evaluated. New events wake evaluation;
    // received mail's relay rows are queued already: wake delivery.
    let (writer, writer_thread) = Writer::spawn(
        open(config)?,
        move |event| rules.current().evaluator.wants(event),
        move |done| {
            if done.events {
                journaled.journaled.ring();
            }
            if done.mail {
                journaled.queued.ring();
            }
        },
    )
    .context("cannot start the store writer")?;
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let feed = Feed {
        writer: writer.clone(),
        readiness: Readiness::default(),
        stop: shutdown::global(),
        stopping,
        runtime: runtime.handle().clone(),
    };
    let mut workers = vec![spawn("herald-evaluate", {
        let (store, bells, live) = (open(config)?, bells.clone(), live.clone());
        move || stages::evaluate(store, live, bells)
    })?];
    // None when mail.from is empty: mail stays queued (the CLI said so).
    if let Some(deliverer) = deliverer {
        workers.push(spawn("herald-deliver", {
            let (store, bells, poll) =
                (open(config)?, bells.clone(), config.delivery.poll_interval);
            let deliverer = deliverer
                .with_stop(shutdown::global(), config.serve.shutdown_grace)
                .keep_sessions(KEEP_SESSIONS)
                .record_through(writer.clone());
            move || stages::deliver(store, deliverer, poll, bells)
        })?);
    }
    workers.extend(sources::start(config, &feed, &live)?);
    let ingest = Arc::new(Ingest {
        writer,
        max_body: config.http.max_body,
        types: config.ingest.clone(),
    });
    let api = Arc::new(Api {
        store: Arc::new(Mutex::new(open(config)?)),
        writer: ingest.writer.clone(),
        live: live.clone(),
        reloader: Arc::new(Reloader::new(live, loader)),
        started: Instant::now(),
    });
    let reader = open(config)?;
    let (hangup, stop) = signals.split();
    let served = runtime.block_on(serve_http(
        Listening {
            listen: config.http.listen,
            tls,
        },
        Services {
            ingest,
            reader,
            api,
            tokens: Arc::new(tokens),
            readiness: feed.readiness.clone(),
        },
        (hangup, stop),
    ));
    // Stop the stages (a failed bind stops them too), then wait for them within the grace.
    shutdown::global().store(true, Ordering::SeqCst);
    let _ = stopping_tx.send(true);
    bells.ring_all();
    drop(feed);
    let deadline = Instant::now() + config.serve.shutdown_grace + Duration::from_secs(1);
    for worker in workers {
        join_until(worker, deadline);
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    join_until(writer_thread, deadline);
    crate::store::sync_written_commits();
    served
}

/// How long an SMTP session stays open between delivery rounds (servers time out idle
/// sessions after minutes; Postfix after 300 s, or 10 s under stress).
const KEEP_SESSIONS: Duration = Duration::from_secs(30);

fn open(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::open(&config.store.path)?)
}

fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> anyhow::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(work)
        .with_context(|| format!("cannot start the {name} thread"))
}

/// Wait for `thread` until `deadline`; past it, leave it (its uncommitted work stays queued).
fn join_until(thread: JoinHandle<()>, deadline: Instant) {
    while !thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if thread.is_finished() {
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    } else {
        tracing::warn!("a stage did not finish within serve.shutdown_grace; its work stays queued");
    }
}

/// Where the API listens, and its TLS when `http.cert_file`/`key_file` are set.
struct Listening {
    listen: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// What the API's routes serve.
struct Services {
    ingest: Arc<Ingest>,
    reader: Store,
    api: Arc<Api>,
    tokens: Arc<Tokens>,
    readiness: Readiness,
}

/// Serve the API until a signal; requests in flight are finished first.
async fn serve_http(
    listening: Listening,
    services: Services,
    (hangup, stop): (Signal, signals::Stop),
) -> anyhow::Result<()> {
    let Services {
        ingest,
        reader,
        api,
        tokens,
        readiness,
    } = services;
    let listener = bind(listening.listen).await?;
    tokio::spawn(reload::on_sighup(hangup, api.reloader.clone()));
    let admin = admin::routes(ingest.writer.clone(), readiness, reader, tokens.clone());
    let app = admin
        .merge(api::routes(api, tokens.clone()))
        .merge(http::routes(ingest, tokens));
    let local = listener.local_addr()?;
    let stopped = async move {
        stop.received().await;
        eprintln!(
            "herald serve: stopping (requests, evaluations and sessions in flight finish first)"
        );
        shutdown::global().store(true, Ordering::SeqCst);
    };
    let served = match listening.tls {
        Some(config) => {
            let listener = http::tls::TlsListener::new(listener, config)?;
            eprintln!("herald serve: listening on https://{local}");
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
        None => {
            eprintln!("herald serve: listening on http://{local}");
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
    };
    served.context("the HTTP server failed")
}

async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen).await.with_context(|| {
        format!("cannot listen on {listen} (http.listen); is something else listening there?")
    })
}
