//! Lingering close. When the server ends a connection whose client is still sending (an upload refused
//! before its body was read: write-once, bad id, no space), closing the socket with unread data makes
//! the kernel answer with a reset, and a reset can destroy the response the client has not read yet:
//! the client sees "connection closed before message completed" instead of our JSON error. So on close
//! the sending side is shut first (the response and a FIN go out), then what the client still sends
//! is read and dropped until it closes too, for at most [`LINGER_TIME`] and [`LINGER_BYTES`].
//! An error answer to a request that came with a body says `Connection: close`
//! ([`close_after_refused_upload`]), so the client does not send its next request on a connection
//! the server is about to close.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest time spent discarding a closing client's data.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// Most bytes discarded from a closing client.
pub const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// A connection that lingers on close (see the module docs).
#[derive(Debug)]
pub struct LingeringClose<S> {
    inner: S,
    /// Set once the sending side is shut: the deadline and the bytes still to discard.
    linger: Option<(Pin<Box<tokio::time::Sleep>>, usize)>,
}

impl<S> LingeringClose<S> {
    /// Wraps a fresh connection.
    pub fn new(inner: S) -> Self {
        LingeringClose {
            inner,
            linger: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LingeringClose<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingeringClose<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.linger.is_none() {
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.linger = Some((Box::pin(tokio::time::sleep(LINGER_TIME)), LINGER_BYTES));
        }
        let Some((deadline, left)) = this.linger.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                // The client closed (or reset): nothing left that could destroy the response.
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    if n == 0 || n >= *left {
                        return Poll::Ready(Ok(()));
                    }
                    *left -= n;
                }
            }
        }
    }
}

/// Middleware: an error answer to a request with a body asks the client to close the connection. The
/// body may not have been read (a PUT refused before its data), and a connection whose request body
/// was left unread is closed after the answer: a client that reused it would see its next request fail.
pub async fn close_after_refused_upload(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::header;
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let mut response = next.run(request).await;
    if has_body && (response.status().is_client_error() || response.status().is_server_error()) {
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}
