//! The recall scheduler: the one path every recall takes (SwiftHLM recall requests, Pacifica stage and
//! GET of a migrated file), independent of HTTP.
//!
//! Requests are submitted as key lists and answered through a [`RecallTicket`]. Where each key lives is
//! asked of `ArchiveBackend::placement` in a task of its own, so a slow lookup holds up only its own
//! request. Keys that need no tape (resident, premigrated, unknown) are answered at once. The rest are
//! pooled across requests per tape, in position order; each free drive slot takes the pending work of
//! one tape (up to `max_batch_files`) and hands it to `ArchiveBackend::recall` as one batch (so the tape
//! is mounted once and read in one pass). Which tape goes next:
//! 1. work that has waited `max_wait` goes first, oldest first (nothing starves behind a busy tape);
//! 2. else a tape that is already mounted (no mount to pay);
//! 3. else the tape with the most pending files.
//!
//! Work for a mounted tape may go at once: a lone recall of a file on a mounted tape starts as soon as a
//! drive slot is free. New work for a tape that is not mounted waits `batch_window` (from the arrival of
//! the oldest pending file of that tape) before it is eligible, so a burst of requests for one tape
//! becomes one mount. A tape never runs in two slots at once.
//!
//! A batch that fails or panics answers each of its waiters with an error and frees its tape.
//!
//! Cost: each key costs a few hash-map and B-tree operations (O(log n) in the pending work) to submit,
//! dispatch and answer; choosing the next tape looks at each tape with pending work once (O(tapes)),
//! never at every pending file.
//!
//! [`RecallPolicy::Fifo`] is the baseline that SwiftHLM and LTFS DM implement: one request at a time in
//! arrival order, its files grouped by tape and sorted by position, its tapes on the drives in parallel;
//! it exists for the benchmark and the tests.

use archive_core::{ArchiveBackend, Error, Key, KeyOutcome, Placement};
use futures::FutureExt;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
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
    /// How long new work for a tape that is not mounted waits for more work on the same tape before it
    /// may be dispatched (work for a mounted tape does not wait).
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
            batch_window: Duration::from_secs(2),
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
    /// Pending-work entries the planner has touched (inserted, moved, answered): what submitting and
    /// dispatching cost, counted so that tests can check it stays proportional to the work.
    touched: Arc<AtomicU64>,
}

#[derive(Debug)]
enum Command {
    Submit {
        id: u64,
        keys: Vec<Key>,
        arrived: Instant,
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
        let touched = Arc::new(AtomicU64::new(0));
        let planner = Planner {
            max_batch_files: config.max_batch_files.max(1),
            backend,
            drives: config.drives.max(1),
            config,
            requests: HashMap::new(),
            fifo: BTreeSet::new(),
            awaiting_placement: HashSet::new(),
            items: HashMap::new(),
            next_item: 0,
            index: HashMap::new(),
            tapes: BTreeMap::new(),
            placements: JoinSet::new(),
            batches: JoinSet::new(),
            touched: Arc::clone(&touched),
        };
        let task = tokio::spawn(planner.run(rx));
        RecallScheduler {
            commands,
            task: Arc::new(Mutex::new(Some(task))),
            touched,
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
            arrived: Instant::now(),
            reply,
            progress: Arc::clone(&progress),
        });
        RecallTicket {
            keys,
            reply: rx,
            progress,
        }
    }

    /// Queues a recall of `keys` as tickets of at most `slice` keys each, all submitted now (so the
    /// scheduler pools them by tape), to be awaited one after the other so that progress can be
    /// reported while a big request runs.
    pub fn submit_in_slices(&self, keys: &[Key], slice: usize) -> Vec<RecallTicket> {
        keys.chunks(slice.max(1))
            .map(|slice| self.submit(slice.to_vec()))
            .collect()
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

    /// Pending-work entries touched so far (see the field); for tests of the scheduler's cost.
    pub fn entries_touched(&self) -> u64 {
        self.touched.load(Ordering::Relaxed)
    }
}

type ItemId = u64;

/// One file to read from tape, and every request waiting for it.
#[derive(Debug)]
struct Item {
    key: Key,
    /// Requests that may share this item: 0 under tape order (every request), the request id under FIFO.
    group: u64,
    arrived: Instant,
    /// (request id, index of the key in the request).
    waiters: Vec<(u64, usize)>,
}

/// The pending and running work of one tape.
#[derive(Debug, Default)]
struct Tape {
    /// Pending items in reading order: (group, position, item).
    queue: BTreeSet<(u64, u64, ItemId)>,
    /// Pending items by arrival, for the batch window and `max_wait`.
    arrivals: BTreeSet<(Instant, ItemId)>,
    /// The items of the batch running on this tape, if one is.
    running: Option<Vec<ItemId>>,
}

impl Tape {
    fn oldest(&self) -> Option<Instant> {
        self.arrivals.first().map(|(at, _)| *at)
    }
}

#[derive(Debug)]
struct Request {
    keys: Vec<Key>,
    outcomes: Vec<Option<archive_core::Result<()>>>,
    remaining: usize,
    reply: Option<oneshot::Sender<Vec<KeyOutcome<()>>>>,
    progress: Arc<Progress>,
    arrived: Instant,
    /// Pending items per volume (FIFO dispatches the front request's tapes from this).
    volumes: BTreeMap<String, usize>,
}

type PlacementResult = (u64, archive_core::Result<Vec<KeyOutcome<Placement>>>);
type BatchResult = (String, archive_core::Result<Vec<KeyOutcome<()>>>);

struct Planner {
    backend: Arc<dyn ArchiveBackend>,
    config: RecallSchedulerConfig,
    drives: usize,
    max_batch_files: usize,
    requests: HashMap<u64, Request>,
    /// Unfinished requests in arrival order (ids grow with arrival); FIFO serves the first only.
    fifo: BTreeSet<u64>,
    /// Requests whose placement lookup is still running.
    awaiting_placement: HashSet<u64>,
    items: HashMap<ItemId, Item>,
    next_item: ItemId,
    /// Items not answered yet, pending or running, by (group, key): a key asked for again joins them.
    index: HashMap<(u64, Key), ItemId>,
    /// Tapes with pending or running work, by volume (ordered, so ties break the same way every run).
    tapes: BTreeMap<String, Tape>,
    placements: JoinSet<PlacementResult>,
    batches: JoinSet<BatchResult>,
    touched: Arc<AtomicU64>,
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
                    Some(Command::Submit { id, keys, arrived, reply, progress }) => {
                        self.submit(id, keys, arrived, reply, progress)
                    }
                    Some(Command::Shutdown) | None => {
                        accepting = false;
                        self.fail_pending();
                    }
                },
                Some(done) = self.placements.join_next(), if !self.placements.is_empty() => match done {
                    Ok((id, placements)) => self.plan(id, placements),
                    // Only a cancelled task ends this way (a panic is caught inside the task).
                    Err(join) => tracing::error!(error = %join, "a placement lookup task ended"),
                },
                Some(done) = self.batches.join_next(), if !self.batches.is_empty() => match done {
                    Ok((volume, outcomes)) => self.complete(&volume, outcomes),
                    Err(join) => tracing::error!(error = %join, "a recall batch task ended"),
                },
                _ = sleep_until(wake), if wake.is_some() => {}
            }
        }
        tracing::debug!("recall scheduler stopped");
    }

    fn touch(&self, n: usize) {
        self.touched.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Registers the request and looks its keys up in the background: a slow `placement` holds up
    /// this request only, not the loop.
    fn submit(
        &mut self,
        id: u64,
        keys: Vec<Key>,
        arrived: Instant,
        reply: oneshot::Sender<Vec<KeyOutcome<()>>>,
        progress: Arc<Progress>,
    ) {
        let request = Request {
            outcomes: keys.iter().map(|_| None).collect(),
            remaining: keys.len(),
            keys,
            reply: Some(reply),
            progress,
            arrived,
            volumes: BTreeMap::new(),
        };
        if request.remaining == 0 {
            request.finish();
            return;
        }
        let backend = Arc::clone(&self.backend);
        let keys = request.keys.clone();
        self.placements.spawn(async move {
            let placements = unwind_safe("placement", backend.placement(&keys)).await;
            (id, placements)
        });
        self.awaiting_placement.insert(id);
        self.requests.insert(id, request);
        self.fifo.insert(id);
    }

    /// Files the request's keys under their tapes once their placement is known.
    fn plan(&mut self, id: u64, placements: archive_core::Result<Vec<KeyOutcome<Placement>>>) {
        if !self.awaiting_placement.remove(&id) {
            return;
        }
        let Some(mut request) = self.requests.remove(&id) else {
            return;
        };
        let placements = match placements {
            Ok(p) if p.len() == request.keys.len() => p,
            Ok(p) => {
                tracing::warn!(
                    asked = request.keys.len(),
                    answered = p.len(),
                    "placement answered for a different number of keys; recalling in the order given"
                );
                in_given_order(&request.keys)
            }
            // No placement (a backend without tape positions, or a failed lookup): one group, in the
            // order given; the backend's recall finds its own way.
            Err(e) => {
                if !matches!(e, Error::Unsupported { .. }) {
                    tracing::warn!(error = %e, "placement failed; recalling in the order given");
                }
                in_given_order(&request.keys)
            }
        };
        let fifo = self.config.policy == RecallPolicy::Fifo;
        let group = if fifo { id } else { 0 };
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
            self.touch(1);
            let waiter = (id, index);
            let slot = (group, key);
            if let Some(item) = self.index.get(&slot).and_then(|i| self.items.get_mut(i)) {
                item.waiters.push(waiter);
                continue;
            }
            let item_id = self.next_item;
            self.next_item += 1;
            let tape = self.tapes.entry(volume.clone()).or_default();
            tape.queue.insert((group, position, item_id));
            tape.arrivals.insert((request.arrived, item_id));
            if fifo {
                *request.volumes.entry(volume.clone()).or_default() += 1;
            }
            self.items.insert(
                item_id,
                Item {
                    key: slot.1.clone(),
                    group,
                    arrived: request.arrived,
                    waiters: vec![waiter],
                },
            );
            self.index.insert(slot, item_id);
        }
        if request.remaining == 0 {
            self.fifo.remove(&id);
            request.finish();
        } else {
            self.requests.insert(id, request);
        }
    }

    /// Fills free drive slots.
    async fn dispatch(&mut self) {
        let mut mounted: Option<HashSet<String>> = None;
        while self.batches.len() < self.drives {
            let choice = match self.config.policy {
                RecallPolicy::Fifo => self.choose_fifo(),
                RecallPolicy::TapeOrder => {
                    if !self
                        .tapes
                        .values()
                        .any(|t| t.running.is_none() && !t.queue.is_empty())
                    {
                        None
                    } else {
                        if mounted.is_none() {
                            mounted = Some(self.mounted_volumes().await);
                        }
                        self.choose_tape_order(mounted.as_ref().expect("just set"))
                            .map(|volume| (volume, 0))
                    }
                }
            };
            let Some((volume, group)) = choice else { break };
            self.start_batch(volume, group);
        }
    }

    /// Asks which tapes are mounted, without letting a slow answer hold up the loop for long: the
    /// answer only sets a preference.
    async fn mounted_volumes(&self) -> HashSet<String> {
        let asked = self.backend.mounted_volumes();
        match tokio::time::timeout(Duration::from_secs(1), asked).await {
            Ok(volumes) => volumes.into_iter().collect(),
            Err(_) => {
                tracing::warn!(
                    "the backend took over 1 s to tell its mounted tapes; ignoring them"
                );
                HashSet::new()
            }
        }
    }

    /// Takes up to `max_batch_files` pending items of `group` on `volume`, in position order, and
    /// hands them to the backend as one batch.
    fn start_batch(&mut self, volume: String, group: u64) {
        let tape = self.tapes.get_mut(&volume).expect("chosen tapes exist");
        let mut batch = Vec::new();
        while batch.len() < self.max_batch_files {
            let next = tape
                .queue
                .range((group, 0, 0)..=(group, u64::MAX, u64::MAX))
                .next()
                .copied();
            let Some(entry) = next else { break };
            tape.queue.remove(&entry);
            let item = &self.items[&entry.2];
            tape.arrivals.remove(&(item.arrived, entry.2));
            batch.push(entry.2);
        }
        self.touched
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let keys: Vec<Key> = batch.iter().map(|i| self.items[i].key.clone()).collect();
        for i in &batch {
            let waiter = self.items[i].waiters[0].0;
            if let Some(request) = self.requests.get_mut(&waiter) {
                if let Some(n) = request.volumes.get_mut(&volume) {
                    *n -= 1;
                    if *n == 0 {
                        request.volumes.remove(&volume);
                    }
                }
            }
        }
        tracing::debug!(%volume, files = keys.len(), "recall batch dispatched");
        tape.running = Some(batch);
        let backend = Arc::clone(&self.backend);
        self.batches.spawn(async move {
            let outcome = unwind_safe("recall", backend.recall(&keys)).await;
            (volume, outcome)
        });
    }

    fn choose_tape_order(&self, mounted: &HashSet<String>) -> Option<String> {
        let now = Instant::now();
        // (volume, pending files, oldest arrival) of each tape that may run now. Work for a mounted
        // tape costs no mount, so it need not wait for company.
        let eligible: Vec<(&String, usize, Instant)> = self
            .tapes
            .iter()
            .filter(|(_, t)| t.running.is_none())
            .filter_map(|(v, t)| Some((v, t.queue.len(), t.oldest()?)))
            .filter(|(v, _, oldest)| {
                now.duration_since(*oldest) >= self.config.batch_window || mounted.contains(*v)
            })
            .collect();
        let starving = eligible
            .iter()
            .filter(|(_, _, oldest)| now.duration_since(*oldest) >= self.config.max_wait)
            .min_by_key(|(v, _, oldest)| (*oldest, *v));
        if let Some((volume, _, _)) = starving {
            return Some((*volume).clone());
        }
        let biggest = |only_mounted: bool| {
            eligible
                .iter()
                .filter(|(v, _, _)| !only_mounted || mounted.contains(*v))
                .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)).then(b.0.cmp(a.0)))
                .map(|(v, _, _)| (*v).clone())
        };
        biggest(true).or_else(|| biggest(false))
    }

    /// The front request's first tape that is not busy, and the request as the group to take.
    fn choose_fifo(&self) -> Option<(String, u64)> {
        let front = *self.fifo.first()?;
        let request = self.requests.get(&front)?;
        request
            .volumes
            .keys()
            .find(|v| self.tapes.get(*v).is_some_and(|t| t.running.is_none()))
            .map(|v| (v.clone(), front))
    }

    /// When the next pending tape becomes eligible (end of its batch window), if one is waiting.
    fn next_eligible(&self) -> Option<Instant> {
        if self.config.policy != RecallPolicy::TapeOrder || self.batches.len() >= self.drives {
            return None;
        }
        let now = Instant::now();
        self.tapes
            .values()
            .filter(|t| t.running.is_none())
            .filter_map(|t| t.oldest())
            .map(|oldest| oldest + self.config.batch_window)
            .filter(|&at| at > now)
            .min()
    }

    fn complete(&mut self, volume: &str, outcomes: archive_core::Result<Vec<KeyOutcome<()>>>) {
        let Some(tape) = self.tapes.get_mut(volume) else {
            return;
        };
        let batch = tape.running.take().unwrap_or_default();
        if tape.queue.is_empty() {
            self.tapes.remove(volume);
        }
        self.touch(batch.len());
        let mut by_key: HashMap<Key, archive_core::Result<()>> = HashMap::new();
        let failed_whole = match outcomes {
            Ok(outcomes) => {
                by_key.extend(outcomes);
                None
            }
            Err(e) => {
                tracing::warn!(%volume, error = %e, "recall batch failed as a whole");
                Some(e)
            }
        };
        for item_id in batch {
            let Some(item) = self.items.remove(&item_id) else {
                continue;
            };
            self.index.remove(&(item.group, item.key.clone()));
            let outcome = match (&failed_whole, by_key.get(&item.key)) {
                (Some(e), _) => Err(duplicate(e)),
                (None, Some(Ok(()))) => Ok(()),
                (None, Some(Err(e))) => Err(duplicate(e)),
                (None, None) => Err(Error::backend(
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
                self.fifo.remove(&id);
            }
        }
    }

    /// At shutdown: every key not in a running batch is answered "shutting down".
    fn fail_pending(&mut self) {
        // Dropping the lookups aborts them.
        self.placements = JoinSet::new();
        for id in std::mem::take(&mut self.awaiting_placement) {
            if let Some(request) = self.requests.remove(&id) {
                self.fifo.remove(&id);
                request.fail_unanswered();
            }
        }
        let mut pending = Vec::new();
        for tape in self.tapes.values_mut() {
            pending.extend(std::mem::take(&mut tape.queue).into_iter().map(|e| e.2));
            tape.arrivals.clear();
        }
        for item_id in pending {
            if let Some(item) = self.items.remove(&item_id) {
                self.index.remove(&(item.group, item.key.clone()));
                self.answer(&item.waiters, &Err(shutting_down()));
            }
        }
    }
}

/// One group for keys without tape positions, in the order given.
fn in_given_order(keys: &[Key]) -> Vec<KeyOutcome<Placement>> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let at = Placement::Tape {
                volume: String::new(),
                position: i as u64,
                resident_copy: false,
            };
            (k.clone(), Ok(at))
        })
        .collect()
}

/// Runs a backend call, turning a panic into an error so that the waiters get an answer and the tape
/// is freed (a panicking task would otherwise leave its tape marked busy for ever).
async fn unwind_safe<T>(
    operation: &'static str,
    call: impl Future<Output = archive_core::Result<T>>,
) -> archive_core::Result<T> {
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            tracing::error!(operation, %message, "the backend panicked");
            Err(Error::backend(
                "recall scheduler",
                format!("the backend's {operation} panicked: {message}"),
            ))
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

    fn fail_unanswered(mut self) {
        for index in 0..self.outcomes.len() {
            self.answer(index, Err(shutting_down()));
        }
        self.finish();
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

    /// A backend whose tape layout is written in its keys, `<volume>/<position>/<name>`: names starting
    /// with `slow` take 1000 s to be placed, a batch holding a `panic` key panics, one holding a `fail`
    /// key fails as a whole. Recalls answer at once and are recorded.
    #[derive(Debug, Default)]
    struct Scripted {
        batches: Mutex<Vec<Vec<String>>>,
    }

    fn at(volume: &str, position: u64, name: &str) -> Key {
        Key::new(format!("{volume}/{position}/{name}")).unwrap()
    }

    fn name_of(key: &Key) -> &str {
        key.as_str().rsplit('/').next().unwrap()
    }

    #[async_trait::async_trait]
    impl ArchiveBackend for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn capabilities(&self) -> archive_core::Capabilities {
            archive_core::Capabilities {
                tape_tier: true,
                shared_by_processes: false,
            }
        }
        async fn put(
            &self,
            _: &Key,
            _: archive_core::ByteStream,
            _: PutOptions,
        ) -> archive_core::Result<archive_core::PutOutcome> {
            Err(self.unsupported("put"))
        }
        async fn get(
            &self,
            _: &Key,
            _: archive_core::ReadRange,
        ) -> archive_core::Result<archive_core::GetResult> {
            Err(self.unsupported("get"))
        }
        async fn status(&self, _: &Key) -> archive_core::Result<archive_core::FileStatus> {
            Err(self.unsupported("status"))
        }
        async fn stage(&self, _: &Key) -> archive_core::Result<()> {
            Err(self.unsupported("stage"))
        }
        async fn adopt(&self, _: &Key, _: &std::path::Path, _: bool) -> archive_core::Result<()> {
            Err(self.unsupported("adopt"))
        }
        async fn delete(&self, _: &Key) -> archive_core::Result<()> {
            Err(self.unsupported("delete"))
        }
        async fn list(&self, _: &str) -> archive_core::Result<Vec<archive_core::ListEntry>> {
            Err(self.unsupported("list"))
        }
        async fn placement(
            &self,
            keys: &[Key],
        ) -> archive_core::Result<Vec<KeyOutcome<Placement>>> {
            if keys.iter().any(|k| name_of(k).starts_with("slow")) {
                tokio::time::sleep(Duration::from_secs(1000)).await;
            }
            Ok(keys
                .iter()
                .map(|k| {
                    let mut parts = k.as_str().split('/');
                    let volume = parts.next().unwrap().to_string();
                    let position = parts.next().unwrap().parse().unwrap();
                    let at = Placement::Tape {
                        volume,
                        position,
                        resident_copy: false,
                    };
                    (k.clone(), Ok(at))
                })
                .collect())
        }
        async fn recall(&self, keys: &[Key]) -> archive_core::Result<Vec<KeyOutcome<()>>> {
            let names: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            self.batches.lock().unwrap().push(names);
            if keys.iter().any(|k| name_of(k).starts_with("panic")) {
                panic!("drive fell over");
            }
            if keys.iter().any(|k| name_of(k).starts_with("fail")) {
                return Err(Error::backend("scripted", "the library is offline"));
            }
            Ok(keys.iter().map(|k| (k.clone(), Ok(()))).collect())
        }
    }

    fn scripted(drives: usize, batch_window: Duration) -> (Arc<Scripted>, RecallScheduler) {
        let backend = Arc::new(Scripted::default());
        let scheduler = RecallScheduler::start(
            Arc::clone(&backend) as Arc<dyn ArchiveBackend>,
            RecallSchedulerConfig {
                drives,
                batch_window,
                ..RecallSchedulerConfig::default()
            },
        );
        (backend, scheduler)
    }

    /// Waits for a ticket, failing the test (instead of hanging) when the answer never comes.
    async fn answered(ticket: RecallTicket) -> Vec<KeyOutcome<()>> {
        tokio::time::timeout(Duration::from_secs(100_000), ticket.wait())
            .await
            .expect("no answer: the scheduler is stuck")
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_batch_answers_its_waiters_and_frees_its_tape() {
        let (_b, s) = scripted(1, Duration::from_secs(2));
        let first = s.submit(vec![at("T1", 1, "panic")]);
        let again = s.submit(vec![at("T1", 1, "panic")]);
        for out in [answered(first).await, answered(again).await] {
            let err = out[0].1.as_ref().unwrap_err().to_string();
            assert!(err.contains("panicked: drive fell over"), "{err}");
        }
        // The tape is free again: the next recall on it runs.
        ok_all(&answered(s.submit(vec![at("T1", 2, "fine")])).await);
        s.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_batch_answers_every_waiter_with_its_error() {
        let (b, s) = scripted(1, Duration::from_secs(2));
        let one = s.submit(vec![at("T1", 1, "fail"), at("T1", 2, "a")]);
        let other = s.submit(vec![at("T1", 2, "a")]);
        for out in [answered(one).await, answered(other).await] {
            for (k, o) in out {
                let err = o.unwrap_err().to_string();
                assert!(err.contains("the library is offline"), "{k}: {err}");
            }
        }
        assert_eq!(b.batches.lock().unwrap().len(), 1, "one batch for both");
        ok_all(&answered(s.submit(vec![at("T1", 3, "b")])).await);
        s.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_placement_holds_up_only_its_own_request() {
        let (_b, s) = scripted(2, Duration::from_secs(2));
        let start = Instant::now();
        let slow = s.submit(vec![at("T1", 1, "slow")]);
        tokio::time::sleep(Duration::from_secs(1)).await;
        ok_all(&answered(s.submit(vec![at("T2", 1, "quick")])).await);
        let quick_done = start.elapsed();
        assert!(
            quick_done < Duration::from_secs(10),
            "a quick request waited {quick_done:?} behind a slow placement"
        );
        ok_all(&answered(slow).await);
        assert!(start.elapsed() >= Duration::from_secs(1000));
        s.shutdown().await;
    }

    /// 20,000 keys on 10 tapes, submitted as 200 tickets of 100 (as the dispatcher sends a big
    /// request): each key is touched a fixed number of times (filed, dispatched, answered), however
    /// much work is already pending. Rescanning the pending work per submission or per batch would
    /// touch each key once per ticket or per batch, millions of times in all.
    #[tokio::test(start_paused = true)]
    async fn each_key_costs_a_fixed_number_of_steps_however_much_is_pending() {
        let (b, s) = scripted(1, Duration::from_secs(2));
        let keys: Vec<Key> = (0..20_000u64)
            .map(|i| at(&format!("T{}", i % 10), i / 10, &format!("f{i}")))
            .collect();
        let tickets = s.submit_in_slices(&keys, 100);
        assert_eq!(tickets.len(), 200);
        for t in tickets {
            ok_all(&answered(t).await);
        }
        let touched = s.entries_touched();
        assert!(
            (3 * 20_000..=4 * 20_000).contains(&touched),
            "{touched} entries touched for 20,000 keys"
        );
        // Pooled by tape across tickets: at most 1000 files a batch, so 20 batches, in position order.
        s.shutdown().await;
        let batches = b.batches.lock().unwrap();
        assert_eq!(batches.len(), 20);
        for batch in batches.iter() {
            let volume = batch[0].split('/').next().unwrap();
            assert!(batch.iter().all(|k| k.starts_with(&format!("{volume}/"))));
            let positions: Vec<u64> = batch
                .iter()
                .map(|k| k.split('/').nth(1).unwrap().parse().unwrap())
                .collect();
            assert!(
                positions.windows(2).all(|w| w[0] < w[1]),
                "{volume} out of order"
            );
        }
    }

    /// `batch_window` as the README and the configuration describe it: a lone recall of a file on a
    /// mounted tape goes at once; new work for a tape that is not mounted waits the window, and work
    /// arriving within it joins the same mount.
    #[tokio::test(start_paused = true)]
    async fn the_batch_window_holds_unmounted_tapes_only() {
        let (b, _dir) = library(1, 30, 10, 1.0).await;
        assert_eq!(b.mounted_volumes().await, ["T00002"]);
        let window = Duration::from_secs(100);
        let s = RecallScheduler::start(
            Arc::clone(&b) as Arc<dyn ArchiveBackend>,
            RecallSchedulerConfig {
                drives: 1,
                batch_window: window,
                ..RecallSchedulerConfig::default()
            },
        );
        // Key 25 is on the mounted tape T00002: a locate and a 1 s read, no window.
        let start = Instant::now();
        ok_all(&answered(s.submit(vec![key(25)])).await);
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "a lone recall on a mounted tape waited {:?}",
            start.elapsed()
        );
        // Keys 3 and 7 are on T00000, not mounted: the first waits the window, the second arrives
        // within it and shares the mount.
        let mounts = b.tape_stats().mounts;
        let start = Instant::now();
        let first = s.submit(vec![key(3)]);
        tokio::time::sleep(Duration::from_secs(50)).await;
        let second = s.submit(vec![key(7)]);
        ok_all(&answered(first).await);
        ok_all(&answered(second).await);
        let elapsed = start.elapsed();
        assert!(
            elapsed >= window + Duration::from_secs(60),
            "dispatched before the window closed: {elapsed:?}"
        );
        assert!(elapsed < window + Duration::from_secs(200), "{elapsed:?}");
        assert_eq!(b.tape_stats().mounts - mounts, 1, "one mount for both");
        s.shutdown().await;
    }
}
