//! Helpers shared by the tiered backend's integration tests.
#![allow(dead_code, unreachable_pub)]

use archive_core::conformance::{body_of, pattern};
use archive_core::{ArchiveBackend, HsmState, Key, PutOptions, ReadRange};
use archive_tiered::{TieredBackend, TieredConfig};
use futures::TryStreamExt;
use std::path::Path;

pub fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

/// A small library: 3 tapes of 10 MiB, 2 drives, no sleeping.
pub fn small_library() -> TieredConfig {
    TieredConfig {
        tapes: 3,
        tape_capacity_bytes: 10 << 20,
        drives: 2,
        ..Default::default()
    }
}

pub fn open(dir: &Path, config: TieredConfig) -> TieredBackend {
    TieredBackend::open(dir.join("archive"), config).expect("open")
}

pub async fn put(b: &TieredBackend, k: &str, data: &[u8]) {
    b.put(&key(k), body_of(vec![data.to_vec()]), PutOptions::default())
        .await
        .expect("put");
}

pub async fn read(b: &TieredBackend, k: &str) -> Vec<u8> {
    let got = b.get(&key(k), ReadRange::All).await.expect("get");
    let chunks: Vec<bytes::Bytes> = got.stream.try_collect().await.expect("stream");
    chunks.concat()
}

pub async fn state(b: &TieredBackend, k: &str) -> HsmState {
    b.status(&key(k)).await.expect("status").state
}

/// The test files: two small ones around a 3 MiB one (several read chunks, so a copy can be cut).
pub fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a", b"first small file".to_vec()),
        ("dir/big", pattern(3 * 1024 * 1024 + 11, 9)),
        ("c", b"third".to_vec()),
    ]
}

pub fn keys_of(files: &[(&str, Vec<u8>)]) -> Vec<Key> {
    files.iter().map(|(k, _)| key(k)).collect()
}
