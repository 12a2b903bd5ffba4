//! Requests framed two ways at once. A request head with both `Content-Length` and
//! `Transfer-Encoding` is ambiguous (the classic request-smuggling shape): HTTP/1.1 parsers drop the
//! length and read the body as chunked, so a client that meant the length sees its upload "cut off".
//! The head of a connection's first request is held until it is complete; when it has both headers,
//! `Transfer-Encoding` is replaced by [`CONFLICT_HEADER`], the router answers 400 naming the conflict
//! and the connection is closed. Later requests on a kept-alive connection pass unchecked.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Marks a request whose head had both framing headers.
pub const CONFLICT_HEADER: &str = "x-archiveinterface-framing-conflict";
/// Heads longer than this are passed on as they are (hyper refuses them anyway).
const MAX_HEAD: usize = 64 * 1024;

/// A connection whose first request head is checked before the HTTP parser sees it.
#[derive(Debug)]
pub struct FirstHeadChecked<S> {
    inner: S,
    /// Bytes of the first head gathered so far; `None` once it was checked and passed on.
    head: Option<Vec<u8>>,
    /// Checked bytes not yet handed to the reader.
    ready: Vec<u8>,
}

impl<S> FirstHeadChecked<S> {
    /// Wraps a fresh connection.
    pub fn new(inner: S) -> Self {
        FirstHeadChecked {
            inner,
            head: Some(Vec::new()),
            ready: Vec::new(),
        }
    }
}

/// The head with `Transfer-Encoding` replaced by the conflict marker when `Content-Length` is also
/// there; otherwise unchanged.
fn checked(head: Vec<u8>) -> Vec<u8> {
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return head;
    };
    let text = String::from_utf8_lossy(&head[..end]);
    let is = |line: &str, name: &str| {
        line.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    };
    let has_length = text.lines().any(|l| is(l, "content-length"));
    let has_encoding = text.lines().any(|l| is(l, "transfer-encoding"));
    if !(has_length && has_encoding) {
        return head;
    }
    let mut out = Vec::with_capacity(head.len());
    for line in text.split("\r\n") {
        if is(line, "transfer-encoding") {
            out.extend_from_slice(CONFLICT_HEADER.as_bytes());
            out.extend_from_slice(b": 1");
        } else {
            out.extend_from_slice(line.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&head[end + 4..]);
    out
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstHeadChecked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while let Some(head) = this.head.as_mut() {
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let got = read.filled();
                    head.extend_from_slice(got);
                    let complete = head.windows(4).any(|w| w == b"\r\n\r\n");
                    if got.is_empty() || complete || head.len() > MAX_HEAD {
                        let head = this.head.take().unwrap_or_default();
                        this.ready = checked(head);
                    }
                }
            }
        }
        if !this.ready.is_empty() {
            let n = this.ready.len().min(buf.remaining());
            buf.put_slice(&this.ready[..n]);
            this.ready.drain(..n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstHeadChecked<S> {
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
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Middleware: answers a request marked by [`FirstHeadChecked`] with 400 and closes its connection
/// (its body cannot be told apart from the next request).
pub async fn refuse_conflicting_framing(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !request.headers().contains_key(CONFLICT_HEADER) {
        return next.run(request).await;
    }
    let mut response = crate::error::ApiError::bad_request(
        "The request has both Content-Length and Transfer-Encoding: send one of them",
    )
    .into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_framing_headers_are_marked() {
        let head =
            b"PUT /1 HTTP/1.1\r\nContent-Length: 5\r\ntransfer-encoding: chunked\r\n\r\nhello";
        let out = String::from_utf8(checked(head.to_vec())).unwrap();
        assert_eq!(
            out,
            format!("PUT /1 HTTP/1.1\r\nContent-Length: 5\r\n{CONFLICT_HEADER}: 1\r\n\r\nhello")
        );
        for fine in [
            &b"PUT /1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"PUT /1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n",
        ] {
            assert_eq!(checked(fine.to_vec()), fine);
        }
    }
}
