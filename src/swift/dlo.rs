//! Dynamic large objects (what `swift upload -S` makes when `/info` offers no `slo`): a manifest object
//! with `X-Object-Manifest: <container>/<prefix>` reads as the concatenation of every object of that
//! container whose name starts with the prefix, in name order. Its `Content-Length` is their total
//! size and its `ETag` the quoted MD5 of their ETags, as Swift computes it. A `Range` on a manifest is
//! ignored (the whole object is sent with 200, which HTTP allows). Conditional headers are answered
//! against that `ETag` and the manifest's `Last-Modified`. A segment on tape only answers SwiftHLM's
//! 412 naming that segment.

use super::conditional::{self, Validators};
use super::metadata::{read_record, ObjectMeta};
use super::names::{check_container, container_data_prefix, object_meta_key};
use super::object::{object_headers, recall_needed, ObjectRef};
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use archive_core::{FileStatus, HsmState, ListEntry, ReadRange};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use md5::{Digest, Md5};

/// The stored header that makes an object a manifest.
pub(super) const MANIFEST: &str = "X-Object-Manifest";
/// Segment records read at once.
const RECORD_READS_IN_FLIGHT: usize = 32;

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

/// The segments of a manifest of `account`: (container, listing entry), in name order.
async fn segments(
    state: &AppState,
    account: &str,
    manifest: &str,
) -> ApiResult<(String, String, Vec<ListEntry>)> {
    let (container, prefix) = parse_manifest(manifest)?;
    let base = container_data_prefix(&state.config.swift, account, &container);
    let entries = state.backend.list(&format!("{base}{prefix}")).await?;
    Ok((container, base, entries))
}

/// `"md5(etag1 etag2 ...)"` over the segments' records.
async fn manifest_etag(
    state: &AppState,
    account: &str,
    container: &str,
    base: &str,
    entries: &[ListEntry],
) -> ApiResult<String> {
    let config = &state.config.swift;
    let etags: Vec<String> = futures::stream::iter(entries.to_vec())
        .map(|entry| async move {
            let name = entry.key.as_str().strip_prefix(base).unwrap_or_default();
            let key = object_meta_key(config, account, container, name)?;
            let record: Option<ObjectMeta> = read_record(state, &key).await?;
            let status = FileStatus {
                size: entry.size,
                mtime: entry.mtime,
                ctime: entry.mtime,
                state: HsmState::Unknown,
                bytes_per_level: Vec::new(),
                location: String::new(),
            };
            Ok::<_, ApiError>(
                record
                    .filter(|m| m.describes(&status))
                    .map(|m| m.etag)
                    .unwrap_or_default(),
            )
        })
        .buffered(RECORD_READS_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<ApiResult<_>>()?;
    let mut md5 = Md5::new();
    for etag in etags {
        md5.update(etag.as_bytes());
    }
    Ok(format!("\"{}\"", hex::encode(md5.finalize())))
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
    let (container, base, entries) = segments(state, obj.account, manifest).await?;
    let etag = manifest_etag(state, obj.account, &container, &base, &entries).await?;
    let total: u64 = entries.iter().map(|e| e.size).sum();
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
    let keys: Vec<_> = entries.into_iter().map(|e| e.key).collect();
    for (key, status) in state.backend.status_many(&keys).await {
        if !status?.is_readable_now() {
            let name = key.as_str().strip_prefix(&base).unwrap_or_default();
            return Ok(recall_needed(obj.account, &container, name));
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
