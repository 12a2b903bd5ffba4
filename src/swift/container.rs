//! Containers: PUT (201 new / 202 existing), HEAD (counts), GET (object listing), POST (metadata),
//! DELETE (204; 409 when not empty; 404 when missing); and [`container_object_keys`] for the HLM.

use super::listing::{parse_params, render, select, Item};
use super::metadata::{
    self, delete_record, nanos, put_headers, read_record, write_record, ContainerMeta, ObjectMeta,
};
use super::names::{
    container_data_prefix, container_record_key, object_meta_key, object_meta_prefix,
};
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use archive_core::{Key, ListEntry};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Object metadata records read at once while building a listing.
const RECORD_READS_IN_FLIGHT: usize = 32;

fn not_found(account: &str, container: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("Container /{account}/{container} does not exist"),
    )
}

/// The container's record, or 404.
pub(super) async fn require(
    state: &AppState,
    account: &str,
    container: &str,
) -> ApiResult<ContainerMeta> {
    let key = container_record_key(&state.config.swift, account, container)?;
    read_record(state, &key)
        .await?
        .ok_or_else(|| not_found(account, container))
}

/// The container's objects (data keys, sorted), with the object name of each.
async fn objects(
    state: &AppState,
    account: &str,
    container: &str,
) -> ApiResult<Vec<(String, ListEntry)>> {
    let prefix = container_data_prefix(&state.config.swift, account, container);
    let entries = state.backend.list(&prefix).await?;
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            let name = e.key.as_str().strip_prefix(&prefix)?.to_string();
            Some((name, e))
        })
        .collect())
}

/// The data keys of every object of a container (sorted); a NotFound-kind error when the container does
/// not exist.
pub async fn container_object_keys(
    state: &AppState,
    account: &str,
    container: &str,
) -> Result<Vec<Key>, ApiError> {
    require(state, account, container).await?;
    Ok(objects(state, account, container)
        .await?
        .into_iter()
        .map(|(_, e)| e.key)
        .collect())
}

fn count_headers(meta: &ContainerMeta, objects: &[(String, ListEntry)]) -> HeaderMap {
    let bytes: u64 = objects.iter().map(|(_, e)| e.size).sum();
    let mut h = HeaderMap::new();
    h.insert("x-container-object-count", HeaderValue::from(objects.len()));
    h.insert("x-container-bytes-used", HeaderValue::from(bytes));
    let ts = metadata::x_timestamp(meta.created_ns);
    h.insert("x-timestamp", HeaderValue::from_str(&ts).expect("digits"));
    h.insert(
        "last-modified",
        HeaderValue::from_str(&metadata::last_modified(meta.created_ns)).expect("date"),
    );
    h.insert("x-storage-policy", HeaderValue::from_static("Policy-0"));
    put_headers(&mut h, &meta.headers);
    h
}

/// The container headers a request sets: `X-Container-Meta-*` (empty value or `X-Remove-...` removes)
/// and the ACL headers (kept and reported, not enforced: tempauth scopes access by account).
fn apply_container_headers(meta: &mut ContainerMeta, headers: &HeaderMap) -> ApiResult<()> {
    metadata::apply_user_metadata(&mut meta.headers, headers, "container")?;
    for acl in ["x-container-read", "x-container-write"] {
        if let Some(value) = headers.get(acl) {
            let value = metadata::header_text(value);
            let name = metadata::title_case(acl);
            if value.is_empty() {
                meta.headers.remove(&name);
            } else {
                meta.headers.insert(name, value);
            }
        }
    }
    Ok(())
}

/// `PUT /v1/a/c`.
pub(super) async fn put_container(
    state: &AppState,
    account: &str,
    container: &str,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let key = container_record_key(&state.config.swift, account, container)?;
    let existing: Option<ContainerMeta> = read_record(state, &key).await?;
    let created = existing.is_none();
    let mut meta = existing.unwrap_or_else(|| ContainerMeta {
        created_ns: nanos(SystemTime::now()),
        headers: BTreeMap::new(),
    });
    apply_container_headers(&mut meta, headers)?;
    write_record(state, &key, &meta).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    Ok(status.into_response())
}

/// `POST /v1/a/c`: updates metadata.
pub(super) async fn post_container(
    state: &AppState,
    account: &str,
    container: &str,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let mut meta = require(state, account, container).await?;
    apply_container_headers(&mut meta, headers)?;
    let key = container_record_key(&state.config.swift, account, container)?;
    write_record(state, &key, &meta).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `HEAD /v1/a/c`.
pub(super) async fn head_container(
    state: &AppState,
    account: &str,
    container: &str,
) -> ApiResult<Response> {
    let meta = require(state, account, container).await?;
    let objects = objects(state, account, container).await?;
    Ok((StatusCode::NO_CONTENT, count_headers(&meta, &objects)).into_response())
}

/// `GET /v1/a/c`: the object listing.
pub(super) async fn get_container(
    state: &AppState,
    account: &str,
    container: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let params = parse_params(query, headers)?;
    let meta = require(state, account, container).await?;
    let all = objects(state, account, container).await?;
    let counts = count_headers(&meta, &all);
    let selected = select(all, &params);
    // Each listed object's record gives its hash and content type.
    let config = &state.config.swift;
    let items: Vec<Item<ObjectMeta>> = futures::stream::iter(selected)
        .map(|item| async move {
            Ok::<_, ApiError>(match item {
                Item::Subdir(s) => Item::Subdir(s),
                Item::Entry(name, entry) => {
                    let status = archive_core::FileStatus {
                        size: entry.size,
                        mtime: entry.mtime,
                        ctime: entry.mtime,
                        state: archive_core::HsmState::Unknown,
                        bytes_per_level: Vec::new(),
                        location: String::new(),
                    };
                    let key = object_meta_key(config, account, container, &name)?;
                    let record: Option<ObjectMeta> = read_record(state, &key).await?;
                    let meta = record
                        .filter(|m| m.describes(&status))
                        .unwrap_or_else(|| ObjectMeta::fallback(&name, &status));
                    Item::Entry(name, meta)
                }
            })
        })
        .buffered(RECORD_READS_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<ApiResult<_>>()?;
    Ok(render(
        &items,
        params.format,
        ("container", "object", container),
        |name, meta| {
            let mut m = serde_json::Map::new();
            m.insert("name".into(), name.into());
            m.insert("hash".into(), meta.etag.clone().into());
            m.insert("bytes".into(), meta.size.into());
            m.insert("content_type".into(), meta.content_type.clone().into());
            m.insert(
                "last_modified".into(),
                metadata::iso_timestamp(meta.timestamp_ns).into(),
            );
            m
        },
        counts,
    ))
}

/// `DELETE /v1/a/c`.
pub(super) async fn delete_container(
    state: &AppState,
    account: &str,
    container: &str,
) -> ApiResult<Response> {
    require(state, account, container).await?;
    if !objects(state, account, container).await?.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Container /{account}/{container} is not empty: delete its objects first"),
        ));
    }
    let config = &state.config.swift;
    delete_record(state, &container_record_key(config, account, container)?).await?;
    // Records of objects whose data went away without them (a crash between the two deletes).
    let prefix = object_meta_prefix(config, account, container);
    for entry in state.backend.list(&prefix).await? {
        delete_record(state, &entry.key).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
