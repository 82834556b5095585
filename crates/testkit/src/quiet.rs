//! Quiet time for tests that measure small differences in latency. Tests in one binary run
//! in parallel on a machine of two cores: a test that compares timings takes
//! [`measuring`], which waits until no other test of the binary runs and keeps them out
//! until it is done; every other test of that binary takes [`sharing`], which runs beside
//! the others but never beside a measuring test.

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static LOCK: RwLock<()> = RwLock::const_new(());

/// Held by a test that measures: no other test of its binary runs meanwhile.
pub async fn measuring() -> RwLockWriteGuard<'static, ()> {
    LOCK.write().await
}

/// Held by every other test of a binary that has a measuring test.
pub async fn sharing() -> RwLockReadGuard<'static, ()> {
    LOCK.read().await
}
