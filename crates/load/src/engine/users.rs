//! The virtual users: the closed model (each user thinks, sends, waits for the response,
//! repeats) and the open model (users take the next due arrival from a shared schedule).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::exchange::Connections;
use super::pacing::{arrival_offset, pacer_gap, start_offset};
use super::session::{CookieJar, send_following_redirects};
use super::steps::{ProgramState, run_program, think_pause_fast, user_random};
use super::timer::PreciseTimer;
use super::{PreparedExecution, PreparedRequest};
use crate::stats::{ErrorKind, Sample};

/// Samples a user buffers before sending them to the collector.
const BATCH_SAMPLES: usize = 64;
/// How long a sample may wait in a user's buffer.
const BATCH_AGE: Duration = Duration::from_millis(100);
/// Pause after a failed connect, so an unreachable target is not hammered in a hot loop.
pub(super) const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// A batch of samples, each with when it ended (from the start of the run).
pub type Batch = Vec<(Sample, Duration)>;

/// What every virtual user of one execution shares.
pub struct Shared {
    pub execution: PreparedExecution,
    pub start: Instant,
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

impl Shared {
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

/// One closed-model user: start at its offset in the ramp-up, then pass through the
/// scenario until the iterations are done, the time is up or the run stops.
pub async fn closed_model_user(shared: &Shared, user: u32, mut stop: watch::Receiver<bool>) {
    let execution = &shared.execution.plan;
    // A shard's users take the numbers (and so the start offsets) they have in the whole plan.
    let user = execution.shard.global_user(user);
    let offset = start_offset(
        user,
        execution.concurrency,
        execution.ramp_up,
        execution.steps,
    );
    let deadline = shared.deadline();
    if !sleep_until(at(shared.start, offset), deadline, &mut stop).await {
        return;
    }
    shared.users.fetch_add(1, Ordering::Relaxed);
    if let (Some(program), Some(state)) = (&execution.scenario.program, &shared.program) {
        run_program(shared, program, state, user, stop, deadline).await;
    } else {
        plain_user(shared, user, stop, deadline).await;
    }
    shared.users.fetch_sub(1, Ordering::Relaxed);
}

/// A user of a scenario that is a plain list of requests: prepared bytes, nothing rendered.
async fn plain_user(
    shared: &Shared,
    user: u32,
    mut stop: watch::Receiver<bool>,
    deadline: Option<Instant>,
) {
    let execution = &shared.execution.plan;
    let mut connections = Connections::default();
    // Empty (no allocation) until a response sets a cookie.
    let mut jar = CookieJar::default();
    let mut outbox = Outbox::new(&shared.samples);
    let mut random = user_random(user);
    let mut cancel = shared.cancel.clone();
    let mut iteration = 0;
    // The clock is read once per request where possible: at high rates reading it was a
    // visible share of the generator's own CPU time.
    let mut now = Instant::now();
    'iterations: while execution.iterations.is_none_or(|n| iteration < n) {
        for step in shared.execution.requests.iter() {
            if *stop.borrow() || deadline.is_some_and(|d| now >= d) {
                break 'iterations;
            }
            // Taurus makes think-time a JMeter timer, and timers run before their sampler.
            let think_time = think_pause_fast(&step.request, &mut random);
            if !think_time.is_zero() {
                let think_until = at(now, think_time);
                outbox.flush_before_waiting_until(think_until, now);
                if !sleep_until(think_until, deadline, &mut stop).await {
                    break 'iterations;
                }
                now = Instant::now();
            }
            if let Some(pacer) = &shared.pacer {
                let slot = pacer.next_slot();
                outbox.flush_before_waiting_until(slot, now);
                if !sleep_until(slot, deadline, &mut stop).await {
                    break 'iterations;
                }
                now = Instant::now();
            }
            let jar = execution.scenario.store_cookie.then_some(&mut jar);
            let to = Destination {
                connections: &mut connections,
                jar,
                cancel: &mut cancel,
            };
            match send(shared, &mut outbox, to, step, now).await {
                Some(ended) => now = ended,
                None => break 'iterations,
            }
        }
        iteration += 1;
    }
}

/// Open model: users take the next scheduled arrival from a shared counter, so a late
/// request is sent as soon as any connection is free and its latency counts from when it
/// was due (coordinated omission corrected).
pub async fn open_model_user(shared: &Shared, user: u32, stop: watch::Receiver<bool>) {
    let execution = &shared.execution.plan;
    shared.users.fetch_add(1, Ordering::Relaxed);
    if let (Some(program), Some(state)) = (&execution.scenario.program, &shared.program) {
        // Each request of the program takes the next arrival (see `steps`).
        let user = execution.shard.global_user(user);
        run_program(shared, program, state, user, stop, shared.deadline()).await;
    } else {
        plain_open_model_user(shared, stop).await;
    }
    shared.users.fetch_sub(1, Ordering::Relaxed);
}

/// An open-model user of a plain scenario: each arrival sends the next request.
async fn plain_open_model_user(shared: &Shared, mut stop: watch::Receiver<bool>) {
    let execution = &shared.execution.plan;
    let mut connections = Connections::default();
    let mut jar = CookieJar::default();
    let mut outbox = Outbox::new(&shared.samples);
    let mut cancel = shared.cancel.clone();
    'arrivals: loop {
        for step in shared.execution.requests.iter() {
            let Some(due) = take_arrival(shared, &mut outbox, &mut stop).await else {
                break 'arrivals;
            };
            let jar = execution.scenario.store_cookie.then_some(&mut jar);
            let to = Destination {
                connections: &mut connections,
                jar,
                cancel: &mut cancel,
            };
            if send(shared, &mut outbox, to, step, due).await.is_none() {
                break 'arrivals;
            }
        }
    }
}

/// Takes the next arrival of the open model's schedule and waits until it is due;
/// `None` when the schedule is over or the run stopped.
pub(super) async fn take_arrival(
    shared: &Shared,
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
async fn wait_for_arrival(shared: &Shared, due: Instant, stop: &mut watch::Receiver<bool>) -> bool {
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
    shared: &Shared,
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

/// What a request is sent with: the user's connections, its cookies (when stored) and
/// the run's cancel signal.
struct Destination<'a> {
    connections: &'a mut Connections,
    jar: Option<&'a mut CookieJar>,
    cancel: &'a mut watch::Receiver<bool>,
}

/// Sends one request (with the jar's cookies, following redirects), hands its sample to
/// the outbox and returns when it finished (after the pause that follows a failed
/// connect); `None` when the run cancelled it in flight.
async fn send(
    shared: &Shared,
    outbox: &mut Outbox<'_>,
    to: Destination<'_>,
    step: &PreparedRequest,
    due: Instant,
) -> Option<Instant> {
    let with_cookies;
    let step = match to.jar.as_deref() {
        Some(cookies) if !cookies.is_empty() => {
            let mut request = (*step.request).clone();
            cookies.add_to(&mut request.headers);
            with_cookies = step.with_request(request, step.address, step.tls.clone());
            &with_cookies
        }
        _ => step,
    };
    let exchange = send_following_redirects(to.connections, to.jar, step, due, shared.start);
    let measured = until_cancelled(shared, to.cancel, exchange).await?;
    let (sample, ended) = (measured.sample, measured.ended);
    let connect_failed = matches!(sample.error, Some((ErrorKind::Connect, _)));
    outbox.push(sample, ended - shared.start, ended);
    if connect_failed {
        tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
        return Some(Instant::now());
    }
    Some(ended)
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
