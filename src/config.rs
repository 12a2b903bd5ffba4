//! Configuration: one struct with documented defaults, loaded as defaults < file (TOML, or the
//! reference's INI service file: see [`crate::config_ini`]) < environment
//! (`PAI_BACKEND_TYPE`/`PAI_PREFIX` as the reference's WSGI entry point reads them, then
//! `ARCHIVEINTERFACE_<KEY>` and `ARCHIVEINTERFACE_<SECTION>__<KEY>`) < command-line flags, then validated
//! as a whole so that a bad value stops start-up with a message naming the key and the value.

use crate::cli::FlagOverrides;
use crate::config_ini::{self, ConfigFile};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which storage backend serves the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendType {
    /// Plain disk under `prefix`.
    Posix,
    /// The built-in HSM: disk tier under `prefix`, a cold tier and a tape model (`[tiered]`).
    Tiered,
    /// IBM HPSS through its client library; `prefix` is a path in the HPSS name space (`[hpss]`).
    Hpss,
    /// LTFS Data Management: `prefix` on the managed file system, HSM work through `ltfsdm`
    /// (`[ltfsdm]`).
    Ltfsdm,
    /// Oracle HSM (SAM-QFS): `prefix` is the archive directory on the SAM-QFS mount, status comes
    /// from the sideband MySQL catalog (`[hsm_sideband]`). The reference's name `hsmsideband` works too.
    #[serde(rename = "hsm_sideband", alias = "hsmsideband")]
    HsmSideband,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event.
    Json,
}

/// The whole server configuration. Every field has a default; `config/archiveinterface.toml` documents
/// each one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub address: String,
    /// TCP port (0 = pick a free one).
    pub port: u16,
    /// Storage backend.
    #[serde(rename = "type")]
    pub backend: BackendType,
    /// Directory the archive lives in; created if missing.
    pub prefix: PathBuf,
    /// Local directory for the server's own state: the default HLM queue database and Swift index.
    /// Empty: the prefix, where the prefix is a local directory; with `type = "hpss"` (the prefix is
    /// an HPSS path) `$STATE_DIRECTORY` (systemd's `StateDirectory=`) or `/var/lib/archiveinterface`.
    pub state_dir: PathBuf,
    /// Map integer ids through Pacifica's id2filename tree (ids must be integers).
    pub use_id2filename: bool,
    /// Let PUT and PATCH replace existing files. Off: the archive is write-once.
    pub allow_overwrite: bool,
    /// Directories PATCH may move files in from (anything else is refused with 403). Empty: PATCH is off.
    pub patch_source_dirs: Vec<PathBuf>,
    /// An upload that sends no data for this long is abandoned (nothing is stored).
    pub body_idle_timeout_secs: u64,
    /// A connection that has not sent a complete request head this long after it opened, or after its
    /// last response (an idle keep-alive connection), is closed.
    pub header_read_timeout_secs: u64,
    /// After SIGTERM, connections still busy this long are closed (and logged) so that the server exits.
    pub shutdown_drain_timeout_secs: u64,
    /// Remove partial files left by a crashed writer when the server starts (never those of a live
    /// process on the same prefix).
    pub sweep_partials_on_start: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (`info`, `debug`, `archiveinterface=debug,tower_http=info`, ...). `RUST_LOG` wins.
    pub log_level: String,
    /// The Swift v1 object API and tempauth (`[swift]`).
    pub swift: SwiftConfig,
    /// Recall scheduling for HSM backends (`[hsm]`).
    pub hsm: HsmConfig,
    /// The `/hlm/v1` API, its request queue and the dispatcher (`[hlm]`).
    pub hlm: HlmConfig,
    /// The tiered backend's cold tier and tape model (`[tiered]`, used with `type = "tiered"`).
    pub tiered: archive_tiered::TieredConfig,
    /// The HPSS backend (`[hpss]`: `library`, and the reference's `user`, `auth`, `sitename`,
    /// `accept_latency`), used with `type = "hpss"`.
    pub hpss: archive_hpss::HpssConfig,
    /// How to drive LTFS Data Management (`[ltfsdm]`, used with `type = "ltfsdm"`).
    pub ltfsdm: archive_ltfsdm::LtfsdmConfig,
    /// The Oracle HSM sideband backend (`[hsm_sideband]`, used with `type = "hsm_sideband"`; the
    /// reference's `sam_qfs_prefix`, `schema`, `host`, `user`, `password`, `port` work as they are).
    pub hsm_sideband: archive_sideband::SidebandConfig,
    /// The cloud tier over the backend (`[cloud]`: stores and policies; off without stores).
    pub cloud: archive_cloud::CloudConfig,
}

/// Backend types of the reference that are recognised but not available yet, with the section that
/// keeps their settings.
const NOT_YET_AVAILABLE: [(&str, &str); 0] = [];

/// `[hlm]`: the SwiftHLM API, the persistent request queue and the dispatcher.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HlmConfig {
    /// Serve `/hlm/v1/...`.
    pub enabled: bool,
    /// Queue database: `sqlite:///path/queue.db` or `postgres://user@host/db` (one PostgreSQL for
    /// several server instances). Empty: a SQLite file in the state directory (the prefix unless
    /// `state_dir` says otherwise: `<prefix>/.archiveinterface-hlm-queue.db`).
    pub queue_url: String,
    /// Run the dispatcher inside the server. Off: run `archiveinterface dispatcher` separately (only on
    /// a backend several processes may open; the server refuses it otherwise, see `server`).
    pub dispatcher: bool,
    /// Requests the dispatcher executes at once.
    pub workers: usize,
    /// Attempts before a request is failed for good.
    pub max_attempts: u32,
    /// Seconds before the first retry; doubled for each further one.
    pub backoff_base_secs: u64,
    /// Longest wait between retries, in seconds.
    pub backoff_max_secs: u64,
    /// Seconds a claimed request stays leased without renewal; a crashed instance's work is taken
    /// over after this.
    pub lease_secs: u64,
    /// Seconds done and failed requests are kept (failed ones show in `requests`).
    pub retention_secs: u64,
    /// Keys per backend migrate call.
    pub migrate_batch: usize,
    /// Milliseconds between queue polls when idle (requests submitted to this instance wake the
    /// dispatcher at once).
    pub poll_interval_ms: u64,
}

impl Default for HlmConfig {
    fn default() -> Self {
        HlmConfig {
            enabled: true,
            queue_url: String::new(),
            dispatcher: true,
            workers: 4,
            max_attempts: 5,
            backoff_base_secs: 30,
            backoff_max_secs: 3600,
            lease_secs: 60,
            retention_secs: 7 * 24 * 3600,
            migrate_batch: 256,
            poll_interval_ms: 1000,
        }
    }
}

impl HlmConfig {
    /// The queue URL in effect for a server whose state directory is `state_dir`.
    pub fn effective_queue_url(&self, state_dir: &Path) -> String {
        if self.queue_url.is_empty() {
            let absolute =
                std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
            format!(
                "sqlite://{}/.archiveinterface-hlm-queue.db",
                absolute.display()
            )
        } else {
            self.queue_url.clone()
        }
    }
}

/// `[hsm]`: how recalls are scheduled and how long a read waits for one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HsmConfig {
    /// Seconds new recall work for a tape that is not mounted waits for more work on the same tape
    /// before it is dispatched (work for a mounted tape goes as soon as a drive is free).
    pub batch_window_secs: f64,
    /// Recall work that has waited this many seconds goes before any other (no starvation).
    pub max_wait_secs: u64,
    /// A GET of a migrated file recalls it and waits up to this many seconds, then answers 503 with
    /// `Retry-After` (the recall goes on). 0: answer 503 at once.
    pub get_wait_secs: u64,
}

impl Default for HsmConfig {
    fn default() -> Self {
        HsmConfig {
            batch_window_secs: 2.0,
            max_wait_secs: 600,
            get_wait_secs: 60,
        }
    }
}

/// `[swift]`: the Swift v1 object API, its tempauth users and where objects live in the backend.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SwiftConfig {
    /// Serve `/auth/v1.0`, `/info` and `/v1/...`.
    pub enabled: bool,
    /// Backend directory under which objects live as `<root>/<account>/<container>/<object>`. It starts
    /// with `.` so that no Pacifica id can name it.
    pub root: String,
    /// Accounts are `<reseller_prefix><account>` in URLs (tempauth's `AUTH_`).
    pub reseller_prefix: String,
    /// How long an issued token stays valid.
    pub token_ttl_secs: u64,
    /// Secret that signs tokens; set the same value on every instance behind one load balancer.
    /// Empty: a random secret per process (tokens do not survive a restart).
    pub token_secret: String,
    /// tempauth users.
    pub users: Vec<SwiftUser>,
    /// The Swift index (SQLite: object rows, container and account counts). Empty:
    /// `<prefix>/.archiveinterface-swift/index.sqlite3`. Server processes sharing a prefix share it.
    pub index_path: PathBuf,
}

/// One tempauth user (`[[swift.users]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SwiftUser {
    /// Account name without the reseller prefix (`test` for `AUTH_test`).
    pub account: String,
    /// User name; clients authenticate as `account:user`.
    pub user: String,
    /// The user's key (password).
    pub key: String,
    /// May act on every account.
    #[serde(default)]
    pub reseller_admin: bool,
}

impl Default for SwiftConfig {
    fn default() -> Self {
        SwiftConfig {
            enabled: true,
            root: ".swift".into(),
            reseller_prefix: "AUTH_".into(),
            token_ttl_secs: 86_400,
            token_secret: String::new(),
            users: Vec::new(),
            index_path: PathBuf::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: "127.0.0.1".into(),
            port: 8080,
            backend: BackendType::Posix,
            prefix: PathBuf::from("archive-data"),
            state_dir: PathBuf::new(),
            use_id2filename: false,
            allow_overwrite: false,
            patch_source_dirs: Vec::new(),
            body_idle_timeout_secs: 60,
            header_read_timeout_secs: 30,
            // Below the hour the systemd unit gives before SIGKILL: connections are closed and
            // logged rather than killed.
            shutdown_drain_timeout_secs: 3000,
            sweep_partials_on_start: true,
            log_format: LogFormat::Human,
            log_level: "info".into(),
            swift: SwiftConfig::default(),
            hsm: HsmConfig::default(),
            hlm: HlmConfig::default(),
            tiered: archive_tiered::TieredConfig::default(),
            ltfsdm: archive_ltfsdm::LtfsdmConfig::default(),
            hpss: archive_hpss::HpssConfig::default(),
            hsm_sideband: archive_sideband::SidebandConfig::default(),
            cloud: archive_cloud::CloudConfig::default(),
        }
    }
}

/// A configuration problem, naming the key, the value and the source.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// The local directory for the server's own state (see `state_dir`).
    pub fn local_state_dir(&self) -> PathBuf {
        if !self.state_dir.as_os_str().is_empty() {
            return self.state_dir.clone();
        }
        match self.backend {
            // The prefix names a directory inside HPSS, which no local file can live in.
            BackendType::Hpss => std::env::var_os("STATE_DIRECTORY")
                .and_then(|dirs| {
                    // systemd lists several directories separated by colons; the first is ours.
                    dirs.to_str()
                        .and_then(|d| d.split(':').next())
                        .filter(|d| !d.is_empty())
                        .map(PathBuf::from)
                })
                .unwrap_or_else(|| PathBuf::from("/var/lib/archiveinterface")),
            _ => self.prefix.clone(),
        }
    }

    /// The top-level keys, for the environment filter: stray `ARCHIVEINTERFACE_*` variables that are not
    /// keys (such as `ARCHIVEINTERFACE_CONFIG`) are not configuration.
    pub fn keys() -> Vec<String> {
        match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether TOML text over the defaults makes a configuration (keys and types; values unchecked).
    pub(crate) fn fits_toml(text: &str) -> bool {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract::<Config>()
            .is_ok()
    }

    /// Loads defaults < `file` < environment < `flags`, and validates the result.
    pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Config, ConfigError> {
        Config::load_with_warnings(file, flags).map(|(config, _)| config)
    }

    /// [`Config::load`], also returning the warnings met on the way (unknown sections and keys of an
    /// INI file), for the caller to log once logging is set up.
    pub fn load_with_warnings(
        file: Option<&Path>,
        flags: &FlagOverrides,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let mut warnings = Vec::new();
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = match config_ini::read(file, Config::fits_toml)? {
                ConfigFile::Toml => figment.merge(Toml::file(file)),
                ConfigFile::Ini(ini) => {
                    warnings.extend(ini.warnings.iter().cloned());
                    figment.merge(ini)
                }
            };
        }
        let keys = Config::keys();
        let figment = figment
            .merge(
                Env::raw()
                    .only(&["PAI_BACKEND_TYPE", "PAI_PREFIX"])
                    .map(|k| {
                        if k == "PAI_BACKEND_TYPE" {
                            "type".into()
                        } else {
                            "prefix".into()
                        }
                    }),
            )
            .merge(
                Env::prefixed("ARCHIVEINTERFACE_")
                    .filter(move |k| {
                        let top = k.as_str().split("__").next().unwrap_or_default();
                        keys.iter().any(|key| key.eq_ignore_ascii_case(top))
                    })
                    .split("__"),
            )
            .merge(Serialized::defaults(flags.clone()));
        if let Some(kind) = figment
            .find_value("type")
            .ok()
            .and_then(|v| v.into_string())
        {
            if let Some((_, section)) = NOT_YET_AVAILABLE.iter().find(|(name, _)| *name == kind) {
                return Err(ConfigError(format!(
                    "key `type` = {kind:?}: the {kind} backend is not available yet (available: \
                     posix, tiered, hpss, ltfsdm, hsm_sideband); its [{section}] settings are read and kept for it"
                )));
            }
        }
        let config: Config = figment.extract().map_err(|e| {
            ConfigError(
                e.into_iter()
                    .map(|e| describe(&e))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        config.validate()?;
        Ok((config, warnings))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, value: &dyn std::fmt::Debug, why: &str| {
            Err(ConfigError(format!("key `{key}` = {value:?}: {why}")))
        };
        if self.address.trim().is_empty() {
            return bad("address", &self.address, "must not be empty");
        }
        if self.prefix.as_os_str().is_empty() {
            return bad("prefix", &self.prefix, "must not be empty");
        }
        for (key, value) in [
            ("body_idle_timeout_secs", self.body_idle_timeout_secs),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
        ] {
            if value == 0 {
                return bad(key, &value, "must be at least 1");
            }
        }
        for dir in &self.patch_source_dirs {
            if !dir.is_absolute() {
                return bad("patch_source_dirs", dir, "must be an absolute path");
            }
            if !dir.is_dir() {
                return bad("patch_source_dirs", dir, "is not an existing directory");
            }
        }
        if !(self.hsm.batch_window_secs.is_finite() && self.hsm.batch_window_secs >= 0.0) {
            return bad(
                "hsm.batch_window_secs",
                &self.hsm.batch_window_secs,
                "must be a number >= 0",
            );
        }
        for (key, value) in [
            ("hlm.workers", self.hlm.workers as u64),
            ("hlm.max_attempts", u64::from(self.hlm.max_attempts)),
            ("hlm.lease_secs", self.hlm.lease_secs),
            ("hlm.migrate_batch", self.hlm.migrate_batch as u64),
            ("hlm.poll_interval_ms", self.hlm.poll_interval_ms),
        ] {
            if value == 0 {
                return bad(key, &value, "must be at least 1");
            }
        }
        if self.hlm.backoff_max_secs < self.hlm.backoff_base_secs {
            return bad(
                "hlm.backoff_max_secs",
                &self.hlm.backoff_max_secs,
                "must not be below hlm.backoff_base_secs",
            );
        }
        let url = self.hlm.effective_queue_url(&self.local_state_dir());
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres:")
            || url.starts_with("postgresql:"))
        {
            return bad(
                "hlm.queue_url",
                &self.hlm.queue_url,
                "must start with sqlite:, postgres: or postgresql:",
            );
        }
        if let Err(e) = self.tiered.validate() {
            return Err(ConfigError(e.to_string()));
        }
        if let Err(e) = self.hpss.validate() {
            return Err(ConfigError(e));
        }
        if let Err(e) = self.ltfsdm.validate() {
            return Err(ConfigError(e.to_string()));
        }
        if self.backend == BackendType::HsmSideband {
            self.hsm_sideband
                .validate()
                .map_err(|e| ConfigError(e.to_string()))?;
        }
        if let Err(e) = self.cloud.validate() {
            return Err(ConfigError(e.to_string()));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return bad("log_level", &self.log_level, &e.to_string());
        }
        Ok(())
    }
}

/// One figment error as "key `k` = value: problem (in source)".
fn describe(e: &figment::Error) -> String {
    let key = e.path.join(".");
    let source = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            _ if m.name.ends_with("FlagOverrides") => " (from command-line flags)".to_string(),
            Some(src) => format!(" (from {} {src})", m.name),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    let what = match &e.kind {
        figment::error::Kind::UnknownField(field, _) => format!("unknown key `{field}`"),
        kind => kind.to_string(),
    };
    if key.is_empty() {
        format!("{what}{source}")
    } else {
        format!("key `{key}`: {what}{source}")
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail API returns its own large error type
mod tests {
    use super::*;
    use figment::Jail;

    fn load(file: Option<&str>, flags: FlagOverrides) -> Result<Config, String> {
        Config::load(file.map(Path::new), &flags).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_file_env_flags_in_order() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "port = 9000\nprefix = \"/from/file\"\naddress = \"0.0.0.0\"\n",
            )?;
            let c = load(Some("c.toml"), FlagOverrides::default()).unwrap();
            assert_eq!((c.port, c.prefix.to_str().unwrap()), (9000, "/from/file"));
            jail.set_env("PAI_PREFIX", "/from/pai");
            jail.set_env("PAI_BACKEND_TYPE", "posix");
            assert_eq!(
                load(Some("c.toml"), FlagOverrides::default())
                    .unwrap()
                    .prefix,
                Path::new("/from/pai")
            );
            jail.set_env("ARCHIVEINTERFACE_PREFIX", "/from/env");
            jail.set_env("ARCHIVEINTERFACE_PORT", "9001");
            jail.set_env("ARCHIVEINTERFACE_CONFIG", "c.toml");
            let c = load(Some("c.toml"), FlagOverrides::default()).unwrap();
            assert_eq!((c.port, c.prefix.to_str().unwrap()), (9001, "/from/env"));
            let flags = FlagOverrides {
                port: Some(9002),
                prefix: Some("/from/flag".into()),
                ..Default::default()
            };
            let c = load(Some("c.toml"), flags).unwrap();
            assert_eq!(
                (c.port, c.prefix.to_str().unwrap(), c.address.as_str()),
                (9002, "/from/flag", "0.0.0.0")
            );
            Ok(())
        });
    }

    #[test]
    fn env_lists_and_booleans() {
        Jail::expect_with(|jail| {
            jail.set_env("ARCHIVEINTERFACE_PATCH_SOURCE_DIRS", "[\"/tmp\"]");
            jail.set_env("ARCHIVEINTERFACE_USE_ID2FILENAME", "true");
            let c = load(None, FlagOverrides::default()).unwrap();
            assert_eq!(c.patch_source_dirs, vec![PathBuf::from("/tmp")]);
            assert!(c.use_id2filename);
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_the_key_and_value() {
        Jail::expect_with(|jail| {
            jail.set_env("ARCHIVEINTERFACE_PORT", "eighty");
            let err = load(None, FlagOverrides::default()).unwrap_err();
            assert!(err.contains("port") && err.contains("eighty"), "{err}");
            jail.set_env("ARCHIVEINTERFACE_PORT", "8080");
            jail.set_env("PAI_BACKEND_TYPE", "hpss-typo");
            let err = load(None, FlagOverrides::default()).unwrap_err();
            assert!(err.contains("type") && err.contains("hpss-typo"), "{err}");
            jail.set_env("PAI_BACKEND_TYPE", "posix");
            jail.create_file("bad.toml", "prot = 1\n")?;
            let err = load(Some("bad.toml"), FlagOverrides::default()).unwrap_err();
            assert!(err.contains("prot"), "{err}");
            jail.create_file("dirs.toml", "patch_source_dirs = [\"relative/dir\"]\n")?;
            let err = load(Some("dirs.toml"), FlagOverrides::default()).unwrap_err();
            assert!(
                err.contains("patch_source_dirs") && err.contains("relative/dir"),
                "{err}"
            );
            let err = load(Some("missing.toml"), FlagOverrides::default()).unwrap_err();
            assert!(err.contains("missing.toml"), "{err}");
            jail.create_file("lvl.toml", "log_level = \"info,=[\"\n")?;
            assert!(load(Some("lvl.toml"), FlagOverrides::default())
                .unwrap_err()
                .contains("log_level"));
            Ok(())
        });
    }
    #[test]
    fn the_reference_ini_file_loads_under_the_other_sources() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "config.ini",
                "[posix]\n; comment\nuse_id2filename = true\n[hpss]\nuser = hpss.unix\n\
                 accept_latency = 7\n[hsm_sideband]\nport = 3306\n[extra]\nx = 1\n",
            )?;
            let ini = Some(Path::new("config.ini"));
            let (c, warnings) = Config::load_with_warnings(ini, &FlagOverrides::default()).unwrap();
            assert!(c.use_id2filename);
            assert_eq!(c.hpss.user, "hpss.unix");
            assert_eq!(c.hpss.accept_latency_secs, 7);
            assert_eq!(c.hsm_sideband.port, 3306);
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(warnings[0].contains("[extra]"), "{warnings:?}");
            // The environment and flags still override what the file says.
            jail.set_env("ARCHIVEINTERFACE_USE_ID2FILENAME", "false");
            jail.set_env("ARCHIVEINTERFACE_HPSS__SITENAME", "site.example");
            let c = load(ini.and_then(Path::to_str), FlagOverrides::default()).unwrap();
            assert!(!c.use_id2filename);
            assert_eq!(c.hpss.sitename, "site.example");
            Ok(())
        });
    }

    #[test]
    fn the_sideband_backend_takes_both_names_and_the_reference_section() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "config.ini",
                "[hsm_sideband]\nsam_qfs_prefix = /archive\nschema = samfs1\nhost = db.example.org\n\
                 user = samdb\npassword = pass\nport = 3307\n",
            )?;
            for name in ["hsm_sideband", "hsmsideband"] {
                jail.set_env("PAI_BACKEND_TYPE", name);
                let c = load(Some("config.ini"), FlagOverrides::default()).unwrap();
                assert_eq!(c.backend, BackendType::HsmSideband);
                assert_eq!(c.hsm_sideband.database_host(), "db.example.org:3307");
                assert_eq!(c.hsm_sideband.sam_qfs_prefix, "/archive");
            }
            // Its settings are checked only when it is the backend, naming the key.
            jail.create_file(
                "bad.toml",
                "type = \"hsm_sideband\"\n[hsm_sideband]\nurl = \"mysql://db/x\"\n",
            )?;
            jail.set_env("PAI_BACKEND_TYPE", "hsm_sideband");
            let err = load(Some("bad.toml"), FlagOverrides::default()).unwrap_err();
            assert!(err.contains("hsm_sideband.sam_qfs_prefix"), "{err}");
            jail.set_env("PAI_BACKEND_TYPE", "posix");
            load(Some("bad.toml"), FlagOverrides::default()).unwrap();
            Ok(())
        });
    }

    #[test]
    fn backend_types_not_available_yet_are_named_not_misparsed() {
        Jail::expect_with(|jail| {
            let flags = FlagOverrides {
                backend: Some("hpss".into()),
                ..Default::default()
            };
            // The reference's start-up line works: the server's own state goes to a local
            // directory, not into the HPSS path.
            let c = load(None, flags.clone()).unwrap();
            assert_eq!(c.backend, BackendType::Hpss);
            jail.set_env("STATE_DIRECTORY", "/run/state-a:/run/state-b");
            assert_eq!(
                load(None, flags.clone()).unwrap().local_state_dir(),
                Path::new("/run/state-a")
            );
            jail.set_env("ARCHIVEINTERFACE_STATE_DIR", "/srv/ai-state");
            let c = load(None, flags).unwrap();
            assert_eq!(
                c.hlm.effective_queue_url(&c.local_state_dir()),
                "sqlite:///srv/ai-state/.archiveinterface-hlm-queue.db"
            );
            Ok(())
        });
    }
}

impl ConfigError {
    /// A configuration error with a message of its own (for checks done outside [`Config::load`]).
    pub fn from_message(message: String) -> Self {
        ConfigError(message)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod example_file {
    use super::*;

    /// `config/archiveinterface.toml` documents the defaults: it must load and say exactly them.
    #[test]
    fn the_shipped_example_is_valid_and_shows_the_defaults() {
        // Inside a jail: other tests change the process environment while they run.
        figment::Jail::expect_with(|_| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/archiveinterface.toml");
            let loaded = Config::load(Some(&path), &FlagOverrides::default()).unwrap();
            assert_eq!(
                toml::to_string(&loaded).unwrap(),
                toml::to_string(&Config::default()).unwrap()
            );
            Ok(())
        });
    }
}
