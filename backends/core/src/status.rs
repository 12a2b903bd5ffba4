//! What a backend reports about a stored file: size, times, HSM state, bytes per storage level, and
//! where on tape it lives.

use std::time::SystemTime;

/// HSM residency of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HsmState {
    /// Only on disk.
    Resident,
    /// On disk and on the lower tier (tape): readable now, releasable without data movement.
    Premigrated,
    /// Only on the lower tier: must be recalled before it can be read.
    Migrated,
    /// The backend cannot tell.
    Unknown,
}

impl HsmState {
    /// The lower-case name used by SwiftHLM (`resident`, `premigrated`, `migrated`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            HsmState::Resident => "resident",
            HsmState::Premigrated => "premigrated",
            HsmState::Migrated => "migrated",
            HsmState::Unknown => "unknown",
        }
    }
}

/// The status of one stored file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileStatus {
    /// Size in bytes.
    pub size: u64,
    /// Modification time (what the client set with `Last-Modified`, or the time of the write).
    pub mtime: SystemTime,
    /// Inode change time.
    pub ctime: SystemTime,
    /// HSM residency.
    pub state: HsmState,
    /// Bytes held on each storage level, fastest first (level 0 = disk).
    pub bytes_per_level: Vec<u64>,
    /// Where the backend keeps the file, for operators (`X-Pacifica-File`).
    pub location: String,
}

impl FileStatus {
    /// The Pacifica media name: `disk` when a full copy is on level 0, else `tape`.
    pub fn media(&self) -> &'static str {
        if self.bytes_per_level.first().copied() == Some(self.size) {
            "disk"
        } else {
            "tape"
        }
    }

    /// Whether the file can be read without a recall.
    pub fn is_readable_now(&self) -> bool {
        !matches!(self.state, HsmState::Migrated)
    }
}

/// Where a file's data lives on the lower tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Only on disk; no tape copy.
    Disk,
    /// On a tape (or volume) at a position; `resident_copy` tells whether a disk copy exists too.
    Tape {
        /// Tape / volume identifier.
        volume: String,
        /// Position on the volume (sequence number or byte offset; ordering is what matters).
        position: u64,
        /// Whether a disk copy exists as well (premigrated).
        resident_copy: bool,
    },
}
