//! Containers: PUT (201 new / 202 existing), HEAD (counts), GET (object listing), POST (metadata),
//! DELETE (204; 409 when not empty; 404 when missing); and [`container_object_keys`] for the HLM.
//! Counts and listings come from the Swift index: a HEAD reads one row, a listing page the rows it
//! returns.

use super::index::{ContainerRow, Start};
use super::index_of;
use super::listing::{parse_params, render, select_page, Item, ListingParams};
use super::metadata::{self, nanos, put_headers, ContainerMeta, ObjectMeta};
use super::names::{container_data_prefix, object_key};
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use archive_core::Key;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Names read at once when a whole container is wanted (the HLM expanding a container).
const ALL_NAMES_BATCH: usize = 10_000;

fn not_found(account: &str, container: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("Container /{account}/{container} does not exist"),
    )
}

/// The container's row, or 404.
pub(super) async fn require(
    state: &AppState,
    account: &str,
    container: &str,
) -> ApiResult<ContainerRow> {
    index_of(state)
        .await?
        .container(account, container)
        .await?
        .ok_or_else(|| not_found(account, container))
}

/// One listing page of a container's objects (404 when the container does not exist).
pub(super) async fn list_objects(
    state: &AppState,
    account: &str,
    container: &str,
    params: &ListingParams,
) -> ApiResult<Vec<Item<ObjectMeta>>> {
    let index = index_of(state).await?;
    select_page(params, |start, limit| async move {
        let rows = index
            .objects_page(account, container, &start, limit)
            .await?;
        let rows = super::cloud_listing::merge_remote_objects(
            state, account, container, &start, limit, rows,
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|meta| (meta.name.clone(), meta))
            .collect())
    })
    .await
}

/// The rows of every object of a container whose name starts with `prefix`, in name order.
pub(super) async fn objects_with_prefix(
    state: &AppState,
    account: &str,
    container: &str,
    prefix: &str,
) -> ApiResult<Vec<ObjectMeta>> {
    let index = index_of(state).await?;
    let mut out = Vec::new();
    let mut start = Start::From(prefix.to_string());
    loop {
        let rows = index
            .objects_page(account, container, &start, ALL_NAMES_BATCH)
            .await?;
        let full = rows.len() == ALL_NAMES_BATCH;
        for row in rows {
            if !row.name.starts_with(prefix) {
                return Ok(out);
            }
            start = Start::After(row.name.clone());
            out.push(row);
        }
        if !full {
            return Ok(out);
        }
    }
}

/// The data keys of a page of a container's objects: at most `limit` after `marker`, or all of them
/// (sorted); a NotFound-kind error when the container does not exist.
pub async fn container_object_keys_page(
    state: &AppState,
    account: &str,
    container: &str,
    marker: Option<&str>,
    limit: Option<usize>,
) -> Result<Vec<Key>, ApiError> {
    require(state, account, container).await?;
    let index = index_of(state).await?;
    let mut keys = Vec::new();
    let mut start = match marker {
        Some(marker) => Start::After(marker.to_string()),
        None => Start::From(String::new()),
    };
    let mut left = limit.unwrap_or(usize::MAX);
    while left > 0 {
        let batch = left.min(ALL_NAMES_BATCH);
        let rows = index
            .objects_page(account, container, &start, batch)
            .await?;
        for row in &rows {
            keys.push(object_key(
                &state.config.swift,
                account,
                container,
                &row.name,
            )?);
        }
        match rows.last() {
            Some(last) if rows.len() == batch => start = Start::After(last.name.clone()),
            _ => break,
        }
        left -= batch;
    }
    Ok(keys)
}

/// The data keys of every object of a container (sorted); a NotFound-kind error when the container
/// does not exist.
pub async fn container_object_keys(
    state: &AppState,
    account: &str,
    container: &str,
) -> Result<Vec<Key>, ApiError> {
    container_object_keys_page(state, account, container, None, None).await
}

fn count_headers(row: &ContainerRow) -> HeaderMap {
    let meta = &row.meta;
    let mut h = HeaderMap::new();
    h.insert(
        "x-container-object-count",
        HeaderValue::from(row.object_count),
    );
    h.insert("x-container-bytes-used", HeaderValue::from(row.bytes_used));
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
    let mut tx = index_of(state).await?.begin().await?;
    let existing = tx.container(account, container).await?;
    let created = existing.is_none();
    let mut meta = existing
        .map(|row| row.meta)
        .unwrap_or_else(|| ContainerMeta {
            created_ns: nanos(SystemTime::now()),
            headers: BTreeMap::new(),
        });
    apply_container_headers(&mut meta, headers)?;
    tx.put_container(account, container, &meta).await?;
    tx.commit().await?;
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
    let mut tx = index_of(state).await?.begin().await?;
    let mut meta = tx
        .container(account, container)
        .await?
        .ok_or_else(|| not_found(account, container))?
        .meta;
    apply_container_headers(&mut meta, headers)?;
    tx.put_container(account, container, &meta).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `HEAD /v1/a/c`.
pub(super) async fn head_container(
    state: &AppState,
    account: &str,
    container: &str,
) -> ApiResult<Response> {
    let row = require(state, account, container).await?;
    Ok((StatusCode::NO_CONTENT, count_headers(&row)).into_response())
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
    let row = require(state, account, container).await?;
    let items = list_objects(state, account, container, &params).await?;
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
        count_headers(&row),
    ))
}

/// `DELETE /v1/a/c`. Under the index's write lock, the container must have no rows and no data: an
/// object whose data is linked but whose row is not yet written (a PUT finishing) keeps it, and a
/// PUT that finishes after the container went removes its data again (see `object::store`).
pub(super) async fn delete_container(
    state: &AppState,
    account: &str,
    container: &str,
) -> ApiResult<Response> {
    let mut tx = index_of(state).await?.begin().await?;
    let row = tx
        .container(account, container)
        .await?
        .ok_or_else(|| not_found(account, container))?;
    let prefix = container_data_prefix(&state.config.swift, account, container);
    if row.object_count > 0 || !state.backend.list_page(&prefix, None, 1).await?.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Container /{account}/{container} is not empty: delete its objects first"),
        ));
    }
    tx.delete_container(account, container).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
