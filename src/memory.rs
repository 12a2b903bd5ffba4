//! Giving freed heap memory back to the operating system after a burst of connections. The allocator
//! keeps what a storm of connections freed in its per-thread arenas, so the process would stay at its
//! peak size for good; once most of a burst has closed, the free pages are handed back.
#![allow(unsafe_code)]

/// Connections closed since the last trim that make one worth it.
const CLOSED_WORTH_TRIMMING: usize = 128;

/// Looks at the number of open connections now and then and says when enough have closed, with no
/// new burst building up, for their freed memory to be worth handing back.
#[derive(Debug, Default)]
pub struct BurstWatch {
    last: usize,
    closed: usize,
}

impl BurstWatch {
    /// Records `open` connections at one look; true when at least [`CLOSED_WORTH_TRIMMING`] closed
    /// since the last trim and the number is not growing.
    pub fn drained(&mut self, open: usize) -> bool {
        let growing = open > self.last;
        self.closed += self.last.saturating_sub(open);
        self.last = open;
        if !growing && self.closed >= CLOSED_WORTH_TRIMMING {
            self.closed = 0;
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
    fn closed_connections_trim_once_the_number_stops_growing() {
        let mut watch = BurstWatch::default();
        assert!(!watch.drained(10));
        assert!(!watch.drained(3));
        // A burst builds up: no trim while it grows.
        assert!(!watch.drained(2000));
        // It drains in steps; each look after enough closed trims once.
        assert!(watch.drained(1500));
        assert!(!watch.drained(1450));
        assert!(watch.drained(1300));
        assert!(watch.drained(0));
        assert!(!watch.drained(0));
        // Closing and opening at once (steady traffic) trims only when the count does not grow.
        assert!(!watch.drained(200));
        assert!(!watch.drained(300));
        assert!(watch.drained(50));
    }
}
