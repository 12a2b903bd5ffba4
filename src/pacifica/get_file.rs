//! `GET /{id}`: stream a file with Content-Length, ETag, Last-Modified and `Accept-Ranges: bytes`;
//! `?byte_range=S-E` as the reference (200, clamped), HTTP `Range` as RFC 9110 (206 / 416, and the
//! whole file when `If-Range` names another version).

use super::range::{if_range_allows, parse_byte_range, parse_range_header, satisfiable, Wanted};
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use archive_core::{FileStatus, Key};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::UNIX_EPOCH;

/// A validator that changes whenever the content can have changed: mtime, size, and the inode change
/// time, which a file deleted and stored again with the same size and Last-Modified does not share
/// (every store sets it to the time of the store).
fn etag(status: &FileStatus) -> String {
    let nanos = |t: std::time::SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    };
    format!(
        "\"{:x}-{:x}-{:x}\"",
        nanos(status.mtime),
        nanos(status.ctime),
        status.size
    )
}

pub(super) async fn get_file(
    state: &AppState,
    key: &Key,
    params: &[(String, String)],
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let mut wanted = match params.iter().find(|(k, _)| k == "byte_range") {
        Some((_, raw)) => Wanted::ByteRange(parse_byte_range(raw)?),
        None => match headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_range_header)
        {
            Some(range) => Wanted::Http(range),
            None => Wanted::All,
        },
    };
    let mut got = state.open_for_read(key, wanted.read_range()).await?;
    let if_range = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok());
    if matches!(wanted, Wanted::Http(_))
        && !if_range_allows(if_range, &etag(&got.status), got.status.mtime)
    {
        // The client's copy is of another version: the whole file, 200.
        wanted = Wanted::All;
        got = state.open_for_read(key, wanted.read_range()).await?;
    }
    let size = got.status.size;
    if let Wanted::Http(range) = wanted {
        if !satisfiable(range, size) {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("Range {range:?} is outside the file ({size} bytes)"),
            )
            .into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::try_from(format!("bytes */{size}")).expect("ASCII"),
            );
            return Ok(response);
        }
    }
    let len = got.range.end - got.range.start;
    let status = if matches!(wanted, Wanted::Http(_)) {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut response = Response::builder()
        .status(status)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"))
        .header(header::ETAG, etag(&got.status))
        .header(
            header::LAST_MODIFIED,
            httpdate::fmt_http_date(got.status.mtime),
        );
    if status == StatusCode::PARTIAL_CONTENT {
        let last = got.range.end.saturating_sub(1);
        response = response.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{last}/{size}", got.range.start),
        );
    }
    response.body(Body::from_stream(got.stream)).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("building the response: {e}"),
        )
    })
}
