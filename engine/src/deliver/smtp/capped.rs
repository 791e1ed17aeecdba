//! A stream that refuses over-long reply lines, so a hostile server cannot make Herald buffer one without end.
//!
//! lettre reads each reply line whole before it checks its length; this wrapper
//! counts the bytes read since the last LF and fails the read once a line passes
//! `MAX_REPLY_LINE`. RFC 5321 allows 512 octets per reply line; the cap leaves room
//! for lenient servers. (After STARTTLS lettre wraps the socket itself, so there
//! the cap sees ciphertext and does not apply; plain and implicit-TLS sessions are capped.)

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use lettre::transport::smtp::client::AsyncTokioStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest reply line accepted, in bytes.
pub const MAX_REPLY_LINE: usize = 16 * 1024;

/// `inner`, with reply lines capped at `MAX_REPLY_LINE`.
#[derive(Debug)]
pub struct Capped<S> {
    inner: S,
    /// Bytes read since the last LF.
    line: usize,
}

impl<S> Capped<S> {
    pub fn new(inner: S) -> Capped<S> {
        Capped { inner, line: 0 }
    }

    /// Count what was just read; an error once a line is too long.
    fn account(&mut self, read: &[u8]) -> io::Result<()> {
        match read.iter().rposition(|&b| b == b'\n') {
            Some(last) => self.line = read.len() - last - 1,
            None => self.line += read.len(),
        }
        if self.line > MAX_REPLY_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the server sent a reply line longer than {MAX_REPLY_LINE} bytes"),
            ));
        }
        Ok(())
    }
}

impl<S: AsyncTokioStream> AsyncTokioStream for Capped<S> {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Capped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            self.account(&buf.filled()[before..])?;
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Capped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_across_reads() {
        let mut capped = Capped::new(());
        capped.account(b"250-first\r\n250 sec").unwrap();
        assert_eq!(capped.line, 7);
        capped.account(&vec![b'x'; MAX_REPLY_LINE - 7]).unwrap();
        let err = capped.account(b"x").unwrap_err();
        assert!(err.to_string().contains("reply line longer"), "{err}");
        capped.line = 0;
        capped.account(b"ok\r\n").unwrap();
        assert_eq!(capped.line, 0);
    }
}
