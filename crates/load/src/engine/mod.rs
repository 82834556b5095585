//! The engine: virtual users on tokio, each with one keep-alive HTTP/1.1 connection (the
//! load generator's own minimal client, [`crate::http1`]), following the plan's ramp-up,
//! hold-for, iterations, throughput cap or open-model arrival rate. Samples go to one
//! collector over a channel; the engine returns what it measured as a [`Finished`] and
//! knows nothing of reports.
//! Over 600 lines: the run's loop, its preparation and its early stop share the state
//! kept here.

mod exchange;
mod execution;
pub(crate) mod pacing;
mod relocate;
mod session;
mod steps;
mod think;
mod timer;
mod users;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::assertion::ResponseParts;
use crate::criteria::Monitor;
use crate::http1;
use crate::plan::{Execution, Plan, Request};
use crate::stats::{Collector, ErrorKind, Second};
use execution::{Batch, ExecutionState, Pacer, ProgramState};
use users::{closed_model_user, open_model_user};

/// How long every request may fail for a reason waiting cannot fix before the run gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(3);
/// Longest wait for resolving a host before the run.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// After a stop signal, a criterion or an abort: how long requests in flight may still
/// finish before they are cancelled. Short, so a run ends within 2 s of Ctrl-C or SIGTERM
/// (a Kubernetes pod's grace period is spent waiting for the report, not for a stuck target).
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ending {
    /// The plan ran to its end.
    Completed,
    /// The stop signal (Ctrl-C, SIGTERM) came first.
    Interrupted,
    /// A pass/fail criterion stopped it.
    StoppedByCriterion,
    /// The run could not go on: see [`Finished::problem`].
    Aborted,
}

impl Ending {
    /// How it reads in reports: `completed`, `interrupted`, `stopped-by-criterion`, `aborted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Interrupted => "interrupted",
            Self::StoppedByCriterion => "stopped-by-criterion",
            Self::Aborted => "aborted",
        }
    }
}

/// Live figures, once per second while the test runs.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Time since the start.
    pub elapsed: Duration,
    /// Planned duration (zero when bounded by iterations only).
    pub total: Duration,
    /// Active virtual users.
    pub users: u64,
    /// The second that just ended.
    pub second: Second,
    /// Counts since the start and the criteria's state, for live views.
    pub totals: Arc<crate::totals::Totals>,
}

/// What a run measured.
pub struct Finished {
    /// Every sample's statistics.
    pub collector: Collector,
    /// The criteria, as they stood at the end.
    pub monitor: Monitor,
    /// Wall-clock duration.
    pub duration: Duration,
    /// How it ended.
    pub ending: Ending,
    /// Why an aborted run could not go on.
    pub problem: Option<String>,
    /// Requests given up in flight at the stop (see [`STOP_GRACE`] and
    /// [`Plan::grace_after_schedule`]): not measured, so not in the statistics.
    pub cancelled: u64,
}

/// One request ready to send: its spec, where it goes, its bytes on the wire and what to
/// keep of its response, all computed once before the run.
pub struct PreparedRequest {
    /// The request as planned.
    pub request: Arc<Request>,
    /// Where its host resolved to (`None`: every attempt is a connect error).
    pub address: Option<SocketAddr>,
    /// The request as written on the connection.
    pub wire: Bytes,
    /// What its assertions read of the response.
    pub parts: ResponseParts,
    /// For https: how to open its TLS session.
    pub tls: Option<TlsTarget>,
    /// The run's count of TCP connects (shared by every request).
    pub connects: Arc<ConnectWatch>,
    /// For a request whose rendered URL may name its own host (see
    /// [`crate::plan::DynamicRequest::origin`]): how an https one opens its session.
    pub run_time_tls: Option<Arc<relocate::RunTimeTls>>,
}

/// The TCP connects of a run so far: the early stop tells a target that never completes a
/// connect (its packets dropped, its listen backlog full) from a slow one.
#[derive(Debug, Default)]
pub struct ConnectWatch {
    /// Connects begun.
    pub begun: AtomicU64,
    /// Connects whose TCP handshake completed.
    pub established: AtomicU64,
    /// Where the first connect went.
    pub first_address: std::sync::OnceLock<SocketAddr>,
}

/// How one https request's TLS session is opened.
#[derive(Clone)]
pub struct TlsTarget {
    /// The run's client setup (shared).
    pub connector: tokio_rustls::TlsConnector,
    /// The name its certificate must carry, sent as SNI.
    pub name: rustls::pki_types::ServerName<'static>,
    /// The CA files given (`--ca-cert`), named when a certificate is refused.
    pub ca_certs: Arc<[std::path::PathBuf]>,
}

impl PreparedRequest {
    /// `request` in place of this one's, with its wire bytes, keeping what is read of the
    /// response.
    pub(crate) fn with_request(
        &self,
        request: Request,
        address: Option<SocketAddr>,
        tls: Option<TlsTarget>,
    ) -> Self {
        Self {
            wire: http1::wire_bytes(&request),
            parts: self.parts,
            address,
            tls,
            request: Arc::new(request),
            connects: Arc::clone(&self.connects),
            run_time_tls: self.run_time_tls.clone(),
        }
    }
}

/// An execution with its requests prepared.
pub struct PreparedExecution {
    /// The execution as planned.
    pub plan: Execution,
    /// Its scenario's requests, in order.
    pub requests: Arc<[PreparedRequest]>,
}

/// Resolves each distinct host:port once (unresolvable ones become connect errors) and
/// prepares every request's bytes, and the TLS setup when a request is https (an
/// unusable CA file is the error).
pub async fn prepare(
    plan: &Plan,
    connects: &Arc<ConnectWatch>,
) -> Result<Vec<PreparedExecution>, String> {
    let any_https = plan
        .executions
        .iter()
        .flat_map(|e| &e.scenario.requests)
        .any(|r| r.https && !r.origin_at_run_time());
    let run_time_tls = Arc::new(relocate::RunTimeTls::new(&plan.tls));
    let connector = if any_https {
        Some(tokio_rustls::TlsConnector::from(crate::tls::client_config(
            &plan.tls,
        )?))
    } else {
        None
    };
    let ca_certs: Arc<[std::path::PathBuf]> = plan.tls.ca_certs.clone().into();
    let mut resolved: HashMap<(String, u16), Option<SocketAddr>> = HashMap::new();
    let mut prepared = Vec::with_capacity(plan.executions.len());
    for execution in &plan.executions {
        let mut requests = Vec::with_capacity(execution.scenario.requests.len());
        for request in &execution.scenario.requests {
            let key = (request.host.clone(), request.port);
            let address = match resolved.get(&key) {
                // Resolved per user once rendered.
                _ if request.origin_at_run_time() => None,
                Some(address) => *address,
                None => {
                    let lookup = tokio::net::lookup_host((key.0.as_str(), key.1));
                    // A stuck resolver must not hold the run before its start.
                    let address = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .and_then(|mut a| a.next());
                    if address.is_none() {
                        tracing::warn!(host = %key.0, "cannot resolve host");
                    }
                    resolved.insert(key, address);
                    address
                }
            };
            let tls = match (&connector, request.https) {
                (Some(connector), true) if !request.origin_at_run_time() => Some(TlsTarget {
                    connector: connector.clone(),
                    name: crate::tls::server_name(&request.host)?,
                    ca_certs: Arc::clone(&ca_certs),
                }),
                _ => None,
            };
            let parts = ResponseParts::read_by(
                &request.assertions,
                &request.json_assertions,
                request.assert_body_limit,
            );
            requests.push(PreparedRequest {
                tls,
                wire: http1::wire_bytes(request),
                parts: ResponseParts {
                    body: parts.body
                        || !request.extractors.is_empty()
                        || !request.xpath_assertions.is_empty(),
                    headers: parts.headers || extracts_headers(request),
                    session_headers: execution.scenario.store_cookie || request.follow_redirects,
                    ..parts
                },
                request: Arc::clone(request),
                address,
                connects: Arc::clone(connects),
                // Any rendered target may be a full URL, as JMeter takes one.
                run_time_tls: request
                    .dynamic
                    .as_ref()
                    .filter(|d| d.origin.is_some() || d.target.is_dynamic())
                    .map(|_| Arc::clone(&run_time_tls)),
            });
        }
        prepared.push(PreparedExecution {
            plan: execution.clone(),
            requests: requests.into(),
        });
    }
    Ok(prepared)
}

/// Whether a request's response headers are all read: for a header extractor.
fn extracts_headers(request: &Request) -> bool {
    request
        .extractors
        .iter()
        .any(|e| e.subject == crate::extract::ExtractSubject::Headers)
}

/// Runs `plan` until it ends or `interrupt` completes; `progress` hears every second.
pub async fn run(
    plan: &Plan,
    interrupt: impl Future<Output = ()> + Send,
    mut progress: impl FnMut(&Progress),
) -> Finished {
    let connects = Arc::new(ConnectWatch::default());
    tokio::pin!(interrupt);
    let prepared = tokio::select! {
        prepared = prepare(plan, &connects) => prepared,
        () = &mut interrupt => {
            let mut finished = Finished::unstarted(plan, String::new());
            (finished.ending, finished.problem) = (Ending::Interrupted, None);
            return finished;
        }
    };
    let executions = match prepared {
        Ok(executions) => executions,
        Err(problem) => return Finished::unstarted(plan, problem),
    };
    // The schedule starts once every request is prepared: preparing 100,000 requests (or
    // waiting on a slow resolver) must not eat into the hold-for.
    let start = Instant::now();
    let (stop_tx, stop) = watch::channel(false);
    let mut stopper = Stopper {
        signal: stop_tx,
        ending: Ending::Completed,
        stopping: false,
    };
    let total = plan.schedule();
    let (problems_tx, mut problems) = mpsc::unbounded_channel::<String>();
    let run = RunShared {
        start,
        stop,
        cancelled: Arc::new(AtomicU64::new(0)),
        problems: problems_tx,
        users: Arc::new(AtomicU64::new(0)),
    };
    let mut phases = phases(executions);
    let first = phases.pop().unwrap_or_default();
    let mut phase = launch(first, start, plan.grace_after_schedule(), &run);
    let far = execution::at(start, crate::plan::MAX_DURATION);
    let cancel_timer = tokio::time::sleep_until(phase.cancel_at.unwrap_or(far));
    tokio::pin!(cancel_timer);
    let mut collector = collector_for(plan);
    let mut monitor = Monitor::new(plan.criteria.clone(), plan.labels.clone());
    let mut problem = None;
    let mut hopeless = HopelessStart::default();
    // Ticks in the middle of each second: the active users then stand for that second, and
    // the previous second (over half a second ago) is closed.
    let mut ticker =
        tokio::time::interval_at(start + Duration::from_millis(500), Duration::from_secs(1));
    let mut users_at: Vec<u64> = Vec::new();
    loop {
        tokio::select! {
            received = phase.samples.recv() => match received {
                Some(batch) => {
                    for (sample, ended) in &batch {
                        collector.record(sample, *ended);
                        hopeless.record(sample, *ended);
                    }
                }
                // Every user of the phase has finished: the next phase starts, unless the
                // run is stopping.
                None => match phases.pop() {
                    Some(next) if !stopper.stopping => {
                        phase = launch(next, Instant::now(), plan.grace_after_schedule(), &run);
                        cancel_timer.as_mut().reset(phase.cancel_at.unwrap_or(far));
                    }
                    _ => break,
                },
            },
            Some(message) = problems.recv() => {
                problem.get_or_insert(message);
                stopper.stop(Ending::Aborted);
            },
            () = &mut cancel_timer, if phase.cancel_at.is_some() => {
                phase.cancel_at = None;
                let _ = phase.cancel.send(true);
            },
            _ = ticker.tick() => {
                let elapsed = start.elapsed();
                users_at.push(run.users.load(Ordering::Relaxed));
                let closed = collector.close_until(elapsed.as_secs(), &users_at).last().cloned();
                if monitor.on_seconds(collector.timeline()) {
                    stopper.stop(Ending::StoppedByCriterion);
                }
                if let Some(last) = closed {
                    let totals = Arc::new(crate::totals::Totals::of(&collector, &monitor));
                    progress(&Progress { elapsed, total, users: last.users, second: last, totals });
                }
                if let Some(give_up) = hopeless.verdict(elapsed, &connects) {
                    problem.get_or_insert(give_up.reason);
                    stopper.stop(Ending::Aborted);
                    if give_up.stuck {
                        // The users wait on connects that end only at the request timeout,
                        // with nothing to measure: the run ends now, not then.
                        break;
                    }
                }
            },
            () = &mut interrupt, if !stopper.stopping => stopper.stop(Ending::Interrupted),
        }
        if stopper.stopping && !*phase.cancel.borrow() {
            let soon = Instant::now() + STOP_GRACE;
            if phase.cancel_at.is_none_or(|at| at > soon) {
                phase.cancel_at = Some(soon);
                cancel_timer.as_mut().reset(soon);
            }
        }
    }
    // A problem reported as the last users finished still counts.
    while let Ok(message) = problems.try_recv() {
        problem.get_or_insert(message);
        stopper.ending = Ending::Aborted;
    }
    let duration = start.elapsed();
    let end_second = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    collector.close_until(end_second, &users_at);
    monitor.on_seconds(collector.timeline());
    Finished {
        collector,
        monitor,
        duration,
        ending: stopper.ending,
        problem,
        cancelled: run.cancelled.load(Ordering::Relaxed),
    }
}

impl Finished {
    /// A run that could not start, and why.
    fn unstarted(plan: &Plan, problem: String) -> Self {
        Self {
            collector: collector_for(plan),
            monitor: Monitor::new(plan.criteria.clone(), plan.labels.clone()),
            duration: Duration::ZERO,
            ending: Ending::Aborted,
            problem: Some(problem),
            cancelled: 0,
        }
    }
}

/// Tells the users to stop, remembering why the run first had to.
struct Stopper {
    signal: watch::Sender<bool>,
    ending: Ending,
    stopping: bool,
}

impl Stopper {
    fn stop(&mut self, why: Ending) {
        if !self.stopping {
            self.stopping = true;
            self.ending = why;
            let _ = self.signal.send(true);
        }
    }
}

/// What the users of every phase share with the orchestration.
struct RunShared {
    /// The run's start: samples are timed from it.
    start: Instant,
    /// Turns true when the users must stop.
    stop: watch::Receiver<bool>,
    /// Requests given up in flight, across the run.
    cancelled: Arc<AtomicU64>,
    /// Why a user could not go on.
    problems: mpsc::UnboundedSender<String>,
    /// Users active now.
    users: Arc<AtomicU64>,
}

/// A phase's executions once launched.
struct LaunchedPhase {
    /// Batches of finished samples; closed when every user of the phase has finished.
    samples: mpsc::UnboundedReceiver<Batch>,
    /// Turns true when the phase's requests still in flight must be given up.
    cancel: watch::Sender<bool>,
    /// When that happens: the end of the phase's schedule plus its grace, or shortly after
    /// a stop (`None`: a phase bounded by iterations only, until a stop).
    cancel_at: Option<Instant>,
}

/// The prepared executions by phase, the first to run last (for `pop`).
fn phases(executions: Vec<PreparedExecution>) -> Vec<Vec<PreparedExecution>> {
    let mut by_phase: std::collections::BTreeMap<crate::plan::Phase, Vec<PreparedExecution>> =
        std::collections::BTreeMap::new();
    for execution in executions {
        by_phase
            .entry(execution.plan.phase)
            .or_default()
            .push(execution);
    }
    by_phase.into_values().rev().collect()
}

/// Starts the users of one phase's executions on the worker threads, their schedule from
/// `phase_start`.
fn launch(
    executions: Vec<PreparedExecution>,
    phase_start: Instant,
    grace: Duration,
    run: &RunShared,
) -> LaunchedPhase {
    let (samples_tx, samples) = mpsc::unbounded_channel::<Batch>();
    let (cancel_tx, cancel) = watch::channel(false);
    let length = executions
        .iter()
        .map(|e| e.plan.duration())
        .max()
        .unwrap_or_default();
    // Requests in flight are given up at the end of the schedule plus its grace: the run's
    // end never waits on a stuck target.
    let cancel_at =
        (!length.is_zero()).then(|| execution::at(execution::at(phase_start, length), grace));
    let open_model = executions.iter().any(|e| e.plan.arrival_rate.is_some());
    let timer = open_model.then(timer::PreciseTimer::start).flatten();
    let shared: Vec<Arc<ExecutionState>> = executions
        .into_iter()
        .map(|execution| {
            let program = execution
                .plan
                .scenario
                .program
                .as_deref()
                .map(ProgramState::new);
            Arc::new(ExecutionState {
                pacer: execution.plan.throughput.map(|rate| {
                    Pacer::new(
                        execution.plan.shard.rate(rate),
                        execution.plan.ramp_up,
                        phase_start,
                    )
                }),
                execution,
                start: phase_start,
                run_start: run.start,
                samples: samples_tx.clone(),
                users: Arc::clone(&run.users),
                arrivals: AtomicU64::new(0),
                timer: timer.clone(),
                program,
                cancel: cancel.clone(),
                cancelled: Arc::clone(&run.cancelled),
                problems: run.problems.clone(),
            })
        })
        .collect();
    spawn_workers(&shared, &run.stop, &run.problems);
    LaunchedPhase {
        samples,
        cancel: cancel_tx,
        cancel_at,
    }
}

/// A collector for `plan`'s labels, with per-second windows for the labels and percentile
/// levels its criteria watch.
fn collector_for(plan: &Plan) -> Collector {
    let levels: Vec<f64> = plan.criteria.iter().filter_map(|c| c.level()).collect();
    let watched: Vec<usize> = plan
        .criteria
        .iter()
        .filter_map(|c| c.label.as_ref())
        .filter_map(|label| plan.labels.iter().position(|l| l == label))
        .collect();
    Collector::new(plan.labels.len(), &levels, &watched)
}

/// Watches the first seconds of a run for failures that waiting cannot fix: when every
/// request in them failed to connect (no such host, connection refused), or no connect
/// completed at all (packets dropped, a full listen backlog), the run gives up instead of
/// measuring errors for its whole duration.
#[derive(Default)]
struct HopelessStart {
    decided: bool,
    connect_failures: u64,
    first_message: Option<Arc<str>>,
}

impl HopelessStart {
    fn record(&mut self, sample: &crate::stats::Sample, ended: Duration) {
        if self.decided || ended >= GIVE_UP_AFTER {
            return;
        }
        match &sample.error {
            Some((ErrorKind::Connect, message)) => {
                self.connect_failures += 1;
                self.first_message
                    .get_or_insert_with(|| Arc::clone(message));
            }
            // A response, or any other error: the target can be reached.
            _ => self.decided = true,
        }
    }

    /// Once the first seconds are over: why the run should stop, if they showed nothing but
    /// connect failures, or connects that never completed.
    fn verdict(&mut self, elapsed: Duration, connects: &ConnectWatch) -> Option<GiveUp> {
        if self.decided || elapsed < GIVE_UP_AFTER {
            return None;
        }
        self.decided = true;
        let seconds = GIVE_UP_AFTER.as_secs();
        if let Some(message) = self.first_message.as_deref() {
            return Some(GiveUp {
                reason: format!(
                    "every request in the first {seconds} s failed to connect ({message}): is the target running, and is its address right?"
                ),
                stuck: false,
            });
        }
        let begun = connects.begun.load(Ordering::Relaxed);
        if begun == 0 || connects.established.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let target = connects
            .first_address
            .get()
            .map_or_else(|| "the target".to_owned(), ToString::to_string);
        Some(GiveUp {
            reason: format!(
                "no connection to {target} was established in the first {seconds} s ({begun} connect attempt(s), none completed): the target drops connection attempts (a firewall, a full listen backlog, a wrong address?)"
            ),
            stuck: true,
        })
    }
}

/// Why the run gives up early.
struct GiveUp {
    reason: String,
    /// The users are stuck in connects that end only at the request timeout.
    stuck: bool,
}

/// Runs the users on one single-threaded runtime per core, as wrk runs one event loop per
/// thread: a user and its connection stay on one thread, with no work stealing or
/// cross-thread wake-ups per request. A user that panics is reported on `problems`.
fn spawn_workers(
    shared: &[Arc<ExecutionState>],
    stop: &watch::Receiver<bool>,
    problems: &mpsc::UnboundedSender<String>,
) {
    let users: usize = shared
        .iter()
        .map(|s| s.execution.plan.shard_users() as usize)
        .sum();
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(users.max(1));
    let fallback = tokio::runtime::Handle::current();
    for worker in 0..workers {
        // Worker `w` runs the users whose running number is `w` modulo `workers`.
        let share: Vec<(Arc<ExecutionState>, u32)> = shared
            .iter()
            .scan(0usize, |first, execution| {
                let from = *first;
                *first += execution.execution.plan.shard_users() as usize;
                Some((execution, from))
            })
            .flat_map(|(execution, from)| {
                let skip = (worker + workers - from % workers) % workers;
                (0..execution.execution.plan.shard_users())
                    .skip(skip)
                    .step_by(workers)
                    .map(move |user| (Arc::clone(execution), user))
            })
            .collect();
        let stop = stop.clone();
        let problems = problems.clone();
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => {
                let spawned = std::thread::Builder::new()
                    .name(format!("peregrine-load-{worker}"))
                    .spawn(move || runtime.block_on(run_users(share, stop, problems)));
                if let Err(err) = spawned {
                    tracing::error!(error = %err, "cannot start load worker thread {worker}; its users do not run");
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot build a worker runtime; running its users on the main one");
                fallback.spawn(run_users(share, stop, problems));
            }
        }
    }
}

/// Runs every user of `share` on the current runtime until all have finished; a user's
/// panic becomes a problem that ends the run.
async fn run_users(
    share: Vec<(Arc<ExecutionState>, u32)>,
    stop: watch::Receiver<bool>,
    problems: mpsc::UnboundedSender<String>,
) {
    let handles: Vec<_> = share
        .into_iter()
        .map(|(shared, user)| {
            let stop = stop.clone();
            tokio::spawn(async move {
                if shared.execution.plan.arrival_rate.is_some() {
                    open_model_user(&shared, user, stop).await;
                } else {
                    closed_model_user(&shared, user, stop).await;
                }
            })
        })
        .collect();
    for handle in handles {
        if let Some(problem) = panic_of(handle.await) {
            let _ = problems.send(problem);
        }
    }
}

/// What a user's task ending in a panic should say; `None` when it ended normally.
fn panic_of(ended: Result<(), tokio::task::JoinError>) -> Option<String> {
    let err = ended.err().filter(tokio::task::JoinError::is_panic)?;
    let payload = err.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    Some(format!(
        "a virtual user failed unexpectedly ({message}); this is a bug in Peregrine"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_user_is_reported_not_swallowed() {
        let panicked = tokio::spawn(async { panic!("overflow when adding durations") }).await;
        let problem = panic_of(panicked).unwrap_or_default();
        assert!(
            problem.contains("overflow when adding durations"),
            "{problem}"
        );
        assert_eq!(panic_of(tokio::spawn(async {}).await), None);
    }
}
