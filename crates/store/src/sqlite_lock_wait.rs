//! SQLite's busy handler: a job waits for another connection's lock in short naps until its
//! deadline by the wall clock. rusqlite takes the handler as a plain function, so the
//! running job's deadline reaches it through a thread-local of the worker thread that runs
//! the job (each SQLite connection lives on one such thread), set only while the job runs.

use std::cell::Cell;
use std::thread;
use std::time::{Duration, Instant};

/// How long [`wait_for_lock`] sleeps between two tries of a held lock.
const LOCK_NAP: Duration = Duration::from_millis(2);

thread_local! {
    /// Until when the job running on this worker thread may wait for another connection's
    /// lock; read by [`wait_for_lock`].
    static LOCK_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `job` with [`wait_for_lock`] giving up on a held lock at `at`.
pub(crate) fn with_lock_deadline<T>(at: Instant, job: impl FnOnce() -> T) -> T {
    LOCK_DEADLINE.set(Some(at));
    let result = job();
    LOCK_DEADLINE.set(None);
    result
}

/// SQLite's busy handler: wait in short naps while the lock is held, until the running
/// job's deadline by the wall clock. (SQLite's own busy timeout adds up the naps it asked
/// for, not the time that passed, and so overran the deadline on a loaded machine: the
/// caller had been told 503 while the write went on to commit.)
pub(crate) fn wait_for_lock(_attempts: i32) -> bool {
    let Some(at) = LOCK_DEADLINE.get() else {
        return false;
    };
    match at.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => {
            thread::sleep(left.min(LOCK_NAP));
            true
        }
        _ => false,
    }
}
