//! Quiet time for tests that measure small differences in latency, under a plain `cargo test`
//! (whose tests of one binary run in parallel threads; nextest runs each test in a process of
//! its own and keeps the measuring ones alone by its configuration). A test that compares
//! timings takes [`measuring`], which waits until no other test that takes the lock runs and
//! keeps them out until it is done; the other tests of its module take [`sharing`], which runs
//! beside the others but never beside a measuring test. Tests of other modules do not wait:
//! `.ci/run` without nextest runs one test at a time.

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static LOCK: RwLock<()> = RwLock::const_new(());

/// Held by a test that measures: no test that takes [`sharing`] runs meanwhile.
pub async fn measuring() -> RwLockWriteGuard<'static, ()> {
    LOCK.write().await
}

/// Held by every other test of a module that has a measuring test.
pub async fn sharing() -> RwLockReadGuard<'static, ()> {
    LOCK.read().await
}
