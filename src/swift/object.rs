//! Objects: PUT (streamed, MD5 `ETag`, `X-Object-Meta-*` kept, overwrite allowed), GET (with `Range`),
//! HEAD, POST (replaces user metadata) and DELETE. Data goes through the backend under the object's key,
//! metadata into the object's row in the Swift index, written after the data under the index's write
//! lock and only if that data is still the one under the key: of racing PUTs, the row written last
//! is the one of the data linked last, and readers check that the row describes the data they see.
//!
//! ETags are the bare MD5 hex, as Swift sends them (clients print and compare them unquoted).
//!
//! A GET of an object whose data is on tape only (migrated) answers SwiftHLM's 412: the client recalls
//! it through the HLM API first. Conditional headers (see `conditional`) are answered before that, as
//! they need no data.

use super::checksum::{hashing, normalise_etag};
use super::conditional::{self, Validators};
use super::container;
use super::index_of;
use super::metadata::{
    self, header_text, nanos, put_headers, unique_write_time, user_metadata, ObjectMeta,
};
use super::names::object_key;
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

/// The object's row if it describes the current data, else what the data alone tells (only while a
/// PUT between its data and its row is in flight, or after a crash there until the next start-up
/// repairs the row).
async fn current_meta(
    state: &AppState,
    obj: ObjectRef<'_>,
    status: &FileStatus,
) -> ApiResult<ObjectMeta> {
    let record = index_of(state)
        .await?
        .object(obj.account, obj.container, obj.object)
        .await?;
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
    if let Some(entry) = state.backend.list_page(&below, None, 1).await?.first() {
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
/// its row. With an expected MD5 that the data does not have: 422 and nothing stored.
///
/// The data is written with a modification time no other write shares, which identifies it. Before
/// the data, an intent is recorded (so a crash between data and row is repaired at the next
/// start-up); after it, under the index's write lock, the row is written only if the data under the
/// key is still this one (a racing PUT that linked its data later writes its own row), and only if
/// the container still exists (else this PUT's data is removed again and the answer is 404).
pub(super) async fn store(
    state: &AppState,
    obj: ObjectRef<'_>,
    body: ByteStream,
    upload: Upload,
) -> ApiResult<ObjectMeta> {
    let state = state.clone();
    let (account, container, object) = (
        obj.account.to_string(),
        obj.container.to_string(),
        obj.object.to_string(),
    );
    // A task of its own: a client that goes away mid-request must not stop the store between the
    // data being linked and its row being written.
    tokio::spawn(async move {
        let obj = ObjectRef {
            account: &account,
            container: &container,
            object: &object,
        };
        store_to_end(&state, obj, body, upload).await
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storing the object failed: {e}"),
        )
    })?
}

async fn store_to_end(
    state: &AppState,
    obj: ObjectRef<'_>,
    body: ByteStream,
    upload: Upload,
) -> ApiResult<ObjectMeta> {
    let key = obj.data_key(state)?;
    let index = index_of(state).await?;
    let written = unique_write_time();
    let now = nanos(SystemTime::now());
    let mut record = ObjectMeta {
        name: obj.object.to_string(),
        etag: String::new(),
        content_type: upload.content_type,
        size: upload.expected_len.unwrap_or(0),
        data_mtime_ns: nanos(written),
        timestamp_ns: now,
        headers: upload.kept,
    };
    let intent = index
        .add_intent(obj.account, obj.container, &record)
        .await?;
    let options = PutOptions {
        mtime: Some(written),
        expected_len: upload.expected_len,
        overwrite: true,
    };
    let (stream, md5) = hashing(body, upload.expected_etag.clone());
    let stored = state.backend.put(&key, stream, options).await;
    let digest = md5.get();
    let mismatch = match (&upload.expected_etag, &digest) {
        (Some(expected), Some(digest)) if expected != digest => Some(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "The body's MD5 is {digest} but the ETag header said {expected}; nothing was stored"
            ),
        )),
        _ => None,
    };
    let stored = match (mismatch, stored) {
        (None, Ok(stored)) => stored,
        (Some(error), _) => {
            index.remove_intent(intent).await?;
            return Err(error);
        }
        (None, Err(e)) => {
            index.remove_intent(intent).await?;
            return Err(match e {
                // Only a name clash on disk refuses an overwriting put (e.g. a parent path created
                // meanwhile).
                BackendError::AlreadyExists { .. } => ApiError::new(
                    StatusCode::CONFLICT,
                    format!("Object {} conflicts with another object's path", obj.path()),
                ),
                e => e.into(),
            });
        }
    };
    record.size = stored.bytes;
    record.etag = digest.unwrap_or_default();
    let mut tx = index.begin().await?;
    let ours = match state.backend.status(&key).await {
        Ok(status) => record.describes(&status),
        Err(BackendError::NotFound { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    if tx.container(obj.account, obj.container).await?.is_none() {
        // The container was deleted while the data streamed: take the data back out.
        if ours {
            match state.backend.delete(&key).await {
                Ok(()) | Err(BackendError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tx.remove_intent(intent).await?;
        tx.commit().await?;
        return Err(container::require(state, obj.account, obj.container)
            .await
            .err()
            .unwrap_or_else(|| obj.not_found()));
    }
    if ours {
        tx.put_object(obj.account, obj.container, &record).await?;
    }
    tx.remove_intent(intent).await?;
    tx.commit().await?;
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
    // A migrated object is refused by the backend's `get` (NotResident, answered below), unless its
    // tier can read it through (the cloud tier).
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
    let index = index_of(state).await?;
    let mut tx = index.begin().await?;
    let stored = tx.object(obj.account, obj.container, obj.object).await?;
    let mut meta = stored
        .filter(|m| m.describes(&status))
        .unwrap_or_else(|| ObjectMeta::fallback(obj.object, &status));
    meta.headers = kept;
    if let Some(t) = content_type(headers, obj.object) {
        meta.content_type = t;
    }
    meta.timestamp_ns = nanos(SystemTime::now());
    // Written only if the data is still the one this metadata describes (a PUT may have replaced it).
    match state.backend.status(&key).await {
        Ok(now) if meta.describes(&now) => tx.put_object(obj.account, obj.container, &meta).await?,
        Ok(_) => {}
        Err(BackendError::NotFound { .. }) => return Err(obj.not_found()),
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
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
    let found = match state.backend.delete(&key).await {
        Ok(()) => true,
        Err(BackendError::NotFound { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    // The row goes only if no PUT linked new data since (that PUT writes its own row).
    let mut tx = index_of(state).await?.begin().await?;
    match state.backend.status(&key).await {
        Err(BackendError::NotFound { .. }) => {
            tx.delete_object(obj.account, obj.container, obj.object)
                .await?
        }
        Ok(_) => {}
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    if !found {
        return Err(obj.not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
