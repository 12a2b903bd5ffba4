//! The SwiftHLM API end to end on the tiered backend against a started server: the README's curl flow
//! (migrate, requests pending then empty, status migrated, GET 412, recall, status premigrated, GET
//! works), tokens of other accounts, the bulk form with progress, and a server killed with SIGKILL in
//! the middle of a request that finishes it after a restart, once.

mod common;

use common::server::{binary, ServerProcess};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A config with two tempauth users and a tape model that takes real (short) time.
fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let file = dir.join("hlm.toml");
    std::fs::write(
        &file,
        format!(
            r#"use_id2filename = true
[hsm]
batch_window_secs = 0.05
[hlm]
poll_interval_ms = 100
backoff_base_secs = 1
backoff_max_secs = 2
[[swift.users]]
account = "test"
user = "tester"
key = "testing"
[[swift.users]]
account = "other"
user = "tester2"
key = "testing2"
[[swift.users]]
account = "admin"
user = "root"
key = "rootkey"
reseller_admin = true
[tiered]
time_scale = 1.0
mount_secs = 0.3
unmount_secs = 0.1
{extra}"#
        ),
    )
    .unwrap();
    file
}

fn start(dir: &Path, config: &Path) -> ServerProcess {
    ServerProcess::start_with(
        Command::new(binary()),
        &dir.join("archive"),
        &["-t", "tiered", "-c", config.to_str().unwrap()],
    )
}

struct Swift {
    http: reqwest::Client,
    url: String,
    token: String,
}

async fn login(url: &str, user: &str, key: &str) -> Swift {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let r = http
        .get(format!("{url}/auth/v1.0"))
        .header("X-Auth-User", user)
        .header("X-Auth-Key", key)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "auth {user}: {}", r.status());
    let token = r.headers()["x-auth-token"].to_str().unwrap().to_string();
    Swift {
        http,
        url: url.to_string(),
        token,
    }
}

impl Swift {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, String) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("X-Auth-Token", &self.token);
        if let Some(body) = body {
            request = request.body(body);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, String) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str) -> (u16, String) {
        self.send(reqwest::Method::POST, path, None).await
    }

    async fn put(&self, path: &str, body: &[u8]) -> u16 {
        self.send(reqwest::Method::PUT, path, Some(body.to_vec()))
            .await
            .0
    }

    async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    async fn wait_for(
        &self,
        path: &str,
        what: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.json(path).await;
            if done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{path}: never {what}; last {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

const NO_REQUESTS: &str = "There are no pending or failed SwiftHLM requests.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_swifthlm_readme_flow() {
    let dir = tempfile::tempdir().unwrap();
    // A slow drive (1 MB/s) so that the request is still pending when we look.
    let config = write_config(dir.path(), "write_bytes_per_sec = 1000000.0\n");
    let server = start(dir.path(), &config);
    let s = login(&server.url, "test:tester", "testing").await;
    assert_eq!(s.put("/v1/AUTH_test/cont3", b"").await, 201);
    let big = vec![7u8; 1_500_000];
    assert_eq!(s.put("/v1/AUTH_test/cont3/obj00", &big).await, 201);
    assert_eq!(s.put("/v1/AUTH_test/cont3/obj01", b"one").await, 201);
    assert_eq!(s.put("/v1/AUTH_test/cont3/obj02", b"two").await, 201);

    let status = s.json("/hlm/v1/status/AUTH_test/cont3/obj00").await;
    assert_eq!(
        status,
        serde_json::json!({"/AUTH_test/cont3/obj00": "resident"})
    );
    let status = s.json("/hlm/v1/status/AUTH_test/cont3").await;
    assert_eq!(status.as_object().unwrap().len(), 3);
    assert!(
        status
            .as_object()
            .unwrap()
            .values()
            .all(|v| v == "resident"),
        "{status}"
    );

    let (code, body) = s.post("/hlm/v1/migrate/AUTH_test/cont3/obj00").await;
    assert_eq!((code, body.as_str()), (202, "Accepted migrate request.\n"));
    let pending = s.json("/hlm/v1/requests/AUTH_test/cont3/obj00").await;
    let name = pending[0].as_str().unwrap_or_default().to_string();
    assert!(
        name.contains("--migrate--AUTH_test--cont3--0--obj00--pending"),
        "{pending}"
    );
    let ts = name.split("--").next().unwrap();
    assert!(
        ts.len() == 18 && ts.as_bytes()[14] == b'.',
        "timestamp like 20170303034043.566: {ts}"
    );
    let detail = s.json("/hlm/v1/requests/AUTH_test/cont3?format=json").await;
    assert_eq!(detail[0]["op"], "migrate");
    assert_eq!(detail[0]["target"]["object"], "obj00");
    assert!(detail[0]["progress"]["total"].as_u64().unwrap() <= 1);

    s.wait_for(
        "/hlm/v1/requests/AUTH_test/cont3/obj00",
        "empty",
        Duration::from_secs(60),
        |v| v == &serde_json::json!([NO_REQUESTS]),
    )
    .await;
    let status = s.json("/hlm/v1/status/AUTH_test/cont3").await;
    assert_eq!(
        status,
        serde_json::json!({"/AUTH_test/cont3/obj00": "migrated", "/AUTH_test/cont3/obj01": "resident", "/AUTH_test/cont3/obj02": "resident"})
    );
    let (code, body) = s.get("/v1/AUTH_test/cont3/obj00").await;
    assert_eq!(code, 412);
    assert_eq!(
        body,
        "Object /AUTH_test/cont3/obj00 needs to be RECALL-ed before it can be accessed.\n"
    );

    let (code, body) = s.post("/hlm/v1/recall/AUTH_test/cont3/obj00").await;
    assert_eq!((code, body.as_str()), (202, "Accepted recall request.\n"));
    s.wait_for(
        "/hlm/v1/status/AUTH_test/cont3/obj00",
        "premigrated",
        Duration::from_secs(60),
        |v| v["/AUTH_test/cont3/obj00"] == "premigrated",
    )
    .await;
    let r = s
        .http
        .get(format!("{}/v1/AUTH_test/cont3/obj00", s.url))
        .header("X-Auth-Token", &s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().to_vec() == big);

    // Whole container: every object migrated.
    assert_eq!(s.post("/hlm/v1/migrate/AUTH_test/cont3").await.0, 202);
    s.wait_for(
        "/hlm/v1/status/AUTH_test/cont3",
        "all migrated",
        Duration::from_secs(60),
        |v| v.as_object().unwrap().values().all(|s| s == "migrated"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_scoped_to_their_account() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = start(dir.path(), &config);
    let test = login(&server.url, "test:tester", "testing").await;
    assert_eq!(test.put("/v1/AUTH_test/c", b"").await, 201);
    assert_eq!(test.put("/v1/AUTH_test/c/o", b"data").await, 201);
    let other = login(&server.url, "other:tester2", "testing2").await;
    for path in [
        "/hlm/v1/status/AUTH_test/c",
        "/hlm/v1/requests/AUTH_test/c/o",
    ] {
        assert_eq!(other.get(path).await.0, 403, "{path}");
    }
    assert_eq!(other.post("/hlm/v1/migrate/AUTH_test/c").await.0, 403);
    let anonymous = Swift {
        http: reqwest::Client::new(),
        url: server.url.clone(),
        token: "bogus".into(),
    };
    assert_eq!(anonymous.get("/hlm/v1/status/AUTH_test/c").await.0, 401);
    assert_eq!(anonymous.post("/hlm/v1/migrate/AUTH_test/c").await.0, 401);
    let admin = login(&server.url, "admin:root", "rootkey").await;
    assert_eq!(admin.get("/hlm/v1/status/AUTH_test/c").await.0, 200);
    // SwiftHLM's 404 bodies.
    let (code, body) = test.get("/hlm/v1/status/AUTH_test/nope").await;
    assert_eq!(
        (code, body.as_str()),
        (
            404,
            r#"{"error": "/account/container /AUTH_test/nope does not exist."}"#
        )
    );
    let (code, body) = test.post("/hlm/v1/migrate/AUTH_test/c/missing").await;
    assert_eq!(
        (code, body.as_str()),
        (
            404,
            r#"{"error": "Object /AUTH_test/c/missing does not exist."}"#
        )
    );
    assert_eq!(test.get("/hlm/v1/migrate/AUTH_test/c").await.0, 405);
    assert_eq!(test.post("/hlm/v1/teleport/AUTH_test/c").await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_requests_by_pacifica_id_report_progress() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let server = start(dir.path(), &config);
    let http = reqwest::Client::new();
    for id in 1..=20 {
        let r = http
            .put(format!("{}/{id}", server.url))
            .body(format!("file {id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let admin = login(&server.url, "admin:root", "rootkey").await;
    let test = login(&server.url, "test:tester", "testing").await;
    let ids: Vec<u32> = (1..=20).collect();
    let body = serde_json::json!({"ids": ids}).to_string();
    // Pacifica ids are archive-wide: a plain account's token is not enough.
    let (code, _) = test
        .send(
            reqwest::Method::POST,
            "/hlm/v1/migrate",
            Some(body.clone().into_bytes()),
        )
        .await;
    assert_eq!(code, 403);
    let (code, text) = admin
        .send(
            reqwest::Method::POST,
            "/hlm/v1/migrate",
            Some(body.into_bytes()),
        )
        .await;
    assert_eq!(code, 202, "{text}");
    let accepted: Value = serde_json::from_str(&text).unwrap();
    let url = accepted["url"].as_str().unwrap().to_string();
    let record = admin
        .wait_for(&url, "done", Duration::from_secs(60), |v| {
            v["state"] == "done"
        })
        .await;
    assert_eq!(
        record["progress"],
        serde_json::json!({"done": 20, "failed": 0, "total": 20})
    );
    assert_eq!(record["attempts"], 1);
    for id in [1, 20] {
        let r = http
            .head(format!("{}/{id}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-pacifica-file-storage-media"], "tape");
    }
    let (code, text) = admin
        .send(
            reqwest::Method::POST,
            "/hlm/v1/migrate",
            Some(br#"{"ids": ["abc"]}"#.to_vec()),
        )
        .await;
    assert_eq!(code, 400, "{text}");
    let (code, _) = admin
        .send(
            reqwest::Method::POST,
            "/hlm/v1/migrate",
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(code, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cut_by_sigkill_finishes_after_restart_once() {
    let dir = tempfile::tempdir().unwrap();
    // 200 kB/s drive: migrating five 200 kB objects takes about 5 s; leases last 2 s.
    let config = write_config(dir.path(), "write_bytes_per_sec = 200000.0\n");
    let config_text = std::fs::read_to_string(&config).unwrap().replace(
        "backoff_max_secs = 2\n",
        "backoff_max_secs = 2\nlease_secs = 2\n",
    );
    std::fs::write(&config, config_text).unwrap();
    let server = start(dir.path(), &config);
    let s = login(&server.url, "test:tester", "testing").await;
    assert_eq!(s.put("/v1/AUTH_test/c", b"").await, 201);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    let objects: Vec<String> = (0..5).map(|i| format!("/AUTH_test/c/o{i}")).collect();
    for o in &objects {
        assert_eq!(s.put(&format!("/v1{o}"), &data).await, 201);
    }
    let body = serde_json::json!({"objects": objects}).to_string();
    let (code, text) = s
        .send(
            reqwest::Method::POST,
            "/hlm/v1/migrate",
            Some(body.into_bytes()),
        )
        .await;
    assert_eq!(code, 202, "{text}");
    let url = serde_json::from_str::<Value>(&text).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_for(&url, "running", Duration::from_secs(30), |v| {
        v["state"] == "running"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.signal(libc::SIGKILL);
    drop(server);

    let server = start(dir.path(), &config);
    let s = login(&server.url, "test:tester", "testing").await;
    let record = s
        .wait_for(&url, "done", Duration::from_secs(60), |v| {
            v["state"] == "done"
        })
        .await;
    assert_eq!(record["attempts"], 2, "{record}");
    assert_eq!(record["progress"]["done"], 5);
    let status = s.json("/hlm/v1/status/AUTH_test/c").await;
    assert!(
        status
            .as_object()
            .unwrap()
            .values()
            .all(|v| v == "migrated"),
        "{status}"
    );
    // Every object reads back exactly (recalled transparently? no: Swift GET answers 412, so recall).
    assert_eq!(s.post("/hlm/v1/recall/AUTH_test/c").await.0, 202);
    s.wait_for(
        "/hlm/v1/status/AUTH_test/c",
        "premigrated",
        Duration::from_secs(60),
        |v| v.as_object().unwrap().values().all(|s| s == "premigrated"),
    )
    .await;
    for o in &objects {
        let r = s
            .http
            .get(format!("{}/v1{o}", s.url))
            .header("X-Auth-Token", &s.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.unwrap().to_vec() == data, "{o} differs");
    }
    assert!(server.log_text().contains("executing HLM request"));
}
