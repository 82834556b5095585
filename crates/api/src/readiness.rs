//! The process's readiness, shared by every worker's `/readyz`. It does not flap after an outage: the workers'
//! connections come back one by one (each retries at its own pace), so for
//! [`READY_AFTER`] after the database answered again, a check that fails on a worker whose
//! connection is not back yet does not turn the process's readiness back to 503 (the
//! probes saw 200, 503, 503, 200 within 300 ms). Going from ready to 503 otherwise, and
//! from 503 to ready, is at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long after the database answered again a failed readiness check is taken for a
/// worker whose connection is still coming back rather than for a new outage.
pub const READY_AFTER: Duration = Duration::from_secs(1);

/// The process's readiness as every worker's `/readyz` shares it.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    epoch: Instant,
    /// Whether the last check that counted succeeded.
    ready: AtomicBool,
    /// When the process last became ready after a failed check (milliseconds since
    /// `epoch`, plus one; 0: never).
    recovered: AtomicU64,
}

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new(Shared {
            epoch: Instant::now(),
            ready: AtomicBool::new(true),
            recovered: AtomicU64::new(0),
        }))
    }
}

impl Readiness {
    fn millis(&self) -> u64 {
        u64::try_from(self.0.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Notes a successful check.
    pub(crate) fn succeeded(&self) {
        if !self.0.ready.swap(true, Ordering::Relaxed) {
            self.0.recovered.store(self.millis(), Ordering::Relaxed);
        }
    }

    /// Notes a failed check; whether it counts (the process is not ready), rather than
    /// being taken for a straggler just after a recovery.
    pub(crate) fn failed(&self) -> bool {
        let recovered = self.0.recovered.load(Ordering::Relaxed);
        let straggler = recovered != 0
            && self.0.ready.load(Ordering::Relaxed)
            && self.millis().saturating_sub(recovered) < READY_AFTER.as_millis() as u64;
        if !straggler {
            self.0.ready.store(false, Ordering::Relaxed);
        }
        !straggler
    }
}
