//! Crash injection for the crash-safety tests: when the environment variable
//! `ARCHIVE_TIERED_CRASH_AT` names a point, the process aborts there (no destructors, no flushing), as
//! if it had been killed; when `ARCHIVE_TIERED_FAIL_AT` names a failure point, the I/O there fails with
//! an injected error (what a dying disk does). Unset (always, in production), each point is one cached
//! comparison.

use std::sync::OnceLock;

/// The environment variable naming the crash point to abort at.
pub const CRASH_ENV: &str = "ARCHIVE_TIERED_CRASH_AT";

/// Every crash point, in the order an operation passes them; the tests kill a child at each.
pub const CRASH_POINTS: &[&str] = &[
    "migrate:mid-cold-copy",
    "migrate:after-cold-copy",
    "migrate:after-journal-copy",
    "migrate:after-unlink",
    "migrate:after-journal-release",
    "recall:mid-disk-copy",
    "recall:after-disk-copy",
    "recall:after-journal",
];

/// The environment variable naming the failure point whose I/O fails.
pub const FAIL_ENV: &str = "ARCHIVE_TIERED_FAIL_AT";

/// The fsync of a journal append.
pub const FAIL_JOURNAL_FSYNC: &str = "journal:fsync";

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var(CRASH_ENV).ok())
        .as_deref()
}

/// Fails with an injected I/O error if `name` is the armed failure point.
pub(crate) fn failure_point(name: &'static str) -> std::io::Result<()> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    match ARMED
        .get_or_init(|| std::env::var(FAIL_ENV).ok())
        .as_deref()
    {
        Some(armed) if armed == name => {
            Err(std::io::Error::other(format!("injected failure at {name}")))
        }
        _ => Ok(()),
    }
}

/// Aborts the process if `name` is the armed crash point.
pub(crate) fn crash_point(name: &'static str) {
    if armed() == Some(name) {
        eprintln!("tiered: crashing at injected point {name}");
        std::process::abort();
    }
}

/// Passes a data stream through, aborting after its first chunk if `name` is armed, so that a partial
/// copy is left behind exactly as a kill in the middle of a transfer would leave it.
pub(crate) fn crash_mid_stream(
    stream: archive_core::ByteStream,
    name: &'static str,
) -> archive_core::ByteStream {
    use futures::StreamExt;
    if armed() != Some(name) {
        return stream;
    }
    let mut seen = 0usize;
    stream
        .map(move |chunk| {
            seen += 1;
            if seen == 2 {
                crash_point(name);
            }
            chunk
        })
        .boxed()
}
