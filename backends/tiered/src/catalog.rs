//! The catalog: which keys have a copy on tape, where, and whether the disk copy was released.
//!
//! Durability: an append-only journal of JSON lines, one record per state change, fsynced before the
//! change is acted on (a disk copy is released only after the record of its tape copy is durable). A
//! failed append (short write, full disk, failed fsync) fails its operation and is cut off the file, so
//! the next append starts on a fresh line. On open the journal is replayed (a torn tail from a crash is
//! dropped) and rewritten compacted through a temporary file and a rename; it is compacted again when
//! it grows to several times the catalog size. A key without an entry is resident (or absent): the disk tier is the truth for it.

use crate::error::{OpenError, TieredError};
use archive_core::{Key, ListEntry};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a key's tape copy lives and whether its disk copy is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) tape: usize,
    /// Byte offset on the tape (append order).
    pub(crate) position: u64,
    pub(crate) size: u64,
    pub(crate) mtime: SystemTime,
    /// Inode of the disk copy the tape copy was made from (or recalled into): a disk file with another
    /// inode was written later and may differ, which crash repair checks.
    pub(crate) ino: u64,
    /// The disk copy was released: the key is migrated.
    pub(crate) released: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Record {
    /// A durable tape copy exists (premigrated).
    Copied {
        key: String,
        tape: usize,
        position: u64,
        size: u64,
        mtime_secs: u64,
        mtime_nanos: u32,
        ino: u64,
    },
    /// The disk copy was removed (migrated).
    Released { key: String },
    /// A disk copy was written back from tape (premigrated again).
    Recalled { key: String, ino: u64 },
    /// The key has no tape copy any more (deleted, or overwritten on disk).
    Forgotten { key: String },
}

impl Record {
    pub(crate) fn copied(key: &Key, e: &Entry) -> Record {
        let since = e.mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
        Record::Copied {
            key: key.to_string(),
            tape: e.tape,
            position: e.position,
            size: e.size,
            mtime_secs: since.as_secs(),
            mtime_nanos: since.subsec_nanos(),
            ino: e.ino,
        }
    }
}

/// The catalog is shared by every operation. Lookups take only the `entries` lock, which is never held
/// during I/O; appends serialize on the `journal` lock, held from the write until the record is applied
/// so that the order in memory is the order in the file.
#[derive(Debug)]
pub(crate) struct Catalog {
    entries: RwLock<BTreeMap<Key, Entry>>,
    journal: Mutex<Journal>,
}

#[derive(Debug)]
struct Journal {
    path: PathBuf,
    file: File,
    /// Bytes of whole, durable records: where a failed append is cut back to.
    len: u64,
    /// A failed append left bytes that could not be cut off.
    torn: bool,
    records_since_compaction: usize,
}

const JOURNAL: &str = "journal.jsonl";

impl Catalog {
    /// Replays the journal in `state_dir` (creating an empty one), cutting off a torn tail.
    pub(crate) fn open(state_dir: &Path) -> Result<Catalog, OpenError> {
        let path = state_dir.join(JOURNAL);
        let io = |what, source| OpenError::Io {
            what,
            path: path.clone(),
            source,
        };
        let mut entries = BTreeMap::new();
        match File::open(&path) {
            Ok(file) => replay(&path, BufReader::new(file), &mut entries)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("open the journal", e)),
        }
        let file = open_append(&path).map_err(|e| io("open the journal", e))?;
        let catalog = Catalog {
            entries: RwLock::new(entries),
            journal: Mutex::new(Journal {
                path: path.clone(),
                file,
                len: 0,
                torn: false,
                records_since_compaction: 0,
            }),
        };
        // Rewrites the journal from what was replayed: a torn tail is gone from the file too.
        catalog
            .compact()
            .map_err(|e| io("compact the journal", e))?;
        Ok(catalog)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Key, Entry>> {
        self.entries.read().expect("catalog poisoned")
    }

    pub(crate) fn get(&self, key: &Key) -> Option<Entry> {
        self.read().get(key).cloned()
    }

    /// The migrated files whose key starts with `prefix` and sorts after `after`, at most `limit`, in key
    /// order: a range query from the first possible key, stopping at the first key past the prefix.
    pub(crate) fn released_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<ListEntry> {
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        self.read()
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.as_str().starts_with(prefix))
            .filter(|(_, entry)| entry.released)
            .take(limit)
            .map(|(key, entry)| ListEntry {
                key: key.clone(),
                size: entry.size,
                mtime: entry.mtime,
            })
            .collect()
    }

    /// Runs `f` over the entries (under the read lock: keep it short).
    pub(crate) fn with_entries<T>(&self, f: impl FnOnce(&BTreeMap<Key, Entry>) -> T) -> T {
        f(&self.read())
    }

    /// Makes `record` durable, then applies it. Blocking (fsync). On failure nothing is applied and
    /// the journal is cut back to its last whole record, so the next append starts on a fresh line.
    pub(crate) fn append(&self, record: Record) -> Result<(), TieredError> {
        let mut line = serde_json::to_string(&record).expect("records serialize");
        line.push('\n');
        let mut journal = self.journal.lock().expect("journal poisoned");
        let path = journal.path.clone();
        let err = |e| TieredError::Journal(path.clone(), e);
        if journal.torn {
            // An earlier failed append could not be cut off: rewrite the journal from memory first,
            // rather than write after its torn bytes.
            self.compact_locked(&mut journal).map_err(err)?;
        }
        if let Err(e) = journal.write_durably(line.as_bytes()) {
            journal.cut_back();
            return Err(err(e));
        }
        let len = {
            let mut entries = self.entries.write().expect("catalog poisoned");
            apply(&mut entries, record).map_err(TieredError::Inconsistent)?;
            entries.len()
        };
        journal.records_since_compaction += 1;
        if journal.records_since_compaction > 4 * len + 10_000 {
            // The record is durable already: a failed compaction is retried later, not this
            // operation's failure.
            if let Err(e) = self.compact_locked(&mut journal) {
                tracing::warn!(path = %path.display(), error = %e, "could not compact the journal");
            }
        }
        Ok(())
    }

    /// Applies `record` in memory only: for a change that already happened on the tiers but could not
    /// be journaled. The catalog then tells the truth until the next start, whose repair finds the same
    /// change on the tiers and records it (and any compaction before that writes it out).
    pub(crate) fn apply_unrecorded(&self, record: Record) -> Result<(), TieredError> {
        let mut entries = self.entries.write().expect("catalog poisoned");
        apply(&mut entries, record).map_err(TieredError::Inconsistent)
    }

    /// Rewrites the journal as one `Copied` (and `Released`) record per entry.
    pub(crate) fn compact(&self) -> std::io::Result<()> {
        let mut journal = self.journal.lock().expect("journal poisoned");
        self.compact_locked(&mut journal)
    }

    /// Write a temporary file, fsync it, rename it over the journal, fsync the directory. The journal
    /// lock keeps appends out meanwhile.
    fn compact_locked(&self, journal: &mut Journal) -> std::io::Result<()> {
        let tmp = journal.path.with_extension("jsonl.compacting");
        let len = {
            let mut out = std::io::BufWriter::new(File::create(&tmp)?);
            let entries: Vec<(Key, Entry)> = self
                .read()
                .iter()
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect();
            let mut written = 0u64;
            for (key, entry) in &entries {
                let mut line = serde_json::to_string(&Record::copied(key, entry))?;
                line.push('\n');
                if entry.released {
                    line.push_str(&serde_json::to_string(&Record::Released {
                        key: key.to_string(),
                    })?);
                    line.push('\n');
                }
                out.write_all(line.as_bytes())?;
                written += line.len() as u64;
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            written
        };
        std::fs::rename(&tmp, &journal.path)?;
        // Appends go to the new file from here on, even if syncing the directory fails below; if it
        // cannot be opened, the next append compacts again rather than write to the replaced file.
        journal.file = open_append(&journal.path).inspect_err(|_| journal.torn = true)?;
        journal.len = len;
        journal.torn = false;
        journal.records_since_compaction = 0;
        File::open(journal.path.parent().expect("journal has a directory"))?.sync_all()
    }
}

impl Journal {
    /// Writes `bytes` at the end and fsyncs; `len` moves only when both succeeded.
    fn write_durably(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        crate::crash::failure_point(crate::crash::FAIL_JOURNAL_FSYNC)?;
        self.file.sync_data()?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// After a failed write or fsync: removes whatever part of the record reached the file. If even
    /// that fails, the next append rewrites the journal first (`torn`).
    fn cut_back(&mut self) {
        let cut = self
            .file
            .set_len(self.len)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = cut {
            tracing::warn!(path = %self.path.display(), error = %e, "could not cut a failed append off the journal");
            self.torn = true;
        }
    }
}

/// Replays journal lines into `entries`. Only whole lines count: a last line without its newline is a
/// torn append (a crash or a full disk mid-write; its change was never acted on) and is dropped, as is a
/// last line that does not parse. Anything else that does not parse is corruption and stops the open.
fn replay(
    path: &Path,
    mut reader: impl BufRead,
    entries: &mut BTreeMap<Key, Entry>,
) -> Result<(), OpenError> {
    let corrupt = |line, message| OpenError::Journal {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut pending: Option<(usize, Result<Record, String>)> = None;
    let mut buf = Vec::new();
    for n in 1.. {
        buf.clear();
        let read = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| OpenError::Io {
                what: "read the journal",
                path: path.to_path_buf(),
                source: e,
            })?;
        if read == 0 {
            break;
        }
        // The line before this one was not the last: it must be good.
        if let Some((at, parsed)) = pending.take() {
            let record = parsed.map_err(|m| corrupt(at, m))?;
            apply(entries, record).map_err(|m| corrupt(at, m))?;
        }
        if buf.last() != Some(&b'\n') {
            tracing::warn!(path = %path.display(), line = n, "cutting off a torn journal tail");
            break;
        }
        let parsed = std::str::from_utf8(&buf[..buf.len() - 1])
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str::<Record>(text).map_err(|e| e.to_string()));
        pending = Some((n, parsed));
    }
    match pending {
        Some((at, Ok(record))) => apply(entries, record).map_err(|m| corrupt(at, m)),
        Some((at, Err(message))) => {
            tracing::warn!(path = %path.display(), line = at, %message, "dropping a torn last journal line");
            Ok(())
        }
        None => Ok(()),
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn parse_key(raw: &str) -> Result<Key, String> {
    Key::new(raw).map_err(|e| e.to_string())
}

fn apply(entries: &mut BTreeMap<Key, Entry>, record: Record) -> Result<(), String> {
    match record {
        Record::Copied {
            key,
            tape,
            position,
            size,
            mtime_secs,
            mtime_nanos,
            ino,
        } => {
            entries.insert(
                parse_key(&key)?,
                Entry {
                    tape,
                    position,
                    size,
                    mtime: UNIX_EPOCH + Duration::new(mtime_secs, mtime_nanos),
                    ino,
                    released: false,
                },
            );
        }
        Record::Released { key } => {
            let key = parse_key(&key)?;
            entries
                .get_mut(&key)
                .ok_or_else(|| format!("release of {key}, which has no tape copy"))?
                .released = true;
        }
        Record::Recalled { key, ino } => {
            let key = parse_key(&key)?;
            let entry = entries
                .get_mut(&key)
                .ok_or_else(|| format!("recall of {key}, which has no tape copy"))?;
            entry.released = false;
            entry.ino = ino;
        }
        Record::Forgotten { key } => {
            entries.remove(&parse_key(&key)?);
        }
    }
    Ok(())
}
