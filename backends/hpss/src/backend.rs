//! `HpssBackend`: the archive's files in an HPSS name space under a prefix, through one
//! logged-in client. Every call into the library runs on the blocking pool.

use crate::client::HpssClient;
use crate::config::HpssConfig;
use crate::error::Error;
use archive_core::{
    ArchiveBackend, ByteStream, Capabilities, FileStatus, GetResult, Key, KeyOutcome, ListEntry,
    Placement, PutOptions, PutOutcome, ReadRange,
};
use async_trait::async_trait;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// The IBM HPSS backend.
#[derive(Debug, Clone)]
pub struct HpssBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) client: HpssClient,
    pub(crate) config: HpssConfig,
    /// The prefix in the HPSS name space, without a trailing slash.
    root: String,
    /// Targets being renamed in by this process: the exists-check and the rename of one target
    /// never interleave (HPSS's rename replaces, and the API has no rename-if-absent).
    committing: Mutex<HashSet<String>>,
    pub(crate) temp_counter: AtomicU64,
}

impl HpssBackend {
    /// Loads the client library (every entry point resolved), logs in, and makes the prefix.
    /// Blocking. Fails naming the library, the missing entry point or the login error.
    pub fn open(
        prefix: &Path,
        config: HpssConfig,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        config.validate()?;
        let client = HpssClient::connect(&config)?;
        let root = prefix.display().to_string();
        let root = match root.trim_end_matches('/') {
            "" => "/".to_string(),
            r => r.to_string(),
        };
        client.make_dirs(&root)?;
        Ok(HpssBackend {
            inner: Arc::new(Inner {
                client,
                config,
                root,
                committing: Mutex::new(HashSet::new()),
                temp_counter: AtomicU64::new(0),
            }),
        })
    }

    /// The prefix in the HPSS name space.
    pub fn root(&self) -> &str {
        &self.inner.root
    }

    /// Whether the library offers the batch stage API (HPSS 9.3+).
    pub fn has_batch_stage(&self) -> bool {
        self.inner.client.lib.has_batch()
    }
}

impl Inner {
    pub(crate) fn path_of(&self, key: &Key) -> String {
        format!("{}/{}", self.root.trim_end_matches('/'), key.as_str())
    }

    /// Runs `f` on the blocking pool.
    pub(crate) async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Inner) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let inner = Arc::clone(self);
        match tokio::task::spawn_blocking(move || f(&inner)).await {
            Ok(r) => r,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }

    /// Stat plus per-level attributes (with NO_BLOCK: a file moving between levels never hangs).
    pub(crate) fn status_of(&self, path: &str) -> Result<FileStatus, Error> {
        let st = self.client.lstat(path)?;
        if st.is_dir != 0 || st.mode & libc::S_IFMT != libc::S_IFREG {
            return Err(not_a_file(path));
        }
        let x = self.client.xattrs(path)?;
        Ok(crate::status::file_status(path, &st, &x))
    }

    /// Whether a full copy is on level 0, and the size.
    pub(crate) fn on_disk(&self, path: &str) -> Result<(bool, u64), Error> {
        let st = self.status_of(path)?;
        Ok((st.media() == "disk", st.size))
    }

    /// Renames `temp` to `target`; without `overwrite` only if `target` does not exist.
    pub(crate) fn rename_in(&self, temp: &str, target: &str, overwrite: bool) -> Result<(), Error> {
        let _guard = CommitGuard::take(self, target);
        if !overwrite && self.client.lstat(target).is_ok() {
            return Err(Error::Call {
                call: "hpss_Rename",
                path: target.into(),
                rc: -libc::EEXIST,
                hpss_errno: 0,
            });
        }
        self.client.rename(temp, target)
    }

    fn list_blocking(&self, prefix: &str) -> Result<Vec<ListEntry>, Error> {
        // Walk from the deepest directory the prefix names; filter by the whole prefix.
        let start = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let mut out = Vec::new();
        let mut stack = vec![start.to_string()];
        while let Some(rel) = stack.pop() {
            let dir = if rel.is_empty() {
                self.root.clone()
            } else {
                format!("{}/{rel}", self.root.trim_end_matches('/'))
            };
            let names = match self.client.read_dir(&dir) {
                Ok(n) => n,
                Err(e) if e.rc() == Some(-libc::ENOENT) || e.rc() == Some(-libc::ENOTDIR) => {
                    continue
                }
                Err(e) => return Err(e),
            };
            for name in names {
                if name.starts_with(crate::TEMP_PREFIX) {
                    continue;
                }
                let key = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let path = format!("{dir}/{}", key.rsplit('/').next().unwrap_or(&key));
                let st = match self.client.lstat(&path) {
                    Ok(st) => st,
                    Err(e) if e.rc() == Some(-libc::ENOENT) => continue,
                    Err(e) => return Err(e),
                };
                if st.is_dir != 0 {
                    if prefix.starts_with(&format!("{key}/"))
                        || key.starts_with(prefix)
                        || prefix.is_empty()
                    {
                        stack.push(key);
                    }
                } else if st.mode & libc::S_IFMT == libc::S_IFREG && key.starts_with(prefix) {
                    if let Ok(k) = Key::new(&key) {
                        out.push(ListEntry {
                            key: k,
                            size: st.size,
                            mtime: crate::status::time(st.mtime),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
        Ok(out)
    }
}

fn not_a_file(path: &str) -> Error {
    Error::Call {
        call: "hpss_Lstat",
        path: path.into(),
        rc: -libc::ENOENT,
        hpss_errno: 0,
    }
}

/// Holds a target in `committing` until dropped; waits while another thread holds it.
struct CommitGuard<'a> {
    inner: &'a Inner,
    target: String,
}

impl<'a> CommitGuard<'a> {
    fn take(inner: &'a Inner, target: &str) -> Self {
        loop {
            {
                // A std Mutex: held only for the set operation, never across a call into HPSS.
                let mut set = inner.committing.lock().unwrap_or_else(|p| p.into_inner());
                if set.insert(target.to_string()) {
                    break;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        CommitGuard {
            inner,
            target: target.to_string(),
        }
    }
}

impl Drop for CommitGuard<'_> {
    fn drop(&mut self) {
        let mut set = self
            .inner
            .committing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        set.remove(&self.target);
    }
}

#[async_trait]
impl ArchiveBackend for HpssBackend {
    fn name(&self) -> &'static str {
        "hpss"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tape_tier: true,
            shared_by_processes: true,
        }
    }

    async fn put(
        &self,
        key: &Key,
        body: ByteStream,
        options: PutOptions,
    ) -> archive_core::Result<PutOutcome> {
        crate::write::put(Arc::clone(&self.inner), key, body, options).await
    }

    async fn get(&self, key: &Key, range: ReadRange) -> archive_core::Result<GetResult> {
        crate::read::get(Arc::clone(&self.inner), key, range).await
    }

    async fn status(&self, key: &Key) -> archive_core::Result<FileStatus> {
        let path = self.inner.path_of(key);
        self.inner
            .blocking(move |i| {
                i.client.check_latency()?;
                i.status_of(&path)
            })
            .await
            .map_err(|e| e.into_core(key.as_str()))
    }

    async fn status_many(&self, keys: &[Key]) -> Vec<KeyOutcome<FileStatus>> {
        let keys_owned = keys.to_vec();
        let result = self
            .inner
            .blocking(move |i| {
                i.client.check_latency()?;
                Ok(keys_owned
                    .iter()
                    .map(|k| {
                        (
                            k.clone(),
                            i.status_of(&i.path_of(k))
                                .map_err(|e| e.into_core(k.as_str())),
                        )
                    })
                    .collect::<Vec<_>>())
            })
            .await;
        match result {
            Ok(v) => v,
            Err(e) => {
                let message = e.to_string();
                keys.iter()
                    .map(|k| {
                        (
                            k.clone(),
                            Err(archive_core::Error::Unavailable {
                                message: message.clone(),
                                retry_after: Some(std::time::Duration::from_secs(30)),
                            }),
                        )
                    })
                    .collect()
            }
        }
    }

    async fn stage(&self, key: &Key) -> archive_core::Result<()> {
        let path = self.inner.path_of(key);
        self.inner
            .blocking(move |i| {
                i.client.check_latency()?;
                i.status_of(&path).map(drop)
            })
            .await
            .map_err(|e| e.into_core(key.as_str()))
    }

    async fn adopt(&self, key: &Key, source: &Path, overwrite: bool) -> archive_core::Result<()> {
        let target = self.inner.path_of(key);
        let source = source.display().to_string();
        self.inner
            .blocking(move |i| {
                let st = i.client.lstat(&source)?;
                if st.mode & libc::S_IFMT != libc::S_IFREG {
                    return Err(not_a_file(&source));
                }
                let (dir, _) = target.rsplit_once('/').unwrap_or(("", &target));
                i.client.make_dirs(dir)?;
                i.rename_in(&source, &target, overwrite)?;
                i.client.chmod(&target, 0o444)
            })
            .await
            .map_err(|e| e.into_core(key.as_str()))
    }

    async fn delete(&self, key: &Key) -> archive_core::Result<()> {
        let path = self.inner.path_of(key);
        self.inner
            .blocking(move |i| {
                let st = i.client.lstat(&path)?;
                if st.is_dir != 0 {
                    return Err(not_a_file(&path));
                }
                i.client.unlink(&path)
            })
            .await
            .map_err(|e| e.into_core(key.as_str()))
    }

    async fn list(&self, prefix: &str) -> archive_core::Result<Vec<ListEntry>> {
        let prefix_owned = prefix.to_string();
        self.inner
            .blocking(move |i| i.list_blocking(&prefix_owned))
            .await
            .map_err(|e| e.into_core(prefix))
    }

    async fn placement(&self, keys: &[Key]) -> archive_core::Result<Vec<KeyOutcome<Placement>>> {
        let keys = keys.to_vec();
        self.inner
            .blocking(move |i| {
                Ok(keys
                    .iter()
                    .map(|k| {
                        let path = i.path_of(k);
                        let found = i
                            .client
                            .lstat(&path)
                            .and_then(|st| Ok((st, i.client.xattrs(&path)?)))
                            .map(|(st, x)| crate::status::placement(&x, st.size));
                        (k.clone(), found.map_err(|e| e.into_core(k.as_str())))
                    })
                    .collect())
            })
            .await
            .map_err(|e| e.into_core(""))
    }

    async fn migrate(&self, keys: &[Key]) -> archive_core::Result<Vec<KeyOutcome<()>>> {
        crate::migrate::migrate(Arc::clone(&self.inner), keys, true).await
    }

    async fn premigrate(&self, keys: &[Key]) -> archive_core::Result<Vec<KeyOutcome<()>>> {
        crate::migrate::migrate(Arc::clone(&self.inner), keys, false).await
    }

    async fn recall(&self, keys: &[Key]) -> archive_core::Result<Vec<KeyOutcome<()>>> {
        let keys = keys.to_vec();
        self.inner
            .blocking(move |i| Ok(crate::stage::recall(i, &keys)))
            .await
            .map_err(|e| e.into_core(""))
    }
}
