//! The Swift v1 object API and tempauth, in-process over a posix archive (plus one started server for
//! what only a socket shows): auth, tokens and account scoping, containers, objects (ETag, metadata,
//! Range, overwrite, chunked uploads, refused names, on-disk conflicts), listings, `/info`, the HLM's
//! 412 for migrated objects, and the helpers the HLM router uses.

mod common;

use archive_core::{
    ArchiveBackend, ByteStream, FileStatus, GetResult, HsmState, Key, ListEntry, PutOptions,
    PutOutcome, ReadRange,
};
use archiveinterface::config::{Config, SwiftUser};
use archiveinterface::{app, swift, AppState, Settings};
use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, Request};
use common::{header, json, read};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

fn user(account: &str, user: &str, key: &str, reseller_admin: bool) -> SwiftUser {
    SwiftUser {
        account: account.into(),
        user: user.into(),
        key: key.into(),
        reseller_admin,
    }
}

fn swift_config(prefix: &Path) -> Config {
    let mut config = Config {
        prefix: prefix.to_path_buf(),
        ..Config::default()
    };
    config.swift.token_secret = "test secret".into();
    config.swift.users = vec![
        user("test", "tester", "testing", false),
        user("other", "tester2", "testing2", false),
        user("admin", "root", "adminpw", true),
    ];
    config
}

/// A posix backend that reports chosen keys as migrated (on tape only), as an HSM backend would.
#[derive(Debug)]
struct OnTape {
    disk: archive_posix::PosixBackend,
    migrated: Mutex<HashSet<String>>,
}

impl OnTape {
    fn is_migrated(&self, key: &Key) -> bool {
        self.migrated.lock().unwrap().contains(key.as_str())
    }
}

#[async_trait]
impl ArchiveBackend for OnTape {
    fn name(&self) -> &'static str {
        "on-tape"
    }
    fn capabilities(&self) -> archive_core::Capabilities {
        archive_core::Capabilities {
            tape_tier: true,
            shared_by_processes: false,
        }
    }
    async fn put(
        &self,
        key: &Key,
        body: ByteStream,
        options: PutOptions,
    ) -> archive_core::Result<PutOutcome> {
        self.disk.put(key, body, options).await
    }
    async fn get(&self, key: &Key, range: ReadRange) -> archive_core::Result<GetResult> {
        if self.is_migrated(key) {
            return Err(archive_core::Error::NotResident {
                key: key.to_string(),
            });
        }
        self.disk.get(key, range).await
    }
    async fn status(&self, key: &Key) -> archive_core::Result<FileStatus> {
        let mut status = self.disk.status(key).await?;
        if self.is_migrated(key) {
            status.state = HsmState::Migrated;
            status.bytes_per_level = vec![0, status.size];
        }
        Ok(status)
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
        self.disk.list(prefix).await
    }
}

struct Swift {
    router: axum::Router,
    state: AppState,
    backend: Arc<OnTape>,
    prefix: PathBuf,
    _dir: tempfile::TempDir,
}

fn swift_app_with(tweak: impl FnOnce(&mut Config)) -> Swift {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let mut config = swift_config(&prefix);
    tweak(&mut config);
    let backend = Arc::new(OnTape {
        disk: archive_posix::PosixBackend::new(&prefix).unwrap(),
        migrated: Mutex::new(HashSet::new()),
    });
    let settings = Settings::from_config(&config).unwrap();
    let state = AppState::with_config(backend.clone(), settings, config);
    Swift {
        router: app(state.clone()),
        state,
        backend,
        prefix,
        _dir: dir,
    }
}

fn swift_app() -> Swift {
    swift_app_with(|_| {})
}

type Reply = (u16, HeaderMap, Vec<u8>);

impl Swift {
    async fn send(&self, request: Request<Body>) -> Reply {
        read(self.router.clone().oneshot(request).await.unwrap()).await
    }

    async fn auth(&self, login: &str, key: &str) -> Reply {
        self.send(
            Request::get("/auth/v1.0")
                .header("host", "swift.example:8080")
                .header("x-auth-user", login)
                .header("x-auth-key", key)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn token(&self, login: &str, key: &str) -> String {
        let (status, headers, body) = self.auth(login, key).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        header(&headers, "x-auth-token").to_string()
    }

    /// A request with `token` (if any), extra headers and a body.
    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("x-auth-token", token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(body.into()).unwrap()).await
    }

    async fn tester(&self) -> String {
        self.token("test:tester", "testing").await
    }
}

fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(data))
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// Asserts an error answer in the one JSON error shape.
fn assert_error(reply: &Reply, status: u16) -> serde_json::Value {
    assert_eq!(reply.0, status, "{}", text(&reply.2));
    if reply.2.is_empty() {
        // HEAD: no body.
        return serde_json::Value::Null;
    }
    common::error_body(&reply.2, status)
}

#[tokio::test]
async fn auth_returns_token_and_storage_url() {
    let s = swift_app();
    let (status, headers, _) = s.auth("test:tester", "testing").await;
    assert_eq!(status, 200);
    assert!(header(&headers, "x-auth-token").starts_with("AUTH_tk"));
    assert_eq!(
        header(&headers, "x-storage-token"),
        header(&headers, "x-auth-token")
    );
    assert_eq!(
        header(&headers, "x-storage-url"),
        "http://swift.example:8080/v1/AUTH_test"
    );
    assert!(
        header(&headers, "x-auth-token-expires")
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(headers.contains_key("x-trans-id"));
    // The X-Storage-User / X-Storage-Pass spelling works too.
    let reply = s
        .send(
            Request::get("/auth/v1.0")
                .header("x-storage-user", "other:tester2")
                .header("x-storage-pass", "testing2")
                .header("x-forwarded-proto", "https")
                .header("host", "h")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.0, 200);
    assert_eq!(header(&reply.1, "x-storage-url"), "https://h/v1/AUTH_other");
    // Wrong key, unknown user, another account's key, missing headers: 401.
    for (login, key) in [
        ("test:tester", "wrong"),
        ("test:nobody", "testing"),
        ("other:tester", "testing"),
        ("test:tester2", "testing2"),
        ("tester", "testing"),
    ] {
        assert_error(&s.auth(login, key).await, 401);
    }
    assert_error(&s.call("GET", "/auth/v1.0", None, &[], "").await, 401);
    // A user without a key cannot log in with an empty key.
    let s = swift_app_with(|c| c.swift.users.push(user("nokey", "u", "", false)));
    assert_error(&s.auth("nokey:u", "").await, 401);
}

#[tokio::test]
async fn every_request_needs_a_token_for_its_account() {
    let s = swift_app();
    let test = s.tester().await;
    let other = s.token("other:tester2", "testing2").await;
    let admin = s.token("admin:root", "adminpw").await;
    assert_eq!(
        s.call("PUT", "/v1/AUTH_test/c", Some(&test), &[], "")
            .await
            .0,
        201
    );
    // No token, a forged or garbage token: 401 (with X-Trans-Id like every answer).
    let reply = s.call("GET", "/v1/AUTH_test/c", None, &[], "").await;
    assert_error(&reply, 401);
    assert!(reply.1.contains_key("x-trans-id"));
    let mut forged = test.clone();
    forged.pop();
    forged.push(if test.ends_with('0') { '1' } else { '0' });
    for bad in [forged.as_str(), "AUTH_tkgarbage", "nonsense"] {
        assert_error(
            &s.call("HEAD", "/v1/AUTH_test", Some(bad), &[], "").await,
            401,
        );
    }
    // Another account's token: 403, for reads and writes alike.
    for (method, uri) in [
        ("GET", "/v1/AUTH_test/c"),
        ("HEAD", "/v1/AUTH_test"),
        ("PUT", "/v1/AUTH_test/c/o"),
        ("DELETE", "/v1/AUTH_test/c"),
    ] {
        assert_error(&s.call(method, uri, Some(&other), &[], "").await, 403);
    }
    // Tokens stay valid in parallel: a new one does not revoke the old.
    let again = s.tester().await;
    assert_eq!(
        s.call("HEAD", "/v1/AUTH_test/c", Some(&test), &[], "")
            .await
            .0,
        204
    );
    assert_eq!(
        s.call("HEAD", "/v1/AUTH_test/c", Some(&again), &[], "")
            .await
            .0,
        204
    );
    // X-Storage-Token works as well as X-Auth-Token.
    let reply = s
        .call(
            "HEAD",
            "/v1/AUTH_test",
            None,
            &[("x-storage-token", &test)],
            "",
        )
        .await;
    assert_eq!(reply.0, 204);
    // A reseller admin may act on every account of the prefix, not outside it.
    assert_eq!(
        s.call("HEAD", "/v1/AUTH_test/c", Some(&admin), &[], "")
            .await
            .0,
        204
    );
    assert_error(
        &s.call("HEAD", "/v1/OTHER_x", Some(&admin), &[], "").await,
        403,
    );
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let s = swift_app_with(|c| c.swift.token_ttl_secs = 0);
    let token = s.tester().await;
    assert_error(
        &s.call("HEAD", "/v1/AUTH_test", Some(&token), &[], "").await,
        401,
    );
}

#[tokio::test]
async fn tokens_are_shared_by_instances_with_the_same_secret() {
    let a = swift_app();
    let b = swift_app();
    let token = a.tester().await;
    assert_eq!(
        b.call("HEAD", "/v1/AUTH_test", Some(&token), &[], "")
            .await
            .0,
        204
    );
    let c = swift_app_with(|c| c.swift.token_secret = "another".into());
    assert_error(
        &c.call("HEAD", "/v1/AUTH_test", Some(&token), &[], "").await,
        401,
    );
}

#[tokio::test]
async fn containers_lifecycle() {
    let s = swift_app();
    let t = s.tester().await;
    let t = Some(t.as_str());
    assert_error(&s.call("HEAD", "/v1/AUTH_test/c", t, &[], "").await, 404);
    assert_error(&s.call("GET", "/v1/AUTH_test/c", t, &[], "").await, 404);
    assert_error(&s.call("DELETE", "/v1/AUTH_test/c", t, &[], "").await, 404);
    assert_error(&s.call("POST", "/v1/AUTH_test/c", t, &[], "").await, 404);
    let reply = s
        .call(
            "PUT",
            "/v1/AUTH_test/c",
            t,
            &[("x-container-meta-color", "blue")],
            "",
        )
        .await;
    assert_eq!(reply.0, 201);
    assert!(reply.1.contains_key("x-trans-id"));
    assert_eq!(s.call("PUT", "/v1/AUTH_test/c/", t, &[], "").await.0, 202);
    let (status, headers, _) = s.call("HEAD", "/v1/AUTH_test/c", t, &[], "").await;
    assert_eq!(status, 204);
    assert_eq!(header(&headers, "x-container-object-count"), "0");
    assert_eq!(header(&headers, "x-container-bytes-used"), "0");
    assert_eq!(header(&headers, "x-container-meta-color"), "blue");
    assert!(header(&headers, "x-timestamp").contains('.'));
    // Empty listings: JSON [] with 200, plain text 204.
    let (status, _, body) = s
        .call("GET", "/v1/AUTH_test/c?format=json", t, &[], "")
        .await;
    assert_eq!((status, json(&body)), (200, serde_json::json!([])));
    assert_eq!(s.call("GET", "/v1/AUTH_test/c", t, &[], "").await.0, 204);
    // POST changes metadata; an empty value removes it.
    let reply = s
        .call(
            "POST",
            "/v1/AUTH_test/c",
            t,
            &[
                ("x-container-meta-color", ""),
                ("x-container-meta-size", "L"),
            ],
            "",
        )
        .await;
    assert_eq!(reply.0, 204);
    let (_, headers, _) = s.call("HEAD", "/v1/AUTH_test/c", t, &[], "").await;
    assert!(!headers.contains_key("x-container-meta-color"));
    assert_eq!(header(&headers, "x-container-meta-size"), "L");
    s.call(
        "POST",
        "/v1/AUTH_test/c",
        t,
        &[("x-remove-container-meta-size", "x")],
        "",
    )
    .await;
    let (_, headers, _) = s.call("HEAD", "/v1/AUTH_test/c", t, &[], "").await;
    assert!(!headers.contains_key("x-container-meta-size"));
    // Not empty: 409; empty: 204; gone: 404.
    assert_eq!(s.call("PUT", "/v1/AUTH_test/c/o", t, &[], "x").await.0, 201);
    let reply = s.call("DELETE", "/v1/AUTH_test/c", t, &[], "").await;
    assert_error(&reply, 409);
    assert_eq!(
        s.call("DELETE", "/v1/AUTH_test/c/o", t, &[], "").await.0,
        204
    );
    assert_eq!(s.call("DELETE", "/v1/AUTH_test/c", t, &[], "").await.0, 204);
    assert_error(&s.call("HEAD", "/v1/AUTH_test/c", t, &[], "").await, 404);
    // Objects cannot go into a missing container.
    assert_error(
        &s.call("PUT", "/v1/AUTH_test/nope/o", t, &[], "x").await,
        404,
    );
    // Bad container names.
    for bad in [
        "/v1/AUTH_test/..",
        "/v1/AUTH_test/.archiveinterface-x",
        "/v1/AUTH_test/%00",
    ] {
        assert_error(&s.call("PUT", bad, t, &[], "").await, 400);
    }
}

#[tokio::test]
async fn objects_round_trip_with_etag_and_metadata() {
    let s = swift_app();
    let t = s.tester().await;
    let t = Some(t.as_str());
    s.call("PUT", "/v1/AUTH_test/c", t, &[], "").await;
    let data = b"hello swift".to_vec();
    let (status, headers, _) = s
        .call(
            "PUT",
            "/v1/AUTH_test/c/dir/hello.txt",
            t,
            &[
                ("x-object-meta-mtime", "1700000000.5"),
                ("x-object-meta-Color", "blue"),
                ("content-length", "11"),
                ("content-disposition", "attachment"),
            ],
            data.clone(),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(header(&headers, "etag"), md5_hex(&data));
    assert!(headers.contains_key("last-modified"));
    // Stored in the Swift-on-File layout.
    let on_disk = s.prefix.join(".swift/AUTH_test/c/dir/hello.txt");
    assert_eq!(std::fs::read(on_disk).unwrap(), data);

    let (status, headers, body) = s
        .call("GET", "/v1/AUTH_test/c/dir/hello.txt", t, &[], "")
        .await;
    assert_eq!((status, body.as_slice()), (200, data.as_slice()));
    assert_eq!(header(&headers, "content-length"), "11");
    assert_eq!(header(&headers, "etag"), md5_hex(&data));
    assert_eq!(header(&headers, "content-type"), "text/plain");
    assert_eq!(header(&headers, "x-object-meta-mtime"), "1700000000.5");
    assert_eq!(header(&headers, "x-object-meta-color"), "blue");
    assert_eq!(header(&headers, "content-disposition"), "attachment");
    assert!(header(&headers, "x-timestamp").contains('.'));
    assert!(header(&headers, "last-modified").ends_with("GMT"));
    assert!(headers.contains_key("x-trans-id"));

    let (status, headers, body) = s
        .call("HEAD", "/v1/AUTH_test/c/dir/hello.txt", t, &[], "")
        .await;
    assert_eq!(status, 200);
    assert!(body.is_empty());
    assert_eq!(header(&headers, "content-length"), "11");
    assert_eq!(header(&headers, "x-object-meta-color"), "blue");

    // Range: 206 with Content-Range; outside the object: 416.
    let (status, headers, body) = s
        .call(
            "GET",
            "/v1/AUTH_test/c/dir/hello.txt",
            t,
            &[("range", "bytes=6-")],
            "",
        )
        .await;
    assert_eq!((status, body.as_slice()), (206, b"swift".as_slice()));
    assert_eq!(header(&headers, "content-range"), "bytes 6-10/11");
    assert_eq!(header(&headers, "content-length"), "5");
    let (status, _, body) = s
        .call(
            "GET",
            "/v1/AUTH_test/c/dir/hello.txt",
            t,
            &[("range", "bytes=-3")],
            "",
        )
        .await;
    assert_eq!((status, body.as_slice()), (206, b"ift".as_slice()));
    let (status, headers, _) = s
        .call(
            "GET",
            "/v1/AUTH_test/c/dir/hello.txt",
            t,
            &[("range", "bytes=50-")],
            "",
        )
        .await;
    assert_eq!(status, 416);
    assert_eq!(header(&headers, "content-range"), "bytes */11");

    // Conditional requests on the ETag.
    let etag = md5_hex(&data);
    let quoted = format!("\"{etag}\"");
    for (name, value, code) in [
        ("if-none-match", etag.as_str(), 304),
        ("if-none-match", quoted.as_str(), 304),
        ("if-none-match", "\"0000\"", 200),
        ("if-match", quoted.as_str(), 200),
        ("if-match", "\"0000\"", 412),
    ] {
        for method in ["GET", "HEAD"] {
            let reply = s
                .call(
                    method,
                    "/v1/AUTH_test/c/dir/hello.txt",
                    t,
                    &[(name, value)],
                    "",
                )
                .await;
            assert_eq!(reply.0, code, "{method} {name}: {value}");
            if code == 304 {
                assert!(reply.2.is_empty());
                assert_eq!(header(&reply.1, "etag"), etag);
            }
        }
    }

    // POST replaces all user metadata (and may change the content type).
    let (status, _, _) = s
        .call(
            "POST",
            "/v1/AUTH_test/c/dir/hello.txt",
            t,
            &[
                ("x-object-meta-shape", "round"),
                ("content-type", "text/x-greeting"),
            ],
            "",
        )
        .await;
    assert_eq!(status, 202);
    let (_, headers, _) = s
        .call("HEAD", "/v1/AUTH_test/c/dir/hello.txt", t, &[], "")
        .await;
    assert_eq!(header(&headers, "x-object-meta-shape"), "round");
    assert!(!headers.contains_key("x-object-meta-color"));
    assert!(!headers.contains_key("x-object-meta-mtime"));
    assert_eq!(header(&headers, "content-type"), "text/x-greeting");
    assert_eq!(header(&headers, "etag"), md5_hex(&data));
    assert_error(
        &s.call("POST", "/v1/AUTH_test/c/missing", t, &[], "").await,
        404,
    );

    // Overwrite: new content, new ETag, old metadata gone.
    let (status, headers, _) = s
        .call(
            "PUT",
            "/v1/AUTH_test/c/dir/hello.txt",
            t,
            &[],
            b"v2".to_vec(),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(header(&headers, "etag"), md5_hex(b"v2"));
    let (_, headers, body) = s
        .call("GET", "/v1/AUTH_test/c/dir/hello.txt", t, &[], "")
        .await;
    assert_eq!(body, b"v2");
    assert!(!headers.contains_key("x-object-meta-shape"));
    assert_eq!(header(&headers, "content-type"), "text/plain");

    // Unknown query parameters are ignored on object requests.
    for uri in [
        "/v1/AUTH_test/c/dir/hello.txt?symlink=get",
        "/v1/AUTH_test/c/dir/hello.txt?multipart-manifest=get",
    ] {
        assert_eq!(s.call("HEAD", uri, t, &[], "").await.0, 200, "{uri}");
    }
    // DELETE: 204, then 404.
    assert_eq!(
        s.call(
            "DELETE",
            "/v1/AUTH_test/c/dir/hello.txt?multipart-manifest=delete",
            t,
            &[],
            ""
        )
        .await
        .0,
        204
    );
    assert_error(
        &s.call("DELETE", "/v1/AUTH_test/c/dir/hello.txt", t, &[], "")
            .await,
        404,
    );
    assert_error(
        &s.call("GET", "/v1/AUTH_test/c/dir/hello.txt", t, &[], "")
            .await,
        404,
    );
    assert_error(
        &s.call("HEAD", "/v1/AUTH_test/c/dir", t, &[], "").await,
        404,
    );
}

#[tokio::test]
async fn a_wrong_etag_stores_nothing() {
    let s = swift_app();
    let t = s.tester().await;
    let t = Some(t.as_str());
    s.call("PUT", "/v1/AUTH_test/c", t, &[], "").await;
    let wrong = "0".repeat(32);
    let reply = s
        .call(
            "PUT",
            "/v1/AUTH_test/c/o",
            t,
            &[("etag", &wrong)],
            b"data".to_vec(),
        )
        .await;
    assert_error(&reply, 422);
    assert_error(&s.call("HEAD", "/v1/AUTH_test/c/o", t, &[], "").await, 404);
    // A right ETag (quoted, any case) is accepted.
    let right = format!("\"{}\"", md5_hex(b"data").to_uppercase());
    let reply = s
        .call(
            "PUT",
            "/v1/AUTH_test/c/o",
            t,
            &[("etag", &right)],
            b"data".to_vec(),
        )
        .await;
    assert_eq!(reply.0, 201);
    // A failed overwrite leaves the existing object untouched.
    let reply = s
        .call(
            "PUT",
            "/v1/AUTH_test/c/o",
            t,
            &[("etag", &wrong)],
            b"other".to_vec(),
        )
        .await;
    assert_error(&reply, 422);
    let (_, _, body) = s.call("GET", "/v1/AUTH_test/c/o", t, &[], "").await;
    assert_eq!(body, b"data");
    // If-None-Match: * refuses to replace.
    let reply = s
        .call(
            "PUT",
            "/v1/AUTH_test/c/o",
            t,
            &[("if-none-match", "*")],
            b"x".to_vec(),
        )
        .await;
    assert_error(&reply, 412);
}

#[tokio::test]
async fn chunked_uploads_stream() {
    let s = swift_app();
    let t = s.tester().await;
    let t = Some(t.as_str());
    s.call("PUT", "/v1/AUTH_test/c", t, &[], "").await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..50).map(|i| Ok(vec![i as u8; 100_000])).collect();
    let all: Vec<u8> = chunks
        .iter()
        .flat_map(|c| c.as_ref().unwrap().clone())
        .collect();
    let body = Body::from_stream(futures::stream::iter(chunks));
    let (status, headers, _) = s
        .call(
            "PUT",
            "/v1/AUTH_test/c/big",
            t,
            &[("transfer-encoding", "chunked")],
            body,
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(header(&headers, "etag"), md5_hex(&all));
    let (_, headers, body) = s.call("GET", "/v1/AUTH_test/c/big", t, &[], "").await;
    assert_eq!(header(&headers, "content-length"), all.len().to_string());
    assert!(body == all);
    // A body cut off by the client stores nothing.
    let cut: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(vec![1; 10]),
        Err(std::io::Error::other("client went away")),
    ];
    let reply = s
        .call(
            "PUT",
            "/v1/AUTH_test/c/cut",
            t,
            &[],
            Body::from_stream(futures::stream::iter(cut)),
        )
        .await;
    assert!(reply.0 >= 400, "{}", reply.0);
    assert_error(
        &s.call("HEAD", "/v1/AUTH_test/c/cut", t, &[], "").await,
        404,
    );
}

#[tokio::test]
async fn names_with_slashes_spaces_and_unicode_and_refused_names() {
    let s = swift_app();
    let t = s.tester().await;
    let t = Some(t.as_str());
    s.call("PUT", "/v1/AUTH_test/c", t, &[], "").await;
    let name = "deep/dir/with space/ünïcødé ☃.bin";
    let encoded: String = percent_encode(name);
    let uri = format!("/v1/AUTH_test/c/{encoded}");
    assert_eq!(s.call("PUT", &uri, t, &[], b"u".to_vec()).await.0, 201);
    assert_eq!(s.call("GET", &uri, t, &[], "").await.2, b"u");
    // %2F is a slash, as in Swift.
    let alt = format!("/v1/AUTH_test/c/{}", encoded.replace('/', "%2F"));
    assert_eq!(s.call("GET", &alt, t, &[], "").await.2, b"u");
    let (_, _, body) = s
        .call("GET", "/v1/AUTH_test/c?format=json", t, &[], "")
        .await;
    assert_eq!(json(&body)[0]["name"], name);
    assert!(s.prefix.join(".swift/AUTH_test/c").join(name).is_file());
    for bad in [
        "/v1/AUTH_test/c/../../escape",
        "/v1/AUTH_test/c/%2e%2e/%2e%2e/escape",
        "/v1/AUTH_test/c/a//b",
        "/v1/AUTH_test/c/a/./b",
        "/v1/AUTH_test/c/nul%00byte",
        "/v1/AUTH_test/c/back%5Cslash",
        "/v1/AUTH_test/c/.archiveinterface-state/x",
        "/v1/AUTH_test/c/d/.x.1-2.partial",
        "/v1/AUTH_test/c/trailing/",
        "/v1/AUTH_test/c/%FF",
    ] {
        let reply = s.call("PUT", bad, t, &[], b"x".to_vec()).await;
        assert_error(&reply, 400);
    }
    let long = format!("/v1/AUTH_test/c/{}", "x/".repeat(600));
    assert_error(
        &s.call("PUT", long.trim_end_matches('/'), t, &[], "x").await,
        400,
    );
    // Nothing escaped the Swift root.
    assert!(!s.prefix.join("escape").exists());
    assert!(!s.prefix.parent().unwrap().join("escape").exists());
}

fn percent_encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn on_disk_name_conflicts_are_409() {
    let s = swift_app();
    let t = s.tester().await;
    let t = Some(t.as_str());
    s.call("PUT", "/v1/AUTH_test/c", t, &[], "").await;
    assert_eq!(s.call("PUT", "/v1/AUTH_test/c/a", t, &[], "x").await.0, 201);
    let reply = s.call("PUT", "/v1/AUTH_test/c/a/b", t, &[], "y").await;
    let v = assert_error(&reply, 409);
    assert!(
        v["message"].as_str().unwrap().contains("/AUTH_test/c/a"),
        "{v}"
    );
    assert_eq!(
        s.call("PUT", "/v1/AUTH_test/c/d/e/f", t, &[], "x").await.0,
        201
    );
    assert_error(&s.call("PUT", "/v1/AUTH_test/c/d", t, &[], "y").await, 409);
    assert_error(
        &s.call("PUT", "/v1/AUTH_test/c/d/e", t, &[], "y").await,
        409,
    );
    // The same names in another container do not conflict.
    s.call("PUT", "/v1/AUTH_test/c2", t, &[], "").await;
    assert_eq!(
        s.call("PUT", "/v1/AUTH_test/c2/a/b", t, &[], "y").await.0,
        201
    );
}

async fn listing(s: &Swift, t: Option<&str>, uri: &str) -> Vec<String> {
    let (status, _, body) = s.call("GET", uri, t, &[], "").await;
    assert_eq!(status, 200, "{uri}: {}", text(&body));
    json(&body)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e.get("name")
                .or_else(|| e.get("subdir"))
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn container_listings() {
    let s = swift_app();
    let t = s.tester().await;
    let t = Some(t.as_str());
    s.call("PUT", "/v1/AUTH_test/c", t, &[], "").await;
    for name in ["a", "d/1", "d/2", "d/e/3", "dz", "e/1", "z.txt"] {
        let reply = s
            .call(
                "PUT",
                &format!("/v1/AUTH_test/c/{name}"),
                t,
                &[],
                name.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(reply.0, 201, "{name}");
    }
    let (status, headers, body) = s
        .call("GET", "/v1/AUTH_test/c?format=json", t, &[], "")
        .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-container-object-count"), "7");
    assert_eq!(header(&headers, "x-container-bytes-used"), "22");
    assert!(header(&headers, "content-type").starts_with("application/json"));
    let v = json(&body);
    assert_eq!(v.as_array().unwrap().len(), 7);
    let first = &v[0];
    assert_eq!(first["name"], "a");
    assert_eq!(first["bytes"], 1);
    assert_eq!(first["hash"], md5_hex(b"a"));
    assert_eq!(first["content_type"], "application/octet-stream");
    assert_eq!(v[6]["content_type"], "text/plain");
    let lm = first["last_modified"].as_str().unwrap();
    assert_eq!(lm.len(), 26, "{lm}");
    assert_eq!(&lm[10..11], "T");

    let c = "/v1/AUTH_test/c?format=json";
    assert_eq!(
        listing(&s, t, &format!("{c}&marker=d/2")).await,
        ["d/e/3", "dz", "e/1", "z.txt"]
    );
    assert_eq!(
        listing(&s, t, &format!("{c}&end_marker=dz")).await,
        ["a", "d/1", "d/2", "d/e/3"]
    );
    assert_eq!(
        listing(&s, t, &format!("{c}&prefix=d/&limit=2")).await,
        ["d/1", "d/2"]
    );
    assert_eq!(
        listing(&s, t, &format!("{c}&delimiter=/")).await,
        ["a", "d/", "dz", "e/", "z.txt"]
    );
    // The marker is exclusive for subdirs too (swiftclient pages with the last name it saw).
    assert_eq!(
        listing(&s, t, &format!("{c}&delimiter=/&marker=d/")).await,
        ["dz", "e/", "z.txt"]
    );
    assert_eq!(
        listing(&s, t, &format!("{c}&delimiter=/&prefix=d/")).await,
        ["d/1", "d/2", "d/e/"]
    );
    assert_eq!(
        listing(&s, t, &format!("{c}&marker=z.txt")).await,
        Vec::<String>::new()
    );
    // Paging with limit and marker visits everything once.
    let mut seen = Vec::new();
    let mut marker = String::new();
    loop {
        let page = listing(&s, t, &format!("{c}&limit=3&marker={marker}")).await;
        if page.is_empty() {
            break;
        }
        marker = page.last().unwrap().clone();
        seen.extend(page);
    }
    assert_eq!(seen.len(), 7);
    // Plain text, and 204 when empty.
    let (status, headers, body) = s
        .call("GET", "/v1/AUTH_test/c?delimiter=/", t, &[], "")
        .await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").starts_with("text/plain"));
    assert_eq!(text(&body), "a\nd/\ndz\ne/\nz.txt\n");
    assert_eq!(
        s.call("GET", "/v1/AUTH_test/c?prefix=nothing", t, &[], "")
            .await
            .0,
        204
    );
    // Accept: application/json selects JSON; XML is offered too.
    let (_, _, body) = s
        .call(
            "GET",
            "/v1/AUTH_test/c?limit=1",
            t,
            &[("accept", "application/json")],
            "",
        )
        .await;
    assert_eq!(json(&body)[0]["name"], "a");
    let (_, _, body) = s
        .call("GET", "/v1/AUTH_test/c?format=xml&limit=1", t, &[], "")
        .await;
    assert!(text(&body).contains("<name>a</name>"), "{}", text(&body));
    // limit over 10000: 412.
    assert_error(
        &s.call("GET", "/v1/AUTH_test/c?limit=10001", t, &[], "")
            .await,
        412,
    );
}

#[tokio::test]
async fn account_head_and_listing() {
    let s = swift_app();
    let t = s.tester().await;
    let t = Some(t.as_str());
    let (status, headers, _) = s.call("HEAD", "/v1/AUTH_test", t, &[], "").await;
    assert_eq!(status, 204);
    assert_eq!(header(&headers, "x-account-container-count"), "0");
    assert_eq!(s.call("GET", "/v1/AUTH_test", t, &[], "").await.0, 204);
    let (_, _, body) = s.call("GET", "/v1/AUTH_test?format=json", t, &[], "").await;
    assert_eq!(json(&body), serde_json::json!([]));
    for c in ["b", "a", "empty"] {
        assert_eq!(
            s.call("PUT", &format!("/v1/AUTH_test/{c}"), t, &[], "")
                .await
                .0,
            201
        );
    }
    s.call("PUT", "/v1/AUTH_test/a/x", t, &[], "12345").await;
    s.call("PUT", "/v1/AUTH_test/a/y/z", t, &[], "1").await;
    s.call("PUT", "/v1/AUTH_test/b/x", t, &[], "12").await;
    let (status, headers, _) = s.call("HEAD", "/v1/AUTH_test/", t, &[], "").await;
    assert_eq!(status, 204);
    assert_eq!(header(&headers, "x-account-container-count"), "3");
    assert_eq!(header(&headers, "x-account-object-count"), "3");
    assert_eq!(header(&headers, "x-account-bytes-used"), "8");
    let (status, _, body) = s.call("GET", "/v1/AUTH_test?format=json", t, &[], "").await;
    assert_eq!(status, 200);
    let v = json(&body);
    let rows: Vec<(String, u64, u64)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["count"].as_u64().unwrap(),
                e["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("a".into(), 2, 6),
            ("b".into(), 1, 2),
            ("empty".into(), 0, 0)
        ]
    );
    assert_eq!(
        listing(&s, t, "/v1/AUTH_test?format=json&marker=a").await,
        ["b", "empty"]
    );
    assert_eq!(
        listing(&s, t, "/v1/AUTH_test?format=json&prefix=e").await,
        ["empty"]
    );
    assert_eq!(
        text(&s.call("GET", "/v1/AUTH_test", t, &[], "").await.2),
        "a\nb\nempty\n"
    );
    // Another account sees none of it.
    let o = s.token("other:tester2", "testing2").await;
    assert_eq!(
        s.call("GET", "/v1/AUTH_other", Some(&o), &[], "").await.0,
        204
    );
    // Metadata records never show up as objects or containers.
    assert_eq!(
        listing(&s, t, "/v1/AUTH_test/a?format=json").await,
        ["x", "y/z"]
    );
    // Account metadata: POST sets, an empty value or X-Remove-... removes.
    let reply = s
        .call(
            "POST",
            "/v1/AUTH_test",
            t,
            &[("x-account-meta-owner", "me"), ("x-account-meta-temp", "1")],
            "",
        )
        .await;
    assert_eq!(reply.0, 204);
    let (_, headers, _) = s.call("HEAD", "/v1/AUTH_test", t, &[], "").await;
    assert_eq!(header(&headers, "x-account-meta-owner"), "me");
    assert_eq!(header(&headers, "x-account-meta-temp"), "1");
    s.call(
        "POST",
        "/v1/AUTH_test",
        t,
        &[("x-remove-account-meta-temp", "x")],
        "",
    )
    .await;
    let (_, headers, _) = s.call("GET", "/v1/AUTH_test", t, &[], "").await;
    assert_eq!(header(&headers, "x-account-meta-owner"), "me");
    assert!(!headers.contains_key("x-account-meta-temp"));
    // Account management is not offered.
    assert_error(&s.call("PUT", "/v1/AUTH_test", t, &[], "").await, 405);
}

#[tokio::test]
async fn migrated_objects_need_a_recall() {
    let s = swift_app();
    let t = s.tester().await;
    let t = Some(t.as_str());
    s.call("PUT", "/v1/AUTH_test/c", t, &[], "").await;
    s.call(
        "PUT",
        "/v1/AUTH_test/c/dir/o",
        t,
        &[("x-object-meta-k", "v")],
        "tape me",
    )
    .await;
    let key = swift::object_key(&s.state.config.swift, "AUTH_test", "c", "dir/o").unwrap();
    s.backend.migrated.lock().unwrap().insert(key.to_string());
    let (status, headers, body) = s.call("GET", "/v1/AUTH_test/c/dir/o", t, &[], "").await;
    assert_eq!(status, 412);
    assert_eq!(header(&headers, "content-type"), "text/plain");
    assert_eq!(
        text(&body),
        "Object /AUTH_test/c/dir/o needs to be RECALL-ed before it can be accessed.\n"
    );
    // HEAD, listing, POST and DELETE still work.
    let (status, headers, _) = s.call("HEAD", "/v1/AUTH_test/c/dir/o", t, &[], "").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-object-meta-k"), "v");
    assert_eq!(header(&headers, "etag"), md5_hex(b"tape me"));
    assert_eq!(
        listing(&s, t, "/v1/AUTH_test/c?format=json").await,
        ["dir/o"]
    );
    assert_eq!(
        s.call("POST", "/v1/AUTH_test/c/dir/o", t, &[], "").await.0,
        202
    );
    assert_eq!(
        s.call("DELETE", "/v1/AUTH_test/c/dir/o", t, &[], "")
            .await
            .0,
        204
    );
}

/// `If-Modified-Since` / `If-Unmodified-Since` against the `Last-Modified` sent, with the ETag
/// conditions first (RFC 9110 section 13.2.2); an object on tape answers them without a recall; a
/// manifest answers them with its own ETag.
#[tokio::test]
async fn conditional_requests_by_date_and_etag_need_no_data() {
    let s = swift_app();
    let t = s.tester().await;
    let t = Some(t.as_str());
    s.call("PUT", "/v1/AUTH_test/c", t, &[], "").await;
    s.call("PUT", "/v1/AUTH_test/c/o", t, &[], "tape me").await;
    let (_, headers, _) = s.call("HEAD", "/v1/AUTH_test/c/o", t, &[], "").await;
    let sent = header(&headers, "last-modified").to_string();
    let when = httpdate::parse_http_date(&sent).unwrap();
    let second_before = httpdate::fmt_http_date(when - std::time::Duration::from_secs(1));
    let etag = md5_hex(b"tape me");
    let cases = |on_tape: bool| {
        // On tape, a GET that passes its conditions needs the data: SwiftHLM's 412.
        let full = if on_tape { 412 } else { 200 };
        vec![
            (vec![("if-modified-since", sent.clone())], 304, 304),
            (
                vec![("if-modified-since", second_before.clone())],
                full,
                200,
            ),
            (
                vec![("if-modified-since", "not a date".to_string())],
                full,
                200,
            ),
            (vec![("if-unmodified-since", sent.clone())], full, 200),
            (
                vec![("if-unmodified-since", second_before.clone())],
                412,
                412,
            ),
            (
                vec![
                    ("if-none-match", "\"0000\"".to_string()),
                    ("if-modified-since", sent.clone()),
                ],
                full,
                200,
            ),
            (
                vec![
                    ("if-match", etag.clone()),
                    ("if-unmodified-since", second_before.clone()),
                ],
                full,
                200,
            ),
            (vec![("if-none-match", etag.clone())], 304, 304),
            (vec![("if-none-match", "*".to_string())], 304, 304),
            (vec![("if-match", "\"0000\"".to_string())], 412, 412),
        ]
    };
    for on_tape in [false, true] {
        if on_tape {
            let key = swift::object_key(&s.state.config.swift, "AUTH_test", "c", "o").unwrap();
            s.backend.migrated.lock().unwrap().insert(key.to_string());
        }
        for (conditions, get_code, head_code) in cases(on_tape) {
            let conditions: Vec<(&str, &str)> =
                conditions.iter().map(|(n, v)| (*n, v.as_str())).collect();
            for (method, code) in [("GET", get_code), ("HEAD", head_code)] {
                let (status, headers, body) = s
                    .call(method, "/v1/AUTH_test/c/o", t, &conditions, "")
                    .await;
                assert_eq!(
                    status,
                    code,
                    "{method} {conditions:?} on tape: {on_tape}: {}",
                    text(&body)
                );
                if status == 304 {
                    assert!(body.is_empty());
                    assert_eq!(header(&headers, "etag"), etag);
                    assert_eq!(header(&headers, "last-modified"), sent);
                }
            }
        }
    }

    // A dynamic large object: its conditions use the manifest's ETag, before any segment is read.
    s.call("PUT", "/v1/AUTH_test/c/seg/1", t, &[], "part").await;
    s.call(
        "PUT",
        "/v1/AUTH_test/c/big",
        t,
        &[("x-object-manifest", "c/seg/")],
        "",
    )
    .await;
    let manifest_etag = format!("\"{}\"", md5_hex(md5_hex(b"part").as_bytes()));
    for (name, value, code) in [
        ("if-none-match", manifest_etag.as_str(), 304),
        ("if-match", "\"0000\"", 412),
        ("if-match", manifest_etag.as_str(), 200),
    ] {
        for method in ["GET", "HEAD"] {
            let (status, _, body) = s
                .call(method, "/v1/AUTH_test/c/big", t, &[(name, value)], "")
                .await;
            assert_eq!(status, code, "{method} {name}: {value}: {}", text(&body));
        }
    }
}

#[tokio::test]
async fn info_lists_capabilities_without_auth() {
    let s = swift_app();
    let (status, headers, body) = s.call("GET", "/info", None, &[], "").await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("x-trans-id"));
    let v = json(&body);
    assert_eq!(v["swift"]["container_listing_limit"], 10000);
    assert!(v.get("tempauth").is_some());
    assert!(v.get("slo").is_none());
}

#[tokio::test]
async fn swift_can_be_switched_off() {
    let s = swift_app_with(|c| c.swift.enabled = false);
    assert_eq!(s.call("GET", "/auth/v1.0", None, &[], "").await.0, 404);
    assert_eq!(s.call("GET", "/info", None, &[], "").await.0, 404);
    assert_eq!(
        s.call("HEAD", "/v1/AUTH_test/c/o", None, &[], "").await.0,
        404
    );
}

#[tokio::test]
async fn helpers_for_the_hlm_router() {
    let s = swift_app();
    let t = s.tester().await;
    let config = &s.state.config.swift;
    let missing = swift::container_object_keys(&s.state, "AUTH_test", "c").await;
    assert_eq!(missing.unwrap_err().status.as_u16(), 404);
    s.call("PUT", "/v1/AUTH_test/c", Some(&t), &[], "").await;
    assert!(swift::container_object_keys(&s.state, "AUTH_test", "c")
        .await
        .unwrap()
        .is_empty());
    for o in ["b", "a/x", "a y"] {
        s.call(
            "PUT",
            &format!("/v1/AUTH_test/c/{}", percent_encode(o)),
            Some(&t),
            &[],
            "1",
        )
        .await;
    }
    let keys = swift::container_object_keys(&s.state, "AUTH_test", "c")
        .await
        .unwrap();
    let names: Vec<String> = keys
        .iter()
        .map(|k| swift::swift_name_of(config, k).unwrap())
        .collect();
    assert_eq!(
        names,
        ["/AUTH_test/c/a y", "/AUTH_test/c/a/x", "/AUTH_test/c/b"]
    );
    assert_eq!(
        swift::object_key(config, "AUTH_test", "c", "a/x").unwrap(),
        keys[1]
    );
    assert_eq!(
        swift::object_key(config, "AUTH_test", "c", "../x")
            .unwrap_err()
            .status
            .as_u16(),
        400
    );
    let mut headers = HeaderMap::new();
    assert_eq!(
        swift::authorize(&s.state, &headers, "AUTH_test")
            .unwrap_err()
            .status
            .as_u16(),
        401
    );
    headers.insert("x-auth-token", t.parse().unwrap());
    let id = swift::authorize(&s.state, &headers, "AUTH_test").unwrap();
    assert_eq!(
        (id.account.as_str(), id.user.as_str(), id.reseller_admin),
        ("AUTH_test", "tester", false)
    );
    assert_eq!(
        swift::authorize(&s.state, &headers, "AUTH_other")
            .unwrap_err()
            .status
            .as_u16(),
        403
    );
}

/// Over a real socket: HEAD keeps the object's Content-Length, and a chunked upload from an HTTP client
/// works end to end.
#[tokio::test]
async fn over_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        "[swift]\ntoken_secret = \"s\"\n[[swift.users]]\naccount = \"test\"\nuser = \"tester\"\nkey = \"testing\"\n",
    )
    .unwrap();
    let server = common::server::ServerProcess::start(
        &dir.path().join("prefix"),
        &["-c", config_path.to_str().unwrap()],
    );
    let http = reqwest::Client::new();
    let auth = http
        .get(format!("{}/auth/v1.0", server.url))
        .header("x-auth-user", "test:tester")
        .header("x-auth-key", "testing")
        .send()
        .await
        .unwrap();
    assert_eq!(auth.status(), 200);
    let token = auth.headers()["x-auth-token"].to_str().unwrap().to_string();
    let storage = auth.headers()["x-storage-url"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(storage, format!("{}/v1/AUTH_test", server.url));
    let put = |url: String, body: reqwest::Body| {
        http.put(url)
            .header("x-auth-token", &token)
            .body(body)
            .send()
    };
    assert_eq!(
        put(format!("{storage}/c"), "".into())
            .await
            .unwrap()
            .status(),
        201
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|i| Ok(vec![i; 65536])).collect();
    let all: Vec<u8> = chunks
        .iter()
        .flat_map(|c| c.as_ref().unwrap().clone())
        .collect();
    let r = put(
        format!("{storage}/c/streamed"),
        reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["etag"], md5_hex(&all).as_str());
    let head = http
        .head(format!("{storage}/c/streamed"))
        .header("x-auth-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"],
        all.len().to_string().as_str()
    );
    assert!(head.headers().contains_key("x-trans-id"));
    let got = http
        .get(format!("{storage}/c/streamed"))
        .header("x-auth-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), all.as_slice());
}

/// On the tiered backend (the built-in HSM): a migrated object answers 412 to GET while HEAD and
/// listings keep its ETag and metadata (the records stay on disk); after a recall it reads back whole
/// with the same ETag.
#[tokio::test]
async fn objects_on_the_tiered_backend_migrate_and_recall() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let config = swift_config(&prefix);
    let backend: Arc<dyn ArchiveBackend> = Arc::new(
        archive_tiered::TieredBackend::open(
            prefix.clone(),
            archive_tiered::TieredConfig::default(),
        )
        .unwrap(),
    );
    let settings = Settings::from_config(&config).unwrap();
    let state = AppState::with_config(backend.clone(), settings, config);
    let router = app(state.clone());
    let call = |method: &str, uri: &str, token: Option<&str>, body: &'static str| {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("x-auth-token", token);
        }
        let request = request
            .header("x-object-meta-k", "v")
            .header("x-auth-user", "test:tester")
            .header("x-auth-key", "testing")
            .body(Body::from(body))
            .unwrap();
        let router = router.clone();
        async move { read(router.oneshot(request).await.unwrap()).await }
    };
    let (_, headers, _) = call("GET", "/auth/v1.0", None, "").await;
    let token = header(&headers, "x-auth-token").to_string();
    let t = Some(token.as_str());
    assert_eq!(call("PUT", "/v1/AUTH_test/c", t, "").await.0, 201);
    assert_eq!(
        call("PUT", "/v1/AUTH_test/c/d/o", t, "on tape").await.0,
        201
    );
    let keys = swift::container_object_keys(&state, "AUTH_test", "c")
        .await
        .unwrap();
    for (key, outcome) in backend.migrate(&keys).await.unwrap() {
        outcome.unwrap_or_else(|e| panic!("{key}: {e}"));
    }
    assert_eq!(
        backend.status(&keys[0]).await.unwrap().state,
        HsmState::Migrated
    );
    let (status, _, body) = call("GET", "/v1/AUTH_test/c/d/o", t, "").await;
    assert_eq!(status, 412);
    assert_eq!(
        text(&body),
        "Object /AUTH_test/c/d/o needs to be RECALL-ed before it can be accessed.\n"
    );
    let (status, headers, _) = call("HEAD", "/v1/AUTH_test/c/d/o", t, "").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "etag"), md5_hex(b"on tape"));
    assert_eq!(header(&headers, "x-object-meta-k"), "v");
    assert_eq!(header(&headers, "content-length"), "7");
    let (_, _, body) = call("GET", "/v1/AUTH_test/c?format=json", t, "").await;
    assert_eq!(json(&body)[0]["hash"], md5_hex(b"on tape"));
    for (key, outcome) in backend.recall(&keys).await.unwrap() {
        outcome.unwrap_or_else(|e| panic!("{key}: {e}"));
    }
    let (status, headers, body) = call("GET", "/v1/AUTH_test/c/d/o", t, "").await;
    assert_eq!((status, body.as_slice()), (200, b"on tape".as_slice()));
    assert_eq!(header(&headers, "etag"), md5_hex(b"on tape"));
    assert_eq!(header(&headers, "x-object-meta-k"), "v");
    // The metadata records were never migrated.
    let all = backend.list("").await.unwrap();
    assert!(
        all.iter().all(|e| e.key.as_str().starts_with(".swift/")),
        "{all:?}"
    );
}

#[tokio::test]
async fn server_side_copy() {
    let s = swift_app();
    let t = s.tester().await;
    let t = Some(t.as_str());
    s.call("PUT", "/v1/AUTH_test/c", t, &[], "").await;
    s.call("PUT", "/v1/AUTH_test/d", t, &[], "").await;
    let data = b"copy me please".to_vec();
    s.call(
        "PUT",
        "/v1/AUTH_test/c/src%20dir/o.txt",
        t,
        &[("x-object-meta-a", "1"), ("x-object-meta-b", "2")],
        data.clone(),
    )
    .await;
    // PUT with X-Copy-From: data, content type and metadata copied; the request's metadata wins.
    let reply = s
        .call(
            "PUT",
            "/v1/AUTH_test/d/copy",
            t,
            &[
                ("x-copy-from", "/c/src%20dir/o.txt"),
                ("x-object-meta-b", "3"),
                ("content-length", "0"),
            ],
            "",
        )
        .await;
    assert_eq!(reply.0, 201, "{}", text(&reply.2));
    assert_eq!(header(&reply.1, "etag"), md5_hex(&data));
    assert_eq!(header(&reply.1, "x-copied-from"), "c/src%20dir/o.txt");
    let (status, headers, body) = s.call("GET", "/v1/AUTH_test/d/copy", t, &[], "").await;
    assert_eq!((status, body.as_slice()), (200, data.as_slice()));
    assert_eq!(header(&headers, "content-type"), "text/plain");
    assert_eq!(header(&headers, "x-object-meta-a"), "1");
    assert_eq!(header(&headers, "x-object-meta-b"), "3");
    // COPY with Destination, fresh metadata.
    let reply = s
        .call(
            "COPY",
            "/v1/AUTH_test/c/src%20dir/o.txt",
            t,
            &[("destination", "c/again"), ("x-fresh-metadata", "true")],
            "",
        )
        .await;
    assert_eq!(reply.0, 201, "{}", text(&reply.2));
    let (_, headers, body) = s.call("GET", "/v1/AUTH_test/c/again", t, &[], "").await;
    assert_eq!(body, data);
    assert!(!headers.contains_key("x-object-meta-a"));
    // Missing source 404, missing destination container 404, bad header 412, another account 403.
    let missing = s
        .call(
            "PUT",
            "/v1/AUTH_test/d/x",
            t,
            &[("x-copy-from", "c/nope")],
            "",
        )
        .await;
    assert_error(&missing, 404);
    let no_container = s
        .call(
            "COPY",
            "/v1/AUTH_test/c/again",
            t,
            &[("destination", "nope/x")],
            "",
        )
        .await;
    assert_error(&no_container, 404);
    assert_error(
        &s.call(
            "PUT",
            "/v1/AUTH_test/d/x",
            t,
            &[("x-copy-from", "just-a-name")],
            "",
        )
        .await,
        412,
    );
    let foreign = s
        .call(
            "PUT",
            "/v1/AUTH_test/d/x",
            t,
            &[
                ("x-copy-from", "c/o"),
                ("x-copy-from-account", "AUTH_other"),
            ],
            "",
        )
        .await;
    assert_error(&foreign, 403);
    // A source on tape only: SwiftHLM's 412.
    let key = swift::object_key(&s.state.config.swift, "AUTH_test", "c", "again").unwrap();
    s.backend.migrated.lock().unwrap().insert(key.to_string());
    let (status, _, body) = s
        .call(
            "COPY",
            "/v1/AUTH_test/c/again",
            t,
            &[("destination", "d/y")],
            "",
        )
        .await;
    assert_eq!(status, 412);
    assert!(text(&body).contains("needs to be RECALL-ed"));
}

/// `swift upload -S` without `slo` in /info: segments plus a DLO manifest that reads as their
/// concatenation.
#[tokio::test]
async fn dynamic_large_objects() {
    let s = swift_app();
    let t = s.tester().await;
    let t = Some(t.as_str());
    s.call("PUT", "/v1/AUTH_test/c", t, &[], "").await;
    s.call("PUT", "/v1/AUTH_test/c_segments", t, &[], "").await;
    let parts: [&[u8]; 3] = [b"first-", b"second-", b"third"];
    for (i, part) in parts.iter().enumerate() {
        let uri = format!("/v1/AUTH_test/c_segments/big%20file/123/18/6/{i:08}");
        assert_eq!(s.call("PUT", &uri, t, &[], part.to_vec()).await.0, 201);
    }
    let reply = s
        .call(
            "PUT",
            "/v1/AUTH_test/c/big%20file",
            t,
            &[
                ("x-object-manifest", "c_segments/big%20file/123/18/6/"),
                ("x-object-meta-mtime", "123"),
            ],
            "",
        )
        .await;
    assert_eq!(reply.0, 201);
    let whole: Vec<u8> = parts.concat();
    let etags: String = parts.iter().map(|p| md5_hex(p)).collect();
    let expected_etag = format!("\"{}\"", md5_hex(etags.as_bytes()));
    let (status, headers, body) = s
        .call("GET", "/v1/AUTH_test/c/big%20file", t, &[], "")
        .await;
    assert_eq!((status, body.as_slice()), (200, whole.as_slice()));
    assert_eq!(header(&headers, "content-length"), whole.len().to_string());
    assert_eq!(header(&headers, "etag"), expected_etag);
    assert_eq!(
        header(&headers, "x-object-manifest"),
        "c_segments/big%20file/123/18/6/"
    );
    assert_eq!(header(&headers, "x-object-meta-mtime"), "123");
    let (status, headers, _) = s
        .call("HEAD", "/v1/AUTH_test/c/big%20file", t, &[], "")
        .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-length"), whole.len().to_string());
    // The manifest lists as a 0-byte object; deleting it leaves the segments.
    let (_, _, body) = s
        .call("GET", "/v1/AUTH_test/c?format=json", t, &[], "")
        .await;
    assert_eq!(json(&body)[0]["bytes"], 0);
    // A segment on tape: 412 naming it.
    let key = swift::object_key(
        &s.state.config.swift,
        "AUTH_test",
        "c_segments",
        "big file/123/18/6/00000001",
    )
    .unwrap();
    s.backend.migrated.lock().unwrap().insert(key.to_string());
    let (status, _, body) = s
        .call("GET", "/v1/AUTH_test/c/big%20file", t, &[], "")
        .await;
    assert_eq!(status, 412);
    assert_eq!(
        text(&body),
        "Object /AUTH_test/c_segments/big file/123/18/6/00000001 needs to be RECALL-ed before it can be accessed.\n"
    );
    assert_eq!(
        s.call("DELETE", "/v1/AUTH_test/c/big%20file", t, &[], "")
            .await
            .0,
        204
    );
    assert_eq!(
        listing(&s, t, "/v1/AUTH_test/c_segments?format=json")
            .await
            .len(),
        3
    );
    // A malformed manifest value: 400.
    let reply = s
        .call(
            "PUT",
            "/v1/AUTH_test/c/bad",
            t,
            &[("x-object-manifest", "no-slash")],
            "",
        )
        .await;
    assert_error(&reply, 400);
}
