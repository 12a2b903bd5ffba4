//! What the per-level attributes say: the five-tuple of bytes per level, the HSM state from which
//! levels hold the data, and where on tape the file lies for the recall scheduler.

use crate::ffi::{RawLevel, RawStat, RawXattrs, LEVEL_DATA, LEVEL_DISK, LEVEL_TAPE};
use archive_core::{FileStatus, HsmState, Placement};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn holds_data(level: &RawLevel) -> bool {
    level.flags & LEVEL_DATA != 0 || level.bytes > 0
}

/// The HSM state: data on a disk level and a tape level is premigrated, on tape only migrated, on
/// disk only resident. A file whose disk copy is partial (a stage under way) is `unknown`.
pub(crate) fn hsm_state(x: &RawXattrs, size: u64) -> HsmState {
    if size == 0 {
        return HsmState::Resident;
    }
    let full_on = |kind: u32| {
        x.levels
            .iter()
            .any(|l| l.flags & kind != 0 && holds_data(l) && l.bytes >= size)
    };
    let partly_on_disk = x
        .levels
        .iter()
        .any(|l| l.flags & LEVEL_DISK != 0 && holds_data(l) && l.bytes < size);
    // Level 0 holding the whole file counts as disk even when the level's kind flags are missing.
    let disk = full_on(LEVEL_DISK) || x.levels[0].bytes == size;
    match (disk, full_on(LEVEL_TAPE)) {
        (true, true) => HsmState::Premigrated,
        (true, false) => HsmState::Resident,
        (false, true) if !partly_on_disk => HsmState::Migrated,
        _ => HsmState::Unknown,
    }
}

/// Seconds since the epoch (HPSS's `timestamp_sec_t`) as a time.
pub(crate) fn time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// The file's status from its stat and per-level attributes.
pub(crate) fn file_status(path: &str, st: &RawStat, x: &RawXattrs) -> FileStatus {
    FileStatus {
        size: st.size,
        mtime: time(st.mtime),
        ctime: time(st.ctime),
        state: hsm_state(x, st.size),
        bytes_per_level: x.levels.iter().map(|l| l.bytes).collect(),
        location: path.to_string(),
    }
}

/// Whether the class of service has a tape level at all.
pub(crate) fn has_tape_level(x: &RawXattrs) -> bool {
    x.levels.iter().any(|l| l.flags & LEVEL_TAPE != 0)
}

/// (cartridge, position) of the first tape level holding the data: `RelPosition` in the high bits and
/// `RelPositionOffset` below, so that sorting by it sorts as (section, offset).
pub(crate) fn placement(x: &RawXattrs, size: u64) -> Placement {
    let on_tape = x
        .levels
        .iter()
        .find(|l| l.flags & LEVEL_TAPE != 0 && holds_data(l) && l.vv_count > 0);
    match on_tape.and_then(|l| l.pv_name().map(|pv| (l, pv))) {
        Some((level, volume)) => {
            let section = u64::from(level.rel_position.max(0) as u32);
            let offset = level.rel_offset.min((1 << 40) - 1);
            Placement::Tape {
                volume,
                position: (section << 40) | offset,
                resident_copy: x.levels[0].bytes >= size,
            }
        }
        None => Placement::Disk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(bytes: u64, flags: u32) -> RawLevel {
        RawLevel {
            bytes,
            rel_offset: 0,
            rel_position: 0,
            flags,
            vv_count: 0,
            has_pv: 0,
            pv_name: [0; 64],
        }
    }

    fn xattrs(disk: u64, tape: u64) -> RawXattrs {
        let none = level(0, 0);
        let data = |b: u64| if b > 0 { LEVEL_DATA } else { 0 };
        RawXattrs {
            data_length: 10,
            levels: [
                level(disk, LEVEL_DISK | data(disk)),
                level(tape, LEVEL_TAPE | data(tape)),
                none,
                none,
                none,
            ],
        }
    }

    #[test]
    fn states_follow_the_levels_that_hold_data() {
        assert_eq!(hsm_state(&xattrs(10, 0), 10), HsmState::Resident);
        assert_eq!(hsm_state(&xattrs(10, 10), 10), HsmState::Premigrated);
        assert_eq!(hsm_state(&xattrs(0, 10), 10), HsmState::Migrated);
        assert_eq!(hsm_state(&xattrs(4, 10), 10), HsmState::Unknown);
        assert_eq!(hsm_state(&xattrs(0, 0), 0), HsmState::Resident);
    }

    #[test]
    fn placement_orders_by_section_then_offset() {
        let mut x = xattrs(0, 10);
        x.levels[1].vv_count = 1;
        x.levels[1].has_pv = 1;
        x.levels[1].pv_name[0] = b'A' as _;
        x.levels[1].rel_position = 2;
        x.levels[1].rel_offset = 7;
        let Placement::Tape {
            volume,
            position,
            resident_copy,
        } = placement(&x, 10)
        else {
            panic!("not on tape")
        };
        assert_eq!(
            (volume.as_str(), position, resident_copy),
            ("A", (2 << 40) | 7, false)
        );
        assert_eq!(placement(&xattrs(10, 0), 10), Placement::Disk);
    }
}
