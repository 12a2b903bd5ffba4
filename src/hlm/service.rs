//! `HlmService`: what the HLM router and the dispatcher share: the request queue and the wake-up that
//! lets a request submitted to this instance start without waiting for the next poll.

use super::queue::{QueueOptions, RequestQueue};
use crate::config::Config;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The queue handle and the dispatcher's wake-up; cheap to clone.
#[derive(Debug, Clone)]
pub struct HlmService {
    /// The persistent request queue.
    pub queue: RequestQueue,
    /// Notified on every submit.
    pub wake: Arc<Notify>,
}

impl HlmService {
    /// Opens (creating and migrating) the queue configured in `[hlm]`.
    pub async fn open(config: &Config) -> Result<Self, super::queue::Error> {
        let hlm = &config.hlm;
        let options = QueueOptions {
            max_attempts: hlm.max_attempts,
            backoff_base: Duration::from_secs(hlm.backoff_base_secs),
            backoff_max: Duration::from_secs(hlm.backoff_max_secs),
            lease_duration: Duration::from_secs(hlm.lease_secs),
            retention: Duration::from_secs(hlm.retention_secs),
            ..QueueOptions::default()
        };
        let queue =
            RequestQueue::connect(&hlm.effective_queue_url(&config.local_state_dir()), options)
                .await?;
        Ok(HlmService {
            queue,
            wake: Arc::new(Notify::new()),
        })
    }
}
