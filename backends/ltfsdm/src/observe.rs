//! What a file is now: its metadata from the file system (size and times; a migrated file keeps both)
//! and its HSM state and tape copies from `ltfsdm info files`, asked for up to `batch_files` files per
//! command. Status, placement, reads and the check after a failed operation all start here.

use crate::command::Output;
use crate::error::LtfsdmError;
use crate::info::{parse_info_files, FileInfo};
use crate::{listable, with_state, Inner};
use archive_core::{Error, FileStatus, Key, KeyOutcome, Result};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

/// A file's status with its state applied, and its tape copies (first copy first).
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    pub(crate) status: FileStatus,
    pub(crate) tapes: Vec<String>,
}

/// One error for every key of a batch that failed as a whole (the core error is not `Clone`).
pub(crate) fn for_each_key(e: &Error) -> Error {
    match e {
        Error::Unavailable {
            message,
            retry_after,
        } => Error::Unavailable {
            message: message.clone(),
            retry_after: *retry_after,
        },
        Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
        Error::NotFound { key } => Error::NotFound { key: key.clone() },
        other => Error::backend("ltfsdm", other.to_string()),
    }
}

impl Inner {
    /// One file.
    pub(crate) async fn observe_one(self: &Arc<Self>, key: &Key) -> Result<Observed> {
        self.observe(std::slice::from_ref(key))
            .await
            .pop()
            .map(|(_, observed)| observed)
            .unwrap_or_else(|| Err(Error::backend("ltfsdm", "no answer for the file")))
    }

    /// Every key, in order, one outcome each; one `info files` command per `batch_files` keys.
    pub(crate) async fn observe(self: &Arc<Self>, keys: &[Key]) -> Vec<KeyOutcome<Observed>> {
        let mut out = Vec::with_capacity(keys.len());
        for batch in keys.chunks(self.config.batch_files) {
            out.extend(self.observe_batch(batch).await);
        }
        out
    }

    async fn observe_batch(self: &Arc<Self>, keys: &[Key]) -> Vec<KeyOutcome<Observed>> {
        let stats = self.stat_all(keys).await;
        let mut answers: Vec<Option<Result<Observed>>> = Vec::with_capacity(keys.len());
        let mut asked = Vec::new();
        for (i, (key, stat)) in keys.iter().zip(stats).enumerate() {
            answers.push(
                match stat.and_then(|st| {
                    listable(key).map_err(LtfsdmError::into_core)?;
                    Ok(st)
                }) {
                    Ok(st) => {
                        asked.push((i, st));
                        None
                    }
                    Err(e) => Some(Err(e)),
                },
            );
        }
        if !asked.is_empty() {
            let paths = asked.iter().map(|(i, _)| self.path_of(&keys[*i])).collect();
            match self.info_files(paths).await {
                Err(e) => {
                    for (i, _) in &asked {
                        answers[*i] = Some(Err(for_each_key(&e)));
                    }
                }
                Ok(found) => {
                    for (i, st) in asked {
                        let path = self.path_of(&keys[i]);
                        answers[i] = Some(match found.get(path.as_os_str().as_bytes()) {
                            Some(info) => Ok(Observed {
                                status: with_state(st, info.state()),
                                tapes: info.tapes.clone(),
                            }),
                            None => Err(self.skipped(&keys[i]).await),
                        });
                    }
                }
            }
        }
        keys.iter()
            .cloned()
            .zip(answers.into_iter().map(|a| a.expect("every key answered")))
            .collect()
    }

    /// Runs `info files` on `paths` and indexes its lines by path. The command needs no server, but an
    /// unreachable-server message or a failing exit is an error all the same, never an empty answer.
    async fn info_files(
        &self,
        paths: Vec<std::path::PathBuf>,
    ) -> Result<HashMap<Vec<u8>, FileInfo>> {
        let _slot = self
            .info_slots
            .acquire()
            .await
            .map_err(|e| Error::backend("ltfsdm", e))?;
        let output: Output = self
            .cli
            .run(&["info", "files"], Some(paths))
            .await
            .map_err(LtfsdmError::into_core)?;
        if output.unreachable() {
            return Err(output.unreachable_error().into_core());
        }
        if output.code != Some(0) {
            return Err(LtfsdmError::Failed {
                command: output.command.clone(),
                code: output.code_text(),
                output: output.excerpt(),
            }
            .into_core());
        }
        let parsed = parse_info_files(&output.stdout);
        if !parsed.other_lines.is_empty() {
            tracing::warn!(command = %output.command, lines = ?parsed.other_lines, "ltfsdm info files printed lines that are not files");
        }
        Ok(parsed
            .files
            .into_iter()
            .map(|info| (info.path.clone(), info))
            .collect())
    }

    /// A file `info files` left out: gone meanwhile (`NotFound`), or there and skipped (an error that
    /// says so; never a silent gap in the answer).
    async fn skipped(self: &Arc<Self>, key: &Key) -> Error {
        match self.stat_all(std::slice::from_ref(key)).await.pop() {
            Some(Err(e @ Error::NotFound { .. })) => e,
            _ => LtfsdmError::Skipped {
                path: self.path_of(key).display().to_string(),
            }
            .into_core(),
        }
    }

    /// The file-system status of every key (one trip to the blocking pool); symlinks are never
    /// followed, as everywhere in the posix backend.
    async fn stat_all(self: &Arc<Self>, keys: &[Key]) -> Vec<Result<FileStatus>> {
        let (inner, batch) = (Arc::clone(self), keys.to_vec());
        let work = tokio::task::spawn_blocking(move || {
            batch
                .iter()
                .map(|key| {
                    let path = inner.path_of(key);
                    match inner.posix.metadata(key) {
                        Ok(meta) => archive_posix::status_from_metadata(key, &path, &meta),
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                            ) =>
                        {
                            Err(Error::NotFound {
                                key: key.to_string(),
                            })
                        }
                        Err(e) => Err(Error::backend(
                            "ltfsdm",
                            format!("Can't get file status of {}: {e}", path.display()),
                        )),
                    }
                })
                .collect::<Vec<_>>()
        });
        match work.await {
            Ok(stats) => stats,
            Err(join) => keys
                .iter()
                .map(|_| Err(Error::backend("ltfsdm", join.to_string())))
                .collect(),
        }
    }
}
