//! The `ArchiveBackend` trait: per-file operations and the batch-shaped HSM operations, with the
//! request/response types that cross it.

use crate::{Error, FileStatus, Key, Placement, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::ops::Range;
use std::path::Path;
use std::time::SystemTime;

/// Data crossing the trait: a stream of chunks. Upload streams carry the client's transport errors;
/// download streams carry backend read errors.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// How a `put` should behave.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Modification time to record; `None` = the time of the write.
    pub mtime: Option<SystemTime>,
    /// The length the client announced; a body of any other length is refused and nothing is stored.
    pub expected_len: Option<u64>,
    /// Replace an existing file atomically instead of refusing (write-once is the default).
    pub overwrite: bool,
}

/// What a successful `put` stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOutcome {
    /// Bytes written (and made durable).
    pub bytes: u64,
}

/// The part of a file a `get` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadRange {
    /// The whole file.
    #[default]
    All,
    /// From `start` up to `end` (exclusive), or to the end of the file. Both are clamped to the size.
    From {
        /// First byte.
        start: u64,
        /// One past the last byte, or `None` for the end of the file.
        end: Option<u64>,
    },
    /// The last `n` bytes (HTTP suffix range).
    Last(u64),
}

impl ReadRange {
    /// The concrete byte range this selects in a file of `size` bytes (clamped, never inverted).
    pub fn resolve(self, size: u64) -> Range<u64> {
        match self {
            ReadRange::All => 0..size,
            ReadRange::From { start, end } => {
                let start = start.min(size);
                let end = end.unwrap_or(size).clamp(start, size);
                start..end
            }
            ReadRange::Last(n) => size.saturating_sub(n)..size,
        }
    }
}

/// An open read: the file's status at open time, the range being served and its data.
pub struct GetResult {
    /// Status of the file that is being read (same open file as the data).
    pub status: FileStatus,
    /// The byte range `stream` yields.
    pub range: Range<u64>,
    /// The data.
    pub stream: ByteStream,
}

impl std::fmt::Debug for GetResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetResult")
            .field("status", &self.status)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// One entry of a prefix listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ListEntry {
    /// The file's key.
    pub key: Key,
    /// Size in bytes.
    pub size: u64,
    /// Modification time.
    pub mtime: SystemTime,
}

/// What a backend can do, declared by the backend so the server can refuse a configuration that cannot
/// work (before its port opens) instead of failing later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// The backend has a lower tier (tape): `placement`, `migrate`, `premigrate` and `recall` work and
    /// files can be non-resident. Without it the HLM API answers 501 and no recall scheduler runs.
    pub tape_tier: bool,
    /// Several processes may open the same prefix at once (a second server, a standalone dispatcher,
    /// servers behind a load balancer): the backend's state lives in the file system or in the HSM
    /// itself. A backend with process-local state (the tiered catalog) is held by one process.
    pub shared_by_processes: bool,
}

/// The outcome of a batch operation for one key. A batch never fails as a whole because one key failed.
pub type KeyOutcome<T> = (Key, Result<T>);

/// A storage backend. Object-safe; used as `Arc<dyn ArchiveBackend>` by both routers.
///
/// Contracts every implementation keeps (and the [`crate::conformance`] suite checks):
/// - `put` is atomic and durable: nothing is visible under the key until the whole body arrived, matched
///   `expected_len` and was fsynced; a failed or cut-off body leaves nothing behind and leaves an existing
///   file untouched. Without `overwrite`, an existing key fails with [`Error::AlreadyExists`]; of several
///   concurrent puts of one key exactly one succeeds.
/// - `get` streams with bounded memory; it fails with [`Error::NotResident`] for a migrated file.
/// - Missing keys give [`Error::NotFound`].
#[async_trait]
pub trait ArchiveBackend: Send + Sync + std::fmt::Debug + 'static {
    /// Short backend name (`posix`, `tiered`, ...), used in errors and logs.
    fn name(&self) -> &'static str;

    /// What this backend can do (see [`Capabilities`]).
    fn capabilities(&self) -> Capabilities;

    /// Stores `body` under `key`.
    async fn put(&self, key: &Key, body: ByteStream, options: PutOptions) -> Result<PutOutcome>;

    /// Opens `key` for reading and streams `range` of it.
    async fn get(&self, key: &Key, range: ReadRange) -> Result<GetResult>;

    /// The status of one file.
    async fn status(&self, key: &Key) -> Result<FileStatus>;

    /// Checks that the file can be staged and accepts the request; the key must exist. A no-op for
    /// disk-only backends. A backend with a tape tier does not start a recall here either: the server
    /// sends every recall through its recall scheduler (which calls [`recall`](Self::recall) in tape
    /// order, batched with other requests), so that no recall bypasses the scheduling.
    async fn stage(&self, key: &Key) -> Result<()>;

    /// Moves an existing server-side file (already checked against the allowed source directories) in
    /// under `key`. Without `overwrite`, an existing key fails with [`Error::AlreadyExists`].
    async fn adopt(&self, key: &Key, source: &Path, overwrite: bool) -> Result<()>;

    /// Removes `key`.
    async fn delete(&self, key: &Key) -> Result<()>;

    /// Every file whose key starts with `prefix` (a plain string prefix; `""` lists everything), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>>;

    /// One page of [`list`](Self::list): the entries whose key starts with `prefix` and sorts strictly
    /// after `after` (when given), at most `limit` of them, sorted by key. Backends with an ordered index
    /// answer in O(limit + log n); the default lists everything and is only correct, not cheap.
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListEntry>> {
        let mut entries = self.list(prefix).await?;
        if let Some(after) = after {
            entries.retain(|e| e.key.as_str() > after);
        }
        entries.truncate(limit);
        Ok(entries)
    }

    /// The status of many files at once.
    async fn status_many(&self, keys: &[Key]) -> Vec<KeyOutcome<FileStatus>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push((key.clone(), self.status(key).await));
        }
        out
    }

    /// Where each file lives (disk, or tape volume and position).
    async fn placement(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<Placement>>> {
        let _ = keys;
        Err(self.unsupported("placement"))
    }

    /// Copies files to the lower tier and releases their disk copies (-> migrated).
    async fn migrate(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        let _ = keys;
        Err(self.unsupported("migrate"))
    }

    /// Copies files to the lower tier and keeps their disk copies (-> premigrated).
    async fn premigrate(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        let _ = keys;
        Err(self.unsupported("premigrate"))
    }

    /// Brings migrated files back to disk (-> premigrated). The keys are read in the order given.
    async fn recall(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        let _ = keys;
        Err(self.unsupported("recall"))
    }

    /// Tape volumes currently mounted in a drive, so a recall scheduler can prefer work that needs no
    /// mount. Backends without drives (or that cannot tell) return an empty list, which only costs the
    /// scheduler that preference.
    async fn mounted_volumes(&self) -> Vec<String> {
        Vec::new()
    }

    /// The error for an HSM operation this backend does not have.
    fn unsupported(&self, operation: &'static str) -> Error {
        Error::Unsupported {
            backend: self.name(),
            operation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReadRange;

    #[test]
    fn ranges_resolve_like_the_reference_byte_range() {
        assert_eq!(ReadRange::All.resolve(10), 0..10);
        let from = |start, end| ReadRange::From { start, end };
        assert_eq!(from(1, Some(3)).resolve(3), 1..3);
        assert_eq!(from(0, Some(100)).resolve(3), 0..3);
        assert_eq!(from(5, Some(2)).resolve(10), 5..5);
        assert_eq!(from(20, None).resolve(10), 10..10);
        assert_eq!(from(4, None).resolve(10), 4..10);
        assert_eq!(ReadRange::Last(3).resolve(10), 7..10);
        assert_eq!(ReadRange::Last(30).resolve(10), 0..10);
    }
}
