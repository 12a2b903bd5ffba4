//! "The backend has a tape tier" is the backend's declared capability: with it, every recall (GET of a
//! migrated file, POST stage) goes through the recall scheduler even when the backend cannot tell tape
//! positions; without it, every HLM route answers 501.

mod common;

use archive_core::{
    ArchiveBackend, ByteStream, Capabilities, Error, FileStatus, GetResult, HsmState, Key,
    KeyOutcome, ListEntry, PutOptions, PutOutcome, ReadRange,
};
use archiveinterface::{app, AppState};
use axum::body::Body;
use axum::http::Request;
use common::{read, settings, test_app};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tower::ServiceExt;

#[tokio::test]
async fn every_hlm_route_answers_501_without_a_tape_tier() {
    let app = test_app(|_, _| {});
    let routes = [
        ("POST", "/hlm/v1/recall/AUTH_test/c", ""),
        ("POST", "/hlm/v1/migrate/AUTH_test/c/o", ""),
        ("GET", "/hlm/v1/status/AUTH_test/c", ""),
        ("GET", "/hlm/v1/requests/AUTH_test/c", ""),
        ("POST", "/hlm/v1/recall", r#"{"ids": [1]}"#),
        ("GET", "/hlm/v1/request/1", ""),
    ];
    for (method, uri, body) in routes {
        let (status, _, body) = app.call(method, uri, body.to_string()).await;
        assert_eq!(status, 501, "{method} {uri}");
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let message = doc["message"].as_str().unwrap();
        assert!(
            message.contains("posix backend has no tape tier"),
            "{method} {uri}: {message}"
        );
    }
    let (status, _, _) = app.call("HEAD", "/hlm/v1/request/1", "").await;
    assert_eq!(status, 501);
}

/// A tape-tier backend that cannot tell tape positions (`placement` unsupported): files are kept in
/// memory, marked migrated or not; `recall` brings them back and counts its calls.
#[derive(Debug, Default)]
struct NoPlacement {
    files: Mutex<HashMap<String, (Vec<u8>, bool)>>,
    recalls: Mutex<Vec<Vec<String>>>,
}

impl NoPlacement {
    fn with_migrated(ids: &[&str]) -> Self {
        let b = NoPlacement::default();
        for id in ids {
            b.files
                .lock()
                .unwrap()
                .insert(id.to_string(), (format!("data of {id}").into_bytes(), true));
        }
        b
    }

    fn file(&self, key: &Key) -> archive_core::Result<(Vec<u8>, bool)> {
        self.files
            .lock()
            .unwrap()
            .get(key.as_str())
            .cloned()
            .ok_or_else(|| Error::NotFound {
                key: key.to_string(),
            })
    }
}

fn status_of(data: &[u8], migrated: bool) -> FileStatus {
    let size = data.len() as u64;
    FileStatus {
        size,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        state: if migrated {
            HsmState::Migrated
        } else {
            HsmState::Premigrated
        },
        bytes_per_level: vec![if migrated { 0 } else { size }, size],
        location: String::new(),
    }
}

#[async_trait::async_trait]
impl ArchiveBackend for NoPlacement {
    fn name(&self) -> &'static str {
        "no-placement"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tape_tier: true,
            shared_by_processes: false,
        }
    }
    async fn put(&self, _: &Key, _: ByteStream, _: PutOptions) -> archive_core::Result<PutOutcome> {
        Err(self.unsupported("put"))
    }
    async fn get(&self, key: &Key, range: ReadRange) -> archive_core::Result<GetResult> {
        let (data, migrated) = self.file(key)?;
        if migrated {
            return Err(Error::NotResident {
                key: key.to_string(),
            });
        }
        let range = range.resolve(data.len() as u64);
        let chunk = bytes::Bytes::copy_from_slice(&data[range.start as usize..range.end as usize]);
        Ok(GetResult {
            status: status_of(&data, false),
            range,
            stream: Box::pin(futures::stream::iter([Ok(chunk)])),
        })
    }
    async fn status(&self, key: &Key) -> archive_core::Result<FileStatus> {
        let (data, migrated) = self.file(key)?;
        Ok(status_of(&data, migrated))
    }
    async fn stage(&self, key: &Key) -> archive_core::Result<()> {
        self.file(key).map(drop)
    }
    async fn adopt(&self, _: &Key, _: &std::path::Path, _: bool) -> archive_core::Result<()> {
        Err(self.unsupported("adopt"))
    }
    async fn delete(&self, _: &Key) -> archive_core::Result<()> {
        Err(self.unsupported("delete"))
    }
    async fn list(&self, _: &str) -> archive_core::Result<Vec<ListEntry>> {
        Ok(Vec::new())
    }
    async fn recall(&self, keys: &[Key]) -> archive_core::Result<Vec<KeyOutcome<()>>> {
        self.recalls
            .lock()
            .unwrap()
            .push(keys.iter().map(|k| k.to_string()).collect());
        let mut files = self.files.lock().unwrap();
        Ok(keys
            .iter()
            .map(|k| {
                let outcome = match files.get_mut(k.as_str()) {
                    Some(file) => {
                        file.1 = false;
                        Ok(())
                    }
                    None => Err(Error::NotFound { key: k.to_string() }),
                };
                (k.clone(), outcome)
            })
            .collect())
    }
}

#[tokio::test]
async fn a_tape_tier_without_placement_still_recalls_through_the_scheduler() {
    let backend = Arc::new(NoPlacement::with_migrated(&["1", "2"]));
    let mut config = archiveinterface::config::Config::default();
    config.hsm.batch_window_secs = 0.0;
    let state = AppState::with_config(
        Arc::clone(&backend) as Arc<dyn ArchiveBackend>,
        settings(),
        config,
    );
    assert!(
        state.recalls.is_some(),
        "a tape tier gets a recall scheduler"
    );
    let router = app(state.clone());
    let call = |method: &str, uri: &str| {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let router = router.clone();
        async move { read(router.oneshot(request).await.unwrap()).await }
    };

    // GET of a migrated file: recalled through the scheduler, then served.
    let (status, _, body) = call("GET", "/1").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, b"data of 1");

    // POST stage: accepted at once, recalled in the background through the scheduler.
    let (status, _, _) = call("POST", "/2").await;
    assert_eq!(status, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while backend.file(&Key::new("2").unwrap()).unwrap().1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "file 2 was never recalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *backend.recalls.lock().unwrap(),
        [vec!["1".to_string()], vec!["2".to_string()]]
    );
    state.shutdown_recalls().await;
}
