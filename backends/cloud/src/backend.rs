//! [`CloudBackend`]: the cloud tier layered over any local backend, so both APIs get it unchanged.
//! The remote store is this backend's lower tier: `premigrate` copies (verified, idempotent),
//! `migrate` copies and then releases the local copy (archive), `recall` restores. The server's
//! request queue and dispatcher run those, as for tape.
//!
//! Reading: local first; a file that exists only remotely is read through from the store (ranges
//! passed on), or, with the policy's `restore_on_read`, reported `NotResident` so that the server
//! restores it through its recall scheduler and then serves the local copy. Unlike a tape tier, a
//! `migrated` file here is readable without a recall.
//!
//! Safety of the release: the local copy is deleted only after the remote copy was confirmed (size,
//! ETag) to be a copy of the local file as it is at that moment; a crash anywhere leaves at least
//! one complete copy, and a repeated archive finds the remote copy current and only releases.

use crate::config::{CloudConfig, PolicyConfig};
use crate::copy;
use crate::error::Error;
use crate::metrics::CloudMetrics;
use crate::policy::{selects, KeySpace};
use crate::remote::{self, RemoteObject};
use crate::store::RemoteStore;
use archive_core::{
    ArchiveBackend, ByteStream, Capabilities, FileStatus, GetResult, HsmState, Key, KeyOutcome,
    ListEntry, Placement, PutOptions, PutOutcome, ReadRange, Result,
};
use async_trait::async_trait;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Remote HEADs run at once for a batch status.
const STATUS_CONCURRENCY: usize = 16;

/// The cloud tier over a local backend.
#[derive(Debug)]
pub struct CloudBackend {
    local: Arc<dyn ArchiveBackend>,
    stores: BTreeMap<String, Arc<RemoteStore>>,
    policies: Vec<PolicyConfig>,
    space: KeySpace,
    metrics: Arc<CloudMetrics>,
}

/// The policy and store that apply to a key.
#[derive(Debug, Clone, Copy)]
pub struct Selected<'a> {
    /// The first policy that selects the key.
    pub policy: &'a PolicyConfig,
    /// Its store.
    pub store: &'a RemoteStore,
}

impl CloudBackend {
    /// Opens every store of `config` and checks that each is reachable (start-up fails naming the
    /// first that is not).
    pub async fn open(
        local: Arc<dyn ArchiveBackend>,
        config: &CloudConfig,
        space: KeySpace,
    ) -> std::result::Result<CloudBackend, Error> {
        let backend = CloudBackend::open_unchecked(local, config, space)?;
        for store in backend.stores.values() {
            store.check_reachable().await?;
        }
        Ok(backend)
    }

    /// Opens every store of `config` without contacting them.
    pub fn open_unchecked(
        local: Arc<dyn ArchiveBackend>,
        config: &CloudConfig,
        space: KeySpace,
    ) -> std::result::Result<CloudBackend, Error> {
        let mut stores = BTreeMap::new();
        for (name, store_config) in &config.stores {
            let store = RemoteStore::open(name, store_config)?;
            stores.insert(name.clone(), Arc::new(store));
        }
        let metrics = Arc::new(CloudMetrics::new(stores.keys().map(String::as_str)));
        Ok(CloudBackend {
            local,
            stores,
            policies: config.policies.clone(),
            space,
            metrics,
        })
    }

    /// The tier's counters.
    pub fn metrics(&self) -> &Arc<CloudMetrics> {
        &self.metrics
    }

    /// The local backend underneath.
    pub fn local(&self) -> &Arc<dyn ArchiveBackend> {
        &self.local
    }

    /// How the server names files.
    pub fn key_space(&self) -> &KeySpace {
        &self.space
    }

    /// The configured policies, in order.
    pub fn policies(&self) -> &[PolicyConfig] {
        &self.policies
    }

    /// The first policy selecting `key`, with its store.
    pub fn selected(&self, key: &str) -> Option<Selected<'_>> {
        let policy = self
            .policies
            .iter()
            .find(|p| selects(p, &self.space, key))?;
        let store = self.stores.get(&policy.store)?;
        Some(Selected { policy, store })
    }

    fn must_select(&self, key: &Key) -> std::result::Result<Selected<'_>, Error> {
        self.selected(key.as_str()).ok_or_else(|| Error::NoPolicy {
            key: key.to_string(),
        })
    }

    /// Counts an error of `store` and passes it on.
    fn counted(&self, store: &RemoteStore, e: Error) -> Error {
        CloudMetrics::add(&self.metrics.store(&store.name).errors, 1);
        e
    }

    async fn remote_head(&self, store: &RemoteStore, key: &str) -> Result<Option<RemoteObject>> {
        remote::head(store, key)
            .await
            .map_err(|e| self.counted(store, e).into())
    }

    /// Copies `key` to its store unless the store holds a current copy already. Returns the local
    /// status the copy is of (`None`: the file is only remote, nothing to copy).
    pub async fn copy(&self, key: &Key) -> Result<Option<FileStatus>> {
        let selected = self.must_select(key)?;
        let store = selected.store;
        let status = match self.local.status(key).await {
            Ok(status) => status,
            Err(archive_core::Error::NotFound { .. }) => {
                return match self.remote_head(store, key.as_str()).await? {
                    Some(_) => Ok(None),
                    None => Err(archive_core::Error::NotFound {
                        key: key.to_string(),
                    }),
                };
            }
            Err(e) => return Err(e),
        };
        let counters = self.metrics.store(&store.name);
        let existing = self.remote_head(store, key.as_str()).await?;
        if let Some(object) = &existing {
            if object.is_copy_of(status.size, status.mtime, status.ctime) {
                CloudMetrics::add(&counters.copies_skipped, 1);
                return Ok(Some(status));
            }
        }
        let keeps_metadata = !store.url.starts_with("file:");
        let replace = existing.is_some();
        let copied = copy::copy_file(
            self.local.as_ref(),
            store,
            key,
            &status,
            keeps_metadata,
            replace,
        )
        .await
        .map_err(|e| self.counted(store, e))?;
        let Some(copied) = copied else {
            // Another instance stored it meanwhile: current if it copied this same file.
            return match self.remote_head(store, key.as_str()).await? {
                Some(object) if object.is_copy_of(status.size, status.mtime, status.ctime) => {
                    CloudMetrics::add(&counters.copies_skipped, 1);
                    Ok(Some(status))
                }
                _ => Err(Error::ChangedDuringCopy {
                    store: store.name.clone(),
                    key: key.to_string(),
                }
                .into()),
            };
        };
        CloudMetrics::add(&counters.bytes_copied, copied.bytes);
        CloudMetrics::add(&counters.objects_copied, 1);
        tracing::info!(%key, store = %store.name, bytes = copied.bytes, "copied to the cloud store");
        Ok(Some(status))
    }

    /// Copies `key` (when needed), then releases the local copy if it is still the file that was
    /// copied and the remote copy is confirmed current.
    pub async fn archive(&self, key: &Key) -> Result<()> {
        let Some(copied) = self.copy(key).await? else {
            return Ok(());
        };
        let selected = self.must_select(key)?;
        let store = selected.store;
        let changed = || {
            archive_core::Error::from(Error::ChangedDuringCopy {
                store: store.name.clone(),
                key: key.to_string(),
            })
        };
        let now = self.local.status(key).await?;
        if now.size != copied.size || now.mtime != copied.mtime || now.ctime != copied.ctime {
            return Err(changed());
        }
        match self.remote_head(store, key.as_str()).await? {
            Some(object) if object.is_copy_of(now.size, now.mtime, now.ctime) => {}
            _ => return Err(changed()),
        }
        self.local.delete(key).await?;
        CloudMetrics::add(&self.metrics.store(&store.name).objects_released, 1);
        tracing::info!(%key, store = %store.name, "local copy released; the file is archived");
        Ok(())
    }

    /// Brings a remote-only file back to local storage (a file present locally is left as it is).
    pub async fn restore(&self, key: &Key) -> Result<()> {
        match self.local.status(key).await {
            Ok(_) => return Ok(()),
            Err(archive_core::Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let selected = self.must_select(key)?;
        let store = selected.store;
        let Some(object) = self.remote_head(store, key.as_str()).await? else {
            return Err(archive_core::Error::NotFound {
                key: key.to_string(),
            });
        };
        let mtime = object.effective_mtime();
        let size = object.size;
        let read = remote::read(store, key.as_str(), object, ReadRange::All)
            .await
            .map_err(|e| archive_core::Error::from(self.counted(store, e)))?;
        let options = PutOptions {
            mtime: Some(mtime),
            expected_len: Some(size),
            overwrite: false,
        };
        match self.local.put(key, read.stream, options).await {
            // A PUT of the same key won the race: the newer local file stays.
            Ok(_) | Err(archive_core::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        CloudMetrics::add(&self.metrics.store(&store.name).objects_restored, 1);
        tracing::info!(%key, store = %store.name, "restored from the cloud store");
        Ok(())
    }

    fn remote_status(&self, store: &RemoteStore, key: &str, object: &RemoteObject) -> FileStatus {
        FileStatus {
            size: object.size,
            mtime: object.effective_mtime(),
            ctime: object.last_modified,
            state: HsmState::Migrated,
            bytes_per_level: vec![0, object.size],
            location: store.location_of(key),
        }
    }

    /// The status of a file present locally: `premigrated` when the store holds a current copy.
    async fn with_remote(&self, key: &str, mut status: FileStatus) -> FileStatus {
        let Some(selected) = self.selected(key) else {
            return status;
        };
        let size = status.size;
        match self.remote_head(selected.store, key).await {
            Ok(Some(object)) if object.is_copy_of(size, status.mtime, status.ctime) => {
                status.state = HsmState::Premigrated;
                status.bytes_per_level = vec![size, size];
            }
            Ok(_) => {
                status.state = HsmState::Resident;
                status.bytes_per_level = vec![size, 0];
            }
            Err(e) => {
                // The local copy is readable whatever the store says; only the tier is unknown.
                tracing::warn!(%key, error = %e, "cannot tell whether the cloud store holds a copy");
                status.state = HsmState::Unknown;
                status.bytes_per_level = vec![size, 0];
            }
        }
        status
    }

    /// Refuses to create `key` over a file that exists only remotely (the archive is write-once).
    async fn check_not_remote(&self, key: &Key) -> Result<()> {
        let Some(selected) = self.selected(key.as_str()) else {
            return Ok(());
        };
        match self.local.status(key).await {
            Ok(_) => return Ok(()), // the local backend decides
            Err(archive_core::Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        match self.remote_head(selected.store, key.as_str()).await? {
            Some(_) => Err(archive_core::Error::AlreadyExists {
                key: key.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// The stores a listing under `prefix` must include: those of policies that can select keys
    /// starting with it (a listing of a container no policy selects asks no store).
    fn stores_for_prefix(&self, prefix: &str) -> Vec<&RemoteStore> {
        let mut names: Vec<&str> = self
            .policies
            .iter()
            .filter(|p| crate::policy::may_select_under(p, &self.space, prefix))
            .map(|p| p.store.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .filter_map(|n| self.stores.get(n).map(Arc::as_ref))
            .collect()
    }

    /// Remote entries under `prefix` (sorted), keys the policies select only.
    async fn remote_list(
        &self,
        store: &RemoteStore,
        prefix: &str,
        start: Option<(&str, bool)>,
        limit: usize,
    ) -> Result<Vec<ListEntry>> {
        let after = start.filter(|(_, inclusive)| !inclusive).map(|(s, _)| s);
        let from = start.filter(|(_, inclusive)| *inclusive).map(|(s, _)| s);
        // S3, GCS and Azure list in key order, so a page can stop early; a directory store cannot.
        let ordered = !store.url.starts_with("file:");
        // Listing from the deepest directory the prefix names, then filtering by the string prefix.
        let dir = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let path = if dir.is_empty() {
            store.prefix.clone()
        } else {
            store.path_of(dir)
        };
        let mut stream = match after {
            Some(after) => store
                .store
                .list_with_offset(Some(&path), &store.path_of(after)),
            None => store.store.list(Some(&path)),
        };
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|source| {
                archive_core::Error::from(self.counted(
                    store,
                    Error::Store {
                        store: store.name.clone(),
                        operation: "LIST",
                        key: prefix.to_string(),
                        source: Box::new(source),
                    },
                ))
            })?;
            let Some(key) = store.key_of(&meta.location) else {
                continue;
            };
            if !key.starts_with(prefix)
                || after.is_some_and(|a| key.as_str() <= a)
                || from.is_some_and(|f| key.as_str() < f)
                || self.selected(&key).map(|s| s.store.name.as_str()) != Some(store.name.as_str())
            {
                continue;
            }
            let Ok(key) = Key::new(key) else { continue };
            out.push(ListEntry {
                key,
                size: meta.size,
                mtime: std::time::SystemTime::from(meta.last_modified),
            });
            if ordered && out.len() >= limit {
                break;
            }
        }
        // Stores list in their own order (S3: by key bytes; a directory store: unordered).
        out.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        out.truncate(limit);
        Ok(out)
    }

    /// Objects in the stores whose keys start with `prefix` and sort from `start` on (`inclusive`)
    /// or after it, at most `limit`, sorted: the remote side of a merged listing. A store that
    /// cannot be listed fails the whole page (503 naming it), never shortens it.
    pub async fn remote_page(
        &self,
        prefix: &str,
        start: &str,
        inclusive: bool,
        limit: usize,
    ) -> Result<Vec<ListEntry>> {
        let mut merged: BTreeMap<String, ListEntry> = BTreeMap::new();
        for store in self.stores_for_prefix(prefix) {
            for entry in self
                .remote_list(store, prefix, Some((start, inclusive)), limit)
                .await?
            {
                merged.insert(entry.key.as_str().to_string(), entry);
            }
        }
        Ok(merged.into_values().take(limit).collect())
    }

    async fn merged_list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListEntry>> {
        let mut merged: BTreeMap<String, ListEntry> = BTreeMap::new();
        for store in self.stores_for_prefix(prefix) {
            let start = after.map(|a| (a, false));
            for entry in self.remote_list(store, prefix, start, limit).await? {
                merged.insert(entry.key.as_str().to_string(), entry);
            }
        }
        // Local entries win: they are the current data where both exist.
        for entry in self.local.list_page(prefix, after, limit).await? {
            merged.insert(entry.key.as_str().to_string(), entry);
        }
        Ok(merged.into_values().take(limit).collect())
    }
}

#[async_trait]
impl ArchiveBackend for CloudBackend {
    fn name(&self) -> &'static str {
        "cloud"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tape_tier: true,
            shared_by_processes: self.local.capabilities().shared_by_processes,
        }
    }

    async fn put(&self, key: &Key, body: ByteStream, options: PutOptions) -> Result<PutOutcome> {
        if !options.overwrite {
            self.check_not_remote(key).await?;
        }
        self.local.put(key, body, options).await
    }

    async fn get(&self, key: &Key, range: ReadRange) -> Result<GetResult> {
        let missing = match self.local.get(key, range).await {
            Err(e @ archive_core::Error::NotFound { .. }) => e,
            other => return other,
        };
        let Some(selected) = self.selected(key.as_str()) else {
            return Err(missing);
        };
        let store = selected.store;
        let Some(object) = self.remote_head(store, key.as_str()).await? else {
            return Err(missing);
        };
        if selected.policy.restore_on_read {
            return Err(archive_core::Error::NotResident {
                key: key.to_string(),
            });
        }
        let status = self.remote_status(store, key.as_str(), &object);
        let read = remote::read(store, key.as_str(), object, range)
            .await
            .map_err(|e| archive_core::Error::from(self.counted(store, e)))?;
        CloudMetrics::add(&self.metrics.store(&store.name).read_through_hits, 1);
        Ok(GetResult {
            status,
            range: read.range,
            stream: read.stream,
        })
    }

    async fn status(&self, key: &Key) -> Result<FileStatus> {
        match self.local.status(key).await {
            Ok(status) => Ok(self.with_remote(key.as_str(), status).await),
            Err(missing @ archive_core::Error::NotFound { .. }) => {
                let Some(selected) = self.selected(key.as_str()) else {
                    return Err(missing);
                };
                match self.remote_head(selected.store, key.as_str()).await? {
                    Some(object) => Ok(self.remote_status(selected.store, key.as_str(), &object)),
                    None => Err(missing),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn status_many(&self, keys: &[Key]) -> Vec<KeyOutcome<FileStatus>> {
        futures::stream::iter(keys.iter().cloned())
            .map(|key| async move {
                let status = self.status(&key).await;
                (key, status)
            })
            .buffered(STATUS_CONCURRENCY)
            .collect()
            .await
    }

    async fn stage(&self, key: &Key) -> Result<()> {
        // A remote-only file exists: staging it is accepted, and the server's recall brings it back.
        self.status(key).await.map(|_| ())
    }

    async fn adopt(&self, key: &Key, source: &Path, overwrite: bool) -> Result<()> {
        if !overwrite {
            self.check_not_remote(key).await?;
        }
        self.local.adopt(key, source, overwrite).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let Some(selected) = self.selected(key.as_str()) else {
            return self.local.delete(key).await;
        };
        let store = selected.store;
        let remote_delete = || async {
            remote::delete(store, key.as_str())
                .await
                .map_err(|e| archive_core::Error::from(self.counted(store, e)))
        };
        match self.local.status(key).await {
            Ok(_) => {
                // Remote first: if the store is down nothing is deleted and the client may retry.
                if selected.policy.propagate_delete {
                    remote_delete().await?;
                }
                self.local.delete(key).await
            }
            Err(missing @ archive_core::Error::NotFound { .. }) => {
                // Only remote (archived): deleting it is what the client asks for.
                match self.remote_head(store, key.as_str()).await? {
                    Some(_) => remote_delete().await,
                    None => Err(missing),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        self.merged_list(prefix, None, usize::MAX).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListEntry>> {
        self.merged_list(prefix, after, limit).await
    }

    async fn placement(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<Placement>>> {
        let mut out = Vec::with_capacity(keys.len());
        for (key, status) in self.status_many(keys).await {
            let placement =
                status.map(|status| match (status.state, self.selected(key.as_str())) {
                    (HsmState::Premigrated | HsmState::Migrated, Some(selected)) => {
                        Placement::Tape {
                            volume: selected.store.name.clone(),
                            position: 0,
                            resident_copy: status.state == HsmState::Premigrated,
                        }
                    }
                    _ => Placement::Disk,
                });
            out.push((key, placement));
        }
        Ok(out)
    }

    async fn migrate(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push((key.clone(), self.archive(key).await));
        }
        Ok(out)
    }

    async fn premigrate(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push((key.clone(), self.copy(key).await.map(|_| ())));
        }
        Ok(out)
    }

    async fn recall(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push((key.clone(), self.restore(key).await));
        }
        Ok(out)
    }
}
