//! Helpers shared by the router tests: an app over a fresh posix archive, requests, bodies; `server`
//! runs the real binary.
#![allow(dead_code, unreachable_pub)]

pub mod server;

use archive_core::ArchiveBackend;
use archiveinterface::{app, AppState, Settings};
use axum::body::Body;
use axum::http::{Request, Response};
use http_body_util::BodyExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

pub struct TestApp {
    pub router: axum::Router,
    pub prefix: PathBuf,
    pub scratch: PathBuf,
    pub dir: tempfile::TempDir,
}

pub fn settings() -> Settings {
    Settings {
        use_id2filename: false,
        allow_overwrite: false,
        patch_source_dirs: Vec::new(),
        body_idle_timeout: Duration::from_secs(5),
        get_wait: Duration::from_secs(5),
    }
}

pub fn test_app(tweak: impl FnOnce(&mut Settings, &std::path::Path)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let scratch = std::fs::canonicalize(&scratch).unwrap();
    let backend: Arc<dyn ArchiveBackend> =
        Arc::new(archive_posix::PosixBackend::new(&prefix).unwrap());
    let mut s = settings();
    tweak(&mut s, &scratch);
    TestApp {
        router: app(AppState::new(backend, s)),
        prefix,
        scratch,
        dir,
    }
}

impl TestApp {
    pub async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.router.clone().oneshot(request).await.unwrap()
    }

    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        body: impl Into<Body>,
    ) -> (u16, axum::http::HeaderMap, Vec<u8>) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(body.into())
            .unwrap();
        read(self.send(request).await).await
    }

    pub async fn put(&self, id: &str, data: &[u8]) -> u16 {
        self.call("PUT", &format!("/{id}"), data.to_vec()).await.0
    }
}

pub async fn read(response: Response<Body>) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

pub fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// Asserts the reference's error body shape and returns it.
pub fn error_body(body: &[u8], status: u16) -> serde_json::Value {
    let v = json(body);
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, ["message", "status", "traceback", "version"], "{v}");
    assert!(
        v["status"]
            .as_str()
            .unwrap()
            .starts_with(&status.to_string()),
        "{v}"
    );
    v
}

/// The entries directly under an archive prefix, without the registry of the processes using it.
pub fn archive_entries(prefix: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(prefix)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != archive_posix::INSTANCES_DIR)
        .map(|e| e.path())
        .collect()
}
