//! What every API refuses in a name a client chooses (a Pacifica id, a Swift account, container or
//! object): control characters. A newline, carriage return, tab, NUL or DEL in a file name breaks
//! listings, scripts and log lines, and no real client needs one.

use crate::error::ApiError;

/// Refuses `name` (400, naming `what` and the character) when it holds a control character.
pub fn refuse_control_characters(what: &str, name: &str) -> Result<(), ApiError> {
    match name.chars().find(|c| c.is_control()) {
        None => Ok(()),
        Some(c) => Err(ApiError::bad_request(format!(
            "Invalid {what} {name:?}: control character {c:?} is not allowed"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused() {
        for name in ["a\nb", "a\rb", "a\0b", "a\tb", "a\u{7f}b", "a\u{85}b"] {
            let err = refuse_control_characters("id", name).unwrap_err();
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST, "{name:?}");
        }
        for name in ["plain", "with space", "ünïcödé", "a-b_c.d"] {
            assert!(refuse_control_characters("id", name).is_ok(), "{name:?}");
        }
    }
}
