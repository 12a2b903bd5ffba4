//! `ApiError`: the one error type of both routers, with ONE table from backend errors to HTTP status
//! codes and ONE `IntoResponse` that renders the reference's JSON error body
//! `{"status", "message", "traceback", "version"}`.

use archive_core::Error as BackendError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// One line naming the problem.
    pub message: String,
    /// The error chain as text (clients search it, e.g. for `Can't open`).
    pub traceback: String,
    /// `Retry-After` for 503s.
    pub retry_after: Option<Duration>,
    /// `Allow` for 405s.
    pub allow: Option<&'static str>,
}

impl ApiError {
    /// An error whose traceback is just the message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError {
            status,
            traceback: message.clone(),
            message,
            retry_after: None,
            allow: None,
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 405 with the methods that are allowed.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "Specified method is invalid for this resource",
        );
        e.allow = Some(allow);
        e
    }

    /// 404 for a URL that names nothing.
    pub fn no_such_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Nothing matches the given URI")
    }

    /// Whether this is the server's fault (5xx), which is logged as an error; 4xx are the client's.
    pub fn is_internal(&self) -> bool {
        self.status.is_server_error()
    }
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str("\nCaused by: ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The status table: every backend error kind maps to exactly one HTTP status here.
impl From<BackendError> for ApiError {
    fn from(err: BackendError) -> Self {
        let (status, retry_after) = match &err {
            BackendError::NotFound { .. } => (StatusCode::NOT_FOUND, None),
            // Write-once refusals stay 500 as in the reference: clients and the deployment suite expect it.
            BackendError::AlreadyExists { .. } => (StatusCode::INTERNAL_SERVER_ERROR, None),
            BackendError::NotResident { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(Duration::from_secs(30)),
            ),
            BackendError::Unsupported { .. } => (StatusCode::NOT_IMPLEMENTED, None),
            BackendError::InvalidArgument(_) => (StatusCode::BAD_REQUEST, None),
            BackendError::InsufficientStorage(_) => (StatusCode::INSUFFICIENT_STORAGE, None),
            BackendError::Unavailable { retry_after, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(retry_after.unwrap_or(Duration::from_secs(30))),
            ),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        ApiError {
            status,
            message: err.to_string(),
            traceback: chain(&err),
            retry_after,
            allow: None,
        }
    }
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    status: String,
    message: &'a str,
    traceback: &'a str,
    version: &'static str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.is_internal() {
            tracing::error!(status = %self.status, error = %self.traceback, "request failed");
        } else {
            tracing::info!(status = %self.status, error = %self.message, "request refused");
        }
        let status_line = format!(
            "{} {}",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or("Unknown")
        );
        let body = crate::pyjson::dumps(&ErrorBody {
            status: status_line,
            message: &self.message,
            traceback: &self.traceback,
            version: env!("CARGO_PKG_VERSION"),
        });
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let Some(after) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
