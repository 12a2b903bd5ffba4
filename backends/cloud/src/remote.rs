//! Reading from a remote store: what is there under a key (size, ETag, the local modification time
//! it was copied with) and streaming its data, whole or a byte range.

use crate::error::Error;
use crate::store::RemoteStore;
use archive_core::ReadRange;
use futures::{StreamExt, TryStreamExt};
use object_store::{Attribute, Attributes, GetOptions, GetRange};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// User metadata holding the local file's modification time (nanoseconds since the epoch), so that
/// a copy can be recognised as current and a restore gets its time back.
pub const MTIME_METADATA: &str = "archive-mtime";

/// An object in a remote store.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteObject {
    /// Bytes.
    pub size: u64,
    /// The store's ETag, without quotes.
    pub e_tag: Option<String>,
    /// When the store received it.
    pub last_modified: SystemTime,
    /// The local modification time it was copied with, when the store keeps metadata.
    pub mtime: Option<SystemTime>,
}

impl RemoteObject {
    /// The modification time to show and to restore: the local one it was copied with, else the
    /// store's.
    pub fn effective_mtime(&self) -> SystemTime {
        self.mtime.unwrap_or(self.last_modified)
    }

    /// Whether this is a copy of a local file of `size` bytes, modified at `mtime` and last changed
    /// (inode change) at `ctime`. With the copied modification time recorded, exact; without (a store
    /// that keeps no metadata), the copy must have been made after the last change.
    pub fn is_copy_of(&self, size: u64, mtime: SystemTime, ctime: SystemTime) -> bool {
        if self.size != size {
            return false;
        }
        match self.mtime {
            Some(copied) => copied == mtime,
            None => self.last_modified + Duration::from_secs(1) > ctime,
        }
    }
}

fn from_attributes(attributes: &Attributes) -> Option<SystemTime> {
    let value = attributes.get(&Attribute::Metadata(MTIME_METADATA.into()))?;
    let nanos: u64 = value.as_ref().parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// The metadata value recording `mtime`.
pub fn mtime_value(mtime: SystemTime) -> String {
    let nanos = mtime
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    nanos.to_string()
}

/// Wraps a client error of `operation` on `key` with the store's name.
pub(crate) fn error_for(
    store: &RemoteStore,
    operation: &'static str,
    key: &str,
) -> impl Fn(object_store::Error) -> Error {
    let name = store.name.clone();
    let key = key.to_string();
    move |source| Error::Store {
        store: name.clone(),
        operation,
        key: key.clone(),
        source: Box::new(source),
    }
}

/// What the store holds under `key`; `None` when nothing.
pub async fn head(store: &RemoteStore, key: &str) -> Result<Option<RemoteObject>, Error> {
    let options = GetOptions {
        head: true,
        ..GetOptions::default()
    };
    match store.store.get_opts(&store.path_of(key), options).await {
        Ok(got) => Ok(Some(RemoteObject {
            size: got.meta.size,
            e_tag: got
                .meta
                .e_tag
                .as_deref()
                .map(|t| t.trim_matches('"').to_string()),
            last_modified: SystemTime::from(got.meta.last_modified),
            mtime: from_attributes(&got.attributes),
        })),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(error_for(store, "HEAD", key)(e)),
    }
}

/// An open remote read.
pub struct RemoteRead {
    /// The object.
    pub object: RemoteObject,
    /// The bytes served.
    pub range: std::ops::Range<u64>,
    /// The data.
    pub stream: archive_core::ByteStream,
}

impl std::fmt::Debug for RemoteRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteRead")
            .field("object", &self.object)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// Streams `range` of the object under `key`, which is `object` (from a [`head`] just before; the
/// read is conditional on its ETag, so a replaced object fails instead of mixing versions).
pub async fn read(
    store: &RemoteStore,
    key: &str,
    object: RemoteObject,
    range: ReadRange,
) -> Result<RemoteRead, Error> {
    let wanted = range.resolve(object.size);
    let empty = wanted.start == wanted.end;
    if empty {
        // Stores refuse an empty range; there is nothing to fetch.
        return Ok(RemoteRead {
            object,
            range: wanted,
            stream: futures::stream::empty().boxed(),
        });
    }
    let options = GetOptions {
        if_match: object.e_tag.as_ref().map(|t| format!("\"{t}\"")),
        range: (wanted != (0..object.size)).then(|| GetRange::Bounded(wanted.clone())),
        ..GetOptions::default()
    };
    let got = store
        .store
        .get_opts(&store.path_of(key), options)
        .await
        .map_err(error_for(store, "GET", key))?;
    let name = store.name.clone();
    let stream = got
        .into_stream()
        .map_err(move |e| std::io::Error::other(format!("cloud store `{name}`: {e}")))
        .boxed();
    Ok(RemoteRead {
        object,
        range: wanted,
        stream,
    })
}

/// Deletes the object under `key`; a missing one is fine.
pub async fn delete(store: &RemoteStore, key: &str) -> Result<(), Error> {
    match store.store.delete(&store.path_of(key)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(error_for(store, "DELETE", key)(e)),
    }
}
