//! The SwiftHLM HTTP API:
//! - `POST /hlm/v1/{migrate|premigrate|recall}/{a}/{c}[/{o}]` -> 202 `Accepted migrate request.`
//! - `GET /hlm/v1/status/{a}/{c}[/{o}]` -> `{"/a/c/o": "resident", ...}` (one batch status call;
//!   `?limit=N&marker=NAME` pages through a container)
//! - `GET /hlm/v1/requests/{a}/{c}[/{o}]` -> SwiftHLM request strings, or `?format=json` records
//! - `POST /hlm/v1/{op}` with `{"ids": [...]}` (Pacifica ids) or `{"objects": ["/a/c/o", ...]}`
//!   -> 202 with a request id; `GET /hlm/v1/request/{id}` -> that request with its progress.
//!
//! Every request needs a tempauth token valid for the account (reseller admin for Pacifica ids).

use super::queue::{NewRequest, Op, RequestFilter, RequestId, RequestRecord, Target};
use super::HlmService;
use crate::error::{ApiError, ApiResult};
use crate::pyjson::dumps;
use crate::swift::{self, names::object_key, tempauth::authorize};
use crate::AppState;
use archive_core::{HsmState, Key};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde::Serialize;
use std::collections::BTreeMap;

/// Largest bulk request document.
const MAX_BULK_DOCUMENT: usize = 16 << 20;
/// Most entries in one bulk request.
const MAX_BULK_ENTRIES: usize = 100_000;
const NO_REQUESTS: &str = "There are no pending or failed SwiftHLM requests.";

/// The routes of the HLM API.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hlm/v1/request/{id}", get(get_request))
        .route("/hlm/v1/{command}", post(submit_bulk))
        .route("/hlm/v1/{command}/{account}/{container}", any(path_command))
        .route(
            "/hlm/v1/{command}/{account}/{container}/{*object}",
            any(path_command),
        )
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        dumps(body),
    )
        .into_response()
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// SwiftHLM's own 404 body: `{"error": "..."}`.
fn hlm_not_found(message: String) -> Response {
    json(StatusCode::NOT_FOUND, &BTreeMap::from([("error", message)]))
}

fn service(state: &AppState) -> ApiResult<&HlmService> {
    state.hlm.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The HLM request queue is not running",
        )
    })
}

fn queue_error(e: super::queue::Error) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("The HLM request queue failed: {e}"),
    )
}

fn parse_op(command: &str) -> Option<Op> {
    command.parse().ok()
}

/// Every HLM route needs a backend with a tape tier: without one there is nothing to migrate, recall,
/// report or queue, and the answer is 501 naming the backend.
fn require_tape_tier(state: &AppState) -> ApiResult<()> {
    if !state.has_tape_tier() {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "The {} backend has no tape tier: the HLM API is not available",
                state.backend.name()
            ),
        ));
    }
    Ok(())
}

/// `/{command}/{account}/{container}[/{object}]`: one handler for both routes.
#[derive(serde::Deserialize)]
struct HlmPath {
    command: String,
    account: String,
    container: String,
    object: Option<String>,
}

async fn path_command(
    State(state): State<AppState>,
    method: Method,
    Path(path): Path<HlmPath>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    hlm_command(
        &state,
        method,
        &path.command,
        &path.account,
        &path.container,
        path.object.as_deref(),
        query.as_deref(),
        &headers,
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

#[allow(clippy::too_many_arguments)]
async fn hlm_command(
    state: &AppState,
    method: Method,
    command: &str,
    account: &str,
    container: &str,
    object: Option<&str>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    require_tape_tier(state)?;
    let command = command.to_ascii_lowercase();
    let allow = match command.as_str() {
        "status" | "requests" => "GET",
        "migrate" | "premigrate" | "recall" => "POST",
        _ => return Err(ApiError::bad_request(format!("Unknown HLM command {command:?}: expected migrate, premigrate, recall, status or requests"))),
    };
    if method.as_str() != allow {
        return Err(ApiError::method_not_allowed(if allow == "GET" {
            "GET"
        } else {
            "POST"
        }));
    }
    authorize(state, headers, account)?;
    match command.as_str() {
        "status" => status(state, account, container, object, query).await,
        "requests" => requests(state, account, container, object, query).await,
        op => {
            submit(
                state,
                parse_op(op).expect("checked above"),
                account,
                container,
                object,
            )
            .await
        }
    }
}

/// A page of a container's objects: `marker` (the last name of the page before) and `limit`.
#[derive(Debug, Default)]
struct Page {
    marker: Option<String>,
    limit: Option<usize>,
}

/// Most objects one `status` page may ask for.
const STATUS_PAGE_LIMIT: usize = 10_000;

/// `?limit=N&marker=NAME` of a status request (other parameters are ignored).
fn parse_page(query: Option<&str>) -> ApiResult<Page> {
    let mut page = Page::default();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "marker" if !value.is_empty() => page.marker = Some(value.into_owned()),
            "limit" => {
                let limit = value
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n <= STATUS_PAGE_LIMIT)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "Invalid limit {value:?}: an integer from 0 to {STATUS_PAGE_LIMIT}"
                        ))
                    })?;
                page.limit = Some(limit);
            }
            _ => {}
        }
    }
    Ok(page)
}

/// The data keys a path names, or SwiftHLM's 404 response.
async fn keys_of(
    state: &AppState,
    account: &str,
    container: &str,
    object: Option<&str>,
) -> ApiResult<Result<Vec<Key>, Response>> {
    keys_of_page(state, account, container, object, &Page::default()).await
}

/// The data keys a path names (a container's: the page asked for), or SwiftHLM's 404 response.
async fn keys_of_page(
    state: &AppState,
    account: &str,
    container: &str,
    object: Option<&str>,
    page: &Page,
) -> ApiResult<Result<Vec<Key>, Response>> {
    let swift = &state.config.swift;
    match object {
        Some(object) => {
            let key = object_key(swift, account, container, object)?;
            match state.backend.status(&key).await {
                Ok(_) => Ok(Ok(vec![key])),
                Err(archive_core::Error::NotFound { .. }) => Ok(Err(hlm_not_found(format!(
                    "Object /{account}/{container}/{object} does not exist."
                )))),
                Err(e) => Err(e.into()),
            }
        }
        None => match swift::container_object_keys_page(
            state,
            account,
            container,
            page.marker.as_deref(),
            page.limit,
        )
        .await
        {
            Ok(keys) => Ok(Ok(keys)),
            Err(e) if e.status == StatusCode::NOT_FOUND => Ok(Err(hlm_not_found(format!(
                "/account/container /{account}/{container} does not exist."
            )))),
            Err(e) => Err(e),
        },
    }
}

async fn submit(
    state: &AppState,
    op: Op,
    account: &str,
    container: &str,
    object: Option<&str>,
) -> ApiResult<Response> {
    let hlm = service(state)?;
    if let Err(not_found) = keys_of(state, account, container, object).await? {
        return Ok(not_found);
    }
    let target = match object {
        Some(object) => Target::Object {
            account: account.into(),
            container: container.into(),
            object: object.into(),
        },
        None => Target::Container {
            account: account.into(),
            container: container.into(),
        },
    };
    let id = hlm
        .queue
        .submit(NewRequest::new(op, target))
        .await
        .map_err(queue_error)?;
    hlm.wake.notify_waiters();
    tracing::info!(%op, account, container, object, request = %id, "HLM request queued");
    Ok(text(
        StatusCode::ACCEPTED,
        format!("Accepted {op} request.\n"),
    ))
}

/// `status`: the state of every object the path names; for a container, with `limit` and `marker`,
/// one page of its objects in name order (the next page starts after the last name of this one,
/// which `X-HLM-Next-Marker` carries, percent-encoded, while more follow).
async fn status(
    state: &AppState,
    account: &str,
    container: &str,
    object: Option<&str>,
    query: Option<&str>,
) -> ApiResult<Response> {
    let page = parse_page(query)?;
    // One more than the page: whether it exists says if there is a next page.
    let probe = Page {
        marker: page.marker.clone(),
        limit: page.limit.map(|n| n + 1),
    };
    let mut keys = match keys_of_page(state, account, container, object, &probe).await? {
        Ok(keys) => keys,
        Err(not_found) => return Ok(not_found),
    };
    let more = page.limit.is_some_and(|n| keys.len() > n);
    keys.truncate(page.limit.unwrap_or(usize::MAX));
    let swift = &state.config.swift;
    let mut states = BTreeMap::new();
    let mut last = None;
    for (key, result) in state.backend.status_many(&keys).await {
        // A backend that cannot answer now (its catalog database is down) is a 503 to retry, not a
        // map of "unknown" states.
        let result = match result {
            Err(e @ archive_core::Error::Unavailable { .. }) => return Err(e.into()),
            result => result,
        };
        let name = swift::names::swift_name_of(swift, &key).unwrap_or_else(|| key.to_string());
        let value = result.map(|s| s.state).unwrap_or(HsmState::Unknown);
        last = Some(name.clone());
        states.insert(name, value.as_str());
    }
    let mut response = json(StatusCode::OK, &states);
    // The next page's marker: the last object name of this one, percent-encoded as in a URL.
    let next = last.filter(|_| more && object.is_none()).and_then(|name| {
        let object = name.splitn(4, '/').nth(3)?.to_string();
        let encoded =
            percent_encoding::utf8_percent_encode(&object, percent_encoding::NON_ALPHANUMERIC);
        header::HeaderValue::from_str(&encoded.to_string()).ok()
    });
    if let Some(next) = next {
        response.headers_mut().insert(NEXT_MARKER, next);
    }
    Ok(response)
}

/// A queue record as `?format=json` shows it.
#[derive(Serialize)]
struct RecordView<'a> {
    id: i64,
    name: Option<String>,
    op: &'static str,
    target: TargetView<'a>,
    state: &'static str,
    progress: ProgressView,
    attempts: u32,
    last_error: Option<&'a str>,
    created: String,
    updated: String,
    finished: Option<String>,
    next_attempt: String,
}

#[derive(Serialize)]
struct TargetView<'a> {
    account: Option<&'a str>,
    container: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    objects: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<&'a [String]>,
}

#[derive(Serialize)]
struct ProgressView {
    done: u64,
    failed: u64,
    total: u64,
}

fn view(record: &RequestRecord) -> RecordView<'_> {
    let target = &record.target;
    RecordView {
        id: record.id.0,
        name: record.swifthlm_name(),
        op: record.op.as_str(),
        target: TargetView {
            account: target.account(),
            container: target.container(),
            object: target.object(),
            objects: match target {
                Target::Objects { objects, .. } => Some(objects),
                _ => None,
            },
            keys: match target {
                Target::Keys(keys) => Some(keys),
                _ => None,
            },
        },
        state: record.state.as_str(),
        progress: ProgressView {
            done: record.progress.done,
            failed: record.progress.failed,
            total: record.progress.total,
        },
        attempts: record.attempts,
        last_error: record.last_error.as_deref(),
        created: record.created_at.to_rfc3339(),
        updated: record.updated_at.to_rfc3339(),
        finished: record.finished_at.map(|t| t.to_rfc3339()),
        next_attempt: record.next_attempt_at.to_rfc3339(),
    }
}

/// The paging parameters of `requests`: `limit` (1 to [`MAX_REQUESTS_PAGE`]) and `marker` (the
/// id of the last request of the previous page), and whether the records are wanted as JSON.
#[derive(Debug, Default)]
struct RequestsQuery {
    as_json: bool,
    limit: Option<u32>,
    marker: Option<i64>,
}

/// Most requests in one page of `requests`, and the page size when only `marker` is given.
const MAX_REQUESTS_PAGE: u32 = 1000;
/// Response header naming the marker of the next page, when there is one.
const NEXT_MARKER: &str = "x-hlm-next-marker";

fn requests_query(query: Option<&str>) -> ApiResult<RequestsQuery> {
    let mut parsed = RequestsQuery::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "format" => parsed.as_json = value == "json",
            "limit" => {
                let limit = value
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|l| (1..=MAX_REQUESTS_PAGE).contains(l));
                parsed.limit = Some(limit.ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid limit {value:?}: expected an integer from 1 to {MAX_REQUESTS_PAGE}"
                    ))
                })?);
            }
            "marker" => {
                let marker = value.trim().parse::<i64>().ok().filter(|m| *m >= 0);
                parsed.marker = Some(marker.ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid marker {value:?}: expected the id of the last request of the previous page"
                    ))
                })?);
            }
            _ => {}
        }
    }
    Ok(parsed)
}

/// `GET /hlm/v1/requests/...`: SwiftHLM's list of request names, or `?format=json` records. With
/// `limit` or `marker`, one page in submission order; the `X-HLM-Next-Marker` header carries
/// the marker of the next page while there is one.
async fn requests(
    state: &AppState,
    account: &str,
    container: &str,
    object: Option<&str>,
    query: Option<&str>,
) -> ApiResult<Response> {
    let query = requests_query(query)?;
    let paged = query.limit.is_some() || query.marker.is_some();
    let page_size = query.limit.unwrap_or(MAX_REQUESTS_PAGE);
    let filter = RequestFilter {
        account: Some(account.into()),
        container: Some(container.into()),
        object: object.map(str::to_string),
        // One more than the page: whether it exists says if there is a next page.
        limit: paged.then_some(page_size + 1),
        after: paged.then(|| RequestId(query.marker.unwrap_or(0))),
        ..RequestFilter::default()
    };
    let mut records = service(state)?
        .queue
        .list(&filter)
        .await
        .map_err(queue_error)?;
    let next_marker = if paged && records.len() > page_size as usize {
        records.truncate(page_size as usize);
        records.last().map(|r| r.id)
    } else {
        None
    };
    let mut response = if query.as_json {
        let views: Vec<_> = records.iter().map(view).collect();
        json(StatusCode::OK, &views)
    } else {
        let mut names: Vec<String> = records
            .iter()
            .filter_map(RequestRecord::swifthlm_name)
            .collect();
        // SwiftHLM's answer when nothing is queued; a page past the end is just empty.
        if names.is_empty() && !paged {
            names.push(NO_REQUESTS.into());
        }
        json(StatusCode::OK, &names)
    };
    if let Some(next) = next_marker {
        response
            .headers_mut()
            .insert(NEXT_MARKER, header::HeaderValue::from(next.0));
    }
    Ok(response)
}

/// The bulk document: Pacifica ids or Swift object paths.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkDocument {
    #[serde(default)]
    ids: Vec<serde_json::Value>,
    #[serde(default)]
    objects: Vec<String>,
}

async fn submit_bulk(
    State(state): State<AppState>,
    Path(command): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk(&state, &command, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn bulk(
    state: &AppState,
    command: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    require_tape_tier(state)?;
    let op = parse_op(command).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Unknown bulk HLM command {command:?}: expected migrate, premigrate or recall"
        ))
    })?;
    let bytes = axum::body::to_bytes(body, MAX_BULK_DOCUMENT)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Bulk document unreadable or over {MAX_BULK_DOCUMENT} bytes: {e}"),
            )
        })?;
    let document: BulkDocument = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON document: {e}; expected {{\"ids\": [...]}} or {{\"objects\": [\"/account/container/object\", ...]}}")))?;
    let count = document.ids.len() + document.objects.len();
    if count == 0 || (!document.ids.is_empty() && !document.objects.is_empty()) {
        return Err(ApiError::bad_request(
            "Give either a non-empty \"ids\" list or a non-empty \"objects\" list",
        ));
    }
    if count > MAX_BULK_ENTRIES {
        return Err(ApiError::bad_request(format!(
            "At most {MAX_BULK_ENTRIES} entries per request, got {count}"
        )));
    }
    let target = if document.ids.is_empty() {
        objects_target(state, headers, &document.objects)?
    } else {
        ids_target(state, headers, &document.ids)?
    };
    let hlm = service(state)?;
    let id = hlm
        .queue
        .submit(NewRequest::new(op, target))
        .await
        .map_err(queue_error)?;
    hlm.wake.notify_waiters();
    tracing::info!(%op, entries = count, request = %id, "bulk HLM request queued");
    #[derive(Serialize)]
    struct Accepted {
        message: String,
        request_id: i64,
        url: String,
    }
    Ok(json(
        StatusCode::ACCEPTED,
        &Accepted {
            message: format!("Accepted {op} request."),
            request_id: id.0,
            url: format!("/hlm/v1/request/{id}"),
        },
    ))
}

/// Pacifica ids are archive-wide: only a reseller admin may act on them.
fn require_reseller_admin(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let prefix = state.config.swift.reseller_prefix.clone();
    let identity = authorize(state, headers, &prefix)?;
    if !identity.reseller_admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Only a reseller admin may act on Pacifica ids",
        ));
    }
    Ok(())
}

fn ids_target(
    state: &AppState,
    headers: &HeaderMap,
    ids: &[serde_json::Value],
) -> ApiResult<Target> {
    require_reseller_admin(state, headers)?;
    let keys = ids
        .iter()
        .map(|id| {
            let text = match id {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid id {other}: ids are integers or strings"
                    )))
                }
            };
            crate::pacifica::key_for_id(&text, state.settings.use_id2filename)
                .map(|k| k.to_string())
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Target::Keys(keys))
}

fn objects_target(state: &AppState, headers: &HeaderMap, objects: &[String]) -> ApiResult<Target> {
    let swift = &state.config.swift;
    let mut parsed = Vec::with_capacity(objects.len());
    for path in objects {
        let mut parts = path.trim_start_matches('/').splitn(3, '/');
        let (Some(a), Some(c), Some(o)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ApiError::bad_request(format!(
                "Invalid object path {path:?}: expected /account/container/object"
            )));
        };
        let key = object_key(swift, a, c, o)?;
        parsed.push((a, c, o, key));
    }
    let mut accounts: Vec<&str> = parsed.iter().map(|(a, ..)| *a).collect();
    accounts.sort_unstable();
    accounts.dedup();
    for account in &accounts {
        authorize(state, headers, account)?;
    }
    let (a0, c0) = (parsed[0].0, parsed[0].1);
    if parsed.iter().all(|(a, c, ..)| *a == a0 && *c == c0) {
        Ok(Target::Objects {
            account: a0.into(),
            container: c0.into(),
            objects: parsed.iter().map(|(_, _, o, _)| o.to_string()).collect(),
        })
    } else {
        Ok(Target::Keys(
            parsed.into_iter().map(|(.., k)| k.to_string()).collect(),
        ))
    }
}

async fn get_request(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    async {
        require_tape_tier(&state)?;
        let hlm = service(&state)?;
        let record = hlm.queue.get(RequestId(id)).await.map_err(queue_error)?;
        let Some(record) = record else {
            // Authenticate first so that ids cannot be probed without a token.
            require_reseller_admin(&state, &headers).or_else(|e| {
                if e.status == StatusCode::FORBIDDEN {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("No HLM request {id}"),
            ));
        };
        match record.target.account() {
            Some(account) => {
                authorize(&state, &headers, account)?;
            }
            None => require_reseller_admin(&state, &headers)?,
        }
        Ok(json(StatusCode::OK, &view(&record)))
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}
