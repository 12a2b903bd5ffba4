//! Crash repair at open: brings the catalog, the disk tier and the cold tier back into agreement after
//! a process died in the middle of a migrate, release, recall, overwrite or delete.
//!
//! Rules (each keeps every file readable with its exact bytes):
//! - partial files on either tier belong to interrupted writes: removed;
//! - a premigrated entry whose disk copy is gone was released before the release was recorded:
//!   recorded now (migrated);
//! - a disk copy the catalog does not know (a migrated entry with a disk file, or another inode than
//!   the recorded one) was written by an interrupted recall or overwrite: compared with the tape copy,
//!   equal -> premigrated, different -> the disk copy is newer, the tape copy is forgotten;
//! - an entry whose tape copy is missing or short is forgotten when the disk copy exists (it is the only
//!   good copy), and reported as lost otherwise;
//! - cold files no entry refers to are copies whose record never became durable: removed.

use crate::catalog::{Catalog, Record};
use crate::error::OpenError;
use crate::{cold_key, volume_name};
use archive_posix::{sweep_partials, PosixBackend};
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What repair changed.
#[derive(Debug, Default)]
pub(crate) struct RepairReport {
    partials: usize,
    releases_recorded: usize,
    recalls_recorded: usize,
    newer_disk_copies: usize,
    lost: usize,
    orphans: usize,
}

impl RepairReport {
    pub(crate) fn changed(&self) -> bool {
        self.partials
            + self.releases_recorded
            + self.recalls_recorded
            + self.newer_disk_copies
            + self.lost
            + self.orphans
            > 0
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> OpenError {
    let path = path.to_path_buf();
    move |source| OpenError::Io { what, path, source }
}

pub(crate) fn repair(
    disk: &PosixBackend,
    cold: &PosixBackend,
    catalog: &Catalog,
    tapes: usize,
) -> Result<RepairReport, OpenError> {
    let mut report = RepairReport::default();
    report.partials += sweep_partials(disk.root()).map_err(io_err("sweep", disk.root()))?;
    report.partials += sweep_partials(cold.root()).map_err(io_err("sweep", cold.root()))?;

    let entries: Vec<_> = catalog.with_entries(|entries| {
        entries
            .iter()
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect()
    });
    let mut referenced = HashSet::new();
    for (key, entry) in entries {
        if entry.tape >= tapes {
            return Err(OpenError::Journal {
                path: disk.root().to_path_buf(),
                line: 0,
                message: format!(
                    "{key} is on tape {} but only {tapes} tapes are configured",
                    volume_name(entry.tape)
                ),
            });
        }
        let cold_path = cold.path_of(&cold_key(entry.tape, entry.position));
        let disk_path = disk.path_of(&key);
        // Looked up from the archive's root handle: a copy reachable only through a symlink is not
        // in the archive.
        let disk_meta = disk.metadata(&key).ok().filter(|m| m.is_file());
        let cold_ok = std::fs::metadata(&cold_path).is_ok_and(|m| m.len() == entry.size);
        let record = |r: Record| {
            catalog.append(r).map_err(|e| OpenError::Io {
                what: "record a repair in the journal",
                path: disk.root().to_path_buf(),
                source: io::Error::other(e),
            })
        };
        if !cold_ok {
            if disk_meta.is_some() {
                tracing::warn!(%key, "tape copy missing or short; keeping the disk copy");
                record(Record::Forgotten {
                    key: key.to_string(),
                })?;
                report.newer_disk_copies += 1;
            } else {
                tracing::error!(%key, path = %cold_path.display(), "file lost: no disk copy and no good tape copy");
                report.lost += 1;
                referenced.insert(cold_path);
            }
            continue;
        }
        referenced.insert(cold_path.clone());
        match disk_meta {
            None if !entry.released => {
                record(Record::Released {
                    key: key.to_string(),
                })?;
                report.releases_recorded += 1;
            }
            None => {}
            Some(meta) if entry.released || meta.ino() != entry.ino => {
                let same = same_content(&disk_path, &cold_path)
                    .map_err(io_err("compare a disk copy with its tape copy", &disk_path))?;
                if same {
                    record(Record::Recalled {
                        key: key.to_string(),
                        ino: meta.ino(),
                    })?;
                    report.recalls_recorded += 1;
                } else {
                    record(Record::Forgotten {
                        key: key.to_string(),
                    })?;
                    referenced.remove(&cold_path);
                    report.newer_disk_copies += 1;
                }
            }
            Some(_) => {}
        }
    }

    // Cold files nobody refers to.
    for tape in 0..tapes {
        let dir = cold.root().join(volume_name(tape));
        let listing = match std::fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        for file in listing {
            let path = file.map_err(io_err("list", &dir))?.path();
            if path.is_file() && !referenced.contains(&path) {
                std::fs::remove_file(&path).map_err(io_err("remove", &path))?;
                report.orphans += 1;
            }
        }
    }
    catalog
        .compact()
        .map_err(io_err("compact the journal", disk.root()))?;
    Ok(report)
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
