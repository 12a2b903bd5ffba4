//! Giving freed heap memory back to the operating system after a burst of connections. The allocator
//! keeps what a storm of connections freed in its per-thread arenas, so the process would stay at its
//! peak size for good; once most of a burst has closed, the free pages are handed back.
#![allow(unsafe_code)]

/// Connections open at the peak of a burst worth trimming after.
const BURST: usize = 256;

/// Watches the number of open connections and says when a burst has drained.
#[derive(Debug, Default)]
pub struct BurstWatch {
    peak: usize,
}

impl BurstWatch {
    /// Records `open` connections; true when a burst of at least [`BURST`] has dropped below a quarter
    /// of its peak (and resets the peak, so one burst trims once).
    pub fn drained(&mut self, open: usize) -> bool {
        self.peak = self.peak.max(open);
        if self.peak >= BURST && open < self.peak / 4 {
            self.peak = open;
            return true;
        }
        false
    }
}

/// Returns the allocator's free pages to the operating system (blocking: it walks every arena).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    extern "C" {
        /// glibc: releases free memory from every arena, also from the middle of the heaps.
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: `malloc_trim` takes no pointers and only reorganises the allocator's own free lists
    // under its arena locks; it is safe to call from any thread at any time.
    unsafe {
        malloc_trim(0);
    }
}

/// Other allocators give memory back by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_trims_once_when_it_has_drained() {
        let mut watch = BurstWatch::default();
        assert!(!watch.drained(10));
        assert!(!watch.drained(3));
        for open in [100, 400, 300, 150, 101] {
            assert!(!watch.drained(open), "{open}");
        }
        assert!(watch.drained(99));
        assert!(!watch.drained(10));
        assert!(!watch.drained(0));
    }
}
