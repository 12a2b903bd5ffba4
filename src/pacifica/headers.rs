//! Header values in the reference's formats: `Last-Modified` parsing for PUT (RFC 1123, RFC 850,
//! asctime, numeric zones; case-insensitive), Python float and tuple reprs for HEAD.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses an HTTP date as Python's `email.utils.parsedate_tz` + `mktime_tz` accept it: the three HTTP
/// forms (`httpdate`), any letter case, and `+hhmm`/`-hhmm` zones instead of `GMT`.
pub fn parse_last_modified(raw: &str) -> Option<SystemTime> {
    let trimmed = raw.trim();
    let normalised = normalise_case(trimmed);
    if let Ok(t) = httpdate::parse_http_date(&normalised) {
        return Some(t);
    }
    // A numeric zone: parse the wall-clock time as GMT, then shift by the offset.
    let (rest, zone) = normalised.rsplit_once(' ')?;
    let sign = match zone.as_bytes().first()? {
        b'+' => 1i64,
        b'-' => -1i64,
        _ => return None,
    };
    let digits = &zone[1..];
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i64 = digits[..2].parse().ok()?;
    let minutes: i64 = digits[2..].parse().ok()?;
    let offset = sign * (hours * 3600 + minutes * 60);
    let base = httpdate::parse_http_date(&format!("{rest} GMT")).ok()?;
    let secs = base.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64 - offset;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// `sun, 06 NOV 1994 ... gmt` -> `Sun, 06 Nov 1994 ... GMT`: httpdate is case-sensitive, Python is not.
fn normalise_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.eq_ignore_ascii_case("gmt") {
            out.push_str("GMT");
        } else {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                out.push(first.to_ascii_uppercase());
                out.extend(chars.map(|c| c.to_ascii_lowercase()));
            }
        }
        word.clear();
    };
    for c in s.chars() {
        if c.is_ascii_alphabetic() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Seconds since the epoch as Python's `str(float)` prints them (`1795302383.6867702`, `1000000.0`).
pub fn python_float(t: SystemTime) -> String {
    let secs = archive_posix::unix_seconds(t);
    if secs.fract() == 0.0 && secs.abs() < 1e16 {
        format!("{secs:.1}")
    } else {
        format!("{secs}")
    }
}

/// A list of integers as a Python tuple repr: `(23,)`, `(0, 23)`.
pub fn python_tuple(values: &[u64]) -> String {
    match values {
        [one] => format!("({one},)"),
        many => format!(
            "({})",
            many.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(raw: &str) -> Option<u64> {
        parse_last_modified(raw).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs())
    }

    #[test]
    fn accepts_what_python_accepts() {
        assert_eq!(secs("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
        assert_eq!(secs("SUN, 06 NOV 1994 08:49:37 GMT"), Some(784111777));
        assert_eq!(secs("Sunday, 06-Nov-94 08:49:37 GMT"), Some(784111777));
        assert_eq!(secs("Sun Nov  6 08:49:37 1994"), Some(784111777));
        assert_eq!(secs("Sun, 06 Nov 1994 09:49:37 +0100"), Some(784111777));
        assert_eq!(secs("Sun, 06 Nov 1994 03:49:37 -0500"), Some(784111777));
        assert_eq!(secs(" Sun, 06 Nov 1994 08:49:37 gmt "), Some(784111777));
    }

    #[test]
    fn refuses_garbage() {
        for raw in [
            "garbage",
            "",
            "1994-11-06T08:49:37Z",
            "Sun, 06 Nov 1994 08:49:37 +01",
            "784111777",
        ] {
            assert_eq!(secs(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn python_reprs() {
        assert_eq!(
            python_float(UNIX_EPOCH + Duration::from_secs(1_000_000)),
            "1000000.0"
        );
        assert_eq!(
            python_float(UNIX_EPOCH + Duration::from_millis(1_500)),
            "1.5"
        );
        assert_eq!(python_tuple(&[23]), "(23,)");
        assert_eq!(python_tuple(&[0, 23]), "(0, 23)");
        assert_eq!(python_tuple(&[23, 0, 0, 0, 0]), "(23, 0, 0, 0, 0)");
    }
}
