//! JSON bodies byte-for-byte as Python's `json.dumps` writes them (`", "` and `": "` separators,
//! non-ASCII as `\uXXXX`), because the reference's clients and tests saw exactly those bytes.

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter};
use std::io;

#[derive(Debug, Default)]
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if fragment.is_ascii() {
            return CompactFormatter.write_string_fragment(w, fragment);
        }
        let mut units = [0u16; 2];
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// Serialises `value` as Python's `json.dumps(value)` would.
pub fn dumps<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value
        .serialize(&mut ser)
        .expect("serialising plain data cannot fail");
    String::from_utf8(out).expect("JSON output is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::dumps;
    use serde_json::json;

    #[test]
    fn matches_python_json_dumps() {
        #[derive(serde::Serialize)]
        struct Added {
            message: &'static str,
            total_bytes: u64,
        }
        let body = dumps(&Added {
            message: "File added to archive",
            total_bytes: 23,
        });
        assert_eq!(
            body,
            r#"{"message": "File added to archive", "total_bytes": 23}"#
        );
        assert_eq!(
            body.len(),
            55,
            "the reference sends Content-Length: 55 for this body"
        );
        assert_eq!(dumps(&json!(["a", 1, null])), r#"["a", 1, null]"#);
        assert_eq!(
            dumps(&json!({"k": "ü€😀\n\""})),
            r#"{"k": "\u00fc\u20ac\ud83d\ude00\n\""}"#
        );
    }
}
