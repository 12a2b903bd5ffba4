//! Connection handling of the real binary over a real socket: clients that never finish their request
//! head (silent, trickling, idle on keep-alive) are closed and logged while a slow body goes on, a
//! half-closed client still gets its answer, and shutdown closes what is still busy after the drain
//! timeout.

mod common;

use common::server::{binary, tree, ServerProcess};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Whether the server closed `s` (end of stream or reset) before `within` passed.
fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Reads one response whose body is `Content-Length` long, leaving the connection open.
fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

#[test]
fn clients_without_a_request_head_are_closed_and_logged_while_a_slow_body_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let mut command = Command::new(binary());
    command.env("ARCHIVEINTERFACE_HEADER_READ_TIMEOUT_SECS", "1");
    let server = ServerProcess::start_with(command, &prefix, &[]);

    let mut silent = connect(&server.addr);
    let mut idle = connect(&server.addr);
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut idle).starts_with("HTTP/1.1 200"));
    // A body that arrives a byte at a time over three header timeouts is not cut off.
    let mut slow_body = connect(&server.addr);
    slow_body
        .write_all(b"PUT /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        .unwrap();
    let mut trickle = connect(&server.addr);
    let head =
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let started = Instant::now();
    let mut trickle_alive = true;
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        slow_body.write_all(b"x").unwrap();
        if trickle_alive && trickle.write_all(&head[i..i + 1]).is_err() {
            trickle_alive = false;
        }
    }
    assert!(started.elapsed() > Duration::from_secs(2));
    let answer = read_response(&mut slow_body);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(std::fs::read(prefix.join("slow")).unwrap(), b"xxxxxxxxxx");

    for (name, s) in [
        ("silent", &mut silent),
        ("idle keep-alive", &mut idle),
        ("trickling", &mut trickle),
    ] {
        assert!(
            closed_by_server(s, Duration::from_secs(20)),
            "the {name} connection is still open"
        );
    }
    let log = server.log_text();
    let closed = log
        .lines()
        .filter(|l| l.contains("no complete request head"))
        .count();
    assert!(closed >= 3, "{closed} closures logged:\n{log}");
}

/// `nc -N` and others shut their sending side down once the request is out.
#[test]
fn a_half_closed_client_gets_its_answer_and_its_upload_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let server = ServerProcess::start(&prefix, &[]);
    let mut s = connect(&server.addr);
    s.write_all(b"PUT /half HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer:?}");
    assert_eq!(std::fs::read(prefix.join("half")).unwrap(), b"hello");

    let mut s = connect(&server.addr);
    s.write_all(b"GET /half HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"),
        "{answer:?}"
    );
}

#[test]
fn shutdown_closes_what_is_still_busy_after_the_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let mut command = Command::new(binary());
    command.env("ARCHIVEINTERFACE_SHUTDOWN_DRAIN_TIMEOUT_SECS", "1");
    let mut server = ServerProcess::start_with(command, &prefix, &[]);
    // An upload that stalls (well within the body idle timeout of 60 s).
    let mut stalled = connect(&server.addr);
    stalled
        .write_all(b"PUT /stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nten bytes!")
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    let log = server.log_text();
    assert!(log.contains("drain timeout"), "{log}");
    assert!(closed_by_server(&mut stalled, Duration::from_secs(5)));
    assert!(tree(&prefix).is_empty(), "{:?}", tree(&prefix));
}

/// Every line of a human-format log starts with its timestamp (`2026-12-01T13:14:52...`).
fn is_log_line(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T'
}

#[test]
fn control_characters_in_names_are_refused_and_cannot_forge_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[[swift.users]]\naccount = \"a\"\nuser = \"admin\"\nkey = \"k\"\nreseller_admin = true\n",
    )
    .unwrap();
    let server = ServerProcess::start(
        &dir.path().join("archive"),
        &["-c", config.to_str().unwrap()],
    );
    let mut s = connect(&server.addr);
    s.write_all(
        b"GET /auth/v1.0 HTTP/1.1\r\nHost: x\r\nX-Auth-User: a:admin\r\nX-Auth-Key: k\r\n\r\n",
    )
    .unwrap();
    let answer = read_response(&mut s);
    let token = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-auth-token: "))
        .unwrap_or_else(|| panic!("no token: {answer}"))
        .to_string();
    let long = "a".repeat(5000);
    for path in [
        "/12%0A2026-01-01T00:00:00Z%20INFO%20forged",
        "/12%0D34",
        "/12%0934",
        "/12%7F34",
        "/v1/AUTH_a%0A2026-01-01T00:00:00Z%20INFO%20forged/c/o",
        "/v1/AUTH_a/c%0Ax/o",
        "/v1/AUTH_a/c/o%0Dx",
    ] {
        let mut s = connect(&server.addr);
        s.write_all(
            format!("PUT {path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nContent-Length: 1\r\n\r\nx")
                .as_bytes(),
        )
        .unwrap();
        let answer = read_response(&mut s);
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("control character"), "{path}: {answer}");
    }
    let mut s = connect(&server.addr);
    s.write_all(format!("GET /{long} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    read_response(&mut s);
    // The answers are logged asynchronously; wait for the last one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log_text().contains("uri=/aaaa") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = server.log_text();
    for line in log.lines() {
        assert!(
            is_log_line(line),
            "a line that is not a log line: {line:?}\n{log}"
        );
    }
    assert!(log.contains("uri=/aaaa"), "{log}");
    assert!(
        !log.contains(&format!("uri=/{long}")),
        "the whole long URI was logged"
    );
}

#[test]
fn a_request_with_content_length_and_transfer_encoding_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let server = ServerProcess::start(&prefix, &[]);
    let mut s = connect(&server.addr);
    // The body is not sent: the refusal must not wait for it.
    s.write_all(
        b"PUT /both HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    let answer = read_response(&mut s);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("Content-Length") && answer.contains("Transfer-Encoding"),
        "{answer}"
    );
    assert!(closed_by_server(&mut s, Duration::from_secs(10)));
    assert!(tree(&prefix).is_empty(), "{:?}", tree(&prefix));
}

#[test]
fn a_conflicting_head_later_on_a_kept_alive_connection_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let server = ServerProcess::start(&prefix, &[]);
    let mut s = connect(&server.addr);
    // A body that reads like a conflicting head must be stored as it is, not refused.
    let body = b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    s.write_all(
        format!(
            "PUT /1 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    s.write_all(body).unwrap();
    let answer = read_response(&mut s);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let answer = read_response(&mut s);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with(std::str::from_utf8(body).unwrap()),
        "{answer}"
    );
    s.write_all(
        b"PUT /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    let answer = read_response(&mut s);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(closed_by_server(&mut s, Duration::from_secs(10)));
    assert!(!prefix.join("2").exists());
}

#[test]
fn a_chunked_upload_is_stored_and_its_answer_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let server = ServerProcess::start(&prefix, &[]);
    let mut s = connect(&server.addr);
    s.write_all(
        b"PUT /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .unwrap();
    let answer = read_response(&mut s);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(closed_by_server(&mut s, Duration::from_secs(10)));
    assert_eq!(std::fs::read(prefix.join("3")).unwrap(), b"hello");
}

#[test]
fn memory_taken_by_a_storm_of_idle_connections_is_given_back() {
    const STORM: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let server = ServerProcess::start(&prefix, &[]);
    // Warm up: the first requests allocate what every later one reuses.
    for _ in 0..3 {
        let mut s = connect(&server.addr);
        s.write_all(b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        read_response(&mut s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = server.anon_rss_kib();
    // Each connection sends part of a head and waits: buffers allocated, nothing to answer yet.
    let storm: Vec<TcpStream> = (0..STORM)
        .map(|i| {
            let mut s = connect(&server.addr);
            s.write_all(
                format!(
                    "GET /{i} HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n",
                    "a".repeat(2000)
                )
                .as_bytes(),
            )
            .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let during = server.anon_rss_kib();
    drop(storm);
    // What the allocator can hand back: pages still holding a long-lived allocation stay.
    let allowed = before + (during - before) * 7 / 10;
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = server.anon_rss_kib();
        if now < allowed || Instant::now() > deadline {
            break now;
        }
    };
    eprintln!("anonymous RSS before {before} KiB, with {STORM} connections {during} KiB, after {after} KiB");
    assert!(
        during > before + 4 * 1024,
        "the storm took no memory ({before} -> {during} KiB): the test measures nothing"
    );
    assert!(
        after < allowed,
        "anonymous RSS {before} KiB before, {during} KiB with {STORM} connections, still {after} KiB after they closed"
    );
}
