//! Pacifica's `id2filename`: integer file ids to a directory tree of hex byte pairs, and the parser for ids
//! as Python's `int()` reads them.
//!
//! The hex string of the id is cut into byte pairs from the least significant end; those pairs become the
//! directories and the full hex string the file name. Ids of one or two hex digits become `/file.<hex>`.

use std::fmt::Write;

/// Smallest id accepted: -2^63.
pub const MIN_ID: i128 = i64::MIN as i128;
/// Largest id accepted: 2^64 - 1.
pub const MAX_ID: i128 = u64::MAX as i128;

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not an integer literal.
    #[error("invalid literal for int() with base 10: {0:?}")]
    NotAnInteger(String),
    /// An integer outside -2^63 ..= 2^64-1.
    #[error("id {0} is outside the supported range -2^63 to 2^64-1")]
    OutOfRange(String),
}

/// Maps an id to its path, with a leading `/` exactly as the reference prints it
/// (`12345` -> `/39/3039`, `1` -> `/file.1`, `-16` -> `/10/-10`).
pub fn id2filename(id: i128) -> String {
    let hex = if id < 0 {
        format!("-{:x}", id.unsigned_abs())
    } else {
        format!("{id:x}")
    };
    let mut rest = hex.as_str();
    let mut dirs = String::new();
    while rest.len() > 2 {
        let (head, pair) = rest.split_at(rest.len() - 2);
        let _ = write!(dirs, "/{pair}");
        rest = head;
    }
    if dirs.is_empty() {
        format!("/file.{hex}")
    } else {
        format!("{dirs}/{hex}")
    }
}

/// Parses an id the way Python's `int()` does for ASCII input: surrounding whitespace, an optional sign,
/// decimal digits with single underscores between them (`007`, `+5`, ` 12 `, `1_000`, `-1`).
pub fn parse_id(raw: &str) -> Result<i128, IdError> {
    let not_int = || IdError::NotAnInteger(raw.to_string());
    let s = raw.trim_matches(|c: char| c.is_ascii_whitespace());
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return Err(not_int());
    }
    let cleaned: String = digits.chars().filter(|&c| c != '_').collect();
    let significant = cleaned.trim_start_matches('0');
    // More than 20 significant digits cannot fit the range; refuse before parsing can overflow.
    if significant.len() > 20 {
        return Err(IdError::OutOfRange(raw.trim().to_string()));
    }
    let magnitude: i128 = if significant.is_empty() {
        0
    } else {
        significant.parse().map_err(|_| not_int())?
    };
    let value = if negative { -magnitude } else { magnitude };
    if !(MIN_ID..=MAX_ID).contains(&value) {
        return Err(IdError::OutOfRange(raw.trim().to_string()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_table() {
        let table: &[(i128, &str)] = &[
            (0, "/file.0"),
            (1, "/file.1"),
            (15, "/file.f"),
            (16, "/file.10"),
            (255, "/file.ff"),
            (256, "/00/100"),
            (1234, "/d2/4d2"),
            (4095, "/ff/fff"),
            (4096, "/00/1000"),
            (12345, "/39/3039"),
            (32767, "/ff/7fff"),
            (32768, "/00/8000"),
            (32769, "/01/8001"),
            (65536, "/00/00/10000"),
            (70000, "/70/11/11170"),
            (123456789, "/15/cd/5b/75bcd15"),
            (1 << 32, "/00/00/00/00/100000000"),
            (i64::MAX as i128, "/ff/ff/ff/ff/ff/ff/ff/7fffffffffffffff"),
            (-1, "/file.-1"),
            (-15, "/file.-f"),
            (-16, "/10/-10"),
            (-255, "/ff/-ff"),
            (-256, "/00/-100"),
            (-4096, "/00/10/-1000"),
        ];
        for (id, path) in table {
            assert_eq!(id2filename(*id), *path, "id {id}");
        }
    }

    #[test]
    fn covers_the_extremes() {
        assert_eq!(
            id2filename(MAX_ID),
            "/ff/ff/ff/ff/ff/ff/ff/ffffffffffffffff"
        );
        assert_eq!(
            id2filename(MIN_ID),
            "/00/00/00/00/00/00/00/80/-8000000000000000"
        );
    }

    /// The inverse the reference documents: `/file.<hex>` or the last component, as hex.
    fn filename2id(path: &str) -> i128 {
        let hex = path
            .strip_prefix("/file.")
            .unwrap_or_else(|| path.rsplit('/').next().unwrap());
        match hex.strip_prefix('-') {
            Some(h) => -i128::from_str_radix(h, 16).unwrap(),
            None => i128::from_str_radix(hex, 16).unwrap(),
        }
    }

    #[test]
    fn round_trips_across_the_whole_range() {
        // Every power of two and its neighbours, both signs, plus a deterministic pseudo-random walk.
        let mut ids = vec![MIN_ID, MAX_ID, 0];
        for bit in 0..64 {
            let p = 1i128 << bit;
            ids.extend([p - 1, p, p + 1, -(p - 1), -p, -(p + 1)]);
        }
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ids.push(x as i128);
            ids.push(x as i64 as i128);
        }
        for id in ids.into_iter().filter(|i| (MIN_ID..=MAX_ID).contains(i)) {
            let path = id2filename(id);
            assert_eq!(filename2id(&path), id, "{path}");
            for dir in path
                .trim_start_matches('/')
                .rsplit_once('/')
                .map(|(d, _)| d)
                .into_iter()
            {
                assert!(dir.split('/').all(|p| p.len() == 2), "{path}");
            }
        }
    }

    #[test]
    fn parses_like_python_int() {
        for (raw, id) in [
            ("12345", 12345),
            ("007", 7),
            ("+5", 5),
            (" 12 ", 12),
            ("1_000", 1000),
            ("-1", -1),
            ("0", 0),
            ("-0", 0),
            ("18446744073709551615", MAX_ID),
            ("-9223372036854775808", MIN_ID),
            ("0000000000000000000000000001", 1),
        ] {
            assert_eq!(parse_id(raw), Ok(id), "{raw:?}");
        }
        for raw in [
            "abc", "1.5", "", " ", "-", "_1", "1_", "1__0", "0x10", "1e3", "１２",
        ] {
            assert!(
                matches!(parse_id(raw), Err(IdError::NotAnInteger(_))),
                "{raw:?}"
            );
        }
        for raw in [
            "18446744073709551616",
            "-9223372036854775809",
            "999999999999999999999999",
        ] {
            assert!(
                matches!(parse_id(raw), Err(IdError::OutOfRange(_))),
                "{raw:?}"
            );
        }
    }
}
