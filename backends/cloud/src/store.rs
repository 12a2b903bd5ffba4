//! One remote store: opened from its `[cloud.stores.<name>]` settings (credentials from the settings,
//! a credentials file or the provider's usual environment variables), checked for reachability at
//! start-up, and the mapping of archive keys to object paths below the store's prefix.

use crate::config::StoreConfig;
use crate::error::Error;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// An opened remote store.
#[derive(Debug)]
pub struct RemoteStore {
    /// The store's name in the configuration.
    pub name: String,
    /// The configured URL, for messages and `X-Pacifica-File`.
    pub url: String,
    /// The client.
    pub store: Arc<dyn ObjectStore>,
    /// Where the archive's objects live inside the bucket.
    pub prefix: ObjectPath,
    /// Bytes per multipart part; smaller files go in one request.
    pub part_size: usize,
}

impl RemoteStore {
    /// Opens the store `name` (no network traffic yet; see [`RemoteStore::check_reachable`]).
    pub fn open(name: &str, config: &StoreConfig) -> Result<RemoteStore, Error> {
        let invalid = |problem: String| Error::StoreConfig {
            store: name.to_string(),
            problem,
        };
        let url = url::Url::parse(&config.url)
            .map_err(|e| invalid(format!("`{}` is not a URL: {e}", config.url)))?;
        let mut options = BTreeMap::new();
        if let Some(file) = &config.credentials_file {
            options.extend(read_credentials_file(file).map_err(invalid)?);
        }
        options.extend(config.options.clone());
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(15),
                base: 2.0,
            },
            max_retries: config.max_retries,
            retry_timeout: Duration::from_secs(config.retry_timeout_secs),
        };
        let client = ClientOptions::new()
            .with_allow_http(config.allow_http)
            .with_timeout(Duration::from_secs(config.request_timeout_secs))
            .with_connect_timeout(Duration::from_secs(config.connect_timeout_secs));
        let unknown = |key: &str, e: object_store::Error| {
            invalid(format!(
                "option `{key}` is not known for this kind of store: {e}"
            ))
        };
        let (store, prefix): (Arc<dyn ObjectStore>, &str) = match url.scheme() {
            "s3" | "s3a" => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_url(config.url.as_str())
                    .with_retry(retry)
                    .with_client_options(client);
                if !config.endpoint.is_empty() {
                    builder = builder.with_endpoint(&config.endpoint);
                }
                if !config.region.is_empty() {
                    builder = builder.with_region(&config.region);
                }
                if !config.access_key_id.is_empty() {
                    builder = builder
                        .with_access_key_id(&config.access_key_id)
                        .with_secret_access_key(&config.secret_access_key);
                }
                for (key, value) in &options {
                    let parsed: AmazonS3ConfigKey = key.parse().map_err(|e| unknown(key, e))?;
                    builder = builder.with_config(parsed, value);
                }
                let store = builder.build().map_err(|e| invalid(e.to_string()))?;
                (Arc::new(store), url.path())
            }
            "gs" => {
                let mut builder = GoogleCloudStorageBuilder::from_env()
                    .with_url(config.url.as_str())
                    .with_retry(retry)
                    .with_client_options(client);
                for (key, value) in &options {
                    let parsed: GoogleConfigKey = key.parse().map_err(|e| unknown(key, e))?;
                    builder = builder.with_config(parsed, value);
                }
                let store = builder.build().map_err(|e| invalid(e.to_string()))?;
                (Arc::new(store), url.path())
            }
            "az" | "azure" | "abfs" | "abfss" | "adl" | "https" => {
                let mut builder = MicrosoftAzureBuilder::from_env()
                    .with_url(config.url.as_str())
                    .with_retry(retry)
                    .with_client_options(client);
                if !config.endpoint.is_empty() {
                    builder = builder.with_endpoint(config.endpoint.clone());
                }
                for (key, value) in &options {
                    let parsed: AzureConfigKey = key.parse().map_err(|e| unknown(key, e))?;
                    builder = builder.with_config(parsed, value);
                }
                let store = builder.build().map_err(|e| invalid(e.to_string()))?;
                // `https://account.blob.core.windows.net/container/prefix`: the first segment is the
                // container, the rest the prefix.
                let path = if url.scheme() == "https" {
                    url.path()
                        .trim_start_matches('/')
                        .split_once('/')
                        .map(|(_, rest)| rest)
                        .unwrap_or("")
                } else {
                    url.path()
                };
                (Arc::new(store), path)
            }
            "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|()| invalid(format!("`{}` is not a local directory", config.url)))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| invalid(format!("cannot create {}: {e}", dir.display())))?;
                let store =
                    LocalFileSystem::new_with_prefix(&dir).map_err(|e| invalid(e.to_string()))?;
                (Arc::new(store), "")
            }
            other => {
                return Err(invalid(format!(
                    "unsupported scheme `{other}:` (s3, gs, az/abfs/https for Azure, file)"
                )))
            }
        };
        let prefix = ObjectPath::parse(prefix.trim_matches('/'))
            .map_err(|e| invalid(format!("bad prefix in `{}`: {e}", config.url)))?;
        Ok(RemoteStore {
            name: name.to_string(),
            url: config.url.clone(),
            store,
            prefix,
            part_size: config.part_size_mib * 1024 * 1024,
        })
    }

    /// Lists the prefix once: a missing bucket, wrong credentials or an unreachable endpoint fail
    /// here, at start-up, naming the store.
    pub async fn check_reachable(&self) -> Result<(), Error> {
        self.store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map(|_| ())
            .map_err(|source| Error::Unreachable {
                store: self.name.clone(),
                url: self.url.clone(),
                source: Box::new(source),
            })
    }

    /// The object path of an archive key.
    pub fn path_of(&self, key: &str) -> ObjectPath {
        let mut path = self.prefix.clone();
        for part in key.split('/') {
            path = path.child(part);
        }
        path
    }

    /// The archive key of an object path below the prefix (`None` for anything else).
    pub fn key_of(&self, path: &ObjectPath) -> Option<String> {
        let parts: Vec<String> = path
            .prefix_match(&self.prefix)?
            .map(|p| p.as_ref().to_string())
            .collect();
        (!parts.is_empty()).then(|| parts.join("/"))
    }

    /// Where an object lives, for operators: the store URL and the key.
    pub fn location_of(&self, key: &str) -> String {
        format!("{}/{key}", self.url.trim_end_matches('/'))
    }
}

/// `key = value` lines; `#` starts a comment line.
fn read_credentials_file(file: &std::path::Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read credentials_file {}: {e}", file.display()))?;
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| {
            format!(
                "credentials_file {} line {}: expected `key = value`",
                file.display(),
                n + 1
            )
        })?;
        out.insert(
            key.trim().to_string(),
            value.trim().trim_matches('"').to_string(),
        );
    }
    Ok(out)
}
