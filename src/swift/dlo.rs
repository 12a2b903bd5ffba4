//! Dynamic large objects (what `swift upload -S` makes when `/info` offers no `slo`): a manifest object
//! with `X-Object-Manifest: <container>/<prefix>` reads as the concatenation of every object of that
//! container whose name starts with the prefix, in name order. Its `Content-Length` is their total
//! size and its `ETag` the quoted MD5 of their ETags, as Swift computes it. A `Range` on a manifest is
//! ignored (the whole object is sent with 200, which HTTP allows). Conditional headers are answered
//! against that `ETag` and the manifest's `Last-Modified`. A segment on tape only answers SwiftHLM's
//! 412 naming that segment.

use super::conditional::{self, Validators};
use super::container::objects_with_prefix;
use super::metadata::ObjectMeta;
use super::names::{check_container, object_key};
use super::object::{object_headers, recall_needed, ObjectRef};
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use archive_core::ReadRange;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use md5::{Digest, Md5};

/// The stored header that makes an object a manifest.
pub(super) const MANIFEST: &str = "X-Object-Manifest";

/// The manifest's `<container>/<prefix>`, if `meta` is a manifest.
pub(super) fn manifest_of(meta: &ObjectMeta) -> Option<&str> {
    meta.headers.get(MANIFEST).map(String::as_str)
}

/// Splits and checks an `X-Object-Manifest` value (percent-encoded `<container>/<prefix>`).
pub(super) fn parse_manifest(raw: &str) -> ApiResult<(String, String)> {
    let bad = || {
        ApiError::bad_request(format!(
            "X-Object-Manifest must be of the form <container>/<prefix>, not {raw:?}"
        ))
    };
    let decoded = percent_encoding::percent_decode_str(raw.trim())
        .decode_utf8()
        .map_err(|_| bad())?;
    let (container, prefix) = decoded.split_once('/').ok_or_else(bad)?;
    check_container(container)?;
    Ok((container.to_string(), prefix.to_string()))
}

/// The segments of a manifest of `account`: their container and rows (from the Swift index), in
/// name order.
async fn segments(
    state: &AppState,
    account: &str,
    manifest: &str,
) -> ApiResult<(String, Vec<ObjectMeta>)> {
    let (container, prefix) = parse_manifest(manifest)?;
    let rows = objects_with_prefix(state, account, &container, &prefix).await?;
    Ok((container, rows))
}

/// `"md5(etag1 etag2 ...)"` over the segments' rows.
fn manifest_etag(rows: &[ObjectMeta]) -> String {
    let mut md5 = Md5::new();
    for row in rows {
        md5.update(row.etag.as_bytes());
    }
    format!("\"{}\"", hex::encode(md5.finalize()))
}

/// HEAD or GET of a manifest; conditional headers are answered against its `ETag` before any segment
/// is read.
pub(super) async fn read_manifest(
    state: &AppState,
    obj: ObjectRef<'_>,
    meta: &ObjectMeta,
    manifest: &str,
    request: &HeaderMap,
    with_body: bool,
) -> ApiResult<Response> {
    let (container, rows) = segments(state, obj.account, manifest).await?;
    let etag = manifest_etag(&rows);
    let total: u64 = rows.iter().map(|r| r.size).sum();
    let mut headers = object_headers(meta);
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("quoted hex"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    headers.remove(header::ACCEPT_RANGES);
    let validators = Validators {
        etag: &etag,
        timestamp_ns: meta.timestamp_ns,
    };
    if let Some(answer) = conditional::evaluate(request, validators, || headers.clone())? {
        return Ok(answer);
    }
    if !with_body {
        return Ok((StatusCode::OK, headers).into_response());
    }
    let keys = rows
        .iter()
        .map(|r| object_key(&state.config.swift, obj.account, &container, &r.name))
        .collect::<ApiResult<Vec<_>>>()?;
    for ((_, status), row) in state
        .backend
        .status_many(&keys)
        .await
        .into_iter()
        .zip(&rows)
    {
        if !status?.is_readable_now() {
            return Ok(recall_needed(obj.account, &container, &row.name));
        }
    }
    let backend = state.backend.clone();
    let body = futures::stream::iter(keys)
        .then(move |key| {
            let backend = backend.clone();
            async move { backend.get(&key, ReadRange::All).await }
        })
        .flat_map(|got| match got {
            Ok(got) => got.stream,
            Err(e) => futures::stream::once(async move { Err(std::io::Error::other(e)) }).boxed(),
        });
    Ok((StatusCode::OK, headers, Body::from_stream(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_values() {
        assert_eq!(
            parse_manifest("c_segments/big%20file/1/").unwrap(),
            ("c_segments".to_string(), "big file/1/".to_string())
        );
        assert_eq!(
            parse_manifest("c/").unwrap(),
            ("c".to_string(), String::new())
        );
        for bad in ["nocontainer", "../x", "/x", "%FF/x"] {
            assert!(parse_manifest(bad).is_err(), "{bad}");
        }
    }
}
