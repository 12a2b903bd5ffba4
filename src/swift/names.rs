//! Swift names and the backend keys they map to.
//!
//! A request path `/v1/<account>[/<container>[/<object>]]` is percent-decoded as a whole and then split
//! (as Swift does, so `%2F` in an object name is a `/`). Object data lives at
//! `<root>/<account>/<container>/<object>` (the Swift-on-File layout). What Swift keeps in its databases
//! lives in the Swift index, in `.archiveinterface-swift/` by default, a name no object name can produce
//! and which the archive listing and migration policies skip as server state. Earlier versions kept
//! it as JSON records under `.archiveinterface-swift/<root>/` (`accounts/<account>`,
//! `containers/<account>/<container>`, `objects/<account>/<container>/<sha256 of the name>`), which
//! are read once to build the index.

use crate::config::SwiftConfig;
use crate::error::ApiError;
use archive_core::Key;

/// Names starting with this are the server's own state in every backend; no Swift name may use them.
const STATE_PREFIX: &str = ".archiveinterface";
/// Swift's limits (`/info` reports them).
pub(super) const MAX_ACCOUNT_NAME: usize = 256;
pub(super) const MAX_CONTAINER_NAME: usize = 256;
pub(super) const MAX_OBJECT_NAME: usize = 1024;

/// A decoded `/v1/...` path, split but not yet validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SwiftPath {
    pub(super) account: String,
    pub(super) container: Option<String>,
    pub(super) object: Option<String>,
}

/// Splits the part of a request path after `/v1/`. A trailing `/` after the account or container is
/// ignored (`/v1/a/c/` is the container `c`); an object name keeps everything after the container.
pub(super) fn split_path(raw: &str) -> Result<SwiftPath, ApiError> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("Invalid UTF-8 in the request path"))?;
    let mut parts = decoded.splitn(3, '/');
    let account = parts.next().unwrap_or_default().to_string();
    let container = parts.next().filter(|c| !c.is_empty()).map(str::to_string);
    let object = parts.next().filter(|o| !o.is_empty()).map(str::to_string);
    if account.is_empty() || (container.is_none() && object.is_some()) {
        return Err(ApiError::bad_request(format!(
            "Invalid path /v1/{decoded}: expected /v1/<account>[/<container>[/<object>]]"
        )));
    }
    Ok(SwiftPath {
        account,
        container,
        object,
    })
}

fn refuse(what: &str, name: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("Invalid {what} name {name:?}: {why}"))
}

/// Checks the segments of a name for what `Key::new` cannot know: the server's state names and partial
/// files of interrupted writes (which listings hide and start-up removes).
fn check_segments(what: &str, name: &str) -> Result<(), ApiError> {
    crate::name_check::refuse_control_characters(&format!("{what} name"), name)?;
    for segment in name.split('/') {
        if segment.starts_with(STATE_PREFIX) {
            return Err(refuse(
                what,
                name,
                &format!("a path segment may not start with {STATE_PREFIX}"),
            ));
        }
        if archive_posix::is_partial_name(segment) {
            return Err(refuse(
                what,
                name,
                "a path segment may not look like a partial upload (.<name>.partial)",
            ));
        }
    }
    Ok(())
}

/// Validates an account name (one path segment).
pub(super) fn check_account(account: &str) -> Result<(), ApiError> {
    check_single("account", account, MAX_ACCOUNT_NAME)
}

/// Validates a container name (one path segment).
pub(super) fn check_container(container: &str) -> Result<(), ApiError> {
    check_single("container", container, MAX_CONTAINER_NAME)
}

fn check_single(what: &str, name: &str, max: usize) -> Result<(), ApiError> {
    if name.contains('/') {
        return Err(refuse(what, name, "it contains '/'"));
    }
    if name.len() > max {
        return Err(refuse(
            what,
            name,
            &format!("it is longer than {max} bytes"),
        ));
    }
    Key::new(name).map_err(|e| refuse(what, name, &e.to_string()))?;
    check_segments(what, name)
}

fn key(raw: String) -> Result<Key, ApiError> {
    Key::new(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The backend key of an object's data: `<root>/<account>/<container>/<object>`. Refuses (400) any name
/// that `Key` refuses (`..`, empty segments, NUL, ...) or that uses the server's reserved names.
pub fn object_key(
    config: &SwiftConfig,
    account: &str,
    container: &str,
    object: &str,
) -> Result<Key, ApiError> {
    check_account(account)?;
    check_container(container)?;
    if object.len() > MAX_OBJECT_NAME {
        return Err(refuse(
            "object",
            object,
            &format!("it is longer than {MAX_OBJECT_NAME} bytes"),
        ));
    }
    Key::new(object).map_err(|e| refuse("object", object, &e.to_string()))?;
    check_segments("object", object)?;
    key(format!("{}/{account}/{container}/{object}", config.root))
}

/// The `/account/container/object` name of an object's data key (the inverse of [`object_key`]), as
/// SwiftHLM prints it; `None` for keys outside the Swift root.
pub fn swift_name_of(config: &SwiftConfig, key: &Key) -> Option<String> {
    let rest = key.as_str().strip_prefix(&config.root)?.strip_prefix('/')?;
    let mut parts = rest.splitn(3, '/');
    let (account, container, object) = (parts.next()?, parts.next()?, parts.next()?);
    Some(format!("/{account}/{container}/{object}"))
}

/// Prefix of every object key of a container (`<root>/<account>/<container>/`).
pub(super) fn container_data_prefix(
    config: &SwiftConfig,
    account: &str,
    container: &str,
) -> String {
    format!("{}/{account}/{container}/", config.root)
}

/// The directory (in the prefix) of the server's Swift state: the index, and the records of earlier
/// versions.
pub(super) const STATE_DIR: &str = ".archiveinterface-swift";

fn meta_root(config: &SwiftConfig) -> String {
    format!("{STATE_DIR}/{}", config.root)
}

/// Where earlier versions kept Swift's records as JSON files (read once, to build the index).
pub(super) fn records_root(config: &SwiftConfig) -> String {
    meta_root(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SwiftConfig {
        SwiftConfig::default()
    }

    #[test]
    fn paths_split_after_decoding() {
        let p = split_path("AUTH_test/c/a%2Fb/c%20d%C3%BC").unwrap();
        assert_eq!(p.account, "AUTH_test");
        assert_eq!(p.container.as_deref(), Some("c"));
        assert_eq!(p.object.as_deref(), Some("a/b/c dü"));
        let p = split_path("AUTH_test/c/").unwrap();
        assert_eq!((p.container.as_deref(), p.object), (Some("c"), None));
        let p = split_path("AUTH_test/").unwrap();
        assert_eq!((p.container, p.object), (None, None));
        assert!(split_path("AUTH_test//o").is_err());
        assert!(split_path("%FF").is_err());
        assert!(split_path("").is_err());
    }

    #[test]
    fn object_keys_stay_under_the_root() {
        let c = config();
        assert_eq!(
            object_key(&c, "AUTH_test", "c", "a b/ü.txt")
                .unwrap()
                .as_str(),
            ".swift/AUTH_test/c/a b/ü.txt"
        );
        for (a, cont, o) in [
            ("AUTH_test", "c", "../../x"),
            ("AUTH_test", "c", "a/../../b"),
            ("AUTH_test", "..", "x"),
            ("..", "c", "x"),
            ("AUTH_test", "c", "/abs"),
            ("AUTH_test", "c", "a//b"),
            ("AUTH_test", "c", "trailing/"),
            ("AUTH_test", "c", "nul\0"),
            ("AUTH_test", "c", ".archiveinterface-x/y"),
            ("AUTH_test", ".archiveinterface", "y"),
            ("AUTH_test", "c", "d/.x.1-2.partial"),
            ("AUTH_test", "c/d", "y"),
        ] {
            let err = object_key(&c, a, cont, o).unwrap_err();
            assert_eq!(err.status.as_u16(), 400, "{a}/{cont}/{o}");
        }
        assert!(object_key(&c, "AUTH_test", "c", &"x".repeat(1025)).is_err());
    }

    #[test]
    fn names_round_trip() {
        let c = config();
        let k = object_key(&c, "AUTH_test", "c", "a/b").unwrap();
        assert_eq!(swift_name_of(&c, &k).as_deref(), Some("/AUTH_test/c/a/b"));
        assert_eq!(swift_name_of(&c, &Key::new("1234").unwrap()), None);
        assert_eq!(records_root(&c), ".archiveinterface-swift/.swift");
    }
}
