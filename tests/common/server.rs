//! A real `archiveinterface` process for socket-level tests: started on port 0, its address read from
//! its log, killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct ServerProcess {
    pub child: Child,
    pub url: String,
    pub addr: String,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_archiveinterface")
}

impl ServerProcess {
    /// Starts the binary with `args` (plus `-a 127.0.0.1 -p 0` unless a port is given).
    pub fn start(prefix: &Path, args: &[&str]) -> ServerProcess {
        Self::start_with(Command::new(binary()), prefix, args)
    }

    /// Starts `command` (the binary, or a wrapper that execs it) with the server arguments appended.
    pub fn start_with(mut command: Command, prefix: &Path, args: &[&str]) -> ServerProcess {
        command.args(["--prefix", prefix.to_str().unwrap(), "-a", "127.0.0.1"]);
        if !args.contains(&"-p") {
            command.args(["-p", "0"]);
        }
        command
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("ARCHIVEINTERFACE_CONFIG");
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start server");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on http://") {
                    // Works for human and JSON log lines: the address is digits, dots and a colon.
                    let rest = &line[at + "listening on http://".len()..];
                    let addr: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect();
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        ServerProcess {
            child,
            url: format!("http://{addr}"),
            addr,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits for the process to exit (after a signal) and returns its status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not exit; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident set size (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// The server's resident anonymous memory now (its heap and stacks; not the pages of its binary,
    /// which stay cached once run).
    #[allow(dead_code)]
    pub fn anon_rss_kib(&self) -> u64 {
        self.status_kib("RssAnon:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/<pid>/status"))
    }
}

/// A port that is free now (for a process that must never open it).
pub fn free_port() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string()
}

/// Runs `command` (told to listen on 127.0.0.1:`port`), which must refuse to start: it exits with
/// status 2 and never opens the port. Returns what it wrote on stderr.
pub fn expect_refusal(mut command: Command, port: &str) -> String {
    use std::io::Read;
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        // Until it exits, the port must stay closed.
        if std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok() {
            let _ = child.kill();
            panic!("the port opened although start-up should have been refused");
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process started although start-up should have been refused");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    err
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file below `dir`, relative, sorted (to look for debris); the server's own state
/// (`.archiveinterface*`, such as the HLM queue of a tiered archive) is not archive content.
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(".archiveinterface")
            {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Sends a request head and the first part of its body over a raw connection, leaving it open.
pub fn raw_request(addr: &str, head: &str, body: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s
}

/// Waits (up to a minute) until the partial files under `dir` are exactly `count`, and returns them:
/// the server has then written part of an upload to disk.
pub fn wait_for_partials(dir: &Path, count: usize) -> Vec<PathBuf> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let partials: Vec<PathBuf> = tree(dir)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".partial"))
            .collect();
        if partials.len() == count {
            return partials.into_iter().map(|p| dir.join(p)).collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {count} partial files under {}, found {partials:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the binary with `args` and `env` on a free port, expects it to exit with status 2 before
/// that port ever opens, and returns what it wrote to stderr.
pub fn refuse_to_start(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = Command::new(binary());
    command.args(["-a", "127.0.0.1", "-p", &port]);
    if !args.contains(&"--prefix") {
        command.args(["--prefix", dir.path().join("a").to_str().unwrap()]);
    }
    command.args(args).env_remove("ARCHIVEINTERFACE_CONFIG");
    for (k, v) in env {
        command.env(k, v);
    }
    expect_refusal(command, &port)
}
