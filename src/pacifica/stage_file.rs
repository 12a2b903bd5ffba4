//! `POST /{id}`: stage a file (bring it to disk). Answers as soon as the request is accepted; clients
//! poll HEAD until the media is `disk`. Any body is ignored, with or without Content-Length.
//! A missing file is a 500, as the reference answers: pacifica-cartd takes only a 500 as a failed stage
//! (on a 404 it polls HEAD for ever and the cart never leaves "staging").

use super::json_response;
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use archive_core::Key;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;

#[derive(serde::Serialize)]
struct Staged<'a> {
    message: &'static str,
    file: &'a str,
}

pub(super) async fn stage_file(state: &AppState, key: &Key, id: &str) -> ApiResult<Response> {
    match state.stage(key).await {
        Err(archive_core::Error::NotFound { .. }) => {
            return Ok(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Can't stage file {id}: no such file in the archive ({key})"),
            )
            .into_response())
        }
        other => other?,
    }
    Ok(json_response(
        StatusCode::OK,
        &Staged {
            message: "File was staged",
            file: id,
        },
    ))
}
