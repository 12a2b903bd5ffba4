//! The recall scheduler: the one path every recall takes (SwiftHLM recall requests, Pacifica stage and
//! GET of a migrated file), independent of HTTP.
//!
//! Requests are submitted as key lists and answered through a [`RecallTicket`]. Keys that need no tape
//! (resident, premigrated, unknown) are answered at once. The rest are looked up with
//! `ArchiveBackend::placement` and pooled across requests; each free drive slot takes **all** pending
//! work of one tape, sorted by position, and hands it to `ArchiveBackend::recall` as one batch (so the
//! tape is mounted once and read in one pass). Which tape goes next:
//! 1. work that has waited `max_wait` goes first, oldest first (nothing starves behind a busy tape);
//! 2. else a tape that is already mounted (no mount to pay);
//! 3. else the tape with the most pending files.
//!
//! New work for a tape that is not mounted waits `batch_window` before it is eligible, so a burst of
//! requests for one tape becomes one mount (work for a mounted tape is eligible at once). A tape never runs in two slots at once. [`RecallPolicy::Fifo`] is the baseline that SwiftHLM
//! and LTFS DM implement: one request at a time in arrival order, its files grouped by tape and sorted by
//! position, its tapes on the drives in parallel; it exists for the benchmark and the tests.

use archive_core::{ArchiveBackend, Error, Key, KeyOutcome, Placement};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// How pending recalls are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecallPolicy {
    /// Batch across requests, group by tape, prefer mounted tapes, bound every wait.
    #[default]
    TapeOrder,
    /// One request at a time in arrival order (the SwiftHLM / LTFS DM baseline).
    Fifo,
}

/// Configuration of the recall scheduler.
#[derive(Debug, Clone)]
pub struct RecallSchedulerConfig {
    /// Recall batches run at once; set it to the number of tape drives.
    pub drives: usize,
    /// Ordering policy.
    pub policy: RecallPolicy,
    /// How long new work waits for more work on the same tape before it may be dispatched.
    pub batch_window: Duration,
    /// Work older than this is dispatched before any other, oldest first.
    pub max_wait: Duration,
    /// At most this many files per batch (in position order), so that the batch running when some work
    /// reaches `max_wait` ends in bounded time; the rest of a big tape's work follows in the next batch
    /// on the same, still mounted, tape.
    pub max_batch_files: usize,
}

impl Default for RecallSchedulerConfig {
    fn default() -> Self {
        RecallSchedulerConfig {
            drives: 2,
            policy: RecallPolicy::TapeOrder,
            batch_window: Duration::from_secs(10),
            max_wait: Duration::from_secs(600),
            max_batch_files: 1000,
        }
    }
}

/// How far a submitted request has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecallProgress {
    /// Keys answered (successfully or not).
    pub done: usize,
    /// Of which failed.
    pub failed: usize,
    /// Keys in the request.
    pub total: usize,
}

#[derive(Debug)]
struct Progress {
    done: AtomicUsize,
    failed: AtomicUsize,
    total: usize,
}

/// The answer to one submitted request.
#[derive(Debug)]
pub struct RecallTicket {
    keys: Vec<Key>,
    reply: oneshot::Receiver<Vec<KeyOutcome<()>>>,
    progress: Arc<Progress>,
}

impl RecallTicket {
    /// Progress so far (cheap; for request listings).
    pub fn progress(&self) -> RecallProgress {
        RecallProgress {
            done: self.progress.done.load(Ordering::Relaxed),
            failed: self.progress.failed.load(Ordering::Relaxed),
            total: self.progress.total,
        }
    }

    /// Waits until every key is recalled or failed; one outcome per key, in the order submitted.
    /// Dropping the ticket (say after a timeout) does not cancel the recall.
    pub async fn wait(self) -> Vec<KeyOutcome<()>> {
        match self.reply.await {
            Ok(outcomes) => outcomes,
            Err(_) => self
                .keys
                .into_iter()
                .map(|k| (k, Err(shutting_down())))
                .collect(),
        }
    }
}

fn shutting_down() -> Error {
    Error::Unavailable {
        message: "The recall scheduler is shutting down".into(),
        retry_after: Some(Duration::from_secs(30)),
    }
}

/// A handle to the running scheduler; cheap to clone.
#[derive(Debug, Clone)]
pub struct RecallScheduler {
    commands: mpsc::UnboundedSender<Command>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

#[derive(Debug)]
enum Command {
    Submit {
        id: u64,
        keys: Vec<Key>,
        reply: oneshot::Sender<Vec<KeyOutcome<()>>>,
        progress: Arc<Progress>,
    },
    Shutdown,
}

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

impl RecallScheduler {
    /// Starts the scheduler task over `backend` (on the current tokio runtime).
    pub fn start(backend: Arc<dyn ArchiveBackend>, config: RecallSchedulerConfig) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let planner = Planner {
            max_batch_files: config.max_batch_files.max(1),
            backend,
            drives: config.drives.max(1),
            config,
            requests: HashMap::new(),
            pending: Vec::new(),
            inflight: HashMap::new(),
            fifo: VecDeque::new(),
            batches: JoinSet::new(),
        };
        let task = tokio::spawn(planner.run(rx));
        RecallScheduler {
            commands,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// Queues a recall of `keys` and returns at once.
    pub fn submit(&self, keys: Vec<Key>) -> RecallTicket {
        let (reply, rx) = oneshot::channel();
        let progress = Arc::new(Progress {
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            total: keys.len(),
        });
        // A closed channel (scheduler stopped) drops `reply`, and `wait` reports shutting down.
        let _ = self.commands.send(Command::Submit {
            id: NEXT_REQUEST.fetch_add(1, Ordering::Relaxed),
            keys: keys.clone(),
            reply,
            progress: Arc::clone(&progress),
        });
        RecallTicket {
            keys,
            reply: rx,
            progress,
        }
    }

    /// Stops accepting work, fails work not yet started, lets running batches finish (a recall is never
    /// cut in the middle of a file), and returns when the scheduler task has ended.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
        let task = self.task.lock().expect("scheduler handle poisoned").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// One file to read from tape, and every request waiting for it.
#[derive(Debug)]
struct Item {
    key: Key,
    volume: String,
    position: u64,
    arrived: Instant,
    /// (request id, index of the key in the request).
    waiters: Vec<(u64, usize)>,
}

#[derive(Debug)]
struct Request {
    keys: Vec<Key>,
    outcomes: Vec<Option<archive_core::Result<()>>>,
    remaining: usize,
    reply: Option<oneshot::Sender<Vec<KeyOutcome<()>>>>,
    progress: Arc<Progress>,
}

/// Where a key already waiting for tape sits.
enum Known {
    Pending(usize),
    Inflight(String, usize),
}

type BatchResult = (String, archive_core::Result<Vec<KeyOutcome<()>>>);

struct Planner {
    backend: Arc<dyn ArchiveBackend>,
    config: RecallSchedulerConfig,
    drives: usize,
    max_batch_files: usize,
    requests: HashMap<u64, Request>,
    /// Tape work not dispatched yet.
    pending: Vec<Item>,
    /// Dispatched batches by volume (a volume is in at most one batch).
    inflight: HashMap<String, Vec<Item>>,
    /// Requests in arrival order (the FIFO policy serves the front one only).
    fifo: VecDeque<u64>,
    batches: JoinSet<BatchResult>,
}

impl Planner {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut accepting = true;
        loop {
            if accepting {
                self.dispatch().await;
            }
            if !accepting && self.batches.is_empty() {
                break;
            }
            let wake = if accepting {
                self.next_eligible()
            } else {
                None
            };
            tokio::select! {
                command = commands.recv(), if accepting => match command {
                    Some(Command::Submit { id, keys, reply, progress }) => {
                        self.submit(id, keys, reply, progress).await
                    }
                    Some(Command::Shutdown) | None => {
                        accepting = false;
                        self.fail_pending();
                    }
                },
                Some(done) = self.batches.join_next(), if !self.batches.is_empty() => match done {
                    Ok((volume, outcomes)) => self.complete(&volume, outcomes),
                    Err(join) => tracing::error!(error = %join, "a recall batch task failed"),
                },
                _ = sleep_until(wake), if wake.is_some() => {}
            }
        }
        tracing::debug!("recall scheduler stopped");
    }

    async fn submit(
        &mut self,
        id: u64,
        keys: Vec<Key>,
        reply: oneshot::Sender<Vec<KeyOutcome<()>>>,
        progress: Arc<Progress>,
    ) {
        let now = Instant::now();
        let mut request = Request {
            outcomes: keys.iter().map(|_| None).collect(),
            remaining: keys.len(),
            keys: keys.clone(),
            reply: Some(reply),
            progress,
        };
        let placements = match self.backend.placement(&keys).await {
            Ok(p) => p,
            // No placement (a backend without tape positions): one group, in the order given.
            Err(_) => keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let at = Placement::Tape {
                        volume: String::new(),
                        position: i as u64,
                        resident_copy: false,
                    };
                    (k.clone(), Ok(at))
                })
                .collect(),
        };
        // Where each key already waiting for tape is, so that a key asked for again joins it (one
        // index per submission keeps big requests linear).
        let mut known: HashMap<Key, Known> = HashMap::new();
        if self.config.policy == RecallPolicy::TapeOrder {
            for (i, item) in self.pending.iter().enumerate() {
                known.insert(item.key.clone(), Known::Pending(i));
            }
            for (volume, batch) in &self.inflight {
                for (i, item) in batch.iter().enumerate() {
                    known.insert(item.key.clone(), Known::Inflight(volume.clone(), i));
                }
            }
        }
        for (index, (key, placement)) in placements.into_iter().enumerate() {
            let (volume, position) = match placement {
                Ok(Placement::Tape {
                    volume,
                    position,
                    resident_copy: false,
                }) => (volume, position),
                Ok(_) => {
                    request.answer(index, Ok(()));
                    continue;
                }
                Err(e) => {
                    request.answer(index, Err(e));
                    continue;
                }
            };
            let waiter = (id, index);
            if self.config.policy == RecallPolicy::TapeOrder {
                let joined = match known.get(&key) {
                    Some(Known::Pending(i)) => self.pending.get_mut(*i),
                    Some(Known::Inflight(volume, i)) => self
                        .inflight
                        .get_mut(volume)
                        .and_then(|batch| batch.get_mut(*i)),
                    None => None,
                };
                if let Some(item) = joined {
                    item.waiters.push(waiter);
                    continue;
                }
                known.insert(key.clone(), Known::Pending(self.pending.len()));
            }
            self.pending.push(Item {
                key,
                volume,
                position,
                arrived: now,
                waiters: vec![waiter],
            });
        }
        if request.remaining == 0 {
            request.finish();
        } else {
            self.requests.insert(id, request);
            self.fifo.push_back(id);
        }
    }

    /// Fills free drive slots.
    async fn dispatch(&mut self) {
        let mut mounted: Option<Vec<String>> = None;
        while self.batches.len() < self.drives {
            let volume = match self.config.policy {
                RecallPolicy::Fifo => self.choose_fifo(),
                RecallPolicy::TapeOrder => {
                    if self.pending.is_empty() {
                        None
                    } else {
                        if mounted.is_none() {
                            mounted = Some(self.backend.mounted_volumes().await);
                        }
                        self.choose_tape_order(mounted.as_deref().unwrap_or_default())
                    }
                }
            };
            let Some(volume) = volume else { break };
            let front = self.fifo.front().copied();
            let fifo = self.config.policy == RecallPolicy::Fifo;
            let (mut batch, rest): (Vec<Item>, Vec<Item>) = std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|item| {
                    item.volume == volume && (!fifo || Some(item.waiters[0].0) == front)
                });
            batch.sort_by_key(|item| item.position);
            let mut rest = rest;
            if batch.len() > self.max_batch_files {
                rest.extend(batch.split_off(self.max_batch_files));
            }
            self.pending = rest;
            let keys: Vec<Key> = batch.iter().map(|item| item.key.clone()).collect();
            tracing::debug!(%volume, files = keys.len(), "recall batch dispatched");
            self.inflight.insert(volume.clone(), batch);
            let backend = Arc::clone(&self.backend);
            self.batches.spawn(async move {
                let outcome = backend.recall(&keys).await;
                (volume, outcome)
            });
        }
    }

    /// Groups of pending work by volume that may run now: (volume, files, oldest arrival).
    fn groups(&self) -> Vec<(String, usize, Instant)> {
        let mut groups: HashMap<&str, (usize, Instant)> = HashMap::new();
        for item in &self.pending {
            if self.inflight.contains_key(&item.volume) {
                continue;
            }
            let g = groups
                .entry(item.volume.as_str())
                .or_insert((0, item.arrived));
            g.0 += 1;
            g.1 = g.1.min(item.arrived);
        }
        let mut groups: Vec<_> = groups
            .into_iter()
            .map(|(v, (n, oldest))| (v.to_string(), n, oldest))
            .collect();
        // Deterministic order whatever the hash map did.
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        groups
    }

    fn choose_tape_order(&self, mounted: &[String]) -> Option<String> {
        let now = Instant::now();
        // Work for a mounted tape costs no mount, so it need not wait for company.
        let eligible: Vec<_> = self
            .groups()
            .into_iter()
            .filter(|(v, _, oldest)| {
                now.duration_since(*oldest) >= self.config.batch_window || mounted.contains(v)
            })
            .collect();
        let starving = eligible
            .iter()
            .filter(|(_, _, oldest)| now.duration_since(*oldest) >= self.config.max_wait)
            .min_by_key(|(v, _, oldest)| (*oldest, v.clone()));
        if let Some((volume, _, _)) = starving {
            return Some(volume.clone());
        }
        let biggest = |only_mounted: bool| {
            eligible
                .iter()
                .filter(|(v, _, _)| !only_mounted || mounted.contains(v))
                .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)).then(b.0.cmp(&a.0)))
                .map(|(v, _, _)| v.clone())
        };
        biggest(true).or_else(|| biggest(false))
    }

    fn choose_fifo(&self) -> Option<String> {
        let front = *self.fifo.front()?;
        self.pending
            .iter()
            .filter(|item| item.waiters[0].0 == front && !self.inflight.contains_key(&item.volume))
            .map(|item| item.volume.clone())
            .min()
    }

    /// When the next pending group becomes eligible (end of its batch window), if any is waiting.
    fn next_eligible(&self) -> Option<Instant> {
        if self.config.policy != RecallPolicy::TapeOrder || self.batches.len() >= self.drives {
            return None;
        }
        let now = Instant::now();
        self.groups()
            .into_iter()
            .map(|(_, _, oldest)| oldest + self.config.batch_window)
            .filter(|&at| at > now)
            .min()
    }

    fn complete(&mut self, volume: &str, outcomes: archive_core::Result<Vec<KeyOutcome<()>>>) {
        let items = self.inflight.remove(volume).unwrap_or_default();
        let mut by_key: HashMap<Key, archive_core::Result<()>> = HashMap::new();
        match outcomes {
            Ok(outcomes) => by_key.extend(outcomes),
            Err(e) => {
                tracing::warn!(%volume, error = %e, "recall batch failed as a whole");
                for item in &items {
                    by_key.insert(item.key.clone(), Err(duplicate(&e)));
                }
            }
        }
        for item in items {
            // `get`, not `remove`: under FIFO a request may name a key twice.
            let outcome = match by_key.get(&item.key) {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(duplicate(e)),
                None => Err(Error::backend(
                    "recall scheduler",
                    format!("the backend gave no answer for {}", item.key),
                )),
            };
            self.answer(&item.waiters, &outcome);
        }
    }

    fn answer(&mut self, waiters: &[(u64, usize)], outcome: &archive_core::Result<()>) {
        for &(id, index) in waiters {
            let Some(request) = self.requests.get_mut(&id) else {
                continue;
            };
            request.answer(index, outcome.as_ref().map(|_| ()).map_err(duplicate));
            if request.remaining == 0 {
                if let Some(request) = self.requests.remove(&id) {
                    request.finish();
                }
                self.fifo.retain(|&r| r != id);
            }
        }
    }

    fn fail_pending(&mut self) {
        for item in std::mem::take(&mut self.pending) {
            self.answer(&item.waiters, &Err(shutting_down()));
        }
    }
}

impl Request {
    fn answer(&mut self, index: usize, outcome: archive_core::Result<()>) {
        if self.outcomes[index].is_some() {
            return;
        }
        if outcome.is_err() {
            self.progress.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.progress.done.fetch_add(1, Ordering::Relaxed);
        self.outcomes[index] = Some(outcome);
        self.remaining -= 1;
    }

    fn finish(mut self) {
        let outcomes = std::mem::take(&mut self.keys)
            .into_iter()
            .zip(self.outcomes)
            .map(|(k, o)| (k, o.expect("every key answered")))
            .collect();
        if let Some(reply) = self.reply.take() {
            // The requester may have stopped waiting; the recall is done all the same.
            let _ = reply.send(outcomes);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The same error for another waiter (errors carry boxed sources and are not `Clone`).
fn duplicate(e: &Error) -> Error {
    match e {
        Error::NotFound { key } => Error::NotFound { key: key.clone() },
        Error::AlreadyExists { key } => Error::AlreadyExists { key: key.clone() },
        Error::NotResident { key } => Error::NotResident { key: key.clone() },
        Error::Unsupported { backend, operation } => Error::Unsupported { backend, operation },
        Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
        Error::InsufficientStorage(m) => Error::InsufficientStorage(m.clone()),
        Error::Unavailable {
            message,
            retry_after,
        } => Error::Unavailable {
            message: message.clone(),
            retry_after: *retry_after,
        },
        Error::Backend { backend, source } => Error::backend(backend, source.to_string()),
        other => Error::backend("recall scheduler", other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    //! Order, grouping, drive parallelism and fairness, on the tiered backend's tape model under a
    //! paused tokio clock (every simulated second is exact, and the tests take no real time).
    use super::*;
    use archive_core::{HsmState, PutOptions};
    use archive_tiered::{TieredBackend, TieredConfig};

    fn key(i: usize) -> Key {
        Key::new(format!("f{i:03}")).unwrap()
    }

    /// `files` files of `size` bytes, `per_tape` to a tape, all migrated; file i sits on tape
    /// i / per_tape at position (i % per_tape) * size. Reading a file takes `read_secs`, a full-tape
    /// locate 10 s, a mount 60 s, an unmount 30 s plus the rewind.
    async fn library(
        drives: usize,
        files: usize,
        per_tape: usize,
        read_secs: f64,
    ) -> (Arc<TieredBackend>, tempfile::TempDir) {
        let size = 10u64;
        let dir = tempfile::tempdir().unwrap();
        let config = TieredConfig {
            tapes: files.div_ceil(per_tape) + 1,
            tape_capacity_bytes: size * per_tape as u64,
            drives,
            mount_secs: 60.0,
            unmount_secs: 30.0,
            locate_bytes_per_sec: size as f64 * per_tape as f64 / 10.0,
            read_bytes_per_sec: size as f64 / read_secs,
            write_bytes_per_sec: 1e9,
            time_scale: 1.0,
            ..Default::default()
        };
        let b = TieredBackend::open(dir.path().join("archive"), config).unwrap();
        let keys: Vec<Key> = (0..files).map(key).collect();
        for k in &keys {
            let body = archive_core::conformance::body_of(vec![vec![b'x'; size as usize]]);
            b.put(k, body, PutOptions::default()).await.unwrap();
        }
        for (k, outcome) in b.migrate(&keys).await.unwrap() {
            outcome.unwrap_or_else(|e| panic!("{k}: {e}"));
        }
        (Arc::new(b), dir)
    }

    fn scheduler(b: &Arc<TieredBackend>, drives: usize, policy: RecallPolicy) -> RecallScheduler {
        let backend: Arc<dyn ArchiveBackend> = Arc::clone(b) as Arc<dyn ArchiveBackend>;
        RecallScheduler::start(
            backend,
            RecallSchedulerConfig {
                drives,
                policy,
                batch_window: Duration::from_secs(1),
                max_wait: Duration::from_secs(600),
                max_batch_files: 1000,
            },
        )
    }

    fn reads_since(b: &TieredBackend, before: usize) -> Vec<(String, u64)> {
        b.tape_stats().reads[before..]
            .iter()
            .map(|r| (r.volume.clone(), r.position))
            .collect()
    }

    fn ok_all(outcomes: &[KeyOutcome<()>]) {
        for (k, o) in outcomes {
            assert!(o.is_ok(), "{k}: {o:?}");
        }
    }

    /// Three requests, one drive: the mounted tape first, then the tape with most work, each read in
    /// position order and mounted once.
    const WORKLOAD: [&[usize]; 3] = [&[5, 13, 27], &[2, 21], &[11, 8]];

    async fn run_workload(policy: RecallPolicy) -> (Vec<(String, u64)>, u64) {
        let (b, _dir) = library(1, 30, 10, 1.0).await;
        assert_eq!(b.mounted_volumes().await, ["T00002"]);
        let (reads0, mounts0) = (b.tape_stats().reads.len(), b.tape_stats().mounts);
        let s = scheduler(&b, 1, policy);
        let mut tickets = Vec::new();
        for keys in WORKLOAD {
            tickets.push(s.submit(keys.iter().map(|&i| key(i)).collect()));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for t in tickets {
            ok_all(&t.wait().await);
        }
        for i in WORKLOAD.concat() {
            assert_eq!(
                b.status(&key(i)).await.unwrap().state,
                HsmState::Premigrated
            );
        }
        s.shutdown().await;
        (reads_since(&b, reads0), b.tape_stats().mounts - mounts0)
    }

    fn t(volume: &str, position: u64) -> (String, u64) {
        (volume.to_string(), position)
    }

    #[tokio::test(start_paused = true)]
    async fn batches_across_requests_in_tape_then_position_order() {
        let (reads, mounts) = run_workload(RecallPolicy::TapeOrder).await;
        // T00002 is mounted: the first request's file on it is read at once, the second's right after.
        let expected = [
            t("T00002", 70),
            t("T00002", 10),
            t("T00000", 20),
            t("T00000", 50),
            t("T00000", 80),
            t("T00001", 10),
            t("T00001", 30),
        ];
        assert_eq!(reads, expected);
        assert_eq!(
            mounts, 2,
            "T00002 was mounted already; T00000 and T00001 once each"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fifo_serves_one_request_at_a_time() {
        let (reads, mounts) = run_workload(RecallPolicy::Fifo).await;
        let expected = [
            t("T00000", 50),
            t("T00001", 30),
            t("T00002", 70),
            t("T00000", 20),
            t("T00002", 10),
            t("T00000", 80),
            t("T00001", 10),
        ];
        assert_eq!(reads, expected);
        assert_eq!(mounts, 7);
    }

    #[tokio::test(start_paused = true)]
    async fn drives_work_in_parallel() {
        let mut elapsed = Vec::new();
        for drives in [1, 2] {
            let (b, _dir) = library(drives, 40, 10, 1.0).await;
            let s = scheduler(&b, drives, RecallPolicy::TapeOrder);
            // Tapes 0 and 1, neither mounted after the setup wrote tapes 2 and 3.
            let keys: Vec<Key> = [1, 3, 12, 14].into_iter().map(key).collect();
            let start = Instant::now();
            ok_all(&s.submit(keys).wait().await);
            elapsed.push(start.elapsed().as_secs_f64());
            let drives_used: std::collections::HashSet<usize> =
                b.tape_stats().reads.iter().map(|r| r.drive).collect();
            assert_eq!(drives_used.len(), drives);
            s.shutdown().await;
        }
        // Two tapes of the same work: two drives take about half the time of one.
        assert!(elapsed[1] < 0.6 * elapsed[0], "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn resident_and_unknown_keys_are_answered_at_once() {
        let (b, _dir) = library(1, 2, 10, 1.0).await;
        let s = scheduler(&b, 1, RecallPolicy::TapeOrder);
        ok_all(&s.submit(vec![key(0)]).wait().await);
        let start = Instant::now();
        let ticket = s.submit(vec![key(0), Key::new("missing").unwrap()]);
        let out = ticket.wait().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "no tape work, no waiting");
        assert!(out[0].1.is_ok());
        assert!(matches!(out[1].1, Err(Error::NotFound { .. })));
        let ticket = s.submit(vec![key(1), key(1)]);
        tokio::task::yield_now().await;
        assert_eq!(ticket.progress().total, 2);
        ok_all(&ticket.wait().await);
        s.shutdown().await;
        let late = s.submit(vec![key(0)]).wait().await;
        assert!(matches!(late[0].1, Err(Error::Unavailable { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_asked_for_twice_is_read_once_and_answered_twice() {
        for policy in [RecallPolicy::TapeOrder, RecallPolicy::Fifo] {
            let (b, _dir) = library(1, 4, 10, 1.0).await;
            let s = scheduler(&b, 1, policy);
            let out = s.submit(vec![key(2), key(1), key(2)]).wait().await;
            assert_eq!(out.len(), 3);
            ok_all(&out);
            assert_eq!(
                b.tape_stats().bytes_read,
                20,
                "{policy:?}: each file read once"
            );
            // Two requests for one file: both answered, one read.
            let (first, second) = (s.submit(vec![key(3)]), s.submit(vec![key(3)]));
            ok_all(&first.wait().await);
            ok_all(&second.wait().await);
            assert_eq!(
                b.tape_stats().bytes_read,
                30,
                "{policy:?}: read once for both"
            );
            s.shutdown().await;
        }
    }

    /// One drive, tape T00001 mounted and fed a new request every 5 s for 400 s, each file taking 10 s
    /// to read, so that tape never runs out of work; one request for T00000 arrives at 1 s. `max_wait`
    /// bounds its wait; without it, it waits until the stream has been served.
    async fn starvation_case(max_wait: Duration, max_batch_files: usize) -> (f64, f64) {
        let (b, _dir) = library(1, 200, 100, 10.0).await;
        assert_eq!(b.mounted_volumes().await, ["T00001"]);
        let backend: Arc<dyn ArchiveBackend> = Arc::clone(&b) as Arc<dyn ArchiveBackend>;
        let config = RecallSchedulerConfig {
            drives: 1,
            policy: RecallPolicy::TapeOrder,
            batch_window: Duration::from_secs(1),
            max_wait,
            max_batch_files,
        };
        let s = RecallScheduler::start(backend, config);
        let start = Instant::now();
        let feeder = {
            let s = s.clone();
            tokio::spawn(async move {
                let mut tickets = Vec::new();
                for i in 0..80 {
                    tickets.push(s.submit(vec![key(100 + i)]));
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                for t in tickets {
                    ok_all(&t.wait().await);
                }
                start.elapsed().as_secs_f64()
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let lonely = s.submit(vec![key(50)]);
        ok_all(&lonely.wait().await);
        let lonely_done = start.elapsed().as_secs_f64() - 1.0;
        let stream_done = feeder.await.unwrap();
        s.shutdown().await;
        (lonely_done, stream_done)
    }

    #[tokio::test(start_paused = true)]
    async fn no_request_waits_past_max_wait_behind_a_busy_mounted_tape() {
        let forever = Duration::from_secs(100_000);
        let (unbounded, stream_end) = starvation_case(forever, 1000).await;
        assert!(
            unbounded >= stream_end - 20.0,
            "without the bound the lonely request waits for the whole stream ({unbounded} s, stream {stream_end} s)"
        );
        let (bounded, _) = starvation_case(Duration::from_secs(60), 2).await;
        eprintln!("lonely request waited {bounded} s with max_wait, {unbounded} s without");
        // max_wait, plus the batch running at that moment (2 files: at most 2 x 10 s of reads and 10 s
        // of locates), plus the switch (rewind <= 10 s, unmount 30 s, mount 60 s, locate <= 10 s, read
        // 10 s), plus the batch window.
        assert!(bounded <= 60.0 + 30.0 + 120.0 + 1.0, "waited {bounded} s");
    }
}
