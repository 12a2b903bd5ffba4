//! Server-side copy: `PUT` with `X-Copy-From: /<container>/<object>` (and optionally
//! `X-Copy-From-Account`), or `COPY` with `Destination: /<container>/<object>` (and optionally
//! `Destination-Account`), as `swift copy` sends them. The data streams from the source through the
//! backend and is checked against the source's MD5 on the way; the copy keeps the source's content
//! type and metadata unless the request sets them (`X-Fresh-Metadata: true` drops the source's).
//! A source on tape only answers SwiftHLM's 412.

use super::container;
use super::metadata::header_text;
use super::object::{self, created, ObjectRef, Upload};
use super::tempauth::authorize;
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use archive_core::{Error as BackendError, ReadRange};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

/// What Python's `urllib.parse.quote` leaves as it is (`X-Copied-From` is quoted like that).
const URL_QUOTE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// `<container>/<object>` from a copy header (percent-decoded; a leading `/` is optional).
fn split_target(raw: &str, what: &str) -> ApiResult<(String, String)> {
    let decoded = percent_encoding::percent_decode_str(raw.trim())
        .decode_utf8()
        .map_err(|_| ApiError::bad_request(format!("{what}: invalid UTF-8")))?;
    let path = decoded.strip_prefix('/').unwrap_or(&decoded);
    match path.split_once('/') {
        Some((c, o)) if !c.is_empty() && !o.is_empty() => Ok((c.to_string(), o.to_string())),
        _ => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            format!("{what} header must be of the form <container name>/<object name>"),
        )),
    }
}

/// The account named by `header` (authorised for this request's token), or `default`.
fn other_account(
    state: &AppState,
    headers: &HeaderMap,
    header: &str,
    default: &str,
) -> ApiResult<String> {
    match headers.get(header).map(header_text) {
        Some(account) if account != default => {
            super::names::check_account(&account)?;
            authorize(state, headers, &account)?;
            Ok(account)
        }
        _ => Ok(default.to_string()),
    }
}

/// `PUT /v1/a/c/o` with `X-Copy-From`: copies into `dst`.
pub(super) async fn put_copy(
    state: &AppState,
    dst: ObjectRef<'_>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let raw = headers
        .get("x-copy-from")
        .map(header_text)
        .unwrap_or_default();
    let (container, object) = split_target(&raw, "X-Copy-From")?;
    let account = other_account(state, headers, "x-copy-from-account", dst.account)?;
    let src = ObjectRef {
        account: &account,
        container: &container,
        object: &object,
    };
    copy(state, src, dst, headers).await
}

/// `COPY /v1/a/c/o` with `Destination`: copies `src` there.
pub(super) async fn copy_object(
    state: &AppState,
    src: ObjectRef<'_>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let raw = headers.get("destination").map(header_text).ok_or_else(|| {
        ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "Destination header required",
        )
    })?;
    let (container, object) = split_target(&raw, "Destination")?;
    let account = other_account(state, headers, "destination-account", src.account)?;
    let dst = ObjectRef {
        account: &account,
        container: &container,
        object: &object,
    };
    copy(state, src, dst, headers).await
}

async fn copy(
    state: &AppState,
    src: ObjectRef<'_>,
    dst: ObjectRef<'_>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let (status, meta) = object::status_and_meta(state, src).await?;
    if !status.is_readable_now() {
        return Ok(object::recall_needed(
            src.account,
            src.container,
            src.object,
        ));
    }
    container::require(state, dst.account, dst.container).await?;
    object::check_conflicts(state, dst).await?;
    let fresh = headers
        .get("x-fresh-metadata")
        .is_some_and(|v| header_text(v).eq_ignore_ascii_case("true"));
    let mut kept = if fresh {
        Default::default()
    } else {
        meta.headers.clone()
    };
    let given = object::request_metadata(headers)?;
    kept.extend(given);
    let content_type =
        object::content_type(headers, dst.object).unwrap_or(meta.content_type.clone());
    let got = match state
        .backend
        .get(&src.data_key(state)?, ReadRange::All)
        .await
    {
        Ok(got) => got,
        Err(BackendError::NotResident { .. }) => {
            return Ok(object::recall_needed(
                src.account,
                src.container,
                src.object,
            ))
        }
        Err(BackendError::NotFound { .. }) => return Err(src.not_found()),
        Err(e) => return Err(e.into()),
    };
    // The source's MD5 is checked only when its record describes the data being read.
    let expected_etag =
        (meta.describes(&got.status) && !meta.etag.is_empty()).then(|| meta.etag.clone());
    let upload = Upload {
        expected_len: Some(got.status.size),
        expected_etag,
        content_type,
        kept,
    };
    let record = object::store(state, dst, got.stream, upload).await?;
    let mut response = created(&record);
    let h = response.headers_mut();
    let value = |s: String| HeaderValue::from_str(&s).ok();
    let from = percent_encoding::utf8_percent_encode(
        &format!("{}/{}", src.container, src.object),
        URL_QUOTE,
    )
    .to_string();
    if let Some(v) = value(from) {
        h.insert("x-copied-from", v);
    }
    if let Some(v) = value(src.account.to_string()) {
        h.insert("x-copied-from-account", v);
    }
    if let Some(v) = value(super::metadata::last_modified(meta.timestamp_ns)) {
        h.insert("x-copied-from-last-modified", v);
    }
    Ok(response)
}
