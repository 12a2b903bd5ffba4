//! Accepting and serving HTTP/1.1 connections. A connection that sends no complete request head within
//! the header-read timeout (a client trickling its headers, one that connects and says nothing, an
//! idle keep-alive connection) is closed and logged; a client that half-closes its side after a
//! complete request still gets its answer; on shutdown, requests in flight may finish for at most the
//! drain timeout, then the connections left are closed and logged. Connections close lingering (see
//! [`crate::linger`]), so a client still sending gets the answer it was sent. Memory a burst of
//! connections took is given back once the burst has drained (see [`crate::memory`]).

use crate::config::Config;
use crate::framing::FramingChecked;
use crate::linger::LingeringClose;
use crate::memory::{release_free_memory, BurstWatch};
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Connection-level limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest wait for a complete request head, from the connection's start or its last response.
    pub header_read_timeout: Duration,
    /// Longest wait for connections to finish after the shutdown signal.
    pub drain_timeout: Duration,
}

impl ConnectionLimits {
    /// The limits `config` sets.
    pub fn from_config(config: &Config) -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
            drain_timeout: Duration::from_secs(config.shutdown_drain_timeout_secs),
        }
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::from_config(&Config::default())
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains (see the module docs).
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // `nc -N`, `curl -T - <file` and others close their sending side once the request is out.
        .half_close(true)
        .keep_alive(true);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    let mut burst = BurstWatch::default();
    // Looks at the connections now and then even when none arrive, to notice a burst has drained.
    let mut look = tokio::time::interval(Duration::from_secs(2));
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        // Reap finished connections so the set only holds live ones.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            _ = look.tick() => {
                while connections.try_join_next().is_some() {}
                if burst.drained(connections.len()) {
                    tokio::task::spawn_blocking(release_free_memory);
                }
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning on the error.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let connection = http.serve_connection(
            TokioIo::new(LingeringClose::new(FramingChecked::new(stream))),
            TowerToHyperService::new(router.clone()),
        );
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = async { stop.wait_for(|stopped| *stopped).await.is_ok() } => {
                    // Finishes the request in progress (if any), then closes.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                log_connection_error(peer, &e, limits.header_read_timeout);
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            drain_timeout_secs = limits.drain_timeout.as_secs(),
            "closing the connections still busy after the drain timeout"
        );
        connections.shutdown().await;
    }
    Ok(())
}

fn log_connection_error(peer: SocketAddr, error: &hyper::Error, header_timeout: Duration) {
    if error.is_timeout() {
        tracing::info!(
            %peer,
            timeout_secs = header_timeout.as_secs(),
            "connection closed: no complete request head within the header-read timeout"
        );
    } else {
        // Clients going away mid-transfer and malformed requests (hyper answered 400) are routine.
        tracing::debug!(%peer, error = %error, "connection ended with an error");
    }
}
