//! Writes the sideband catalog as Oracle HSM does: `sam-dbupd` records directories (`sam_path`),
//! directory entries (`sam_file`) and inodes (`sam_inode`, with `online`), the archiver adds copies
//! (`sam_archive`, `copy` stored 0-based). Used by the command double and by tests that set up states
//! (reused inode numbers, stale copies, copies on several volumes) by hand.

use sqlx::mysql::MySqlPool;
use sqlx::Row;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// An inode as the catalog names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inode {
    /// Inode number (the file system's `st_ino`).
    pub ino: u64,
    /// Generation (bumped each time the number is reused).
    pub gen: u64,
}

/// An archive copy as `sam_archive` holds it (first volume section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// 0-based copy number.
    pub copy: u8,
    /// Media type code (`li`, `ti`, `dk`, ...).
    pub media_type: String,
    /// Volume serial name.
    pub vsn: String,
    /// Position of the tar archive file on the volume.
    pub position: u64,
    /// Offset within it, in 512-byte units.
    pub offset: u32,
    /// Stale: the file changed after the copy was made.
    pub stale: bool,
}

/// The catalog of one SAM-QFS file system mounted at `mount`.
#[derive(Debug, Clone)]
pub struct Sam {
    /// The catalog database.
    pub pool: MySqlPool,
    /// The mount point (catalog paths are relative to it).
    pub mount: PathBuf,
}

type Failure = String;

fn db(what: &str) -> impl Fn(sqlx::Error) -> Failure + '_ {
    move |e| format!("catalog: {what}: {e}")
}

/// The catalog's directory-entry hash (any stable value: the backend never reads it).
fn name_hash(name: &str) -> i16 {
    (name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        & 0x7fff) as i16
}

impl Sam {
    /// The catalog over `pool` of the file system mounted at `mount`.
    pub fn new(pool: MySqlPool, mount: impl Into<PathBuf>) -> Sam {
        Sam {
            pool,
            mount: mount.into(),
        }
    }

    /// A file's directory path and name in the catalog: `/archive/39/` and `3039`.
    pub fn catalog_location(&self, file: &Path) -> Result<(String, String), Failure> {
        let relative = file
            .strip_prefix(&self.mount)
            .map_err(|_| format!("{}: Not a SAM-FS file.", file.display()))?;
        let name = relative
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: not a file name", file.display()))?
            .to_string();
        let mut dir = String::from("/");
        if let Some(parent) = relative.parent() {
            for part in parent.iter() {
                dir.push_str(part.to_str().unwrap_or_default());
                dir.push('/');
            }
        }
        Ok((dir, name))
    }

    /// Records `file` as the file system has it now, online, with its directories: what `sam-dbupd`
    /// does when it catches up. A name that now holds another inode gets a new entry; an inode number
    /// seen before with another file gets the next generation.
    pub async fn catalogue(&self, file: &Path) -> Result<Inode, Failure> {
        let meta =
            std::fs::symlink_metadata(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let (dir_path, name) = self.catalog_location(file)?;
        let parent = self.catalogue_directories(file).await?;
        if let Some(current) = self.entry_of(file).await? {
            sqlx::query("UPDATE sam_inode SET size = ?, modify_time = ?, create_time = ? WHERE ino = ? AND gen = ?")
                .bind(meta.len() as i64)
                .bind(meta.mtime().max(0) as u64)
                .bind(meta.ctime().max(0) as u64)
                .bind(current.ino)
                .bind(current.gen)
                .execute(&self.pool)
                .await
                .map_err(db("update inode"))?;
            return Ok(current);
        }
        let gen: u64 = sqlx::query(
            "SELECT CAST(COALESCE(MAX(gen), 0) + 1 AS UNSIGNED) AS g FROM sam_inode WHERE ino = ?",
        )
        .bind(meta.ino())
        .fetch_one(&self.pool)
        .await
        .map_err(db("next generation"))?
        .get("g");
        let inode = Inode {
            ino: meta.ino(),
            gen,
        };
        sqlx::query(
            "INSERT INTO sam_inode (ino, gen, type, size, csum, create_time, modify_time, uid, gid, online) \
             VALUES (?, ?, 0, ?, NULL, ?, ?, ?, ?, 1)",
        )
        .bind(inode.ino)
        .bind(inode.gen)
        .bind(meta.len() as i64)
        .bind(meta.ctime().max(0) as u64)
        .bind(meta.mtime().max(0) as u64)
        .bind(meta.uid())
        .bind(meta.gid())
        .execute(&self.pool)
        .await
        .map_err(db("insert inode"))?;
        sqlx::query("DELETE FROM sam_file WHERE p_ino = ? AND p_gen = ? AND name = BINARY ?")
            .bind(parent.ino)
            .bind(parent.gen)
            .bind(&name)
            .execute(&self.pool)
            .await
            .map_err(db("replace entry"))?;
        sqlx::query("INSERT INTO sam_file (p_ino, p_gen, name_hash, name, ino, gen) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(parent.ino)
            .bind(parent.gen)
            .bind(name_hash(&name))
            .bind(&name)
            .bind(inode.ino)
            .bind(inode.gen)
            .execute(&self.pool)
            .await
            .map_err(db("insert entry"))?;
        let _ = dir_path;
        Ok(inode)
    }

    /// Records the directories from the mount point down to `file`'s parent; returns the parent's.
    async fn catalogue_directories(&self, file: &Path) -> Result<Inode, Failure> {
        let mut dir = self.mount.clone();
        let mut path = String::from("/");
        let relative = file
            .parent()
            .and_then(|p| p.strip_prefix(&self.mount).ok())
            .ok_or_else(|| format!("{}: Not a SAM-FS file.", file.display()))?
            .to_path_buf();
        let mut parts = relative.iter();
        loop {
            let meta = std::fs::metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let inode = Inode {
                ino: meta.ino(),
                gen: 1,
            };
            sqlx::query("REPLACE INTO sam_path (ino, gen, path) VALUES (?, ?, ?)")
                .bind(inode.ino)
                .bind(inode.gen)
                .bind(&path)
                .execute(&self.pool)
                .await
                .map_err(db("record directory"))?;
            match parts.next() {
                Some(part) => {
                    dir.push(part);
                    path.push_str(part.to_str().unwrap_or_default());
                    path.push('/');
                }
                None => return Ok(inode),
            }
        }
    }

    /// The catalogued inode under `file`'s name that is the file's current inode, if any.
    pub async fn entry_of(&self, file: &Path) -> Result<Option<Inode>, Failure> {
        let meta =
            std::fs::symlink_metadata(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let (dir, name) = self.catalog_location(file)?;
        let row = sqlx::query(
            "SELECT CAST(f.ino AS UNSIGNED) AS ino, CAST(f.gen AS UNSIGNED) AS gen FROM sam_path p \
             JOIN sam_file f ON f.p_ino = p.ino AND f.p_gen = p.gen \
             JOIN sam_inode i ON i.ino = f.ino AND i.gen = f.gen \
             WHERE p.path = BINARY ? AND f.name = BINARY ? AND f.ino = ?",
        )
        .bind(&dir)
        .bind(&name)
        .bind(meta.ino())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("look up entry"))?;
        Ok(row.map(|r| Inode {
            ino: r.get("ino"),
            gen: r.get("gen"),
        }))
    }

    /// Whether the inode is online.
    pub async fn online(&self, inode: Inode) -> Result<bool, Failure> {
        let online: i64 = sqlx::query(
            "SELECT CAST(online AS SIGNED) AS o FROM sam_inode WHERE ino = ? AND gen = ?",
        )
        .bind(inode.ino)
        .bind(inode.gen)
        .fetch_one(&self.pool)
        .await
        .map_err(db("read online"))?
        .get("o");
        Ok(online != 0)
    }

    /// Sets the inode's `online` flag.
    pub async fn set_online(&self, inode: Inode, online: bool) -> Result<(), Failure> {
        sqlx::query("UPDATE sam_inode SET online = ? WHERE ino = ? AND gen = ?")
            .bind(i8::from(online))
            .bind(inode.ino)
            .bind(inode.gen)
            .execute(&self.pool)
            .await
            .map_err(db("set online"))?;
        Ok(())
    }

    /// Adds (or replaces) an archive copy of the inode.
    pub async fn add_copy(&self, inode: Inode, copy: &Copy, size: u64) -> Result<(), Failure> {
        sqlx::query(
            "REPLACE INTO sam_archive (ino, gen, copy, seq, media_type, vsn, position, off_set, size, create_time, stale) \
             VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, UNIX_TIMESTAMP(), ?)",
        )
        .bind(inode.ino)
        .bind(inode.gen)
        .bind(copy.copy)
        .bind(&copy.media_type)
        .bind(&copy.vsn)
        .bind(copy.position as i64)
        .bind(copy.offset)
        .bind(size as i64)
        .bind(i8::from(copy.stale))
        .execute(&self.pool)
        .await
        .map_err(db("add copy"))?;
        Ok(())
    }

    /// The lowest-numbered non-stale copy of the inode.
    pub async fn first_copy(&self, inode: Inode) -> Result<Option<Copy>, Failure> {
        let row = sqlx::query(
            "SELECT CAST(copy AS UNSIGNED) AS copy, media_type, vsn, CAST(position AS UNSIGNED) AS position, \
             CAST(off_set AS UNSIGNED) AS off_set FROM sam_archive \
             WHERE ino = ? AND gen = ? AND stale = 0 AND seq = 0 ORDER BY copy LIMIT 1",
        )
        .bind(inode.ino)
        .bind(inode.gen)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("read copies"))?;
        Ok(row.map(|r| Copy {
            copy: r.get::<u64, _>("copy") as u8,
            media_type: r.get("media_type"),
            vsn: r.get("vsn"),
            position: r.get("position"),
            offset: r.get::<u64, _>("off_set") as u32,
            stale: false,
        }))
    }

    /// The next free tar file position on a volume (copies are appended).
    pub async fn next_position(&self, media_type: &str, vsn: &str) -> Result<u64, Failure> {
        Ok(sqlx::query(
            "SELECT CAST(COALESCE(MAX(position), 0) + 1 AS UNSIGNED) AS p FROM sam_archive WHERE media_type = ? AND vsn = ?",
        )
        .bind(media_type)
        .bind(vsn)
        .fetch_one(&self.pool)
        .await
        .map_err(db("next position"))?
        .get("p"))
    }

    /// Records many new files of one directory at once (generation 1, `online` as given), with
    /// multi-row inserts: for catalogs of thousands of files.
    pub async fn catalogue_many(&self, files: &[PathBuf], online: bool) -> Result<(), Failure> {
        let Some(first) = files.first() else {
            return Ok(());
        };
        let parent = self.catalogue_directories(first).await?;
        for chunk in files.chunks(1000) {
            let mut inodes = sqlx::QueryBuilder::new(
                "INSERT INTO sam_inode (ino, gen, type, size, csum, create_time, modify_time, uid, gid, online) ",
            );
            let mut entries = sqlx::QueryBuilder::new(
                "INSERT INTO sam_file (p_ino, p_gen, name_hash, name, ino, gen) ",
            );
            let mut metas = Vec::new();
            for file in chunk {
                let meta = std::fs::symlink_metadata(file)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                let (_, name) = self.catalog_location(file)?;
                metas.push((meta, name));
            }
            inodes.push_values(&metas, |mut row, (meta, _)| {
                row.push_bind(meta.ino())
                    .push_bind(1u64)
                    .push_bind(0i8)
                    .push_bind(meta.len() as i64)
                    .push_bind(None::<String>)
                    .push_bind(meta.ctime().max(0) as u64)
                    .push_bind(meta.mtime().max(0) as u64)
                    .push_bind(meta.uid())
                    .push_bind(meta.gid())
                    .push_bind(i8::from(online));
            });
            entries.push_values(&metas, |mut row, (meta, name)| {
                row.push_bind(parent.ino)
                    .push_bind(parent.gen)
                    .push_bind(name_hash(name))
                    .push_bind(name.clone())
                    .push_bind(meta.ino())
                    .push_bind(1u64);
            });
            inodes
                .build()
                .execute(&self.pool)
                .await
                .map_err(db("insert inodes"))?;
            entries
                .build()
                .execute(&self.pool)
                .await
                .map_err(db("insert entries"))?;
        }
        Ok(())
    }
}
