//! Container listings over the cloud tier: the index's rows merged in name order with the objects
//! that exist only in a remote store (put there by another site, or archived before this server's
//! index knew them), so that `marker`/`limit` paging runs across both. A store that cannot be listed
//! fails the listing (503 naming the store); it is never silently shorter.

use super::index::Start;
use super::metadata::ObjectMeta;
use crate::error::ApiResult;
use crate::AppState;
use archive_core::{FileStatus, HsmState};
use std::collections::BTreeMap;

/// `local` (one index page from `start`, at most `limit` rows) merged with the remote objects of the
/// container from the same `start`, cut to `limit`. Without a cloud tier: `local` as it is.
pub(super) async fn merge_remote_objects(
    state: &AppState,
    account: &str,
    container: &str,
    start: &Start,
    limit: usize,
    local: Vec<ObjectMeta>,
) -> ApiResult<Vec<ObjectMeta>> {
    let Some(cloud) = &state.cloud else {
        return Ok(local);
    };
    let prefix = format!("{}/{account}/{container}/", state.config.swift.root);
    let (name, inclusive) = match start {
        Start::From(name) => (name, true),
        Start::After(name) => (name, false),
    };
    let remote = cloud
        .remote_page(&prefix, &format!("{prefix}{name}"), inclusive, limit)
        .await?;
    let mut merged: BTreeMap<String, ObjectMeta> = BTreeMap::new();
    for entry in remote {
        let name = entry.key.as_str()[prefix.len()..].to_string();
        let status = FileStatus {
            size: entry.size,
            mtime: entry.mtime,
            ctime: entry.mtime,
            state: HsmState::Migrated,
            bytes_per_level: vec![0, entry.size],
            location: String::new(),
        };
        merged.insert(name.clone(), ObjectMeta::fallback(&name, &status));
    }
    // The index's row wins where both have the object: it has the ETag and metadata.
    for row in local {
        merged.insert(row.name.clone(), row);
    }
    Ok(merged.into_values().take(limit).collect())
}
