//! Objects: PUT (streamed, MD5 `ETag`, `X-Object-Meta-*` kept, overwrite allowed), GET (with `Range`),
//! HEAD, POST (replaces user metadata) and DELETE. Data goes through the backend under the object's key,
//! metadata into the object's record (written after the data, so a record always describes data that
//! was completely stored).
//!
//! ETags are the bare MD5 hex, as Swift sends them (clients print and compare them unquoted).
//!
//! A GET of an object whose data is on tape only (migrated) answers SwiftHLM's 412: the client recalls
//! it through the HLM API first. Conditional headers (see `conditional`) are answered before that, as
//! they need no data.

use super::checksum::{hashing, normalise_etag};
use super::conditional::{self, Validators};
use super::container;
use super::metadata::{
    self, delete_record, header_text, nanos, put_headers, read_record, user_metadata, write_record,
    ObjectMeta,
};
use super::names::{object_key, object_meta_key};
use crate::error::{ApiError, ApiResult};
use crate::pacifica::range::{parse_range_header, satisfiable};
use crate::upload::upload_stream;
use crate::AppState;
use archive_core::{ByteStream, Error as BackendError, FileStatus, Key, PutOptions, ReadRange};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Headers kept with an object besides `X-Object-Meta-*` (a POST replaces them too, as in Swift).
const KEPT_HEADERS: [&str; 3] = [
    "content-disposition",
    "content-encoding",
    "x-object-manifest",
];

/// The object addressed by a request.
#[derive(Debug, Clone, Copy)]
pub(super) struct ObjectRef<'a> {
    pub(super) account: &'a str,
    pub(super) container: &'a str,
    pub(super) object: &'a str,
}

impl ObjectRef<'_> {
    pub(super) fn data_key(&self, state: &AppState) -> ApiResult<Key> {
        object_key(
            &state.config.swift,
            self.account,
            self.container,
            self.object,
        )
    }

    fn meta_key(&self, state: &AppState) -> ApiResult<Key> {
        object_meta_key(
            &state.config.swift,
            self.account,
            self.container,
            self.object,
        )
    }

    fn path(&self) -> String {
        format!("/{}/{}/{}", self.account, self.container, self.object)
    }

    pub(super) fn not_found(&self) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Object {} does not exist", self.path()),
        )
    }
}

/// SwiftHLM's answer to a GET of an object that must be recalled first (body exactly as SwiftHLM's).
pub fn recall_needed(account: &str, container: &str, object: &str) -> Response {
    (
        StatusCode::PRECONDITION_FAILED,
        [(header::CONTENT_TYPE, "text/plain")],
        format!("Object /{account}/{container}/{object} needs to be RECALL-ed before it can be accessed.\n"),
    )
        .into_response()
}

/// The data's status, or 404 naming the object.
async fn status(state: &AppState, obj: ObjectRef<'_>, key: &Key) -> ApiResult<FileStatus> {
    match state.backend.status(key).await {
        Ok(status) => Ok(status),
        Err(BackendError::NotFound { .. }) => Err(obj.not_found()),
        Err(e) => Err(e.into()),
    }
}

/// The data's status (404 naming the object) and its current metadata.
pub(super) async fn status_and_meta(
    state: &AppState,
    obj: ObjectRef<'_>,
) -> ApiResult<(FileStatus, ObjectMeta)> {
    let status = status(state, obj, &obj.data_key(state)?).await?;
    let meta = current_meta(state, obj, &status).await?;
    Ok((status, meta))
}

/// The object's record if it describes the current data, else what the data alone tells.
async fn current_meta(
    state: &AppState,
    obj: ObjectRef<'_>,
    status: &FileStatus,
) -> ApiResult<ObjectMeta> {
    let record: Option<ObjectMeta> = match read_record(state, &obj.meta_key(state)?).await {
        Ok(record) => record,
        // A record that cannot be read now (e.g. on tape) must not make the object unreadable.
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => None,
        Err(e) => return Err(e),
    };
    Ok(record
        .filter(|m| m.describes(status))
        .unwrap_or_else(|| ObjectMeta::fallback(obj.object, status)))
}

pub(super) fn object_headers(meta: &ObjectMeta) -> HeaderMap {
    let mut h = HeaderMap::new();
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
    h.insert(header::CONTENT_TYPE, value(&meta.content_type));
    if !meta.etag.is_empty() {
        h.insert(header::ETAG, value(&meta.etag));
    }
    h.insert(
        header::LAST_MODIFIED,
        value(&metadata::last_modified(meta.timestamp_ns)),
    );
    h.insert(
        "x-timestamp",
        value(&metadata::x_timestamp(meta.timestamp_ns)),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    put_headers(&mut h, &meta.headers);
    h
}

/// Checks that storing `obj` does not clash on disk with other objects of its container: an object
/// named like one of its parent "directories" (`a` when storing `a/b`), or objects below its name (`a/b`
/// when storing `a`).
pub(super) async fn check_conflicts(state: &AppState, obj: ObjectRef<'_>) -> ApiResult<()> {
    let conflict = |other: &str| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "Object {} conflicts with object /{}/{}/{other}: an object name cannot also be a \
                 prefix of other object names followed by '/' in this archive",
                obj.path(),
                obj.account,
                obj.container
            ),
        )
    };
    let mut at = 0;
    while let Some(slash) = obj.object[at..].find('/') {
        let parent = &obj.object[..at + slash];
        let key = object_key(&state.config.swift, obj.account, obj.container, parent)?;
        match state.backend.status(&key).await {
            Ok(_) => return Err(conflict(parent)),
            Err(BackendError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        at += slash + 1;
    }
    let below = format!("{}/", obj.data_key(state)?);
    if let Some(entry) = state.backend.list(&below).await?.first() {
        let name = entry.key.as_str().strip_prefix(&below).unwrap_or_default();
        return Err(conflict(&format!("{}/{name}", obj.object)));
    }
    Ok(())
}

/// The kept headers and `X-Object-Meta-*` of a request (empty values dropped).
pub(super) fn request_metadata(headers: &HeaderMap) -> ApiResult<BTreeMap<String, String>> {
    let mut kept = user_metadata(headers, "x-object-meta-")?;
    kept.retain(|_, v| !v.is_empty());
    for name in KEPT_HEADERS {
        if let Some(value) = headers.get(name) {
            let value = header_text(value);
            if !value.is_empty() {
                kept.insert(metadata::title_case(name), value);
            }
        }
    }
    Ok(kept)
}

/// The content type a request sets: `Content-Type`, or a guess from the name with
/// `X-Detect-Content-Type: true`.
pub(super) fn content_type(headers: &HeaderMap, object: &str) -> Option<String> {
    let detect = headers
        .get("x-detect-content-type")
        .is_some_and(|v| header_text(v).eq_ignore_ascii_case("true"));
    let given = headers
        .get(header::CONTENT_TYPE)
        .map(header_text)
        .filter(|t| !t.is_empty());
    match given {
        Some(t) if !detect => Some(t),
        _ if detect => Some(metadata::guess_content_type(object).to_string()),
        _ => None,
    }
}

/// `PUT /v1/a/c/o`.
pub(super) async fn put_object(
    state: &AppState,
    obj: ObjectRef<'_>,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let key = obj.data_key(state)?;
    if let Some(manifest) = headers.get("x-object-manifest") {
        super::dlo::parse_manifest(&header_text(manifest))?;
    }
    if headers.contains_key("x-copy-from") {
        return super::copy::put_copy(state, obj, headers).await;
    }
    container::require(state, obj.account, obj.container).await?;
    let kept = request_metadata(headers)?;
    let expected_len = match headers.get(header::CONTENT_LENGTH) {
        Some(v) => Some(
            header_text(v)
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request("Invalid Content-Length"))?,
        ),
        None => None,
    };
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| header_text(v) == "*")
    {
        match state.backend.status(&key).await {
            Ok(_) => {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    format!(
                        "Object {} exists and If-None-Match: * was given",
                        obj.path()
                    ),
                ))
            }
            Err(BackendError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    check_conflicts(state, obj).await?;
    let upload = Upload {
        expected_len,
        expected_etag: headers
            .get(header::ETAG)
            .map(|v| normalise_etag(&header_text(v))),
        content_type: content_type(headers, obj.object)
            .unwrap_or_else(|| metadata::guess_content_type(obj.object).to_string()),
        kept,
    };
    let body = upload_stream(body, state.settings.body_idle_timeout);
    let record = store(state, obj, body, upload).await?;
    Ok(created(&record))
}

/// What is known about data about to be stored.
#[derive(Debug)]
pub(super) struct Upload {
    /// Length announced by the client (or the copy source).
    pub(super) expected_len: Option<u64>,
    /// MD5 the data must have (the client's `ETag`, or the copy source's).
    pub(super) expected_etag: Option<String>,
    pub(super) content_type: String,
    /// `X-Object-Meta-*` and the other kept headers.
    pub(super) kept: BTreeMap<String, String>,
}

/// Streams `body` into the backend under `obj` (replacing an existing object atomically), then writes
/// its record. With an expected MD5 that the data does not have: 422 and nothing stored.
pub(super) async fn store(
    state: &AppState,
    obj: ObjectRef<'_>,
    body: ByteStream,
    upload: Upload,
) -> ApiResult<ObjectMeta> {
    let key = obj.data_key(state)?;
    let now = SystemTime::now();
    let options = PutOptions {
        mtime: Some(now),
        expected_len: upload.expected_len,
        overwrite: true,
    };
    let (stream, md5) = hashing(body, upload.expected_etag.clone());
    let stored = state.backend.put(&key, stream, options).await;
    let digest = md5.get();
    if let (Some(expected), Some(digest)) = (&upload.expected_etag, &digest) {
        if expected != digest {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "The body's MD5 is {digest} but the ETag header said {expected}; nothing was stored"
                ),
            ));
        }
    }
    match stored {
        Ok(_) => {}
        // Only a name clash on disk refuses an overwriting put (e.g. a parent path created meanwhile).
        Err(BackendError::AlreadyExists { .. }) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("Object {} conflicts with another object's path", obj.path()),
            ))
        }
        Err(e) => return Err(e.into()),
    }
    let status = state.backend.status(&key).await?;
    let record = ObjectMeta {
        name: obj.object.to_string(),
        etag: digest.unwrap_or_default(),
        content_type: upload.content_type,
        size: status.size,
        data_mtime_ns: nanos(now),
        timestamp_ns: nanos(now),
        headers: upload.kept,
    };
    write_record(state, &obj.meta_key(state)?, &record).await?;
    Ok(record)
}

/// 201 for a stored object, with its `ETag` and `Last-Modified`.
pub(super) fn created(record: &ObjectMeta) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&record.etag).unwrap_or(HeaderValue::from_static("")),
    );
    h.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_str(&metadata::last_modified(record.timestamp_ns)).expect("date"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    response
}

/// What HEAD and GET learn about an object before any data is read.
enum Resolved {
    /// The answer is already known: 304, or a large-object manifest (answered by `dlo`).
    Answered(Response),
    /// A plain object whose preconditions passed.
    Object {
        key: Key,
        status: FileStatus,
        meta: ObjectMeta,
    },
}

/// The steps HEAD and GET share: the data's status (404 naming the object), the object's record, a
/// manifest handed over to `dlo`, and the conditional headers (which need no data, so they are
/// answered even for an object on tape).
async fn resolve_object(
    state: &AppState,
    obj: ObjectRef<'_>,
    headers: &HeaderMap,
    with_body: bool,
) -> ApiResult<Resolved> {
    let key = obj.data_key(state)?;
    let status = status(state, obj, &key).await?;
    let meta = current_meta(state, obj, &status).await?;
    if let Some(manifest) = super::dlo::manifest_of(&meta) {
        let answer =
            super::dlo::read_manifest(state, obj, &meta, manifest, headers, with_body).await?;
        return Ok(Resolved::Answered(answer));
    }
    let validators = Validators {
        etag: &meta.etag,
        timestamp_ns: meta.timestamp_ns,
    };
    if let Some(answer) = conditional::evaluate(headers, validators, || object_headers(&meta))? {
        return Ok(Resolved::Answered(answer));
    }
    Ok(Resolved::Object { key, status, meta })
}

/// `HEAD /v1/a/c/o`.
pub(super) async fn head_object(
    state: &AppState,
    obj: ObjectRef<'_>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let (status, meta) = match resolve_object(state, obj, headers, false).await? {
        Resolved::Answered(answer) => return Ok(answer),
        Resolved::Object { status, meta, .. } => (status, meta),
    };
    let mut headers = object_headers(&meta);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(status.size));
    Ok((StatusCode::OK, headers).into_response())
}

/// `GET /v1/a/c/o` (`Range` honoured: 206, or 416 outside the object).
pub(super) async fn get_object(
    state: &AppState,
    obj: ObjectRef<'_>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let (key, status, meta) = match resolve_object(state, obj, headers, true).await? {
        Resolved::Answered(answer) => return Ok(answer),
        Resolved::Object { key, status, meta } => (key, status, meta),
    };
    if !status.is_readable_now() {
        return Ok(recall_needed(obj.account, obj.container, obj.object));
    }
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range_header);
    if let Some(range) = range {
        if !satisfiable(range, status.size) {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!(
                    "Range {range:?} is outside the object ({} bytes)",
                    status.size
                ),
            )
            .into_response();
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{}", status.size)).expect("ASCII"),
            );
            return Ok(response);
        }
    }
    let got = match state
        .backend
        .get(&key, range.unwrap_or(ReadRange::All))
        .await
    {
        Ok(got) => got,
        Err(BackendError::NotResident { .. }) => {
            return Ok(recall_needed(obj.account, obj.container, obj.object))
        }
        Err(BackendError::NotFound { .. }) => return Err(obj.not_found()),
        Err(e) => return Err(e.into()),
    };
    // The data may have been replaced between the status and the open: trust the open file's status.
    let meta = if meta.describes(&got.status) {
        meta
    } else {
        current_meta(state, obj, &got.status).await?
    };
    let mut out = object_headers(&meta);
    let len = got.range.end - got.range.start;
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let code = if range.is_some() {
        let last = got.range.end.saturating_sub(1);
        out.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!(
                "bytes {}-{last}/{}",
                got.range.start, got.status.size
            ))
            .expect("ASCII"),
        );
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    Ok((code, out, Body::from_stream(got.stream)).into_response())
}

/// `POST /v1/a/c/o`: replaces the user metadata (and the content type, when given).
pub(super) async fn post_object(
    state: &AppState,
    obj: ObjectRef<'_>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let key = obj.data_key(state)?;
    let status = status(state, obj, &key).await?;
    let kept = request_metadata(headers)?;
    let mut meta = current_meta(state, obj, &status).await?;
    meta.headers = kept;
    if let Some(t) = content_type(headers, obj.object) {
        meta.content_type = t;
    }
    meta.timestamp_ns = nanos(SystemTime::now());
    write_record(state, &obj.meta_key(state)?, &meta).await?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Accepted\n",
    )
        .into_response())
}

/// `DELETE /v1/a/c/o`.
pub(super) async fn delete_object(state: &AppState, obj: ObjectRef<'_>) -> ApiResult<Response> {
    let key = obj.data_key(state)?;
    match state.backend.delete(&key).await {
        Ok(()) => {}
        Err(BackendError::NotFound { .. }) => return Err(obj.not_found()),
        Err(e) => return Err(e.into()),
    }
    delete_record(state, &obj.meta_key(state)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
