//! What the users of one execution share and how they wait: the shared state
//! ([`ExecutionState`], with [`ProgramState`] for a program's users), the [`Pacer`], the
//! [`Outbox`] samples leave by, and the waits (until a time, the next arrival, or a cancel).
//! Both kinds of user (`users`' plain loop and `steps`' program interpreter) build on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::PreparedExecution;
use super::pacing::{arrival_offset, pacer_gap};
use super::timer::PreciseTimer;
use crate::plan::Program;
use crate::stats::Sample;
use crate::variables::SharedCounters;

/// Samples a user buffers before sending them to the collector.
const BATCH_SAMPLES: usize = 64;
/// How long a sample may wait in a user's buffer.
const BATCH_AGE: Duration = Duration::from_millis(100);
/// Pause after a failed connect, so an unreachable target is not hammered in a hot loop.
pub(super) const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// A batch of samples, each with when it ended (from the start of the run).
pub type Batch = Vec<(Sample, Duration)>;

/// What every virtual user of one execution shares.
pub struct ExecutionState {
    pub execution: PreparedExecution,
    /// When this execution's schedule starts: the run's start, or its phase's.
    pub start: Instant,
    /// When the run started: samples are timed from it.
    pub run_start: Instant,
    pub samples: mpsc::UnboundedSender<Batch>,
    pub users: Arc<AtomicU64>,
    pub pacer: Option<Pacer>,
    pub arrivals: AtomicU64,
    pub timer: Option<PreciseTimer>,
    /// What users running the scenario's program share (`None`: a plain scenario).
    pub program: Option<ProgramState>,
    /// Turns true when requests still in flight must be given up (see `engine::run`).
    pub cancel: watch::Receiver<bool>,
    /// Requests given up in flight, across the run.
    pub cancelled: Arc<AtomicU64>,
    /// Why the run cannot go on (it is then aborted).
    pub problems: mpsc::UnboundedSender<String>,
}

impl ExecutionState {
    /// When the execution ends, if it is bounded by time.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let duration = self.execution.plan.duration();
        (!duration.is_zero()).then(|| at(self.start, duration))
    }
}

/// `start + offset`, or as far as the clock goes: never panics on an extreme offset.
pub(super) fn at(start: Instant, offset: Duration) -> Instant {
    start
        .checked_add(offset)
        .unwrap_or_else(|| start + Duration::from_secs(400 * 24 * 3600))
}

/// Waits until `until`, but never past `deadline`; false when the stop signal or the
/// deadline came first.
pub(super) async fn sleep_until(
    until: Instant,
    deadline: Option<Instant>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    if *stop.borrow() {
        return false;
    }
    let wake = deadline.map_or(until, |d| d.min(until));
    tokio::select! {
        () = tokio::time::sleep_until(wake) => deadline.is_none_or(|d| until < d),
        _ = stop.wait_for(|stopped| *stopped) => false,
    }
}

/// Takes the next arrival of the open model's schedule and waits until it is due;
/// `None` when the schedule is over or the run stopped.
pub(super) async fn take_arrival(
    shared: &ExecutionState,
    outbox: &mut Outbox<'_>,
    stop: &mut watch::Receiver<bool>,
) -> Option<Instant> {
    let execution = &shared.execution.plan;
    let rate = execution.arrival_rate.unwrap_or(1.0);
    let local = shared.arrivals.fetch_add(1, Ordering::Relaxed);
    let k = execution.shard.global_arrival(local);
    let offset = arrival_offset(k, rate, execution.ramp_up);
    if offset >= execution.duration() {
        return None;
    }
    // An arrival that could not start before the schedule ended (every connection busy
    // with a slow target) is not sent after it: the backlog would keep the run going
    // long past its end. The achieved rate shows the shortfall.
    if shared.deadline().is_some_and(|end| Instant::now() >= end) {
        return None;
    }
    let due = at(shared.start, offset);
    outbox.flush_before_waiting_until(due, Instant::now());
    wait_for_arrival(shared, due, stop).await.then_some(due)
}

/// Waits until an arrival is due: with the tokio timer until shortly before, then with the
/// precise timer, so the request leaves within tens of microseconds of its due time.
async fn wait_for_arrival(
    shared: &ExecutionState,
    due: Instant,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    const COARSE_UNTIL: Duration = Duration::from_millis(3);
    let coarse = due.checked_sub(COARSE_UNTIL).unwrap_or(due);
    if Instant::now() < coarse && !sleep_until(coarse, None, stop).await {
        return false;
    }
    if let Some(timer) = &shared.timer
        && Instant::now() < due
    {
        tokio::select! {
            () = timer.wait_until(due.into_std()) => {}
            _ = stop.wait_for(|stopped| *stopped) => return false,
        }
        return true;
    }
    sleep_until(due, None, stop).await
}

/// Runs `request` unless the run cancels requests in flight first: then it is dropped
/// unmeasured (counted in `cancelled`) and `None` comes back.
pub(super) async fn until_cancelled<T>(
    shared: &ExecutionState,
    cancel: &mut watch::Receiver<bool>,
    request: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        done = request => Some(done),
        _ = cancel.wait_for(|cancelled| *cancelled) => {
            shared.cancelled.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Spaces requests so that all users together stay under a rate (Taurus `throughput`),
/// growing linearly over the ramp-up.
pub struct Pacer {
    rate: f64,
    ramp: Duration,
    start: Instant,
    next: std::sync::Mutex<Instant>,
}

impl Pacer {
    /// A pacer for `rate` requests per second after `ramp`, from `start`.
    pub fn new(rate: f64, ramp: Duration, start: Instant) -> Self {
        Self {
            rate,
            ramp,
            start,
            next: std::sync::Mutex::new(start),
        }
    }

    /// Reserves the next free slot and returns when it is.
    pub(super) fn next_slot(&self) -> Instant {
        let now = Instant::now();
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = (*next).max(now);
        *next = at(slot, pacer_gap(self.rate, self.ramp, slot - self.start));
        slot
    }
}

/// A user's finished samples, sent to the collector in batches: one channel message per
/// sample would cost more than the request itself at high rates.
pub(super) struct Outbox<'a> {
    samples: Batch,
    oldest: Option<Instant>,
    channel: &'a mpsc::UnboundedSender<Batch>,
}

impl<'a> Outbox<'a> {
    pub(super) fn new(channel: &'a mpsc::UnboundedSender<Batch>) -> Self {
        Self {
            samples: Vec::with_capacity(BATCH_SAMPLES),
            oldest: None,
            channel,
        }
    }

    pub(super) fn push(&mut self, sample: Sample, ended: Duration, now: Instant) {
        self.samples.push((sample, ended));
        let oldest = *self.oldest.get_or_insert(now);
        if self.samples.len() >= BATCH_SAMPLES || now - oldest >= BATCH_AGE {
            self.flush();
        }
    }

    /// Sends what is buffered when the user is about to wait long enough to delay it.
    pub(super) fn flush_before_waiting_until(&mut self, until: Instant, now: Instant) {
        if until.saturating_duration_since(now) >= BATCH_AGE / 2 {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.samples.is_empty() {
            let batch = std::mem::replace(&mut self.samples, Vec::with_capacity(BATCH_SAMPLES));
            let _ = self.channel.send(batch);
        }
        self.oldest = None;
    }
}

impl Drop for Outbox<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// What the users of one execution running a program share.
#[derive(Debug, Default)]
pub struct ProgramState {
    /// An `action: stop` with `target: all-threads` ran.
    pub halted: AtomicBool,
    /// The global `__counter`.
    pub counters: Arc<SharedCounters>,
    /// The next row of each data source.
    pub cursors: Vec<AtomicU64>,
    /// Each Throughput Controller's passes and runs, across the users.
    pub throttles: Vec<(AtomicU64, AtomicU64)>,
}

impl ProgramState {
    /// State for `program`.
    pub fn new(program: &Program) -> Self {
        Self {
            cursors: program
                .data_sources
                .iter()
                .map(|_| AtomicU64::new(0))
                .collect(),
            throttles: (0..program.throttles)
                .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
                .collect(),
            ..Self::default()
        }
    }
}
