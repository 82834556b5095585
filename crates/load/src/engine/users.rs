//! The virtual users: the closed model (each user thinks, sends, waits for the response,
//! repeats) and the open model (users take the next due arrival from a shared schedule).

use std::sync::atomic::Ordering;

use tokio::sync::watch;
use tokio::time::Instant;

use super::PreparedRequest;
use super::exchange::Connections;
use super::execution::{
    CONNECT_RETRY_PAUSE, ExecutionState, Outbox, at, sleep_until, take_arrival, until_cancelled,
};
use super::pacing::start_offset;
use super::session::{CookieJar, send_following_redirects};
use super::steps::run_program;
use super::think::{think_pause_fast, user_random};
use crate::stats::ErrorKind;

/// One closed-model user: start at its offset in the ramp-up, then pass through the
/// scenario until the iterations are done, the time is up or the run stops.
pub async fn closed_model_user(
    shared: &ExecutionState,
    user: u32,
    mut stop: watch::Receiver<bool>,
) {
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
    shared: &ExecutionState,
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
pub async fn open_model_user(shared: &ExecutionState, user: u32, stop: watch::Receiver<bool>) {
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
async fn plain_open_model_user(shared: &ExecutionState, mut stop: watch::Receiver<bool>) {
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
    shared: &ExecutionState,
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
    let exchange = send_following_redirects(to.connections, to.jar, step, due, shared.run_start);
    let measured = until_cancelled(shared, to.cancel, exchange).await?;
    let (sample, ended) = (measured.sample, measured.ended);
    let connect_failed = matches!(sample.error, Some((ErrorKind::Connect, _)));
    outbox.push(sample, ended - shared.run_start, ended);
    if connect_failed {
        tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
        return Some(Instant::now());
    }
    Some(ended)
}
