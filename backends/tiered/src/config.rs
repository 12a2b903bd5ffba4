//! `TieredConfig`: the `[tiered]` section of the server configuration, its defaults and its validation.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Configuration of the tiered backend. The disk tier is the server's prefix (passed separately to
/// [`crate::TieredBackend::open`]); everything else about the cold tier and the tape model is here.
///
/// Times are in (simulated) seconds and speeds in bytes per second. Defaults model an LTO-8 library
/// with ten cartridges and two drives; `time_scale = 0` by default, so the tape model accounts for
/// every simulated second but never sleeps (the cold directory's own speed is the only real cost).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TieredConfig {
    /// Directory holding the cold tier (one sub-directory per tape, one file per tape position).
    /// Default: `<prefix>/.archiveinterface-cold`, which the archive listing skips; in real use point it
    /// at the slow disk or NAS that plays the role of tape.
    pub cold_dir: Option<PathBuf>,
    /// Number of tapes (cartridges) in the library; files are appended to the first tape with room.
    pub tapes: usize,
    /// Capacity of each tape in bytes.
    pub tape_capacity_bytes: u64,
    /// Number of tape drives: how many tapes can be mounted (and read or written) at once.
    pub drives: usize,
    /// Seconds to load a tape into a drive (robot move, load and thread).
    pub mount_secs: f64,
    /// Seconds to unload a tape after it has been rewound (rewind time is added from the locate speed).
    pub unmount_secs: f64,
    /// Locate (seek) speed along the tape, in bytes of tape position per second.
    pub locate_bytes_per_sec: f64,
    /// Read bandwidth of a drive in bytes per second.
    pub read_bytes_per_sec: f64,
    /// Write bandwidth of a drive in bytes per second.
    pub write_bytes_per_sec: f64,
    /// How much real time one simulated second takes: 1 = real time, 0 = no sleeping (every simulated
    /// second is still accounted in the statistics), 0.01 = a hundred times faster than a real library.
    pub time_scale: f64,
    /// Age-based migration ("archive after a set time period"): files whose modification time is at
    /// least this many seconds old are migrated by the background policy. `None` or 0 = off.
    pub migrate_after_secs: Option<u64>,
    /// Files smaller than this many bytes are left on disk by the age rule (small files cost a mount
    /// to read back for little space).
    pub migrate_min_size: u64,
    /// When the archive files held on the disk tier (resident and premigrated) exceed this many bytes,
    /// the policy migrates the least recently used ones until they are at or below
    /// `low_watermark_bytes`. `None` = no watermark rule. Bytes of archive data rather than a fraction
    /// of the filesystem, so that the rule means the same whatever else shares the disk.
    pub high_watermark_bytes: Option<u64>,
    /// Target for the watermark rule; required with `high_watermark_bytes` and below it.
    pub low_watermark_bytes: Option<u64>,
    /// Seconds between two runs of the background migration policy.
    pub policy_interval_secs: u64,
}

impl Default for TieredConfig {
    fn default() -> Self {
        TieredConfig {
            cold_dir: None,
            tapes: 10,
            tape_capacity_bytes: 12_000_000_000_000,
            drives: 2,
            mount_secs: 60.0,
            unmount_secs: 30.0,
            // A full-length locate of an LTO-8 cartridge takes about 100 s.
            locate_bytes_per_sec: 120_000_000_000.0,
            read_bytes_per_sec: 360_000_000.0,
            write_bytes_per_sec: 360_000_000.0,
            time_scale: 0.0,
            migrate_after_secs: None,
            migrate_min_size: 0,
            high_watermark_bytes: None,
            low_watermark_bytes: None,
            policy_interval_secs: 60,
        }
    }
}

/// A configuration value that cannot work, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid tiered.{field}: {message}")]
pub struct ConfigError {
    /// The offending field, as spelled in the `[tiered]` section.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        message: message.into(),
    }
}

impl TieredConfig {
    /// Checks every value; the first bad one is reported by name.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tapes == 0 {
            return Err(bad("tapes", "must be at least 1"));
        }
        if self.drives == 0 {
            return Err(bad("drives", "must be at least 1"));
        }
        if self.tape_capacity_bytes == 0 {
            return Err(bad("tape_capacity_bytes", "must be greater than 0"));
        }
        let non_negative = [
            ("mount_secs", self.mount_secs),
            ("unmount_secs", self.unmount_secs),
            ("time_scale", self.time_scale),
        ];
        for (field, value) in non_negative {
            if !value.is_finite() || value < 0.0 {
                return Err(bad(
                    field,
                    format!("must be a finite number >= 0, not {value}"),
                ));
            }
        }
        let positive = [
            ("locate_bytes_per_sec", self.locate_bytes_per_sec),
            ("read_bytes_per_sec", self.read_bytes_per_sec),
            ("write_bytes_per_sec", self.write_bytes_per_sec),
        ];
        for (field, value) in positive {
            if !value.is_finite() || value <= 0.0 {
                return Err(bad(
                    field,
                    format!("must be a finite number > 0, not {value}"),
                ));
            }
        }
        if self.policy_interval_secs == 0 {
            return Err(bad("policy_interval_secs", "must be at least 1"));
        }
        match (self.high_watermark_bytes, self.low_watermark_bytes) {
            (None, None) => {}
            (Some(_), None) => {
                return Err(bad(
                    "low_watermark_bytes",
                    "is required when high_watermark_bytes is set",
                ))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "high_watermark_bytes",
                    "is required when low_watermark_bytes is set",
                ))
            }
            (Some(high), Some(low)) if low >= high => {
                return Err(bad(
                    "low_watermark_bytes",
                    format!("must be below high_watermark_bytes ({low} >= {high})"),
                ))
            }
            _ => {}
        }
        Ok(())
    }

    /// The cold tier directory for an archive rooted at `prefix`.
    pub fn cold_dir_for(&self, prefix: &Path) -> PathBuf {
        self.cold_dir
            .clone()
            .unwrap_or_else(|| prefix.join(".archiveinterface-cold"))
    }

    /// The age rule in effect, if any.
    pub fn migrate_after(&self) -> Option<std::time::Duration> {
        self.migrate_after_secs
            .filter(|&s| s > 0)
            .map(std::time::Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        TieredConfig::default().validate().unwrap();
        let cases: Vec<(&str, TieredConfig)> = vec![
            (
                "tapes",
                TieredConfig {
                    tapes: 0,
                    ..Default::default()
                },
            ),
            (
                "drives",
                TieredConfig {
                    drives: 0,
                    ..Default::default()
                },
            ),
            (
                "time_scale",
                TieredConfig {
                    time_scale: -1.0,
                    ..Default::default()
                },
            ),
            (
                "read_bytes_per_sec",
                TieredConfig {
                    read_bytes_per_sec: 0.0,
                    ..Default::default()
                },
            ),
            (
                "low_watermark_bytes",
                TieredConfig {
                    high_watermark_bytes: Some(10),
                    low_watermark_bytes: Some(10),
                    ..Default::default()
                },
            ),
        ];
        for (field, config) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.field, field);
            assert!(err.to_string().contains(&format!("tiered.{field}")));
        }
    }

    #[test]
    fn unknown_fields_are_refused_and_missing_ones_default() {
        let parsed: TieredConfig = serde_json::from_str(r#"{"drives": 4}"#).unwrap();
        assert_eq!(parsed.drives, 4);
        assert_eq!(parsed.tapes, TieredConfig::default().tapes);
        assert!(serde_json::from_str::<TieredConfig>(r#"{"drivez": 4}"#).is_err());
    }
}
