//! Requests framed two ways at once. A request head with both `Content-Length` and
//! `Transfer-Encoding` is ambiguous (the classic request-smuggling shape): HTTP/1.1 parsers drop the
//! length and read the body as chunked, so a client that meant the length sees its upload "cut off".
//!
//! Every request head on a connection is checked before the HTTP parser sees it. The wrapper follows
//! the connection's request boundaries the way the parser does: a head, then exactly `Content-Length`
//! body bytes (or none). A head with both framing headers gets `Transfer-Encoding` replaced by
//! [`CONFLICT_HEADER`]; the router answers 400 naming the conflict and the connection is closed. A head
//! whose body boundary the wrapper does not follow (chunked, or a length it cannot read) is marked with
//! [`LAST_REQUEST_HEADER`] and its answer closes the connection, so no later head on it goes unchecked
//! and no body byte is ever taken for a head.
//!
//! Clean heads (no `Transfer-Encoding`, at most one well-formed length) are passed on in place, without
//! a copy; only a head split across reads or one that is rewritten goes through a buffer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Marks a request whose head had both framing headers.
pub const CONFLICT_HEADER: &str = "x-archiveinterface-framing-conflict";
/// Marks a request after which the connection's request boundaries are not followed: its answer closes
/// the connection.
pub const LAST_REQUEST_HEADER: &str = "x-archiveinterface-last-request";
/// Heads longer than this are passed on as they are (hyper refuses them anyway) and the connection is
/// no longer followed.
const MAX_HEAD: usize = 64 * 1024;

/// Where the connection's byte stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// At (or inside) a request head.
    Head,
    /// Inside a body with this many bytes left.
    Body(u64),
    /// Past a request whose boundaries are not followed; that request's answer closes the connection.
    Unfollowed,
}

/// What [`Tracker::scan`] found at the start of the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// This many bytes go on unchanged.
    Pass(usize),
    /// The bytes start an incomplete head: wait for more.
    NeedMore,
    /// The first `head_len` bytes are a head to be replaced by `with`.
    Rewrite { head_len: usize, with: Vec<u8> },
}

/// Follows request boundaries through the bytes of one connection.
#[derive(Debug)]
struct Tracker {
    at: Position,
}

impl Tracker {
    fn scan(&mut self, data: &[u8]) -> Scan {
        match self.at {
            Position::Unfollowed => Scan::Pass(data.len()),
            Position::Body(left) => {
                let n = usize::try_from(left).map_or(data.len(), |left| left.min(data.len()));
                let left = left - n as u64;
                self.at = if left == 0 {
                    Position::Head
                } else {
                    Position::Body(left)
                };
                Scan::Pass(n)
            }
            Position::Head => {
                let Some(end) = find_head_end(data) else {
                    if data.len() > MAX_HEAD {
                        self.at = Position::Unfollowed;
                        return Scan::Pass(data.len());
                    }
                    return Scan::NeedMore;
                };
                let head = &data[..end];
                match framing_of(head) {
                    Framing::None => Scan::Pass(end),
                    Framing::Length(0) => Scan::Pass(end),
                    Framing::Length(n) => {
                        self.at = Position::Body(n);
                        Scan::Pass(end)
                    }
                    Framing::Both => {
                        self.at = Position::Unfollowed;
                        Scan::Rewrite {
                            head_len: end,
                            with: replace_encoding(head),
                        }
                    }
                    Framing::Unfollowed => {
                        self.at = Position::Unfollowed;
                        Scan::Rewrite {
                            head_len: end,
                            with: mark_last(head),
                        }
                    }
                }
            }
        }
    }
}

/// One past the blank line that ends a head starting at `data[0]`.
fn find_head_end(data: &[u8]) -> Option<usize> {
    data[..data.len().min(MAX_HEAD + 4)]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// How a head frames its body.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Both `Content-Length` and `Transfer-Encoding`.
    Both,
    /// Chunked, or lengths the wrapper does not follow (several, or not a number).
    Unfollowed,
}

fn header_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    Some(line[..colon].trim_ascii())
}

fn framing_of(head: &[u8]) -> Framing {
    let mut lengths = Vec::new();
    let mut encoding = false;
    // The request line has no header name worth looking at; its target may hold a colon.
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(name) = header_name(line) else {
            continue;
        };
        if name.eq_ignore_ascii_case(b"content-length") {
            let colon = line.iter().position(|&b| b == b':').unwrap_or(0);
            lengths.push(line[colon + 1..].trim_ascii());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            encoding = true;
        }
    }
    match (lengths.as_slice(), encoding) {
        (_, true) if !lengths.is_empty() => Framing::Both,
        (_, true) => Framing::Unfollowed,
        ([], false) => Framing::None,
        ([value], false) => std::str::from_utf8(value)
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse().ok())
            .map_or(Framing::Unfollowed, Framing::Length),
        _ => Framing::Unfollowed,
    }
}

/// The head with its `Transfer-Encoding` lines replaced by the conflict marker.
fn replace_encoding(head: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + CONFLICT_HEADER.len());
    for (i, line) in head.split_inclusive(|&b| b == b'\n').enumerate() {
        let is_encoding = i > 0
            && header_name(line).is_some_and(|n| n.eq_ignore_ascii_case(b"transfer-encoding"));
        if is_encoding {
            out.extend_from_slice(CONFLICT_HEADER.as_bytes());
            out.extend_from_slice(b": 1\r\n");
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// The head with the last-request marker added after its request line.
fn mark_last(head: &[u8]) -> Vec<u8> {
    let line_end = head
        .iter()
        .position(|&b| b == b'\n')
        .map_or(head.len(), |at| at + 1);
    let mut out = Vec::with_capacity(head.len() + LAST_REQUEST_HEADER.len() + 5);
    out.extend_from_slice(&head[..line_end]);
    out.extend_from_slice(LAST_REQUEST_HEADER.as_bytes());
    out.extend_from_slice(b": 1\r\n");
    out.extend_from_slice(&head[line_end..]);
    out
}

/// A connection whose request heads are all checked before the HTTP parser sees them.
#[derive(Debug)]
pub struct FramingChecked<S> {
    inner: S,
    tracker: Tracker,
    /// The start of a head that has not fully arrived yet.
    held: Vec<u8>,
    /// Checked bytes not yet handed to the reader.
    ready: Vec<u8>,
    /// How much of `ready` was handed over.
    ready_at: usize,
}

impl<S> FramingChecked<S> {
    /// Wraps a fresh connection.
    pub fn new(inner: S) -> Self {
        FramingChecked {
            inner,
            tracker: Tracker { at: Position::Head },
            held: Vec::new(),
            ready: Vec::new(),
            ready_at: 0,
        }
    }

    /// Scans `data` from its start: returns how many of its bytes go on in place; the rest, from
    /// the first head that must wait or be rewritten, lands in `held` or `ready`.
    fn take_in(&mut self, data: &[u8]) -> usize {
        let mut at = 0;
        while at < data.len() {
            match self.tracker.scan(&data[at..]) {
                Scan::Pass(n) => at += n,
                Scan::NeedMore => {
                    self.held.extend_from_slice(&data[at..]);
                    return at;
                }
                Scan::Rewrite { head_len, with } => {
                    self.ready.extend_from_slice(&with);
                    // Nothing after this head is followed any more.
                    self.ready.extend_from_slice(&data[at + head_len..]);
                    return at;
                }
            }
        }
        at
    }

    /// Hands over buffered bytes, if any.
    fn give_ready(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.ready_at == self.ready.len() {
            return false;
        }
        let n = (self.ready.len() - self.ready_at).min(buf.remaining());
        buf.put_slice(&self.ready[self.ready_at..self.ready_at + n]);
        self.ready_at += n;
        if self.ready_at == self.ready.len() {
            self.ready.clear();
            self.ready_at = 0;
        }
        true
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FramingChecked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.give_ready(buf) {
                return Poll::Ready(Ok(()));
            }
            if this.held.is_empty() {
                if this.tracker.at == Position::Unfollowed {
                    return Pin::new(&mut this.inner).poll_read(cx, buf);
                }
                // The common case: read straight into the caller's buffer and check in place.
                let before = buf.filled().len();
                match Pin::new(&mut this.inner).poll_read(cx, buf) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                if buf.filled().len() == before {
                    return Poll::Ready(Ok(()));
                }
                let passed = this.take_in(&buf.filled()[before..]);
                buf.set_filled(before + passed);
                if passed > 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            // A head split across reads: gather it first.
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let mut pending = std::mem::take(&mut this.held);
            if read.filled().is_empty() {
                // The client stopped in the middle of a head: the parser reports it.
                this.tracker.at = Position::Unfollowed;
                this.ready.extend_from_slice(&pending);
                continue;
            }
            pending.extend_from_slice(read.filled());
            let passed = this.take_in(&pending);
            // What went on in place goes before whatever `take_in` buffered after it.
            let after = std::mem::take(&mut this.ready);
            this.ready.extend_from_slice(&pending[..passed]);
            this.ready.extend_from_slice(&after);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FramingChecked<S> {
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

/// Middleware: answers a request marked by [`FramingChecked`] as ambiguous with 400 and closes its
/// connection (its body cannot be told apart from the next request); the answer to a request after
/// which the connection is no longer followed closes the connection too.
pub async fn refuse_conflicting_framing(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    use axum::response::IntoResponse;
    let close = |mut response: axum::response::Response| {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    };
    if request.headers().contains_key(CONFLICT_HEADER) {
        return close(
            crate::error::ApiError::bad_request(
                "The request has both Content-Length and Transfer-Encoding: send one of them",
            )
            .into_response(),
        );
    }
    if request.headers_mut().remove(LAST_REQUEST_HEADER).is_some() {
        return close(next.run(request).await);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Feeds `wire` through the wrapper in reads of `step` bytes and returns what the parser sees.
    async fn through(wire: &[u8], step: usize) -> Vec<u8> {
        let mut builder = tokio_test_reader(wire, step);
        let mut out = Vec::new();
        FramingChecked::new(&mut builder)
            .read_to_end(&mut out)
            .await
            .unwrap();
        out
    }

    fn tokio_test_reader(wire: &[u8], step: usize) -> impl AsyncRead + Unpin {
        let chunks: Vec<Vec<u8>> = wire.chunks(step).map(<[u8]>::to_vec).collect();
        let stream = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, io::Error>(bytes::Bytes::from(c))),
        );
        tokio_util::io::StreamReader::new(stream)
    }

    const BOTH: &[u8] =
        b"PUT /2 HTTP/1.1\r\nContent-Length: 5\r\ntransfer-encoding: chunked\r\n\r\nhello";

    #[tokio::test]
    async fn every_head_is_checked_and_bodies_are_never_taken_for_heads() {
        // A body that looks like a conflicting head, then a real one on the same connection.
        let body = b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut wire =
            format!("PUT /1 HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        wire.extend_from_slice(body);
        wire.extend_from_slice(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n");
        let clean = wire.clone();
        wire.extend_from_slice(BOTH);
        let mut expected = clean.clone();
        expected.extend_from_slice(
            format!("PUT /2 HTTP/1.1\r\nContent-Length: 5\r\n{CONFLICT_HEADER}: 1\r\n\r\nhello")
                .as_bytes(),
        );
        for step in [1, 2, 3, 7, 16, 64, 100_000] {
            assert_eq!(through(&clean, step).await, clean, "step {step}");
            let seen = through(&wire, step).await;
            assert_eq!(
                String::from_utf8_lossy(&seen),
                String::from_utf8_lossy(&expected),
                "step {step}"
            );
        }
    }

    #[tokio::test]
    async fn after_a_chunked_request_the_connection_is_not_followed_and_closes() {
        let chunked =
            b"PUT /1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let mut wire = chunked.to_vec();
        wire.extend_from_slice(BOTH);
        let mut expected =
            format!("PUT /1 HTTP/1.1\r\n{LAST_REQUEST_HEADER}: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").into_bytes();
        // Not looked at: the answer to the chunked request closes the connection before it is read.
        expected.extend_from_slice(BOTH);
        for step in [1, 5, 100_000] {
            assert_eq!(through(&wire, step).await, expected, "step {step}");
        }
        for unfollowed in [
            &b"PUT /1 HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"PUT /1 HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
        ] {
            let seen = through(unfollowed, 100_000).await;
            assert!(
                String::from_utf8_lossy(&seen).contains(LAST_REQUEST_HEADER),
                "{}",
                String::from_utf8_lossy(&seen)
            );
        }
    }
}
