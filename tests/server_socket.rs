//! The real binary over a real socket: streaming with bounded memory, cut-off and stalled uploads,
//! concurrency, a full disk, a crash in the middle of a write, graceful shutdown, and start-up refusals.

mod common;

use bytes::Bytes;
use common::server::{
    binary, raw_request, refuse_to_start, tree, wait_for_partials, ServerProcess,
};
use futures::StreamExt;
use std::io::Read;
use std::process::Command;
use std::time::Duration;

const MIB: usize = 1 << 20;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

/// Block `i` of a large test file: a 1 MiB pattern stamped with its index (cheap to make and check).
fn block(i: u64, base: &Bytes) -> Bytes {
    let mut b = base.to_vec();
    b[..8].copy_from_slice(&i.to_le_bytes());
    Bytes::from(b)
}

fn base_block() -> Bytes {
    Bytes::from((0..MIB).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_put_and_get_stream_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("archive"), &[]);
    let http = client();
    // Warm up so allocator arenas exist before the baseline.
    http.put(format!("{}/warm", server.url))
        .body("x")
        .send()
        .await
        .unwrap();
    let before = server.peak_rss_kib();

    let blocks: u64 = 1024;
    let base = base_block();
    let body_base = base.clone();
    let body = futures::stream::iter(0..blocks)
        .map(move |i| Ok::<_, std::io::Error>(block(i, &body_base)));
    let response = http
        .put(format!("{}/9999", server.url))
        .header("content-length", blocks * MIB as u64)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["total_bytes"].as_u64(), Some(blocks * MIB as u64));

    let response = http
        .get(format!("{}/9999", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(blocks * MIB as u64));
    let mut stream = response.bytes_stream();
    let mut offset: u64 = 0;
    let mut expected = block(0, &base);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let in_block = (offset % MIB as u64) as usize;
            if in_block == 0 {
                expected = block(offset / MIB as u64, &base);
            }
            let n = rest.len().min(MIB - in_block);
            assert!(
                rest[..n] == expected[in_block..in_block + n],
                "content differs at byte {offset}"
            );
            rest = &rest[n..];
            offset += n as u64;
        }
    }
    assert_eq!(offset, blocks * MIB as u64);
    let grown_mib = (server.peak_rss_kib() - before) / 1024;
    assert!(
        grown_mib < 64,
        "peak RSS grew by {grown_mib} MiB for a 1 GiB transfer"
    );
}

/// After a failed write: nothing under `id`, and the id can be written normally.
async fn assert_absent_then_writable(url: &str, id: &str) {
    let http = client();
    let head = http.head(format!("{url}/{id}")).send().await.unwrap();
    assert_eq!(head.status(), 404, "{id} is visible after a failed write");
    let put = http
        .put(format!("{url}/{id}"))
        .body("whole")
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.status(),
        201,
        "{id} cannot be written after a failed write"
    );
}

async fn wait_for_no_files(dir: &std::path::Path, expected: usize) -> Vec<std::path::PathBuf> {
    for _ in 0..200 {
        let files = tree(dir);
        if files.len() == expected {
            return files;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tree(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_upload_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let server = ServerProcess::start(&prefix, &[]);
    // 8 MiB announced, 3 MiB sent; once part of it is on disk, the client vanishes.
    let head = format!(
        "PUT /cut HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        8 * MIB
    );
    let s = raw_request(&server.addr, &head, &vec![1u8; 3 * MIB]);
    let partial = wait_for_partials(&prefix, 1).remove(0);
    s.shutdown(std::net::Shutdown::Both).unwrap();
    drop(s);
    let files = wait_for_no_files(&prefix, 0).await;
    assert!(files.is_empty(), "debris: {files:?}");
    assert!(!partial.exists());
    assert_absent_then_writable(&server.url, "cut").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_upload_times_out_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let mut command = Command::new(binary());
    // Long enough to see the partial file on a loaded machine before the server gives up.
    command.env("ARCHIVEINTERFACE_BODY_IDLE_TIMEOUT_SECS", "3");
    let server = ServerProcess::start_with(command, &prefix, &[]);
    // 8 MiB announced, 3 MiB sent, then silence: the server has written part of it when it gives up.
    let head = format!(
        "PUT /stalled HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        8 * MIB
    );
    let mut s = raw_request(&server.addr, &head, &vec![2u8; 3 * MIB]);
    let partial = wait_for_partials(&prefix, 1).remove(0);
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("no data received"), "{response}");
    assert!(
        !partial.exists(),
        "partial file kept: {}",
        partial.display()
    );
    assert!(tree(&prefix).is_empty(), "{:?}", tree(&prefix));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_puts_of_one_id_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("archive"), &[]);
    let http = client();
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let (http, url) = (http.clone(), format!("{}/race", server.url));
        tasks.push(tokio::spawn(async move {
            let body = futures::stream::iter(
                (0..4).map(move |_| Ok::<_, std::io::Error>(Bytes::from(vec![i; MIB]))),
            );
            let r = http
                .put(url)
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }));
    }
    let mut created = 0;
    for t in tasks {
        let (status, text) = t.await.unwrap();
        match status {
            201 => created += 1,
            500 => assert!(text.contains("Can't open"), "{text}"),
            other => panic!("unexpected {other}: {text}"),
        }
    }
    assert_eq!(created, 1);
    let data = http
        .get(format!("{}/race", server.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(data.len(), 4 * MIB);
    assert!(data.iter().all(|&b| b == data[0]), "mixed content");
    assert_eq!(tree(&dir.path().join("archive")).len(), 1);
}

/// A PUT refused before its body was read is answered (not cut off by a reset) and asks the client to
/// close, so the client's next request does not go out on a connection the server is closing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_refused_before_its_body_is_answered_and_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("archive"), &[]);
    let http = client();
    let url = format!("{}/taken", server.url);
    assert_eq!(
        http.put(&url).body("first").send().await.unwrap().status(),
        201
    );
    for _ in 0..5 {
        let body = futures::stream::iter(
            (0..8).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![7u8; MIB]))),
        );
        let refused = http
            .put(&url)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .expect("the refusal reaches the client");
        assert_eq!(refused.status(), 500);
        assert_eq!(refused.headers()["connection"], "close");
        assert!(refused.text().await.unwrap().contains("Can't open"));
        // The next request on the same client gets its answer.
        let got = http.get(&url).send().await.unwrap();
        assert_eq!(got.bytes().await.unwrap().as_ref(), b"first");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_parallel_clients_get_their_own_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("archive"), &["--use-id2filename"]);
    let http = client();
    let mut tasks = Vec::new();
    for id in 3000..3064u32 {
        let (http, url) = (http.clone(), format!("{}/{id}", server.url));
        tasks.push(tokio::spawn(async move {
            let body = format!("content of {id}").repeat(100);
            assert_eq!(
                http.put(&url)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap()
                    .status(),
                201
            );
            let got = http.get(&url).send().await.unwrap().text().await.unwrap();
            assert_eq!(got, body);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_upload_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(&dir.path().join("archive"), &[]);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let mut started_tx = Some(started_tx);
    let body = futures::stream::iter(0..10u8).then(move |i| {
        let tx = if i == 1 { started_tx.take() } else { None };
        async move {
            if let Some(tx) = tx {
                let _ = tx.send(());
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok::<_, std::io::Error>(Bytes::from(vec![i; 1000]))
        }
    });
    let url = format!("{}/slow", server.url);
    let upload = tokio::spawn(async move {
        client()
            .put(url)
            .header("content-length", 10_000)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
    });
    started_rx.await.unwrap();
    server.signal(libc::SIGTERM);
    let response = upload.await.unwrap().expect("upload answered");
    assert_eq!(response.status(), 201);
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert_eq!(
        std::fs::read(dir.path().join("archive/slow"))
            .unwrap()
            .len(),
        10_000
    );
    assert!(server.log_text().contains("shutting down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_a_put_leaves_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let server = ServerProcess::start(&prefix, &[]);
    let head = format!(
        "PUT /crash HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        8 * MIB
    );
    let _client = raw_request(&server.addr, &head, &vec![3u8; 3 * MIB]);
    // Wait until the partial file exists, then kill -9.
    wait_for_partials(&prefix, 1);
    assert_eq!(tree(&prefix).len(), 1, "{:?}", tree(&prefix));
    server.signal(libc::SIGKILL);
    drop(server);

    let server = ServerProcess::start(&prefix, &[]);
    assert!(
        tree(&prefix).is_empty(),
        "partial file not swept: {:?}",
        tree(&prefix)
    );
    assert!(
        server.log_text().contains("removed partial files"),
        "{}",
        server.log_text()
    );
    assert_absent_then_writable(&server.url, "crash").await;
}

/// A command running the server with a tmpfs of `size` mounted at `mount_point` in a private mount
/// namespace (`unshare`): only the server sees it. Its view is at `/proc/<pid>/root<mount_point>`.
fn server_over_tmpfs(mount_point: &std::path::Path, size: &str) -> Command {
    let probe = Command::new("unshare")
        .args(["--mount", "--map-root-user", "true"])
        .status();
    assert!(
        matches!(probe, Ok(s) if s.success()),
        "this test needs `unshare --mount --map-root-user` (util-linux) with user namespaces enabled, \
         to mount a small tmpfs: run as root or enable kernel.unprivileged_userns_clone"
    );
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--map-root-user", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size={size} tmpfs '{}' && exec '{}' \"$@\"",
            mount_point.display(),
            binary()
        ))
        .arg("archiveinterface");
    command
}

/// Runs the server on a 2 MiB tmpfs in a private mount namespace (`unshare`), so the disk really fills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_507_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("small-disk");
    std::fs::create_dir(&prefix).unwrap();
    let command = server_over_tmpfs(&prefix, "2m");
    let server = ServerProcess::start_with(command, &prefix, &[]);
    let inside = std::path::PathBuf::from(format!(
        "/proc/{}/root{}",
        server.child.id(),
        prefix.display()
    ));
    let http = client();
    assert_eq!(
        http.put(format!("{}/small", server.url))
            .body(vec![5u8; 100_000])
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let response = http
        .put(format!("{}/huge", server.url))
        .body(vec![6u8; 4 * MIB])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 507);
    let err: serde_json::Value = response.json().await.unwrap();
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("Not enough storage"),
        "{err}"
    );
    assert_eq!(
        http.head(format!("{}/huge", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let files = tree(&inside);
    assert_eq!(
        files,
        [std::path::PathBuf::from("small")],
        "debris after ENOSPC"
    );
    let small = http
        .get(format!("{}/small", server.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(small.len() == 100_000 && small.iter().all(|&b| b == 5));
    assert_eq!(
        http.put(format!("{}/after", server.url))
            .body("fits")
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
}

/// PATCH from another file system (a tmpfs only the server sees): the content is copied through a
/// partial file, made read-only and durable, then the source is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_from_another_file_system_copies_then_removes_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let (prefix, incoming) = (dir.path().join("archive"), dir.path().join("incoming"));
    std::fs::create_dir(&prefix).unwrap();
    std::fs::create_dir(&incoming).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "patch_source_dirs = [{:?}]\n",
            incoming.display().to_string()
        ),
    )
    .unwrap();
    let server = ServerProcess::start_with(
        server_over_tmpfs(&incoming, "8m"),
        &prefix,
        &["-c", config.to_str().unwrap()],
    );
    let seen_by_server = std::path::PathBuf::from(format!(
        "/proc/{}/root{}",
        server.child.id(),
        incoming.display()
    ));
    let data: Vec<u8> = (0..3 * MIB).map(|i| (i % 251) as u8).collect();
    let source = seen_by_server.join("upload.bin");
    std::fs::write(&source, &data).unwrap();
    let mtime = std::time::UNIX_EPOCH + Duration::from_secs(1_400_000_000);
    std::fs::File::options()
        .write(true)
        .open(&source)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert!(
        tree(&incoming).is_empty(),
        "the source must live on the server's tmpfs only"
    );

    let response = client()
        .patch(format!("{}/42", server.url))
        .header("Content-Type", "application/json")
        .body(serde_json::json!({"path": incoming.join("upload.bin")}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    assert!(!source.exists(), "the source was not removed");
    let stored = prefix.join("42");
    let meta = std::fs::symlink_metadata(&stored).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.permissions().mode() & 0o777, 0o444);
    assert_eq!(meta.modified().unwrap(), mtime);
    assert_eq!(meta.nlink(), 1);
    assert!(std::fs::read(&stored).unwrap() == data);
    assert_eq!(tree(&prefix), [std::path::PathBuf::from("42")], "debris");
}

#[test]
fn bad_configuration_stops_start_up_before_the_port_opens() {
    let err = refuse_to_start(&[], &[("ARCHIVEINTERFACE_BODY_IDLE_TIMEOUT_SECS", "soon")]);
    assert!(
        err.contains("body_idle_timeout_secs") && err.contains("soon"),
        "{err}"
    );
    let err = refuse_to_start(&["-t", "tapeworm"], &[]);
    assert!(err.contains("type") && err.contains("tapeworm"), "{err}");
    let err = refuse_to_start(&[], &[("PAI_BACKEND_TYPE", "hsmsideband-typo")]);
    assert!(err.contains("hsmsideband-typo"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "port = 8080\nalow_overwrite = true\n").unwrap();
    let err = refuse_to_start(&["-c", file.to_str().unwrap()], &[]);
    assert!(err.contains("alow_overwrite"), "{err}");
    let err = refuse_to_start(
        &[],
        &[("ARCHIVEINTERFACE_CONFIG", "/nonexistent/archive.toml")],
    );
    assert!(err.contains("/nonexistent/archive.toml"), "{err}");
    let err = refuse_to_start(
        &[],
        &[(
            "ARCHIVEINTERFACE_PATCH_SOURCE_DIRS",
            "[\"/nonexistent/ingest\"]",
        )],
    );
    assert!(
        err.contains("patch_source_dirs") && err.contains("/nonexistent/ingest"),
        "{err}"
    );
    let err = refuse_to_start(&["dispatcher"], &[]);
    assert!(
        err.contains("nothing to dispatch") && err.contains("posix"),
        "{err}"
    );
    let err = refuse_to_start(
        &["-t", "tiered"],
        &[("ARCHIVEINTERFACE_HLM__QUEUE_URL", "mysql://x")],
    );
    assert!(err.contains("hlm.queue_url"), "{err}");
    let err = refuse_to_start(
        &["-t", "tiered"],
        &[("ARCHIVEINTERFACE_TIERED__DRIVES", "0")],
    );
    assert!(err.contains("tiered.drives"), "{err}");
    let err = refuse_to_start(&["--prefix", "/proc/version/archive"], &[]);
    assert!(err.contains("/proc/version/archive"), "{err}");
}

#[test]
fn check_config_prints_the_merged_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "port = 9123\nuse_id2filename = true\n").unwrap();
    let out = Command::new(binary())
        .args([
            "-c",
            file.to_str().unwrap(),
            "--prefix",
            "/srv/archive",
            "check-config",
        ])
        .env("PAI_BACKEND_TYPE", "posix")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("port = 9123") && text.contains("use_id2filename = true"),
        "{text}"
    );
    assert!(text.contains("prefix = \"/srv/archive\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_logs_inside_a_span_with_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("archive"), &[]);
    let r = client()
        .get(format!("{}/nope", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    // The refusal is logged inside the request's span, which names the request id, method and URI.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let log = server.log_text();
        let line = log.lines().find(|l| l.contains("request refused"));
        if let Some(line) = line {
            assert!(
                line.contains(&format!("id={id}"))
                    && line.contains("GET")
                    && line.contains("/nope"),
                "{line}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line for the request:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("archive"), &["--log-format", "json"]);
    let r = client()
        .get(format!("{}/absent", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let log = server.log_text();
        if let Some(line) = log.lines().find(|l| l.contains("request refused")) {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
            assert_eq!(v["message"], "request refused", "{v}");
            assert_eq!(v["span"]["uri"], "/absent", "{v}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no log line:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        server
            .log_text()
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "{}",
        server.log_text()
    );
}
