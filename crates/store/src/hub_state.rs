//! What the stores of one hub share (see [`crate::StoreHub`]): the block of counters each
//! of them writes, the clock they count milliseconds from, when one of them last wrote,
//! and the warnings said once. One per hub, never a process-wide static: two hubs in one
//! process (tests, `peregrine demo`) count and time apart, and a hub's state goes with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::db_stats::DbCounters;

/// The state the stores of a hub share.
pub(crate) struct HubState {
    /// Every store's block of counters, summed for `/metrics`.
    pub(crate) counters: Arc<DbCounters>,
    /// What [`HubState::millis`] counts from.
    epoch: Instant,
    /// When a store of the hub last wrote to a primary that has replicas: milliseconds
    /// since `epoch`, plus one (0 = never). Shared by the stores of every server thread,
    /// since a client's next request may reach another thread.
    last_write_ms: AtomicU64,
    /// Whether the fall-back to unnamed statements was explained already.
    warned_unnamed: AtomicBool,
}

impl HubState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            counters: Arc::default(),
            epoch: Instant::now(),
            last_write_ms: AtomicU64::new(0),
            warned_unnamed: AtomicBool::new(false),
        })
    }

    /// Milliseconds since the hub was made.
    pub(crate) fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Notes a write to a primary that has replicas.
    pub(crate) fn wrote(&self) {
        self.last_write_ms
            .store(self.millis() + 1, Ordering::Relaxed);
    }

    /// Whether a store of the hub wrote within `window`.
    pub(crate) fn wrote_within(&self, window: Duration) -> bool {
        let last = self.last_write_ms.load(Ordering::Relaxed);
        last != 0
            && self.millis() + 1 - last < u64::try_from(window.as_millis()).unwrap_or(u64::MAX)
    }

    /// True the first time only: the fall-back to unnamed statements is explained once
    /// per hub, not once per worker.
    pub(crate) fn first_unnamed_fallback(&self) -> bool {
        !self.warned_unnamed.swap(true, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_seen_within_its_window_and_by_its_hub_only() {
        let hub = HubState::new();
        let other = HubState::new();
        assert!(!hub.wrote_within(Duration::from_secs(60)));
        hub.wrote();
        assert!(hub.wrote_within(Duration::from_secs(60)));
        assert!(!hub.wrote_within(Duration::ZERO));
        assert!(!other.wrote_within(Duration::from_secs(60)));
        assert!(hub.first_unnamed_fallback());
        assert!(!hub.first_unnamed_fallback());
        assert!(other.first_unnamed_fallback());
    }
}
