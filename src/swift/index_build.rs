//! Opening the Swift index: where its file lives, building it once from what an existing prefix holds
//! (objects' data, and the JSON records earlier versions kept under `.archiveinterface-swift/`), and
//! repairing what a crash between an object's data and its row left behind.
//!
//! The build walks the prefix through the backend (whose listing runs off the async runtime) and
//! writes every row in one transaction that first checks, under the write lock, that no other
//! process built the index meanwhile.

use super::checksum::md5_of_stream;
use super::index::{index_error, Intent, SwiftIndex};
use super::metadata::{read_record, AccountMeta, ContainerMeta, ObjectMeta};
use super::names::{self, object_key};
use crate::error::ApiResult;
use crate::AppState;
use archive_core::{Error as BackendError, FileStatus, ReadRange};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// Old records read at once while building.
const RECORD_READS_IN_FLIGHT: usize = 32;

/// The index file: `[swift] index_path`, or `.archiveinterface-swift/index.sqlite3` in the state
/// directory (the prefix unless `state_dir` says otherwise).
pub(super) fn index_path(state: &AppState) -> PathBuf {
    let configured = &state.config.swift.index_path;
    if configured.as_os_str().is_empty() {
        state
            .config
            .local_state_dir()
            .join(names::STATE_DIR)
            .join("index.sqlite3")
    } else {
        configured.clone()
    }
}

/// Opens the index, builds it if this prefix has none yet, and repairs interrupted PUTs.
pub(super) async fn open_index(state: &AppState) -> ApiResult<SwiftIndex> {
    let path = index_path(state);
    let index = SwiftIndex::open(&path).await?;
    let mut tx = index.begin().await?;
    let built = tx.is_built().await?;
    drop(tx);
    if !built {
        build(state, &index).await?;
    }
    for intent in index.intents().await? {
        repair(state, &index, intent).await?;
    }
    tracing::info!(path = %path.display(), "Swift index open");
    Ok(index)
}

/// An object's account, container and name.
type ObjectName = (String, String, String);

/// Everything an existing prefix says about its Swift names.
#[derive(Default)]
struct Found {
    accounts: BTreeMap<String, AccountMeta>,
    containers: BTreeMap<(String, String), ContainerMeta>,
    objects: Vec<(String, String, ObjectMeta)>,
}

async fn build(state: &AppState, index: &SwiftIndex) -> ApiResult<()> {
    let found = walk(state).await?;
    let mut tx = index.begin().await?;
    if tx.is_built().await? {
        // Another process sharing the prefix built it while this one walked.
        return Ok(());
    }
    for (account, meta) in &found.accounts {
        tx.set_account_headers(account, &meta.headers).await?;
    }
    for ((account, container), meta) in &found.containers {
        tx.put_container(account, container, meta).await?;
    }
    for (account, container, record) in &found.objects {
        tx.put_object(account, container, record).await?;
    }
    tx.mark_built().await?;
    tx.commit().await?;
    if !found.containers.is_empty() {
        tracing::info!(
            containers = found.containers.len(),
            objects = found.objects.len(),
            "Swift index built from the existing prefix"
        );
    }
    Ok(())
}

/// Lists the records and data of an existing prefix.
async fn walk(state: &AppState) -> ApiResult<Found> {
    let config = &state.config.swift;
    let backend = &state.backend;
    let mut found = Found::default();
    let records = names::records_root(config);
    for entry in backend.list(&format!("{records}/accounts/")).await? {
        let Some(account) = entry.key.as_str().rsplit('/').next() else {
            continue;
        };
        if let Some(meta) = read_record::<AccountMeta>(state, &entry.key).await? {
            found.accounts.insert(account.to_string(), meta);
        }
    }
    let containers_prefix = format!("{records}/containers/");
    for entry in backend.list(&containers_prefix).await? {
        let rest = entry.key.as_str().strip_prefix(&containers_prefix);
        let Some((account, container)) = rest.and_then(|r| r.split_once('/')) else {
            continue;
        };
        if let Some(meta) = read_record::<ContainerMeta>(state, &entry.key).await? {
            found
                .containers
                .insert((account.to_string(), container.to_string()), meta);
        }
    }
    // Old object records are named by a hash of the object name and carry the name.
    let objects_prefix = format!("{records}/objects/");
    let old: Vec<Option<(ObjectName, ObjectMeta)>> =
        futures::stream::iter(backend.list(&objects_prefix).await?)
            .map(|entry| {
                let objects_prefix = &objects_prefix;
                async move {
                    let rest = entry.key.as_str().strip_prefix(objects_prefix.as_str());
                    let Some((account, rest)) = rest.and_then(|r| r.split_once('/')) else {
                        return Ok(None);
                    };
                    let Some((container, _)) = rest.split_once('/') else {
                        return Ok(None);
                    };
                    let record: Option<ObjectMeta> = read_record(state, &entry.key).await?;
                    Ok::<_, crate::error::ApiError>(record.map(|r| {
                        (
                            (account.to_string(), container.to_string(), r.name.clone()),
                            r,
                        )
                    }))
                }
            })
            .buffered(RECORD_READS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<ApiResult<_>>()?;
    let mut old: HashMap<_, _> = old.into_iter().flatten().collect();
    let data_prefix = format!("{}/", config.root);
    let mut orphans = 0usize;
    for entry in backend.list(&data_prefix).await? {
        let rest = entry.key.as_str().strip_prefix(&data_prefix);
        let Some((account, rest)) = rest.and_then(|r| r.split_once('/')) else {
            continue;
        };
        let Some((container, name)) = rest.split_once('/') else {
            continue;
        };
        let (account, container) = (account.to_string(), container.to_string());
        if !found
            .containers
            .contains_key(&(account.clone(), container.clone()))
        {
            // Data of a container that does not exist was never listed: it stays out of the index.
            orphans += 1;
            continue;
        }
        let status = FileStatus {
            size: entry.size,
            mtime: entry.mtime,
            ctime: entry.mtime,
            state: archive_core::HsmState::Unknown,
            bytes_per_level: Vec::new(),
            location: String::new(),
        };
        let record = old
            .remove(&(account.clone(), container.clone(), name.to_string()))
            .filter(|r| r.describes(&status))
            .unwrap_or_else(|| ObjectMeta::fallback(name, &status));
        found.objects.push((account, container, record));
    }
    if orphans > 0 {
        tracing::warn!(
            orphans,
            "objects whose container does not exist were left out of the Swift index"
        );
    }
    Ok(found)
}

/// Finishes or forgets the PUT an intent recorded. Its data was linked when the data's identity is
/// the intent's: then its row is written with the intent's metadata and the data's MD5 (read back,
/// since the crash lost the one computed on the way in). Otherwise the PUT never linked its data
/// or a later one replaced it, and the intent is dropped.
async fn repair(state: &AppState, index: &SwiftIndex, intent: Intent) -> ApiResult<()> {
    let Intent {
        id,
        account,
        container,
        mut record,
    } = intent;
    let key = object_key(&state.config.swift, &account, &container, &record.name)?;
    // The intent's size may be unknown (a chunked upload): its unique write time identifies the data.
    let linked = match state.backend.status(&key).await {
        Ok(status) if record.same_write(&status) => {
            record.size = status.size;
            true
        }
        Ok(_) | Err(BackendError::NotFound { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    let current = index.object(&account, &container, &record.name).await?;
    let committed = current
        .is_some_and(|row| row.data_mtime_ns == record.data_mtime_ns && row.size == record.size);
    if linked && !committed {
        record.etag = match state.backend.get(&key, ReadRange::All).await {
            Ok(got) => md5_of_stream(got.stream).await.map_err(index_error)?,
            // Data on tape only: its ETag stays unknown until it is written again.
            Err(BackendError::NotResident { .. }) => String::new(),
            Err(e) => return Err(e.into()),
        };
    }
    let mut tx = index.begin().await?;
    if linked && !committed && tx.container(&account, &container).await?.is_some() {
        // Checked again under the lock: another writer may have replaced the data meanwhile.
        if let Ok(status) = state.backend.status(&key).await {
            if record.describes(&status) {
                tx.put_object(&account, &container, &record).await?;
                tracing::warn!(
                    account,
                    container,
                    object = record.name,
                    "repaired the index row of an object whose PUT was interrupted"
                );
            }
        }
    }
    tx.remove_intent(id).await?;
    tx.commit().await
}
