//! What planning one big recall costs the scheduler: one HLM recall of a 100,000-object container,
//! submitted the way the dispatcher does it (all keys at once, as tickets of 100 keys), planned,
//! dispatched and answered. Prints the process CPU time (user + system) and the wall time.
//!
//! The backend is an in-memory catalog (placement: 100,000 objects over 10 tapes, recall: answers at
//! once), so the figure is the scheduler's own cost, not a tape library's or a disk's. The clock is
//! paused, so the batch window costs no real time.
//!
//! Run: `cargo run --release --example recall_planning_bench`.

use archive_core::{
    ArchiveBackend, ByteStream, Capabilities, Error, FileStatus, GetResult, Key, KeyOutcome,
    ListEntry, Placement, PutOptions, PutOutcome, ReadRange, Result,
};
use archiveinterface::hsm::recall_scheduler::{RecallScheduler, RecallSchedulerConfig};
use async_trait::async_trait;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const OBJECTS: usize = 100_000;
const TAPES: usize = 10;
/// Keys per ticket, as the dispatcher submits a recall.
const SLICE: usize = 100;

/// Every object migrated: object i on tape i % TAPES at position i / TAPES.
#[derive(Debug)]
struct Catalog;

fn index_of(key: &Key) -> usize {
    key.as_str()
        .rsplit('/')
        .next()
        .and_then(|name| name.parse().ok())
        .expect("a key of this benchmark")
}

#[async_trait]
impl ArchiveBackend for Catalog {
    fn name(&self) -> &'static str {
        "catalog"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tape_tier: true,
            shared_by_processes: false,
        }
    }
    async fn put(&self, _: &Key, _: ByteStream, _: PutOptions) -> Result<PutOutcome> {
        Err(self.unsupported("put"))
    }
    async fn get(&self, _: &Key, _: ReadRange) -> Result<GetResult> {
        Err(self.unsupported("get"))
    }
    async fn status(&self, _: &Key) -> Result<FileStatus> {
        Err(self.unsupported("status"))
    }
    async fn stage(&self, _: &Key) -> Result<()> {
        Err(self.unsupported("stage"))
    }
    async fn adopt(&self, _: &Key, _: &Path, _: bool) -> Result<()> {
        Err(self.unsupported("adopt"))
    }
    async fn delete(&self, _: &Key) -> Result<()> {
        Err(self.unsupported("delete"))
    }
    async fn list(&self, _: &str) -> Result<Vec<ListEntry>> {
        Err(self.unsupported("list"))
    }
    async fn placement(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<Placement>>> {
        Ok(keys
            .iter()
            .map(|k| {
                let i = index_of(k);
                let at = Placement::Tape {
                    volume: format!("T{:05}", i % TAPES),
                    position: (i / TAPES) as u64,
                    resident_copy: false,
                };
                (k.clone(), Ok(at))
            })
            .collect())
    }
    async fn recall(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        Ok(keys.iter().map(|k| (k.clone(), Ok(()))).collect())
    }
}

/// User + system CPU seconds of this process so far, from `/proc/self/stat` (fields 14 and 15, in
/// clock ticks of 1/100 s: Linux's fixed `USER_HZ`).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields[i - 3].parse::<f64>().expect("clock ticks");
    (ticks(14) + ticks(15)) / 100.0
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let keys: Vec<Key> = (0..OBJECTS)
        .map(|i| Key::new(format!("AUTH_bench/container/object/{i}")).expect("valid key"))
        .collect();
    runtime.block_on(async {
        let scheduler = RecallScheduler::start(
            Arc::new(Catalog),
            RecallSchedulerConfig {
                drives: 2,
                batch_window: Duration::from_secs(2),
                ..RecallSchedulerConfig::default()
            },
        );
        let (cpu0, wall0) = (cpu_seconds(), Instant::now());
        let mut answered = 0;
        for ticket in scheduler.submit_in_slices(&keys, SLICE) {
            for (k, outcome) in ticket.wait().await {
                outcome.unwrap_or_else(|e: Error| panic!("{k}: {e}"));
                answered += 1;
            }
        }
        let (cpu, wall) = (cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());
        assert_eq!(answered, OBJECTS);
        let touched = scheduler.entries_touched();
        scheduler.shutdown().await;
        println!("## Planning one recall of a {OBJECTS}-object container\n");
        println!("{OBJECTS} keys over {TAPES} tapes, submitted as tickets of {SLICE} keys (as the HLM dispatcher does), 2 drives, batch window 2 s (paused clock), in-memory placement.\n");
        println!("| CPU (user + system) | wall | pending-work entries touched |");
        println!("|---:|---:|---:|");
        println!("| {cpu:.3} s | {wall:.3} s | {touched} ({:.1} per key) |", touched as f64 / OBJECTS as f64);
        println!();
        println!(
            "target: under 1 s of CPU: {}",
            if cpu < 1.0 { "met" } else { "MISSED" }
        );
    });
}
