//! The cloud tier in the server: layering [`archive_cloud::CloudBackend`] over the configured
//! backend at start-up (every store checked before the port opens), and the scanner that turns the
//! policies' timings into queued copy and archive requests.
//!
//! - [`layer`]: the start-up step.
//! - [`scanner`]: the periodic scan and its submissions to the HLM request queue.

pub mod scanner;

use crate::config::Config;
use archive_cloud::{CloudBackend, KeySpace};
use archive_core::ArchiveBackend;
use std::sync::Arc;

/// How the server names files, for the policies.
pub fn key_space(config: &Config) -> KeySpace {
    KeySpace {
        swift_root: config.swift.root.clone(),
        use_id2filename: config.use_id2filename,
    }
}

/// Puts the cloud tier over `local` when `[cloud]` configures stores; checks that each store is
/// reachable. `Ok(None)`: no cloud tier.
pub async fn layer(
    config: &Config,
    local: &Arc<dyn ArchiveBackend>,
) -> Result<Option<Arc<CloudBackend>>, archive_cloud::error::Error> {
    if !config.cloud.is_enabled() {
        return Ok(None);
    }
    let cloud = CloudBackend::open(Arc::clone(local), &config.cloud, key_space(config)).await?;
    tracing::info!(
        stores = config.cloud.stores.len(),
        policies = config.cloud.policies.len(),
        "cloud tier over the {} backend",
        local.name()
    );
    Ok(Some(Arc::new(cloud)))
}
