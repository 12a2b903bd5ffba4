//! Streaming reads: the file is opened and checked on the blocking pool (so a missing file is an error
//! before any byte is sent), then read one chunk per blocking trip, one chunk ahead of the network.
//! Ranges up to one chunk are read at open time, so a small GET costs one blocking trip, and none at
//! all when the file is cached (see [`crate::cached`]).

use crate::beneath::RootDir;
use crate::error::PosixError;
use crate::{blocking, status_from_metadata, CHUNK_SIZE};
use archive_core::{GetResult, Key, ReadRange, Result};
use bytes::Bytes;
use futures::StreamExt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

pub(crate) async fn open(key: Key, root: RootDir, range: ReadRange) -> Result<GetResult> {
    let (status, range, first, file) = blocking(move || {
        let path = root.path().join(key.as_str());
        let err = |e| PosixError::Open(path.clone(), e).into_core(&key);
        let mut file = root.open_file(key.as_str()).map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        let status = status_from_metadata(&key, &path, &meta)?;
        let range = range.resolve(status.size);
        let len = range.end - range.start;
        if range.start > 0 {
            file.seek(SeekFrom::Start(range.start))
                .map_err(|e| PosixError::Read(path.clone(), e).into_core(&key))?;
        }
        let first_len = len.min(CHUNK_SIZE as u64) as usize;
        let first = read_chunk(&mut file, first_len)
            .map_err(|e| PosixError::Read(path.clone(), e).into_core(&key))?;
        let rest = (len > first_len as u64).then_some((file, len - first_len as u64));
        Ok((status, range, first, rest))
    })
    .await?;

    let head = futures::stream::once(async move { Ok(first) });
    let stream = match file {
        None => head.boxed(),
        Some((file, remaining)) => head.chain(read_rest(file, remaining)).boxed(),
    };
    Ok(GetResult {
        status,
        range,
        stream,
    })
}

/// Reads exactly `len` bytes (a file that shrank underneath us is an error, not a short body).
fn read_chunk(file: &mut File, len: usize) -> io::Result<Bytes> {
    // read_to_end fills the spare capacity without zeroing it first (a whole extra pass over memory
    // for large files).
    let mut buf = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file shrank while it was read",
        ));
    }
    Ok(Bytes::from(buf))
}

/// The rest of the file, one chunk per trip to the blocking pool, the next chunk read while the
/// network sends the current one. No thread waits on the client: a slow reader holds only the
/// chunk being sent and the one read ahead.
fn read_rest(file: File, remaining: u64) -> impl futures::Stream<Item = io::Result<Bytes>> {
    let first = read_ahead(file, remaining);
    futures::stream::unfold(Some(first), |state| async move {
        let (pending, remaining) = state?;
        let (file, chunk) = match pending.await {
            Ok(read) => read,
            Err(join) => return Some((Err(io::Error::other(join)), None)),
        };
        match chunk {
            Ok(chunk) => {
                let next = (remaining > 0).then(|| read_ahead(file, remaining));
                Some((Ok(chunk), next))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// A read in progress: the file and the next chunk when done, and what is left after that chunk.
type Pending = (tokio::task::JoinHandle<(File, io::Result<Bytes>)>, u64);

/// Starts reading the next chunk of the `remaining` bytes.
fn read_ahead(mut file: File, remaining: u64) -> Pending {
    let len = remaining.min(CHUNK_SIZE as u64);
    let handle = tokio::task::spawn_blocking(move || {
        let chunk = read_chunk(&mut file, len as usize);
        (file, chunk)
    });
    (handle, remaining - len)
}
