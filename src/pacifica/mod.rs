//! The Pacifica Archive Interface files API: `/` and `/{id}` with GET, HEAD, PUT, POST (stage),
//! PATCH (move in) and DELETE. One file per operation; this file owns routing, method dispatch and the
//! checks every operation shares (id, query string).

mod delete_file;
mod file_id;
mod get_file;
mod head_file;
pub mod headers;
mod move_file;
mod put_file;
pub(crate) mod range;
mod stage_file;

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;

pub use file_id::key_for_id;

/// Methods of `/{id}`, for `Allow`.
const FILE_METHODS: &str = "DELETE, GET, HEAD, PATCH, POST, PUT";

/// The routes of the files API.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", any(root))
        .route("/{id}", any(file))
        .route("/{id}/", any(file))
}

/// `GET /`: the liveness message the reference prints.
async fn root(method: Method) -> Response {
    match method {
        Method::GET | Method::HEAD => json_response(
            axum::http::StatusCode::OK,
            &serde_json::json!({"message": "Pacifica Archive Interface Up and Running"}),
        ),
        _ => ApiError::method_not_allowed("GET, HEAD").into_response(),
    }
}

/// A JSON body in Python's `json.dumps` format.
pub(crate) fn json_response<T: serde::Serialize>(
    status: axum::http::StatusCode,
    body: &T,
) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::pyjson::dumps(body),
    )
        .into_response()
}

/// Query parameters of a request, checked against what the method accepts.
fn query_params(raw: Option<&str>, allowed: &[&str]) -> ApiResult<Vec<(String, String)>> {
    let params: Vec<(String, String)> = raw
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let unexpected: Vec<&str> = params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !allowed.contains(k))
        .collect();
    if unexpected.is_empty() {
        Ok(params)
    } else {
        Err(ApiError::bad_request(format!(
            "Unexpected query string parameters: {}",
            unexpected.join(", ")
        )))
    }
}

async fn file(
    State(state): State<AppState>,
    method: Method,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let Path(id) = id.map_err(|e| ApiError::bad_request(format!("Invalid file id: {e}")))?;
        let allowed: &[&str] = if method == Method::GET {
            &["byte_range"]
        } else {
            &[]
        };
        let params = query_params(query.as_deref(), allowed)?;
        if !matches!(
            method,
            Method::GET
                | Method::HEAD
                | Method::PUT
                | Method::POST
                | Method::PATCH
                | Method::DELETE
        ) {
            return Err(ApiError::method_not_allowed(FILE_METHODS));
        }
        let key = key_for_id(&id, state.settings.use_id2filename)?;
        match method {
            Method::GET => get_file::get_file(&state, &key, &params, &headers).await,
            Method::HEAD => head_file::head_file(&state, &key).await,
            Method::PUT => put_file::put_file(&state, &key, &headers, body).await,
            Method::POST => stage_file::stage_file(&state, &key, &id).await,
            Method::PATCH => move_file::move_file(&state, &key, &headers, body).await,
            _ => delete_file::delete_file(&state, &key).await,
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
