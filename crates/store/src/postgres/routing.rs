//! Where a call goes and how long it may take: reads to a replica in turn (the primary
//! when none answers in time, or right after a write), writes to the primary's write
//! connection and, past a held row lock, to the connection for lock waits; each within
//! its deadline.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::PostgresStore;
use super::connection::{Answer, Params, Query};
use super::endpoint::{Endpoint, Slot};
use crate::StoreError;
use crate::db_stats::DbFailure;

/// How long past the deadline a write waiting for a lock waits for the server's own
/// `lock_timeout` to end it (the connection is kept then) before giving up on its own.
const LOCK_WAIT_SLACK: Duration = Duration::from_millis(50);

impl PostgresStore {
    /// Runs `query` on a shared connection of `slot` within `deadline`; past it the
    /// connection is dropped (it may be hung: a stopped server, a lost network) so that the
    /// next call opens a new one. On a live connection, when `deadline` is its endpoint's,
    /// the connection's watchdog keeps it: no timer of the call's own.
    async fn within_deadline(
        &self,
        endpoint: &Endpoint,
        slot: &Slot,
        deadline: Duration,
        query: Query,
        params: &Params<'_>,
    ) -> Result<Answer, StoreError> {
        match slot.usable() {
            Some(conn) if deadline >= endpoint.deadline => {
                self.run_on(&conn, deadline, query, params).await
            }
            // Connecting first (its phases have deadlines of their own, but the call as a
            // whole keeps `deadline`), or less time than the watchdog gives (a read falling
            // back from a replica): rare, so a timer of the call's own, boxed to keep the
            // usual call's future small.
            _ => {
                let attempt = async {
                    let conn = self.connection_of(endpoint, slot).await?;
                    self.run_on(&conn, deadline, query, params).await
                };
                Box::pin(self.timed(slot, deadline, attempt)).await
            }
        }
    }

    /// `attempt` (a call on `slot`) with a timer of its own: past `deadline`, the slot's
    /// connection is dropped.
    async fn timed(
        &self,
        slot: &Slot,
        deadline: Duration,
        attempt: impl Future<Output = Result<Answer, StoreError>>,
    ) -> Result<Answer, StoreError> {
        match tokio::time::timeout(deadline, attempt).await {
            Ok(result) => result,
            Err(_) => {
                self.stats.failed(DbFailure::Timeout);
                slot.live.store(None);
                tracing::warn!(
                    deadline_ms = deadline.as_millis(),
                    "PostgreSQL did not answer in time; replacing the connection"
                );
                Err(StoreError::timed_out(deadline))
            }
        }
    }

    /// The deadline of one call: the server's own statement timeout; the watchdog gives up
    /// on a call within two of its ticks after it.
    pub(super) fn deadline(&self) -> Duration {
        self.timeout
    }

    /// Runs a read on a replica, taken in turn, when there are any and this hub has
    /// not written within the window; on the primary when there are none, or when the
    /// replica does not answer within half the deadline (then the primary has what is left
    /// of the deadline: the call as a whole keeps it).
    pub(super) async fn read(
        &self,
        query: Query,
        params: &Params<'_>,
    ) -> Result<Answer, StoreError> {
        if self.replicas.is_empty() || self.hub.wrote_within(self.read_primary_after_write) {
            return self.on_primary(self.deadline(), query, params).await;
        }
        let started = Instant::now();
        let index = self.next_replica.fetch_add(1, Ordering::Relaxed) % self.replicas.len();
        let replica = &self.replicas[index];
        let answer = self
            .within_deadline(replica, replica.reader(), replica.deadline, query, params)
            .await;
        match answer {
            Err(StoreError::Unavailable { reason, .. }) => {
                tracing::debug!(%reason, replica = index, "replica unavailable; reading from the primary");
            }
            answered => return answered,
        }
        let left = self.deadline().saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(StoreError::timed_out(self.deadline()));
        }
        self.on_primary(left, query, params).await
    }

    /// Runs a query on one of the primary's read connections within `deadline`.
    pub(super) async fn on_primary(
        &self,
        deadline: Duration,
        query: Query,
        params: &Params<'_>,
    ) -> Result<Answer, StoreError> {
        let primary = &self.primary;
        self.within_deadline(primary, primary.reader(), deadline, query, params)
            .await
    }

    /// Runs a write on the primary's write connection, noting when it happened; one that
    /// meets a row lock held longer than [`LOCK_PROBE`] waits for it on the connection for
    /// lock waits, within what is left of the deadline.
    pub(super) async fn write(
        &self,
        query: Query,
        params: &Params<'_>,
    ) -> Result<Answer, StoreError> {
        let started = Instant::now();
        let deadline = self.deadline();
        let mut result = self
            .within_deadline(&self.primary, &self.writer, deadline, query, params)
            .await;
        if result.as_ref().is_err_and(StoreError::is_lock_timeout) {
            result = match deadline.checked_sub(started.elapsed()) {
                Some(left) if !left.is_zero() => self.wait_for_lock(left, query, params).await,
                _ => Err(StoreError::timed_out(deadline)),
            };
        }
        if !self.replicas.is_empty() {
            self.hub.wrote();
        }
        result
    }

    /// Runs a write that met a held row lock on the connection for lock waits. The server
    /// ends the wait at its `lock_timeout` (the deadline, counted from a little later than
    /// the call's); past `left` and [`LOCK_WAIT_SLACK`] the call gives up by itself and the
    /// connection is replaced (its session still waits for the lock until then).
    async fn wait_for_lock(
        &self,
        left: Duration,
        query: Query,
        params: &Params<'_>,
    ) -> Result<Answer, StoreError> {
        let attempt = async {
            let conn = self.connection_of(&self.primary, &self.lock_waits).await?;
            self.run_on(&conn, left, query, params).await
        };
        match tokio::time::timeout(left + LOCK_WAIT_SLACK, attempt).await {
            Ok(Err(err)) if err.is_lock_timeout() => Err(StoreError::unavailable(format!(
                "no answer within the deadline of {} ms (another session holds the row's lock)",
                self.deadline().as_millis()
            ))),
            Ok(result) => result,
            Err(_) => {
                self.stats.failed(DbFailure::Timeout);
                self.lock_waits.live.store(None);
                Err(StoreError::unavailable(format!(
                    "no answer within the deadline of {} ms (waiting for a row lock)",
                    self.deadline().as_millis()
                )))
            }
        }
    }
}
