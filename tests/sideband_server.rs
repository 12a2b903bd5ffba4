//! The Oracle HSM sideband backend behind a started server, on a real MariaDB catalog with the command
//! double as `stage`, `archive` and `release`: HEAD of online, offline, premigrated and lagging files;
//! GET of an offline file staged through the recall scheduler; stages across three volumes issued
//! grouped by volume in position order; the database taken away in the middle of requests (503
//! naming it) and back; 10,000 objects' status in one HLM request; start-up refused, naming the
//! database, when it is unreachable.

mod common;

use archive_sideband_testkit::database::{server_url, TestCatalog};
use archive_sideband_testkit::double::DoubleSetup;
use archive_sideband_testkit::proxy::{server_addr, Link, Proxy};
use archive_sideband_testkit::sam::Sam;
use common::server::{binary, refuse_to_start, ServerProcess};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

struct SidebandServer {
    server: ServerProcess,
    double: DoubleSetup,
    prefix: PathBuf,
    catalog: TestCatalog,
    _dir: tempfile::TempDir,
}

/// A server on `-t hsm_sideband` whose catalog URL is `url_of(catalog URL)` (to put a proxy between).
async fn start(url_of: impl FnOnce(&str) -> String) -> SidebandServer {
    start_on(url_of, |_| {}).await
}

/// As [`start`], with `populate` writing files into the archive directory before the server starts.
async fn start_on(
    url_of: impl FnOnce(&str) -> String,
    populate: impl FnOnce(&std::path::Path),
) -> SidebandServer {
    let dir = tempfile::tempdir().unwrap();
    let catalog = TestCatalog::create().await;
    let double = DoubleSetup::under(dir.path(), &catalog.url);
    let prefix = double.mount.join("archive");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            r#"use_id2filename = true
[hsm]
batch_window_secs = 1.0
get_wait_secs = 30
[hlm]
poll_interval_ms = 100
[[swift.users]]
account = "test"
user = "tester"
key = "testing"
[hsm_sideband]
url = {url:?}
sam_qfs_prefix = "/archive"
stage_command = {stage:?}
archive_command = {archive:?}
release_command = {release:?}
pool_size = 2
query_timeout_secs = 2
wait_timeout_secs = 30
poll_interval_ms = 20
"#,
            url = url_of(&catalog.url),
            stage = double.argv("stage", &[]),
            archive = double.argv("archive", &[]),
            release = double.argv("release", &[]),
        ),
    )
    .unwrap();
    std::fs::create_dir_all(&prefix).unwrap();
    populate(&prefix);
    let server = ServerProcess::start_with(
        Command::new(binary()),
        &prefix,
        &["-t", "hsm_sideband", "-c", config.to_str().unwrap()],
    );
    SidebandServer {
        server,
        double,
        prefix,
        catalog,
        _dir: dir,
    }
}

impl SidebandServer {
    fn url(&self, id: u64) -> String {
        format!("{}/{id}", self.server.url)
    }

    fn path(&self, id: u64) -> PathBuf {
        let name = archive_core::id2filename(i128::from(id));
        self.prefix.join(name.trim_start_matches('/'))
    }

    /// Runs the double directly, as the site's HSM would act on its own.
    async fn sam(&self, command: &str, options: &[&str], ids: &[u64]) {
        let files: Vec<PathBuf> = ids.iter().map(|&id| self.path(id)).collect();
        let double = self.double.clone();
        let (command, options): (String, Vec<String>) = (
            command.into(),
            options.iter().map(|o| o.to_string()).collect(),
        );
        tokio::task::spawn_blocking(move || {
            let options: Vec<&str> = options.iter().map(String::as_str).collect();
            double.run(&command, &options, &files)
        })
        .await
        .unwrap();
    }

    /// The files of each `stage` invocation, as ids (of those given).
    fn stages(&self, ids: &[u64]) -> Vec<Vec<u64>> {
        let by_path: BTreeMap<String, u64> = ids
            .iter()
            .map(|&id| (self.path(id).display().to_string(), id))
            .collect();
        self.double
            .invocations()
            .into_iter()
            .filter(|(command, _)| command == "stage")
            .map(|(_, files)| {
                files
                    .iter()
                    .map(|f| {
                        *by_path
                            .get(f)
                            .unwrap_or_else(|| panic!("unexpected stage of {f}"))
                    })
                    .collect()
            })
            .collect()
    }
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn put(http: &reqwest::Client, url: &str, body: &[u8]) {
    let r = http.put(url).body(body.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 201, "PUT {url}");
}

async fn head(http: &reqwest::Client, url: &str) -> (String, String, String) {
    let r = http.head(url).send().await.unwrap();
    assert_eq!(r.status(), 204, "HEAD {url}");
    (
        header(&r, "x-pacifica-file-storage-media"),
        header(&r, "x-pacifica-bytes-per-level"),
        header(&r, "x-pacifica-hsm-state"),
    )
}

async fn wait_on_disk(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while head(http, url).await.0 != "disk" {
        assert!(Instant::now() < deadline, "{url} never came back on disk");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_reports_each_state_and_get_of_an_offline_file_stages_it_first() {
    let s = start(str::to_string).await;
    let http = reqwest::Client::new();
    let ids = [100, 101, 102, 103];
    for (id, body) in [
        (100, &b"lagging"[..]),
        (101, b"online!"),
        (102, b"premigrated"),
        (103, b"offline data"),
    ] {
        put(&http, &s.url(id), body).await;
    }
    s.sam("dbupd", &[], &[101]).await;
    s.sam("archive", &[], &[102, 103]).await;
    s.sam("release", &[], &[103]).await;

    let expect = |media: &str, levels: &str, state: &str| {
        (media.to_string(), levels.to_string(), state.to_string())
    };
    assert_eq!(
        head(&http, &s.url(100)).await,
        expect("disk", "(7,)", "resident")
    );
    assert_eq!(
        head(&http, &s.url(101)).await,
        expect("disk", "(7,)", "resident")
    );
    assert_eq!(
        head(&http, &s.url(102)).await,
        expect("disk", "(11, 11)", "premigrated")
    );
    assert_eq!(
        head(&http, &s.url(103)).await,
        expect("tape", "(0, 12)", "migrated")
    );
    let missing = http.head(s.url(999)).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    // A plain GET of the offline file: staged through the scheduler, then streamed.
    let r = http.get(s.url(103)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"offline data");
    assert_eq!(s.stages(&ids), vec![vec![103]]);
    assert_eq!(
        head(&http, &s.url(103)).await,
        expect("disk", "(12, 12)", "premigrated")
    );
    // POST of files already on disk stages nothing.
    for id in [100, 101, 102] {
        assert_eq!(http.post(s.url(id)).send().await.unwrap().status(), 200);
    }
    assert_eq!(s.stages(&ids).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_across_three_volumes_go_grouped_by_volume_in_position_order() {
    let s = start(str::to_string).await;
    let http = reqwest::Client::new();
    let ids: Vec<u64> = (1..=9).collect();
    for &id in &ids {
        put(&http, &s.url(id), format!("file {id}").as_bytes()).await;
    }
    // Archived in this order, each onto the volume id % 3: positions follow the archiving order.
    let archive_order = [9, 1, 5, 3, 7, 2, 8, 4, 6];
    let mut expected: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for id in archive_order {
        let vsn = format!("VOL{}", id % 3);
        s.sam("archive", &["--vsn", &vsn], &[id]).await;
        expected.entry(vsn).or_default().push(id);
    }
    s.sam("release", &[], &ids).await;
    for &id in &ids {
        assert_eq!(head(&http, &s.url(id)).await.0, "tape");
    }

    // Staged in id order by separate requests; they meet in the scheduler.
    for &id in &ids {
        let r = http.post(s.url(id)).send().await.unwrap();
        assert_eq!(r.status(), 200, "POST {id}");
    }
    for &id in &ids {
        wait_on_disk(&http, &s.url(id)).await;
    }
    let mut stages = s.stages(&ids);
    stages.sort();
    let mut wanted: Vec<Vec<u64>> = expected.into_values().collect();
    wanted.sort();
    assert_eq!(
        stages, wanted,
        "one stage command per volume, files in position order"
    );
    for &id in &ids {
        let body = http
            .get(s.url(id))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.as_ref(), format!("file {id}").as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_answers_503_naming_it_and_the_server_recovers() {
    let proxy = Proxy::start(server_addr(&server_url())).await;
    let s = start(|url| proxy.url(url)).await;
    let host = format!("127.0.0.1:{}", proxy.addr.port());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    put(&http, &s.url(5), b"still here").await;
    s.sam("archive", &[], &[5]).await;
    assert_eq!(head(&http, &s.url(5)).await.2, "premigrated");
    // An object for the HLM status too.
    let r = http
        .get(format!("{}/auth/v1.0", s.server.url))
        .header("X-Auth-User", "test:tester")
        .header("X-Auth-Key", "testing")
        .send()
        .await
        .unwrap();
    let token = r.headers()["x-auth-token"].to_str().unwrap().to_string();
    for (path, body) in [("/v1/AUTH_test/c", ""), ("/v1/AUTH_test/c/o", "object")] {
        let r = http
            .put(format!("{}{path}", s.server.url))
            .header("X-Auth-Token", &token)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "PUT {path}: {}", r.status());
    }
    let hlm_status = format!("{}/hlm/v1/status/AUTH_test/c", s.server.url);

    for fault in [Link::Cut, Link::Stalled] {
        proxy.set(fault);
        let started = Instant::now();
        let r = http.get(s.url(5)).send().await.unwrap();
        assert_eq!(r.status(), 503, "{fault:?}");
        assert!(!header(&r, "retry-after").is_empty());
        let body: serde_json::Value = r.json().await.unwrap();
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(&host), "{fault:?}: {message}");
        assert_eq!(http.head(s.url(5)).send().await.unwrap().status(), 503);
        let r = http
            .get(&hlm_status)
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{fault:?}: HLM status");
        let body = r.text().await.unwrap();
        assert!(body.contains(&host), "{fault:?}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{fault:?}: hung"
        );

        proxy.set(Link::Up);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = http.get(s.url(5)).send().await.unwrap();
            if r.status() == 200 {
                assert_eq!(r.bytes().await.unwrap().as_ref(), b"still here");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{fault:?}: no recovery: {}",
                r.status()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_objects_status_in_one_hlm_request() {
    const COUNT: usize = 10_000;
    let names: Vec<String> = (0..COUNT).map(|i| format!("obj-{i:05}")).collect();
    // The objects are on the mount before the server starts (as on a site that already holds data);
    // the Swift index is built from them on first use.
    let s = start_on(str::to_string, |prefix| {
        let dir = prefix.join(".swift/AUTH_test/big");
        std::fs::create_dir_all(&dir).unwrap();
        // The container as an earlier version recorded it, so the index build takes it in.
        let records = prefix.join(".archiveinterface-swift/.swift/containers/AUTH_test");
        std::fs::create_dir_all(&records).unwrap();
        std::fs::write(
            records.join("big"),
            r#"{"created_ns": 1700000000000000000, "headers": {}}"#,
        )
        .unwrap();
        for name in &names {
            std::fs::write(dir.join(name), name).unwrap();
        }
    })
    .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let r = http
        .get(format!("{}/auth/v1.0", s.server.url))
        .header("X-Auth-User", "test:tester")
        .header("X-Auth-Key", "testing")
        .send()
        .await
        .unwrap();
    let token = r.headers()["x-auth-token"].to_str().unwrap().to_string();
    // A third not catalogued yet, a third online, a third offline.
    let dir = s.prefix.join(".swift/AUTH_test/big");
    let files: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    let sam = Sam::new(s.catalog.pool.clone(), s.double.mount.clone());
    sam.catalogue_many(&files[COUNT / 3..2 * COUNT / 3], true)
        .await
        .unwrap();
    sam.catalogue_many(&files[2 * COUNT / 3..], false)
        .await
        .unwrap();

    let status = format!("{}/hlm/v1/status/AUTH_test/big", s.server.url);
    let started = Instant::now();
    let r = http
        .get(&status)
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let states: BTreeMap<String, String> = r.json().await.unwrap();
    let first = started.elapsed();
    assert_eq!(states.len(), COUNT);
    let count = |state: &str| states.values().filter(|s| *s == state).count();
    assert_eq!(count("resident"), 2 * COUNT / 3);
    assert_eq!(count("migrated"), COUNT - 2 * COUNT / 3);
    assert_eq!(states["/AUTH_test/big/obj-09999"], "migrated");
    assert_eq!(states["/AUTH_test/big/obj-00000"], "resident");
    // Once the index exists, the status itself is a few catalog queries.
    let started = Instant::now();
    let r = http
        .get(&status)
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let again: BTreeMap<String, String> = r.json().await.unwrap();
    let took = started.elapsed();
    assert_eq!(again, states);
    assert!(
        took < Duration::from_secs(10),
        "status of {COUNT} objects took {took:?} (the first, with the index build, {first:?})"
    );
    eprintln!("status of {COUNT} objects: {took:?} (first request, building the index: {first:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hlm_migrate_and_recall_run_the_commands_and_status_follows_the_catalog() {
    let s = start(str::to_string).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = s.server.url.clone();
    let r = http
        .get(format!("{base}/auth/v1.0"))
        .header("X-Auth-User", "test:tester")
        .header("X-Auth-Key", "testing")
        .send()
        .await
        .unwrap();
    let token = r.headers()["x-auth-token"].to_str().unwrap().to_string();
    let send = |method: reqwest::Method, path: &str, body: &'static [u8]| {
        http.request(method, format!("{base}{path}"))
            .header("X-Auth-Token", &token)
            .body(body)
            .send()
    };
    assert!(send(reqwest::Method::PUT, "/v1/AUTH_test/c", b"")
        .await
        .unwrap()
        .status()
        .is_success());
    for (name, body) in [("a", &b"object a"[..]), ("b", b"object b")] {
        let r = send(
            reqwest::Method::PUT,
            &format!("/v1/AUTH_test/c/{name}"),
            body,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 201);
    }
    let status = || async {
        let r = send(reqwest::Method::GET, "/hlm/v1/status/AUTH_test/c", b"")
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<BTreeMap<String, String>>().await.unwrap()
    };
    let wait_for = |state: &'static str| async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let states = status().await;
            if states.values().all(|s| s == state) {
                return states;
            }
            assert!(Instant::now() < deadline, "never all {state}: {states:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(wait_for("resident").await.len(), 2);

    let r = send(reqwest::Method::POST, "/hlm/v1/migrate/AUTH_test/c", b"")
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_for("migrated").await;
    let r = send(reqwest::Method::GET, "/v1/AUTH_test/c/a", b"")
        .await
        .unwrap();
    assert_eq!(r.status(), 412, "a migrated object needs a recall first");

    let r = send(reqwest::Method::POST, "/hlm/v1/recall/AUTH_test/c", b"")
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_for("premigrated").await;
    let r = send(reqwest::Method::GET, "/v1/AUTH_test/c/b", b"")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"object b");
    let commands: Vec<String> = s
        .double
        .invocations()
        .into_iter()
        .map(|(command, _)| command)
        .collect();
    assert_eq!(commands, ["archive", "release", "stage"]);
}

#[test]
fn start_up_with_an_unreachable_database_is_refused_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("mysql://root@127.0.0.1:{port}/samfs1");
    let dir = tempfile::tempdir().unwrap();
    let err = refuse_to_start(
        &[
            "-t",
            "hsm_sideband",
            "--prefix",
            dir.path().to_str().unwrap(),
        ],
        &[
            ("ARCHIVEINTERFACE_HSM_SIDEBAND__URL", url.as_str()),
            ("ARCHIVEINTERFACE_HSM_SIDEBAND__SAM_QFS_PREFIX", "/archive"),
            ("ARCHIVEINTERFACE_HSM_SIDEBAND__QUERY_TIMEOUT_SECS", "2"),
        ],
    );
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    // The reference's backend name, with its settings missing, is refused naming the key.
    let err = refuse_to_start(&["-t", "hsmsideband"], &[]);
    assert!(err.contains("hsm_sideband.host"), "{err}");
}
