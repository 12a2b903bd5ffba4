//! The cloud tier in a started server over posix, against the loopback S3 server (moto, started by
//! `scripts/test.sh`; run alone with `ARCHIVEINTERFACE_TEST_S3_URL` set, see below): the scanner
//! archiving Pacifica ids through the request queue, HEAD showing where the file is, GET and Range
//! GET read through, metrics; Swift objects migrated and recalled by explicit HLM requests, read
//! through while archived, listed, deleted; start-up stopped by an unreachable bucket.

mod common;

use common::server::{binary, ServerProcess};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn s3_endpoint() -> String {
    let how = "start a loopback S3 server and export its URL, e.g. \
               `.venv/bin/pip install 'moto[server]' && .venv/bin/moto_server -H 127.0.0.1 -p 19000 & \
               export ARCHIVEINTERFACE_TEST_S3_URL=http://127.0.0.1:19000` (scripts/test.sh does this)";
    let url = std::env::var("ARCHIVEINTERFACE_TEST_S3_URL")
        .unwrap_or_else(|_| panic!("ARCHIVEINTERFACE_TEST_S3_URL is not set: {how}"));
    std::net::TcpStream::connect(url.trim_start_matches("http://").trim_end_matches('/'))
        .unwrap_or_else(|e| panic!("the S3 server at {url} is not reachable ({e}): {how}"));
    url
}

/// A fresh bucket (moto takes unsigned bucket creation).
fn new_bucket(label: &str) -> String {
    let endpoint = s3_endpoint();
    let address = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("{label}-{}-{nanos:x}", std::process::id());
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "PUT /{name} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    name
}

fn write_config(dir: &Path, bucket: &str, policies: &str) -> std::path::PathBuf {
    let file = dir.join("cloud.toml");
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
[cloud]
scan_interval_secs = 1
[cloud.stores.moto]
url = "s3://{bucket}/site-a"
endpoint = "{endpoint}"
region = "us-east-1"
access_key_id = "test"
secret_access_key = "test"
allow_http = true
retry_timeout_secs = 2
max_retries = 1
{policies}"#,
            endpoint = s3_endpoint()
        ),
    )
    .unwrap();
    file
}

fn start(dir: &Path, config: &Path) -> ServerProcess {
    ServerProcess::start_with(
        Command::new(binary()),
        &dir.join("archive"),
        &["-c", config.to_str().unwrap()],
    )
}

fn h<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacifica_ids_are_archived_by_policy_and_read_through() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = new_bucket("pacifica");
    let config = write_config(
        dir.path(),
        &bucket,
        r#"[[cloud.policies]]
store = "moto"
ids = [100, 199]
copy_after_secs = 0
retain_local_secs = 0
"#,
    );
    let server = start(dir.path(), &config);
    let http = reqwest::Client::new();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let url = format!("{}/150", server.url);
    let r = http.put(&url).body(data.clone()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let other = format!("{}/250", server.url);
    assert_eq!(
        http.put(&other)
            .body("stays")
            .send()
            .await
            .unwrap()
            .status(),
        201
    );

    wait_until("id 150 is archived", Duration::from_secs(30), || async {
        let r = http.head(&url).send().await.unwrap();
        h(r.headers(), "x-pacifica-hsm-state") == "migrated"
    })
    .await;
    let local = dir.path().join("archive/file.96");
    assert!(!local.exists(), "the local copy is released");
    let r = http.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        h(r.headers(), "x-pacifica-file"),
        format!("s3://{bucket}/site-a/file.96")
    );
    assert_eq!(h(r.headers(), "x-pacifica-file-storage-media"), "tape");
    assert_eq!(h(r.headers(), "x-content-length"), "300000");

    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());
    let r = http
        .get(&url)
        .header("Range", "bytes=1000-1099")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(h(r.headers(), "content-range"), "bytes 1000-1099/300000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[1000..1100]);
    // An id no policy selects stays local.
    let r = http.head(&other).send().await.unwrap();
    assert_eq!(h(r.headers(), "x-pacifica-hsm-state"), "resident");

    let metrics = http
        .get(format!("{}/.metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "archive_cloud_copied_objects_total{store=\"moto\"} 1",
        "archive_cloud_copied_bytes_total{store=\"moto\"} 300000",
        "archive_cloud_released_objects_total{store=\"moto\"} 1",
        "archive_cloud_read_through_total{store=\"moto\"} 2",
        "archive_cloud_errors_total{store=\"moto\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    // Deleting the archived id deletes it in the store.
    assert_eq!(http.delete(&url).send().await.unwrap().status(), 200);
    assert_eq!(http.head(&url).send().await.unwrap().status(), 404);
}

async fn swift_token(http: &reqwest::Client, url: &str) -> String {
    let r = http
        .get(format!("{url}/auth/v1.0"))
        .header("X-Auth-User", "test:tester")
        .header("X-Auth-Key", "testing")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    r.headers()["x-auth-token"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_objects_are_archived_on_request_and_served_through() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = new_bucket("swift");
    // Copies only when asked (a long copy_after), so the HLM requests do the work.
    let config = write_config(
        dir.path(),
        &bucket,
        r#"[[cloud.policies]]
store = "moto"
account = "AUTH_test"
container = "cold"
copy_after_secs = 86400
propagate_delete = true
"#,
    );
    let server = start(dir.path(), &config);
    let http = reqwest::Client::new();
    let token = swift_token(&http, &server.url).await;
    let v1 = format!("{}/v1/AUTH_test", server.url);
    let send = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{v1}/{path}"))
            .header("X-Auth-Token", &token)
    };
    assert!(send(reqwest::Method::PUT, "cold")
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    for (name, body) in [("a", "alpha"), ("b", "bravo"), ("c", "charlie")] {
        let r = send(reqwest::Method::PUT, &format!("cold/{name}"))
            .header("X-Object-Meta-Color", "blue")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let etag_before = send(reqwest::Method::HEAD, "cold/b")
        .send()
        .await
        .unwrap()
        .headers()["etag"]
        .clone();

    let r = http
        .post(format!("{}/hlm/v1/migrate/AUTH_test/cold/b", server.url))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let status_url = format!("{}/hlm/v1/status/AUTH_test/cold", server.url);
    wait_until("b is migrated", Duration::from_secs(30), || async {
        let status: Value = http
            .get(&status_url)
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        status["/AUTH_test/cold/b"] == "migrated" && status["/AUTH_test/cold/a"] == "resident"
    })
    .await;
    assert!(!dir.path().join("archive/.swift/AUTH_test/cold/b").exists());

    // Read through: same data, ETag and metadata as before; ranges too.
    let r = send(reqwest::Method::GET, "cold/b").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], etag_before);
    assert_eq!(h(r.headers(), "x-object-meta-color"), "blue");
    assert_eq!(r.text().await.unwrap(), "bravo");
    let r = send(reqwest::Method::GET, "cold/b")
        .header("Range", "bytes=1-3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.text().await.unwrap(), "rav");
    let listing: Value = send(reqwest::Method::GET, "cold?format=json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);

    // Objects only in the store (another site's) are listed in order with the local ones, paging
    // across the boundary, and served through.
    let store = archive_cloud::store::RemoteStore::open(
        "moto",
        &archive_cloud::StoreConfig {
            url: format!("s3://{bucket}/site-a"),
            endpoint: s3_endpoint(),
            region: "us-east-1".into(),
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
            allow_http: true,
            ..archive_cloud::StoreConfig::default()
        },
    )
    .unwrap();
    for name in ["b5", "d"] {
        let path = store.path_of(&format!(".swift/AUTH_test/cold/{name}"));
        store
            .store
            .put(&path, format!("remote {name}").into_bytes().into())
            .await
            .unwrap();
    }
    let mut pages = Vec::new();
    let mut marker = String::new();
    loop {
        let page: Value = send(
            reqwest::Method::GET,
            &format!("cold?format=json&limit=2&marker={marker}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let names: Vec<String> = page
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
        if names.is_empty() {
            break;
        }
        marker = names.last().unwrap().clone();
        pages.push(names);
    }
    assert_eq!(pages, [vec!["a", "b"], vec!["b5", "c"], vec!["d"]]);
    let r = send(reqwest::Method::GET, "cold/b5").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "remote b5");

    // Recall brings it back.
    let r = http
        .post(format!("{}/hlm/v1/recall/AUTH_test/cold/b", server.url))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_until("b is back", Duration::from_secs(30), || async {
        dir.path().join("archive/.swift/AUTH_test/cold/b").exists()
    })
    .await;
    wait_until("b is premigrated", Duration::from_secs(30), || async {
        let status: Value = http
            .get(&status_url)
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        status["/AUTH_test/cold/b"] == "premigrated"
    })
    .await;
    // Deleting propagates: gone locally and remotely.
    assert_eq!(
        send(reqwest::Method::DELETE, "cold/b")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        send(reqwest::Method::GET, "cold/b")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[test]
fn start_up_stops_naming_an_unreachable_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "no-such-bucket-anywhere", "");
    let output = Command::new(binary())
        .args([
            "-c",
            config.to_str().unwrap(),
            "-a",
            "127.0.0.1",
            "-p",
            "0",
            "--prefix",
        ])
        .arg(dir.path().join("archive"))
        .env_remove("ARCHIVEINTERFACE_CONFIG")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cloud store `moto`") && stderr.contains("no-such-bucket-anywhere"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");
}

/// A queue URL on a fresh schema of the test PostgreSQL.
async fn fresh_postgres_queue() -> String {
    use sqlx::Connection;
    let base = std::env::var("ARCHIVEINTERFACE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| {
            panic!(
            "PostgreSQL is required and not reachable at {base}: {e}\nstart it (apt-get install \
             postgresql && pg_ctlcluster 15 main start, database 'test' with trust auth on \
             127.0.0.1) or set ARCHIVEINTERFACE_TEST_POSTGRES_URL"
        )
        });
    let schema = format!(
        "cloud_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.ok();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

fn metric(text: &str, name: &str) -> u64 {
    let prefix = format!("{name}{{store=\"moto\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_queue_copy_each_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = new_bucket("twice");
    let queue = fresh_postgres_queue().await;
    let config = write_config(
        dir.path(),
        &bucket,
        r#"[[cloud.policies]]
store = "moto"
ids = [1, 1000]
copy_after_secs = 0
"#,
    );
    let env = [("ARCHIVEINTERFACE_HLM__QUEUE_URL", queue.as_str())];
    let start_one = || {
        let mut command = Command::new(binary());
        for (k, v) in env {
            command.env(k, v);
        }
        ServerProcess::start_with(
            command,
            &dir.path().join("archive"),
            &["-c", config.to_str().unwrap()],
        )
    };
    let (a, b) = (start_one(), start_one());
    let http = reqwest::Client::new();
    let files = 16;
    for id in 1..=files {
        let server = if id % 2 == 0 { &a } else { &b };
        let r = http
            .put(format!("{}/{id}", server.url))
            .body(format!("file {id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    wait_until("every file is copied", Duration::from_secs(60), || async {
        let mut all = true;
        for id in 1..=files {
            let r = http.head(format!("{}/{id}", a.url)).send().await.unwrap();
            all &= h(r.headers(), "x-pacifica-hsm-state") == "premigrated";
        }
        all
    })
    .await;
    // Scans on both instances keep running; give them time to (wrongly) copy again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut copied = 0;
    for server in [&a, &b] {
        let text = http
            .get(format!("{}/.metrics", server.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        copied += metric(&text, "archive_cloud_copied_objects_total");
    }
    assert_eq!(
        copied, files,
        "each file uploaded exactly once across both instances"
    );
}

/// The TOML examples of the README's cloud tier section.
fn readme_examples() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("## Cloud tier")
        .expect("README has a cloud tier section");
    let section = &readme[start..];
    let section = &section[..section[3..]
        .find("\n## ")
        .map(|e| e + 3)
        .unwrap_or(section.len())];
    section
        .split("```toml\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_examples_load_and_the_minio_one_serves() {
    let dir = tempfile::tempdir().unwrap();
    let examples = readme_examples();
    assert_eq!(examples.len(), 3, "AWS, MinIO/Ceph and GCS examples");
    for (n, example) in examples.iter().enumerate() {
        let file = dir.path().join(format!("example{n}.toml"));
        std::fs::write(&file, example).unwrap();
        let config = archiveinterface::config::Config::load(
            Some(&file),
            &archiveinterface::cli::FlagOverrides::default(),
        )
        .unwrap_or_else(|e| panic!("README example {n} does not load: {e}\n{example}"));
        assert_eq!(config.cloud.stores.len(), 1, "{example}");
        assert!(!config.cloud.policies.is_empty(), "{example}");
    }
    // The MinIO example, pointed at the loopback S3 server instead of minio.internal.
    let minio = examples
        .iter()
        .find(|e| e.contains("minio.internal"))
        .expect("the MinIO example");
    let bucket = new_bucket("readme");
    let adapted = minio
        .replace("http://minio.internal:9000", &s3_endpoint())
        .replace("s3://archive/", &format!("s3://{bucket}/"));
    let file = dir.path().join("minio.toml");
    std::fs::write(&file, adapted).unwrap();
    let server = start(dir.path(), &file);
    let http = reqwest::Client::new();
    let url = format!("{}/42", server.url);
    assert_eq!(
        http.put(&url)
            .body("example")
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    // The start-up check passed (the port opened) with the example's options; the tier answers.
    let r = http.head(&url).send().await.unwrap();
    assert_eq!(h(r.headers(), "x-pacifica-hsm-state"), "resident");
    assert_eq!(
        http.get(&url).send().await.unwrap().text().await.unwrap(),
        "example"
    );
}

/// A TCP relay to the S3 server that can be taken down (refusing new connections and cutting open
/// ones) and brought back: the store going away under a running server.
struct Relay {
    endpoint: String,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    fn start(target: String) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (is_down, conns) = (down.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if is_down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                {
                    let mut conns = conns.lock().unwrap();
                    conns.push(client.try_clone().unwrap());
                    conns.push(server.try_clone().unwrap());
                }
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut c1, mut s1) = (client, server);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c1, &mut s1);
                    let _ = s1.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Relay {
            endpoint,
            down,
            open,
        }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
        if down {
            for conn in self.open.lock().unwrap().drain(..) {
                let _ = conn.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

async fn metrics_text(http: &reqwest::Client, server: &ServerProcess) -> String {
    http.get(format!("{}/.metrics", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_on_read_and_a_store_that_goes_down_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = new_bucket("relay");
    let relay = Relay::start(s3_endpoint().trim_start_matches("http://").to_string());
    let config = write_config(
        dir.path(),
        &bucket,
        r#"[[cloud.policies]]
store = "moto"
ids = [1, 100]
copy_after_secs = 2
retain_local_secs = 0
[[cloud.policies]]
store = "moto"
ids = [200, 299]
retain_local_secs = 0
restore_on_read = true
"#,
    );
    let config_text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&s3_endpoint(), &relay.endpoint);
    std::fs::write(&config, config_text).unwrap();
    let server = start(dir.path(), &config);
    let http = reqwest::Client::new();
    let state = |id: u32| {
        let (http, url) = (http.clone(), format!("{}/{id}", server.url));
        async move {
            let r = http.head(&url).send().await.unwrap();
            h(r.headers(), "x-pacifica-hsm-state").to_string()
        }
    };
    for (id, body) in [(1, "one"), (201, "two hundred one")] {
        let r = http
            .put(format!("{}/{id}", server.url))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    wait_until(
        "1 and 201 are archived",
        Duration::from_secs(30),
        || async { state(1).await == "migrated" && state(201).await == "migrated" },
    )
    .await;

    // restore_on_read: the GET restores the file, then serves the local copy.
    let r = http
        .get(format!("{}/201", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "two hundred one");
    let text = metrics_text(&http, &server).await;
    assert_eq!(metric(&text, "archive_cloud_restored_objects_total"), 1);
    assert_eq!(metric(&text, "archive_cloud_read_through_total"), 0);

    // A file written now, due for its copy in 2 s; then the store goes away.
    assert_eq!(
        http.put(format!("{}/2", server.url))
            .body("written while up")
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    relay.set_down(true);
    let r = http.get(format!("{}/1", server.url)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("cloud store `moto`"),
        "{body}"
    );
    // Local files stay readable; their tier is unknown while the store is away.
    let r = http.get(format!("{}/2", server.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "written while up");
    assert_eq!(state(2).await, "unknown");
    // A new id cannot be checked against the store: refused, nothing stored.
    let r = http
        .put(format!("{}/3", server.url))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(!dir.path().join("archive/file.3").exists());
    // The archive of 2 is queued and fails while the store is away (retried with backoff).
    wait_until(
        "copies fail while the store is down",
        Duration::from_secs(30),
        || async {
            metric(
                &metrics_text(&http, &server).await,
                "archive_cloud_errors_total",
            ) >= 4
        },
    )
    .await;
    assert!(
        dir.path().join("archive/file.2").exists(),
        "nothing released"
    );

    relay.set_down(false);
    wait_until(
        "2 is archived once the store is back",
        Duration::from_secs(60),
        || async { state(2).await == "migrated" },
    )
    .await;
    assert_eq!(
        http.get(format!("{}/2", server.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "written while up"
    );
    assert_eq!(
        http.get(format!("{}/1", server.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "one"
    );
}

/// Bytes of the large-object test: 1 GiB unless `ARCHIVEINTERFACE_TEST_CLOUD_LARGE_MIB` says otherwise.
fn large_object_mib() -> u64 {
    std::env::var("ARCHIVEINTERFACE_TEST_CLOUD_LARGE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// Block `i` (1 MiB) of the large object: cheap to make and to check, different per block.
fn large_block(i: u64) -> Vec<u8> {
    let mut block = vec![(i % 251) as u8; 1 << 20];
    block[..8].copy_from_slice(&i.to_le_bytes());
    block
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_file_is_archived_and_read_through_with_bounded_memory() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let bucket = new_bucket("large");
    let config = write_config(
        dir.path(),
        &bucket,
        r#"[[cloud.policies]]
store = "moto"
ids = [1, 10]
retain_local_secs = 0
"#,
    );
    let server = start(dir.path(), &config);
    let http = reqwest::Client::new();
    http.put(format!("{}/20", server.url))
        .body("warm-up")
        .send()
        .await
        .unwrap();
    let before = server.peak_rss_kib();

    let blocks = large_object_mib();
    let body = futures::stream::iter(0..blocks).map(|i| Ok::<_, std::io::Error>(large_block(i)));
    let url = format!("{}/5", server.url);
    let r = http
        .put(&url)
        .header("content-length", blocks << 20)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    wait_until(
        "the large file is archived",
        Duration::from_secs(600),
        || async {
            let r = http.head(&url).send().await.unwrap();
            h(r.headers(), "x-pacifica-hsm-state") == "migrated"
        },
    )
    .await;
    assert!(!dir.path().join("archive/file.5").exists());

    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(blocks << 20));
    let mut stream = r.bytes_stream();
    let mut offset = 0u64;
    let mut expected = large_block(0);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let in_block = (offset % (1 << 20)) as usize;
            if in_block == 0 {
                expected = large_block(offset >> 20);
            }
            let n = rest.len().min((1 << 20) - in_block);
            assert!(
                rest[..n] == expected[in_block..in_block + n],
                "content differs at byte {offset}"
            );
            rest = &rest[n..];
            offset += n as u64;
        }
    }
    assert_eq!(offset, blocks << 20);
    let grown_mib = (server.peak_rss_kib() - before) / 1024;
    assert!(
        grown_mib < 96,
        "peak RSS grew by {grown_mib} MiB for a {blocks} MiB archive and read-through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_while_archiving_leaves_a_complete_copy_and_finishes_after_restart() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let bucket = new_bucket("killed");
    let config = write_config(
        dir.path(),
        &bucket,
        r#"[[cloud.policies]]
store = "moto"
ids = [1, 10]
retain_local_secs = 0
"#,
    );
    // A killed holder's request is taken over once its lease expires: short leases here.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[hlm]\n", "[hlm]\nlease_secs = 2\n");
    std::fs::write(&config, text).unwrap();
    let blocks = 40u64;
    let expected: Vec<u8> = (0..blocks).flat_map(large_block).collect();
    let check = |http: reqwest::Client, url: String| {
        let expected = expected.clone();
        async move {
            let r = http.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 200, "{url}");
            let mut got = Vec::with_capacity(expected.len());
            let mut stream = r.bytes_stream();
            while let Some(chunk) = stream.next().await {
                got.extend_from_slice(&chunk.unwrap());
            }
            assert!(got == expected, "{url}: the content differs");
        }
    };
    let http = reqwest::Client::new();
    // Killed at different points of the archive: the scan, the upload, the release.
    for (id, delay_ms) in [(1u32, 300u64), (2, 900), (3, 1800)] {
        let mut server = start(dir.path(), &config);
        let url = format!("{}/{id}", server.url);
        let r = http.put(&url).body(expected.clone()).send().await.unwrap();
        assert_eq!(r.status(), 201);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        server.signal(libc::SIGKILL);
        server.wait_exit(Duration::from_secs(10));

        let server = start(dir.path(), &config);
        let url = format!("{}/{id}", server.url);
        check(http.clone(), url.clone()).await;
        wait_until(
            "the archive finishes after the restart",
            Duration::from_secs(60),
            || async {
                let r = http.head(&url).send().await.unwrap();
                h(r.headers(), "x-pacifica-hsm-state") == "migrated"
            },
        )
        .await;
        check(http.clone(), url).await;
    }
}
