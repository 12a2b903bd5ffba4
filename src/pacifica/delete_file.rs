//! `DELETE /{id}`: remove a file; 200 with an empty body as the reference answers.

use crate::error::ApiResult;
use crate::AppState;
use archive_core::Key;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

pub(super) async fn delete_file(state: &AppState, key: &Key) -> ApiResult<Response> {
    state.backend.delete(key).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "",
    )
        .into_response())
}
