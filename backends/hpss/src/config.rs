//! `[hpss]`: where the client library is, who logs in, and the core-server latency limit. The keys of
//! the reference's INI section (`user`, `auth`, `sitename`, `accept_latency`) read as they are.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The HPSS backend's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HpssConfig {
    /// The HPSS client library, loaded at start-up.
    pub library: PathBuf,
    /// Principal to log in as (unix mechanism, keytab authentication).
    pub user: String,
    /// The keytab file of `user`.
    pub auth: PathBuf,
    /// Site whose root core server is pinged before status and stage calls.
    pub sitename: String,
    /// A core server further than this many seconds off (latency plus clock skew, measured as the
    /// reference does) answers 503.
    // Not written out with the defaults: the reference's `accept_latency` from an INI file must not
    // meet a default `accept_latency_secs` as a duplicate when the sources are merged.
    #[serde(alias = "accept_latency", skip_serializing)]
    pub accept_latency_secs: u64,
    /// Milliseconds between two polls of a running stage.
    pub stage_poll_ms: u64,
    /// Files per batch stage request (HPSS 9.3+).
    pub stage_batch: usize,
    /// Give up on a stage after this many seconds.
    pub stage_timeout_secs: u64,
}

impl Default for HpssConfig {
    fn default() -> Self {
        HpssConfig {
            library: PathBuf::from("/opt/hpss/lib/libhpss.so"),
            user: "hpss.unix".into(),
            auth: PathBuf::from("/var/hpss/etc/hpss.unix.keytab"),
            sitename: "example.com".into(),
            accept_latency_secs: 5,
            stage_poll_ms: 1000,
            stage_batch: 100,
            stage_timeout_secs: 24 * 3600,
        }
    }
}

impl HpssConfig {
    /// Checks the values that cannot work, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.user.is_empty() {
            return Err("key `hpss.user` = \"\": must name the principal to log in as".into());
        }
        if self.stage_batch == 0 || self.stage_batch > 100_000 {
            return Err(format!(
                "key `hpss.stage_batch` = {}: must be between 1 and 100000",
                self.stage_batch
            ));
        }
        if self.stage_poll_ms == 0 {
            return Err("key `hpss.stage_poll_ms` = 0: must be at least 1".into());
        }
        Ok(())
    }
}
