//! Conditional GET and HEAD of objects: `If-Match`, `If-None-Match`, `If-Modified-Since` and
//! `If-Unmodified-Since` against the object's `ETag` and `Last-Modified`, in the order of RFC 9110
//! section 13.2.2 (as Swift answers them): a failed `If-Match` (or, without one, a failed
//! `If-Unmodified-Since`) is 412; a matching `If-None-Match` (or, without one, an
//! `If-Modified-Since` the object is not newer than) is 304 with the object's headers.
//!
//! Only the object's record is needed, never its data, so an object on tape answers 304 without a
//! recall (`swift download --skip-identical` and caches rely on it).

use super::checksum::normalise_etag;
use super::metadata::header_text;
use crate::error::{ApiError, ApiResult};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the answer is compared against.
#[derive(Debug, Clone, Copy)]
pub(super) struct Validators<'a> {
    /// The `ETag` sent (quoted or not); empty when the object has none.
    pub(super) etag: &'a str,
    /// The object's timestamp, in nanoseconds since the epoch (sent rounded up to whole seconds).
    pub(super) timestamp_ns: u64,
}

impl Validators<'_> {
    /// `Last-Modified` as sent: the timestamp rounded up to the second, as Swift does.
    fn last_modified(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.timestamp_ns.div_ceil(1_000_000_000))
    }

    /// Whether a list of entity tags (`*`, `"a", W/"b"`) names this object.
    fn listed_in(&self, value: &HeaderValue) -> bool {
        let own = normalise_etag(self.etag);
        header_text(value).split(',').any(|tag| {
            let tag = normalise_etag(tag.trim().trim_start_matches("W/"));
            tag == "*" || (!own.is_empty() && tag == own)
        })
    }
}

/// The request's preconditions against `object`: `Ok(None)` to answer normally, `Ok(Some(304))`
/// carrying `headers_304()`, or a 412 error naming the header that failed.
pub(super) fn evaluate(
    request: &HeaderMap,
    object: Validators<'_>,
    headers_304: impl FnOnce() -> HeaderMap,
) -> ApiResult<Option<Response>> {
    let failed = |why: &str| {
        Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            why.to_string(),
        ))
    };
    match request.get(header::IF_MATCH) {
        Some(value) if !object.listed_in(value) => {
            return failed("If-Match does not match the object's ETag");
        }
        Some(_) => {}
        None => {
            if date(request, header::IF_UNMODIFIED_SINCE)
                .is_some_and(|since| object.last_modified() > since)
            {
                return failed("The object was modified after the If-Unmodified-Since date");
            }
        }
    }
    let not_modified = match request.get(header::IF_NONE_MATCH) {
        Some(value) => object.listed_in(value),
        None => date(request, header::IF_MODIFIED_SINCE)
            .is_some_and(|since| object.last_modified() <= since),
    };
    Ok(not_modified.then(|| (StatusCode::NOT_MODIFIED, headers_304()).into_response()))
}

/// An HTTP date header; one that is not a valid HTTP date is ignored, as RFC 9110 says.
fn date(request: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    httpdate::parse_http_date(request.get(name)?.to_str().ok()?.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETAG: &str = "0123456789abcdef0123456789abcdef";
    /// 1994-11-06 08:49:37 UTC plus a fraction: sent as 08:49:38.
    const STAMP_NS: u64 = 784_111_777_250_000_000;

    fn outcome(pairs: &[(&str, &str)]) -> u16 {
        let mut request = HeaderMap::new();
        for (name, value) in pairs {
            request.insert(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let object = Validators {
            etag: ETAG,
            timestamp_ns: STAMP_NS,
        };
        match evaluate(&request, object, HeaderMap::new) {
            Ok(None) => 200,
            Ok(Some(response)) => response.status().as_u16(),
            Err(e) => e.status.as_u16(),
        }
    }

    #[test]
    fn dates_compare_with_the_last_modified_that_was_sent() {
        let sent = "Sun, 06 Nov 1994 08:49:38 GMT";
        let before = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(outcome(&[("if-modified-since", sent)]), 304);
        assert_eq!(outcome(&[("if-modified-since", before)]), 200);
        assert_eq!(outcome(&[("if-unmodified-since", sent)]), 200);
        assert_eq!(outcome(&[("if-unmodified-since", before)]), 412);
        // RFC 850 and asctime dates count; anything else is ignored.
        assert_eq!(
            outcome(&[("if-modified-since", "Sunday, 06-Nov-94 08:49:38 GMT")]),
            304
        );
        assert_eq!(
            outcome(&[("if-unmodified-since", "Sun Nov  6 08:49:37 1994")]),
            412
        );
        assert_eq!(outcome(&[("if-modified-since", "yesterday")]), 200);
        assert_eq!(outcome(&[("if-unmodified-since", "yesterday")]), 200);
    }

    #[test]
    fn etag_conditions_take_precedence_over_dates() {
        let later = "Mon, 07 Nov 1994 00:00:00 GMT";
        let earlier = "Sat, 05 Nov 1994 00:00:00 GMT";
        // If-None-Match decides alone: a mismatch is a full answer even if the date says 304.
        assert_eq!(
            outcome(&[("if-none-match", "\"other\""), ("if-modified-since", later)]),
            200
        );
        assert_eq!(
            outcome(&[
                ("if-none-match", &format!("W/\"{ETAG}\"")),
                ("if-modified-since", earlier)
            ]),
            304
        );
        // A matching If-Match makes If-Unmodified-Since irrelevant.
        assert_eq!(
            outcome(&[("if-match", ETAG), ("if-unmodified-since", earlier)]),
            200
        );
        assert_eq!(outcome(&[("if-match", "\"other\", \"more\"")]), 412);
        assert_eq!(outcome(&[("if-match", "*")]), 200);
        // 412 wins over 304.
        assert_eq!(
            outcome(&[("if-unmodified-since", earlier), ("if-none-match", "*")]),
            412
        );
    }
}
