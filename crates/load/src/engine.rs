//! The engine: virtual users on tokio, each with one keep-alive HTTP/1.1 connection (the
//! load generator's own minimal client, [`crate::http1`]), following the plan's ramp-up, hold-for, iterations,
//! throughput cap or open-model arrival rate. Samples go to one collector over a channel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::criteria::Monitor;
use crate::http1::{self, Keep};
use crate::plan::{Execution, Plan, Request, Subject};
use crate::report::{Progress, Report};
use crate::stats::{Collector, ErrorKind, Sample};

/// Samples a user buffers before sending them to the collector.
const BATCH_SAMPLES: usize = 64;
/// How long a sample may wait in a user's buffer.
const BATCH_AGE: Duration = Duration::from_millis(100);
/// Pause after a failed connect, so an unreachable target is not hammered in a hot loop.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The plan ran to its end.
    Completed,
    /// The stop signal (Ctrl-C) came first.
    Interrupted,
    /// A pass/fail criterion stopped it.
    StoppedByCriterion,
}

/// Runs `plan` until it ends or `interrupt` completes; `progress` hears every second.
pub async fn run(
    mut plan: Plan,
    interrupt: impl Future<Output = ()> + Send,
    mut progress: impl FnMut(&Progress),
) -> Report {
    resolve_addresses(&mut plan).await;
    let start = Instant::now();
    let (samples_tx, mut samples) = mpsc::unbounded_channel::<Vec<(Sample, Duration)>>();
    let (stop_tx, stop) = watch::channel(false);
    let users = Arc::new(AtomicU64::new(0));
    let total = plan
        .executions
        .iter()
        .map(Execution::duration)
        .max()
        .unwrap_or_default();
    let virtual_users: Vec<(Arc<Shared>, u32)> = plan
        .executions
        .iter()
        .flat_map(|execution| {
            prepare_execution(
                execution.clone(),
                start,
                samples_tx.clone(),
                Arc::clone(&users),
            )
        })
        .collect();
    drop(samples_tx);
    spawn_workers(virtual_users, &stop);

    let levels: Vec<f64> = plan.criteria.iter().filter_map(|c| c.level()).collect();
    let mut collector = Collector::new(plan.labels.len(), &levels);
    let mut monitor = Monitor::new(plan.criteria.clone(), plan.labels.clone());
    let mut ending = Ending::Completed;
    // Ticks in the middle of each second: the active users then stand for that second, and
    // the previous second (over half a second ago) is closed.
    let mut ticker =
        tokio::time::interval_at(start + Duration::from_millis(500), Duration::from_secs(1));
    let mut users_at: Vec<u64> = Vec::new();
    tokio::pin!(interrupt);
    let mut interrupted = false;
    loop {
        tokio::select! {
            received = samples.recv() => match received {
                Some(batch) => {
                    for (sample, ended) in &batch {
                        collector.record(sample, *ended);
                    }
                }
                None => break,
            },
            _ = ticker.tick() => {
                let elapsed = start.elapsed();
                let active = users.load(Ordering::Relaxed);
                users_at.push(active);
                let closed = collector.close_until(elapsed.as_secs(), &users_at).to_vec();
                if let Some(last) = closed.last() {
                    progress(&Progress { elapsed, total, users: last.users, second: last.clone() });
                }
                if monitor.on_seconds(collector.timeline()) && ending == Ending::Completed {
                    ending = Ending::StoppedByCriterion;
                    let _ = stop_tx.send(true);
                }
            },
            () = &mut interrupt, if !interrupted => {
                interrupted = true;
                ending = Ending::Interrupted;
                let _ = stop_tx.send(true);
            },
        }
    }
    let duration = start.elapsed();
    let end_second = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    collector.close_until(end_second, &users_at);
    monitor.on_seconds(collector.timeline());
    Report::build(&plan, &collector, monitor, duration, ending)
}

/// Resolves each distinct host:port once; unresolvable ones become connect errors later.
async fn resolve_addresses(plan: &mut Plan) {
    let mut resolved: HashMap<(String, u16), Option<SocketAddr>> = HashMap::new();
    for execution in &mut plan.executions {
        let mut scenario = (*execution.scenario).clone();
        for request in &mut scenario.requests {
            let key = (request.host.clone(), request.port);
            if !resolved.contains_key(&key) {
                let address = tokio::net::lookup_host((key.0.as_str(), key.1))
                    .await
                    .ok()
                    .and_then(|mut a| a.next());
                if address.is_none() {
                    tracing::warn!(host = %key.0, "cannot resolve host");
                }
                resolved.insert(key.clone(), address);
            }
            request.address = resolved.get(&key).copied().flatten();
            request.wire = http1::wire_bytes(request);
        }
        execution.scenario = Arc::new(scenario);
    }
}

/// What every virtual user of one execution shares.
struct Shared {
    execution: Execution,
    start: Instant,
    samples: mpsc::UnboundedSender<Vec<(Sample, Duration)>>,
    users: Arc<AtomicU64>,
    pacer: Option<Pacer>,
    arrivals: AtomicU64,
}

/// The shared state of one execution and the index of each of its users.
fn prepare_execution(
    execution: Execution,
    start: Instant,
    samples: mpsc::UnboundedSender<Vec<(Sample, Duration)>>,
    users: Arc<AtomicU64>,
) -> Vec<(Arc<Shared>, u32)> {
    let pacer = execution
        .throughput
        .map(|rate| Pacer::new(rate, execution.ramp_up, start));
    let concurrency = execution.concurrency;
    let shared = Arc::new(Shared {
        execution,
        start,
        samples,
        users,
        pacer,
        arrivals: AtomicU64::new(0),
    });
    (0..concurrency)
        .map(|user| (Arc::clone(&shared), user))
        .collect()
}

/// Runs the users on one single-threaded runtime per core, as wrk runs one event loop per
/// thread: a user and its connection stay on one thread, with no work stealing or
/// cross-thread wake-ups per request.
fn spawn_workers(virtual_users: Vec<(Arc<Shared>, u32)>, stop: &watch::Receiver<bool>) {
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(virtual_users.len().max(1));
    let mut shares: Vec<Vec<(Arc<Shared>, u32)>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, user) in virtual_users.into_iter().enumerate() {
        shares[i % workers].push(user);
    }
    let fallback = tokio::runtime::Handle::current();
    for (worker, share) in shares.into_iter().enumerate() {
        let stop = stop.clone();
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => {
                let spawned = std::thread::Builder::new()
                    .name(format!("peregrine-load-{worker}"))
                    .spawn(move || runtime.block_on(run_users(share, stop)));
                if let Err(err) = spawned {
                    tracing::error!(error = %err, "cannot start load worker thread {worker}; its users do not run");
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot build a worker runtime; running its users on the main one");
                fallback.spawn(run_users(share, stop));
            }
        }
    }
}

/// Runs every user of `share` on the current runtime until all have finished.
async fn run_users(share: Vec<(Arc<Shared>, u32)>, stop: watch::Receiver<bool>) {
    let handles: Vec<_> = share
        .into_iter()
        .map(|(shared, user)| {
            let stop = stop.clone();
            tokio::spawn(async move {
                if shared.execution.arrival_rate.is_some() {
                    open_model_user(&shared, stop).await;
                } else {
                    closed_model_user(&shared, user, stop).await;
                }
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.await;
    }
}

/// When user `user` of `concurrency` starts: linear ramp-up, or stairs with `steps`.
fn start_offset(execution: &Execution, user: u32) -> Duration {
    let concurrency = f64::from(execution.concurrency.max(1));
    let ramp = execution.ramp_up.as_secs_f64();
    let fraction = match execution.steps.filter(|&s| s > 0) {
        Some(steps) => {
            (f64::from(user) * f64::from(steps) / concurrency).floor() / f64::from(steps)
        }
        None => f64::from(user) / concurrency,
    };
    Duration::from_secs_f64(ramp * fraction)
}

/// Waits until `deadline`; false when the stop signal came first.
async fn sleep_until(deadline: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep_until(deadline) => true,
        _ = stop.wait_for(|stopped| *stopped) => false,
    }
}

async fn closed_model_user(shared: &Shared, user: u32, mut stop: watch::Receiver<bool>) {
    let execution = &shared.execution;
    if !sleep_until(shared.start + start_offset(execution, user), &mut stop).await {
        return;
    }
    shared.users.fetch_add(1, Ordering::Relaxed);
    let deadline = (!execution.duration().is_zero()).then(|| shared.start + execution.duration());
    let mut connections = Connections::default();
    let mut outbox = Outbox::new(&shared.samples);
    let mut iteration = 0;
    // The clock is read once per request where possible: at high rates reading it was a
    // visible share of the generator's own CPU time.
    let mut now = Instant::now();
    'iterations: while execution.iterations.is_none_or(|n| iteration < n) {
        for request in &execution.scenario.requests {
            if *stop.borrow() || deadline.is_some_and(|d| now >= d) {
                break 'iterations;
            }
            if let Some(pacer) = &shared.pacer {
                let slot = pacer.next_slot();
                outbox.flush_before_waiting_until(slot, now);
                if deadline.is_some_and(|d| slot >= d) || !sleep_until(slot, &mut stop).await {
                    break 'iterations;
                }
                now = Instant::now();
            }
            now = exchange_and_report(
                shared,
                &mut outbox,
                connections.slot(request.address),
                request,
                now,
            )
            .await;
            if !request.think_time.is_zero() {
                let think_until = now + request.think_time;
                outbox.flush_before_waiting_until(think_until, now);
                if !sleep_until(think_until, &mut stop).await {
                    break 'iterations;
                }
                now = Instant::now();
            }
        }
        iteration += 1;
    }
    shared.users.fetch_sub(1, Ordering::Relaxed);
}

/// Open model: users take the next scheduled arrival from a shared counter, so a late
/// request is sent as soon as any connection is free and its latency counts from when it
/// was due (coordinated omission corrected).
async fn open_model_user(shared: &Shared, mut stop: watch::Receiver<bool>) {
    let execution = &shared.execution;
    let rate = execution.arrival_rate.unwrap_or(1.0);
    let ramp = execution.ramp_up.as_secs_f64();
    let total = execution.duration().as_secs_f64();
    shared.users.fetch_add(1, Ordering::Relaxed);
    let mut connections = Connections::default();
    let mut outbox = Outbox::new(&shared.samples);
    'arrivals: loop {
        for request in &execution.scenario.requests {
            let k = shared.arrivals.fetch_add(1, Ordering::Relaxed) as f64;
            // Arrivals grow linearly during the ramp-up: N(t) = rate·t²/(2·ramp), then rate·(t − ramp/2).
            let offset = if ramp > 0.0 && k < rate * ramp / 2.0 {
                (2.0 * ramp * k / rate).sqrt()
            } else {
                ramp / 2.0 + k / rate
            };
            if offset >= total {
                break 'arrivals;
            }
            let due = shared.start + Duration::from_secs_f64(offset);
            outbox.flush_before_waiting_until(due, Instant::now());
            if !sleep_until(due, &mut stop).await {
                break 'arrivals;
            }
            exchange_and_report(
                shared,
                &mut outbox,
                connections.slot(request.address),
                request,
                due,
            )
            .await;
        }
    }
    shared.users.fetch_sub(1, Ordering::Relaxed);
}

/// Sends `request`, records its sample, and returns when it finished (after the pause that
/// follows a failed connect).
async fn exchange_and_report(
    shared: &Shared,
    outbox: &mut Outbox<'_>,
    connection: &mut Option<Connection>,
    request: &Request,
    due: Instant,
) -> Instant {
    let sent = Instant::now();
    let deadline = sent + request.timeout;
    let outcome = match tokio::time::timeout_at(deadline, exchange(connection, request, sent)).await
    {
        Ok(outcome) => outcome,
        Err(_) => {
            // The response may still come on this connection: never reuse it.
            *connection = None;
            Err(Failure::new(
                ErrorKind::Timeout,
                format!("no response within {:?}", request.timeout),
            ))
        }
    };
    let ended = Instant::now();
    let (status, latency, connect_time, bytes, error) = match outcome {
        Ok(done) => (
            done.status,
            done.latency,
            done.connect_time,
            done.bytes,
            done.error,
        ),
        Err(failure) => {
            *connection = None;
            (
                0,
                ended - sent,
                failure.connect_time,
                0,
                Some((failure.kind, failure.message)),
            )
        }
    };
    let connect_failed = matches!(error, Some((ErrorKind::Connect, _)));
    let sample = Sample {
        label: request.label,
        due: due - shared.start,
        response_time: ended - due,
        service_time: ended - sent,
        latency,
        connect_time,
        status,
        bytes,
        error,
    };
    outbox.push(sample, ended - shared.start, ended);
    if connect_failed {
        tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
        return Instant::now();
    }
    ended
}

/// A user's finished samples, sent to the collector in batches: one channel message per
/// sample would cost more than the request itself at high rates.
struct Outbox<'a> {
    samples: Vec<(Sample, Duration)>,
    oldest: Option<Instant>,
    channel: &'a mpsc::UnboundedSender<Vec<(Sample, Duration)>>,
}

impl<'a> Outbox<'a> {
    fn new(channel: &'a mpsc::UnboundedSender<Vec<(Sample, Duration)>>) -> Self {
        Self {
            samples: Vec::with_capacity(BATCH_SAMPLES),
            oldest: None,
            channel,
        }
    }

    fn push(&mut self, sample: Sample, ended: Duration, now: Instant) {
        self.samples.push((sample, ended));
        let oldest = *self.oldest.get_or_insert(now);
        if self.samples.len() >= BATCH_SAMPLES || now - oldest >= BATCH_AGE {
            self.flush();
        }
    }

    /// Sends what is buffered when the user is about to wait long enough to delay it.
    fn flush_before_waiting_until(&mut self, until: Instant, now: Instant) {
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

type Connection = http1::Connection;

/// A user's connections, one per target address (scenarios usually have one).
#[derive(Default)]
struct Connections {
    open: Vec<(Option<SocketAddr>, Option<Connection>)>,
}

impl Connections {
    /// The connection slot for `address`, created empty on first use.
    fn slot(&mut self, address: Option<SocketAddr>) -> &mut Option<Connection> {
        let index = match self.open.iter().position(|(a, _)| *a == address) {
            Some(index) => index,
            None => {
                self.open.push((address, None));
                self.open.len() - 1
            }
        };
        &mut self.open[index].1
    }
}

struct Exchanged {
    status: u16,
    latency: Duration,
    connect_time: Duration,
    bytes: u64,
    error: Option<(ErrorKind, Arc<str>)>,
}

struct Failure {
    kind: ErrorKind,
    message: Arc<str>,
    connect_time: Duration,
}

impl Failure {
    fn new(kind: ErrorKind, message: impl Into<Arc<str>>) -> Self {
        Self {
            kind,
            message: message.into(),
            connect_time: Duration::ZERO,
        }
    }
}

async fn connect(address: Option<SocketAddr>, request: &Request) -> Result<Connection, Failure> {
    let address = address.ok_or_else(|| {
        Failure::new(
            ErrorKind::Connect,
            format!("cannot resolve {}", request.host),
        )
    })?;
    let stream = TcpStream::connect(address).await.map_err(|e| {
        Failure::new(
            ErrorKind::Connect,
            format!("cannot connect to {address}: {}", e.kind()),
        )
    })?;
    Ok(http1::Connection::new(stream))
}

/// Sends one request and reads the whole response, connecting first when needed. A reused
/// connection that the server had closed is retried once on a new one.
async fn exchange(
    connection: &mut Option<Connection>,
    request: &Request,
    sent: Instant,
) -> Result<Exchanged, Failure> {
    let mut connect_time = Duration::ZERO;
    let mut reused = true;
    // When the current attempt began: the response's latency counts from there.
    let mut began = sent;
    loop {
        if connection.is_none() {
            let opened = connect(request.address, request).await.map_err(|mut f| {
                f.connect_time = began.elapsed();
                f
            })?;
            let now = Instant::now();
            connect_time += now - began;
            began = now;
            *connection = Some(opened);
            reused = false;
        }
        let Some(conn) = connection.as_mut() else {
            continue;
        };
        match send_and_read(conn, request, reused, began).await {
            Ok((mut exchanged, reusable)) => {
                if !(request.keepalive && reusable) {
                    *connection = None;
                }
                exchanged.connect_time = connect_time;
                return Ok(exchanged);
            }
            Err(Attempt::Retry) => {
                *connection = None;
                began = Instant::now();
            }
            Err(Attempt::Failed(failure)) => {
                return Err(Failure {
                    connect_time,
                    ..failure
                });
            }
        }
    }
}

/// Why one attempt on a connection did not give a response.
enum Attempt {
    /// The reused connection had been closed by the server: try a new one.
    Retry,
    /// The request failed.
    Failed(Failure),
}

/// One request on an open connection: the exchange's figures and whether the connection can
/// carry the next request.
async fn send_and_read(
    connection: &mut Connection,
    request: &Request,
    reused: bool,
    sent: Instant,
) -> Result<(Exchanged, bool), Attempt> {
    let mut latency = Duration::ZERO;
    // Kept only when an assertion reads them: this is the per-request hot path.
    let keep = Keep {
        headers: request
            .assertions
            .iter()
            .any(|a| a.subject == Subject::Headers),
        body: !request.json_assertions.is_empty()
            || request
                .assertions
                .iter()
                .any(|a| a.subject == Subject::Body),
    };
    let response = connection
        .exchange(&request.wire, &request.method, keep, || {
            latency = sent.elapsed();
        })
        .await;
    let response = match response {
        Ok(response) => response,
        Err(http1::Failure::ClosedBeforeResponse) if reused => return Err(Attempt::Retry),
        Err(http1::Failure::ClosedBeforeResponse) => {
            return Err(Attempt::Failed(Failure::new(
                ErrorKind::Io,
                "request failed: connection closed before a response",
            )));
        }
        Err(http1::Failure::Io(err)) => {
            return Err(Attempt::Failed(Failure::new(
                ErrorKind::Io,
                format!("request failed: {err}"),
            )));
        }
        Err(http1::Failure::Malformed(message)) => {
            return Err(Attempt::Failed(Failure::new(
                ErrorKind::Io,
                format!("invalid response: {message}"),
            )));
        }
    };
    let status = response.status;
    let error = if status >= 400 {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|code| code.canonical_reason())
            .unwrap_or("");
        let text = format!("HTTP {status} {reason}");
        Some((ErrorKind::Http, Arc::from(text.trim_end())))
    } else {
        check_assertions(request, status, &response.headers, &response.body)
            .or_else(|| {
                request
                    .json_assertions
                    .iter()
                    .find_map(|a| a.check(&response.body))
            })
            .map(|m| (ErrorKind::Assertion, Arc::from(m)))
    };
    Ok((
        Exchanged {
            status,
            latency,
            connect_time: Duration::ZERO,
            bytes: response.body_bytes,
            error,
        },
        response.reusable,
    ))
}

/// The first failed assertion, described.
fn check_assertions(
    request: &Request,
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Option<String> {
    for assertion in &request.assertions {
        let text = match assertion.subject {
            Subject::Body => String::from_utf8_lossy(body).into_owned(),
            Subject::HttpCode => status.to_string(),
            Subject::Headers => headers
                .iter()
                .map(|(name, value)| format!("{name}: {}\n", value.to_str().unwrap_or_default()))
                .collect(),
        };
        let subject = match assertion.subject {
            Subject::Body => "body",
            Subject::Headers => "headers",
            Subject::HttpCode => "http-code",
        };
        for pattern in &assertion.patterns {
            let found = pattern.is_match(&text);
            if found == assertion.invert {
                let verb = if assertion.invert {
                    "contains"
                } else {
                    "does not contain"
                };
                return Some(format!(
                    "assertion failed: {subject} {verb} {:?}",
                    pattern.as_str()
                ));
            }
        }
    }
    None
}

/// Spaces requests so that all users together stay under a rate (Taurus `throughput`),
/// growing linearly over the ramp-up.
struct Pacer {
    rate: f64,
    ramp: Duration,
    start: Instant,
    next: std::sync::Mutex<Instant>,
}

impl Pacer {
    fn new(rate: f64, ramp: Duration, start: Instant) -> Self {
        Self {
            rate,
            ramp,
            start,
            next: std::sync::Mutex::new(start),
        }
    }

    /// Reserves the next free slot and returns when it is.
    fn next_slot(&self) -> Instant {
        let now = Instant::now();
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = (*next).max(now);
        let elapsed = (slot - self.start).as_secs_f64();
        let ramp = self.ramp.as_secs_f64();
        let rate = if ramp > 0.0 && elapsed < ramp {
            (self.rate * elapsed / ramp).max(1.0)
        } else {
            self.rate
        };
        *next = slot + Duration::from_secs_f64(1.0 / rate);
        slot
    }
}
