//! The Pacifica flows on `-t hpss` against a started server, through the C test double of the HPSS
//! client library (`backends/hpss/double/build.sh` builds it): HEAD with the five-tuple and media,
//! GET of a migrated file waiting for its stage, POST stage, byte ranges, the core-server latency
//! limit, injected C errors as clear HTTP errors, logout at shutdown, start-up refused for a missing library or entry
//! point, stages of files on three cartridges issued grouped per cartridge in position order, and
//! the SwiftHLM flow (migrate, status, recall, read; a disk-only class of service refused).
//! Files are migrated through the same backend and double in the test process.

mod common;

use archive_core::{id2filename, ArchiveBackend, Key};
use archive_hpss::{HpssBackend, HpssConfig};
use common::server::{binary, refuse_to_start, ServerProcess};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn double_library(variant: &str) -> PathBuf {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/hpss-double")
        .join(variant);
    assert!(
        lib.is_file(),
        "the HPSS test double {} is missing: build it with backends/hpss/double/build.sh (scripts/test.sh does)",
        lib.display()
    );
    lib
}

/// Sites set this process's `HPSS_DOUBLE_DIR`: one at a time (for runners that run tests as threads).
static ONE_SITE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A test site: the double's state directory (with its keytab) and the archive prefix.
struct Site {
    dir: tempfile::TempDir,
    library: PathBuf,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Site {
    fn new(variant: &str, control: &str) -> Site {
        let one = ONE_SITE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("double")).unwrap();
        std::fs::write(dir.path().join("double/keytab"), b"keytab").unwrap();
        let site = Site {
            dir,
            library: double_library(variant),
            _one: one,
        };
        site.control(control);
        // The in-process backend (used to migrate) talks to the same double state.
        std::env::set_var("HPSS_DOUBLE_DIR", site.double());
        site
    }

    fn double(&self) -> PathBuf {
        self.dir.path().join("double")
    }

    fn prefix(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    /// Replaces the double's control file (atomically: the double reads it on every call).
    fn control(&self, text: &str) {
        let tmp = self.double().join("control.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.double().join("control")).unwrap();
    }

    fn config(&self) -> HpssConfig {
        HpssConfig {
            library: self.library.clone(),
            user: "hpss.unix".into(),
            auth: self.double().join("keytab"),
            sitename: "test.site".into(),
            stage_poll_ms: 20,
            ..HpssConfig::default()
        }
    }

    fn start(&self) -> ServerProcess {
        self.start_with_args(&[])
    }

    fn start_with_args(&self, extra: &[&str]) -> ServerProcess {
        let mut command = Command::new(binary());
        command
            .env("HPSS_DOUBLE_DIR", self.double())
            .env("ARCHIVEINTERFACE_HPSS__LIBRARY", &self.library)
            .env("ARCHIVEINTERFACE_HPSS__AUTH", self.double().join("keytab"))
            .env("ARCHIVEINTERFACE_HPSS__SITENAME", "test.site")
            .env("ARCHIVEINTERFACE_HPSS__STAGE_POLL_MS", "20")
            .env("ARCHIVEINTERFACE_HSM__BATCH_WINDOW_SECS", "0.5")
            .env(
                "ARCHIVEINTERFACE_HLM__QUEUE_URL",
                format!("sqlite://{}/queue.db", self.dir.path().display()),
            );
        let mut args = vec!["-t", "hpss", "--use-id2filename"];
        args.extend_from_slice(extra);
        ServerProcess::start_with(command, &self.prefix(), &args)
    }

    async fn migrate(&self, ids: &[i128]) {
        let (prefix, config) = (self.prefix(), self.config());
        let backend =
            tokio::task::spawn_blocking(move || HpssBackend::open(&prefix, config).unwrap())
                .await
                .unwrap();
        let keys: Vec<Key> = ids
            .iter()
            .map(|&id| Key::new(id2filename(id).trim_start_matches('/')).unwrap())
            .collect();
        for (key, outcome) in backend.migrate(&keys).await.unwrap() {
            outcome.unwrap_or_else(|e| panic!("migrate {key}: {e}"));
        }
    }
}

fn h(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn head(http: &reqwest::Client, url: &str) -> (String, String) {
    let r = http.head(url).send().await.unwrap();
    assert_eq!(r.status(), 204, "{url}");
    (
        h(&r, "x-pacifica-file-storage-media"),
        h(&r, "x-pacifica-bytes-per-level"),
    )
}

async fn put(http: &reqwest::Client, url: &str, body: Vec<u8>) {
    let r = http.put(url).body(body).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_get_stage_and_ranges_of_migrated_files() {
    let site = Site::new("libhpss.so", "stage_ms 300\n");
    let server = site.start();
    let http = reqwest::Client::new();
    let url = format!("{}/100", server.url);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    put(&http, &url, data.clone()).await;
    assert_eq!(
        head(&http, &url).await,
        ("disk".into(), "(200000, 0, 0, 0, 0)".into())
    );

    site.migrate(&[100]).await;
    assert_eq!(
        head(&http, &url).await,
        ("tape".into(), "(0, 200000, 0, 0, 0)".into())
    );
    // GET of a migrated file waits for the stage and returns the exact bytes.
    let started = Instant::now();
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap() == data, "content differs");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "no stage happened"
    );
    assert_eq!(
        head(&http, &url).await,
        ("disk".into(), "(200000, 200000, 0, 0, 0)".into())
    );

    // POST stage answers at once; a file halfway back is reported, never a 500; then it is on disk.
    site.migrate(&[100]).await;
    let r = http.post(&url).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (media, levels) = head(&http, &url).await;
        if media == "disk" {
            assert_eq!(levels, "(200000, 200000, 0, 0, 0)");
            break;
        }
        assert_eq!(media, "tape");
        assert!(
            Instant::now() < deadline,
            "the stage never finished: {levels}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Byte ranges seek correctly.
    let r = http
        .get(&url)
        .header("Range", "bytes=70000-70009")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[70000..70010]);
    let r = http
        .get(format!("{url}?byte_range=5-9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[5..9]);

    // A core server whose clock is 10 s off: 503 with the reference's message.
    site.control("latency_secs 10\n");
    let r = http.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let r = http.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("slow to respond"));
    site.control("");

    // Injected C errors: named in the answer, with the status their errno means.
    site.control("fail hpss_Open -5\n");
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let text = r.text().await.unwrap();
    assert!(text.contains("hpss_Open") && text.contains("-5"), "{text}");
    site.control("fail hpss_Write -28\n");
    let r = http
        .put(format!("{}/101", server.url))
        .body(vec![7u8; 3 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 507, "{}", r.text().await.unwrap());
    site.control("");
    assert_eq!(
        http.head(format!("{}/101", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let leftovers: Vec<_> = common::server::tree(&site.prefix())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".aihpss-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // SIGTERM: the server logs out of HPSS on its way out.
    let mut server = server;
    let mark = site.double().join("logged-out");
    let _ = std::fs::remove_file(&mark);
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    assert!(mark.exists(), "no logout at shutdown");
}

#[test]
fn start_up_names_a_missing_library_or_entry_point() {
    let dir = tempfile::tempdir().unwrap();
    let keytab = dir.path().join("keytab");
    std::fs::write(&keytab, b"k").unwrap();
    let keytab = keytab.to_str().unwrap();
    let double = dir.path().to_str().unwrap();
    let err = refuse_to_start(
        &["-t", "hpss"],
        &[
            ("ARCHIVEINTERFACE_HPSS__LIBRARY", "/nonexistent/libhpss.so"),
            ("ARCHIVEINTERFACE_HLM__ENABLED", "false"),
            ("HPSS_DOUBLE_DIR", double),
        ],
    );
    assert!(err.contains("/nonexistent/libhpss.so"), "{err}");
    let norename = double_library("libhpss-norename.so");
    let err = refuse_to_start(
        &["-t", "hpss"],
        &[
            ("ARCHIVEINTERFACE_HPSS__LIBRARY", norename.to_str().unwrap()),
            ("ARCHIVEINTERFACE_HPSS__AUTH", keytab),
            ("ARCHIVEINTERFACE_HLM__ENABLED", "false"),
            ("HPSS_DOUBLE_DIR", double),
        ],
    );
    assert!(err.contains("hpss_Rename"), "{err}");
}

/// Nine files migrated round-robin over three cartridges, staged in a shuffled order: HPSS receives
/// the stages grouped per cartridge, in position order on each, once per file.
async fn stages_go_grouped_per_cartridge(variant: &str) {
    let site = Site::new(variant, "cartridges 3\nstage_ms 100\n");
    let server = site.start();
    let http = reqwest::Client::new();
    let ids: Vec<i128> = (1..=9).collect();
    for &id in &ids {
        put(&http, &format!("{}/{id}", server.url), vec![id as u8; 1000]).await;
    }
    site.migrate(&ids).await;
    for id in [5, 1, 9, 2, 7, 3, 8, 4, 6] {
        let r = http
            .post(format!("{}/{id}", server.url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    for &id in &ids {
        let r = http
            .get(format!("{}/{id}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.bytes().await.unwrap().as_ref(),
            vec![id as u8; 1000].as_slice()
        );
    }
    let log = std::fs::read_to_string(site.double().join("stage.log")).unwrap();
    let stages: Vec<(String, u64)> = log
        .lines()
        .map(|l| {
            let mut f = l.split(' ');
            (
                f.next().unwrap().to_string(),
                f.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(stages.len(), 9, "one stage per file:\n{log}");
    let mut seen: Vec<&str> = Vec::new();
    for (i, (cartridge, position)) in stages.iter().enumerate() {
        if i > 0 && stages[i - 1].0 == *cartridge {
            assert!(stages[i - 1].1 < *position, "out of position order:\n{log}");
        } else {
            assert!(
                !seen.contains(&cartridge.as_str()),
                "cartridge visited twice:\n{log}"
            );
            seen.push(cartridge);
        }
    }
    assert_eq!(seen.len(), 3, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_stages_go_grouped_per_cartridge_in_position_order() {
    stages_go_grouped_per_cartridge("libhpss.so").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_stages_go_grouped_per_cartridge_in_position_order() {
    stages_go_grouped_per_cartridge("libhpss-nobatch.so").await;
}

async fn swift_token(http: &reqwest::Client, url: &str) -> String {
    let r = http
        .get(format!("{url}/auth/v1.0"))
        .header("X-Auth-User", "test:tester")
        .header("X-Auth-Key", "testing")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.headers()["x-auth-token"].to_str().unwrap().to_string()
}

async fn wait_for_state(http: &reqwest::Client, url: &str, token: &str, object: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http
            .get(format!("{url}/hlm/v1/status{object}"))
            .header("X-Auth-Token", token)
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        if body[object] == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{object} never became {state}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swifthlm_migrate_status_recall_and_read() {
    let site = Site::new("libhpss.so", "stage_ms 200\n");
    let config = site.dir.path().join("swift.toml");
    std::fs::write(
        &config,
        "[hlm]\npoll_interval_ms = 50\nbackoff_base_secs = 1\nbackoff_max_secs = 1\nmax_attempts = 1\n\
         [[swift.users]]\naccount = \"test\"\nuser = \"tester\"\nkey = \"testing\"\n",
    )
    .unwrap();
    let server = site.start_with_args(&["-c", config.to_str().unwrap()]);
    let http = reqwest::Client::new();
    let token = swift_token(&http, &server.url).await;
    let send = |method: reqwest::Method, path: &str, body: Vec<u8>| {
        http.request(method, format!("{}{path}", server.url))
            .header("X-Auth-Token", &token)
            .body(body)
            .send()
    };
    let r = send(reqwest::Method::PUT, "/v1/AUTH_test/cont", vec![])
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let data = b"object on tape".to_vec();
    let r = send(reqwest::Method::PUT, "/v1/AUTH_test/cont/obj", data.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    wait_for_state(
        &http,
        &server.url,
        &token,
        "/AUTH_test/cont/obj",
        "resident",
    )
    .await;

    let r = send(
        reqwest::Method::POST,
        "/hlm/v1/migrate/AUTH_test/cont/obj",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    wait_for_state(
        &http,
        &server.url,
        &token,
        "/AUTH_test/cont/obj",
        "migrated",
    )
    .await;
    let r = send(reqwest::Method::GET, "/v1/AUTH_test/cont/obj", vec![])
        .await
        .unwrap();
    assert_eq!(r.status(), 412);

    let r = send(
        reqwest::Method::POST,
        "/hlm/v1/recall/AUTH_test/cont/obj",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    wait_for_state(
        &http,
        &server.url,
        &token,
        "/AUTH_test/cont/obj",
        "premigrated",
    )
    .await;
    let r = send(reqwest::Method::GET, "/v1/AUTH_test/cont/obj", vec![])
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), data.as_slice());

    // A class of service without a tape level: the migrate request fails, saying why.
    site.control("cos disk\n");
    let r = send(
        reqwest::Method::PUT,
        "/v1/AUTH_test/cont/disk",
        b"disk only".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = send(
        reqwest::Method::POST,
        "/hlm/v1/migrate/AUTH_test/cont/disk",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = send(
            reqwest::Method::GET,
            "/hlm/v1/requests/AUTH_test/cont/disk?format=json",
            vec![],
        )
        .await
        .unwrap();
        let text = r.text().await.unwrap();
        if text.contains("without a tape level") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refused migration was never reported: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_state(
        &http,
        &server.url,
        &token,
        "/AUTH_test/cont/disk",
        "resident",
    )
    .await;
}

/// Status calls that take seconds (a busy core server) hold up only themselves: uploads and reads
/// of other files go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_hpss_call_holds_up_only_its_own_request() {
    let site = Site::new("libhpss.so", "");
    let server = site.start();
    let http = reqwest::Client::new();
    put(&http, &format!("{}/1", server.url), b"slow".to_vec()).await;
    site.control("slow hpss_FileGetXAttributes 3000\n");
    let slow: Vec<_> = (0..8)
        .map(|_| {
            let (http, url) = (http.clone(), format!("{}/1", server.url));
            tokio::spawn(async move { http.head(url).send().await.unwrap().status() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    for id in 2..6 {
        put(
            &http,
            &format!("{}/{id}", server.url),
            vec![id as u8; 100_000],
        )
        .await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "uploads waited {:?} behind slow status calls",
        started.elapsed()
    );
    for head in slow {
        assert_eq!(head.await.unwrap(), 204);
    }
}
