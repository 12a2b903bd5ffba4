//! Slow clients cannot starve the server: 600 transfers that stall on the client's side (more than the
//! blocking pool's 512 threads) while HEAD and a small PUT still answer at once. Real binary, real
//! socket.

mod common;

use common::server::{tree, ServerProcess};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: usize = 1 << 20;
/// More writers than the blocking pool has threads on their own.
const SLOW_WRITERS: usize = 520;
const SLOW_READERS: usize = 80;

/// The best and the worst of three timed tries of `request`.
async fn timed(
    what: &str,
    mut request: impl FnMut(u32) -> reqwest::RequestBuilder,
    expect: u16,
) -> (Duration, Duration) {
    let mut times = Vec::new();
    for i in 0..3 {
        let started = Instant::now();
        let response = request(i).send().await.unwrap_or_else(|e| {
            panic!("{what} got no answer within 30 s while slow clients were connected: {e}")
        });
        assert_eq!(response.status(), expect, "{what}");
        times.push(started.elapsed());
    }
    (
        times.iter().copied().min().unwrap(),
        times.iter().copied().max().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_slow_clients_do_not_starve_head_and_small_puts() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let server = ServerProcess::start(&prefix, &[]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Larger than what socket buffers and read-ahead take in, so readers really wait on the client.
    let big = vec![7u8; 32 * MIB];
    let put = http
        .put(format!("{}/big", server.url))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);

    let mut held = Vec::new();
    // Writers announce 4 MiB, send a little over 1 MiB (past the small-upload path) and then stall.
    let part = vec![1u8; MIB + 4096];
    for i in 0..SLOW_WRITERS {
        let mut s = TcpStream::connect(&server.addr).await.unwrap();
        let head = format!(
            "PUT /slow-{i} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            4 * MIB
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&part).await.unwrap();
        held.push(s);
    }
    // Readers ask for 32 MiB and read only the first bytes of the answer.
    for _ in 0..SLOW_READERS {
        let mut s = TcpStream::connect(&server.addr).await.unwrap();
        s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 12];
        s.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        held.push(s);
    }
    // Let the server take in what was sent: every writer's partial file exists.
    let deadline = Instant::now() + Duration::from_secs(60);
    while tree(&prefix).len() < SLOW_WRITERS + 1 {
        assert!(
            Instant::now() < deadline,
            "only {} of {SLOW_WRITERS} uploads started (is the blocking pool starved?)",
            tree(&prefix).len() - 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let url = server.url.clone();
    let (best_head, worst_head) = timed("HEAD", |_| http.head(format!("{url}/big")), 204).await;
    let (best_put, worst_put) = timed(
        "a small PUT",
        |i| http.put(format!("{url}/small-{i}")).body("small"),
        201,
    )
    .await;
    eprintln!("HEAD {best_head:?}..{worst_head:?}, small PUT {best_put:?}..{worst_put:?}");
    // One second is the bound; the best of three keeps a moment of load on a shared machine from
    // failing the test, the worst bounds the rest generously.
    for (what, best, worst) in [
        ("HEAD", best_head, worst_head),
        ("small PUT", best_put, worst_put),
    ] {
        assert!(
            best < Duration::from_secs(1),
            "{what} took {best:?} at best"
        );
        assert!(worst < Duration::from_secs(10), "{what} took {worst:?}");
    }
    drop(held);
}
