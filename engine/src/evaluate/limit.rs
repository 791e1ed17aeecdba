//! The limits the host enforces inside a call, raised as typed errors, and the capped stderr pipe.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// A limit a rule ran into, raised by host code as the error that ends the call.
/// The sandbox tells the reasons apart by downcasting to this type, never by text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostLimit {
    /// Linear memory was asked to grow past `limits.memory`.
    #[error("memory limit of {limit_bytes} bytes exceeded (limits.memory)")]
    Memory { limit_bytes: u64 },
    /// The rule wrote more to stderr than `limits.max_log` keeps.
    #[error("the rule wrote more than {limit_bytes} bytes to stderr (limits.max_log)")]
    Log { limit_bytes: u64 },
}

/// The rule's stderr: kept in memory up to a cap; a write past the cap ends the call with
/// [`HostLimit::Log`] (instead of reporting the stream closed, which a Rust guest turns into
/// a second panic that hides the first).
#[derive(Clone, Debug)]
pub struct LogPipe {
    limit: usize,
    buffer: Arc<Mutex<Vec<u8>>>,
}

/// The most one `write` may carry; what WASI streams usually permit.
const PERMIT: usize = 4096;

impl LogPipe {
    pub fn new(limit_bytes: u64) -> LogPipe {
        LogPipe {
            limit: usize::try_from(limit_bytes).unwrap_or(usize::MAX),
            buffer: Arc::default(),
        }
    }

    /// Everything written, up to the cap.
    pub fn contents(&self) -> Vec<u8> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keep what fits; say whether everything did.
    pub(super) fn append(&self, bytes: &[u8]) -> Result<(), HostLimit> {
        let mut buffer = self.lock();
        let room = self.limit.saturating_sub(buffer.len());
        buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if bytes.len() > room {
            return Err(HostLimit::Log {
                limit_bytes: self.limit as u64,
            });
        }
        Ok(())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes)
            .map_err(|limit| StreamError::Trap(wasmtime::Error::new(limit)))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    /// Always room: a write past the cap is an error of its own, not a closed stream.
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(PERMIT)
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(
            self.append(buf)
                .map(|()| buf.len())
                .map_err(io::Error::other),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_pipe_keeps_up_to_its_cap_and_then_refuses_with_a_typed_error() {
        let mut pipe = LogPipe::new(10);
        pipe.write(Bytes::from_static(b"0123456")).unwrap();
        let err = match pipe.write(Bytes::from_static(b"789abc")) {
            Err(StreamError::Trap(err)) => err,
            other => panic!("expected a trap, got {other:?}"),
        };
        assert_eq!(
            err.downcast_ref::<HostLimit>(),
            Some(&HostLimit::Log { limit_bytes: 10 })
        );
        assert_eq!(pipe.contents(), b"0123456789");
        assert_eq!(pipe.check_write().unwrap(), PERMIT);
    }
}
