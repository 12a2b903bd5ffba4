//! Account and container listings: the query parameters (`marker`, `end_marker`, `prefix`,
//! `delimiter`, `limit`, `format`), the selection over a sorted list of names, and the JSON, XML and
//! plain-text bodies.
//!
//! Selection reads a sorted source page by page (the Swift index), so a page costs what it returns.
//!
//! `marker` is strictly exclusive, including for `subdir` entries: a subdir equal to the marker is not
//! returned again (python-swiftclient pages with the last name it got and would loop forever).

use super::index::Start;
use crate::error::{ApiError, ApiResult};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// Most entries one listing returns (and the default).
pub(super) const LISTING_LIMIT: usize = 10_000;

/// Rows read at once by a listing with a delimiter.
const DELIMITED_BATCH: usize = 64;

/// The body format of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Plain,
    Json,
    Xml,
}

/// What a listing request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ListingParams {
    pub(super) marker: Option<String>,
    pub(super) end_marker: Option<String>,
    pub(super) prefix: String,
    pub(super) delimiter: Option<char>,
    pub(super) limit: usize,
    pub(super) format: Format,
}

/// Parses a listing's query string (unknown parameters are ignored) and `Accept` header.
pub(super) fn parse_params(query: Option<&str>, headers: &HeaderMap) -> ApiResult<ListingParams> {
    let mut params = ListingParams {
        marker: None,
        end_marker: None,
        prefix: String::new(),
        delimiter: None,
        limit: LISTING_LIMIT,
        format: format_from_accept(headers),
    };
    let pairs = query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for (name, value) in pairs {
        match name.as_str() {
            "marker" if !value.is_empty() => params.marker = Some(value),
            "end_marker" if !value.is_empty() => params.end_marker = Some(value),
            "prefix" => params.prefix = value,
            "delimiter" if !value.is_empty() => {
                let mut chars = value.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => params.delimiter = Some(c),
                    _ => {
                        return Err(ApiError::new(
                            StatusCode::PRECONDITION_FAILED,
                            "Bad delimiter: it must be one character",
                        ))
                    }
                }
            }
            "limit" => {
                let limit: usize = value.trim().parse().map_err(|_| {
                    ApiError::new(
                        StatusCode::PRECONDITION_FAILED,
                        format!("Value of limit must be a non-negative integer, not {value:?}"),
                    )
                })?;
                if limit > LISTING_LIMIT {
                    return Err(ApiError::new(
                        StatusCode::PRECONDITION_FAILED,
                        format!("Maximum limit is {LISTING_LIMIT}"),
                    ));
                }
                params.limit = limit;
            }
            "format" => {
                params.format = match value.to_ascii_lowercase().as_str() {
                    "json" => Format::Json,
                    "xml" => Format::Xml,
                    _ => Format::Plain,
                }
            }
            _ => {}
        }
    }
    Ok(params)
}

fn format_from_accept(headers: &HeaderMap) -> Format {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if accept.contains("application/json") {
        Format::Json
    } else if accept.contains("application/xml") || accept.contains("text/xml") {
        Format::Xml
    } else {
        Format::Plain
    }
}

/// One line of a listing.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Item<T> {
    Entry(String, T),
    Subdir(String),
}

/// Where the names a listing asks for start: after the marker, or at the prefix.
fn first_start(params: &ListingParams) -> Start {
    match &params.marker {
        Some(marker) if marker.as_str() >= params.prefix.as_str() => Start::After(marker.clone()),
        _ => Start::From(params.prefix.clone()),
    }
}

/// The start of the names after every name beginning with `subdir` (which ends with the delimiter):
/// the delimiter replaced by the next character, so a subdir costs one lookup, not one per name.
fn past(subdir: &str) -> Start {
    let mut chars = subdir.chars();
    let last = chars.next_back().map_or(0, u32::from);
    match (last + 1..=u32::from(char::MAX)).find_map(char::from_u32) {
        Some(next) => Start::From(format!("{}{next}", chars.as_str())),
        None => Start::After(subdir.to_string()),
    }
}

/// Selects what `params` asks for from a sorted source of names, read page by page: `fetch(start,
/// n)` gives up to `n` (name, value) pairs from `start` on, in name (byte) order. Only what the page
/// returns is fetched, plus one lookup per `subdir` entry.
pub(super) async fn select_page<T, F, Fut>(
    params: &ListingParams,
    mut fetch: F,
) -> ApiResult<Vec<Item<T>>>
where
    F: FnMut(Start, usize) -> Fut,
    Fut: std::future::Future<Output = ApiResult<Vec<(String, T)>>>,
{
    let mut out = Vec::new();
    let mut start = first_start(params);
    'pages: while out.len() < params.limit {
        // With a delimiter, the rest of a batch after a subdir is skipped: keep batches small.
        let wanted = match params.delimiter {
            Some(_) => (params.limit - out.len()).min(DELIMITED_BATCH),
            None => params.limit - out.len(),
        };
        let rows = fetch(start.clone(), wanted).await?;
        let exhausted = rows.len() < wanted;
        for (name, value) in rows {
            if !name.starts_with(&params.prefix)
                || params
                    .end_marker
                    .as_ref()
                    .is_some_and(|m| name.as_str() >= m.as_str())
            {
                break 'pages;
            }
            if let Some(delimiter) = params.delimiter {
                let rest = &name[params.prefix.len()..];
                if let Some(at) = rest.find(delimiter) {
                    let subdir = &name[..params.prefix.len() + at + delimiter.len_utf8()];
                    if params.marker.as_deref() != Some(subdir) {
                        out.push(Item::Subdir(subdir.to_string()));
                    }
                    start = past(subdir);
                    continue 'pages;
                }
            }
            start = Start::After(name.clone());
            out.push(Item::Entry(name, value));
        }
        if exhausted {
            break;
        }
    }
    Ok(out)
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A listing body: JSON (one object per entry from `json`, `{"subdir"}` for subdirs), XML (`root` and
/// `item` element names, fields from `json`), or plain text (one name per line; 204 when empty).
/// `headers` (counts, timestamps) go on the response either way.
pub(super) fn render<T>(
    items: &[Item<T>],
    format: Format,
    (root, item, name): (&str, &str, &str),
    json: impl Fn(&str, &T) -> serde_json::Map<String, serde_json::Value>,
    headers: HeaderMap,
) -> Response {
    let (status, content_type, body) = match format {
        Format::Json => {
            let list: Vec<serde_json::Value> = items
                .iter()
                .map(|i| match i {
                    Item::Entry(n, v) => serde_json::Value::Object(json(n, v)),
                    Item::Subdir(s) => serde_json::json!({ "subdir": s }),
                })
                .collect();
            (
                StatusCode::OK,
                "application/json; charset=utf-8",
                crate::pyjson::dumps(&list),
            )
        }
        Format::Xml => {
            let mut body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root} name=\"{}\">",
                xml_escape(name)
            );
            for i in items {
                match i {
                    Item::Entry(n, v) => {
                        body.push_str(&format!("<{item}>"));
                        for (field, value) in json(n, v) {
                            let text = match value {
                                serde_json::Value::String(s) => s,
                                other => other.to_string(),
                            };
                            body.push_str(&format!("<{field}>{}</{field}>", xml_escape(&text)));
                        }
                        body.push_str(&format!("</{item}>"));
                    }
                    Item::Subdir(s) => body.push_str(&format!(
                        "<subdir name=\"{0}\"><name>{0}</name></subdir>",
                        xml_escape(s)
                    )),
                }
            }
            body.push_str(&format!("</{root}>"));
            (StatusCode::OK, "application/xml; charset=utf-8", body)
        }
        Format::Plain => {
            let mut body = String::new();
            for i in items {
                match i {
                    Item::Entry(n, _) | Item::Subdir(n) => body.push_str(n),
                }
                body.push('\n');
            }
            let status = if body.is_empty() {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::OK
            };
            (status, "text/plain; charset=utf-8", body)
        }
    };
    let mut response = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
    response.headers_mut().extend(headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> ListingParams {
        parse_params(Some(query), &HeaderMap::new()).unwrap()
    }

    /// Selects from `all` through a fetch that counts the rows it reads.
    fn select_counting(query: &str, all: &[&str]) -> (Vec<Item<()>>, usize) {
        let read = std::cell::Cell::new(0);
        let fetch = |start: Start, n: usize| {
            let rows: Vec<(String, ())> = all
                .iter()
                .filter(|name| match &start {
                    Start::From(s) => **name >= s.as_str(),
                    Start::After(s) => **name > s.as_str(),
                })
                .take(n)
                .map(|name| (name.to_string(), ()))
                .collect();
            read.set(read.get() + rows.len());
            async move { Ok(rows) }
        };
        let items = futures::executor::block_on(select_page(&params(query), fetch)).unwrap();
        (items, read.get())
    }

    fn names(query: &str, all: &[&str]) -> Vec<String> {
        select_counting(query, all)
            .0
            .into_iter()
            .map(|i| match i {
                Item::Entry(n, ()) => n,
                Item::Subdir(s) => format!("{s} (dir)"),
            })
            .collect()
    }

    const ALL: &[&str] = &["a", "d/1", "d/2", "d/e/3", "dz", "e/1", "z"];

    #[test]
    fn markers_prefix_limit() {
        assert_eq!(names("", ALL).len(), 7);
        assert_eq!(names("marker=d/2", ALL), ["d/e/3", "dz", "e/1", "z"]);
        assert_eq!(names("end_marker=dz", ALL), ["a", "d/1", "d/2", "d/e/3"]);
        assert_eq!(names("prefix=d/&limit=2", ALL), ["d/1", "d/2"]);
        assert_eq!(names("marker=zz", ALL), Vec::<String>::new());
        assert_eq!(names("limit=0", ALL), Vec::<String>::new());
    }

    #[test]
    fn delimiter_and_exclusive_subdir_marker() {
        assert_eq!(
            names("delimiter=/", ALL),
            ["a", "d/ (dir)", "dz", "e/ (dir)", "z"]
        );
        assert_eq!(names("delimiter=/&marker=d/", ALL), ["dz", "e/ (dir)", "z"]);
        assert_eq!(names("delimiter=/&marker=e/", ALL), ["z"]);
        assert_eq!(
            names("delimiter=/&prefix=d/", ALL),
            ["d/1", "d/2", "d/e/ (dir)"]
        );
        assert_eq!(names("delimiter=/&limit=2", ALL), ["a", "d/ (dir)"]);
    }

    #[test]
    fn a_page_reads_what_it_returns() {
        let many: Vec<String> = (0..1000).map(|i| format!("o{i:04}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let (items, read) = select_counting("marker=o0500&limit=10", &many);
        assert_eq!(items.len(), 10);
        assert_eq!(read, 10);
        // A subdir of 1000 names costs one lookup, not 1000 rows.
        let nested: Vec<String> = (0..1000)
            .map(|i| format!("d/{i:04}"))
            .chain(["e".to_string()])
            .collect();
        let nested: Vec<&str> = nested.iter().map(String::as_str).collect();
        let (items, read) = select_counting("delimiter=/", &nested);
        assert_eq!(
            items,
            [Item::Subdir("d/".into()), Item::Entry("e".into(), ())]
        );
        assert!(
            read <= 2 * DELIMITED_BATCH,
            "read {read} rows for two entries"
        );
    }

    #[test]
    fn bad_params() {
        let bad = |q: &str| parse_params(Some(q), &HeaderMap::new()).unwrap_err().status;
        assert_eq!(bad("limit=10001"), StatusCode::PRECONDITION_FAILED);
        assert_eq!(bad("limit=x"), StatusCode::PRECONDITION_FAILED);
        assert_eq!(bad("delimiter=ab"), StatusCode::PRECONDITION_FAILED);
        assert_eq!(params("format=json&symlink=get").format, Format::Json);
        assert_eq!(params("").format, Format::Plain);
    }
}
