//! HTTPS for the API: a listener that completes TLS handshakes concurrently and hands axum finished streams.
//!
//! Handshakes run on tasks of their own with a deadline, so a client that connects
//! and says nothing delays no one else; a failed handshake is logged at debug and
//! dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to complete its handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Handshakes finished but not yet taken by the server.
const BACKLOG: usize = 64;

/// A TCP listener whose connections come out as TLS streams.
pub struct TlsListener {
    done: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accept on `tcp` and run each handshake with `config` on its own task.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (finished, done) = mpsc::channel(BACKLOG);
        tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), finished));
        Ok(TlsListener { done, local })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    finished: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors and the like: pause rather than spin.
                tracing::warn!("https: cannot accept: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, handed) = (acceptor.clone(), finished.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = handed.send((tls, peer)).await;
                }
                Ok(Err(err)) => tracing::debug!(%peer, "https: handshake failed: {err}"),
                Err(_) => tracing::debug!(%peer, "https: handshake timed out"),
            }
        });
        if finished.is_closed() {
            return;
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.done.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends once the server is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
