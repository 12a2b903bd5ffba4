//! The catalog: which keys have a copy on tape, where, and whether the disk copy was released.
//!
//! Durability: an append-only journal of JSON lines, one record per state change, fsynced before the
//! change is acted on (a disk copy is released only after the record of its tape copy is durable). On
//! open the journal is replayed (a torn last line from a crash is dropped) and rewritten compacted
//! through a temporary file and a rename; it is compacted again when it grows to several times the
//! catalog size. A key without an entry is resident (or absent): the disk tier is the truth for it.

use crate::error::{OpenError, TieredError};
use archive_core::Key;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
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

#[derive(Debug, Serialize, Deserialize)]
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
    records_since_compaction: usize,
}

const JOURNAL: &str = "journal.jsonl";

impl Catalog {
    /// Replays the journal in `state_dir` (creating an empty one).
    pub(crate) fn open(state_dir: &Path) -> Result<Catalog, OpenError> {
        let path = state_dir.join(JOURNAL);
        let io = |what, source| OpenError::Io {
            what,
            path: path.clone(),
            source,
        };
        let mut entries = BTreeMap::new();
        match File::open(&path) {
            Ok(file) => {
                let lines: Vec<String> = BufReader::new(file)
                    .lines()
                    .collect::<Result<_, _>>()
                    .map_err(|e| io("read the journal", e))?;
                let last = lines.len();
                for (n, line) in lines.iter().enumerate() {
                    match serde_json::from_str::<Record>(line) {
                        Ok(record) => {
                            apply(&mut entries, record).map_err(|message| OpenError::Journal {
                                path: path.clone(),
                                line: n + 1,
                                message,
                            })?
                        }
                        // A crash while appending leaves at most the last line torn; its change was
                        // never acted on, so it is dropped.
                        Err(_) if n + 1 == last => {
                            tracing::warn!(path = %path.display(), "dropping a torn last journal line")
                        }
                        Err(e) => {
                            return Err(OpenError::Journal {
                                path: path.clone(),
                                line: n + 1,
                                message: e.to_string(),
                            })
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("open the journal", e)),
        }
        let file = open_append(&path).map_err(|e| io("open the journal", e))?;
        let catalog = Catalog {
            entries: RwLock::new(entries),
            journal: Mutex::new(Journal {
                path: path.clone(),
                file,
                records_since_compaction: 0,
            }),
        };
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

    /// Runs `f` over the entries (under the read lock: keep it short).
    pub(crate) fn with_entries<T>(&self, f: impl FnOnce(&BTreeMap<Key, Entry>) -> T) -> T {
        f(&self.read())
    }

    /// Makes `record` durable, then applies it. Blocking (fsync).
    pub(crate) fn append(&self, record: Record) -> Result<(), TieredError> {
        let mut line = serde_json::to_string(&record).expect("records serialize");
        line.push('\n');
        let mut journal = self.journal.lock().expect("journal poisoned");
        let path = journal.path.clone();
        let err = |e| TieredError::Journal(path.clone(), e);
        journal.file.write_all(line.as_bytes()).map_err(err)?;
        journal.file.sync_data().map_err(err)?;
        let len = {
            let mut entries = self.entries.write().expect("catalog poisoned");
            apply(&mut entries, record).map_err(TieredError::Inconsistent)?;
            entries.len()
        };
        journal.records_since_compaction += 1;
        if journal.records_since_compaction > 4 * len + 10_000 {
            self.compact_locked(&mut journal).map_err(err)?;
        }
        Ok(())
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
        {
            let mut out = std::io::BufWriter::new(File::create(&tmp)?);
            let entries: Vec<(Key, Entry)> = self
                .read()
                .iter()
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect();
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
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(&tmp, &journal.path)?;
        File::open(journal.path.parent().expect("journal has a directory"))?.sync_all()?;
        journal.file = open_append(&journal.path)?;
        journal.records_since_compaction = 0;
        Ok(())
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
