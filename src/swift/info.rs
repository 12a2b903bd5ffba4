//! `GET /info`: the cluster's capabilities, as Swift reports them. No `slo` (python-swiftclient then
//! uploads large objects as DLO manifests it does not need here); no authentication needed.

use super::listing::LISTING_LIMIT;
use super::metadata::{MAX_META_COUNT, MAX_META_NAME, MAX_META_OVERALL, MAX_META_VALUE};
use super::names::{MAX_ACCOUNT_NAME, MAX_CONTAINER_NAME, MAX_OBJECT_NAME};
use crate::error::ApiError;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// The capabilities document.
pub fn capabilities() -> serde_json::Value {
    serde_json::json!({
        "swift": {
            "version": env!("CARGO_PKG_VERSION"),
            "account_listing_limit": LISTING_LIMIT,
            "container_listing_limit": LISTING_LIMIT,
            "max_account_name_length": MAX_ACCOUNT_NAME,
            "max_container_name_length": MAX_CONTAINER_NAME,
            "max_object_name_length": MAX_OBJECT_NAME,
            "max_meta_name_length": MAX_META_NAME,
            "max_meta_value_length": MAX_META_VALUE,
            "max_meta_count": MAX_META_COUNT,
            "max_meta_overall_size": MAX_META_OVERALL,
            "max_header_size": 8192,
            "extra_header_count": 0,
            "allow_account_management": false,
            "account_autocreate": true,
            "strict_cors_mode": true,
            "policies": [{"name": "Policy-0", "aliases": "Policy-0", "default": true}],
        },
        "tempauth": {"account_acls": false},
    })
}

/// `GET /info`.
pub(super) async fn get_info(method: Method) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::method_not_allowed("GET, HEAD").into_response();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        crate::pyjson::dumps(&capabilities()),
    )
        .into_response()
}
