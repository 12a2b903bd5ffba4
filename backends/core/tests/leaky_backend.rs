//! The conformance suite can fail: a toy backend that hides its temporary files from its own listing
//! but leaks them when an upload fails must be rejected by the raw-storage checks, while a correct
//! variant of the same toy passes them.

use archive_core::conformance::{self, files_under, Fixture};
use archive_core::{
    ArchiveBackend, ByteStream, Capabilities, Error, FileStatus, GetResult, HsmState, Key,
    ListEntry, PutOptions, PutOutcome, ReadRange, Result,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Files under a directory, written to `.tmp-<name>` and renamed when the body ended. With `leaky`,
/// a failed upload forgets to remove its temporary file (the bug the suite must catch).
#[derive(Debug)]
struct ToyBackend {
    root: PathBuf,
    leaky: bool,
}

impl ToyBackend {
    fn path_of(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }
}

fn io(e: std::io::Error) -> Error {
    Error::backend("toy", e)
}

#[async_trait]
impl ArchiveBackend for ToyBackend {
    fn name(&self) -> &'static str {
        "toy"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tape_tier: false,
            shared_by_processes: false,
        }
    }

    async fn put(
        &self,
        key: &Key,
        mut body: ByteStream,
        options: PutOptions,
    ) -> Result<PutOutcome> {
        let target = self.path_of(key);
        if !options.overwrite && target.exists() {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        std::fs::create_dir_all(target.parent().unwrap()).map_err(io)?;
        let temp = target.with_file_name(format!(".tmp-{}", key.file_name()));
        let mut file = std::fs::File::create(&temp).map_err(io)?;
        let mut written = 0u64;
        let outcome = async {
            while let Some(chunk) = body.next().await {
                let chunk: Bytes = chunk.map_err(|e| Error::InvalidArgument(e.to_string()))?;
                file.write_all(&chunk).map_err(io)?;
                written += chunk.len() as u64;
            }
            if options.expected_len.is_some_and(|l| l != written) {
                return Err(Error::InvalidArgument("length mismatch".into()));
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => {
                std::fs::rename(&temp, &target).map_err(io)?;
                Ok(PutOutcome { bytes: written })
            }
            Err(e) => {
                if !self.leaky {
                    let _ = std::fs::remove_file(&temp);
                }
                Err(e)
            }
        }
    }

    async fn get(&self, key: &Key, range: ReadRange) -> Result<GetResult> {
        let status = self.status(key).await?;
        let data = std::fs::read(self.path_of(key)).map_err(io)?;
        let len = data.len() as u64;
        let (start, end) = match range {
            ReadRange::All => (0, len),
            ReadRange::From { start, end } => {
                let end = end.unwrap_or(len).min(len);
                (start.min(end), end)
            }
            ReadRange::Last(n) => (len.saturating_sub(n), len),
        };
        let chunk = Bytes::from(data).slice(start as usize..end as usize);
        Ok(GetResult {
            status,
            range: start..end,
            stream: futures::stream::iter([Ok(chunk)]).boxed(),
        })
    }

    async fn status(&self, key: &Key) -> Result<FileStatus> {
        let meta = std::fs::metadata(self.path_of(key))
            .ok()
            .filter(|m| m.is_file())
            .ok_or_else(|| Error::NotFound {
                key: key.to_string(),
            })?;
        Ok(FileStatus {
            size: meta.len(),
            mtime: meta.modified().map_err(io)?,
            ctime: meta.modified().map_err(io)?,
            state: HsmState::Resident,
            bytes_per_level: vec![meta.len()],
            location: self.path_of(key).display().to_string(),
        })
    }

    async fn stage(&self, key: &Key) -> Result<()> {
        self.status(key).await.map(drop)
    }

    async fn adopt(&self, _key: &Key, _source: &Path, _overwrite: bool) -> Result<()> {
        Err(Error::Unsupported {
            operation: "adopt",
            backend: "toy",
        })
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        std::fs::remove_file(self.path_of(key)).map_err(|_| Error::NotFound {
            key: key.to_string(),
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).map_err(io)?.flatten() {
                let path = entry.path();
                let rel = path
                    .strip_prefix(&self.root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                if entry.file_type().map_err(io)?.is_dir() {
                    stack.push(path);
                } else if !entry.file_name().to_string_lossy().starts_with('.')
                    && rel.starts_with(prefix)
                {
                    let meta = entry.metadata().map_err(io)?;
                    out.push(ListEntry {
                        key: Key::new(rel)?,
                        size: meta.len(),
                        mtime: meta.modified().map_err(io)?,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

fn toy_fixture(leaky: bool) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("archive");
    std::fs::create_dir(&root).unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    Fixture {
        backend: Arc::new(ToyBackend {
            root: root.clone(),
            leaky,
        }),
        scratch,
        raw_files: files_under(vec![root]),
        guard: Box::new(dir),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "raw storage changed; left behind")]
async fn a_backend_leaking_temporary_files_on_a_cut_off_upload_fails() {
    conformance::failed_body_leaves_nothing(&toy_fixture(true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "raw storage changed; left behind")]
async fn a_backend_leaking_temporary_files_on_a_length_mismatch_fails() {
    conformance::length_mismatch_leaves_nothing(&toy_fixture(true)).await;
}

/// The same checks pass once the toy cleans up, so the failures above are the leak's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_backend_without_the_leak_passes() {
    conformance::failed_body_leaves_nothing(&toy_fixture(false)).await;
    conformance::length_mismatch_leaves_nothing(&toy_fixture(false)).await;
}
