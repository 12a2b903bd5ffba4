//! Putting the server together: the backend from the configuration, the router with its middleware
//! (request ids, a tracing span per request, panics turned into JSON 500s), and serving on a listener
//! until a shutdown signal, letting transfers in flight finish.

use crate::config::{BackendType, Config};
use crate::connections::{serve_connections, ConnectionLimits};
use crate::error::ApiError;
use crate::{pacifica, swift, AppState, Settings};
use archive_core::ArchiveBackend;
use axum::http::{HeaderValue, Request, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

/// Why the server could not start. Always reported before the port opens.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The backend could not be opened.
    #[error("cannot open the {backend} backend at {prefix}: {source}")]
    Backend {
        /// Backend type.
        backend: &'static str,
        /// The prefix.
        prefix: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {address}:{port}: {source}")]
    Bind {
        /// Configured address.
        address: String,
        /// Configured port.
        port: u16,
        /// Why.
        source: std::io::Error,
    },
}

/// The opened backend, and for the tiered backend its concrete handle (for the migration policy).
#[derive(Debug)]
pub struct OpenedBackend {
    /// The backend every router uses.
    pub backend: Arc<dyn ArchiveBackend>,
    /// Set for `type = "tiered"`.
    pub tiered: Option<Arc<archive_tiered::TieredBackend>>,
    /// Set when `[cloud]` puts the cloud tier over the backend (then `backend` is this tier).
    pub cloud: Option<Arc<archive_cloud::CloudBackend>>,
}

/// [`build_backend`] on the blocking pool: opening walks the whole prefix (the sweep of partial files,
/// the tiered backend's repair), which must not stall the async runtime.
pub async fn open_backend(config: &Config) -> Result<OpenedBackend, StartError> {
    let owned = config.clone();
    let mut opened = match tokio::task::spawn_blocking(move || build_backend(&owned)).await {
        Ok(opened) => opened?,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    // The cloud tier goes over whichever backend was opened; its stores are checked now.
    let cloud = crate::cloud::layer(config, &opened.backend)
        .await
        .map_err(|e| StartError::Config(crate::config::ConfigError::from_message(e.to_string())))?;
    if let Some(cloud) = cloud {
        opened.backend = cloud.clone();
        opened.cloud = Some(cloud);
    }
    Ok(opened)
}

/// Opens the configured backend (validating it and repairing what a crash left behind), then sweeps
/// the partial files whose writer is gone (those of other live processes on the prefix stay).
/// Blocking: async callers use [`open_backend`].
pub fn build_backend(config: &Config) -> Result<OpenedBackend, StartError> {
    let name = match config.backend {
        BackendType::Posix => "posix",
        BackendType::Tiered => "tiered",
        BackendType::Hpss => "hpss",
        BackendType::Ltfsdm => "ltfsdm",
        BackendType::HsmSideband => "hsm_sideband",
    };
    let fail = |source: Box<dyn std::error::Error + Send + Sync>| StartError::Backend {
        backend: name,
        prefix: config.prefix.display().to_string(),
        source,
    };
    // The HPSS name space is not a local directory: no partial-file sweep there (its temporary
    // names are skipped by listings and named by the README).
    let (opened, root) = match config.backend {
        BackendType::Hpss => {
            let backend = archive_hpss::HpssBackend::open(&config.prefix, config.hpss.clone())
                .map_err(fail)?;
            return Ok(OpenedBackend {
                backend: Arc::new(backend),
                tiered: None,
                cloud: None,
            });
        }
        BackendType::Posix => {
            let backend =
                archive_posix::PosixBackend::new(&config.prefix).map_err(|e| fail(e.into()))?;
            let root = backend.root().to_path_buf();
            (
                OpenedBackend {
                    backend: Arc::new(backend),
                    tiered: None,
                    cloud: None,
                },
                root,
            )
        }
        BackendType::Tiered => {
            let backend =
                archive_tiered::TieredBackend::open(config.prefix.clone(), config.tiered.clone())
                    .map_err(|e| fail(e.into()))?;
            let root = backend.prefix().to_path_buf();
            let backend = Arc::new(backend);
            (
                OpenedBackend {
                    backend: backend.clone(),
                    tiered: Some(backend),
                    cloud: None,
                },
                root,
            )
        }
        BackendType::Ltfsdm => {
            // Checks that the ltfsdm client runs (start-up stops naming it otherwise).
            let backend =
                archive_ltfsdm::LtfsdmBackend::open(config.prefix.clone(), config.ltfsdm.clone())
                    .map_err(|e| fail(e.into()))?;
            let root = backend.prefix().to_path_buf();
            (
                OpenedBackend {
                    backend: Arc::new(backend),
                    tiered: None,
                    cloud: None,
                },
                root,
            )
        }
        BackendType::HsmSideband => {
            // Opening connects to the catalog: an unreachable database stops start-up here, before
            // the port opens, with its host in the message.
            let open = archive_sideband::SidebandBackend::open(
                config.prefix.clone(),
                config.hsm_sideband.clone(),
            );
            // The catalog pool lives on the runtime it is opened on, so it is opened on the
            // server's (this runs on its blocking pool, see `open_backend`).
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                fail("the hsm_sideband backend is opened from within the server's runtime".into())
            })?;
            let backend = runtime.block_on(open).map_err(|e| fail(e.into()))?;
            let root = backend.prefix().to_path_buf();
            (
                OpenedBackend {
                    backend: Arc::new(backend),
                    tiered: None,
                    cloud: None,
                },
                root,
            )
        }
    };
    if config.sweep_partials_on_start {
        let removed = archive_posix::sweep_partials(&root).map_err(|e| fail(e.into()))?;
        if removed > 0 {
            tracing::warn!(
                removed,
                "removed partial files left by an interrupted write"
            );
        }
    }
    Ok(opened)
}

/// Where the HLM dispatcher runs: inside the server, or in a standalone `archiveinterface dispatcher`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DispatcherSite {
    Server,
    Standalone,
}

/// Refuses the split set-up (a server with `hlm.dispatcher = false` plus a standalone dispatcher) on a
/// backend that only one process can hold: the second process could never open it, so queued requests
/// would never run. Checked after the backend opened and before the port opens.
fn check_dispatcher_site(
    config: &Config,
    backend: &dyn ArchiveBackend,
    site: DispatcherSite,
) -> Result<(), StartError> {
    let capabilities = backend.capabilities();
    if !config.hlm.enabled || !capabilities.tape_tier || capabilities.shared_by_processes {
        return Ok(());
    }
    let name = backend.name();
    let message = match site {
        DispatcherSite::Server if !config.hlm.dispatcher => format!(
            "key `hlm.dispatcher` = false: migrate and recall requests would wait for a standalone \
             `archiveinterface dispatcher`, but the {name} backend is held by one process (this \
             server), so that dispatcher could never open it and the requests would never run; set \
             `hlm.dispatcher = true`"
        ),
        DispatcherSite::Server => return Ok(()),
        DispatcherSite::Standalone => format!(
            "`archiveinterface dispatcher` cannot run beside a server on the {name} backend: it is held \
             by one process, and the server holds it; run the dispatcher inside the server \
             (`hlm.dispatcher = true`, the default)"
        ),
    };
    Err(StartError::Config(
        crate::config::ConfigError::from_message(message),
    ))
}

/// The request-time settings, or the start-up error naming the key that made them impossible.
fn settings_of(config: &Config) -> Result<Settings, StartError> {
    Settings::from_config(config).map_err(|e| {
        StartError::Config(crate::config::ConfigError::from_message(format!(
            "key `patch_source_dirs`: {e}"
        )))
    })
}

/// Request ids: `<pid in hex>-<counter>`, cheap and unique per process (the pid is read once, not
/// once per request).
#[derive(Debug, Clone)]
struct CountingRequestId {
    counter: Arc<AtomicU64>,
    pid: u32,
}

impl Default for CountingRequestId {
    fn default() -> Self {
        CountingRequestId {
            counter: Arc::default(),
            pid: std::process::id(),
        }
    }
}

impl MakeRequestId for CountingRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:x}-{n}", self.pid))
            .ok()
            .map(RequestId::new)
    }
}

/// Longest URI logged whole; longer ones are cut (a request line may be tens of KiB).
const MAX_LOGGED_URI: usize = 512;

/// The URI as logged: at most [`MAX_LOGGED_URI`] bytes, then how much was left out.
fn loggable_uri(uri: &axum::http::Uri) -> String {
    let mut text = uri.to_string();
    if text.len() > MAX_LOGGED_URI {
        let total = text.len();
        // hyper only accepts ASCII URIs; the boundary check keeps the cut safe whatever comes in.
        let mut cut = MAX_LOGGED_URI;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(&format!("...({total} bytes)"));
    }
    text
}

/// The whole HTTP application over `state`.
pub fn app(state: AppState) -> Router {
    let trace = TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
        let id = request
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or("-");
        tracing::info_span!("request", id = %id, method = %request.method(), uri = %loggable_uri(request.uri()))
    });
    // `/.metrics`: ids cannot start with '.', so no file id can take this path.
    let mut router = Router::new()
        .route("/.metrics", axum::routing::get(crate::metrics::render))
        .merge(pacifica::router());
    if state.config.hlm.enabled {
        router = router.merge(crate::hlm::router::router());
    }
    if state.config.swift.enabled {
        router = router.merge(swift::router());
    }
    let metrics = state.metrics.clone();
    router
        .fallback(|| async { ApiError::no_such_route() })
        // Inside the metrics layer, so that a panic is counted as the 500 it becomes.
        .layer(CatchPanicLayer::custom(move |_| {
            metrics.count_panic();
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error: the request handler panicked",
            )
            .into_response()
        }))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
        .layer(axum::middleware::from_fn(
            crate::linger::close_after_refused_upload,
        ))
        .layer(axum::middleware::from_fn(
            crate::framing::refuse_conflicting_framing,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(trace)
        .layer(SetRequestIdLayer::x_request_id(CountingRequestId::default()))
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in flight finish
/// within the drain timeout of `limits`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_connections(listener, router, limits, shutdown).await
}

/// Resolves on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Opens the HLM request queue when the HLM API is on and the backend has a tape tier (without one
/// there is nothing to queue). A bad URL or an unreachable database stops start-up.
pub async fn open_hlm(
    config: &Config,
    backend: &Arc<dyn ArchiveBackend>,
) -> Result<Option<crate::hlm::HlmService>, StartError> {
    if !config.hlm.enabled || !backend.capabilities().tape_tier {
        return Ok(None);
    }
    crate::hlm::HlmService::open(config)
        .await
        .map(Some)
        .map_err(|e| {
            StartError::Config(crate::config::ConfigError::from_message(format!(
                "key `hlm.queue_url`: {e}"
            )))
        })
}

/// Starts the cloud scanner beside a dispatcher, when a cloud tier is configured: the policies'
/// copies and archives are queued where they are executed.
fn spawn_cloud_scanner(
    state: &AppState,
    hlm: &crate::hlm::HlmService,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let cloud = state.cloud.clone()?;
    Some(tokio::spawn(crate::cloud::scanner::run(
        cloud,
        hlm.clone(),
        std::time::Duration::from_secs(state.config.cloud.scan_interval_secs),
        state.config.hlm.migrate_batch,
        stop.clone(),
    )))
}

/// `archiveinterface dispatcher`: the backend, the recall scheduler and the HLM dispatcher, without
/// HTTP, until SIGTERM or ctrl-c. For several instances sharing a PostgreSQL queue.
pub async fn run_dispatcher(config: Config) -> Result<(), StartError> {
    let settings = settings_of(&config)?;
    let opened = open_backend(&config).await?;
    check_dispatcher_site(&config, opened.backend.as_ref(), DispatcherSite::Standalone)?;
    let Some(hlm) = open_hlm(&config, &opened.backend).await? else {
        return Err(StartError::Config(
            crate::config::ConfigError::from_message(format!(
            "there is nothing to dispatch: `hlm.enabled` is {} and the {} backend has {} tape tier",
            config.hlm.enabled,
            opened.backend.name(),
            if opened.backend.capabilities().tape_tier { "a" } else { "no" }
        )),
        ));
    };
    let mut state =
        AppState::with_config(opened.backend, settings, config.clone()).with_hlm(hlm.clone());
    state.cloud = opened.cloud;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scanner = spawn_cloud_scanner(&state, &hlm, &stop_rx);
    let dispatcher = tokio::spawn(crate::hlm::dispatcher::run(state.clone(), hlm, stop_rx));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    let _ = dispatcher.await;
    if let Some(scanner) = scanner {
        let _ = scanner.await;
    }
    state.shutdown_recalls().await;
    Ok(())
}

/// Validates everything, opens the backend and binds the port (in that order: any failure happens
/// before a client can connect), then serves until SIGTERM or ctrl-c.
pub async fn run(config: Config) -> Result<(), StartError> {
    let settings = settings_of(&config)?;
    let opened = open_backend(&config).await?;
    check_dispatcher_site(&config, opened.backend.as_ref(), DispatcherSite::Server)?;
    let hlm = open_hlm(&config, &opened.backend).await?;
    let mut state = AppState::with_config(opened.backend.clone(), settings, config.clone());
    if config.swift.enabled {
        // Built (for an existing prefix) or repaired now, before the port opens.
        swift::open_index(&state).await.map_err(|e| {
            StartError::Config(crate::config::ConfigError::from_message(format!(
                "key `swift.index_path`: {}",
                e.message
            )))
        })?;
    }
    let bind = |source| StartError::Bind {
        address: config.address.clone(),
        port: config.port,
        source,
    };
    let listener = TcpListener::bind((config.address.as_str(), config.port))
        .await
        .map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    let backend = opened.backend;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let policy = opened.tiered.map(|tiered| {
        let mut stop = stop_rx.clone();
        archive_tiered::spawn_migration_policy(tiered, async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
    });
    tracing::info!(backend = backend.name(), prefix = %config.prefix.display(), "Pacifica Archive Interface Up and Running");
    tracing::info!("listening on http://{local}");
    if let Some(hlm) = &hlm {
        state = state.with_hlm(hlm.clone());
    }
    state.cloud = opened.cloud;
    let scanner = match &hlm {
        Some(hlm) if config.hlm.dispatcher => spawn_cloud_scanner(&state, hlm, &stop_rx),
        _ => None,
    };
    let dispatcher = match &hlm {
        Some(hlm) if config.hlm.dispatcher => Some(tokio::spawn(crate::hlm::dispatcher::run(
            state.clone(),
            hlm.clone(),
            stop_rx.clone(),
        ))),
        _ => None,
    };
    let limits = ConnectionLimits::from_config(&config);
    let served = serve(listener, app(state.clone()), limits, shutdown_signal()).await;
    let _ = stop_tx.send(true);
    if let Some(dispatcher) = dispatcher {
        let _ = dispatcher.await;
    }
    state.shutdown_recalls().await;
    if let Some(policy) = policy {
        let _ = policy.await;
    }
    if let Some(scanner) = scanner {
        let _ = scanner.await;
    }
    served.map_err(bind)?;
    tracing::info!("stopped");
    Ok(())
}
