//! Which bytes a GET wants: the reference's `?byte_range=S-E` (E exclusive, parsed like Python `int()`)
//! or an HTTP `Range: bytes=...` header (one range; anything else is ignored as RFC 9110 allows).

use crate::error::{ApiError, ApiResult};
use archive_core::ReadRange;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the client asked for and how to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wanted {
    /// The whole file, 200.
    All,
    /// `?byte_range=`: 200 with the clamped range (the reference's behaviour).
    ByteRange(ReadRange),
    /// `Range:` header: 206 with Content-Range, or 416 when it starts past the end.
    Http(ReadRange),
}

impl Wanted {
    pub(super) fn read_range(self) -> ReadRange {
        match self {
            Wanted::All => ReadRange::All,
            Wanted::ByteRange(r) | Wanted::Http(r) => r,
        }
    }
}

/// `S-E`: exactly two integers (so neither can be negative: `-` is the separator).
pub(super) fn parse_byte_range(raw: &str) -> ApiResult<ReadRange> {
    let bad = || ApiError::bad_request(format!("Invalid byte range format (int-int) given {raw}"));
    let parts: Vec<&str> = raw.split('-').collect();
    let [start, end] = parts[..] else {
        return Err(bad());
    };
    let number = |s: &str| match archive_core::parse_id(s) {
        Ok(v) if v >= 0 => u64::try_from(v).map_err(|_| bad()),
        _ => Err(bad()),
    };
    Ok(ReadRange::From {
        start: number(start)?,
        end: Some(number(end)?),
    })
}

/// One `bytes=` range, or `None` when the header is absent, malformed or asks for several ranges.
/// The unit is matched without regard to case (RFC 9110 section 14.1); a position too large for 64
/// bits is the largest one (so an end past any file is clamped to the file, not ignored).
pub(crate) fn parse_range_header(raw: &str) -> Option<ReadRange> {
    let raw = raw.trim();
    let (unit, spec) = raw.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let spec = spec.trim();
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().unwrap_or(u64::MAX))
    };
    match (start.is_empty(), end.is_empty()) {
        (true, false) => Some(ReadRange::Last(number(end)?)),
        (false, true) => Some(ReadRange::From {
            start: number(start)?,
            end: None,
        }),
        (false, false) => {
            let (s, e) = (number(start)?, number(end)?);
            (s <= e).then_some(ReadRange::From {
                start: s,
                end: Some(e.saturating_add(1)),
            })
        }
        (true, true) => None,
    }
}

/// Whether `Range` applies under the request's `If-Range` (RFC 9110 section 13.1.5): always without
/// one; with one, only when it names the file's current ETag (strong comparison) or its
/// Last-Modified date exactly. Otherwise the whole file is sent, so a client resuming a download
/// never splices bytes of two different versions.
pub(crate) fn if_range_allows(if_range: Option<&str>, etag: &str, mtime: SystemTime) -> bool {
    let Some(validator) = if_range.map(str::trim) else {
        return true;
    };
    if validator.starts_with('"') {
        return validator == etag;
    }
    if validator.starts_with("W/") {
        return false;
    }
    let whole_seconds = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).ok();
    match httpdate::parse_http_date(validator) {
        Ok(date) => whole_seconds(date).is_some() && whole_seconds(date) == whole_seconds(mtime),
        Err(_) => false,
    }
}

/// Whether an HTTP range can be served from a file of `size` bytes (RFC 9110 section 14.1.1).
pub(crate) fn satisfiable(range: ReadRange, size: u64) -> bool {
    match range {
        ReadRange::All => true,
        ReadRange::From { start, .. } => start < size,
        ReadRange::Last(n) => n > 0 && size > 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_range_like_the_reference() {
        assert_eq!(
            parse_byte_range("1-3").unwrap(),
            ReadRange::From {
                start: 1,
                end: Some(3)
            }
        );
        assert_eq!(
            parse_byte_range("5-2").unwrap(),
            ReadRange::From {
                start: 5,
                end: Some(2)
            }
        );
        assert_eq!(
            parse_byte_range(" 1 - 2_0").unwrap(),
            ReadRange::From {
                start: 1,
                end: Some(20)
            }
        );
        for bad in ["blah", "1-", "-", "1-2-3", "a-b", "", "-1-5", "0--1"] {
            assert!(parse_byte_range(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn range_headers() {
        assert_eq!(
            parse_range_header("bytes=1-1"),
            Some(ReadRange::From {
                start: 1,
                end: Some(2)
            })
        );
        assert_eq!(
            parse_range_header("bytes=10-"),
            Some(ReadRange::From {
                start: 10,
                end: None
            })
        );
        assert_eq!(parse_range_header("bytes=-5"), Some(ReadRange::Last(5)));
        assert_eq!(
            parse_range_header("Bytes = 2-3"),
            Some(ReadRange::From {
                start: 2,
                end: Some(4)
            })
        );
        assert_eq!(
            parse_range_header("BYTES=0-99999999999999999999999"),
            Some(ReadRange::From {
                start: 0,
                end: Some(u64::MAX)
            })
        );
        assert_eq!(
            parse_range_header("bytes=-99999999999999999999999"),
            Some(ReadRange::Last(u64::MAX))
        );
        for ignored in [
            "bytes=5-1",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=-",
            "bytes=a-b",
        ] {
            assert_eq!(parse_range_header(ignored), None, "{ignored:?}");
        }
        assert!(!satisfiable(
            ReadRange::From {
                start: 3,
                end: None
            },
            3
        ));
        assert!(satisfiable(
            ReadRange::From {
                start: 2,
                end: None
            },
            3
        ));
        assert!(!satisfiable(ReadRange::Last(0), 3));
    }

    #[test]
    fn if_range_needs_the_current_validator() {
        let mtime = UNIX_EPOCH + std::time::Duration::from_millis(784_111_777_250);
        let etag = "\"abc-1\"";
        assert!(if_range_allows(None, etag, mtime));
        assert!(if_range_allows(Some("\"abc-1\""), etag, mtime));
        assert!(!if_range_allows(Some("\"abc-2\""), etag, mtime));
        assert!(!if_range_allows(Some("W/\"abc-1\""), etag, mtime));
        assert!(if_range_allows(
            Some("Sun, 06 Nov 1994 08:49:37 GMT"),
            etag,
            mtime
        ));
        assert!(!if_range_allows(
            Some("Sun, 06 Nov 1994 08:49:38 GMT"),
            etag,
            mtime
        ));
        assert!(!if_range_allows(Some("garbage"), etag, mtime));
    }
}
