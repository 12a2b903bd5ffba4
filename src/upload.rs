//! Request bodies as backend [`ByteStream`]s: transport errors become I/O errors, and a body that sends
//! nothing for the idle timeout ends with an error (so a stalled client cannot hold a partial file open
//! forever). Shared by every router that accepts uploads.

use archive_core::ByteStream;
use axum::body::Body;
use futures::StreamExt;
use std::io;
use std::time::Duration;

/// Streams `body` with at most `idle` between chunks.
pub fn upload_stream(body: Body, idle: Duration) -> ByteStream {
    let data = body.into_data_stream();
    futures::stream::unfold(Some(data), move |state| async move {
        let mut data = state?;
        match tokio::time::timeout(idle, data.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(data))),
            Ok(Some(Err(e))) => Some((Err(io::Error::other(e)), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no data received for {} s", idle.as_secs()),
                )),
                None,
            )),
        }
    })
    .boxed()
}
