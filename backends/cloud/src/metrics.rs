//! Counters of the cloud tier per store: bytes and objects copied, objects released locally,
//! read-through hits, errors, and the copies and archives waiting (queue depth, set by the scanner).
//! Rendered in the Prometheus text format by the server's `/.metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// One metric family: name, type, help text, and which counter of a store it shows.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StoreCounters) -> &AtomicU64,
);

/// The counters of one store.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Bytes uploaded by copies.
    pub bytes_copied: AtomicU64,
    /// Objects uploaded.
    pub objects_copied: AtomicU64,
    /// Copies found already current (nothing uploaded).
    pub copies_skipped: AtomicU64,
    /// Local copies released after a confirmed remote copy.
    pub objects_released: AtomicU64,
    /// Objects restored from the store to local storage.
    pub objects_restored: AtomicU64,
    /// GETs served from the store.
    pub read_through_hits: AtomicU64,
    /// Failed requests to the store.
    pub errors: AtomicU64,
    /// Copies and archives due but not done, as the last scan found them.
    pub queue_depth: AtomicU64,
}

/// Counters of every store, by store name.
#[derive(Debug, Default)]
pub struct CloudMetrics {
    stores: BTreeMap<String, StoreCounters>,
}

impl CloudMetrics {
    /// Counters for the named stores, all zero.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        CloudMetrics {
            stores: names
                .into_iter()
                .map(|n| (n.to_string(), StoreCounters::default()))
                .collect(),
        }
    }

    /// The counters of `store` (a configured name).
    pub fn store(&self, store: &str) -> &StoreCounters {
        self.stores
            .get(store)
            .expect("counters exist for every configured store")
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let families: [Family; 8] = [
            (
                "archive_cloud_copied_bytes_total",
                "counter",
                "Bytes copied to the store.",
                |c| &c.bytes_copied,
            ),
            (
                "archive_cloud_copied_objects_total",
                "counter",
                "Objects copied to the store.",
                |c| &c.objects_copied,
            ),
            (
                "archive_cloud_copy_skipped_total",
                "counter",
                "Copies found current already.",
                |c| &c.copies_skipped,
            ),
            (
                "archive_cloud_released_objects_total",
                "counter",
                "Local copies released after a confirmed remote copy.",
                |c| &c.objects_released,
            ),
            (
                "archive_cloud_restored_objects_total",
                "counter",
                "Objects restored from the store.",
                |c| &c.objects_restored,
            ),
            (
                "archive_cloud_read_through_total",
                "counter",
                "Reads served from the store.",
                |c| &c.read_through_hits,
            ),
            (
                "archive_cloud_errors_total",
                "counter",
                "Failed requests to the store.",
                |c| &c.errors,
            ),
            (
                "archive_cloud_queue_depth",
                "gauge",
                "Copies and archives due, as of the last scan.",
                |c| &c.queue_depth,
            ),
        ];
        for (name, kind, help, counter) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (store, counters) in &self.stores {
                let value = counter(counters).load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{store=\"{store}\"}} {value}");
            }
        }
        out
    }
}
