//! `Key`: a validated relative path. Validation happens once, here, so no backend can be handed a name
//! that escapes its root.

use crate::Error;
use std::fmt;

/// A relative, normalised path naming a file inside a backend.
///
/// Invariants (checked by [`Key::new`]): not empty, no leading or trailing `/`, no empty segment, no `.` or
/// `..` segment, no NUL byte, no backslash, at most 4096 bytes and 255 bytes per segment.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// Validates `raw` and wraps it.
    pub fn new(raw: impl Into<String>) -> Result<Self, Error> {
        let raw = raw.into();
        let bad = |why: &str| {
            Err(Error::InvalidArgument(format!(
                "Invalid file name {raw:?}: {why}"
            )))
        };
        if raw.is_empty() {
            return bad("it is empty");
        }
        if raw.len() > 4096 {
            return bad("it is longer than 4096 bytes");
        }
        if raw.starts_with('/') {
            return bad("absolute paths are not allowed");
        }
        if raw.contains('\0') {
            return bad("it contains a NUL byte");
        }
        if raw.contains('\\') {
            return bad("it contains a backslash");
        }
        for segment in raw.split('/') {
            match segment {
                "" => return bad("it contains an empty path segment"),
                "." | ".." => return bad("'.' and '..' segments are not allowed"),
                s if s.len() > 255 => return bad("a path segment is longer than 255 bytes"),
                _ => {}
            }
        }
        Ok(Key(raw))
    }

    /// The key as a relative path string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last path segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The key with `child` appended as further segments (validated).
    pub fn join(&self, child: &str) -> Result<Key, Error> {
        Key::new(format!("{}/{child}", self.0))
    }
}

/// Keys order, compare and hash exactly as their text does, so ordered maps of keys can be searched by
/// a plain string (a listing prefix that is not itself a valid key, such as `"a/"`).
impl std::borrow::Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_relative_paths() {
        for ok in ["1234", "39/3039", "file.0", "a b/ü/x.txt", "...", ".hidden"] {
            assert_eq!(Key::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_escapes_and_garbage() {
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "../x",
            "a/../b",
            "a/./b",
            ".",
            "a//b",
            "a/",
            "a\0b",
            "a\\b",
        ] {
            assert!(
                matches!(Key::new(bad), Err(Error::InvalidArgument(_))),
                "{bad:?} should be refused"
            );
        }
        assert!(Key::new("x".repeat(256)).is_err());
        assert!(Key::new(["a"; 2049].join("/")).is_err());
    }

    #[test]
    fn file_name_and_join() {
        let k = Key::new("a/b").unwrap();
        assert_eq!(k.file_name(), "b");
        assert_eq!(k.join("c/d").unwrap().as_str(), "a/b/c/d");
        assert!(k.join("..").is_err());
    }
}
