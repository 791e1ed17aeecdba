//! The SMTP listener of `herald serve`: OMERO's own mail, journaled before the 250, relayed and read as events.

mod accept;
pub mod recognise;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

pub use accept::{Acceptor, DirectorySource};

use super::Feed;
use crate::config::{PasswordSource, SmtpListenerConfig};
use crate::store::Store;

/// How often bodies that may go are looked for.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// What every session of one listener shares.
pub(crate) struct Shared {
    pub(crate) config: SmtpListenerConfig,
    pub(crate) acceptor: Acceptor,
    pub(crate) tls: Option<TlsAcceptor>,
    /// Who may log in, with the passwords read at start; empty: no AUTH, no login needed.
    pub(crate) logins: Vec<Login>,
}

/// One login: a user name and its password.
pub(crate) struct Login {
    pub(crate) username: String,
    pub(crate) password: Vec<u8>,
}

/// Read the password of each `smtp_listener.auth` user, naming the key that fails.
fn read_logins(config: &SmtpListenerConfig) -> anyhow::Result<Vec<Login>> {
    config
        .auth
        .iter()
        .map(|user| {
            let password = user.password.read().with_context(|| match &user.password {
                PasswordSource::File(path) => format!(
                    "cannot read smtp_listener.auth password_file {} of user {:?}; fix: \
                     point it at a file holding the password on its first line",
                    path.display(),
                    user.username
                ),
                PasswordSource::Env(name) => format!(
                    "smtp_listener.auth password_env {name} of user {:?} is not set; fix: \
                     export it in the service's environment",
                    user.username
                ),
            })?;
            anyhow::ensure!(
                !password.is_empty(),
                "the password of smtp_listener.auth user {:?} is empty; fix: set one",
                user.username
            );
            Ok(Login {
                username: user.username.clone(),
                password: password.into_bytes(),
            })
        })
        .collect()
}

/// Bind `config.listen` now (so a port in use fails the start), then serve on the feed's
/// runtime until a stop; bodies are purged on a thread of their own unless kept.
pub fn start(
    config: &SmtpListenerConfig,
    store_path: &std::path::Path,
    feed: &Feed,
    directory: DirectorySource,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let ready = feed.readiness.part("smtp-listener");
    let tls = config
        .tls
        .as_ref()
        .map(|tls| super::tls::server_config(tls, "smtp_listener"))
        .transpose()?
        .map(TlsAcceptor::from);
    let std_listener = std::net::TcpListener::bind(config.listen).with_context(|| {
        format!(
            "cannot listen on smtp_listener.listen {}; fix: pick a free port, or stop what uses it",
            config.listen
        )
    })?;
    std_listener.set_nonblocking(true)?;
    let shared = Arc::new(Shared {
        config: config.clone(),
        acceptor: Acceptor::new(config, feed.writer.clone(), directory),
        tls,
        logins: read_logins(config)?,
    });
    let feed_task = feed.clone();
    let (listener_ready, runtime) = (ready.clone(), feed.runtime.clone());
    runtime.spawn(async move {
        match TcpListener::from_std(std_listener) {
            Ok(listener) => {
                listener_ready.ready();
                tracing::info!(listen = %shared.config.listen, "SMTP listener ready");
                serve(listener, shared, feed_task).await;
            }
            Err(err) => listener_ready.failing(format!("cannot listen: {err}")),
        }
    });
    let mut threads = Vec::new();
    if !config.keep_body {
        threads.push(start_purge(store_path, feed)?);
    }
    Ok(threads)
}

/// Accept connections until a stop; each is a task, at most `max_connections` at once.
async fn serve(listener: TcpListener, shared: Arc<Shared>, feed: Feed) {
    let slots = Arc::new(Semaphore::new(shared.config.max_connections));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = feed.stopped() => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!(%err, "SMTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (shared, slots) = (shared.clone(), slots.clone());
        tokio::spawn(async move { connection(stream, peer, shared, slots).await });
    }
}

/// One connection: refused outside `allow` or past `max_connections`, else a session.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
) {
    let _ = stream.set_nodelay(true);
    if !shared.config.allows(peer.ip()) {
        tracing::warn!(client = %peer, "SMTP client not in smtp_listener.allow: refused");
        crate::metrics::smtp("not_allowed");
        refuse(
            &mut stream,
            "554 5.7.1 Your address is not allowed to relay here\r\n",
        )
        .await;
        return;
    }
    let Ok(_slot) = slots.try_acquire_owned() else {
        tracing::warn!(client = %peer, "SMTP session refused: max_connections reached");
        crate::metrics::smtp("busy");
        refuse(
            &mut stream,
            "421 4.7.0 Too many connections, try again later\r\n",
        )
        .await;
        return;
    };
    session::run(stream, peer, &shared).await;
}

async fn refuse(stream: &mut TcpStream, reply: &str) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(reply.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// A thread that purges delivered bodies every second, with its own store connection.
fn start_purge(
    store_path: &std::path::Path,
    feed: &Feed,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let mut store = Store::open(store_path)?;
    let stop = feed.stop;
    std::thread::Builder::new()
        .name("herald-relay-purge".into())
        .spawn(move || {
            // A checkpoint that readers kept from finishing is tried again on the next round.
            let mut checkpoint = false;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match store.purge_relayed(chrono::Utc::now()) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::debug!(messages = n, "purged relayed bodies");
                        checkpoint = true;
                    }
                    Err(err) => tracing::warn!("cannot purge relayed bodies: {err:#}"),
                }
                if checkpoint {
                    checkpoint = !store.truncate_wal().unwrap_or(false);
                }
                std::thread::sleep(PURGE_EVERY);
            }
        })
        .context("cannot start the purge thread")
}
