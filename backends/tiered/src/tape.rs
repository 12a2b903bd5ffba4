//! The tape model: cartridges with a capacity and an append point, drives that hold one cartridge
//! each, and the time every mount, unmount (with rewind), locate, read and write takes.
//!
//! Time is simulated: each operation's duration is computed from the configuration, added to the
//! statistics, and slept for `duration * time_scale` on the tokio clock (not at all when the scale is 0).
//! Under a paused tokio clock that makes schedules exact and deterministic, which the scheduler tests and
//! the benchmark rely on.

use crate::config::TieredConfig;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The volume name of tape number `index` (`T00000`, `T00001`, ...).
pub fn volume_name(index: usize) -> String {
    format!("T{index:05}")
}

/// Counters of everything the tape model did, in simulated seconds where timed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TapeStats {
    /// Tapes loaded into a drive.
    pub mounts: u64,
    /// Tapes unloaded from a drive.
    pub unmounts: u64,
    /// Simulated seconds the drives were busy (summed over drives).
    pub busy_secs: f64,
    /// Of which spent locating (seeking), including rewinds.
    pub locate_secs: f64,
    /// Bytes read from tape.
    pub bytes_read: u64,
    /// Bytes written to tape.
    pub bytes_written: u64,
    /// Every read, in the order the drives performed them (kept for the first million reads).
    pub reads: Vec<TapeRead>,
}

/// One read of a file from tape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapeRead {
    /// The tape volume.
    pub volume: String,
    /// Position on it.
    pub position: u64,
    /// The drive that read it.
    pub drive: usize,
}

const MAX_READ_LOG: usize = 1_000_000;

#[derive(Debug, Clone, Copy)]
struct Drive {
    mounted: Option<usize>,
    head: u64,
    busy: bool,
    last_used: u64,
}

#[derive(Debug)]
struct State {
    drives: Vec<Drive>,
    /// Bytes used (the append point) per tape.
    used: Vec<u64>,
    tick: u64,
    stats: TapeStats,
}

#[derive(Debug)]
pub(crate) struct TapeModel {
    capacity: u64,
    mount_secs: f64,
    unmount_secs: f64,
    locate_speed: f64,
    read_speed: f64,
    write_speed: f64,
    time_scale: f64,
    // Held only for bookkeeping, never across an `.await`.
    state: Mutex<State>,
    drive_freed: Notify,
}

impl TapeModel {
    pub(crate) fn new(config: &TieredConfig, used: Vec<u64>) -> TapeModel {
        TapeModel {
            capacity: config.tape_capacity_bytes,
            mount_secs: config.mount_secs,
            unmount_secs: config.unmount_secs,
            locate_speed: config.locate_bytes_per_sec,
            read_speed: config.read_bytes_per_sec,
            write_speed: config.write_bytes_per_sec,
            time_scale: config.time_scale,
            state: Mutex::new(State {
                drives: vec![
                    Drive {
                        mounted: None,
                        head: 0,
                        busy: false,
                        last_used: 0,
                    };
                    config.drives
                ],
                used,
                tick: 0,
                stats: TapeStats::default(),
            }),
            drive_freed: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("tape model poisoned")
    }

    pub(crate) fn stats(&self) -> TapeStats {
        self.state().stats.clone()
    }

    pub(crate) fn mounted(&self) -> Vec<String> {
        self.state()
            .drives
            .iter()
            .filter_map(|d| d.mounted.map(volume_name))
            .collect()
    }

    /// The tape the next file of `size` bytes would be appended to.
    pub(crate) fn append_tape(&self, size: u64) -> Option<usize> {
        let need = size.max(1);
        let capacity = self.capacity;
        self.state()
            .used
            .iter()
            .position(|&used| capacity - used.min(capacity) >= need)
    }

    /// Reserves room for `size` bytes at the append point of the first tape with room, and returns
    /// (tape, position). Every file takes at least one byte so that positions are unique.
    pub(crate) fn reserve(&self, size: u64) -> Option<(usize, u64)> {
        let need = size.max(1);
        let mut state = self.state();
        let capacity = self.capacity;
        let (tape, used) = state
            .used
            .iter_mut()
            .enumerate()
            .find(|(_, used)| capacity - (**used).min(capacity) >= need)?;
        let position = *used;
        *used += need;
        Some((tape, position))
    }

    /// Waits for a drive and makes sure `tape` is mounted in it. Prefers a drive that already holds the
    /// tape, then an empty drive, then the least recently used one (unmounting its tape). A tape in use
    /// by another drive is waited for, never mounted twice.
    pub(crate) async fn acquire(self: &Arc<Self>, tape: usize) -> DriveLease {
        loop {
            let notified = self.drive_freed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a drive freed in between still wakes us.
            notified.as_mut().enable();
            if let Some((drive, previous)) = self.try_take(tape) {
                let lease = DriveLease {
                    model: Arc::clone(self),
                    drive,
                    tape,
                };
                if previous != Some(tape) {
                    if let Some((_, head)) = previous.map(|p| (p, self.head(drive))) {
                        let rewind = head as f64 / self.locate_speed;
                        self.spend(rewind + self.unmount_secs, rewind, |s| s.unmounts += 1)
                            .await;
                    }
                    self.set_mounted(drive, tape);
                    self.spend(self.mount_secs, 0.0, |s| s.mounts += 1).await;
                }
                return lease;
            }
            notified.await;
        }
    }

    fn try_take(&self, tape: usize) -> Option<(usize, Option<usize>)> {
        let mut state = self.state();
        if state
            .drives
            .iter()
            .any(|d| d.busy && d.mounted == Some(tape))
        {
            return None;
        }
        let free = |d: &Drive| !d.busy;
        let pick = state
            .drives
            .iter()
            .position(|d| free(d) && d.mounted == Some(tape))
            .or_else(|| {
                state
                    .drives
                    .iter()
                    .position(|d| free(d) && d.mounted.is_none())
            })
            .or_else(|| {
                (0..state.drives.len())
                    .filter(|&i| free(&state.drives[i]))
                    .min_by_key(|&i| state.drives[i].last_used)
            })?;
        state.tick += 1;
        let tick = state.tick;
        let drive = &mut state.drives[pick];
        drive.busy = true;
        drive.last_used = tick;
        Some((pick, drive.mounted))
    }

    fn head(&self, drive: usize) -> u64 {
        self.state().drives[drive].head
    }

    fn set_mounted(&self, drive: usize, tape: usize) {
        let mut state = self.state();
        state.drives[drive].mounted = Some(tape);
        state.drives[drive].head = 0;
    }

    async fn spend(&self, secs: f64, locate_secs: f64, count: impl FnOnce(&mut TapeStats)) {
        {
            let mut state = self.state();
            state.stats.busy_secs += secs;
            state.stats.locate_secs += locate_secs;
            count(&mut state.stats);
        }
        if self.time_scale > 0.0 && secs > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(secs * self.time_scale)).await;
        }
    }
}

/// A drive held for one run of work on one mounted tape; dropping it frees the drive (the tape stays
/// mounted, so the next run on the same tape costs no mount).
#[derive(Debug)]
pub(crate) struct DriveLease {
    model: Arc<TapeModel>,
    drive: usize,
    tape: usize,
}

impl DriveLease {
    /// The tape mounted in the leased drive.
    pub(crate) fn tape(&self) -> usize {
        self.tape
    }

    async fn locate(&self, position: u64) {
        let secs = {
            let mut state = self.model.state();
            let drive = &mut state.drives[self.drive];
            let distance = drive.head.abs_diff(position);
            drive.head = position;
            distance as f64 / self.model.locate_speed
        };
        self.model.spend(secs, secs, |_| {}).await;
    }

    /// Positions the head and reads `size` bytes at `position`.
    pub(crate) async fn read(&self, position: u64, size: u64) {
        self.locate(position).await;
        let secs = size as f64 / self.model.read_speed;
        let (drive, model) = (self.drive, &self.model);
        let volume = {
            let mut state = model.state();
            state.drives[drive].head = position + size;
            volume_name(
                state.drives[drive]
                    .mounted
                    .expect("leased drives hold a tape"),
            )
        };
        model
            .spend(secs, 0.0, |s| {
                s.bytes_read += size;
                if s.reads.len() < MAX_READ_LOG {
                    s.reads.push(TapeRead {
                        volume,
                        position,
                        drive,
                    });
                }
            })
            .await;
    }

    /// Positions the head and writes `size` bytes at `position` (the append point reserved earlier).
    pub(crate) async fn write(&self, position: u64, size: u64) {
        self.locate(position).await;
        let secs = size as f64 / self.model.write_speed;
        self.model.state().drives[self.drive].head = position + size;
        self.model
            .spend(secs, 0.0, |s| s.bytes_written += size)
            .await;
    }
}

impl Drop for DriveLease {
    fn drop(&mut self) {
        self.model.state().drives[self.drive].busy = false;
        self.model.drive_freed.notify_waiters();
    }
}
