//! `[cloud]`: the named remote stores and the policies that select what goes to them, as read from
//! the configuration file, with the checks that need no network (the reachability check is in
//! `store`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The cloud tier's settings. Empty (no stores): the tier is off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudConfig {
    /// Remote stores by name (`[cloud.stores.<name>]`).
    pub stores: BTreeMap<String, StoreConfig>,
    /// What goes where, first match wins (`[[cloud.policies]]`).
    pub policies: Vec<PolicyConfig>,
    /// Seconds between two scans of the local files for copies and archives that are due.
    pub scan_interval_secs: u64,
}

/// One remote store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Where objects go: `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`
    /// (also `abfs://`, `https://account.blob.core.windows.net/container`) or `file:///directory`.
    pub url: String,
    /// S3-compatible endpoint (MinIO, Ceph RGW, ...): `http://host:9000`. Empty: the provider's own.
    pub endpoint: String,
    /// S3 region. Empty: from `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: String,
    /// S3 access key id. Empty: from the file, the options or the environment (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// S3 secret access key.
    pub secret_access_key: String,
    /// A file of `key = value` lines with further store options (credentials kept out of the main
    /// configuration), same keys as `options`.
    pub credentials_file: Option<PathBuf>,
    /// Further `object_store` options by name (`aws_virtual_hosted_style_request`,
    /// `google_service_account`, `azure_storage_account_key`, ...). Applied after the environment.
    pub options: BTreeMap<String, String>,
    /// Allow plain `http://` endpoints (loopback test servers, a MinIO on a private network).
    pub allow_http: bool,
    /// Size of each part of a multipart upload, in MiB; files up to this size go in one request.
    pub part_size_mib: usize,
    /// Longest a request to the store is retried (with backoff) before it fails, in seconds.
    pub retry_timeout_secs: u64,
    /// Retries of one request to the store.
    pub max_retries: usize,
    /// Timeout of one request to the store, in seconds (a 1 GiB part upload needs time).
    pub request_timeout_secs: u64,
    /// Timeout of connecting to the store, in seconds.
    pub connect_timeout_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: String::new(),
            endpoint: String::new(),
            region: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            credentials_file: None,
            options: BTreeMap::new(),
            allow_http: false,
            part_size_mib: 8,
            retry_timeout_secs: 60,
            max_retries: 5,
            request_timeout_secs: 300,
            connect_timeout_secs: 5,
        }
    }
}

/// One policy: which files, which store, and when.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The store (a name under `[cloud.stores]`).
    pub store: String,
    /// Swift account whose objects this policy selects (with `container`: only that container).
    pub account: Option<String>,
    /// Swift container (needs `account`).
    pub container: Option<String>,
    /// Pacifica ids this policy selects: `[first, last]`, both included.
    pub ids: Option<[i64; 2]>,
    /// Keys (paths below the prefix) starting with this string, whatever API stored them; `""`
    /// selects everything.
    pub key_prefix: Option<String>,
    /// Copy a file this long after its last change; 0 = as soon as the next scan sees it.
    pub copy_after_secs: u64,
    /// Archive: drop the local copy this long after the remote copy was confirmed. Unset: keep it.
    pub retain_local_secs: Option<u64>,
    /// A local delete also deletes the remote copy.
    pub propagate_delete: bool,
    /// Files whose name (the last part of the key, the object name for Swift) matches this glob
    /// (`*` any run of characters, `?` one character) are left alone.
    pub exclude_pattern: Option<String>,
    /// A GET of a file that is only remote brings it back to local storage before serving it,
    /// instead of streaming it through.
    pub restore_on_read: bool,
}

/// A configuration that cannot work, with the key that is wrong.
#[derive(Debug, thiserror::Error)]
#[error("key `cloud.{key}`: {problem}")]
pub struct ConfigError {
    /// The key, below `cloud.`.
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
}

fn bad(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        problem: problem.into(),
    }
}

impl CloudConfig {
    /// Whether the tier is configured at all.
    pub fn is_enabled(&self) -> bool {
        !self.stores.is_empty()
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.stores.is_empty() && !self.policies.is_empty() {
            return Err(bad(
                "policies",
                "policies are set but no store is configured",
            ));
        }
        for (name, store) in &self.stores {
            let key = |field: &str| format!("stores.{name}.{field}");
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(bad(
                    format!("stores.{name}"),
                    "store names are letters, digits, `_` and `-`",
                ));
            }
            if store.url.is_empty() {
                return Err(bad(
                    key("url"),
                    "missing: the store's URL (s3://bucket/prefix, ...)",
                ));
            }
            url::Url::parse(&store.url)
                .map_err(|e| bad(key("url"), format!("`{}` is not a URL: {e}", store.url)))?;
            if store.part_size_mib < 5 {
                return Err(bad(
                    key("part_size_mib"),
                    "must be at least 5 (S3's smallest multipart part)",
                ));
            }
            if store.access_key_id.is_empty() != store.secret_access_key.is_empty() {
                return Err(bad(
                    key("secret_access_key"),
                    "access_key_id and secret_access_key go together",
                ));
            }
        }
        if self.is_enabled() && self.scan_interval_secs == 0 {
            return Err(bad("scan_interval_secs", "must be at least 1"));
        }
        for (i, policy) in self.policies.iter().enumerate() {
            let key = |field: &str| format!("policies[{i}].{field}");
            if !self.stores.contains_key(&policy.store) {
                return Err(bad(
                    key("store"),
                    format!("`{}` is not a store under [cloud.stores]", policy.store),
                ));
            }
            if policy.container.is_some() && policy.account.is_none() {
                return Err(bad(key("container"), "a container needs its account"));
            }
            if policy.account.is_none() && policy.ids.is_none() && policy.key_prefix.is_none() {
                return Err(bad(
                    key("account"),
                    "the policy selects nothing: set `account` (and `container`), `ids` or `key_prefix`",
                ));
            }
            if let Some([first, last]) = policy.ids {
                if first > last {
                    return Err(bad(key("ids"), format!("[{first}, {last}] is empty")));
                }
            }
        }
        Ok(())
    }
}

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            stores: BTreeMap::new(),
            policies: Vec::new(),
            scan_interval_secs: 30,
        }
    }
}
