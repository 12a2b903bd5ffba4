//! Dispatchers (as server instances run them) on a real queue database:
//! - two on one PostgreSQL execute 1000 requests exactly once each, and both take part;
//! - an instance whose queue connection stalls or is cut while it works stops that work before
//!   its lease can expire, so the instance that takes the request over never overlaps with it
//!   (a TCP proxy inside the test stands between that instance and PostgreSQL);
//! - progress and the end of a request are stored once the queue answers again, not dropped;
//! - a container listing that fails for a passing reason retries the request.

mod common;

use archive_core::{
    ArchiveBackend, ByteStream, FileStatus, GetResult, Key, KeyOutcome, ListEntry, PutOptions,
    PutOutcome, ReadRange,
};
use archiveinterface::hlm::queue::{
    NewRequest, Op, Progress, QueueOptions, RequestQueue, State, Target,
};
use archiveinterface::hlm::HlmService;
use archiveinterface::AppState;
use sqlx::Connection;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A backend whose `migrate` only counts calls per key (and which instance made them).
#[derive(Debug)]
struct CountingBackend {
    instance: usize,
    calls: Arc<Mutex<HashMap<String, Vec<usize>>>>,
}

#[async_trait::async_trait]
impl ArchiveBackend for CountingBackend {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn capabilities(&self) -> archive_core::Capabilities {
        // Two instances share it in the exactly-once test, as an HSM-backed backend allows.
        archive_core::Capabilities {
            tape_tier: true,
            shared_by_processes: true,
        }
    }
    async fn put(&self, _: &Key, _: ByteStream, _: PutOptions) -> archive_core::Result<PutOutcome> {
        Err(self.unsupported("put"))
    }
    async fn get(&self, _: &Key, _: ReadRange) -> archive_core::Result<GetResult> {
        Err(self.unsupported("get"))
    }
    async fn status(&self, _: &Key) -> archive_core::Result<FileStatus> {
        Err(self.unsupported("status"))
    }
    async fn stage(&self, _: &Key) -> archive_core::Result<()> {
        Ok(())
    }
    async fn adopt(&self, _: &Key, _: &std::path::Path, _: bool) -> archive_core::Result<()> {
        Err(self.unsupported("adopt"))
    }
    async fn delete(&self, _: &Key) -> archive_core::Result<()> {
        Err(self.unsupported("delete"))
    }
    async fn list(&self, _: &str) -> archive_core::Result<Vec<ListEntry>> {
        Ok(Vec::new())
    }
    async fn migrate(&self, keys: &[Key]) -> archive_core::Result<Vec<KeyOutcome<()>>> {
        // A little work, so that claims interleave.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut calls = self.calls.lock().unwrap();
        Ok(keys
            .iter()
            .map(|k| {
                calls.entry(k.to_string()).or_default().push(self.instance);
                (k.clone(), Ok(()))
            })
            .collect())
    }
}

async fn fresh_schema_url() -> (String, String, String) {
    let base = std::env::var("ARCHIVEINTERFACE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is required and not reachable at {base}: {e}\nstart it (apt-get install postgresql && \
             pg_ctlcluster 15 main start, database 'test' with trust auth on 127.0.0.1) or set \
             ARCHIVEINTERFACE_TEST_POSTGRES_URL"
        )
    });
    let schema = format!(
        "hlmd_{}_{}",
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
    (
        format!("{base}{sep}options=-c%20search_path%3D{schema}"),
        base,
        schema,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_execute_1000_requests_once_each() {
    let (url, base, schema) = fresh_schema_url().await;
    let mut config = archiveinterface::config::Config::default();
    config.hlm.queue_url = url.clone();
    config.hlm.workers = 4;
    config.hlm.poll_interval_ms = 20;
    let calls = Arc::new(Mutex::new(HashMap::new()));

    let submitter = HlmService::open(&config).await.unwrap();
    for i in 0..1000 {
        submitter
            .queue
            .submit(NewRequest::new(
                Op::Migrate,
                Target::Keys(vec![format!("k{i}")]),
            ))
            .await
            .unwrap();
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut instances = Vec::new();
    for instance in 0..2 {
        let backend = Arc::new(CountingBackend {
            instance,
            calls: calls.clone(),
        });
        let state = AppState::with_config(backend, common::settings(), config.clone());
        let service = HlmService::open(&config).await.unwrap();
        instances.push(tokio::spawn(archiveinterface::hlm::dispatcher::run(
            state,
            service,
            stop_rx.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let counts = submitter.queue.counts().await.unwrap();
        if counts.done == 1000 {
            break;
        }
        assert!(counts.failed == 0, "{counts:?}");
        assert!(Instant::now() < deadline, "not finished: {counts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send(true).unwrap();
    for i in instances {
        i.await.unwrap();
    }

    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1000);
    let twice: Vec<_> = calls.iter().filter(|(_, v)| v.len() != 1).collect();
    assert!(twice.is_empty(), "executed more than once: {twice:?}");
    let by_first = calls.values().filter(|v| v[0] == 0).count();
    assert!(
        by_first > 0 && by_first < 1000,
        "one instance did everything ({by_first} of 1000 by the first)"
    );

    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
}

// ---- a proxy between one instance and PostgreSQL ----

/// What the proxy does with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Bytes pass both ways.
    Up,
    /// Bytes are held (the connections stay open, nothing arrives): a database that stopped
    /// answering, or a stalled network.
    Stalled,
    /// Connections are closed and new ones refused: a database that is unreachable.
    Cut,
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`, switched by the test.
struct Proxy {
    addr: SocketAddr,
    link: watch::Sender<Link>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (link, _) = watch::channel(Link::Up);
        let rx = link.subscribe();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let link = rx.clone();
                tokio::spawn(async move {
                    if *link.borrow() == Link::Cut {
                        return; // dropped: the client sees the connection closed
                    }
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, link.clone()),
                        pump(server_read, client_write, link)
                    );
                });
            }
        });
        Proxy { addr, link }
    }

    fn set(&self, link: Link) {
        self.link.send_replace(link);
    }

    /// `url` (a PostgreSQL URL on 127.0.0.1:5432 or the given host:port) through this proxy.
    fn url(&self, url: &str, upstream: SocketAddr) -> String {
        url.replacen(
            &format!("@{upstream}"),
            &format!("@127.0.0.1:{}", self.addr.port()),
            1,
        )
    }
}

/// Copies one direction until either end closes or the link is cut; holds bytes while stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut link: watch::Receiver<Link>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = link.wait_for(|l| *l == Link::Cut) => return,
        };
        match link.wait_for(|l| *l != Link::Stalled).await {
            Ok(l) if *l == Link::Up => {}
            _ => return,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The PostgreSQL server's address as the URL names it (`host:port`, host an IP).
fn postgres_addr(url: &str) -> SocketAddr {
    let after_at = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
    let host_port = after_at.split(['/', '?']).next().unwrap();
    let host_port = host_port.replace("localhost", "127.0.0.1");
    let with_port = if host_port.contains(':') {
        host_port
    } else {
        format!("{host_port}:5432")
    };
    with_port
        .parse()
        .unwrap_or_else(|e| panic!("the test needs an IP host in {url}: {e}"))
}

// ---- a backend that records when its work runs ----

/// One backend call: who made it, and when it started and ended (or was dropped).
#[derive(Debug, Clone)]
struct Execution {
    instance: &'static str,
    start: Instant,
    end: Option<Instant>,
    keys_done: usize,
}

/// A backend whose `migrate` takes `per_key` for each key in one call, recording every call; the
/// first call can run a hook once its keys are done (to break the queue's connection).
#[derive(Debug)]
struct SlowTape {
    instance: &'static str,
    per_key: Duration,
    executions: Arc<Mutex<Vec<Execution>>>,
    after_first_call: Mutex<Option<Hook>>,
}

/// Something the test does from inside the backend.
struct Hook(Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// Marks the execution ended when the call returns or its future is dropped.
struct Ended {
    executions: Arc<Mutex<Vec<Execution>>>,
    index: usize,
}

impl Drop for Ended {
    fn drop(&mut self) {
        self.executions.lock().unwrap()[self.index].end = Some(Instant::now());
    }
}

#[async_trait::async_trait]
impl ArchiveBackend for SlowTape {
    fn name(&self) -> &'static str {
        "slow-tape"
    }
    fn capabilities(&self) -> archive_core::Capabilities {
        archive_core::Capabilities {
            tape_tier: true,
            shared_by_processes: true,
        }
    }
    async fn put(&self, _: &Key, _: ByteStream, _: PutOptions) -> archive_core::Result<PutOutcome> {
        Err(self.unsupported("put"))
    }
    async fn get(&self, _: &Key, _: ReadRange) -> archive_core::Result<GetResult> {
        Err(self.unsupported("get"))
    }
    async fn status(&self, _: &Key) -> archive_core::Result<FileStatus> {
        Err(self.unsupported("status"))
    }
    async fn stage(&self, _: &Key) -> archive_core::Result<()> {
        Ok(())
    }
    async fn adopt(&self, _: &Key, _: &std::path::Path, _: bool) -> archive_core::Result<()> {
        Err(self.unsupported("adopt"))
    }
    async fn delete(&self, _: &Key) -> archive_core::Result<()> {
        Err(self.unsupported("delete"))
    }
    async fn list(&self, _: &str) -> archive_core::Result<Vec<ListEntry>> {
        Ok(Vec::new())
    }
    async fn migrate(&self, keys: &[Key]) -> archive_core::Result<Vec<KeyOutcome<()>>> {
        let index = {
            let mut executions = self.executions.lock().unwrap();
            executions.push(Execution {
                instance: self.instance,
                start: Instant::now(),
                end: None,
                keys_done: 0,
            });
            executions.len() - 1
        };
        let _ended = Ended {
            executions: self.executions.clone(),
            index,
        };
        for _ in keys {
            tokio::time::sleep(self.per_key).await;
            self.executions.lock().unwrap()[index].keys_done += 1;
        }
        if let Some(hook) = self.after_first_call.lock().unwrap().take() {
            (hook.0)();
        }
        Ok(keys.iter().map(|k| (k.clone(), Ok(()))).collect())
    }
}

/// A dispatcher of one instance over `backend`, on the queue at `url` with `options`.
async fn start_instance(
    backend: Arc<dyn ArchiveBackend>,
    url: &str,
    options: QueueOptions,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let mut config = archiveinterface::config::Config::default();
    config.hlm.workers = 1;
    config.hlm.poll_interval_ms = 50;
    let queue = RequestQueue::connect(url, options).await.unwrap();
    let service = HlmService {
        queue,
        wake: Arc::default(),
    };
    let state = AppState::with_config(backend, common::settings(), config);
    tokio::spawn(archiveinterface::hlm::dispatcher::run(state, service, stop))
}

fn lease_options(lease: Duration) -> QueueOptions {
    QueueOptions {
        lease_duration: lease,
        backoff_base: Duration::from_millis(200),
        backoff_max: Duration::from_millis(400),
        max_connections: 3,
        ..QueueOptions::default()
    }
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn drop_schema(base: &str, schema: &str) {
    let mut admin = sqlx::PgConnection::connect(base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// Instance A works on a request (one long backend call) when its link to PostgreSQL fails as
/// `fault` says; instance B, connected directly, takes the request over once A's lease expired.
/// A must have stopped before B starts, and the request is done once, by B.
async fn work_never_overlaps_when_the_queue_link(fault: Link) {
    const KEYS: usize = 20;
    let lease = Duration::from_secs(4);
    let (url, base, schema) = fresh_schema_url().await;
    let upstream = postgres_addr(&base);
    let proxy = Proxy::start(upstream).await;
    let executions: Arc<Mutex<Vec<Execution>>> = Arc::default();
    let tape = |instance| {
        Arc::new(SlowTape {
            instance,
            // One call of 20 keys lasts 6 s, longer than the lease: without stopping, A would
            // still be working when B starts.
            per_key: Duration::from_millis(300),
            executions: executions.clone(),
            after_first_call: Mutex::new(None),
        })
    };
    let submitter = RequestQueue::connect(&url, lease_options(lease))
        .await
        .unwrap();
    let keys = (0..KEYS).map(|i| format!("k{i}")).collect();
    let id = submitter
        .submit(NewRequest::new(Op::Migrate, Target::Keys(keys)))
        .await
        .unwrap();

    let (stop_tx, stop_rx) = watch::channel(false);
    let a = start_instance(
        tape("a"),
        &proxy.url(&url, upstream),
        lease_options(lease),
        stop_rx.clone(),
    )
    .await;
    wait_until("A starts working", Duration::from_secs(30), || {
        !executions.lock().unwrap().is_empty()
    })
    .await;
    proxy.set(fault);
    let b = start_instance(tape("b"), &url, lease_options(lease), stop_rx).await;

    let deadline = Instant::now() + Duration::from_secs(90);
    let record = loop {
        let record = submitter.get(id).await.unwrap().unwrap();
        if record.state == State::Done {
            break record;
        }
        assert_ne!(record.state, State::Failed, "{record:?}");
        assert!(Instant::now() < deadline, "not done: {record:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Let A's connection through again, so that any work it still does shows.
    proxy.set(Link::Up);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_tx.send(true).unwrap();
    for instance in [a, b] {
        tokio::time::timeout(Duration::from_secs(60), instance)
            .await
            .expect("dispatcher stops")
            .unwrap();
    }

    let mut executions = executions.lock().unwrap().clone();
    executions.sort_by_key(|e| e.start);
    for pair in executions.windows(2) {
        let end = pair[0].end.expect("every call ended");
        assert!(
            pair[1].start >= end,
            "work overlapped: {} ran from {:?} to {:?}, {} started at {:?}",
            pair[0].instance,
            pair[0].start,
            end,
            pair[1].instance,
            pair[1].start
        );
    }
    let first = &executions[0];
    assert_eq!(first.instance, "a");
    assert!(
        first.keys_done < KEYS,
        "A stopped before finishing its call: {first:?}"
    );
    let by_b: Vec<_> = executions.iter().filter(|e| e.instance == "b").collect();
    assert_eq!(by_b.len(), 1, "B ran the request once: {executions:?}");
    assert_eq!(by_b[0].keys_done, KEYS);
    assert_eq!(executions.len(), 2, "{executions:?}");
    assert_eq!(record.attempts, 2, "{record:?}");
    assert_eq!(
        record.progress,
        Progress {
            done: KEYS as u64,
            failed: 0,
            total: KEYS as u64
        }
    );
    assert_eq!(submitter.counts().await.unwrap().done, 1);
    submitter.close().await;
    drop_schema(&base, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_stops_before_the_lease_expires_when_the_queue_stalls() {
    work_never_overlaps_when_the_queue_link(Link::Stalled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_stops_before_the_lease_expires_when_the_queue_is_unreachable() {
    work_never_overlaps_when_the_queue_link(Link::Cut).await;
}

/// The queue is unreachable for a second right when the work ends: the final progress and the
/// completion are stored once it is back; the request is neither failed nor run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_completion_are_stored_when_the_queue_comes_back() {
    const KEYS: usize = 5;
    let lease = Duration::from_secs(4);
    let (url, base, schema) = fresh_schema_url().await;
    let upstream = postgres_addr(&base);
    let proxy = Arc::new(Proxy::start(upstream).await);
    let executions: Arc<Mutex<Vec<Execution>>> = Arc::default();
    let cut = proxy.clone();
    let tape = Arc::new(SlowTape {
        instance: "a",
        per_key: Duration::from_millis(20),
        executions: executions.clone(),
        after_first_call: Mutex::new(Some(Hook(Box::new(move || {
            cut.set(Link::Cut);
            let back = cut.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                back.set(Link::Up);
            });
        })))),
    });
    let submitter = RequestQueue::connect(&url, lease_options(lease))
        .await
        .unwrap();
    let keys = (0..KEYS).map(|i| format!("k{i}")).collect();
    let id = submitter
        .submit(NewRequest::new(Op::Migrate, Target::Keys(keys)))
        .await
        .unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let a = start_instance(
        tape,
        &proxy.url(&url, upstream),
        lease_options(lease),
        stop_rx,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let record = loop {
        let record = submitter.get(id).await.unwrap().unwrap();
        if record.state == State::Done {
            break record;
        }
        assert_ne!(record.state, State::Failed, "{record:?}");
        assert!(Instant::now() < deadline, "not done: {record:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(60), a)
        .await
        .expect("dispatcher stops")
        .unwrap();
    assert_eq!(
        record.attempts, 1,
        "finished by its first claim: {record:?}"
    );
    assert_eq!(
        record.progress,
        Progress {
            done: KEYS as u64,
            failed: 0,
            total: KEYS as u64
        },
        "final progress stored"
    );
    assert_eq!(executions.lock().unwrap().len(), 1, "executed once");
    submitter.close().await;
    drop_schema(&base, &schema).await;
}
