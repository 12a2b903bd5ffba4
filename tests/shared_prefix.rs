//! Several real server processes on one posix prefix: a server starting (and sweeping) while another
//! has an upload in flight, a standalone dispatcher doing the same, a crashed server's partial files
//! swept while a live one's are kept, one id raced through two processes, a sweep that meets a
//! directory it cannot read, and a sweep that runs off the async runtime. The first server runs as
//! PID 1 of its own PID namespace, as in a container, so nothing can rest on process ids.

mod common;

use bytes::Bytes;
use common::server::{binary, raw_request, tree, wait_for_partials, ServerProcess};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const MIB: usize = 1 << 20;
const UPLOAD: usize = 8 * MIB;
const FIRST_PART: usize = 3 * MIB;
const RACE_PART: usize = 128 * 1024;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

/// The server as PID 1 of a fresh PID namespace (what every server is in a container).
fn start_as_pid_1(prefix: &Path) -> ServerProcess {
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "true"])
        .status();
    assert!(
        matches!(probe, Ok(s) if s.success()),
        "this test needs `unshare --pid --fork` (util-linux) and the right to create PID namespaces: run as root"
    );
    let mut command = Command::new("unshare");
    command.args(["--pid", "--fork", "--kill-child", binary()]);
    ServerProcess::start_with(command, prefix, &[])
}

/// Starts a PUT of `id` ([`UPLOAD`] bytes of `fill`), sending only its first [`FIRST_PART`] bytes.
fn start_upload(server: &ServerProcess, id: &str, fill: u8) -> TcpStream {
    let head = format!(
        "PUT /{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {UPLOAD}\r\n\r\n"
    );
    raw_request(&server.addr, &head, &vec![fill; FIRST_PART])
}

/// Sends the rest of an upload begun by [`start_upload`] and returns the response.
fn finish_upload(mut upload: TcpStream, fill: u8) -> String {
    upload.write_all(&vec![fill; UPLOAD - FIRST_PART]).unwrap();
    let mut response = String::new();
    upload.read_to_string(&mut response).unwrap();
    response
}

fn partial_of(partials: &[PathBuf], id: &str) -> PathBuf {
    partials
        .iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!(".{id}."))
        })
        .unwrap_or_else(|| panic!("no partial file of {id} in {partials:?}"))
        .clone()
}

async fn get(url: &str) -> (u16, Bytes) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_and_a_dispatcher_starting_on_a_shared_prefix_keep_uploads_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let first = start_as_pid_1(&prefix);
    let upload = start_upload(&first, "inflight", 7);
    let partial = wait_for_partials(&prefix, 1).remove(0);

    // A second server and a standalone dispatcher start on the prefix; both sweep it at start-up.
    let second = ServerProcess::start(&prefix, &[]);
    let dispatcher = Command::new(binary())
        .args(["--prefix", prefix.to_str().unwrap(), "dispatcher"])
        .env_remove("ARCHIVEINTERFACE_CONFIG")
        .output()
        .unwrap();
    // It opened the backend (and swept) before finding nothing to dispatch on a posix prefix.
    let said = String::from_utf8_lossy(&dispatcher.stderr);
    assert!(said.contains("nothing to dispatch"), "{said}");
    assert!(
        partial.exists(),
        "the upload in flight lost its partial file"
    );

    let response = finish_upload(upload, 7);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let (status, data) = get(&format!("{}/inflight", second.url)).await;
    assert_eq!(status, 200);
    assert!(data.len() == UPLOAD && data.iter().all(|&b| b == 7));

    // One id raced through both processes: exactly one PUT wins. The bodies are read whole before
    // the answer (each fits one write), so every loser gets its answer rather than a closed socket.
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let base = if i % 2 == 0 { &first.url } else { &second.url };
        let url = format!("{base}/race");
        tasks.push(tokio::spawn(async move {
            let body = futures::stream::iter(
                (0..4).map(move |_| Ok::<_, std::io::Error>(Bytes::from(vec![i; RACE_PART]))),
            );
            let r = client()
                .put(url)
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            (201, _) => created += 1,
            (500, text) => assert!(text.contains("Can't open"), "{text}"),
            (other, text) => panic!("unexpected {other}: {text}"),
        }
    }
    assert_eq!(created, 1);
    let (_, data) = get(&format!("{}/race", first.url)).await;
    assert!(data.len() == 4 * RACE_PART && data.iter().all(|&b| b == data[0]));
    assert_eq!(
        tree(&prefix),
        [PathBuf::from("inflight"), PathBuf::from("race")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_servers_partial_files_are_swept_and_a_live_ones_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let live = start_as_pid_1(&prefix);
    let mut doomed = ServerProcess::start(&prefix, &[]);
    let live_upload = start_upload(&live, "from-live", 1);
    wait_for_partials(&prefix, 1);
    let _doomed_upload = start_upload(&doomed, "from-doomed", 2);
    let partials = wait_for_partials(&prefix, 2);
    let (live_partial, doomed_partial) = (
        partial_of(&partials, "from-live"),
        partial_of(&partials, "from-doomed"),
    );
    doomed.signal(libc::SIGKILL);
    doomed.wait_exit(Duration::from_secs(30));
    assert!(doomed_partial.exists(), "a crash leaves its partial file");

    let next = ServerProcess::start(&prefix, &[]);
    assert!(
        !doomed_partial.exists(),
        "the crashed server's partial file was kept"
    );
    assert!(
        live_partial.exists(),
        "the live server's partial file was removed"
    );
    assert!(
        next.log_text().contains("removed partial files"),
        "{}",
        next.log_text()
    );

    let response = finish_upload(live_upload, 1);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert_eq!(get(&format!("{}/from-doomed", next.url)).await.0, 404);
    let (status, data) = get(&format!("{}/from-live", next.url)).await;
    assert!(status == 200 && data.len() == UPLOAD && data.iter().all(|&b| b == 1));
    assert_eq!(tree(&prefix), [PathBuf::from("from-live")]);
}

/// Root reads every directory, so the server runs as `nobody` here (via `setpriv`), over a prefix
/// holding a root-only `lost+found` as a freshly made file system does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_sweep_goes_past_a_directory_it_cannot_read() {
    use std::os::unix::fs::PermissionsExt;
    let probe = Command::new("setpriv").arg("--version").output();
    assert!(
        matches!(probe, Ok(ref o) if o.status.success()),
        "this test needs `setpriv` (util-linux) to run the server as another user"
    );
    const NOBODY: u32 = 65534;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let prefix = dir.path().join("archive");
    std::fs::create_dir(&prefix).unwrap();
    std::os::unix::fs::chown(&prefix, Some(NOBODY), Some(NOBODY)).unwrap();
    let lost = prefix.join("lost+found");
    std::fs::create_dir(&lost).unwrap();
    std::fs::write(lost.join("#1234"), b"fsck found this").unwrap();
    std::fs::set_permissions(&lost, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A partial file no live process owns (its owner never registered: a crash of an older version).
    let orphan = prefix.join(".7.1-0.partial");
    std::fs::write(&orphan, b"half").unwrap();

    // The build tree may sit below a directory `nobody` cannot enter: run a copy (or a hard link).
    let program = dir.path().join("archiveinterface");
    if std::fs::hard_link(binary(), &program).is_err() {
        std::fs::copy(binary(), &program).unwrap();
    }
    let mut command = Command::new("setpriv");
    command
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(&program);
    let server = ServerProcess::start_with(command, &prefix, &[]);
    let log = server.log_text();
    assert!(
        log.contains("lost+found") && log.contains("skipped"),
        "the unreadable directory is not reported:\n{log}"
    );
    assert!(!orphan.exists(), "the sweep stopped before the orphan");
    let put = client()
        .put(format!("{}/7", server.url))
        .body("stored")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    assert_eq!(get(&format!("{}/7", server.url)).await.1, "stored");
}

/// Records the thread of every event that reports removed partial files (it has a `removed` field).
struct SweepThreads(std::sync::Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SweepThreads {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().fields().field("removed").is_some() {
            self.0.lock().unwrap().push(std::thread::current().id());
        }
    }
}

/// On a single-threaded runtime, start-up work done on the runtime would run on the test's own thread;
/// the sweep (a walk of the whole prefix) must run on the blocking pool instead.
#[test]
fn the_start_up_sweep_runs_off_the_async_runtime() {
    use tracing_subscriber::layer::SubscriberExt;
    let threads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(SweepThreads(threads.clone())),
    )
    .expect("no other subscriber in this test");
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    std::fs::create_dir(&prefix).unwrap();
    let orphan = prefix.join(".5.1-0.partial");
    std::fs::write(&orphan, b"half").unwrap();
    let config = archiveinterface::config::Config {
        prefix,
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(archiveinterface::server::open_backend(&config))
        .expect("backend opens");
    assert!(!orphan.exists(), "not swept");
    let seen = threads.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one report of the sweep");
    assert_ne!(
        seen[0],
        std::thread::current().id(),
        "the sweep ran on the async runtime's thread"
    );
}
