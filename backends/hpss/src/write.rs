//! PUT: the body streams through a bounded channel to a writer on the blocking pool, into a
//! temporary name in the target directory; only after the whole body arrived, matched the announced
//! length and was flushed is it dated, made read-only and renamed in. Anything else removes the
//! temporary file, so a failed or cut-off upload leaves nothing visible (nor behind).

use crate::backend::Inner;
use crate::error::Error;
use archive_core::{ByteStream, Key, PutOptions, PutOutcome};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Bytes handed to HPSS per write call (the channel holds at most a few of them).
const WRITE_CHUNK: usize = 1 << 20;
const CHANNEL_DEPTH: usize = 4;

enum Piece {
    Data(Bytes),
    /// The body is complete: flush and rename in.
    Commit {
        mtime: i64,
        overwrite: bool,
    },
}

/// Stores `body` under `key` (see the module doc for the atomicity).
pub(crate) async fn put(
    inner: Arc<Inner>,
    key: &Key,
    mut body: ByteStream,
    options: PutOptions,
) -> archive_core::Result<PutOutcome> {
    let target = inner.path_of(key);
    if !options.overwrite {
        let probe = target.clone();
        let exists = inner
            .blocking(move |i| Ok(i.client.lstat(&probe).is_ok()))
            .await
            .map_err(|e| e.into_core(key.as_str()))?;
        if exists {
            return Err(archive_core::Error::AlreadyExists {
                key: key.to_string(),
            });
        }
    }
    let (tx, rx) = mpsc::channel::<Piece>(CHANNEL_DEPTH);
    let writer = {
        let inner = Arc::clone(&inner);
        let target = target.clone();
        tokio::task::spawn_blocking(move || write_and_commit(&inner, &target, rx))
    };
    let mut received: u64 = 0;
    let mut pending = BytesMut::new();
    let mut failure: Option<archive_core::Error> = None;
    let mut writer_failed = false;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                failure = Some(archive_core::Error::InvalidArgument(format!(
                    "the upload of {key} ended early: {e}"
                )));
                break;
            }
        };
        received += chunk.len() as u64;
        if let Some(expected) = options.expected_len.filter(|&n| received > n) {
            failure = Some(length_mismatch(key, received, expected));
            break;
        }
        pending.extend_from_slice(&chunk);
        if pending.len() >= WRITE_CHUNK
            && tx
                .send(Piece::Data(pending.split().freeze()))
                .await
                .is_err()
        {
            writer_failed = true; // its own error is the answer, reported below
            break;
        }
    }
    if failure.is_none() && !writer_failed {
        if let Some(expected) = options.expected_len.filter(|&n| n != received) {
            failure = Some(length_mismatch(key, received, expected));
        }
    }
    if failure.is_none() && !writer_failed {
        let mtime = options.mtime.unwrap_or_else(SystemTime::now);
        let mtime = match mtime.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        };
        let _ = tx.send(Piece::Data(pending.split().freeze())).await;
        let _ = tx
            .send(Piece::Commit {
                mtime,
                overwrite: options.overwrite,
            })
            .await;
    }
    drop(tx);
    let written = match writer.await {
        Ok(result) => result,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    };
    if let Some(failure) = failure {
        return Err(failure);
    }
    written.map_err(|e| e.into_core(key.as_str()))?;
    Ok(PutOutcome { bytes: received })
}

fn length_mismatch(key: &Key, received: u64, expected: u64) -> archive_core::Error {
    archive_core::Error::InvalidArgument(format!(
        "Content-Length of {key} announced {expected} bytes, the body has {}{received}",
        if received > expected { "at least " } else { "" }
    ))
}

/// The blocking half: create the temporary file, write what arrives, and commit or clean up.
fn write_and_commit(
    inner: &Inner,
    target: &str,
    mut rx: mpsc::Receiver<Piece>,
) -> Result<(), Error> {
    let client = &inner.client;
    let (dir, _) = target.rsplit_once('/').unwrap_or(("", target));
    client.make_dirs(dir)?;
    // Short and unique: the stored name may already be as long as a name can be.
    let temp = format!(
        "{dir}/{}{}-{}.part",
        crate::TEMP_PREFIX,
        std::process::id(),
        inner.temp_counter.fetch_add(1, Ordering::Relaxed)
    );
    let fd = client.open(&temp, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600)?;
    let mut commit = None;
    let mut result = Ok(());
    while let Some(piece) = rx.blocking_recv() {
        match piece {
            Piece::Data(bytes) => {
                if let Err(e) = client.write_all(fd, &temp, &bytes) {
                    result = Err(e);
                    break;
                }
            }
            Piece::Commit { mtime, overwrite } => {
                commit = Some((mtime, overwrite));
                break;
            }
        }
    }
    drop(rx);
    if result.is_ok() && commit.is_some() {
        result = client.fsync(fd, &temp);
    }
    let closed = client.close(fd, &temp);
    let result = result.and(closed).and_then(|()| match commit {
        Some((mtime, overwrite)) => {
            client.utime(&temp, mtime)?;
            client.chmod(&temp, 0o444)?;
            inner.rename_in(&temp, target, overwrite)
        }
        None => Err(Error::Other {
            path: target.into(),
            why: "the upload did not complete".into(),
        }),
    });
    if result.is_err() {
        let _ = client.unlink(&temp);
    }
    result
}
