//! archiveinterface: tape and other high-latency storage behind the Pacifica Archive Interface and
//! SwiftHLM HTTP APIs.
//!
//! Module map:
//! - [`cli`] and [`config`]: flags and the layered configuration; [`config_ini`] reads the file in
//!   either format (TOML, or the reference's INI service file).
//! - [`server`] builds the backend, the router with its middleware, serving with graceful shutdown.
//! - [`connections`] accepts and serves connections: header-read timeout, half-close, drain deadline.
//! - [`framing`] checks every request head: framed both by Content-Length and Transfer-Encoding is refused.
//! - [`linger`] closes connections so a client still sending gets its answer.
//! - [`memory`] gives the memory a burst of connections took back to the operating system.
//! - [`telemetry`] sets up logging.
//! - [`error`] holds the one API error type and its status table.
//! - [`pacifica`] serves the `/{id}` files API.
//! - [`swift`]: the Swift v1 object API with tempauth (`/auth/v1.0`, `/info`, `/v1/...`).
//! - [`hsm`] is what both APIs share about tiers: the recall scheduler.
//! - [`hlm`] is the HLM side (request queue, dispatcher).
//! - [`cloud`] puts the cloud tier over the backend and schedules its copies and archives.
//! - [`metrics`] counts requests for Prometheus.
//! - [`name_check`]: what every API refuses in client-chosen names (control characters).
//! - [`upload`] turns request bodies into backend streams; [`pyjson`] writes Python-compatible JSON.

pub mod cli;
pub mod cloud;
pub mod config;
pub mod config_ini;
pub mod connections;
pub mod error;
pub mod framing;
pub mod hlm;
pub mod hsm;
pub mod linger;
pub mod memory;
pub mod metrics;
pub mod name_check;
pub mod pacifica;
pub mod pyjson;
pub mod server;
pub mod swift;
pub mod telemetry;
pub mod upload;

use archive_core::{ArchiveBackend, GetResult, Key, ReadRange};
use hsm::recall_scheduler::RecallScheduler;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use server::{app, build_backend, serve};

/// Settings the routers read on every request (immutable after start-up).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Map integer ids through id2filename.
    pub use_id2filename: bool,
    /// PUT/PATCH may replace existing files.
    pub allow_overwrite: bool,
    /// Directories PATCH may move files in from, resolved (symlinks followed) at start-up.
    pub patch_source_dirs: Vec<PathBuf>,
    /// Longest silence allowed within an upload.
    pub body_idle_timeout: Duration,
    /// How long a GET of a migrated file waits for its recall before answering 503.
    pub get_wait: Duration,
}

impl Settings {
    /// The request-time settings from a validated configuration.
    pub fn from_config(config: &config::Config) -> std::io::Result<Self> {
        let patch_source_dirs = config
            .patch_source_dirs
            .iter()
            .map(std::fs::canonicalize)
            .collect::<std::io::Result<_>>()?;
        Ok(Settings {
            use_id2filename: config.use_id2filename,
            allow_overwrite: config.allow_overwrite,
            patch_source_dirs,
            body_idle_timeout: Duration::from_secs(config.body_idle_timeout_secs),
            get_wait: Duration::from_secs(config.hsm.get_wait_secs),
        })
    }
}

/// What every handler shares: the backend, the settings and the validated configuration (for the
/// sections of other routers). No per-request mutable state lives here.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The storage backend.
    pub backend: Arc<dyn ArchiveBackend>,
    /// Request-time settings of the files API.
    pub settings: Arc<Settings>,
    /// The whole configuration.
    pub config: Arc<config::Config>,
    /// The recall scheduler: running exactly when the backend has a tape tier
    /// (`capabilities().tape_tier`), started with the state.
    pub recalls: Option<RecallScheduler>,
    /// The HLM request queue, when the HLM API is on.
    pub hlm: Option<hlm::HlmService>,
    /// Request counters for `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// The Swift index (accounts, containers, objects and their counts), opened on first use.
    pub swift_index: Arc<tokio::sync::OnceCell<swift::index::SwiftIndex>>,
    /// The cloud tier, when `[cloud]` configures one (the backend is then this tier).
    pub cloud: Option<Arc<archive_cloud::CloudBackend>>,
}

impl AppState {
    /// State over `backend` with `settings` and an otherwise default configuration.
    pub fn new(backend: Arc<dyn ArchiveBackend>, settings: Settings) -> Self {
        Self::with_config(backend, settings, config::Config::default())
    }

    /// State over `backend` with `settings` and `config`. When the backend has a tape tier, this
    /// starts its recall scheduler (on the current tokio runtime); stop it with
    /// [`shutdown_recalls`](Self::shutdown_recalls).
    pub fn with_config(
        backend: Arc<dyn ArchiveBackend>,
        settings: Settings,
        config: config::Config,
    ) -> Self {
        let recalls = backend
            .capabilities()
            .tape_tier
            .then(|| RecallScheduler::start(Arc::clone(&backend), hsm::scheduler_config(&config)));
        AppState {
            backend,
            settings: Arc::new(settings),
            config: Arc::new(config),
            recalls,
            hlm: None,
            metrics: Arc::default(),
            swift_index: Arc::default(),
            cloud: None,
        }
    }

    /// The same state with the HLM API over `service`.
    pub fn with_hlm(mut self, service: hlm::HlmService) -> Self {
        self.hlm = Some(service);
        self
    }

    /// Whether the backend has a lower tier (tape): what the HLM API and recalls need.
    pub fn has_tape_tier(&self) -> bool {
        self.backend.capabilities().tape_tier
    }

    /// Stops the recall scheduler (if one runs): fails what has not started, lets running batches end.
    pub async fn shutdown_recalls(&self) {
        if let Some(recalls) = &self.recalls {
            recalls.shutdown().await;
        }
    }

    /// Asks for a file to be brought to disk; returns once the request is accepted. The backend's
    /// `stage` validates the key (and is all a disk-only backend needs); with a tape tier the recall
    /// is queued with the scheduler, so it joins other recalls of the same tape.
    pub async fn stage(&self, key: &Key) -> archive_core::Result<()> {
        self.backend.stage(key).await?;
        let Some(recalls) = &self.recalls else {
            return Ok(());
        };
        let status = self.backend.status(key).await?;
        if !status.is_readable_now() {
            // The ticket is dropped: the recall goes on, clients poll HEAD.
            drop(recalls.submit(vec![key.clone()]));
        }
        Ok(())
    }

    /// Opens a file for reading. A migrated file is recalled through the scheduler first, waiting up to
    /// `get_wait`; past that the answer is `Unavailable` (503 with `Retry-After`) and the recall goes on.
    pub async fn open_for_read(
        &self,
        key: &Key,
        range: ReadRange,
    ) -> archive_core::Result<GetResult> {
        match self.backend.get(key, range).await {
            Err(archive_core::Error::NotResident { .. }) if self.recalls.is_some() => {
                self.recall_and_wait(key).await?;
                self.backend.get(key, range).await
            }
            other => other,
        }
    }

    async fn recall_and_wait(&self, key: &Key) -> archive_core::Result<()> {
        let recalls = self.recalls.as_ref().expect("checked by the caller");
        let ticket = recalls.submit(vec![key.clone()]);
        let still_recalling = || archive_core::Error::Unavailable {
            message: format!("File {key} is being recalled from tape; try again later"),
            retry_after: Some(Duration::from_secs(30)),
        };
        match tokio::time::timeout(self.settings.get_wait, ticket.wait()).await {
            Err(_) => Err(still_recalling()),
            Ok(mut outcomes) => match outcomes.pop() {
                Some((_, result)) => result,
                None => Err(still_recalling()),
            },
        }
    }
}
