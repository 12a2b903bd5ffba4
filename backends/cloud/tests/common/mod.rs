//! What the cloud tier's tests share: the loopback S3 server started by `scripts/test.sh` (moto in
//! server mode), a fresh bucket per test, and a cloud backend over a fresh posix prefix.

#![allow(dead_code, unreachable_pub)]

use archive_cloud::{CloudBackend, CloudConfig, KeySpace, PolicyConfig, StoreConfig};
use archive_core::{ArchiveBackend, ByteStream, Key, ReadRange};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// The S3 endpoint, or a panic saying how to get one.
pub fn s3_endpoint() -> String {
    let how = "start a loopback S3 server and export its URL, e.g. \
               `python3 -m venv .venv && .venv/bin/pip install 'moto[server]' && \
               .venv/bin/moto_server -H 127.0.0.1 -p 19000 & export \
               ARCHIVEINTERFACE_TEST_S3_URL=http://127.0.0.1:19000` (scripts/test.sh does this)";
    let url = std::env::var("ARCHIVEINTERFACE_TEST_S3_URL")
        .unwrap_or_else(|_| panic!("ARCHIVEINTERFACE_TEST_S3_URL is not set: {how}"));
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    std::net::TcpStream::connect(address)
        .unwrap_or_else(|e| panic!("the S3 server at {url} is not reachable ({e}): {how}"));
    url
}

/// Sends one request to the S3 server (moto accepts unsigned requests for bucket management).
fn raw_request(method: &str, path: &str) -> String {
    let endpoint = s3_endpoint();
    let address = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the S3 server");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    answer
}

/// A new, empty bucket with a name no other test (or test run) uses.
pub fn new_bucket(label: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!(
        "{label}-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
    .to_ascii_lowercase();
    let answer = raw_request("PUT", &format!("/{name}"));
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "creating bucket {name}: {answer}"
    );
    name
}

/// A store on the loopback S3 server: fast retries so that failure tests stay quick.
pub fn s3_store(bucket: &str) -> StoreConfig {
    StoreConfig {
        url: format!("s3://{bucket}/archive"),
        endpoint: s3_endpoint(),
        region: "us-east-1".into(),
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
        allow_http: true,
        part_size_mib: 5,
        retry_timeout_secs: 2,
        max_retries: 1,
        connect_timeout_secs: 2,
        ..StoreConfig::default()
    }
}

/// A policy selecting every key for `store`.
pub fn everything(store: &str) -> PolicyConfig {
    PolicyConfig {
        store: store.into(),
        key_prefix: Some(String::new()),
        propagate_delete: true,
        ..PolicyConfig::default()
    }
}

/// The key space of a server with default settings.
pub fn key_space() -> KeySpace {
    KeySpace {
        swift_root: ".swift".into(),
        use_id2filename: true,
    }
}

/// A cloud backend over a fresh posix prefix, and the directory that holds the prefix.
pub struct Tier {
    pub backend: Arc<CloudBackend>,
    pub dir: tempfile::TempDir,
    pub config: CloudConfig,
}

impl Tier {
    /// Opens a tier with one store named `s3` and `policies`.
    pub async fn new(store: StoreConfig, policies: Vec<PolicyConfig>) -> Tier {
        let dir = tempfile::tempdir().unwrap();
        let config = CloudConfig {
            stores: [("s3".to_string(), store)].into(),
            policies,
            ..CloudConfig::default()
        };
        config.validate().expect("valid test configuration");
        let backend = open(dir.path(), &config).await;
        Tier {
            backend: Arc::new(backend),
            dir,
            config,
        }
    }

    /// Another backend on the same prefix and stores (a restarted server).
    pub async fn reopen(&self) -> CloudBackend {
        open(self.dir.path(), &self.config).await
    }

    /// The local path of `key`.
    pub fn local_path(&self, key: &str) -> std::path::PathBuf {
        self.dir.path().join("prefix").join(key)
    }
}

async fn open(dir: &std::path::Path, config: &CloudConfig) -> CloudBackend {
    let local = archive_posix::PosixBackend::new(dir.join("prefix")).expect("posix backend");
    CloudBackend::open(Arc::new(local), config, key_space())
        .await
        .expect("open the cloud tier")
}

pub fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

pub fn body(data: &[u8]) -> ByteStream {
    let chunks: Vec<std::io::Result<Bytes>> = data
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(chunks).boxed()
}

pub async fn read(backend: &dyn ArchiveBackend, key: &Key, range: ReadRange) -> Vec<u8> {
    let got = backend.get(key, range).await.expect("get");
    let chunks: Vec<Bytes> = got.stream.try_collect().await.expect("read");
    chunks.concat()
}

/// Deterministic bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    archive_core::conformance::pattern(len, seed)
}
