//! Atomic, durable, write-once writes.
//!
//! A body is written to a hidden partial file in the target directory, fsynced, given its mtime and mode
//! 0444, then linked in under its name with `renameat2(RENAME_NOREPLACE)` (or a plain rename when
//! overwriting), and the directory is fsynced. Until that last step nothing is visible under the key; a
//! partial file is removed by `Drop` on every error path, and by [`crate::sweep_partials`] after a crash
//! of its owner (the [`Instance`] its name carries).

use crate::blocking;
use crate::error::{is_out_of_space, PosixError};
use crate::instance::Instance;
use archive_core::{ByteStream, Error, Key, PutOptions, PutOutcome, Result};
use bytes::Bytes;
use futures::StreamExt;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes gathered before one write to disk (and the unit of reads).
pub const CHUNK_SIZE: usize = 1 << 20;
/// Start writeback every this many bytes of a large upload.
const WRITEBACK_STEP: u64 = 8 << 20;
/// Most chunks gathered into one vectored write.
const MAX_BATCH_CHUNKS: usize = 256;
const PARTIAL_SUFFIX: &str = ".partial";
/// Bytes of the target's name kept in a partial file's name (for whoever looks at the directory): the
/// rest of the name (instance id, counter, suffix) must fit in NAME_MAX (255) with it.
const PARTIAL_STEM_MAX: usize = 64;

static NEXT_PARTIAL: AtomicU64 = AtomicU64::new(0);

/// Whether a directory entry is one of our partial files.
pub fn is_partial_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(PARTIAL_SUFFIX)
}

/// The instance id a partial file name carries (`.<stem>.<instance>-<n>.partial`); `None` for names
/// that are not partial files.
pub(crate) fn partial_owner(name: &str) -> Option<&str> {
    let inner = name.strip_prefix('.')?.strip_suffix(PARTIAL_SUFFIX)?;
    let (_, tail) = inner.rsplit_once('.')?;
    Some(tail.split_once('-').map_or(tail, |(owner, _)| owner))
}

/// `.<stem>.<instance>-<n>.partial`: at most 1 + 64 + 1 + 16 + 1 + 20 + 8 bytes, so a partial file
/// can be created for any target name the file system accepts.
fn partial_path_for(target: &Path, instance: &Instance) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let mut stem_len = name.len().min(PARTIAL_STEM_MAX);
    while !name.is_char_boundary(stem_len) {
        stem_len -= 1;
    }
    let n = NEXT_PARTIAL.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(
        ".{}.{}-{n}{PARTIAL_SUFFIX}",
        &name[..stem_len],
        instance.id()
    ))
}

/// A partial file being written. Dropping it without [`Staged::commit`] removes it.
struct Staged {
    key: Key,
    /// The owner named in the partial file's name, kept registered until the file is gone.
    _instance: Arc<Instance>,
    target: PathBuf,
    partial: PathBuf,
    file: Option<File>,
    written: u64,
    /// Bytes already handed to the kernel's writeback (see [`WRITEBACK_STEP`]).
    kicked: u64,
}

impl Staged {
    fn create(key: Key, target: PathBuf, instance: Arc<Instance>) -> Result<Self> {
        if target.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "Can't open {key} for writing: a directory of that name exists"
            )));
        }
        let partial = partial_path_for(&target, &instance);
        // Mode 0444 from the start (the descriptor stays writable): archive files are read-only.
        let open = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(&partial)
        };
        // The parent usually exists: try first, create directories only when the open says so.
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = target
                    .parent()
                    .expect("a key always has a parent directory");
                std::fs::create_dir_all(parent)
                    .map_err(|e| PosixError::Open(parent.to_path_buf(), e).into_core(&key))?;
                open()
            }
            other => other,
        }
        .map_err(|e| PosixError::Open(partial.clone(), e).into_core(&key))?;
        Ok(Staged {
            key,
            _instance: instance,
            target,
            partial,
            file: Some(file),
            written: 0,
            kicked: 0,
        })
    }

    /// Writes `chunks` in order with vectored writes (no copy into one buffer), and starts the
    /// kernel's writeback of every further [`WRITEBACK_STEP`] bytes, so that the final fsync of a large
    /// file waits for the last few MiB instead of all of it.
    fn write_chunks(&mut self, chunks: &[Bytes]) -> Result<()> {
        let file = self.file.as_mut().expect("open until commit");
        let fail = |e| PosixError::Write(self.partial.clone(), e).into_core(&self.key);
        let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
        let mut rest = &mut slices[..];
        IoSlice::advance_slices(&mut rest, 0);
        while !rest.is_empty() {
            match file.write_vectored(rest) {
                Ok(0) => return Err(fail(io::Error::from(io::ErrorKind::WriteZero))),
                Ok(n) => {
                    self.written += n as u64;
                    IoSlice::advance_slices(&mut rest, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(e)),
            }
        }
        if self.written - self.kicked >= WRITEBACK_STEP {
            // POSIX_FADV_DONTNEED starts writeback of the (dirty) range; pages under writeback stay
            // cached. Advisory: a failure changes nothing about durability, which fsync provides.
            let _ = rustix::fs::fadvise(
                &*file,
                self.kicked,
                std::num::NonZeroU64::new(self.written - self.kicked),
                rustix::fs::Advice::DontNeed,
            );
            self.kicked = self.written;
        }
        Ok(())
    }

    /// Checks the length, records mtime and mode, makes the data durable and links it in.
    fn commit(mut self, options: &PutOptions) -> Result<PutOutcome> {
        if let Some(expected) = options.expected_len {
            if expected != self.written {
                return Err(Error::InvalidArgument(format!(
                    "Content-Length announced {expected} bytes but the body had {}; nothing was stored",
                    self.written
                )));
            }
        }
        let file = self.file.take().expect("open until commit");
        let err = |e: PosixError| e.into_core(&self.key);
        if let Some(mtime) = options.mtime {
            file.set_modified(mtime)
                .map_err(|e| err(PosixError::SetTime(self.partial.clone(), e)))?;
        }
        file.sync_all()
            .map_err(|e| err(PosixError::Sync(self.partial.clone(), e)))?;
        drop(file);
        link_in(&self.partial, &self.target, options.overwrite).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Error::AlreadyExists {
                    key: self.key.to_string(),
                }
            } else {
                err(PosixError::Move(
                    self.partial.clone(),
                    self.target.clone(),
                    e,
                ))
            }
        })?;
        // Linked in: from here on the partial name no longer exists and Drop must not remove anything.
        self.partial = PathBuf::new();
        let dir = self.target.parent().expect("has parent");
        sync_dir(dir).map_err(|e| err(PosixError::Sync(dir.to_path_buf(), e)))?;
        Ok(PutOutcome {
            bytes: self.written,
        })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.partial.as_os_str().is_empty() {
            self.file.take();
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Renames `from` to `to`; without `overwrite` an existing `to` fails with `AlreadyExists` atomically.
pub(crate) fn link_in(from: &Path, to: &Path, overwrite: bool) -> io::Result<()> {
    if overwrite {
        return std::fs::rename(from, to);
    }
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // Filesystems without RENAME_NOREPLACE: link(2) refuses an existing name just as atomically.
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

/// fsync of a directory, so that a rename or unlink in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn refuse_existing(key: &Key, target: &Path, options: &PutOptions) -> Result<()> {
    if !options.overwrite && std::fs::symlink_metadata(target).is_ok() {
        return Err(Error::AlreadyExists {
            key: key.to_string(),
        });
    }
    Ok(())
}

fn too_long(expected: u64) -> Error {
    Error::InvalidArgument(format!(
        "Content-Length announced {expected} bytes but the body is longer; nothing was stored"
    ))
}

/// Writes a body under `target`. Small bodies (up to [`CHUNK_SIZE`]) cost one trip to the blocking pool;
/// larger ones are written one batch per trip, with the next batch gathered meanwhile, so memory stays
/// bounded whatever the size. Chunks are passed on as received (no copying).
pub(crate) async fn put_stream(
    instance: Arc<Instance>,
    key: Key,
    target: PathBuf,
    mut body: ByteStream,
    options: PutOptions,
) -> Result<PutOutcome> {
    let limit = options.expected_len;
    if limit.is_some_and(|l| l > CHUNK_SIZE as u64) {
        // A large upload to a taken key is refused before its body is read (with `Expect:
        // 100-continue` the client then sends nothing); small ones are checked on the blocking trip
        // that writes them.
        let (k, t, o) = (key.clone(), target.clone(), options.clone());
        blocking(move || refuse_existing(&k, &t, &o)).await?;
    }
    let mut total: u64 = 0;
    // Takes the next chunk, counting it against the announced length.
    let mut next_chunk = |chunk: Option<io::Result<Bytes>>| -> Result<Option<Bytes>> {
        match chunk {
            None => Ok(None),
            Some(Err(e)) => Err(body_error(&key, e)),
            Some(Ok(chunk)) => {
                total += chunk.len() as u64;
                match limit {
                    Some(l) if total > l => Err(too_long(l)),
                    _ => Ok(Some(chunk)),
                }
            }
        }
    };
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_len = 0;
    let mut ended = false;
    while batch_len < CHUNK_SIZE && batch.len() < MAX_BATCH_CHUNKS {
        match next_chunk(body.next().await)? {
            Some(chunk) => {
                batch_len += chunk.len();
                batch.push(chunk);
            }
            None => {
                ended = true;
                break;
            }
        }
    }
    if ended {
        return blocking(move || {
            // A taken key is refused by the no-replace link in `commit` (no stat first: the body is
            // here already, and the link settles races with concurrent writers anyway).
            let mut staged = Staged::create(key, target, instance)?;
            staged.write_chunks(&batch)?;
            staged.commit(&options)
        })
        .await;
    }

    // Every batch is written in its own trip to the blocking pool while the next one is gathered
    // from the network, so the pool is only used while there is data to write: a slow client holds
    // no thread, and at most two batches are in memory.
    let (writer_key, writer_options) = (key.clone(), options.clone());
    let mut writing = tokio::task::spawn_blocking(move || -> Result<Staged> {
        refuse_existing(&writer_key, &target, &writer_options)?;
        let mut staged = Staged::create(writer_key, target, instance)?;
        staged.write_chunks(&batch)?;
        Ok(staged)
    });
    let staged = loop {
        let mut next: Vec<Bytes> = Vec::new();
        let mut next_len = 0;
        let mut ended = false;
        let mut read_error = None;
        while next_len < CHUNK_SIZE && next.len() < MAX_BATCH_CHUNKS {
            match next_chunk(body.next().await) {
                Ok(Some(chunk)) => {
                    next_len += chunk.len();
                    next.push(chunk);
                }
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            }
        }
        let written = writing.await.map_err(|e| Error::backend("posix", e))?;
        if let Some(e) = read_error {
            // A body error wins over the writer's result; the partial file is removed off the
            // async threads.
            let _ = tokio::task::spawn_blocking(move || drop(written)).await;
            return Err(e);
        }
        let mut staged = written?;
        if next.is_empty() {
            break staged;
        }
        writing = tokio::task::spawn_blocking(move || {
            staged.write_chunks(&next)?;
            Ok(staged)
        });
        if ended {
            break writing.await.map_err(|e| Error::backend("posix", e))??;
        }
    };
    blocking(move || staged.commit(&options)).await
}

fn body_error(key: &Key, e: io::Error) -> Error {
    if is_out_of_space(&e) {
        return Error::InsufficientStorage(e.to_string());
    }
    Error::InvalidArgument(format!(
        "The upload of {key} was cut off or failed ({e}); nothing was stored"
    ))
}

/// Moves a server-side file in under `target` (PATCH). A rename when source and archive share a
/// filesystem; otherwise a durable copy through a partial file, then the source is removed.
pub(crate) async fn adopt(
    instance: Arc<Instance>,
    key: Key,
    target: PathBuf,
    source: PathBuf,
    overwrite: bool,
) -> Result<()> {
    blocking(move || {
        // symlink_metadata: a symlink is refused, never followed (it could point anywhere on the server).
        let meta = std::fs::symlink_metadata(&source).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound {
                key: source.display().to_string(),
            },
            _ => Error::backend("posix", PosixError::Move(source.clone(), target.clone(), e)),
        })?;
        if !meta.is_file() {
            return Err(Error::InvalidArgument(format!(
                "Can't move {}: it is not a regular file",
                source.display()
            )));
        }
        let options = PutOptions {
            overwrite,
            mtime: meta.modified().ok(),
            expected_len: Some(meta.len()),
        };
        refuse_existing(&key, &target, &options)?;
        let parent = target.parent().expect("has parent");
        std::fs::create_dir_all(parent)
            .map_err(|e| PosixError::Open(parent.to_path_buf(), e).into_core(&key))?;
        match link_in(&source, &target, overwrite) {
            Ok(()) => {
                sync_dir(parent)
                    .map_err(|e| PosixError::Sync(parent.to_path_buf(), e).into_core(&key))?;
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists {
                    key: key.to_string(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {}
            Err(e) => return Err(PosixError::Move(source, target, e).into_core(&key)),
        }
        let mut from =
            File::open(&source).map_err(|e| PosixError::Open(source.clone(), e).into_core(&key))?;
        let mut staged = Staged::create(key.clone(), target, instance)?;
        let file = staged.file.as_mut().expect("open");
        staged.written = io::copy(&mut from, file)
            .map_err(|e| PosixError::Write(staged.partial.clone(), e).into_core(&key))?;
        staged.commit(&options)?;
        std::fs::remove_file(&source).map_err(|e| PosixError::Remove(source, e).into_core(&key))
    })
    .await
}
