//! The sideband catalog: one MySQL pool and the one query that answers for a batch of keys. A key's
//! directory row (`sam_path`), its directory entry (`sam_file`) and the inode (`sam_inode`) are joined
//! on inode number AND generation, so a reused inode number never lends another file its state; the
//! lowest-numbered non-stale archive copy (`sam_archive`, first volume section) comes along for the
//! recall order.

use crate::config::SidebandConfig;
use crate::error::{OpenError, SidebandError};
use archive_core::Key;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::{QueryBuilder, Row};
use std::collections::HashMap;
use std::time::Duration;

/// Keys per catalog query (the query binds two strings per key at most).
pub(crate) const KEYS_PER_QUERY: usize = 2000;

/// What the catalog knows about one inode reachable under a key's name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CatalogEntry {
    pub(crate) ino: u64,
    pub(crate) gen: u64,
    pub(crate) size: u64,
    /// Unix seconds.
    pub(crate) modify_time: i64,
    /// Unix seconds (the inode's creation time: the catalog keeps no change time).
    pub(crate) create_time: i64,
    pub(crate) online: bool,
    /// The lowest-numbered non-stale archive copy, if any.
    pub(crate) copy: Option<ArchiveCopy>,
}

/// Where an archive copy starts (its first volume section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArchiveCopy {
    /// 0-based, as the catalog stores it (`sls` shows it 1-based).
    pub(crate) copy: u8,
    pub(crate) media_type: String,
    pub(crate) vsn: String,
    /// Position of the tar archive file on the volume.
    pub(crate) position: u64,
    /// Offset of the file within it, in 512-byte units.
    pub(crate) offset: u64,
}

/// The catalog connection pool of one backend.
#[derive(Debug, Clone)]
pub(crate) struct Catalog {
    pool: MySqlPool,
    host: String,
    timeout: Duration,
    /// `sam_qfs_prefix` with one trailing `/`: the `sam_path` row of the archive root.
    root: String,
}

impl Catalog {
    /// Connects and checks the sideband tables are there: an unusable catalog stops start-up.
    pub(crate) async fn connect(config: &SidebandConfig) -> Result<Catalog, OpenError> {
        let options = config.connect_options()?;
        let host = config.database_host();
        let timeout = config.query_timeout();
        let pool = MySqlPoolOptions::new()
            .max_connections(config.pool_size)
            .min_connections(0)
            .acquire_timeout(timeout)
            // A connection that saw the database go away is tested before it is reused.
            .test_before_acquire(true)
            .connect_lazy_with(options);
        let catalog = Catalog {
            pool,
            host: host.clone(),
            timeout,
            root: config.catalog_root(),
        };
        let probe = "SELECT COUNT(*) FROM (SELECT 1 FROM sam_path LIMIT 1) p, \
                     (SELECT 1 FROM sam_file LIMIT 1) f, (SELECT 1 FROM sam_inode LIMIT 1) i, \
                     (SELECT 1 FROM sam_archive LIMIT 1) a";
        catalog
            .bounded(sqlx::query(probe).fetch_all(&catalog.pool))
            .await
            .map_err(|e| OpenError::Catalog {
                host,
                source: Box::new(e),
            })?;
        Ok(catalog)
    }

    /// `host:port` of the database.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// Runs a query within the configured time.
    async fn bounded<T>(
        &self,
        query: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, SidebandError> {
        match tokio::time::timeout(self.timeout, query).await {
            Ok(result) => result.map_err(|e| SidebandError::from_sqlx(&self.host, e)),
            Err(_) => Err(SidebandError::Slow {
                host: self.host.clone(),
                timeout: self.timeout,
            }),
        }
    }

    /// The catalog's (directory path, entry name) of a key.
    pub(crate) fn location(&self, key: &Key) -> (String, String) {
        match key.as_str().rsplit_once('/') {
            Some((dir, name)) => (format!("{}{dir}/", self.root), name.to_string()),
            None => (self.root.clone(), key.as_str().to_string()),
        }
    }

    /// Every catalog entry under each key's name (usually one; a directory recreated before the
    /// catalog dropped the old one can give more), in key order. One query per
    /// [`KEYS_PER_QUERY`] keys.
    pub(crate) async fn lookup(
        &self,
        keys: &[Key],
    ) -> Result<Vec<Vec<CatalogEntry>>, SidebandError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(KEYS_PER_QUERY) {
            out.extend(self.lookup_chunk(chunk).await?);
        }
        Ok(out)
    }

    async fn lookup_chunk(&self, keys: &[Key]) -> Result<Vec<Vec<CatalogEntry>>, SidebandError> {
        let wanted: Vec<(String, String)> = keys.iter().map(|k| self.location(k)).collect();
        let mut dirs: Vec<&str> = wanted.iter().map(|(d, _)| d.as_str()).collect();
        dirs.sort_unstable();
        dirs.dedup();
        let mut names: Vec<&str> = wanted.iter().map(|(_, n)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        // Casts make the decoding independent of the exact integer widths a site's schema uses.
        let mut query = QueryBuilder::new(
            "SELECT p.path, f.name, CAST(i.ino AS UNSIGNED) AS ino, CAST(i.gen AS UNSIGNED) AS gen, \
             CAST(i.size AS SIGNED) AS size, CAST(i.modify_time AS SIGNED) AS modify_time, \
             CAST(i.create_time AS SIGNED) AS create_time, CAST(i.online AS SIGNED) AS online, \
             CAST(a.copy AS SIGNED) AS copy, a.media_type, a.vsn, \
             CAST(a.position AS UNSIGNED) AS position, CAST(a.off_set AS UNSIGNED) AS off_set \
             FROM sam_path p \
             JOIN sam_file f ON f.p_ino = p.ino AND f.p_gen = p.gen \
             JOIN sam_inode i ON i.ino = f.ino AND i.gen = f.gen \
             LEFT JOIN sam_archive a ON a.ino = i.ino AND a.gen = i.gen AND a.stale = 0 AND a.seq = 0 \
             WHERE p.path IN (",
        );
        let mut list = query.separated(", ");
        for dir in &dirs {
            list.push_bind(*dir);
        }
        query.push(") AND f.name IN (");
        let mut list = query.separated(", ");
        for name in &names {
            list.push_bind(*name);
        }
        query.push(")");
        let rows = self.bounded(query.build().fetch_all(&self.pool)).await?;

        // Keyed by the exact strings: the database's collation may match names case-insensitively.
        let mut found: HashMap<(String, String), Vec<CatalogEntry>> = HashMap::new();
        for row in rows {
            let decode = |e| SidebandError::from_sqlx(&self.host, e);
            let path: String = row.try_get("path").map_err(decode)?;
            let name: String = row.try_get("name").map_err(decode)?;
            let copy = match row.try_get::<Option<i64>, _>("copy").map_err(decode)? {
                None => None,
                Some(copy) => Some(ArchiveCopy {
                    copy: copy.clamp(0, 255) as u8,
                    media_type: row
                        .try_get::<Option<String>, _>("media_type")
                        .map_err(decode)?
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                    vsn: row
                        .try_get::<Option<String>, _>("vsn")
                        .map_err(decode)?
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                    position: row
                        .try_get::<Option<u64>, _>("position")
                        .map_err(decode)?
                        .unwrap_or(0),
                    offset: row
                        .try_get::<Option<u64>, _>("off_set")
                        .map_err(decode)?
                        .unwrap_or(0),
                }),
            };
            let entry = CatalogEntry {
                ino: row.try_get("ino").map_err(decode)?,
                gen: row.try_get("gen").map_err(decode)?,
                size: row.try_get::<i64, _>("size").map_err(decode)?.max(0) as u64,
                modify_time: row.try_get("modify_time").map_err(decode)?,
                create_time: row.try_get("create_time").map_err(decode)?,
                online: row.try_get::<i64, _>("online").map_err(decode)? != 0,
                copy,
            };
            let entries = found.entry((path, name)).or_default();
            // One row per non-stale copy: keep the lowest-numbered copy of each inode.
            match entries
                .iter_mut()
                .find(|e| (e.ino, e.gen) == (entry.ino, entry.gen))
            {
                Some(seen) => {
                    let lower = match (&seen.copy, &entry.copy) {
                        (None, Some(_)) => true,
                        (Some(a), Some(b)) => b.copy < a.copy,
                        _ => false,
                    };
                    if lower {
                        seen.copy = entry.copy;
                    }
                }
                None => entries.push(entry),
            }
        }
        Ok(wanted
            .into_iter()
            .map(|place| found.get(&place).cloned().unwrap_or_default())
            .collect())
    }
}
