//! What Swift keeps in its databases (the rows of the Swift index, see [`super::index`]): an object's
//! content type, ETag, timestamps, user metadata and the identity of its data; a container's and an
//! account's metadata. Also reading the JSON records earlier versions kept, the metadata headers
//! (`X-Object-Meta-*`, ...) with Swift's limits, and Swift's timestamp formats.

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use archive_core::{Error as BackendError, FileStatus, Key};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Swift's metadata limits (`/info` reports them).
pub(super) const MAX_META_NAME: usize = 128;
pub(super) const MAX_META_VALUE: usize = 256;
pub(super) const MAX_META_COUNT: usize = 90;
pub(super) const MAX_META_OVERALL: usize = 4096;
/// A metadata record larger than this is not ours.
const MAX_RECORD: usize = 1 << 20;

/// Nanoseconds since the epoch.
pub(super) fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
fn time_of(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// The modification time to give newly written data: now, at microsecond precision (what every
/// backend keeps at least), and later than the previous one this process handed out, so the time
/// identifies the write even when writes of one object race.
pub(super) fn unique_write_time() -> SystemTime {
    static LAST_MICROS: AtomicU64 = AtomicU64::new(0);
    let now = nanos(SystemTime::now()) / 1_000;
    let mut last = LAST_MICROS.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST_MICROS.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return UNIX_EPOCH + Duration::from_micros(next),
            Err(seen) => last = seen,
        }
    }
}

/// `X-Timestamp`: seconds with five decimals, as Swift prints them (`1700000000.12345`).
pub(super) fn x_timestamp(ns: u64) -> String {
    format!(
        "{:010}.{:05}",
        ns / 1_000_000_000,
        (ns % 1_000_000_000) / 10_000
    )
}

/// `Last-Modified`: the HTTP date of the timestamp rounded up to the second, as Swift does.
pub(super) fn last_modified(ns: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(ns.div_ceil(1_000_000_000)))
}

/// `last_modified` in listings: ISO 8601 with microseconds and no zone (`2024-01-02T03:04:05.123456`).
pub(super) fn iso_timestamp(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let micros = (ns % 1_000_000_000) / 1_000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An object's record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct ObjectMeta {
    /// The object name (the record's key only carries its hash).
    pub(super) name: String,
    /// MD5 of the content, lower-case hex.
    pub(super) etag: String,
    pub(super) content_type: String,
    pub(super) size: u64,
    /// The modification time given to the data when it was written: a record whose data has been
    /// replaced since (a crash or a concurrent PUT between data and record) no longer matches.
    pub(super) data_mtime_ns: u64,
    /// Time of the last PUT or POST (`X-Timestamp`, `Last-Modified`).
    pub(super) timestamp_ns: u64,
    /// Headers kept with the object: `X-Object-Meta-*`, `Content-Disposition`, `Content-Encoding`.
    pub(super) headers: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// Whether this record describes the data whose status is `status`. Backends keep mtimes with
    /// different precision, so the recorded time matches when equal after truncation to the
    /// backend's resolution (ns, us, ms or s).
    pub(super) fn describes(&self, status: &FileStatus) -> bool {
        self.size == status.size && self.same_write(status)
    }

    /// Whether the data whose status is `status` was written with this record's modification time
    /// (see [`unique_write_time`]: no two writes of this process share one).
    pub(super) fn same_write(&self, status: &FileStatus) -> bool {
        let stored = nanos(status.mtime);
        [1, 1_000, 1_000_000, 1_000_000_000]
            .iter()
            .any(|unit| stored == self.data_mtime_ns / unit * unit)
    }

    /// What can be said about an object whose record is missing or stale: size and times from the
    /// backend, the content type from the name, no ETag.
    pub(super) fn fallback(name: &str, status: &FileStatus) -> Self {
        let ns = nanos(status.mtime);
        ObjectMeta {
            name: name.to_string(),
            etag: String::new(),
            content_type: guess_content_type(name).to_string(),
            size: status.size,
            data_mtime_ns: ns,
            timestamp_ns: ns,
            headers: BTreeMap::new(),
        }
    }
}

/// An account's record (only written once the account has metadata).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub(super) struct AccountMeta {
    /// `X-Account-Meta-*`.
    pub(super) headers: BTreeMap<String, String>,
}

/// A container's record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub(super) struct ContainerMeta {
    /// Creation time.
    pub(super) created_ns: u64,
    /// `X-Container-Meta-*`, `X-Container-Read`, `X-Container-Write` (stored, not enforced).
    pub(super) headers: BTreeMap<String, String>,
}

/// Reads a JSON record; `Ok(None)` when there is none.
pub(super) async fn read_record<T: serde::de::DeserializeOwned>(
    state: &AppState,
    key: &Key,
) -> ApiResult<Option<T>> {
    let got = match state.backend.get(key, archive_core::ReadRange::All).await {
        Ok(got) => got,
        Err(BackendError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if got.status.size > MAX_RECORD as u64 {
        return Err(internal(format!("metadata record {key} is too large")));
    }
    let mut data = Vec::with_capacity(got.status.size as usize);
    let mut stream = got.stream;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| internal(format!("reading metadata record {key}: {e}")))?;
        data.extend_from_slice(&chunk);
        if data.len() > MAX_RECORD {
            return Err(internal(format!("metadata record {key} is too large")));
        }
    }
    serde_json::from_slice(&data)
        .map(Some)
        .map_err(|e| internal(format!("metadata record {key} is corrupt: {e}")))
}

fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
}

/// `x-object-meta-mtime` -> `X-Object-Meta-Mtime`.
pub(super) fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// A header value as text; Swift accepts UTF-8 in metadata values.
pub(super) fn header_text(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).trim().to_string()
}

/// The `<prefix>*` headers of a request (`prefix` lower-case, e.g. `x-object-meta-`), title-cased,
/// checked against Swift's limits. Empty values are returned too: they mean "remove" on POST.
pub(super) fn user_metadata(
    headers: &HeaderMap,
    prefix: &str,
) -> ApiResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut overall = 0;
    for (name, value) in headers {
        let Some(suffix) = name.as_str().strip_prefix(prefix) else {
            continue;
        };
        if suffix.is_empty() {
            return Err(ApiError::bad_request("Metadata name cannot be empty"));
        }
        if suffix.len() > MAX_META_NAME {
            return Err(ApiError::bad_request(format!(
                "Metadata name too long; max {MAX_META_NAME}"
            )));
        }
        let value = header_text(value);
        if value.len() > MAX_META_VALUE {
            return Err(ApiError::bad_request(format!(
                "Metadata value longer than {MAX_META_VALUE}"
            )));
        }
        overall += suffix.len() + value.len();
        out.insert(title_case(name.as_str()), value);
    }
    if out.len() > MAX_META_COUNT {
        return Err(ApiError::bad_request(format!(
            "Too many metadata items; max {MAX_META_COUNT}"
        )));
    }
    if overall > MAX_META_OVERALL {
        return Err(ApiError::bad_request(format!(
            "Total metadata too large; max {MAX_META_OVERALL}"
        )));
    }
    Ok(out)
}

/// Applies a POST/PUT's `X-<Kind>-Meta-*` (an empty value removes) and `X-Remove-<Kind>-Meta-*`
/// headers to stored metadata (`kind` lower-case: `account`, `container`), within Swift's limits.
pub(super) fn apply_user_metadata(
    stored: &mut BTreeMap<String, String>,
    request: &HeaderMap,
    kind: &str,
) -> ApiResult<()> {
    let set = format!("x-{kind}-meta-");
    let remove = format!("x-remove-{kind}-meta-");
    for (name, value) in user_metadata(request, &set)? {
        if value.is_empty() {
            stored.remove(&name);
        } else {
            stored.insert(name, value);
        }
    }
    for name in user_metadata(request, &remove)?.into_keys() {
        stored.remove(&title_case(&format!("{set}{}", &name[remove.len()..])));
    }
    let prefix = title_case(&set);
    let user: Vec<(&String, &String)> = stored
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .collect();
    if user.len() > MAX_META_COUNT {
        return Err(ApiError::bad_request(format!(
            "Too many metadata items; max {MAX_META_COUNT}"
        )));
    }
    let overall: usize = user
        .iter()
        .map(|(k, v)| k.len() - prefix.len() + v.len())
        .sum();
    if overall > MAX_META_OVERALL {
        return Err(ApiError::bad_request(format!(
            "Total metadata too large; max {MAX_META_OVERALL}"
        )));
    }
    Ok(())
}

/// Adds stored headers to a response (values that cannot be header values are skipped).
pub(super) fn put_headers(out: &mut HeaderMap, stored: &BTreeMap<String, String>) {
    for (name, value) in stored {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.insert(name, value);
        }
    }
}

/// The content type Swift would guess from an object name's extension.
pub(super) fn guess_content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit('/')
        .next()
        .and_then(|file| file.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "text" | "log" => "text/plain",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "csv" => "text/csv",
        "md" => "text/markdown",
        "xml" => "application/xml",
        "json" => "application/json",
        "js" => "text/javascript",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "bz2" => "application/x-bzip2",
        "xz" => "application/x-xz",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "tif" | "tiff" => "image/tiff",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        "h5" | "hdf5" => "application/x-hdf5",
        "nc" => "application/x-netcdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_formats() {
        let ns = 1_700_000_000_123_456_789;
        assert_eq!(x_timestamp(ns), "1700000000.12345");
        assert_eq!(iso_timestamp(ns), "2023-11-14T22:13:20.123456");
        assert_eq!(iso_timestamp(0), "1970-01-01T00:00:00.000000");
        assert_eq!(
            iso_timestamp(951_782_400 * 1_000_000_000),
            "2000-02-29T00:00:00.000000"
        );
        assert_eq!(last_modified(ns), "Tue, 14 Nov 2023 22:13:21 GMT");
        assert_eq!(
            last_modified(1_000_000_000),
            "Thu, 01 Jan 1970 00:00:01 GMT"
        );
    }

    #[test]
    fn metadata_headers_and_limits() {
        let mut h = HeaderMap::new();
        h.insert("x-object-meta-mtime", HeaderValue::from_static("123.5"));
        h.insert("x-object-meta-color", HeaderValue::from_static(""));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        let m = user_metadata(&h, "x-object-meta-").unwrap();
        assert_eq!(
            m.get("X-Object-Meta-Mtime").map(String::as_str),
            Some("123.5")
        );
        assert_eq!(m.get("X-Object-Meta-Color").map(String::as_str), Some(""));
        assert_eq!(m.len(), 2);
        h.insert(
            "x-object-meta-big",
            HeaderValue::from_str(&"v".repeat(257)).unwrap(),
        );
        assert!(user_metadata(&h, "x-object-meta-").is_err());
        let mut h = HeaderMap::new();
        let long = format!("x-object-meta-{}", "n".repeat(129));
        h.insert(
            HeaderName::from_bytes(long.as_bytes()).unwrap(),
            HeaderValue::from_static("v"),
        );
        assert!(user_metadata(&h, "x-object-meta-").is_err());
    }

    #[test]
    fn records_match_their_data_at_any_mtime_precision() {
        let status = |ns: u64, size| FileStatus {
            size,
            mtime: time_of(ns),
            ctime: time_of(ns),
            state: archive_core::HsmState::Resident,
            bytes_per_level: vec![size],
            location: String::new(),
        };
        let mut meta = ObjectMeta::fallback("a.txt", &status(0, 3));
        assert_eq!(meta.content_type, "text/plain");
        meta.data_mtime_ns = 1_700_000_000_123_456_789;
        assert!(meta.describes(&status(1_700_000_000_123_456_789, 3)));
        assert!(meta.describes(&status(1_700_000_000_123_456_000, 3)));
        assert!(meta.describes(&status(1_700_000_000_000_000_000, 3)));
        assert!(!meta.describes(&status(1_700_000_000_123_456_789, 4)));
        assert!(!meta.describes(&status(1_700_000_001_000_000_000, 3)));
        assert_eq!(title_case("x-object-meta-mtime"), "X-Object-Meta-Mtime");
        assert_eq!(guess_content_type("dir.d/file"), "application/octet-stream");
    }
}
