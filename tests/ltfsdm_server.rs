//! `-t ltfsdm` against a started server, with the `ltfsdm` test double (`backends/ltfsdm/double`) as
//! the LTFS DM client: HEAD media and bytes per level, POST stage, GET of a migrated file recalled
//! first (the double leaves zeros in its place) with exact bytes and ranges; the SwiftHLM flow with
//! names holding spaces, quotes and Unicode; partial failures per object; an unreachable LTFS DM server
//! (503, a retried HLM request, nothing marked migrated); a missing binary at start-up; 10,000 files in
//! one HLM request in batched commands; recalls of two tapes sent to ltfsdm grouped per tape; a server
//! and a standalone dispatcher sharing the managed file system.

mod common;

use common::server::{binary, refuse_to_start, ServerProcess};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The double; fails loudly when it or Python 3 is missing.
fn double() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("backends/ltfsdm/double/ltfsdm");
    assert!(
        path.is_file(),
        "the ltfsdm test double is missing at {}",
        path.display()
    );
    let python = Command::new("python3").arg("--version").output();
    assert!(
        python.is_ok_and(|o| o.status.success()),
        "python3 is needed to run the ltfsdm test double: apt-get install python3"
    );
    path
}

struct Ltfsdm {
    server: ServerProcess,
    /// The prefix as given to the server, and canonical.
    given_prefix: PathBuf,
    prefix: PathBuf,
    state: PathBuf,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(ltfsdm_extra: &str) -> Ltfsdm {
    start_with(ltfsdm_extra, &[], |_| {})
}

/// Starts the server (with `env`) after `prepare` has put what it wants on the managed file system.
fn start_with(ltfsdm_extra: &str, env: &[(&str, &str)], prepare: impl FnOnce(&Path)) -> Ltfsdm {
    let dir = tempfile::tempdir().unwrap();
    let (prefix, state, lists) = (
        dir.path().join("managed"),
        dir.path().join("double-state"),
        dir.path().join("lists"),
    );
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&lists).unwrap();
    std::fs::create_dir_all(&prefix).unwrap();
    prepare(&prefix);
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            r#"type = "ltfsdm"
[ltfsdm]
binary = "{binary}"
pools = ["pool1"]
list_dir = "{lists}"
{ltfsdm_extra}
[hsm]
batch_window_secs = 0.3
get_wait_secs = 30
[hlm]
poll_interval_ms = 100
backoff_base_secs = 1
backoff_max_secs = 1
max_attempts = 20
migrate_batch = 5000
[[swift.users]]
account = "test"
user = "tester"
key = "testing"
[[swift.users]]
account = "admin"
user = "root"
key = "rootkey"
reseller_admin = true
"#,
            binary = double().display(),
            lists = lists.display(),
        ),
    )
    .unwrap();
    let mut command = Command::new(binary());
    command
        .env("LTFSDM_DOUBLE_STATE", &state)
        .envs(env.iter().copied());
    let server = ServerProcess::start_with(command, &prefix, &["-c", config.to_str().unwrap()]);
    Ltfsdm {
        server,
        prefix: std::fs::canonicalize(&prefix).unwrap(),
        given_prefix: prefix,
        state,
        config,
        _dir: dir,
    }
}

impl Ltfsdm {
    /// Runs the double as an operator (or an LTFS DM policy) would, outside the server.
    fn operator(&self, args: &[&str], files: &[String]) {
        let paths: Vec<PathBuf> = files.iter().map(|f| self.prefix.join(f)).collect();
        let out = Command::new(double())
            .env("LTFSDM_DOUBLE_STATE", &self.state)
            .args(args)
            .args(&paths)
            .output()
            .unwrap();
        assert!(out.status.success(), "ltfsdm {args:?}: {out:?}");
    }

    fn double_config(&self, json: Value) {
        std::fs::write(self.state.join("config.json"), json.to_string()).unwrap();
    }

    /// The double's calls of one subcommand: the files of each.
    fn calls(&self, subcommand: &str) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.state.join("calls.log"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["argv"][0] == subcommand)
            .map(|v| {
                v["files"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    }

    fn path(&self, name: &str) -> String {
        self.prefix.join(name).display().to_string()
    }
}

fn h(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn head(http: &reqwest::Client, url: &str) -> reqwest::header::HeaderMap {
    let r = http.head(url).send().await.unwrap();
    assert_eq!(r.status(), 204, "{url}");
    r.headers().clone()
}

fn pattern(len: u32, seed: u32) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + seed) % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_stage_and_get_of_migrated_files_through_the_pacifica_api() {
    let s = start("");
    let http = reqwest::Client::new();
    let url = |id: &str| format!("{}/{id}", s.server.url);
    let (one, three) = (pattern(300_000, 1), pattern(1000, 3));
    for (id, data) in [("1", &one), ("2", &b"second file".to_vec()), ("3", &three)] {
        let r = http.put(url(id)).body(data.clone()).send().await.unwrap();
        assert_eq!(r.status(), 201);
    }
    let headers = head(&http, &url("1")).await;
    assert_eq!(h(&headers, "x-pacifica-file-storage-media"), "disk");
    assert_eq!(h(&headers, "x-pacifica-bytes-per-level"), "(300000,)");
    assert_eq!(h(&headers, "x-pacifica-hsm-state"), "resident");

    s.operator(
        &["migrate", "-P", "pool1"],
        &["1".into(), "2".into(), "3".into()],
    );
    let headers = head(&http, &url("1")).await;
    assert_eq!(h(&headers, "x-pacifica-file-storage-media"), "tape");
    assert_eq!(h(&headers, "x-pacifica-bytes-per-level"), "(0, 300000)");
    assert_eq!(h(&headers, "x-pacifica-hsm-state"), "migrated");
    assert_eq!(h(&headers, "x-content-length"), "300000");

    // GET recalls first: the file on disk is zeros until then.
    let r = http.get(url("2")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"second file");
    let headers = head(&http, &url("2")).await;
    assert_eq!(h(&headers, "x-pacifica-file-storage-media"), "disk");
    assert_eq!(h(&headers, "x-pacifica-bytes-per-level"), "(11, 11)");
    assert_eq!(h(&headers, "x-pacifica-hsm-state"), "premigrated");

    // A byte range of a migrated file.
    let r = http
        .get(url("3"))
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &three[10..20]);

    // POST stage answers at once; HEAD shows the file on disk once the recall ran.
    let r = http.post(url("1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while h(
        &head(&http, &url("1")).await,
        "x-pacifica-file-storage-media",
    ) != "disk"
    {
        assert!(Instant::now() < deadline, "never staged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = http
        .get(url("1"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got.as_ref() == one.as_slice(), "file 1 read back differs");
    let recalled: Vec<String> = s.calls("recall").concat();
    for id in ["1", "2", "3"] {
        assert!(
            recalled.contains(&s.path(id)),
            "{id} not recalled: {recalled:?}"
        );
    }
}

struct Swift {
    http: reqwest::Client,
    url: String,
    token: String,
}

async fn login(url: &str, user: &str, key: &str) -> Swift {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
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
    async fn send(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("X-Auth-Token", &self.token)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.bytes().await.unwrap().to_vec())
    }

    async fn json(&self, path: &str) -> Value {
        let (status, body) = self.send(reqwest::Method::GET, path, Vec::new()).await;
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    async fn submit(&self, path: &str, body: Value) -> String {
        let (code, text) = self
            .send(reqwest::Method::POST, path, body.to_string().into_bytes())
            .await;
        assert_eq!(code, 202, "{}", String::from_utf8_lossy(&text));
        serde_json::from_slice::<Value>(&text).unwrap()["url"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn wait_for(&self, path: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.json(path).await;
            if done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{path}: last {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Swift object names as they appear in URLs.
fn encoded(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_swifthlm_flow_with_spaces_quotes_and_unicode_and_a_partial_failure() {
    let s = start("");
    let swift = login(&s.server.url, "test:tester", "testing").await;
    assert_eq!(
        swift
            .send(reqwest::Method::PUT, "/v1/AUTH_test/c", Vec::new())
            .await
            .0,
        201
    );
    let names = [
        "dir with space/it's \"quoted\".txt",
        "ünïcødé ✓ файл",
        "plain",
    ];
    for (i, name) in names.iter().enumerate() {
        let path = format!("/v1/AUTH_test/c/{}", encoded(name));
        let (code, _) = swift
            .send(reqwest::Method::PUT, &path, pattern(5000, i as u32))
            .await;
        assert_eq!(code, 201, "{name}");
    }
    let (code, _) = swift
        .send(
            reqwest::Method::POST,
            "/hlm/v1/migrate/AUTH_test/c",
            Vec::new(),
        )
        .await;
    assert_eq!(code, 202);
    let status = swift
        .wait_for("/hlm/v1/status/AUTH_test/c", Duration::from_secs(60), |v| {
            v.as_object().unwrap().values().all(|s| s == "migrated")
        })
        .await;
    assert_eq!(status.as_object().unwrap().len(), 3, "{status}");
    // The file list held each path whole, spaces, quotes and all.
    let migrated = s.calls("migrate").concat();
    for name in names {
        assert!(
            migrated
                .iter()
                .any(|p| p.ends_with(&format!("/AUTH_test/c/{name}"))),
            "{name}: {migrated:?}"
        );
    }
    let first = format!("/v1/AUTH_test/c/{}", encoded(names[0]));
    assert_eq!(
        swift.send(reqwest::Method::GET, &first, Vec::new()).await.0,
        412
    );
    let (code, _) = swift
        .send(
            reqwest::Method::POST,
            "/hlm/v1/recall/AUTH_test/c",
            Vec::new(),
        )
        .await;
    assert_eq!(code, 202);
    swift
        .wait_for("/hlm/v1/status/AUTH_test/c", Duration::from_secs(60), |v| {
            v.as_object().unwrap().values().all(|s| s == "premigrated")
        })
        .await;
    for (i, name) in names.iter().enumerate() {
        let path = format!("/v1/AUTH_test/c/{}", encoded(name));
        let (code, body) = swift.send(reqwest::Method::GET, &path, Vec::new()).await;
        assert_eq!(
            (code, body == pattern(5000, i as u32)),
            (200, true),
            "{name}"
        );
    }

    // A partial failure: LTFS DM fails one file (exit 1); the others are migrated, the request
    // records the failure and is retried, the failed object stays resident.
    s.double_config(serde_json::json!({"fail": ["/AUTH_test/d/bad"]}));
    assert_eq!(
        swift
            .send(reqwest::Method::PUT, "/v1/AUTH_test/d", Vec::new())
            .await
            .0,
        201
    );
    for name in ["good", "bad"] {
        let path = format!("/v1/AUTH_test/d/{name}");
        assert_eq!(
            swift
                .send(reqwest::Method::PUT, &path, b"x".to_vec())
                .await
                .0,
            201
        );
    }
    let url = swift
        .submit(
            "/hlm/v1/migrate",
            serde_json::json!({"objects": ["/AUTH_test/d/good", "/AUTH_test/d/bad"]}),
        )
        .await;
    let record = swift
        .wait_for(&url, Duration::from_secs(60), |v| {
            v["attempts"].as_u64() >= Some(2) && v["state"] == "pending"
        })
        .await;
    assert_eq!(record["progress"]["failed"], 1, "{record}");
    let error = record["last_error"].as_str().unwrap();
    assert!(
        error.contains("bad") && error.contains("did not migrate"),
        "{error}"
    );
    let status = swift.json("/hlm/v1/status/AUTH_test/d").await;
    assert_eq!(status["/AUTH_test/d/good"], "migrated", "{status}");
    assert_eq!(status["/AUTH_test/d/bad"], "resident", "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_ltfsdm_server_gives_503_and_a_retried_request_that_migrates_nothing() {
    let s = start("");
    let http = reqwest::Client::new();
    for id in ["1", "2"] {
        let r = http
            .put(format!("{}/{id}", s.server.url))
            .body("data")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    s.operator(&["migrate", "-P", "pool1"], &["1".into()]);
    s.double_config(serde_json::json!({"unreachable": true}));
    let r = http
        .get(format!("{}/1", s.server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let text = r.text().await.unwrap();
    assert!(text.contains("Unable to connect"), "{text}");

    let admin = login(&s.server.url, "admin:root", "rootkey").await;
    let url = admin
        .submit("/hlm/v1/migrate", serde_json::json!({"ids": [2]}))
        .await;
    let record = admin
        .wait_for(&url, Duration::from_secs(60), |v| {
            v["attempts"].as_u64() >= Some(2)
        })
        .await;
    assert_ne!(record["state"], "done", "{record}");
    assert!(
        record["last_error"]
            .as_str()
            .unwrap()
            .contains("Unable to connect"),
        "{record}"
    );
    let headers = head(&http, &format!("{}/2", s.server.url)).await;
    assert_eq!(h(&headers, "x-pacifica-hsm-state"), "resident");

    // The server is back: the retried request migrates the file.
    s.double_config(serde_json::json!({}));
    admin
        .wait_for(&url, Duration::from_secs(60), |v| v["state"] == "done")
        .await;
    let headers = head(&http, &format!("{}/2", s.server.url)).await;
    assert_eq!(h(&headers, "x-pacifica-hsm-state"), "migrated");
}

#[test]
fn a_missing_ltfsdm_binary_or_a_bad_pool_list_stops_start_up_naming_it() {
    let err = refuse_to_start(
        &["-t", "ltfsdm"],
        &[("ARCHIVEINTERFACE_LTFSDM__BINARY", "/opt/nowhere/ltfsdm")],
    );
    assert!(
        err.contains("/opt/nowhere/ltfsdm") && err.contains("does not run"),
        "{err}"
    );
    // A configuration ltfsdm would refuse later is refused at start-up, naming the key.
    let err = refuse_to_start(
        &["-t", "ltfsdm"],
        &[("ARCHIVEINTERFACE_LTFSDM__POOLS", r#"["a", "b", "c", "d"]"#)],
    );
    assert!(err.contains("ltfsdm.pools"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_files_in_one_hlm_request_go_in_batched_commands() {
    // A container of 10,000 objects already on the managed file system (with the container record
    // of an earlier version): the server indexes them at start-up.
    let s = start_with("batch_files = 2500", &[], |prefix| {
        let record = prefix.join(".archiveinterface-swift/.swift/containers/AUTH_test/big");
        std::fs::create_dir_all(record.parent().unwrap()).unwrap();
        std::fs::write(&record, r#"{"created_ns": 0, "headers": {}}"#).unwrap();
        let container = prefix.join(".swift/AUTH_test/big");
        std::fs::create_dir_all(&container).unwrap();
        for i in 0..10_000 {
            std::fs::write(container.join(format!("o{i:05}")), i.to_string()).unwrap();
        }
    });
    let swift = login(&s.server.url, "test:tester", "testing").await;
    let (code, _) = swift
        .send(
            reqwest::Method::POST,
            "/hlm/v1/migrate/AUTH_test/big",
            Vec::new(),
        )
        .await;
    assert_eq!(code, 202);
    let status = swift
        .wait_for(
            "/hlm/v1/status/AUTH_test/big",
            Duration::from_secs(240),
            |v| v.as_object().unwrap().values().all(|s| s == "migrated"),
        )
        .await;
    assert_eq!(status.as_object().unwrap().len(), 10_000);
    // One backend call of 5000 keys at a time (hlm.migrate_batch), 2500 files per ltfsdm command.
    let sizes: Vec<usize> = s.calls("migrate").iter().map(Vec::len).collect();
    assert_eq!(sizes, [2500, 2500, 2500, 2500]);
    // The status of the whole container is asked in commands of at most 2500 files.
    let infos = s.calls("info");
    assert!(infos.iter().all(|files| files.len() <= 2500));
    assert!(infos.iter().filter(|files| files.len() == 2500).count() >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recalls_of_files_on_two_tapes_reach_ltfsdm_grouped_per_tape() {
    let s = start("");
    let ids: Vec<u32> = (1..=12).collect();
    for id in &ids {
        std::fs::write(s.prefix.join(id.to_string()), format!("file {id}")).unwrap();
    }
    let odd: Vec<String> = ids
        .iter()
        .filter(|i| *i % 2 == 1)
        .map(u32::to_string)
        .collect();
    let even: Vec<String> = ids
        .iter()
        .filter(|i| *i % 2 == 0)
        .map(u32::to_string)
        .collect();
    // Two migrations to two pools: odd files on D01301L5, even files on D01302L5.
    s.operator(&["migrate", "-P", "pool1"], &odd);
    s.operator(&["migrate", "-P", "pool2"], &even);
    let admin = login(&s.server.url, "admin:root", "rootkey").await;
    // Interleaved in the request; grouped by tape when sent to ltfsdm.
    let url = admin
        .submit("/hlm/v1/recall", serde_json::json!({"ids": ids}))
        .await;
    admin
        .wait_for(&url, Duration::from_secs(60), |v| v["state"] == "done")
        .await;
    let recalls = s.calls("recall");
    let tape_of = |path: &String| {
        let id: u32 = path.rsplit('/').next().unwrap().parse().unwrap();
        id % 2
    };
    assert_eq!(recalls.len(), 2, "{recalls:?}");
    for files in &recalls {
        assert_eq!(files.len(), 6, "{recalls:?}");
        assert!(
            files.iter().all(|f| tape_of(f) == tape_of(&files[0])),
            "{recalls:?}"
        );
    }
    let http = reqwest::Client::new();
    for id in [1, 12] {
        let body = http
            .get(format!("{}/{id}", s.server.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, format!("file {id}"));
    }
}

/// A process that is killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_and_a_standalone_dispatcher_share_the_managed_file_system() {
    // State lives in LTFS DM: the split set-up (refused on the tiered backend) is allowed.
    let s = start_with("", &[("ARCHIVEINTERFACE_HLM__DISPATCHER", "false")], |_| {});
    let _dispatcher = Killed(
        Command::new(binary())
            .args(["-c", s.config.to_str().unwrap()])
            .args(["--prefix", s.given_prefix.to_str().unwrap(), "dispatcher"])
            .env("LTFSDM_DOUBLE_STATE", &s.state)
            .env_remove("ARCHIVEINTERFACE_CONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{}/1", s.server.url))
        .body("shared")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let admin = login(&s.server.url, "admin:root", "rootkey").await;
    let url = admin
        .submit("/hlm/v1/migrate", serde_json::json!({"ids": [1]}))
        .await;
    admin
        .wait_for(&url, Duration::from_secs(60), |v| v["state"] == "done")
        .await;
    let headers = head(&http, &format!("{}/1", s.server.url)).await;
    assert_eq!(h(&headers, "x-pacifica-hsm-state"), "migrated");
    assert_eq!(s.calls("migrate").len(), 1);
    // The standalone dispatcher ran it: the server only queued it.
    let log = s.server.log_text();
    assert!(!log.contains("executing HLM request"), "{log}");
}
