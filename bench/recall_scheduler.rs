//! Recall scheduler benchmark, in simulated time (deterministic, takes a minute of real time):
//! 1000 recalls of random files spread over 10 tapes, 2 drives, arriving as 200 requests of 5 objects of
//! one container (20 containers whose objects lie on every tape) with exponential gaps of mean 5 s, so
//! that the arrivals span about 1000 s, hundreds of batch windows. Compares:
//! - FIFO as the eth SwiftHLM dispatcher runs it: one request at a time in arrival order, and the request
//!   it takes absorbs every pending request for the same container (its files grouped by tape, sorted by
//!   position, its tapes on the drives in parallel);
//! - the tape-order scheduler with the production batch window (2 s) and with a long one (60 s);
//! - a lower bound on the makespan that no schedule can beat (see `lower_bound`).
//!
//! Prints a markdown table. Run: `cargo run --release --example recall_scheduler_bench` (the output is
//! kept in `bench/recall_scheduler.md`).
//!
//! The library runs on the real tiered backend (files on disk, cold tier, journal) with `time_scale = 1`
//! under a paused tokio clock: every simulated second is slept on a clock that jumps ahead when nothing
//! else can run, so the schedule is exact and reproducible.

use archive_core::{ArchiveBackend, Key, PutOptions};
use archive_tiered::{TieredBackend, TieredConfig};
use archiveinterface::hsm::recall_scheduler::{
    RecallPolicy, RecallScheduler, RecallSchedulerConfig,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const TAPES: usize = 10;
const DRIVES: usize = 2;
const FILES_PER_TAPE: usize = 200;
const REQUESTS: usize = 200;
const FILES_PER_REQUEST: usize = 5;
/// Containers the requests name; a container's objects are random files, so they lie on every tape.
const CONTAINERS: usize = 20;
/// Real bytes per file; the tape model's speeds are scaled to them (see `library_config`).
const FILE_SIZE: u64 = 4096;
const SEED: u64 = 0x5eed_2026;
/// Mean gap between two requests, seconds (exponentially distributed).
const MEAN_GAP_SECS: f64 = 5.0;
/// Seconds to read one file (see `library_config`).
const READ_SECS: f64 = 2.0;
/// Seconds to mount a tape.
const MOUNT_SECS: f64 = 60.0;

/// An LTO-like library scaled to small files: mount 60 s, unmount 30 s plus rewind, a full-length
/// locate 100 s, 2 s to read a file (a ~700 MB file at 360 MB/s).
fn library_config(cold: std::path::PathBuf, time_scale: f64) -> TieredConfig {
    let capacity = FILE_SIZE * FILES_PER_TAPE as u64;
    TieredConfig {
        cold_dir: Some(cold),
        tapes: TAPES,
        tape_capacity_bytes: capacity,
        drives: DRIVES,
        mount_secs: MOUNT_SECS,
        unmount_secs: 30.0,
        locate_bytes_per_sec: capacity as f64 / 100.0,
        read_bytes_per_sec: FILE_SIZE as f64 / READ_SECS,
        write_bytes_per_sec: FILE_SIZE as f64 / 2.0,
        time_scale,
        ..Default::default()
    }
}

/// splitmix64: small, deterministic, good enough to pick files and gaps.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn key(i: usize) -> Key {
    Key::new(format!("{:02}/{i:05}", i % 100)).expect("valid key")
}

/// One recall request: when it arrives, the container it names, the files (objects) it asks for.
struct Request {
    arrival: Duration,
    container: usize,
    files: Vec<usize>,
}

/// The workload: 1000 distinct random files out of 2000, dealt to containers (file order in the shuffle
/// modulo `CONTAINERS`); each request takes the next `FILES_PER_REQUEST` files of a random container.
fn workload() -> Vec<Request> {
    let mut rng = Rng(SEED);
    let mut all: Vec<usize> = (0..TAPES * FILES_PER_TAPE).collect();
    for i in (1..all.len()).rev() {
        all.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let wanted = &all[..REQUESTS * FILES_PER_REQUEST];
    let mut by_container: Vec<Vec<usize>> = (0..CONTAINERS)
        .map(|c| wanted.iter().copied().skip(c).step_by(CONTAINERS).collect())
        .collect();
    let mut at = 0.0;
    let mut requests = Vec::with_capacity(REQUESTS);
    while requests.len() < REQUESTS {
        let container = (rng.next() % CONTAINERS as u64) as usize;
        let left = &mut by_container[container];
        if left.is_empty() {
            continue;
        }
        let files = left.split_off(left.len().saturating_sub(FILES_PER_REQUEST));
        requests.push(Request {
            arrival: Duration::from_secs_f64(at),
            container,
            files,
        });
        at += -MEAN_GAP_SECS * (1.0 - rng.unit()).ln();
    }
    requests
}

/// Writes and migrates the library once (no simulated sleeping), in file order: file i on tape
/// i / FILES_PER_TAPE at position (i % FILES_PER_TAPE) * FILE_SIZE.
async fn build_library(dir: &std::path::Path) {
    let b = TieredBackend::open(dir.join("disk"), library_config(dir.join("cold"), 0.0))
        .expect("open library");
    let keys: Vec<Key> = (0..TAPES * FILES_PER_TAPE).map(key).collect();
    for (i, k) in keys.iter().enumerate() {
        let body = archive_core::conformance::body_of(vec![vec![i as u8; FILE_SIZE as usize]]);
        b.put(k, body, PutOptions::default()).await.expect("put");
    }
    for (k, outcome) in b.migrate(&keys).await.expect("migrate") {
        outcome.unwrap_or_else(|e| panic!("migrate {k}: {e}"));
    }
}

#[derive(Debug)]
struct Outcome {
    makespan: f64,
    mean_wait: f64,
    p99_wait: f64,
    mounts: u64,
}

fn summarize(mut waits: Vec<f64>, makespan: f64, mounts: u64) -> Outcome {
    waits.sort_by(|a, b| a.total_cmp(b));
    // Nearest-rank 99th percentile.
    let rank = ((0.99 * waits.len() as f64).ceil() as usize).max(1) - 1;
    Outcome {
        makespan,
        mean_wait: waits.iter().sum::<f64>() / waits.len() as f64,
        p99_wait: waits[rank],
        mounts,
    }
}

/// A fresh copy of the library, opened for a run.
fn open_copy(template: &std::path::Path) -> (tempfile::TempDir, Arc<TieredBackend>) {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(template, dir.path());
    let backend = Arc::new(
        TieredBackend::open(
            dir.path().join("disk"),
            library_config(dir.path().join("cold"), 1.0),
        )
        .expect("open library"),
    );
    (dir, backend)
}

fn start_scheduler(
    backend: &Arc<TieredBackend>,
    policy: RecallPolicy,
    batch_window: Duration,
) -> RecallScheduler {
    RecallScheduler::start(
        Arc::clone(backend) as Arc<dyn ArchiveBackend>,
        RecallSchedulerConfig {
            drives: DRIVES,
            policy,
            batch_window,
            max_wait: Duration::from_secs(3600),
            max_batch_files: 1000,
        },
    )
}

fn keys_of(files: &[usize]) -> Vec<Key> {
    files.iter().copied().map(key).collect()
}

fn check(outcomes: Vec<archive_core::KeyOutcome<()>>) {
    for (k, outcome) in outcomes {
        outcome.unwrap_or_else(|e| panic!("recall {k}: {e}"));
    }
}

/// Every request submitted to the tape-order scheduler as it arrives.
async fn run_tape_order(template: &std::path::Path, batch_window: Duration) -> Outcome {
    let (_dir, backend) = open_copy(template);
    let scheduler = start_scheduler(&backend, RecallPolicy::TapeOrder, batch_window);
    let start = Instant::now();
    let mut waiting = Vec::new();
    for request in workload() {
        tokio::time::sleep_until(start + request.arrival).await;
        let ticket = scheduler.submit(keys_of(&request.files));
        waiting.push(tokio::spawn(async move {
            check(ticket.wait().await);
            start.elapsed().as_secs_f64() - request.arrival.as_secs_f64()
        }));
    }
    let mut waits = Vec::new();
    for w in waiting {
        waits.push(w.await.expect("request task"));
    }
    let makespan = start.elapsed().as_secs_f64();
    scheduler.shutdown().await;
    summarize(waits, makespan, backend.tape_stats().mounts)
}

/// The eth SwiftHLM dispatcher: takes the oldest pending request, merges into it every other pending
/// request for the same container, runs it to the end (FIFO policy: its tapes on the drives in
/// parallel, each in position order), then loops.
async fn run_fifo_merging(template: &std::path::Path) -> Outcome {
    let (_dir, backend) = open_copy(template);
    let scheduler = start_scheduler(&backend, RecallPolicy::Fifo, Duration::ZERO);
    let start = Instant::now();
    let (arrive, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for request in workload() {
            tokio::time::sleep_until(start + request.arrival).await;
            let _ = arrive.send(request);
        }
    });
    let mut pending: std::collections::VecDeque<Request> = Default::default();
    let mut waits = Vec::new();
    loop {
        while let Ok(request) = arrivals.try_recv() {
            pending.push_back(request);
        }
        let Some(first) = pending.pop_front() else {
            match arrivals.recv().await {
                Some(request) => {
                    pending.push_back(request);
                    continue;
                }
                None => break,
            }
        };
        let (mut merged, rest): (Vec<Request>, Vec<Request>) = pending
            .drain(..)
            .partition(|r| r.container == first.container);
        pending.extend(rest);
        merged.insert(0, first);
        let files: Vec<usize> = merged.iter().flat_map(|r| r.files.clone()).collect();
        check(scheduler.submit(keys_of(&files)).wait().await);
        let now = start.elapsed().as_secs_f64();
        waits.extend(merged.iter().map(|r| now - r.arrival.as_secs_f64()));
    }
    let makespan = start.elapsed().as_secs_f64();
    scheduler.shutdown().await;
    summarize(waits, makespan, backend.tape_stats().mounts)
}

/// A lower bound on the makespan, from the same tape model: each needed tape costs at least the reading
/// of its files and, unless it is mounted when the run starts, one mount and the travel of the head
/// from the beginning of the tape to the end of its farthest file, less the ground covered while reading
/// (unmounts, rewinds and every other locate count as free); the drives share that work at best evenly,
/// no tape's work is split between drives at once, and nothing ends before the last request arrives and
/// one file is read. No schedule can do better; the real optimum is above it.
async fn lower_bound(template: &std::path::Path) -> f64 {
    let (_dir, backend) = open_copy(template);
    let config = library_config("unused".into(), 1.0);
    let mounted = backend.mounted_volumes().await;
    let work = workload();
    let mut files_per_tape = [0usize; TAPES];
    let mut farthest_end = [0u64; TAPES];
    for request in &work {
        for &f in &request.files {
            let tape = f / FILES_PER_TAPE;
            files_per_tape[tape] += 1;
            let end = (f % FILES_PER_TAPE + 1) as u64 * FILE_SIZE;
            farthest_end[tape] = farthest_end[tape].max(end);
        }
    }
    let per_tape: Vec<f64> = files_per_tape
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(tape, &n)| {
            // A tape mounted at the start may have its head anywhere: no mount, no travel counted.
            let mount_and_travel = if mounted.contains(&archive_tiered::volume_name(tape)) {
                0.0
            } else {
                MOUNT_SECS
                    + farthest_end[tape].saturating_sub(n as u64 * FILE_SIZE) as f64
                        / config.locate_bytes_per_sec
            };
            mount_and_travel + n as f64 * READ_SECS
        })
        .collect();
    let longest_tape = per_tape.iter().copied().fold(0.0, f64::max);
    let shared = per_tape.iter().sum::<f64>() / DRIVES as f64;
    let last_arrival = work
        .iter()
        .map(|r| r.arrival.as_secs_f64())
        .fold(0.0, f64::max);
    longest_tape.max(shared).max(last_arrival + READ_SECS)
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).expect("read template") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let template = tempfile::tempdir().expect("tempdir");
        build_library(template.path()).await;
        let secs = Duration::from_secs;
        let fifo = run_fifo_merging(template.path()).await;
        let production = run_tape_order(template.path(), secs(2)).await;
        let long_window = run_tape_order(template.path(), secs(60)).await;
        let bound = lower_bound(template.path()).await;
        let span = workload().last().map(|r| r.arrival.as_secs_f64()).unwrap_or(0.0);

        println!("## Recall scheduler: {REQUESTS} requests x {FILES_PER_REQUEST} random files, {TAPES} tapes x {FILES_PER_TAPE} files, {DRIVES} drives\n");
        println!("Simulated seconds (tape model: mount {MOUNT_SECS} s, unmount 30 s + rewind, full-tape locate 100 s, {READ_SECS} s per file read); each request names {FILES_PER_REQUEST} objects of one of {CONTAINERS} containers; requests arrive with exponential gaps of mean {MEAN_GAP_SECS} s, the last at {span:.0} s; seed {SEED:#x}.\n");
        println!("| schedule | makespan (s) | mean wait (s) | p99 wait (s) | mounts |");
        println!("|---|---:|---:|---:|---:|");
        for (name, o) in [
            ("FIFO, one request at a time, same-container requests merged (eth SwiftHLM dispatcher)", &fifo),
            ("tape-order scheduler (ours), batch window 2 s (default)", &production),
            ("tape-order scheduler (ours), batch window 60 s", &long_window),
        ] {
            println!(
                "| {name} | {:.0} | {:.0} | {:.0} | {} |",
                o.makespan, o.mean_wait, o.p99_wait, o.mounts
            );
        }
        println!("| lower bound (no schedule can do better) | {bound:.0} | | | |");
        let vs_fifo = production.makespan / fifo.makespan;
        let vs_bound = production.makespan / bound;
        let wait_vs_fifo = production.mean_wait / fifo.mean_wait;
        println!();
        println!(
            "batch window 2 s: makespan / FIFO = {vs_fifo:.3} (target <= 0.200: {}); makespan / lower bound = {vs_bound:.3} (target <= 1.100: {}); mean wait / FIFO = {wait_vs_fifo:.3}",
            if vs_fifo <= 0.2 { "met" } else { "MISSED" },
            if vs_bound <= 1.1 { "met" } else { "MISSED" },
        );
    });
}
