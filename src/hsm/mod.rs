//! What both APIs share about storage tiers: the recall scheduler that every recall goes through
//! (Pacifica stage and GET of a migrated file, SwiftHLM recall requests), and how it is set up for the
//! configured backend.
//!
//! - [`recall_scheduler`]: tape-order recalls across requests.
//! - [`scheduler_config`]: the scheduler's settings from `[hsm]` and the backend's drives.

pub mod recall_scheduler;

use crate::config::{BackendType, Config};
use recall_scheduler::{RecallPolicy, RecallSchedulerConfig};
use std::time::Duration;

/// The recall scheduler's settings: timing from `[hsm]`, one batch per tape drive of the backend.
pub fn scheduler_config(config: &Config) -> RecallSchedulerConfig {
    let drives = match config.backend {
        BackendType::Tiered => config.tiered.drives,
        BackendType::Ltfsdm => config.ltfsdm.drives,
        BackendType::HsmSideband => config.hsm_sideband.drives,
        // A backend that cannot tell its drives gets one batch at a time.
        // HPSS: one cartridge's stages at a time, in position order, so the order the scheduler
        // chose is the order HPSS receives.
        BackendType::Posix | BackendType::Hpss => 1,
    };
    RecallSchedulerConfig {
        drives,
        policy: RecallPolicy::TapeOrder,
        batch_window: Duration::from_secs_f64(config.hsm.batch_window_secs),
        max_wait: Duration::from_secs(config.hsm.max_wait_secs),
        ..RecallSchedulerConfig::default()
    }
}
