//! A virtual user running a scenario's [`Program`]: logic blocks, per-user variables,
//! extractors and CSV rows. Only scenarios with such features come here; a plain list of
//! requests stays on the fast path in `users`. Here: the user, its loop over iterations,
//! the step dispatcher, requests and actions; the controllers are in `controllers`, a
//! request's rendering for the user in `render`. Every step ends its flow (next, next
//! iteration, stop, end) with a [`Flow`].

mod controllers;
mod render;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::PreparedRequest;
use super::exchange::Connections;
use super::execution::{
    CONNECT_RETRY_PAUSE, ExecutionState, Outbox, ProgramState, at, sleep_until, take_arrival,
    until_cancelled,
};
use super::session::{CookieJar, send_following_redirects};
use super::think::think_pause;
use crate::plan::{Action, Program, Request, Step};
use crate::stats::{ErrorKind, Sample};
use crate::variables::UserVariables;

/// Longest request target or header value: `http::Uri` holds at most 64 KiB.
const MAX_URL_BYTES: usize = 65_534;

/// The variable JMeter sets after every sample.
const LAST_SAMPLE_OK: &str = "JMeterThread.last_sample_ok";

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Go on with the next step.
    Next,
    /// `action: continue`: start the user's next iteration.
    NextIteration,
    /// `action: stop` for this user, or its data ran out.
    StopUser,
    /// The run is over (time, stop signal, stop of all users).
    End,
}

/// An open `transaction` block, adding up its children.
struct OpenTransaction {
    started: Instant,
    timers: Duration,
    samples: u64,
    failed: u64,
    bytes: u64,
    force_parent: bool,
}

/// One user running a program.
struct ProgramUser<'a> {
    shared: &'a ExecutionState,
    program: &'a Program,
    state: &'a ProgramState,
    user: u32,
    variables: UserVariables,
    /// The next choice of each interleave.
    pick_next: Vec<usize>,
    /// Each per-user Throughput Controller's passes and runs.
    throttled: Vec<(u64, u64)>,
    once_done: Vec<bool>,
    connections: Connections,
    outbox: Outbox<'a>,
    stop: watch::Receiver<bool>,
    cancel: watch::Receiver<bool>,
    deadline: Option<Instant>,
    transactions: Vec<OpenTransaction>,
    jar: CookieJar,
    /// Hosts of URLs decided at run time, resolved.
    resolved: super::relocate::Resolved,
}

/// Runs `program` as user `user` until its iterations are done or the run ends.
pub async fn run_program<'a>(
    shared: &'a ExecutionState,
    program: &'a Program,
    state: &'a ProgramState,
    user: u32,
    stop: watch::Receiver<bool>,
    deadline: Option<Instant>,
) {
    let mut runner = ProgramUser {
        shared,
        program,
        state,
        user,
        variables: fresh_variables(program, user, state),
        once_done: vec![false; program.onces],
        pick_next: vec![0; program.picks],
        throttled: vec![(0, 0); program.throttles],
        connections: Connections::default(),
        outbox: Outbox::new(&shared.samples),
        stop,
        cancel: shared.cancel.clone(),
        deadline,
        transactions: Vec::new(),
        jar: CookieJar::with(&program.cookies),
        resolved: super::relocate::Resolved::default(),
    };
    let iterations = shared.execution.plan.iterations;
    let mut iteration = 0;
    while iterations.is_none_or(|n| iteration < n) && !runner.should_end() {
        let flow = match runner.take_rows() {
            Flow::Next => runner.run_steps(&program.steps).await,
            other => other,
        };
        match flow {
            Flow::Next | Flow::NextIteration => {}
            Flow::StopUser if deadline.is_some() && !runner.data_ran_out() => {
                // Taurus's concurrency thread group replaces a stopped user with a fresh one.
                runner.restart();
                tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
            }
            Flow::StopUser | Flow::End => break,
        }
        iteration += 1;
        // A body that sends nothing must not starve the other users of this worker.
        tokio::task::yield_now().await;
    }
}

fn fresh_variables(program: &Program, user: u32, state: &ProgramState) -> UserVariables {
    let mut variables = UserVariables::new(
        Default::default(),
        u64::from(user) + 1,
        Arc::clone(&state.counters),
    )
    .with_properties(Arc::clone(&program.properties))
    .with_environment(Arc::clone(&program.environment));
    for (name, value) in &program.variables {
        let rendered = value.render(&mut variables);
        variables.values.insert(name.clone(), rendered);
    }
    variables
}

impl<'a> ProgramUser<'a> {
    fn should_end(&self) -> bool {
        *self.stop.borrow()
            || self.state.halted.load(Ordering::Relaxed)
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn restart(&mut self) {
        self.variables = fresh_variables(self.program, self.user, self.state);
        self.once_done.fill(false);
        self.pick_next.fill(0);
        self.connections = Connections::default();
        self.jar = CookieJar::with(&self.program.cookies);
    }

    fn data_ran_out(&self) -> bool {
        self.program
            .data_sources
            .iter()
            .zip(&self.state.cursors)
            .any(|(source, cursor)| {
                !source.repeat && cursor.load(Ordering::Relaxed) >= source.rows.len() as u64
            })
    }

    /// The next row of each data source into the variables; `StopUser` at the end of a
    /// source that does not loop.
    fn take_rows(&mut self) -> Flow {
        for (source, cursor) in self.program.data_sources.iter().zip(&self.state.cursors) {
            let index = cursor.fetch_add(1, Ordering::Relaxed);
            let rows = source.rows.len() as u64;
            if index >= rows && !source.repeat {
                return Flow::StopUser;
            }
            let row = usize::try_from(index % rows.max(1))
                .ok()
                .and_then(|i| source.rows.get(i));
            for (name, value) in source.names.iter().zip(row.into_iter().flatten()) {
                self.variables.values.insert(name.clone(), value.clone());
            }
        }
        Flow::Next
    }

    fn run_steps<'s>(
        &'s mut self,
        steps: &'a [Step],
    ) -> Pin<Box<dyn Future<Output = Flow> + Send + 's>> {
        Box::pin(async move {
            for step in steps {
                if self.should_end() {
                    return Flow::End;
                }
                let flow = self.run_step(step).await;
                if flow != Flow::Next {
                    return flow;
                }
            }
            Flow::Next
        })
    }

    /// Runs one step: a request or an action here, a controller in `controllers`.
    async fn run_step(&mut self, step: &'a Step) -> Flow {
        match step {
            Step::Request(index) => self.request(*index).await,
            Step::If {
                condition,
                then,
                otherwise,
            } => self.if_else(condition, then, otherwise).await,
            Step::Loop { count, body } => {
                let passes = self.loop_passes(count);
                self.repeat(body, passes, |_| true).await
            }
            Step::While { condition, body } => self.while_loop(condition, body).await,
            Step::Foreach {
                variable,
                input,
                body,
            } => self.foreach(variable, input, body).await,
            Step::Once { id, body } => self.once(*id, body).await,
            Step::Transaction {
                label,
                force_parent,
                include_timers,
                body,
            } => {
                self.transaction(*label, *force_parent, *include_timers, body)
                    .await
            }
            Step::Pick { id, mode, choices } => self.pick(*id, mode, choices).await,
            Step::Throttle {
                id,
                limit,
                per_user,
                body,
            } => self.throttle(*id, *limit, *per_user, body).await,
            Step::Runtime { limit, body } => {
                let end = at(Instant::now(), *limit);
                self.repeat(body, None, move |_| Instant::now() < end).await
            }
            Step::Action(action) => self.action(*action).await,
            Step::SetVariables(pairs) => self.set_variables(pairs),
        }
    }

    /// A variable grew past its limit: the run cannot go on as written (the value would
    /// keep growing until memory runs out), so it is aborted, naming the variable.
    fn give_up_on_growth(&mut self, name: &str, limit: usize) -> Flow {
        let _ = self.shared.problems.send(format!(
            "set-variables: {name} grew past {limit} bytes (is it set from itself, as {name}: ${{{name}}}${{{name}}}?)"
        ));
        self.state.halted.store(true, Ordering::Relaxed);
        Flow::End
    }

    async fn action(&mut self, action: Action) -> Flow {
        match action {
            Action::Pause(length) => self.pause(length).await,
            Action::StopUser => Flow::StopUser,
            Action::StopAll => {
                self.state.halted.store(true, Ordering::Relaxed);
                Flow::End
            }
            Action::NextIteration => Flow::NextIteration,
        }
    }

    /// Sleeps `length` (a timer: not part of transaction times unless included).
    async fn pause(&mut self, length: Duration) -> Flow {
        if length.is_zero() {
            return Flow::Next;
        }
        let now = Instant::now();
        let until = at(now, length);
        self.outbox.flush_before_waiting_until(until, now);
        if !sleep_until(until, self.deadline, &mut self.stop).await {
            return Flow::End;
        }
        for open in &mut self.transactions {
            open.timers += length;
        }
        Flow::Next
    }

    async fn request(&mut self, index: usize) -> Flow {
        let shared = self.shared;
        let Some(prepared) = shared.execution.requests.get(index) else {
            return Flow::Next;
        };
        let Some(due) = self.wait_for_turn(prepared).await else {
            return Flow::End;
        };
        let store_cookie = shared.execution.plan.scenario.store_cookie;
        let with_cookies = store_cookie && !self.jar.is_empty();
        let rendered;
        let step = if prepared.request.dynamic.is_some() || with_cookies {
            let (mut request, relocated) = match render::render(prepared, &mut self.variables) {
                Ok(rendered) => rendered,
                Err(why) => return self.unrenderable(prepared, due, why),
            };
            if store_cookie {
                self.jar.add_to(&mut request.headers);
            }
            let (address, tls) = if relocated {
                match self.destination(prepared, &request).await {
                    Ok(Some(destination)) => destination,
                    Ok(None) => return Flow::End,
                    Err(why) => return self.unrenderable(prepared, due, why),
                }
            } else {
                (prepared.address, prepared.tls.clone())
            };
            rendered = prepared.with_request(request, address, tls);
            &rendered
        } else {
            prepared
        };
        let jar = store_cookie.then_some(&mut self.jar);
        let sent =
            send_following_redirects(&mut self.connections, jar, step, due, shared.run_start);
        let Some(measured) = until_cancelled(shared, &mut self.cancel, sent).await else {
            return Flow::End;
        };
        let mut sample = measured.sample;
        let ok = sample.error.is_none();
        let connect_failed = matches!(sample.error, Some((ErrorKind::Connect, _)));
        self.variables
            .values
            .insert(LAST_SAMPLE_OK.to_owned(), ok.to_string());
        let extracting = Instant::now();
        for extractor in &prepared.request.extractors {
            extractor.apply(
                sample.status,
                &measured.headers,
                &measured.body,
                &mut self.variables,
            );
        }
        if !prepared.request.extractors.is_empty() {
            sample.check_time += extracting.elapsed();
        }
        self.record(sample, measured.ended);
        if connect_failed {
            tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
        }
        Flow::Next
    }

    /// Where a request whose rendered URL names its host goes: its address (resolved once
    /// per user and host) and, over https, its TLS target; `None` when the run was
    /// cancelled meanwhile.
    async fn destination(
        &mut self,
        prepared: &PreparedRequest,
        request: &Request,
    ) -> Result<Option<(Option<std::net::SocketAddr>, Option<super::TlsTarget>)>, String> {
        let lookup = self.resolved.address(&request.host, request.port);
        let Some(address) = until_cancelled(self.shared, &mut self.cancel, lookup).await else {
            return Ok(None);
        };
        let tls = if request.https {
            let setup = prepared.run_time_tls.as_deref();
            Some(super::relocate::tls_target(setup, &request.host)?)
        } else {
            None
        };
        Ok(Some((address, tls)))
    }

    /// A request whose template could not be made into a valid request: a failed sample of
    /// kind `render` with no time (nothing was sent), as JMeter records a sampler that
    /// fails before sending.
    fn unrenderable(&mut self, prepared: &PreparedRequest, due: Instant, why: String) -> Flow {
        self.variables
            .values
            .insert(LAST_SAMPLE_OK.to_owned(), false.to_string());
        let sample = Sample {
            label: prepared.request.label,
            due: due.saturating_duration_since(self.shared.run_start),
            response_time: Duration::ZERO,
            service_time: Duration::ZERO,
            latency: Duration::ZERO,
            connect_time: Duration::ZERO,
            tls_time: Duration::ZERO,
            status: 0,
            bytes: 0,
            error: Some((ErrorKind::Render, Arc::from(why))),
            check_time: Duration::ZERO,
        };
        self.record(sample, Instant::now());
        Flow::Next
    }

    /// Waits for the request's turn: its think-time (Taurus makes it a JMeter timer, and
    /// timers run before their sampler), then the throughput cap's slot; in the open model
    /// the next arrival instead, whose due time the response time counts from. `None`: the
    /// run is over.
    async fn wait_for_turn(&mut self, prepared: &PreparedRequest) -> Option<Instant> {
        let shared = self.shared;
        if shared.execution.plan.arrival_rate.is_some() {
            return take_arrival(shared, &mut self.outbox, &mut self.stop).await;
        }
        let pause = think_pause(&prepared.request, &mut self.variables);
        if self.pause(pause).await == Flow::End {
            return None;
        }
        if let Some(pacer) = &shared.pacer {
            let slot = pacer.next_slot();
            self.outbox.flush_before_waiting_until(slot, Instant::now());
            if !sleep_until(slot, self.deadline, &mut self.stop).await {
                return None;
            }
        }
        Some(Instant::now())
    }

    /// Hands a sample to the outbox (unless a transaction reports only itself) and adds it
    /// to the open transactions.
    fn record(&mut self, sample: Sample, ended: Instant) {
        let mut hidden = false;
        for open in &mut self.transactions {
            open.samples += 1;
            open.failed += u64::from(sample.error.is_some());
            open.bytes += sample.bytes;
            hidden |= open.force_parent;
        }
        if !hidden {
            self.outbox
                .push(sample, ended - self.shared.run_start, ended);
        }
    }
}
