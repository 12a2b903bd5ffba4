//! `/metrics` in the Prometheus text format: HTTP requests by method and status with their total
//! duration, requests in flight, handler panics, and the HLM queue by state. Counting is one
//! uncontended lock per request.

use crate::AppState;
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Requests answered and seconds spent, by (method, status).
type RequestCounts = BTreeMap<(&'static str, u16), (u64, f64)>;

/// Counters shared by every request.
#[derive(Debug, Default)]
pub struct Metrics {
    // A std Mutex: held only to bump two numbers, never across an `.await`.
    requests: Mutex<RequestCounts>,
    in_flight: AtomicI64,
    panics: AtomicU64,
}

/// One request in flight: counted when made, uncounted when dropped, so a request whose handler
/// panicked or whose client went away (its future dropped) leaves the gauge right.
struct InFlight<'a>(&'a AtomicI64);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Counts a request handler that panicked (its request is answered 500 and counted as such too).
    pub fn count_panic(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }
    fn record(&self, method: &Method, status: u16, seconds: f64) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let entry = requests.entry((method_label(method), status)).or_default();
        entry.0 += 1;
        entry.1 += seconds;
    }

    /// The HTTP part of the exposition.
    fn render_http(&self, out: &mut String) {
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP archiveinterface_http_requests_total HTTP requests answered, by method and status.\n");
        out.push_str("# TYPE archiveinterface_http_requests_total counter\n");
        for ((method, status), (count, _)) in requests.iter() {
            let _ = writeln!(out, "archiveinterface_http_requests_total{{method=\"{method}\",status=\"{status}\"}} {count}");
        }
        out.push_str("# HELP archiveinterface_http_request_seconds_total Time spent answering (until the response head), by method and status.\n");
        out.push_str("# TYPE archiveinterface_http_request_seconds_total counter\n");
        for ((method, status), (_, seconds)) in requests.iter() {
            let _ = writeln!(out, "archiveinterface_http_request_seconds_total{{method=\"{method}\",status=\"{status}\"}} {seconds}");
        }
        out.push_str(
            "# HELP archiveinterface_http_requests_in_flight Requests being answered now.\n",
        );
        out.push_str("# TYPE archiveinterface_http_requests_in_flight gauge\n");
        let _ = writeln!(
            out,
            "archiveinterface_http_requests_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP archiveinterface_http_handler_panics_total Request handlers that panicked (answered 500).\n",
        );
        out.push_str("# TYPE archiveinterface_http_handler_panics_total counter\n");
        let _ = writeln!(
            out,
            "archiveinterface_http_handler_panics_total {}",
            self.panics.load(Ordering::Relaxed)
        );
    }
}

/// A static label per method (no allocation per request; unknown methods share one label).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Middleware: counts every request. Panics are turned into 500s inside it (see `server::app`), so
/// they are counted like any other answer.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let started = Instant::now();
    let in_flight = InFlight::enter(&state.metrics.in_flight);
    let response = next.run(request).await;
    drop(in_flight);
    state.metrics.record(
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> Response {
    let mut out = String::with_capacity(4096);
    state.metrics.render_http(&mut out);
    if let Some(hlm) = &state.hlm {
        if let Ok(counts) = hlm.queue.counts().await {
            out.push_str(
                "# HELP archiveinterface_hlm_requests HLM requests in the queue, by state.\n",
            );
            out.push_str("# TYPE archiveinterface_hlm_requests gauge\n");
            for (name, value) in [
                ("pending", counts.pending),
                ("running", counts.running),
                ("done", counts.done),
                ("failed", counts.failed),
            ] {
                let _ = writeln!(
                    out,
                    "archiveinterface_hlm_requests{{state=\"{name}\"}} {value}"
                );
            }
        }
    }
    if let Some(cloud) = &state.cloud {
        out.push_str(&cloud.metrics().render());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
