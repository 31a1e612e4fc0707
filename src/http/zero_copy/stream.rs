//! [`ZeroCopyStream`]: a plain TCP connection that sends placeholder slices
//! as file spans (see the module docs).

use std::io::IoSlice;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use super::{Spans, is_placeholder};

/// A TCP stream whose writes send placeholder slices with `sendfile(2)` and
/// everything else as written.
pub struct ZeroCopyStream {
    tcp: TcpStream,
    spans: Spans,
}

impl ZeroCopyStream {
    /// Wraps an accepted plain-TCP connection.
    pub fn new(tcp: TcpStream) -> ZeroCopyStream {
        ZeroCopyStream {
            tcp,
            spans: Spans::default(),
        }
    }

    /// The handle a response body on this connection records its spans in.
    pub fn spans(&self) -> Spans {
        self.spans.clone()
    }

    /// Sends the span `slice` stands for, as much as the socket takes.
    fn poll_send_span(
        &mut self,
        cx: &mut Context<'_>,
        slice: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let span = match self.spans.resolve(slice) {
            Some(Ok(span)) => span,
            Some(Err(e)) => return Poll::Ready(Err(e)),
            None => return Poll::Ready(Err(std::io::Error::other("not a placeholder"))),
        };
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            let tcp = &self.tcp;
            match tcp.try_io(Interest::WRITABLE, || {
                span.source.send_to(tcp.as_fd(), span.at, span.len)
            }) {
                Ok(0) => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "stored file is shorter than its recorded size",
                    )));
                }
                Ok(n) => {
                    if n == span.len {
                        self.spans
                            .sent_through(slice.as_ptr() as usize + slice.len());
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncRead for ZeroCopyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if is_placeholder(buf) {
            return self.poll_send_span(cx, buf);
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        // Plain slices up to the first placeholder go out as one writev; a
        // placeholder at the front goes out by itself.
        let first = bufs
            .iter()
            .position(|b| is_placeholder(b))
            .unwrap_or(bufs.len());
        if first == 0 && !bufs.is_empty() {
            let slice: &[u8] = &bufs[0];
            return self.poll_send_span(cx, slice);
        }
        Pin::new(&mut self.tcp).poll_write_vectored(cx, &bufs[..first])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
