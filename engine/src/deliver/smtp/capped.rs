//! A stream that refuses over-long replies, so a hostile server cannot make Herald buffer one without end.
//!
//! lettre reads each reply line whole before it checks its length; this wrapper
//! counts the bytes read since the last LF and fails the read once a line passes
//! `MAX_REPLY_LINE`. RFC 5321 allows 512 octets per reply line; the cap leaves room
//! for lenient servers. After STARTTLS lettre wraps this stream in TLS, so it sees
//! ciphertext and cannot count lines; there it caps the bytes read between two of
//! Herald's writes at `MAX_READ_BETWEEN_WRITES` instead (a TLS handshake or a reply
//! needs far less), which bounds what lettre can buffer just the same.
//!
//! It also keeps the writes that [`Hold`] says must wait: a message's body is gathered
//! and leaves with its final `.`, and the `.` leaves only once the hold releases it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use lettre::transport::smtp::client::AsyncTokioStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::hold::{GATHER_MAX, Gathered, Hold, Stage};

/// The longest reply line accepted, in bytes.
pub const MAX_REPLY_LINE: usize = 16 * 1024;
/// The most bytes accepted between two of Herald's writes (the cap that also holds under STARTTLS).
pub const MAX_READ_BETWEEN_WRITES: usize = 1024 * 1024;

/// `inner`, with what the server may send capped, and the writes of a message's end held.
#[derive(Debug)]
pub struct Capped<S> {
    inner: S,
    /// Whether the bytes read are SMTP text (lines can be counted) rather than ciphertext.
    count_lines: bool,
    /// Bytes read since the last LF.
    line: usize,
    /// Bytes read since Herald last wrote.
    since_write: usize,
    /// Says which writes wait (see [`Hold`]).
    hold: Arc<Hold>,
    /// Writes gathered for the hold, and how much of them is already written.
    gathered: Vec<u8>,
    written: usize,
}

impl<S> Capped<S> {
    /// A stream that carries SMTP text: reply lines and the bytes between writes are capped.
    pub fn new(inner: S, hold: &Arc<Hold>) -> Capped<S> {
        Capped {
            inner,
            count_lines: true,
            line: 0,
            since_write: 0,
            hold: hold.clone(),
            gathered: Vec::new(),
            written: 0,
        }
    }

    /// A stream that lettre will wrap in TLS (STARTTLS): only the bytes between writes are capped.
    pub fn below_tls(inner: S, hold: &Arc<Hold>) -> Capped<S> {
        Capped {
            count_lines: false,
            ..Capped::new(inner, hold)
        }
    }

    /// Count what was just read; an error once a line or a reply is too long.
    fn account(&mut self, read: &[u8]) -> io::Result<()> {
        self.since_write += read.len();
        if self.since_write > MAX_READ_BETWEEN_WRITES {
            return Err(too_long(format!(
                "the server sent more than {MAX_READ_BETWEEN_WRITES} bytes without being asked"
            )));
        }
        if !self.count_lines {
            return Ok(());
        }
        match read.iter().rposition(|&b| b == b'\n') {
            Some(last) => self.line = read.len() - last - 1,
            None => self.line += read.len(),
        }
        if self.line > MAX_REPLY_LINE {
            return Err(too_long(format!(
                "the server sent a reply line longer than {MAX_REPLY_LINE} bytes"
            )));
        }
        Ok(())
    }
}

fn too_long(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl<S: AsyncTokioStream> AsyncTokioStream for Capped<S> {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}

impl<S: AsyncWrite + Unpin> Capped<S> {
    /// Write out every gathered byte, then flush.
    fn poll_send_gathered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.gathered.len() {
            let rest = &self.gathered[self.written..];
            match ready!(Pin::new(&mut self.inner).poll_write(cx, rest)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.written += n,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        self.gathered.clear();
        self.written = 0;
        self.since_write = 0;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// Before a read: send what was gathered once the hold allows, wait, or give it up.
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.gathered.is_empty() {
            return Poll::Ready(Ok(()));
        }
        match self.hold.gathered(cx.waker()) {
            Gathered::Wait => Poll::Pending,
            Gathered::Drop => {
                self.gathered.clear();
                self.written = 0;
                Poll::Ready(Err(io::Error::other(
                    "the end of the message was not released, so it was not sent",
                )))
            }
            Gathered::Send => {
                ready!(self.poll_send_gathered(cx))?;
                self.hold.mark_sent();
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Capped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_release(cx))?;
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
        match self.hold.stage() {
            Stage::Idle if self.gathered.is_empty() => {}
            // A message given up: what it gathered never leaves.
            Stage::Idle => {
                self.gathered.clear();
                self.written = 0;
            }
            Stage::Body if self.gathered.len() + buf.len() > GATHER_MAX => {
                ready!(self.poll_send_gathered(cx))?;
            }
            Stage::Body | Stage::Dot => {
                self.gathered.extend_from_slice(buf);
                return Poll::Ready(Ok(buf.len()));
            }
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(1..)) = &polled {
            self.since_write = 0;
        }
        polled
    }

    /// Gathered bytes stay until the next read (or until the body outgrows the gathering);
    /// the rest is flushed as usual.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.gathered.is_empty() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// A shutdown never sends a held end of message.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.hold.stage() != Stage::Body {
            self.gathered.clear();
            self.written = 0;
        }
        if !self.gathered.is_empty() {
            ready!(self.poll_send_gathered(cx))?;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_across_reads() {
        let mut capped = Capped::new((), &Hold::new());
        capped.account(b"250-first\r\n250 sec").unwrap();
        assert_eq!(capped.line, 7);
        capped.account(&vec![b'x'; MAX_REPLY_LINE - 7]).unwrap();
        let err = capped.account(b"x").unwrap_err();
        assert!(err.to_string().contains("reply line longer"), "{err}");
        capped.line = 0;
        capped.since_write = 0;
        capped.account(b"ok\r\n").unwrap();
        assert_eq!(capped.line, 0);
    }

    /// Write a body and its end through a held stream, let `release` decide, and return what
    /// the server side received and whether the stream's read of the reply succeeded.
    async fn held_end(release: bool) -> (Vec<u8>, bool, bool) {
        use std::time::Duration;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (client, mut server) = tokio::io::duplex(1 << 16);
        let hold = Hold::new();
        let mut capped = Capped::new(client, &hold);
        hold.begin(None);
        capped.write_all(b"Subject: x\r\n\r\nbody").await.unwrap();
        capped.flush().await.unwrap();
        hold.body_written();
        capped.write_all(b"\r\n.\r\n").await.unwrap();
        capped.flush().await.unwrap();
        let mut seen = [0u8; 64];
        let quiet = Duration::from_millis(30);
        let early = tokio::time::timeout(quiet, server.read(&mut seen)).await;
        assert!(early.is_err(), "nothing leaves before the verdict");
        let mut reply = [0u8; 16];
        let read = capped.read(&mut reply);
        tokio::pin!(read);
        assert!(
            tokio::time::timeout(quiet, &mut read).await.is_err(),
            "the read of the reply waits for the verdict"
        );
        hold.decide(release);
        if release {
            let answer = async {
                let n = server.read(&mut seen).await.unwrap();
                server.write_all(b"250 ok\r\n").await.unwrap();
                n
            };
            let (read, n) = tokio::join!(read, answer);
            return (seen[..n].to_vec(), read.is_ok(), hold.end());
        }
        let replied = read.await.is_ok();
        drop(capped);
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        (rest, replied, hold.end())
    }

    #[test]
    fn a_held_end_leaves_with_its_body_once_released_and_never_when_refused() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (sent, replied, dot_sent) = runtime.block_on(held_end(true));
        assert_eq!(
            sent, b"Subject: x\r\n\r\nbody\r\n.\r\n",
            "body and end in one write"
        );
        assert!(replied && dot_sent);
        let (sent, replied, dot_sent) = runtime.block_on(held_end(false));
        assert!(sent.is_empty(), "a refused message sends nothing: {sent:?}");
        assert!(!replied && !dot_sent);
    }

    #[test]
    fn below_tls_only_the_bytes_between_writes_are_capped() {
        let mut capped = Capped::below_tls((), &Hold::new());
        // Ciphertext has no line structure: a long run without LF is fine...
        capped.account(&vec![b'x'; MAX_REPLY_LINE * 4]).unwrap();
        // ...until the server has sent more than the cap without Herald writing.
        let rest = MAX_READ_BETWEEN_WRITES - MAX_REPLY_LINE * 4;
        capped.account(&vec![b'x'; rest]).unwrap();
        let err = capped.account(b"x").unwrap_err();
        assert!(err.to_string().contains("without being asked"), "{err}");
    }
}
