//! `HEAD /{id}`: the file's status in the reference's headers (including the `X-Pacifica-Messsage`
//! spelling, a Unix-float `Last-Modified` and the Python tuple of bytes per level), answered 204.

use super::headers::{python_float, python_tuple};
use crate::error::ApiResult;
use crate::AppState;
use archive_core::Key;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub(super) async fn head_file(state: &AppState, key: &Key) -> ApiResult<Response> {
    let status = state.backend.status(key).await?;
    let mut headers = HeaderMap::with_capacity(12);
    let fixed = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    let set = |headers: &mut HeaderMap, name: &'static str, value: String| {
        // Values come from numbers and our own paths; a path with bytes a header cannot carry is
        // sent lossily rather than failing the request.
        let value = HeaderValue::from_str(&value).unwrap_or_else(|_| {
            HeaderValue::from_bytes(value.escape_default().to_string().as_bytes())
                .unwrap_or(HeaderValue::from_static("?"))
        });
        headers.insert(HeaderName::from_static(name), value);
    };
    fixed(&mut headers, "content-type", "application/json");
    fixed(&mut headers, "x-pacifica-messsage", "File was found");
    set(&mut headers, "x-pacifica-file", status.location.clone());
    set(&mut headers, "x-content-length", status.size.to_string());
    set(&mut headers, "last-modified", python_float(status.mtime));
    set(&mut headers, "x-pacifica-ctime", python_float(status.ctime));
    set(
        &mut headers,
        "x-pacifica-bytes-per-level",
        python_tuple(&status.bytes_per_level),
    );
    fixed(
        &mut headers,
        "x-pacifica-file-storage-media",
        status.media(),
    );
    fixed(&mut headers, "x-pacifica-hsm-state", status.state.as_str());
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}
