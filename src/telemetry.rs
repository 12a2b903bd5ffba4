//! Logging through `tracing`: human-readable or JSON lines on stderr, filtered by the configured level
//! (or `RUST_LOG`). One event is always one line: control characters that a request put into a logged
//! value (a `%0A` in a name, say) are escaped on the way out, so no request can forge a log line.

use crate::config::{Config, LogFormat};
use std::io::{self, Write};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, after the configuration was validated.
pub fn init(config: &Config) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_level));
    // Colours only on a terminal: escape codes in a log file or the journal are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_ansi(ansi)
        .with_env_filter(filter)
        .with_writer(OneLinePerEvent { ansi });
    let _ = match config.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// Writes each formatted event to stderr with [`escape_event`] applied.
#[derive(Debug, Clone, Copy)]
struct OneLinePerEvent {
    /// Colour codes are ours to keep (the formatter writes them) when colours are on.
    ansi: bool,
}

impl<'a> MakeWriter<'a> for OneLinePerEvent {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> EventWriter {
        EventWriter { ansi: self.ansi }
    }
}

/// The fmt layer formats a whole event into one buffer and hands it over with one `write_all`.
#[derive(Debug)]
struct EventWriter {
    ansi: bool,
}

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        io::stderr().lock().write_all(&escape_event(buf, self.ansi))
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// One formatted event with every control byte escaped (`\n`, `\r`, `\t`, `\x1b`, ...) except its
/// final newline and, with colours on, the escape bytes of colour codes.
pub fn escape_event(event: &[u8], keep_escape: bool) -> Vec<u8> {
    let (body, newline) = match event.strip_suffix(b"\n") {
        Some(body) => (body, true),
        None => (event, false),
    };
    let mut out = Vec::with_capacity(event.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x1b if keep_escape => out.push(b),
            0..=0x1f | 0x7f => {
                let _ = write!(out, "\\x{b:02x}");
            }
            _ => out.push(b),
        }
    }
    if newline {
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_is_one_line() {
        let escaped = escape_event(b"refused a\nFAKE\rline\t\x00\x1b[31m\x7f\n", false);
        assert_eq!(
            escaped,
            b"refused a\\nFAKE\\rline\\t\\x00\\x1b[31m\\x7f\n".to_vec()
        );
        assert_eq!(
            escape_event(b"\x1b[2mcolour\x1b[0m\n", true),
            b"\x1b[2mcolour\x1b[0m\n"
        );
        assert_eq!(escape_event(b"no newline", false), b"no newline");
    }
}
