//! `[hsm_sideband]`: where the sideband catalog is, where the archive sits on the SAM-QFS mount, and
//! which commands stage, archive and release files. Reads the reference's keys (`host`, `port`, `user`,
//! `password`, `schema`, `sam_qfs_prefix`) as they are, or one `url`.

use serde::{Deserialize, Serialize};
use sqlx::mysql::MySqlConnectOptions;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The Oracle HSM sideband backend's settings. Every field has a default except the database and
/// `sam_qfs_prefix`, which [`validate`](SidebandConfig::validate) requires.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SidebandConfig {
    /// The catalog database as one URL, `mysql://user:password@host:3306/schema`. When set, `host`,
    /// `port`, `user`, `password` and `schema` must be left out.
    pub url: String,
    /// Catalog database host (the `host` field of the site's `samdb.conf` line).
    pub host: String,
    /// Catalog database port.
    pub port: u16,
    /// Database user.
    pub user: String,
    /// Database password. Prefer `password_file`, or the environment
    /// (`ARCHIVEINTERFACE_HSM_SIDEBAND__PASSWORD`), to keep it out of the config file.
    pub password: String,
    /// A file whose first line is the database password.
    pub password_file: Option<PathBuf>,
    /// Database (schema) name (the `database` field of `samdb.conf`).
    pub schema: String,
    /// The archive directory as the catalog names it: relative to the SAM-QFS mount point, starting
    /// with `/` (key `39/3039` is directory `<sam_qfs_prefix>/39/`, name `3039`).
    pub sam_qfs_prefix: String,
    /// Command (argv, no shell) that starts stages; file paths are appended.
    pub stage_command: Vec<String>,
    /// Command that marks files for immediate archiving; file paths are appended.
    pub archive_command: Vec<String>,
    /// Command that releases the disk blocks of archived files; file paths are appended.
    pub release_command: Vec<String>,
    /// Most files given to one command.
    pub files_per_command: usize,
    /// Tape drives the site's stager may use for this archive: the recall scheduler runs this many
    /// volume batches (stage commands) at once.
    pub drives: usize,
    /// Catalog connections kept open.
    pub pool_size: u32,
    /// A catalog query (including waiting for a connection) that takes longer fails with 503.
    pub query_timeout_secs: u64,
    /// How long a stage, archive or release may take to show in the catalog before the file is
    /// reported failed.
    pub wait_timeout_secs: u64,
    /// How often the catalog is asked whether commanded work is done.
    pub poll_interval_ms: u64,
}

impl Default for SidebandConfig {
    fn default() -> Self {
        SidebandConfig {
            url: String::new(),
            host: String::new(),
            port: 3306,
            user: String::new(),
            password: String::new(),
            password_file: None,
            schema: String::new(),
            sam_qfs_prefix: String::new(),
            stage_command: vec!["stage".into()],
            archive_command: vec!["archive".into()],
            release_command: vec!["release".into()],
            files_per_command: 1000,
            drives: 1,
            pool_size: 8,
            query_timeout_secs: 10,
            wait_timeout_secs: 4 * 3600,
            poll_interval_ms: 1000,
        }
    }
}

/// A setting that cannot work, naming its key.
#[derive(Debug, thiserror::Error)]
#[error("key `hsm_sideband.{key}`: {problem}")]
pub struct ConfigError {
    /// The key, below `[hsm_sideband]`.
    pub key: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn bad(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        problem: problem.into(),
    }
}

impl SidebandConfig {
    /// Checks every setting that does not need the database (blocking: reads `password_file`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.connect_options()?;
        let prefix = &self.sam_qfs_prefix;
        if !prefix.starts_with('/') || prefix.split('/').any(|s| s == "." || s == "..") {
            return Err(bad(
                "sam_qfs_prefix",
                format!(
                    "{prefix:?} must be the archive directory relative to the SAM-QFS mount point, \
                     starting with `/` (for example \"/archive\")"
                ),
            ));
        }
        for (key, argv) in [
            ("stage_command", &self.stage_command),
            ("archive_command", &self.archive_command),
            ("release_command", &self.release_command),
        ] {
            if argv.first().is_none_or(|program| program.is_empty()) {
                return Err(bad(key, "must name a program (a list like [\"stage\"])"));
            }
        }
        for (key, value) in [
            ("files_per_command", self.files_per_command as u64),
            ("drives", self.drives as u64),
            ("pool_size", u64::from(self.pool_size)),
            ("query_timeout_secs", self.query_timeout_secs),
            ("wait_timeout_secs", self.wait_timeout_secs),
            ("poll_interval_ms", self.poll_interval_ms),
        ] {
            if value == 0 {
                return Err(bad(key, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// The catalog's directory path for the archive directory: `sam_qfs_prefix` with one trailing `/`.
    pub(crate) fn catalog_root(&self) -> String {
        format!("{}/", self.sam_qfs_prefix.trim_end_matches('/'))
    }

    /// See `query_timeout_secs`.
    pub fn query_timeout(&self) -> Duration {
        Duration::from_secs(self.query_timeout_secs)
    }

    /// How to connect to the catalog, from `url` or from the reference's separate keys, with the
    /// password from `password_file` when given (blocking).
    pub fn connect_options(&self) -> Result<MySqlConnectOptions, ConfigError> {
        let mut options = if !self.url.is_empty() {
            let separate = [
                ("host", self.host.is_empty()),
                ("user", self.user.is_empty()),
                ("password", self.password.is_empty()),
                ("schema", self.schema.is_empty()),
            ];
            if let Some((key, _)) = separate.iter().find(|(_, empty)| !empty) {
                return Err(bad(
                    "url",
                    format!("give either `url` or `{key}` (and the other separate keys), not both"),
                ));
            }
            if !self.url.starts_with("mysql://") && !self.url.starts_with("mariadb://") {
                return Err(bad(
                    "url",
                    "must start with mysql:// (mysql://user:password@host:3306/schema)",
                ));
            }
            let options = MySqlConnectOptions::from_str(&self.url)
                .map_err(|e| bad("url", format!("is not a MySQL URL: {e}")))?;
            if options.get_database().is_none_or(str::is_empty) {
                return Err(bad(
                    "url",
                    "names no database (mysql://user:password@host:3306/schema)",
                ));
            }
            options
        } else {
            if self.host.is_empty() {
                return Err(bad(
                    "host",
                    "the catalog database is not configured: set `url`, or `host`, `user` and `schema`",
                ));
            }
            if self.schema.is_empty() {
                return Err(bad("schema", "must name the sideband database"));
            }
            let mut options = MySqlConnectOptions::new()
                .host(&self.host)
                .port(self.port)
                .database(&self.schema);
            if !self.user.is_empty() {
                options = options.username(&self.user);
            }
            if !self.password.is_empty() {
                options = options.password(&self.password);
            }
            options
        };
        if let Some(file) = &self.password_file {
            if !self.password.is_empty() {
                return Err(bad(
                    "password_file",
                    "give either `password` or `password_file`",
                ));
            }
            let text = std::fs::read_to_string(file).map_err(|e| {
                bad(
                    "password_file",
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            options = options.password(text.lines().next().unwrap_or_default());
        }
        Ok(options)
    }

    /// `host:port` of the catalog, for messages (never the password).
    pub fn database_host(&self) -> String {
        match self.connect_options() {
            Ok(o) => format!("{}:{}", o.get_host(), o.get_port()),
            Err(_) => format!("{}:{}", self.host, self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> SidebandConfig {
        SidebandConfig {
            host: "db.example.org".into(),
            user: "samdb".into(),
            password: "secret".into(),
            schema: "samfs1".into(),
            sam_qfs_prefix: "/archive".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_reference_keys_make_a_connection() {
        let c = reference();
        c.validate().unwrap();
        let o = c.connect_options().unwrap();
        assert_eq!(o.get_host(), "db.example.org");
        assert_eq!(o.get_port(), 3306);
        assert_eq!(o.get_database(), Some("samfs1"));
        assert_eq!(c.database_host(), "db.example.org:3306");
        assert_eq!(c.catalog_root(), "/archive/");
    }

    #[test]
    fn a_url_alone_works_and_mixing_is_refused() {
        let c = SidebandConfig {
            url: "mysql://u:p@db2:3307/samfs2".into(),
            sam_qfs_prefix: "/a/".into(),
            ..Default::default()
        };
        c.validate().unwrap();
        assert_eq!(c.database_host(), "db2:3307");
        assert_eq!(c.catalog_root(), "/a/");
        let mixed = SidebandConfig {
            host: "x".into(),
            ..c.clone()
        };
        assert!(mixed
            .validate()
            .unwrap_err()
            .to_string()
            .contains("hsm_sideband.url"));
        let no_db = SidebandConfig {
            url: "mysql://u@db2".into(),
            ..c
        };
        assert!(no_db
            .validate()
            .unwrap_err()
            .to_string()
            .contains("database"));
    }

    #[test]
    fn bad_settings_name_their_key() {
        type Change = fn(&mut SidebandConfig);
        let cases: [(Change, &str); 5] = [
            (|c| c.sam_qfs_prefix = "archive".into(), "sam_qfs_prefix"),
            (|c| c.sam_qfs_prefix = "/a/../b".into(), "sam_qfs_prefix"),
            (|c| c.stage_command = vec![], "stage_command"),
            (|c| c.pool_size = 0, "pool_size"),
            (|c| c.host = String::new(), "hsm_sideband.host"),
        ];
        for (change, key) in cases {
            let mut c = reference();
            change(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn the_password_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let c = SidebandConfig {
            password: String::new(),
            password_file: Some(file.clone()),
            ..reference()
        };
        c.validate().unwrap();
        let missing = SidebandConfig {
            password_file: Some(dir.path().join("nope")),
            ..c
        };
        assert!(missing
            .validate()
            .unwrap_err()
            .to_string()
            .contains("password_file"));
    }
}
