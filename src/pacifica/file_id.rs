//! From the `{id}` path segment to a backend [`Key`]: refuses anything that could name a path outside
//! the archive (`/` from `%2F`, `..`, absolute paths, hidden names), control characters (NUL, newline,
//! ...) and, with `use_id2filename`, anything that is not an integer in -2^63 ..= 2^64-1.

use crate::error::ApiError;
use archive_core::{id2filename, parse_id, Key};

/// Maps a percent-decoded id to its key.
pub fn key_for_id(id: &str, use_id2filename: bool) -> Result<Key, ApiError> {
    let refuse = |why: String| {
        Err(ApiError::bad_request(format!(
            "Invalid file id {id:?}: {why}"
        )))
    };
    crate::name_check::refuse_control_characters("file id", id)?;
    if id.contains('/') {
        return refuse("'/' (or %2F) is not allowed in an id".into());
    }
    if id.starts_with('.') {
        return refuse("ids may not start with '.'".into());
    }
    if use_id2filename {
        let number = match parse_id(id) {
            Ok(n) => n,
            Err(e) => return refuse(e.to_string()),
        };
        let path = id2filename(number);
        return Key::new(path.trim_start_matches('/')).map_err(ApiError::from);
    }
    Key::new(id).map_err(ApiError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn ids_map_to_keys() {
        assert_eq!(key_for_id("12345", true).unwrap().as_str(), "39/3039");
        assert_eq!(key_for_id("007", true).unwrap().as_str(), "file.7");
        assert_eq!(key_for_id("-1", true).unwrap().as_str(), "file.-1");
        assert_eq!(key_for_id("12345", false).unwrap().as_str(), "12345");
        assert_eq!(key_for_id("abc", false).unwrap().as_str(), "abc");
    }

    #[test]
    fn escapes_are_bad_requests() {
        for (id, id2f) in [
            ("../x", false),
            ("..", false),
            ("/etc/passwd", false),
            ("a/b", false),
            ("a\0b", false),
            (".hidden", false),
            ("", false),
            ("abc", true),
            ("1.5", true),
            ("18446744073709551616", true),
        ] {
            let err = key_for_id(id, id2f).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{id:?}");
        }
    }
}
