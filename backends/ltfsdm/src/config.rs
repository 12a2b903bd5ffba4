//! `LtfsdmConfig`: the `[ltfsdm]` section of the server configuration, its defaults and its validation.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How the server drives LTFS Data Management. The managed file system itself is the server's prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LtfsdmConfig {
    /// The `ltfsdm` client: a bare name is looked up on `PATH`, or an absolute path.
    pub binary: PathBuf,
    /// Tape storage pools a migration writes to, one copy per pool (1 to 3 names). Needed to migrate a
    /// resident file; empty only for a server that recalls and reports state.
    pub pools: Vec<String>,
    /// Argv put before the binary, e.g. `["sudo", "-n"]`: `ltfsdm migrate` and `recall` must run as
    /// root. Never a shell: every argument is passed as it is.
    pub command_prefix: Vec<String>,
    /// Seconds one `ltfsdm` command may run before it is killed and its files' state is asked anew.
    pub timeout_secs: u64,
    /// Most files named in one `ltfsdm` command (larger operations are split into several commands).
    pub batch_files: usize,
    /// Recall to resident (`ltfsdm recall -r`: the tape copies are dropped) instead of premigrated
    /// (the default: the file can be released again without writing tape).
    pub recall_to_resident: bool,
    /// Recall commands run at once (each for the files of one tape); set it to the library's drive
    /// count, so that tapes are read in parallel without queueing behind each other in ltfsdmd.
    pub drives: usize,
    /// Directory for the file lists handed to `ltfsdm -f` (private files, removed after each command).
    /// Default: the system temporary directory.
    pub list_dir: Option<PathBuf>,
}

impl Default for LtfsdmConfig {
    fn default() -> Self {
        LtfsdmConfig {
            binary: PathBuf::from("ltfsdm"),
            pools: Vec::new(),
            command_prefix: Vec::new(),
            // A batch of a thousand files may wait for a mount and then write a whole tape's worth.
            timeout_secs: 4 * 3600,
            batch_files: 1000,
            recall_to_resident: false,
            drives: 2,
            list_dir: None,
        }
    }
}

/// A configuration value that cannot work, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid ltfsdm.{field}: {message}")]
pub struct ConfigError {
    /// The key under `[ltfsdm]`.
    pub field: &'static str,
    /// What is wrong with its value.
    pub message: String,
}

impl LtfsdmConfig {
    /// Checks every value that `ltfsdm` itself would only refuse later, command by command.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, message: String| Err(ConfigError { field, message });
        if self.binary.as_os_str().is_empty() {
            return bad("binary", "must not be empty".into());
        }
        if self.pools.len() > 3 {
            return bad(
                "pools",
                format!(
                    "{:?}: LTFS DM writes at most 3 copies, one per pool; name 1 to 3 pools",
                    self.pools
                ),
            );
        }
        for pool in &self.pools {
            if pool.is_empty() || pool.contains(',') || pool.chars().any(char::is_whitespace) {
                return bad(
                    "pools",
                    format!("{pool:?} is not a pool name (no commas, no spaces, not empty)"),
                );
            }
        }
        if self.command_prefix.iter().any(String::is_empty) {
            return bad(
                "command_prefix",
                format!("{:?} holds an empty argument", self.command_prefix),
            );
        }
        if self.timeout_secs == 0 {
            return bad("timeout_secs", "must be at least 1".into());
        }
        if self.batch_files == 0 {
            return bad("batch_files", "must be at least 1".into());
        }
        if self.drives == 0 {
            return bad("drives", "must be at least 1".into());
        }
        Ok(())
    }

    /// The `-P` argument: the pools comma-joined, as `ltfsdm migrate` expects them.
    pub(crate) fn pool_list(&self) -> Option<String> {
        (!self.pools.is_empty()).then(|| self.pools.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_checked_like_ltfsdm_checks_them() {
        let with = |pools: &[&str]| LtfsdmConfig {
            pools: pools.iter().map(|p| p.to_string()).collect(),
            ..LtfsdmConfig::default()
        };
        assert!(with(&[]).validate().is_ok());
        assert!(with(&["a", "b", "c"]).validate().is_ok());
        assert_eq!(with(&["a", "b"]).pool_list().as_deref(), Some("a,b"));
        for bad in [&["a", "b", "c", "d"][..], &["a,b"], &["a b"], &[""]] {
            let e = with(bad).validate().unwrap_err();
            assert_eq!(e.field, "pools", "{bad:?}");
        }
        let zero = LtfsdmConfig {
            batch_files: 0,
            ..LtfsdmConfig::default()
        };
        assert_eq!(zero.validate().unwrap_err().field, "batch_files");
    }
}
