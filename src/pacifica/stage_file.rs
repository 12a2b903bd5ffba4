//! `POST /{id}`: stage a file (bring it to disk). Answers as soon as the request is accepted; clients
//! poll HEAD until the media is `disk`. Any body is ignored, with or without Content-Length.

use super::json_response;
use crate::error::ApiResult;
use crate::AppState;
use archive_core::Key;
use axum::http::StatusCode;
use axum::response::Response;

#[derive(serde::Serialize)]
struct Staged<'a> {
    message: &'static str,
    file: &'a str,
}

pub(super) async fn stage_file(state: &AppState, key: &Key, id: &str) -> ApiResult<Response> {
    state.stage(key).await?;
    Ok(json_response(
        StatusCode::OK,
        &Staged {
            message: "File was staged",
            file: id,
        },
    ))
}
