//! The Swift index, in-process over a posix archive wrapped in a probe backend: racing PUTs of one
//! object leave data and record agreeing; listings, counts and object PUTs never list a container's
//! data; pages follow markers; a container DELETE racing a PUT strands no data; a PUT cut between
//! its data and its row is repaired at the next start; an existing prefix without an index gets one
//! built from its objects and old records; HLM `status` pages with `limit` and `marker`.

mod common;

use archive_core::{
    ArchiveBackend, ByteStream, FileStatus, GetResult, Key, ListEntry, PutOptions, PutOutcome,
    ReadRange,
};
use archiveinterface::config::{Config, SwiftUser};
use archiveinterface::{app, AppState, Settings};
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use common::{header, json, read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

/// A posix backend that counts whole listings, can hold PUTs before they store anything, and can
/// fail `status` of one key (the server "crashing" between a PUT's data and its row).
#[derive(Debug)]
struct Probe {
    disk: archive_posix::PosixBackend,
    lists: AtomicUsize,
    hold_puts: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    puts_waiting: tokio::sync::Notify,
    fail_status_of: Mutex<Option<String>>,
}

#[async_trait]
impl ArchiveBackend for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn capabilities(&self) -> archive_core::Capabilities {
        // Declared as an HSM backend would, so that the HLM routes answer (every file is resident).
        archive_core::Capabilities {
            tape_tier: true,
            ..self.disk.capabilities()
        }
    }
    async fn put(
        &self,
        key: &Key,
        body: ByteStream,
        options: PutOptions,
    ) -> archive_core::Result<PutOutcome> {
        let gate = self.hold_puts.lock().unwrap().clone();
        if let Some(gate) = gate {
            self.puts_waiting.notify_one();
            drop(gate.acquire().await.unwrap());
        }
        self.disk.put(key, body, options).await
    }
    async fn get(&self, key: &Key, range: ReadRange) -> archive_core::Result<GetResult> {
        self.disk.get(key, range).await
    }
    async fn status(&self, key: &Key) -> archive_core::Result<FileStatus> {
        if self.fail_status_of.lock().unwrap().as_deref() == Some(key.as_str()) {
            return Err(archive_core::Error::Unavailable {
                message: "the server stops here".into(),
                retry_after: None,
            });
        }
        self.disk.status(key).await
    }
    async fn stage(&self, key: &Key) -> archive_core::Result<()> {
        self.disk.stage(key).await
    }
    async fn adopt(&self, key: &Key, source: &Path, overwrite: bool) -> archive_core::Result<()> {
        self.disk.adopt(key, source, overwrite).await
    }
    async fn delete(&self, key: &Key) -> archive_core::Result<()> {
        self.disk.delete(key).await
    }
    async fn list(&self, prefix: &str) -> archive_core::Result<Vec<ListEntry>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.disk.list(prefix).await
    }
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> archive_core::Result<Vec<ListEntry>> {
        self.disk.list_page(prefix, after, limit).await
    }
}

struct Swift {
    router: axum::Router,
    backend: Arc<Probe>,
    prefix: PathBuf,
    token: String,
    _dir: Option<tempfile::TempDir>,
}

fn config(prefix: &Path) -> Config {
    let mut config = Config {
        prefix: prefix.to_path_buf(),
        ..Config::default()
    };
    config.swift.token_secret = "test secret".into();
    config.swift.users = vec![SwiftUser {
        account: "test".into(),
        user: "tester".into(),
        key: "testing".into(),
        reseller_admin: false,
    }];
    config
}

/// A server (a fresh process, as far as the index is concerned) over the archive at `prefix`.
async fn start(prefix: &Path, dir: Option<tempfile::TempDir>) -> Swift {
    let config = config(prefix);
    let backend = Arc::new(Probe {
        disk: archive_posix::PosixBackend::new(prefix).unwrap(),
        lists: AtomicUsize::new(0),
        hold_puts: Mutex::new(None),
        puts_waiting: tokio::sync::Notify::new(),
        fail_status_of: Mutex::new(None),
    });
    let settings = Settings::from_config(&config).unwrap();
    let state = AppState::with_config(backend.clone(), settings, config);
    let router = app(state);
    let (status, headers, _) = read(
        router
            .clone()
            .oneshot(
                Request::get("/auth/v1.0")
                    .header("x-auth-user", "test:tester")
                    .header("x-auth-key", "testing")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    Swift {
        router,
        backend,
        prefix: prefix.to_path_buf(),
        token: header(&headers, "x-auth-token").to_string(),
        _dir: dir,
    }
}

async fn fresh() -> Swift {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    start(&prefix, Some(dir)).await
}

type Reply = (u16, HeaderMap, Vec<u8>);

impl Swift {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-auth-token", &self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read(
            self.router
                .clone()
                .oneshot(request.body(body.into()).unwrap())
                .await
                .unwrap(),
        )
        .await
    }

    async fn put(&self, object: &str, body: &str, headers: &[(&str, &str)]) -> u16 {
        self.call(
            "PUT",
            &format!("/v1/AUTH_test/{object}"),
            headers,
            body.to_string(),
        )
        .await
        .0
    }

    async fn names(&self, uri: &str) -> Vec<String> {
        let (status, _, body) = self.call("GET", uri, &[], Body::empty()).await;
        assert!(status == 200 || status == 204, "{status}");
        String::from_utf8(body)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn lists(&self) -> usize {
        self.backend.lists.load(Ordering::SeqCst)
    }
}

fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_puts_of_one_object_leave_data_and_record_agreeing() {
    let s = Arc::new(fresh().await);
    assert_eq!(s.put("c", "", &[]).await, 201);
    for round in 0..3 {
        let puts: Vec<_> = (0..50)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    // Same length for every body: only the data's identity tells them apart.
                    let body = format!("round {round} body {i:03}");
                    let meta = format!("{i}");
                    let ctype = format!("text/x-{i}");
                    s.put(
                        "c/o",
                        &body,
                        &[("x-object-meta-writer", &meta), ("content-type", &ctype)],
                    )
                    .await
                })
            })
            .collect();
        for put in puts {
            assert_eq!(put.await.unwrap(), 201);
        }
        let (status, get_headers, data) = s.call("GET", "/v1/AUTH_test/c/o", &[], "").await;
        assert_eq!(status, 200);
        let text = String::from_utf8(data.clone()).unwrap();
        let writer: usize = text.rsplit(' ').next().unwrap().parse().unwrap();
        let (_, head, _) = s.call("HEAD", "/v1/AUTH_test/c/o", &[], "").await;
        for h in [&get_headers, &head] {
            assert_eq!(header(h, "etag"), md5_hex(&data), "round {round}: {text}");
            assert_eq!(header(h, "x-object-meta-writer"), writer.to_string());
            assert_eq!(header(h, "content-type"), format!("text/x-{writer}"));
        }
        let (_, _, listing) = s.call("GET", "/v1/AUTH_test/c?format=json", &[], "").await;
        let listing = json(&listing);
        assert_eq!(listing.as_array().unwrap().len(), 1);
        assert_eq!(listing[0]["hash"], md5_hex(&data));
        assert_eq!(listing[0]["content_type"], format!("text/x-{writer}"));
        assert_eq!(listing[0]["bytes"], data.len());
        let (_, head, _) = s.call("HEAD", "/v1/AUTH_test/c", &[], "").await;
        assert_eq!(header(&head, "x-container-object-count"), "1");
        assert_eq!(
            header(&head, "x-container-bytes-used"),
            data.len().to_string()
        );
    }
}

#[tokio::test]
async fn counts_listings_and_puts_never_list_the_data() {
    let s = fresh().await;
    assert_eq!(s.put("c", "", &[]).await, 201);
    // Opening the index looked for an earlier layout to build from; nothing lists after that.
    let at_open = s.lists();
    assert_eq!(s.put("d", "", &[]).await, 201);
    for i in 0..250 {
        assert_eq!(s.put(&format!("c/o{i:03}"), "abc", &[]).await, 201);
    }
    assert_eq!(s.put("c/o000", "abcdefgh", &[]).await, 201); // replaced: 5 more bytes
    assert_eq!(s.put("d/x", "12", &[]).await, 201);
    let (_, head, _) = s.call("HEAD", "/v1/AUTH_test/c", &[], "").await;
    assert_eq!(header(&head, "x-container-object-count"), "250");
    assert_eq!(header(&head, "x-container-bytes-used"), "755");
    let (_, head, _) = s.call("HEAD", "/v1/AUTH_test", &[], "").await;
    assert_eq!(header(&head, "x-account-container-count"), "2");
    assert_eq!(header(&head, "x-account-object-count"), "251");
    assert_eq!(header(&head, "x-account-bytes-used"), "757");
    // Pages follow the marker: every name once, in order.
    let mut seen = Vec::new();
    loop {
        let marker = seen.last().cloned().unwrap_or_default();
        let page = s
            .names(&format!("/v1/AUTH_test/c?limit=100&marker={marker}"))
            .await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 100);
        seen.extend(page);
    }
    let all: Vec<String> = (0..250).map(|i| format!("o{i:03}")).collect();
    assert_eq!(seen, all);
    let (_, _, accounts) = s.call("GET", "/v1/AUTH_test?format=json", &[], "").await;
    let accounts = json(&accounts);
    assert_eq!(accounts[0]["name"], "c");
    assert_eq!(accounts[0]["count"], 250);
    assert_eq!(accounts[0]["bytes"], 755);
    assert_eq!(accounts[1]["count"], 1);
    // Deletes keep the counts.
    assert_eq!(
        s.call("DELETE", "/v1/AUTH_test/c/o000", &[], "").await.0,
        204
    );
    assert_eq!(s.call("DELETE", "/v1/AUTH_test/d/x", &[], "").await.0, 204);
    assert_eq!(s.call("DELETE", "/v1/AUTH_test/d", &[], "").await.0, 204);
    let (_, head, _) = s.call("HEAD", "/v1/AUTH_test", &[], "").await;
    assert_eq!(header(&head, "x-account-container-count"), "1");
    assert_eq!(header(&head, "x-account-object-count"), "249");
    assert_eq!(header(&head, "x-account-bytes-used"), "747");
    // None of this listed a container's (or the account's) data.
    assert_eq!(
        s.lists(),
        at_open,
        "whole listings of the backend were made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_deleted_while_a_put_streams_keeps_no_data() {
    let s = Arc::new(fresh().await);
    assert_eq!(s.put("c", "", &[]).await, 201);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *s.backend.hold_puts.lock().unwrap() = Some(gate.clone());
    let put = {
        let s = s.clone();
        tokio::spawn(async move { s.put("c/late", "data", &[]).await })
    };
    tokio::time::timeout(Duration::from_secs(60), s.backend.puts_waiting.notified())
        .await
        .expect("the PUT reached the backend");
    // Nothing is stored yet: the container is empty and goes.
    assert_eq!(s.call("DELETE", "/v1/AUTH_test/c", &[], "").await.0, 204);
    gate.add_permits(1);
    assert_eq!(put.await.unwrap(), 404, "the PUT into a deleted container");
    assert!(
        !s.prefix.join(".swift/AUTH_test/c/late").exists(),
        "data left in a deleted container"
    );
    assert_eq!(s.call("HEAD", "/v1/AUTH_test/c", &[], "").await.0, 404);
    // The container can be made again, empty.
    assert_eq!(s.put("c", "", &[]).await, 201);
    assert!(s.names("/v1/AUTH_test/c").await.is_empty());
}

#[tokio::test]
async fn a_put_cut_between_data_and_row_is_repaired_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let s = start(&prefix, None).await;
    assert_eq!(s.put("c", "", &[]).await, 201);
    assert_eq!(s.put("c/o", "old", &[("x-object-meta-v", "1")]).await, 201);
    // The next PUT links its data, then fails before its row is written.
    *s.backend.fail_status_of.lock().unwrap() = Some(".swift/AUTH_test/c/o".into());
    let status = s
        .put(
            "c/o",
            "new data",
            &[("x-object-meta-v", "2"), ("content-type", "text/x-new")],
        )
        .await;
    assert_eq!(status, 503);
    drop(s);
    let s = start(&prefix, Some(dir)).await;
    let (status, headers, data) = s.call("GET", "/v1/AUTH_test/c/o", &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(data, b"new data");
    assert_eq!(header(&headers, "etag"), md5_hex(b"new data"));
    assert_eq!(header(&headers, "x-object-meta-v"), "2");
    assert_eq!(header(&headers, "content-type"), "text/x-new");
    let (_, _, listing) = s.call("GET", "/v1/AUTH_test/c?format=json", &[], "").await;
    assert_eq!(json(&listing)[0]["hash"], md5_hex(b"new data"));
    let (_, head, _) = s.call("HEAD", "/v1/AUTH_test/c", &[], "").await;
    assert_eq!(header(&head, "x-container-bytes-used"), "8");
}

/// Writes a file with a chosen modification time (ns since the epoch).
fn write_at(path: &Path, data: &[u8], mtime_ns: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::UNIX_EPOCH + Duration::from_nanos(mtime_ns))
        .unwrap();
}

#[tokio::test]
async fn an_existing_prefix_gets_its_index_built_from_objects_and_old_records() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    // The layout earlier versions wrote: data files, and JSON records beside them.
    let records = prefix.join(".archiveinterface-swift/.swift");
    std::fs::create_dir_all(records.join("containers/AUTH_test")).unwrap();
    std::fs::write(
        records.join("containers/AUTH_test/photos"),
        r#"{"created_ns": 1700000000000000000, "headers": {"X-Container-Meta-Color": "blue"}}"#,
    )
    .unwrap();
    std::fs::create_dir_all(records.join("accounts")).unwrap();
    std::fs::write(
        records.join("accounts/AUTH_test"),
        r#"{"headers": {"X-Account-Meta-Owner": "me"}}"#,
    )
    .unwrap();
    let mtime = 1_700_000_100_123_456_000;
    write_at(
        &prefix.join(".swift/AUTH_test/photos/2024/cat.jpg"),
        b"meow",
        mtime,
    );
    write_at(
        &prefix.join(".swift/AUTH_test/photos/dog.txt"),
        b"woof!",
        mtime,
    );
    write_at(&prefix.join(".swift/AUTH_test/gone/x"), b"orphan", mtime);
    use sha2::Digest;
    let hashed = hex::encode(sha2::Sha256::digest(b"2024/cat.jpg"));
    let record = serde_json::json!({
        "name": "2024/cat.jpg", "etag": md5_hex(b"meow"), "content_type": "image/x-cat",
        "size": 4, "data_mtime_ns": mtime, "timestamp_ns": mtime,
        "headers": {"X-Object-Meta-Name": "tom"}
    });
    std::fs::create_dir_all(records.join("objects/AUTH_test/photos")).unwrap();
    std::fs::write(
        records.join("objects/AUTH_test/photos").join(hashed),
        record.to_string(),
    )
    .unwrap();

    let s = start(&prefix, Some(dir)).await;
    let (_, _, listing) = s
        .call("GET", "/v1/AUTH_test/photos?format=json", &[], "")
        .await;
    let listing = json(&listing);
    assert_eq!(listing[0]["name"], "2024/cat.jpg");
    assert_eq!(listing[0]["hash"], md5_hex(b"meow"));
    assert_eq!(listing[0]["content_type"], "image/x-cat");
    // No record: what the data tells.
    assert_eq!(listing[1]["name"], "dog.txt");
    assert_eq!(listing[1]["bytes"], 5);
    assert_eq!(listing[1]["content_type"], "text/plain");
    let (_, head, _) = s
        .call("HEAD", "/v1/AUTH_test/photos/2024/cat.jpg", &[], "")
        .await;
    assert_eq!(header(&head, "x-object-meta-name"), "tom");
    let (_, head, _) = s.call("HEAD", "/v1/AUTH_test/photos", &[], "").await;
    assert_eq!(header(&head, "x-container-object-count"), "2");
    assert_eq!(header(&head, "x-container-bytes-used"), "9");
    assert_eq!(header(&head, "x-container-meta-color"), "blue");
    let (_, head, _) = s.call("HEAD", "/v1/AUTH_test", &[], "").await;
    assert_eq!(header(&head, "x-account-container-count"), "1");
    assert_eq!(header(&head, "x-account-object-count"), "2");
    assert_eq!(header(&head, "x-account-meta-owner"), "me");
    assert!(s
        .prefix
        .join(".archiveinterface-swift/index.sqlite3")
        .is_file());
}

#[tokio::test]
async fn hlm_status_pages_with_limit_and_marker() {
    let s = fresh().await;
    assert_eq!(s.put("c", "", &[]).await, 201);
    for i in 0..25 {
        assert_eq!(s.put(&format!("c/o{i:02}"), "x", &[]).await, 201);
    }
    let status = |query: &'static str| {
        let s = &s;
        async move {
            let (code, _, body) = s
                .call(
                    "GET",
                    &format!("/hlm/v1/status/AUTH_test/c{query}"),
                    &[],
                    "",
                )
                .await;
            (code, body)
        }
    };
    let (code, body) = status("").await;
    assert_eq!(code, 200);
    assert_eq!(
        json(&body).as_object().unwrap().len(),
        25,
        "no paging by default"
    );
    let mut seen = Vec::new();
    let mut marker = String::new();
    loop {
        let (code, headers, body) = s
            .call(
                "GET",
                &format!("/hlm/v1/status/AUTH_test/c?limit=10&marker={marker}"),
                &[],
                "",
            )
            .await;
        assert_eq!(code, 200);
        let page: Vec<String> = json(&body).as_object().unwrap().keys().cloned().collect();
        assert!(page.len() <= 10, "{page:?}");
        seen.extend(page);
        match headers.get("x-hlm-next-marker") {
            Some(next) => marker = next.to_str().unwrap().to_string(),
            None => break,
        }
    }
    let all: Vec<String> = (0..25).map(|i| format!("/AUTH_test/c/o{i:02}")).collect();
    assert_eq!(seen, all);
    let (code, body) = status("?limit=many").await;
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&body).contains("limit"));
}
