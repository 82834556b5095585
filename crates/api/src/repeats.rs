//! Warnings that every failed request would repeat during an outage (10,000 lines in a
//! 10 s database stop at 1,000 req/s), summarised: the first of its kind is logged in full,
//! the repeats are counted, and one line per interval says how many came. What each request
//! got stays in the access log (`--access-log`: status and `db_error`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How often repeats are summed up in one line.
pub const REPEATS_INTERVAL: Duration = Duration::from_secs(10);
/// How often the intervals are looked at.
const TICK: Duration = Duration::from_secs(1);

/// A warning whose repeats are counted rather than logged.
pub(crate) struct Repeated {
    /// What repeated, as the summary line names it.
    what: &'static str,
    state: Mutex<Window>,
}

/// The interval since the last line of a warning.
struct Window {
    /// When it began; `None` when no warning of the kind came in the last interval.
    since: Option<Instant>,
    /// Repeats counted in it.
    count: u64,
}

/// A request failed because the database did not answer (503).
pub(crate) static DATABASE_UNAVAILABLE: Repeated = Repeated::new("database unavailable");
/// A write was refused by a read-only database (503).
pub(crate) static READ_ONLY: Repeated =
    Repeated::new("the database is read-only: writes are refused");
/// `/readyz` found the database not answering.
pub(crate) static NOT_READY: Repeated = Repeated::new("readiness check failed");

static ALL: [&Repeated; 3] = [&DATABASE_UNAVAILABLE, &READ_ONLY, &NOT_READY];

impl Repeated {
    const fn new(what: &'static str) -> Self {
        Self {
            what,
            state: Mutex::new(Window {
                since: None,
                count: 0,
            }),
        }
    }

    /// Whether this occurrence is to be logged in full (none came in the last interval);
    /// otherwise it is counted for the interval's summary.
    pub(crate) fn first(&self) -> bool {
        let Ok(mut window) = self.state.lock() else {
            return true;
        };
        match window.since {
            Some(_) => {
                window.count += 1;
                false
            }
            None => {
                window.since = Some(Instant::now());
                true
            }
        }
    }

    /// Logs how many repeats came once the interval is over (or at once with `now`): a new
    /// interval begins when there were some, none when they stopped.
    fn summarise(&self, now: bool) {
        let Ok(mut window) = self.state.lock() else {
            return;
        };
        let Some(since) = window.since else {
            return;
        };
        let elapsed = since.elapsed();
        if !now && elapsed < REPEATS_INTERVAL {
            return;
        }
        let count = std::mem::take(&mut window.count);
        window.since = (count > 0).then(Instant::now);
        if count > 0 {
            let seconds = elapsed.as_secs().max(1);
            tracing::warn!(
                repeats = count,
                seconds,
                "{}: {count} more in the last {seconds} s (each request is in the access log)",
                self.what,
            );
        }
    }
}

/// Logs every summary that is due.
pub(crate) fn summarise_all(now: bool) {
    ALL.iter().for_each(|repeated| repeated.summarise(now));
}

/// Logs the summaries as their intervals end, until `closing` is set.
pub(crate) async fn summarise_until(mut closing: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => summarise_all(false),
            _ = closing.wait_for(|closed| *closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_and_repeats_are_counted_until_the_interval_ends() {
        let repeated = Repeated::new("test");
        assert!(repeated.first());
        assert!(!repeated.first());
        assert!(!repeated.first());
        repeated.summarise(true);
        // Repeats kept coming: still inside a summarised stretch.
        assert!(!repeated.first());
        repeated.summarise(true);
        // None in the last interval: the next is logged in full again.
        repeated.summarise(true);
        assert!(repeated.first());
    }
}
