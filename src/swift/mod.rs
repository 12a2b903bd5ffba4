//! The Swift v1 object API with tempauth: `/auth/v1.0`, `/info` and `/v1/{account}[/{container}[/{object}]]`,
//! what python-swiftclient and other Swift clients need to put objects into the archive for the HLM.
//!
//! One concern per file: [`tempauth`] (tokens, [`authorize`]), [`names`] (paths, keys, validation),
//! `metadata` (records, metadata headers, timestamps), [`index`] (the SQLite index of accounts,
//! containers and objects, with their counts), `index_build` (opening it, building it from an
//! existing prefix, crash repair), `checksum` (streaming MD5), `listing`,
//! `account`, `container`, `object` (the operations), `conditional` (`If-*` headers of GET and HEAD), `copy` (server-side copy), `dlo` (large-object manifests), `info` (`/info`). This file owns routing, method
//! dispatch and the `X-Trans-Id` header on every response.

mod account;
mod checksum;
mod cloud_listing;
mod conditional;
mod container;
mod copy;
mod dlo;
pub mod index;
mod index_build;
mod info;
mod listing;
mod metadata;
pub mod names;
mod object;
pub mod tempauth;

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;

pub use container::{container_object_keys, container_object_keys_page};
pub use info::capabilities;
pub use names::{object_key, swift_name_of};
pub use object::recall_needed;
pub use tempauth::{authorize, Identity};

/// The Swift index of `state`'s archive, opened (and built or repaired) on first use.
pub(crate) async fn index_of(state: &AppState) -> ApiResult<&index::SwiftIndex> {
    state
        .swift_index
        .get_or_try_init(|| index_build::open_index(state))
        .await
}

/// Opens the Swift index at start-up, so that building it for an existing prefix happens before
/// the port opens rather than in the first request.
pub async fn open_index(state: &AppState) -> Result<(), ApiError> {
    index_of(state).await.map(drop)
}

/// The routes of the Swift API.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/v1.0", any(tempauth::get_auth))
        .route("/auth/v1.0/", any(tempauth::get_auth))
        .route("/info", any(info::get_info))
        .route("/v1/{*path}", any(dispatch))
        .layer(middleware::from_fn(trans_id))
}

/// Copies the request id onto the response as Swift's `X-Trans-Id` (and `X-Openstack-Request-Id`).
async fn trans_id(request: Request, next: Next) -> Response {
    let id = request.headers().get("x-request-id").cloned();
    let mut response = next.run(request).await;
    if let Some(id) = id {
        let headers = response.headers_mut();
        headers.insert(HeaderName::from_static("x-trans-id"), id.clone());
        headers.insert(HeaderName::from_static("x-openstack-request-id"), id);
    }
    response
}

async fn dispatch(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    route(&state, method, &uri, query.as_deref(), &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn route(
    state: &AppState,
    method: Method,
    uri: &Uri,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let raw = uri.path().strip_prefix("/v1/").unwrap_or_default();
    let path = names::split_path(raw)?;
    authorize(state, headers, &path.account)?;
    names::check_account(&path.account)?;
    let account = path.account.as_str();
    match (path.container.as_deref(), path.object.as_deref()) {
        (None, _) => match method {
            Method::HEAD => account::head_account(state, account).await,
            Method::GET => account::get_account(state, account, query, headers).await,
            Method::POST => account::post_account(state, account, headers).await,
            _ => Err(ApiError::method_not_allowed("GET, HEAD, POST")),
        },
        (Some(container), None) => {
            names::check_container(container)?;
            match method {
                Method::PUT => container::put_container(state, account, container, headers).await,
                Method::HEAD => container::head_container(state, account, container).await,
                Method::GET => {
                    container::get_container(state, account, container, query, headers).await
                }
                Method::POST => container::post_container(state, account, container, headers).await,
                Method::DELETE => container::delete_container(state, account, container).await,
                _ => Err(ApiError::method_not_allowed("DELETE, GET, HEAD, POST, PUT")),
            }
        }
        (Some(container), Some(object)) => {
            // Unknown query parameters (`symlink=get`, `multipart-manifest=...`) are ignored.
            let obj = object::ObjectRef {
                account,
                container,
                object,
            };
            match method {
                Method::PUT => object::put_object(state, obj, headers, body).await,
                Method::GET => object::get_object(state, obj, headers).await,
                Method::HEAD => object::head_object(state, obj, headers).await,
                Method::POST => object::post_object(state, obj, headers).await,
                Method::DELETE => object::delete_object(state, obj).await,
                _ if method.as_str() == "COPY" => copy::copy_object(state, obj, headers).await,
                _ => Err(ApiError::method_not_allowed(
                    "COPY, DELETE, GET, HEAD, POST, PUT",
                )),
            }
        }
    }
}
