//! GET: the file's status decides whether it can be read now (a full copy on level 0); a migrated
//! file is `NotResident`, so the server's recall scheduler stages it. The data streams from a reader
//! on the blocking pool through a bounded channel, after a seek to the range's start.

use crate::backend::Inner;
use archive_core::{GetResult, HsmState, Key, ReadRange};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::mpsc;

const READ_CHUNK: usize = 1 << 20;
const CHANNEL_DEPTH: usize = 2;

pub(crate) async fn get(
    inner: Arc<Inner>,
    key: &Key,
    range: ReadRange,
) -> archive_core::Result<GetResult> {
    let path = inner.path_of(key);
    let opened = {
        let path = path.clone();
        inner
            .blocking(move |i| {
                let status = i.status_of(&path)?;
                if status.media() != "disk" || status.state == HsmState::Migrated {
                    return Ok(Err(status));
                }
                let range = range.resolve(status.size);
                // O_NONBLOCK: never stage on open; only the recall scheduler stages.
                let fd = i.client.open(&path, libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
                if range.start > 0 {
                    if let Err(e) = i.client.seek(fd, &path, range.start) {
                        let _ = i.client.close(fd, &path);
                        return Err(e);
                    }
                }
                Ok(Ok((status, range, fd)))
            })
            .await
            .map_err(|e| e.into_core(key.as_str()))?
    };
    let (status, range, fd) = opened.map_err(|_| archive_core::Error::NotResident {
        key: key.to_string(),
    })?;
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(CHANNEL_DEPTH);
    let reader = Arc::clone(&inner);
    let span = range.clone();
    tokio::task::spawn_blocking(move || {
        let client = &reader.client;
        let mut left = span.end - span.start;
        let mut buf = vec![0u8; READ_CHUNK];
        while left > 0 {
            let want = buf.len().min(left as usize);
            let item = match client.read(fd, &path, &mut buf[..want]) {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{path} ended {left} bytes before its size"),
                )),
                Ok(n) => {
                    left -= n as u64;
                    Ok(Bytes::copy_from_slice(&buf[..n]))
                }
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                break; // the client went away, or the error was delivered
            }
        }
        if let Err(e) = client.close(fd, &path) {
            tracing::warn!(error = %e, "closing a read descriptor failed");
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(GetResult {
        status,
        range,
        stream: Box::pin(stream),
    })
}
