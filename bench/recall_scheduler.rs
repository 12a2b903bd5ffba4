//! Recall scheduler benchmark, in simulated time (deterministic, takes seconds of real time):
//! 1000 recalls of random files spread over 10 tapes, 2 drives, arriving as 100 requests of 10 files.
//! Compares FIFO one-request-at-a-time (what SwiftHLM and LTFS DM do) with the tape-order scheduler and
//! with the ideal schedule (every needed tape mounted once, read in position order, all work known at
//! the start, tapes spread over the drives longest first). Prints a markdown table.
//!
//! Run: `cargo run --release --example recall_scheduler_bench` (the output is kept in
//! `bench/recall_scheduler.md`).
//!
//! The library runs on the real tiered backend (files on disk, cold tier, journal) with `time_scale = 1`
//! under a paused tokio clock: every simulated second is slept on a clock that jumps ahead when nothing
//! else can run, so the schedule is exact and reproducible.

use archive_core::{ArchiveBackend, Key, PutOptions};
use archive_tiered::{TieredBackend, TieredConfig};
use archiveinterface::hlm::recall_scheduler::{
    RecallPolicy, RecallScheduler, RecallSchedulerConfig,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const TAPES: usize = 10;
const DRIVES: usize = 2;
const FILES_PER_TAPE: usize = 200;
const REQUESTS: usize = 100;
const FILES_PER_REQUEST: usize = 10;
/// Real bytes per file; the tape model's speeds are scaled to them (see `library_config`).
const FILE_SIZE: u64 = 4096;
const SEED: u64 = 0x5eed_2026;
/// Mean gap between two requests, seconds (exponentially distributed).
const MEAN_GAP_SECS: f64 = 0.5;

/// An LTO-like library scaled to small files: mount 60 s, unmount 30 s plus rewind, a full-length
/// locate 100 s, 2 s to read a file (a ~700 MB file at 360 MB/s).
fn library_config(cold: std::path::PathBuf, time_scale: f64) -> TieredConfig {
    let capacity = FILE_SIZE * FILES_PER_TAPE as u64;
    TieredConfig {
        cold_dir: Some(cold),
        tapes: TAPES,
        tape_capacity_bytes: capacity,
        drives: DRIVES,
        mount_secs: 60.0,
        unmount_secs: 30.0,
        locate_bytes_per_sec: capacity as f64 / 100.0,
        read_bytes_per_sec: FILE_SIZE as f64 / 2.0,
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

/// The workload: (arrival, files) per request; 1000 distinct random files out of 2000.
fn workload() -> Vec<(Duration, Vec<usize>)> {
    let mut rng = Rng(SEED);
    let mut all: Vec<usize> = (0..TAPES * FILES_PER_TAPE).collect();
    for i in (1..all.len()).rev() {
        all.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let mut at = 0.0;
    (0..REQUESTS)
        .map(|r| {
            let files = all[r * FILES_PER_REQUEST..(r + 1) * FILES_PER_REQUEST].to_vec();
            let arrival = Duration::from_secs_f64(at);
            at += -MEAN_GAP_SECS * (1.0 - rng.unit()).ln();
            (arrival, files)
        })
        .collect()
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

/// Runs the workload through the scheduler with `policy` on a fresh copy of the library.
async fn run(template: &std::path::Path, policy: RecallPolicy, batch_window: Duration) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(template, dir.path());
    let backend = Arc::new(
        TieredBackend::open(
            dir.path().join("disk"),
            library_config(dir.path().join("cold"), 1.0),
        )
        .expect("open library"),
    );
    let scheduler = RecallScheduler::start(
        Arc::clone(&backend) as Arc<dyn ArchiveBackend>,
        RecallSchedulerConfig {
            drives: DRIVES,
            policy,
            batch_window,
            max_wait: Duration::from_secs(3600),
            max_batch_files: 1000,
        },
    );
    let start = Instant::now();
    let mut waiting = Vec::new();
    for (arrival, files) in workload() {
        tokio::time::sleep_until(start + arrival).await;
        let ticket = scheduler.submit(files.into_iter().map(key).collect());
        waiting.push(tokio::spawn(async move {
            for (k, outcome) in ticket.wait().await {
                outcome.unwrap_or_else(|e| panic!("recall {k}: {e}"));
            }
            start.elapsed().as_secs_f64() - arrival.as_secs_f64()
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

/// The ideal schedule, from the same tape model: all requests known at t = 0, each needed tape mounted
/// once and read in position order, tapes assigned longest first to the drive that frees first.
fn ideal() -> Outcome {
    let config = library_config("unused".into(), 1.0);
    let work = workload();
    let mut per_tape: Vec<Vec<usize>> = vec![Vec::new(); TAPES];
    for (_, files) in &work {
        for &f in files {
            per_tape[f / FILES_PER_TAPE].push(f);
        }
    }
    // Per tape: read completion offsets from mount start, total busy time, final head position.
    struct TapeRun {
        done_at: Vec<(usize, f64)>,
        secs: f64,
        head: u64,
    }
    let runs: Vec<TapeRun> = per_tape
        .iter_mut()
        .filter(|files| !files.is_empty())
        .map(|files| {
            files.sort_unstable();
            let (mut t, mut head) = (config.mount_secs, 0u64);
            let mut done_at = Vec::new();
            for &f in files.iter() {
                let position = (f % FILES_PER_TAPE) as u64 * FILE_SIZE;
                t += head.abs_diff(position) as f64 / config.locate_bytes_per_sec;
                t += FILE_SIZE as f64 / config.read_bytes_per_sec;
                head = position + FILE_SIZE;
                done_at.push((f, t));
            }
            TapeRun {
                done_at,
                secs: t,
                head,
            }
        })
        .collect();
    let mut order: Vec<&TapeRun> = runs.iter().collect();
    order.sort_by(|a, b| b.secs.total_cmp(&a.secs));
    let mut drive_free = [(0.0f64, None::<u64>); DRIVES];
    let mut file_done = std::collections::HashMap::new();
    for run in order {
        let d = (0..DRIVES)
            .min_by(|&a, &b| drive_free[a].0.total_cmp(&drive_free[b].0))
            .expect("drives");
        let (mut t, previous_head) = drive_free[d];
        if let Some(head) = previous_head {
            t += head as f64 / config.locate_bytes_per_sec + config.unmount_secs;
        }
        for &(f, offset) in &run.done_at {
            file_done.insert(f, t + offset);
        }
        drive_free[d] = (t + run.secs, Some(run.head));
    }
    let makespan = drive_free.iter().map(|d| d.0).fold(0.0, f64::max);
    let waits = work
        .iter()
        .map(|(arrival, files)| {
            let done = files.iter().map(|f| file_done[f]).fold(0.0, f64::max);
            (done - arrival.as_secs_f64()).max(0.0)
        })
        .collect();
    summarize(waits, makespan, runs.len() as u64)
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
        let fifo = run(template.path(), RecallPolicy::Fifo, secs(0)).await;
        let ours = run(template.path(), RecallPolicy::TapeOrder, secs(60)).await;
        let short_window = run(template.path(), RecallPolicy::TapeOrder, secs(5)).await;
        let bound = ideal();

        println!("## Recall scheduler: {REQUESTS} requests x {FILES_PER_REQUEST} random files, {TAPES} tapes x {FILES_PER_TAPE} files, {DRIVES} drives\n");
        println!("Simulated seconds (tape model: mount 60 s, unmount 30 s + rewind, full-tape locate 100 s, 2 s per file read); requests arrive with exponential gaps of mean {MEAN_GAP_SECS} s; seed {SEED:#x}.\n");
        println!("| schedule | makespan (s) | mean wait (s) | p99 wait (s) | mounts |");
        println!("|---|---:|---:|---:|---:|");
        for (name, o) in [
            ("FIFO, one request at a time (SwiftHLM / LTFS DM)", &fifo),
            ("tape-order scheduler (ours), batch window 60 s", &ours),
            ("tape-order scheduler (ours), batch window 5 s", &short_window),
            ("lower bound: each tape mounted once, read in order", &bound),
        ] {
            println!(
                "| {name} | {:.0} | {:.0} | {:.0} | {} |",
                o.makespan, o.mean_wait, o.p99_wait, o.mounts
            );
        }
        let vs_fifo = ours.makespan / fifo.makespan;
        let vs_bound = ours.makespan / bound.makespan;
        println!();
        println!(
            "makespan: ours / FIFO = {vs_fifo:.3} (target <= 0.200: {}); ours / lower bound = {vs_bound:.3} (target <= 1.100: {})",
            if vs_fifo <= 0.2 { "met" } else { "MISSED" },
            if vs_bound <= 1.1 { "met" } else { "MISSED" },
        );
    });
}
