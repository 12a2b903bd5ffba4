//! Atomic, durable, write-once writes.
//!
//! A body is written to a hidden partial file in the target directory, fsynced, given its mtime and mode
//! 0444, then linked in under its name with `renameat2(RENAME_NOREPLACE)` (or a plain rename when
//! overwriting), and the directory is fsynced (one fsync for concurrent writes into it, see
//! [`crate::dir_sync`]). Until that last step nothing is visible under the key; a
//! partial file is removed by `Drop` on every error path, and by [`crate::sweep_partials`] after a crash.
//! The target directory is resolved (and created, durably) through [`crate::beneath`], so a write never
//! lands outside the prefix through a symlink; every later step works on that directory's handle.

use crate::beneath::{self, split_parent, RootDir};
use crate::blocking;
use crate::error::{is_out_of_space, PosixError};
use crate::instance::Instance;
use archive_core::{ByteStream, Error, Key, PutOptions, PutOutcome, Result};
use bytes::Bytes;
use futures::StreamExt;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
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

/// A fresh partial-file name for a file to be linked in as `name` (in the same directory):
/// `.<stem>.<instance>-<n>.partial`, at most 1 + 64 + 1 + 16 + 1 + 20 + 8 bytes, so a partial file
/// can be created for any target name the file system accepts.
pub(crate) fn partial_name_for(name: &str, instance: &Instance) -> String {
    let mut stem_len = name.len().min(PARTIAL_STEM_MAX);
    while !name.is_char_boundary(stem_len) {
        stem_len -= 1;
    }
    let n = NEXT_PARTIAL.fetch_add(1, Ordering::Relaxed);
    format!(
        ".{}.{}-{n}{PARTIAL_SUFFIX}",
        &name[..stem_len],
        instance.id()
    )
}

/// The directory a key's file goes in, opened (and created durably where missing) beneath the root,
/// with the file's name in it. Refuses a key naming a directory.
pub(crate) struct TargetDir {
    pub(crate) key: Key,
    pub(crate) dir: OwnedFd,
    /// The directory's path, for messages.
    pub(crate) path: PathBuf,
    pub(crate) name: String,
}

impl TargetDir {
    pub(crate) fn open(key: Key, root: &RootDir) -> Result<Self> {
        let (parent, name) = split_parent(key.as_str());
        let path = root.path().join(parent);
        let dir = root
            .create_dirs(parent)
            .map_err(|e| PosixError::Open(path.clone(), e).into_core_for_write(&key))?;
        if beneath::stat_entry(dir.as_fd(), name)
            .is_ok_and(|st| beneath::file_type(&st) == FileType::Directory)
        {
            return Err(Error::InvalidArgument(format!(
                "Can't open {key} for writing: a directory of that name exists"
            )));
        }
        Ok(TargetDir {
            name: name.to_string(),
            key,
            dir,
            path,
        })
    }

    /// Links the file called `partial` in this directory in under the key's name, then fsyncs the
    /// directory (an fsync shared with concurrent writes into it, see [`crate::dir_sync`]). Without
    /// `overwrite` a taken name is `AlreadyExists`.
    pub(crate) fn link_in(&self, partial: &str, overwrite: bool) -> Result<()> {
        let (dir, key) = (self.dir.as_fd(), &self.key);
        link_in(dir, partial, dir, &self.name, overwrite).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Error::AlreadyExists {
                    key: key.to_string(),
                }
            } else {
                PosixError::Move(self.path.join(partial), self.path.join(&self.name), e)
                    .into_core(key)
            }
        })?;
        beneath::record_link(dir, &self.name)
            .and_then(|()| crate::dir_sync::sync_after_change(dir))
            .map_err(|e| PosixError::Sync(self.path.clone(), e).into_core(key))
    }
}

/// A partial file being written. Dropping it without [`Staged::commit`] removes it.
pub(crate) struct Staged {
    /// The owner named in the partial file's name, kept registered until the file is gone.
    _instance: Arc<Instance>,
    target: TargetDir,
    /// The partial file's name in the target directory; empty once linked in.
    partial: String,
    file: Option<File>,
    written: u64,
    /// Bytes already handed to the kernel's writeback (see [`WRITEBACK_STEP`]).
    kicked: u64,
}

impl Staged {
    pub(crate) fn create(key: Key, root: &RootDir, instance: Arc<Instance>) -> Result<Self> {
        // Mode 0444 from the start (the descriptor stays writable): archive files are read-only.
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut attempts = 0;
        loop {
            let target = TargetDir::open(key.clone(), root)?;
            let partial = partial_name_for(&target.name, &instance);
            match rustix::fs::openat(&target.dir, &partial, flags, Mode::from_raw_mode(0o444)) {
                Ok(file) => {
                    return Ok(Staged {
                        _instance: instance,
                        target,
                        partial,
                        file: Some(File::from(file)),
                        written: 0,
                        kicked: 0,
                    })
                }
                // A delete pruned the (empty) directory between its open and this create: open or
                // create it again.
                Err(rustix::io::Errno::NOENT) if attempts < 3 => attempts += 1,
                Err(e) => {
                    return Err(PosixError::Open(target.path.join(&partial), e.into())
                        .into_core(&target.key))
                }
            }
        }
    }

    fn partial_path(&self) -> PathBuf {
        self.target.path.join(&self.partial)
    }

    /// Writes `chunks` in order with vectored writes (no copy into one buffer), and starts the
    /// kernel's writeback of every further [`WRITEBACK_STEP`] bytes, so that the final fsync of a large
    /// file waits for the last few MiB instead of all of it.
    fn write_chunks(&mut self, chunks: &[Bytes]) -> Result<()> {
        let file = self.file.as_mut().expect("open until commit");
        let fail = |e| {
            PosixError::Write(self.target.path.join(&self.partial), e).into_core(&self.target.key)
        };
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

    /// Copies everything `from` holds into the partial file (PATCH across file systems).
    pub(crate) fn copy_from(&mut self, from: &mut File) -> Result<()> {
        let file = self.file.as_mut().expect("open until commit");
        self.written = io::copy(from, file).map_err(|e| {
            PosixError::Write(self.target.path.join(&self.partial), e).into_core(&self.target.key)
        })?;
        Ok(())
    }

    /// Checks the length, records mtime and mode, makes the data durable and links it in.
    pub(crate) fn commit(mut self, options: &PutOptions) -> Result<PutOutcome> {
        if let Some(expected) = options.expected_len {
            if expected != self.written {
                return Err(Error::InvalidArgument(format!(
                    "Content-Length announced {expected} bytes but the body had {}; nothing was stored",
                    self.written
                )));
            }
        }
        let file = self.file.take().expect("open until commit");
        let key = &self.target.key;
        if let Some(mtime) = options.mtime {
            file.set_modified(mtime)
                .map_err(|e| PosixError::SetTime(self.partial_path(), e).into_core(key))?;
        }
        beneath::sync_file(&file)
            .map_err(|e| PosixError::Sync(self.partial_path(), e).into_core(key))?;
        drop(file);
        let partial = std::mem::take(&mut self.partial);
        if let Err(e) = self.target.link_in(&partial, options.overwrite) {
            // Still under its partial name (a failed link moves nothing): Drop removes it.
            self.partial = partial;
            return Err(e);
        }
        Ok(PutOutcome {
            bytes: self.written,
        })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            self.file.take();
            let _ = rustix::fs::unlinkat(&self.target.dir, &self.partial, AtFlags::empty());
        }
    }
}

/// Renames `from` (in `from_dir`) to `to` (in `to_dir`); without `overwrite` an existing `to` fails
/// with `AlreadyExists` atomically. Neither name is followed if it is a symlink.
pub(crate) fn link_in(
    from_dir: BorrowedFd<'_>,
    from: &str,
    to_dir: BorrowedFd<'_>,
    to: &str,
    overwrite: bool,
) -> io::Result<()> {
    use rustix::fs::{linkat, renameat, renameat_with, unlinkat, RenameFlags};
    if overwrite {
        return Ok(renameat(from_dir, from, to_dir, to)?);
    }
    match renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // Filesystems without RENAME_NOREPLACE: link(2) refuses an existing name just as atomically.
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            linkat(from_dir, from, to_dir, to, AtFlags::empty())?;
            Ok(unlinkat(from_dir, from, AtFlags::empty())?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Refuses a taken key before its body is read (unless overwriting). A name that cannot be looked up
/// (a symlink on the way) is left to the write itself, which reports it.
fn refuse_existing(key: &Key, root: &RootDir, options: &PutOptions) -> Result<()> {
    if !options.overwrite && root.metadata(key.as_str()).is_ok() {
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
    root: RootDir,
    mut body: ByteStream,
    options: PutOptions,
) -> Result<PutOutcome> {
    let limit = options.expected_len;
    if limit.is_some_and(|l| l > CHUNK_SIZE as u64) {
        // A large upload to a taken key is refused before its body is read (with `Expect:
        // 100-continue` the client then sends nothing); small ones are checked on the blocking trip
        // that writes them.
        let (k, r, o) = (key.clone(), root.clone(), options.clone());
        blocking(move || refuse_existing(&k, &r, &o)).await?;
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
            let mut staged = Staged::create(key, &root, instance)?;
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
        refuse_existing(&writer_key, &root, &writer_options)?;
        let mut staged = Staged::create(writer_key, &root, instance)?;
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
