//! Accounts: HEAD (container, object and byte counts), GET (the container listing) and POST
//! (`X-Account-Meta-*`). Accounts exist implicitly for every authorised user (as with tempauth's account
//! autocreate).

use super::listing::{parse_params, render, select};
use super::metadata::{self, put_headers, read_record, write_record, AccountMeta};
use super::names::{account_data_prefix, account_record_key, container_records_prefix};
use crate::error::ApiResult;
use crate::AppState;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

/// Objects and bytes of one container.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    count: u64,
    bytes: u64,
    created_ns: u64,
}

/// Every container of the account (sorted by name) with its usage.
async fn containers(state: &AppState, account: &str) -> ApiResult<Vec<(String, Usage)>> {
    let config = &state.config.swift;
    let records = container_records_prefix(config, account);
    let mut usage: BTreeMap<String, Usage> = BTreeMap::new();
    for entry in state.backend.list(&records).await? {
        if let Some(name) = entry.key.as_str().strip_prefix(&records) {
            usage.insert(
                name.to_string(),
                Usage {
                    created_ns: metadata::nanos(entry.mtime),
                    ..Usage::default()
                },
            );
        }
    }
    let data = account_data_prefix(config, account);
    for entry in state.backend.list(&data).await? {
        let Some(rest) = entry.key.as_str().strip_prefix(&data) else {
            continue;
        };
        let Some((container, _)) = rest.split_once('/') else {
            continue;
        };
        if let Some(u) = usage.get_mut(container) {
            u.count += 1;
            u.bytes += entry.size;
        }
    }
    Ok(usage.into_iter().collect())
}

fn account_headers(containers: &[(String, Usage)], meta: &AccountMeta) -> HeaderMap {
    let mut h = HeaderMap::new();
    put_headers(&mut h, &meta.headers);
    let objects: u64 = containers.iter().map(|(_, u)| u.count).sum();
    let bytes: u64 = containers.iter().map(|(_, u)| u.bytes).sum();
    h.insert(
        "x-account-container-count",
        HeaderValue::from(containers.len()),
    );
    h.insert("x-account-object-count", HeaderValue::from(objects));
    h.insert("x-account-bytes-used", HeaderValue::from(bytes));
    let created = containers
        .iter()
        .map(|(_, u)| u.created_ns)
        .min()
        .unwrap_or(0);
    h.insert(
        "x-timestamp",
        HeaderValue::from_str(&metadata::x_timestamp(created)).expect("digits"),
    );
    h.insert(
        "x-account-storage-policy-policy-0-container-count",
        HeaderValue::from(containers.len()),
    );
    h.insert(
        "x-account-storage-policy-policy-0-object-count",
        HeaderValue::from(objects),
    );
    h.insert(
        "x-account-storage-policy-policy-0-bytes-used",
        HeaderValue::from(bytes),
    );
    h
}

/// `HEAD /v1/a`.
pub(super) async fn head_account(state: &AppState, account: &str) -> ApiResult<Response> {
    let containers = containers(state, account).await?;
    let meta = account_meta(state, account).await?;
    Ok((StatusCode::NO_CONTENT, account_headers(&containers, &meta)).into_response())
}

async fn account_meta(state: &AppState, account: &str) -> ApiResult<AccountMeta> {
    let key = account_record_key(&state.config.swift, account)?;
    Ok(read_record(state, &key).await?.unwrap_or_default())
}

/// `POST /v1/a`: sets or removes `X-Account-Meta-*`.
pub(super) async fn post_account(
    state: &AppState,
    account: &str,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let mut meta = account_meta(state, account).await?;
    metadata::apply_user_metadata(&mut meta.headers, headers, "account")?;
    let key = account_record_key(&state.config.swift, account)?;
    write_record(state, &key, &meta).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/a`: the container listing.
pub(super) async fn get_account(
    state: &AppState,
    account: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let params = parse_params(query, headers)?;
    let all = containers(state, account).await?;
    let counts = account_headers(&all, &account_meta(state, account).await?);
    let items = select(all, &params);
    Ok(render(
        &items,
        params.format,
        ("account", "container", account),
        |name, usage| {
            let mut m = serde_json::Map::new();
            m.insert("name".into(), name.into());
            m.insert("count".into(), usage.count.into());
            m.insert("bytes".into(), usage.bytes.into());
            m.insert(
                "last_modified".into(),
                metadata::iso_timestamp(usage.created_ns).into(),
            );
            m
        },
        counts,
    ))
}
