//! `PATCH /{id}` with `{"path": "/abs/source"}`: move a server-side file into the archive under the id
//! (what pacifica-ingest does). Only files under the configured `patch_source_dirs` may be moved in;
//! anything else (a path with `..` included) is refused with 403 and left where it is. The backend then
//! opens the source without following any symlink and moves in what it checked (see `archive-posix`).

use super::json_response;
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use archive_core::Key;
use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use std::path::{Path, PathBuf};

/// Largest PATCH document read (it only carries a path).
const MAX_DOCUMENT: usize = 64 * 1024;

#[derive(serde::Serialize)]
struct Moved {
    message: &'static str,
}

pub(super) async fn move_file(
    state: &AppState,
    key: &Key,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" && mime != "text/javascript" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected an entity of content type application/json, text/javascript",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_DOCUMENT)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("PATCH document unreadable or over {MAX_DOCUMENT} bytes: {e}"),
            )
        })?;
    let document: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON document: {e}")))?;
    let source = document
        .get("path")
        .and_then(|p| p.as_str())
        .ok_or_else(|| {
            ApiError::bad_request(
                "Invalid JSON document: expected an object with a string \"path\"",
            )
        })?;
    let source = allowed_source(Path::new(source), &state.settings.patch_source_dirs).await?;
    state
        .backend
        .adopt(key, &source, state.settings.allow_overwrite)
        .await?;
    tracing::info!(key = %key, source = %source.display(), "file moved in");
    Ok(json_response(
        StatusCode::OK,
        &Moved {
            message: "File Moved Successfully",
        },
    ))
}

/// The source with its directory resolved (symlinks included), if it lies under an allowed directory.
/// The backend resolves the result again without following any symlink, so a directory swapped for a
/// symlink after this check makes the move fail instead of reaching outside.
async fn allowed_source(source: &Path, allowed: &[PathBuf]) -> ApiResult<PathBuf> {
    let forbidden = |why: &str| {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("Can't move {} into the archive: {why}", source.display()),
        ))
    };
    if allowed.is_empty() {
        return forbidden("moving server-side files in is disabled (configure patch_source_dirs)");
    }
    if !source.is_absolute() {
        return Err(ApiError::bad_request(format!(
            "\"path\" must be absolute, got {}",
            source.display()
        )));
    }
    // `..` is refused outright, wherever it would lead: no resolving it against a tree that can change.
    if source
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return forbidden("paths with \"..\" are not accepted");
    }
    let (Some(dir), Some(name)) = (source.parent(), source.file_name()) else {
        return forbidden("not a file path");
    };
    let resolved_dir = match tokio::fs::canonicalize(dir).await {
        Ok(d) => d,
        // A missing directory under an allowed root is a 404; elsewhere the same 403 as any outside path.
        Err(_) if allowed.iter().any(|a| dir.starts_with(a)) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("No such file: {}", source.display()),
            ))
        }
        Err(_) => {
            return forbidden("it is outside the directories configured in patch_source_dirs")
        }
    };
    if !allowed.iter().any(|a| resolved_dir.starts_with(a)) {
        return forbidden("it is outside the directories configured in patch_source_dirs");
    }
    Ok(resolved_dir.join(name))
}
