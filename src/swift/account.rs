//! Accounts: HEAD (container, object and byte counts), GET (the container listing) and POST
//! (`X-Account-Meta-*`). Accounts exist implicitly for every authorised user (as with tempauth's account
//! autocreate). Counts are the account's row in the Swift index, kept up to date as objects and
//! containers change.

use super::index::{AccountRow, ContainerRow};
use super::index_of;
use super::listing::{parse_params, render, select_page};
use super::metadata::{self, put_headers};
use crate::error::ApiResult;
use crate::AppState;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

fn account_headers(row: &AccountRow) -> HeaderMap {
    let mut h = HeaderMap::new();
    put_headers(&mut h, &row.headers);
    h.insert(
        "x-account-container-count",
        HeaderValue::from(row.container_count),
    );
    h.insert(
        "x-account-object-count",
        HeaderValue::from(row.object_count),
    );
    h.insert("x-account-bytes-used", HeaderValue::from(row.bytes_used));
    h.insert(
        "x-timestamp",
        HeaderValue::from_str(&metadata::x_timestamp(row.created_ns)).expect("digits"),
    );
    h.insert(
        "x-account-storage-policy-policy-0-container-count",
        HeaderValue::from(row.container_count),
    );
    h.insert(
        "x-account-storage-policy-policy-0-object-count",
        HeaderValue::from(row.object_count),
    );
    h.insert(
        "x-account-storage-policy-policy-0-bytes-used",
        HeaderValue::from(row.bytes_used),
    );
    h
}

/// `HEAD /v1/a`.
pub(super) async fn head_account(state: &AppState, account: &str) -> ApiResult<Response> {
    let row = index_of(state).await?.account(account).await?;
    Ok((StatusCode::NO_CONTENT, account_headers(&row)).into_response())
}

/// `POST /v1/a`: sets or removes `X-Account-Meta-*`.
pub(super) async fn post_account(
    state: &AppState,
    account: &str,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let index = index_of(state).await?;
    let mut tx = index.begin().await?;
    let mut stored = index.account(account).await?.headers;
    metadata::apply_user_metadata(&mut stored, headers, "account")?;
    tx.set_account_headers(account, &stored).await?;
    tx.commit().await?;
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
    let index = index_of(state).await?;
    let row = index.account(account).await?;
    let items = select_page(&params, |start, limit| async move {
        index.containers_page(account, &start, limit).await
    })
    .await?;
    Ok(render(
        &items,
        params.format,
        ("account", "container", account),
        |name, row: &ContainerRow| {
            let mut m = serde_json::Map::new();
            m.insert("name".into(), name.into());
            m.insert("count".into(), row.object_count.into());
            m.insert("bytes".into(), row.bytes_used.into());
            m.insert(
                "last_modified".into(),
                metadata::iso_timestamp(row.meta.created_ns).into(),
            );
            m
        },
        account_headers(&row),
    ))
}
