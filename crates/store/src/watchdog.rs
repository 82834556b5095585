//! The deadline of the queries pipelined on one connection, kept without a timer per query.
//!
//! A timer per query (registered in tokio's timer wheel when the query is sent, removed when
//! it is answered) costs several hundred instructions on every request. Instead, a
//! watchdog task per connection ticks a few times per deadline, and each query only counts
//! itself in the tick it was sent in: two relaxed atomic additions, no clock read. At every
//! tick the watchdog looks at the tick one deadline back: a query still counted there has
//! waited at least the deadline (and at most the deadline and two ticks: one of rounding the
//! deadline up to whole ticks, one of the tick it was sent in), so the connection is taken
//! for hung and its queries fail at once. A tick is at most 50 ms (for deadlines up to
//! 51.2 s; a 1024th of the deadline above), so a call fails by its deadline plus 100 ms.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

/// Shortest and longest tick: shorter would wake an idle server often for nothing; longer
/// would let a call overrun its deadline by more than the documented margin (two ticks).
const SHORTEST_TICK: Duration = Duration::from_millis(5);
pub(crate) const LONGEST_TICK: Duration = Duration::from_millis(50);
/// Ticks per deadline at most, so that a long deadline (up to an hour) keeps a small ring
/// (4 KiB per connection at most).
const MOST_TICKS: u32 = 1024;

/// The queries in flight on one connection, by the tick they were sent in.
pub(crate) struct Watch {
    /// A ring of counters: the queries sent in tick `n` and not finished yet are in
    /// `sent_in[n % len]`. One deadline's ticks and the current one.
    sent_in: Box<[AtomicU32]>,
    /// The index in `sent_in` of the current tick.
    current: AtomicUsize,
    /// Set once the watchdog gave the connection up: its queries failed as timeouts.
    hung: AtomicBool,
    tick: Duration,
    deadline: Duration,
}

impl Watch {
    /// The watch of a connection whose queries must be answered within `deadline`.
    pub(crate) fn new(deadline: Duration) -> Self {
        let tick = tick_of(deadline);
        let ticks = deadline.as_nanos().div_ceil(tick.as_nanos().max(1)).max(1);
        let len = usize::try_from(ticks).unwrap_or(MOST_TICKS as usize) + 1;
        Self {
            sent_in: (0..len).map(|_| AtomicU32::new(0)).collect(),
            current: AtomicUsize::new(0),
            hung: AtomicBool::new(false),
            tick,
            deadline,
        }
    }

    /// How often the watchdog looks.
    pub(crate) fn tick(&self) -> Duration {
        self.tick
    }

    /// The deadline of the queries watched.
    pub(crate) fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Counts a query sent now until the returned guard is dropped (answered, failed or
    /// abandoned).
    pub(crate) fn sent(&self) -> Sent<'_> {
        // Always in range: only `advance` sets it, to an index of the ring.
        let counter = &self.sent_in[self.current.load(Ordering::Relaxed)];
        counter.fetch_add(1, Ordering::Relaxed);
        Sent(counter)
    }

    /// Starts tick `n` (1, 2, …; one per [`Watch::tick`]). False when a query sent a
    /// deadline ago (in tick `n - len`, whose counter tick `n` would reuse) is still
    /// unanswered: the connection is hung.
    pub(crate) fn advance(&self, n: u64) -> bool {
        let index = usize::try_from(n % self.sent_in.len() as u64).unwrap_or(0);
        if self.sent_in[index].load(Ordering::Relaxed) != 0 {
            return false;
        }
        self.current.store(index, Ordering::Relaxed);
        true
    }

    /// Queries sent and not finished.
    pub(crate) fn in_flight(&self) -> u64 {
        let counts = self.sent_in.iter();
        counts.map(|c| u64::from(c.load(Ordering::Relaxed))).sum()
    }

    /// Marks the connection as given up: its queries' failures are timeouts.
    pub(crate) fn give_up(&self) {
        self.hung.store(true, Ordering::Relaxed);
    }

    /// Whether the watchdog gave the connection up.
    pub(crate) fn is_hung(&self) -> bool {
        self.hung.load(Ordering::Relaxed)
    }
}

/// A query counted in its tick while it lives.
pub(crate) struct Sent<'a>(&'a AtomicU32);

impl Drop for Sent<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An eighth of the deadline, within [`SHORTEST_TICK`] and [`LONGEST_TICK`], and at least
/// a [`MOST_TICKS`]th of it.
fn tick_of(deadline: Duration) -> Duration {
    let eighth = (deadline / 8).clamp(SHORTEST_TICK, LONGEST_TICK);
    eighth.max(deadline / MOST_TICKS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `ticks` in order, returning the first that found a hung query.
    fn first_hung_tick(watch: &Watch, ticks: std::ops::RangeInclusive<u64>) -> Option<u64> {
        ticks.into_iter().find(|&tick| !watch.advance(tick))
    }

    #[test]
    fn a_query_is_given_up_after_its_deadline_and_within_one_tick_more() {
        let deadline = Duration::from_millis(400);
        let watch = Watch::new(deadline);
        assert_eq!(watch.tick(), Duration::from_millis(50));
        // Sent at the very start of tick 0: hung once it is 8 ticks (the deadline) old,
        // found at the start of tick 9, so it waited between 8 and 9 ticks.
        let sent = watch.sent();
        assert_eq!(first_hung_tick(&watch, 1..=20), Some(9));
        drop(sent);
        assert_eq!(watch.in_flight(), 0);
    }

    #[test]
    fn answered_queries_never_make_a_connection_hung() {
        let watch = Watch::new(Duration::from_millis(100));
        for tick in 1..1000 {
            let sent = watch.sent();
            assert!(watch.advance(tick), "tick {tick}");
            drop(sent);
        }
        assert_eq!(watch.in_flight(), 0);
    }

    #[test]
    fn a_query_sent_later_in_the_pipeline_keeps_its_own_deadline() {
        let watch = Watch::new(Duration::from_millis(400));
        let first = watch.sent();
        assert_eq!(first_hung_tick(&watch, 1..=3), None);
        let second = watch.sent();
        drop(first);
        // Sent in tick 3: given up at tick 3 + 8 + 1, not earlier.
        assert_eq!(first_hung_tick(&watch, 4..=11), None);
        assert!(!watch.advance(12));
        drop(second);
    }

    #[test]
    fn two_ticks_fit_in_the_documented_margin() {
        assert!(2 * LONGEST_TICK <= crate::DEADLINE_MARGIN);
        let watch = Watch::new(Duration::from_millis(1234));
        let ticks = watch.sent_in.len() as u32 - 1;
        // The deadline rounded up to whole ticks, plus the tick a query was sent in.
        assert!(watch.tick() * (ticks + 1) <= Duration::from_millis(1234) + crate::DEADLINE_MARGIN);
    }

    #[test]
    fn ticks_stay_within_their_bounds_and_rings_small() {
        for (deadline_ms, tick_ms) in [
            (1, 5),
            (40, 5),
            (400, 50),
            (800, 50),
            (6250, 50),
            (51_200, 50),
            (4_500_000, 4_394),
        ] {
            let watch = Watch::new(Duration::from_millis(deadline_ms));
            assert_eq!(watch.tick().as_millis(), tick_ms, "{deadline_ms} ms");
            assert!(watch.sent_in.len() <= MOST_TICKS as usize + 1);
        }
    }
}
