//! A sideband site for one test: a fresh catalog database on MariaDB, a "mount point" with the archive
//! directory in it, the command double configured as `stage`, `archive` and `release`, and the backend
//! opened on all of it.
#![allow(dead_code, unreachable_pub)]

use archive_core::conformance::body_of;
use archive_core::{ArchiveBackend, Key, PutOptions, ReadRange};
use archive_sideband::{SidebandBackend, SidebandConfig};
use archive_sideband_testkit::database::TestCatalog;
use archive_sideband_testkit::double::DoubleSetup;
use archive_sideband_testkit::sam::Sam;
use bytes::Bytes;
use futures::TryStreamExt;
use std::path::PathBuf;

pub struct Site {
    pub backend: SidebandBackend,
    pub config: SidebandConfig,
    pub double: DoubleSetup,
    pub sam: Sam,
    pub prefix: PathBuf,
    pub scratch: PathBuf,
    pub catalog: TestCatalog,
    pub dir: tempfile::TempDir,
}

/// The backend's settings for a site: small pool, short waits, the double as every command.
pub fn config_for(double: &DoubleSetup, url: &str) -> SidebandConfig {
    SidebandConfig {
        url: url.to_string(),
        sam_qfs_prefix: "/archive".into(),
        stage_command: double.argv("stage", &[]),
        archive_command: double.argv("archive", &[]),
        release_command: double.argv("release", &[]),
        pool_size: 2,
        query_timeout_secs: 5,
        wait_timeout_secs: 20,
        poll_interval_ms: 20,
        ..Default::default()
    }
}

pub async fn site() -> Site {
    site_with(|_, _| {}).await
}

pub async fn site_with(tweak: impl FnOnce(&mut SidebandConfig, &DoubleSetup)) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let catalog = TestCatalog::create().await;
    let double = DoubleSetup::under(dir.path(), &catalog.url);
    let prefix = double.mount.join("archive");
    std::fs::create_dir_all(&prefix).unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let mut config = config_for(&double, &catalog.url);
    tweak(&mut config, &double);
    let backend = SidebandBackend::open(prefix.clone(), config.clone())
        .await
        .expect("open the sideband backend");
    let sam = Sam::new(catalog.pool.clone(), double.mount.clone());
    Site {
        backend,
        config,
        double,
        sam,
        prefix,
        scratch,
        catalog,
        dir,
    }
}

pub fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

impl Site {
    pub async fn put(&self, k: &str, data: &[u8]) -> Key {
        let k = key(k);
        self.backend
            .put(&k, body_of(vec![data.to_vec()]), PutOptions::default())
            .await
            .expect("put");
        k
    }

    pub fn path(&self, k: &Key) -> PathBuf {
        self.prefix.join(k.as_str())
    }

    pub async fn read(&self, k: &Key) -> archive_core::Result<Vec<u8>> {
        let got = self.backend.get(k, ReadRange::All).await?;
        let chunks: Vec<Bytes> = got.stream.try_collect().await.expect("read stream");
        Ok(chunks.concat())
    }

    /// Runs the double directly (setting up states): `dbupd`, `archive`, `release`.
    pub async fn sam_command(&self, command: &str, options: &[&str], keys: &[&Key]) {
        let files: Vec<PathBuf> = keys.iter().map(|k| self.path(k)).collect();
        let double = self.double.clone();
        let (command, options) = (
            command.to_string(),
            options.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
        );
        tokio::task::spawn_blocking(move || {
            let options: Vec<&str> = options.iter().map(String::as_str).collect();
            double.run(&command, &options, &files)
        })
        .await
        .unwrap();
    }

    /// The files each `stage` invocation was given, as keys.
    pub fn stages(&self) -> Vec<Vec<String>> {
        let prefix = format!("{}/", self.prefix.display());
        self.double
            .invocations()
            .into_iter()
            .filter(|(command, _)| command == "stage")
            .map(|(_, files)| {
                files
                    .into_iter()
                    .map(|f| f.strip_prefix(&prefix).unwrap_or(&f).to_string())
                    .collect()
            })
            .collect()
    }
}
