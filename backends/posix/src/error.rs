//! Precise errors of the posix backend, and their one conversion into `archive_core::Error`.

use crate::beneath::is_symlink_refusal;
use archive_core::{Error, Key};
use std::io;
use std::path::PathBuf;

/// What went wrong, with the path and the OS error. Texts keep the reference's "Can't ... posix file"
/// wording because clients search error tracebacks for it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PosixError {
    #[error("Can't open posix file with error: {source}: '{path}'", path = .0.display(), source = .1)]
    Open(PathBuf, #[source] io::Error),
    #[error("Can't write posix file with error: {source}: '{path}'", path = .0.display(), source = .1)]
    Write(PathBuf, #[source] io::Error),
    #[error("Can't read posix file with error: {source}: '{path}'", path = .0.display(), source = .1)]
    Read(PathBuf, #[source] io::Error),
    #[error("Can't sync posix file with error: {source}: '{path}'", path = .0.display(), source = .1)]
    Sync(PathBuf, #[source] io::Error),
    #[error("Can't set posix file mod time with error: {source}: '{path}'", path = .0.display(), source = .1)]
    SetTime(PathBuf, #[source] io::Error),
    #[error("Can't set posix file mode with error: {source}: '{path}'", path = .0.display(), source = .1)]
    SetMode(PathBuf, #[source] io::Error),
    #[error("Can't get posix file status with error: {source}: '{path}'", path = .0.display(), source = .1)]
    Status(PathBuf, #[source] io::Error),
    #[error("Can't move posix file with error: {source}: '{from}' -> '{to}'", from = .0.display(), to = .1.display(), source = .2)]
    Move(PathBuf, PathBuf, #[source] io::Error),
    #[error("Can't remove posix file with error: {source}: '{path}'", path = .0.display(), source = .1)]
    Remove(PathBuf, #[source] io::Error),
    #[error("Can't list posix directory with error: {source}: '{path}'", path = .0.display(), source = .1)]
    List(PathBuf, #[source] io::Error),
}

impl PosixError {
    fn io(&self) -> &io::Error {
        match self {
            PosixError::Open(_, e)
            | PosixError::Write(_, e)
            | PosixError::Read(_, e)
            | PosixError::Sync(_, e)
            | PosixError::SetTime(_, e)
            | PosixError::SetMode(_, e)
            | PosixError::Status(_, e)
            | PosixError::Move(_, _, e)
            | PosixError::Remove(_, e)
            | PosixError::List(_, e) => e,
        }
    }

    /// Promotes the kinds a caller can act on; everything else becomes `Error::Backend` with this error
    /// (and so its path and OS error) as the source.
    pub(crate) fn into_core(self, key: &Key) -> Error {
        let e = self.io();
        match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Error::NotFound {
                key: key.to_string(),
            },
            io::ErrorKind::AlreadyExists => Error::AlreadyExists {
                key: key.to_string(),
            },
            // A path through a symlink names nothing in the archive: symlinks are never followed.
            _ if is_symlink_refusal(e) => Error::NotFound {
                key: key.to_string(),
            },
            _ if is_out_of_space(e) => Error::InsufficientStorage(self.to_string()),
            _ => Error::backend("posix", self),
        }
    }

    /// As [`PosixError::into_core`], for writes: a symlink on the way is a refusal the client must
    /// hear about (400 naming the reason), not a missing file.
    pub(crate) fn into_core_for_write(self, key: &Key) -> Error {
        if is_symlink_refusal(self.io()) {
            return Error::InvalidArgument(format!(
                "Can't store {key}: its path goes through a symlink, and the archive never follows symlinks"
            ));
        }
        self.into_core(key)
    }
}

/// ENOSPC, EDQUOT (quota) and EFBIG (file size limit) all mean "this does not fit".
pub(crate) fn is_out_of_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}
