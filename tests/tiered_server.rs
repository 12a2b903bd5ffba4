//! The Pacifica flows on the tiered backend against a started server: migration by the age policy,
//! HEAD reporting tape / disk and bytes per level, POST queueing a recall and answering at once, GET
//! recalling then streaming, and 503 with Retry-After when a recall takes longer than `get_wait_secs`.

mod common;

use common::server::{binary, ServerProcess};
use std::process::Command;
use std::time::{Duration, Instant};

const OLD: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

fn tiered_server(prefix: &std::path::Path, env: &[(&str, &str)]) -> ServerProcess {
    let mut command = Command::new(binary());
    command
        .env("ARCHIVEINTERFACE_TIERED__MIGRATE_AFTER_SECS", "3600")
        .env("ARCHIVEINTERFACE_TIERED__POLICY_INTERVAL_SECS", "1")
        .env("ARCHIVEINTERFACE_HSM__BATCH_WINDOW_SECS", "0.05");
    for (k, v) in env {
        command.env(k, v);
    }
    ServerProcess::start_with(command, prefix, &["-t", "tiered", "--use-id2filename"])
}

async fn head(http: &reqwest::Client, url: &str) -> reqwest::header::HeaderMap {
    let r = http.head(url).send().await.unwrap();
    assert_eq!(r.status(), 204, "{url}");
    r.headers().clone()
}

fn h<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

async fn wait_for_media(
    http: &reqwest::Client,
    url: &str,
    media: &str,
    within: Duration,
) -> reqwest::header::HeaderMap {
    let deadline = Instant::now() + within;
    loop {
        let headers = head(http, url).await;
        if h(&headers, "x-pacifica-file-storage-media") == media {
            return headers;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never reached {media}: {headers:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn put_old(http: &reqwest::Client, url: &str, body: Vec<u8>) {
    let r = http
        .put(url)
        .header("Last-Modified", OLD)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_stage_and_read_through_the_pacifica_api() {
    let dir = tempfile::tempdir().unwrap();
    let server = tiered_server(&dir.path().join("archive"), &[]);
    let http = reqwest::Client::new();
    let (a, b, fresh) = (
        format!("{}/100", server.url),
        format!("{}/200", server.url),
        format!("{}/300", server.url),
    );
    let data_a: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    put_old(&http, &a, data_a.clone()).await;
    put_old(&http, &b, b"second file".to_vec()).await;
    // A file written now is younger than migrate_after and stays on disk.
    assert_eq!(
        http.put(&fresh).body("new").send().await.unwrap().status(),
        201
    );
    let headers = head(&http, &fresh).await;
    assert_eq!(h(&headers, "x-pacifica-file-storage-media"), "disk");

    // The age policy migrates the two old files.
    let headers = wait_for_media(&http, &a, "tape", Duration::from_secs(20)).await;
    assert_eq!(h(&headers, "x-pacifica-bytes-per-level"), "(0, 300000)");
    assert_eq!(h(&headers, "x-pacifica-hsm-state"), "migrated");
    assert_eq!(h(&headers, "x-content-length"), "300000");
    wait_for_media(&http, &b, "tape", Duration::from_secs(20)).await;
    assert_eq!(
        h(&head(&http, &fresh).await, "x-pacifica-file-storage-media"),
        "disk"
    );
    assert!(
        server.log_text().contains("migrat"),
        "policy not visible in the log:\n{}",
        server.log_text()
    );

    // POST answers at once and queues the recall; HEAD shows it on disk (premigrated) afterwards.
    let started = Instant::now();
    let r = http.post(&a).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"message": "File was staged", "file": "100"}"#
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let headers = wait_for_media(&http, &a, "disk", Duration::from_secs(20)).await;
    assert_eq!(
        h(&headers, "x-pacifica-bytes-per-level"),
        "(300000, 300000)"
    );
    assert_eq!(h(&headers, "x-pacifica-hsm-state"), "premigrated");
    assert_eq!(
        http.get(&a)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec(),
        data_a
    );

    // GET of a migrated file recalls it transparently, then streams it.
    let r = http.get(&b).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"second file");
    assert_eq!(
        h(&head(&http, &b).await, "x-pacifica-file-storage-media"),
        "disk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_recall_answers_503_with_retry_after_then_serves() {
    let dir = tempfile::tempdir().unwrap();
    // Real time, a drive reading 100 kB/s: the 300 kB recall takes 3 s; GET waits only 1 s.
    let server = tiered_server(
        &dir.path().join("archive"),
        &[
            ("ARCHIVEINTERFACE_TIERED__TIME_SCALE", "1"),
            ("ARCHIVEINTERFACE_TIERED__MOUNT_SECS", "0.2"),
            ("ARCHIVEINTERFACE_TIERED__UNMOUNT_SECS", "0.2"),
            ("ARCHIVEINTERFACE_TIERED__READ_BYTES_PER_SEC", "100000"),
            ("ARCHIVEINTERFACE_HSM__GET_WAIT_SECS", "1"),
        ],
    );
    let http = reqwest::Client::new();
    let url = format!("{}/400", server.url);
    let data = vec![42u8; 300_000];
    put_old(&http, &url, data.clone()).await;
    wait_for_media(&http, &url, "tape", Duration::from_secs(60)).await;
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    let err: serde_json::Value = r.json().await.unwrap();
    assert!(
        err["message"].as_str().unwrap().contains("being recalled"),
        "{err}"
    );
    // The recall went on: soon the file is on disk and GET serves it.
    wait_for_media(&http, &url, "disk", Duration::from_secs(60)).await;
    assert_eq!(
        http.get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec(),
        data
    );
}

/// The holder's pid as the lock file and the refusal name it.
fn holder(server: &ServerProcess) -> String {
    format!("pid {} on host", server.child.id())
}

fn second_process(prefix: &std::path::Path, args: &[&str]) -> (Command, String) {
    let port = common::server::free_port();
    let mut command = Command::new(binary());
    command
        .args(args)
        .args(["-t", "tiered", "--prefix", prefix.to_str().unwrap()])
        .args(["-a", "127.0.0.1", "-p", &port])
        .env_remove("ARCHIVEINTERFACE_CONFIG");
    (command, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_a_tiered_archive_is_refused_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let mut first = tiered_server(&prefix, &[]);
    let http = reqwest::Client::new();
    put_old(&http, &format!("{}/1", first.url), b"held".to_vec()).await;

    for args in [&[][..], &["dispatcher"][..]] {
        let (command, port) = second_process(&prefix, args);
        let err = common::server::expect_refusal(command, &port);
        assert!(
            err.contains("held by another process") && err.contains(&holder(&first)),
            "{args:?}: {err}"
        );
    }
    // The first server goes on serving, its files untouched.
    let r = http.get(format!("{}/1", first.url)).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"held");

    // Killed without a chance to clean up, it leaves its lock file; the lock went with the process,
    // so the next server starts.
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(30));
    let lock = prefix.join(".archiveinterface-tiered").join("owner.lock");
    assert!(lock.exists(), "the lock file should outlive its holder");
    let next = tiered_server(&prefix, &[]);
    let r = http.get(format!("{}/1", next.url)).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"held");
    assert!(std::fs::read_to_string(&lock)
        .unwrap()
        .contains(&holder(&next)));
}

#[test]
fn the_split_dispatcher_is_refused_on_the_tiered_backend() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    // A server that leaves its queue to a standalone dispatcher: that dispatcher could never open
    // the archive the server holds.
    let (mut command, port) = second_process(&prefix, &[]);
    command.env("ARCHIVEINTERFACE_HLM__DISPATCHER", "false");
    let err = common::server::expect_refusal(command, &port);
    assert!(
        err.contains("hlm.dispatcher") && err.contains("never run"),
        "{err}"
    );
    // A standalone dispatcher, even with no server running.
    let (command, port) = second_process(&prefix, &["dispatcher"]);
    let err = common::server::expect_refusal(command, &port);
    assert!(
        err.contains("archiveinterface dispatcher") && err.contains("held by one process"),
        "{err}"
    );
    // Neither left the archive held: a server starts on it.
    let server = tiered_server(&prefix, &[]);
    assert!(server.log_text().contains("tiered backend open"));
}
