//! `PUT /{id}`: store a file. The body streams to the backend (chunked or with Content-Length, any
//! Content-Type taken as raw bytes); `Last-Modified` (RFC 1123, RFC 850 or asctime) becomes the mtime,
//! an unparseable one is refused before anything is written. Write-once unless `allow_overwrite`.

use super::headers::parse_last_modified;
use super::json_response;
use crate::error::{ApiError, ApiResult};
use crate::upload::upload_stream;
use crate::AppState;
use archive_core::{Key, PutOptions};
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

#[derive(serde::Serialize)]
struct Added {
    message: &'static str,
    total_bytes: u64,
}

pub(super) async fn put_file(
    state: &AppState,
    key: &Key,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let mtime = match headers.get(header::LAST_MODIFIED) {
        None => None,
        Some(raw) => {
            let text = String::from_utf8_lossy(raw.as_bytes());
            Some(parse_last_modified(&text).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Cant parse the files modtime: Last-Modified {text:?} is not an RFC 1123, RFC 850 or asctime date"
                ))
            })?)
        }
    };
    let expected_len = match headers.get(header::CONTENT_LENGTH) {
        None => None,
        Some(raw) => Some(
            raw.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("Content-Length is not a number"))?,
        ),
    };
    let options = PutOptions {
        mtime,
        expected_len,
        overwrite: state.settings.allow_overwrite,
    };
    let body = upload_stream(body, state.settings.body_idle_timeout);
    let stored = state.backend.put(key, body, options).await?;
    tracing::info!(key = %key, bytes = stored.bytes, "file added");
    Ok(json_response(
        StatusCode::CREATED,
        &Added {
            message: "File added to archive",
            total_bytes: stored.bytes,
        },
    ))
}
