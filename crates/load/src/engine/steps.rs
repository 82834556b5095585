//! A virtual user running a scenario's [`Program`]: logic blocks, per-user variables,
//! extractors and CSV rows. Only scenarios with such features come here; a plain list of
//! requests stays on the fast path in `users`. Over 600 lines: the interpreter of every
//! step kind, kept together so each one ends its flow (next, next iteration, stop, end)
//! alike.

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
use crate::condition;
use crate::plan::{
    Action, Block, LoopCount, PickMode, Program, Request, Step, ThinkTime, ThrottleLimit,
};
use crate::stats::{ErrorKind, Sample};
use crate::variables::{
    MAX_RENDERED_BYTES, MAX_VARIABLE_BYTES, Random, UserVariables, encode_target,
};

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

    /// Whether this pass through Throughput Controller `id` runs its steps, counting it.
    fn throttle_allows(&mut self, id: usize, limit: ThrottleLimit, per_user: bool) -> bool {
        if per_user {
            let Some((reached, runs)) = self.throttled.get_mut(id) else {
                return false;
            };
            *reached += 1;
            let allowed = limit.allows(*reached, *runs);
            *runs += u64::from(allowed);
            return allowed;
        }
        let Some((reached, runs)) = self.state.throttles.get(id) else {
            return false;
        };
        let reached = reached.fetch_add(1, Ordering::Relaxed) + 1;
        // Taken only when allowed: concurrent users cannot both take the last run.
        runs.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |done| {
            limit.allows(reached, done).then_some(done + 1)
        })
        .is_ok()
    }

    /// Every choice once, in a random order (Fisher-Yates with the user's random source).
    async fn run_shuffled(&mut self, choices: &'a [Vec<Step>]) -> Flow {
        let mut order: Vec<usize> = (0..choices.len()).collect();
        for i in (1..order.len()).rev() {
            let j = usize::try_from(self.variables.random_below(i as u64 + 1)).unwrap_or(0);
            order.swap(i, j);
        }
        for index in order {
            if self.should_end() {
                return Flow::End;
            }
            let flow = self.run_steps(&choices[index]).await;
            if flow != Flow::Next {
                return flow;
            }
        }
        Flow::Next
    }

    async fn run_step(&mut self, step: &'a Step) -> Flow {
        match step {
            Step::Request(index) => self.request(*index).await,
            Step::If {
                condition,
                then,
                otherwise,
            } => {
                let text = condition.render(&mut self.variables);
                if self.condition(&text) == Some(true) {
                    let flow = self.run_steps(then).await;
                    if flow != Flow::Next {
                        return flow;
                    }
                }
                // JMeter's else is a second If Controller on `!(condition)`, evaluated now.
                let text = condition.render(&mut self.variables);
                if !otherwise.is_empty() && self.condition(&text) == Some(false) {
                    return self.run_steps(otherwise).await;
                }
                Flow::Next
            }
            Step::Loop { count, body } => {
                let passes = match count {
                    LoopCount::Times(n) => Some(*n),
                    LoopCount::Forever => None,
                    LoopCount::Variable(t) => {
                        let text = t.render(&mut self.variables);
                        match text.trim().parse::<i64>() {
                            Ok(n) if n < 0 => None,
                            Ok(n) => Some(n.unsigned_abs()),
                            Err(_) => Some(0),
                        }
                    }
                };
                self.repeat(body, passes, |_| true).await
            }
            Step::While { condition, body } => {
                self.repeat(body, None, |user| {
                    let text = condition.render(&mut user.variables);
                    let text = text.trim();
                    if text.is_empty() || text == "LAST" {
                        user.variables
                            .values
                            .get(LAST_SAMPLE_OK)
                            .map(String::as_str)
                            != Some("false")
                    } else {
                        !text.eq_ignore_ascii_case("false")
                    }
                })
                .await
            }
            Step::Foreach {
                variable,
                input,
                body,
            } => {
                let mut pass = 0u64;
                self.repeat(body, None, |user| {
                    pass += 1;
                    let next = user
                        .variables
                        .values
                        .get(&format!("{input}_{pass}"))
                        .cloned();
                    next.map(|value| user.variables.values.insert(variable.clone(), value))
                        .is_some()
                })
                .await
            }
            Step::Once { id, body } => match self.once_done.get_mut(*id) {
                Some(done) if !*done => {
                    *done = true;
                    self.run_steps(body).await
                }
                _ => Flow::Next,
            },
            Step::Transaction {
                label,
                force_parent,
                include_timers,
                body,
            } => {
                self.transaction(*label, *force_parent, *include_timers, body)
                    .await
            }
            Step::Pick { id, mode, choices } => {
                let count = choices.len().max(1);
                let index = match mode {
                    PickMode::Interleave => self.pick_next.get_mut(*id).map_or(0, |next| {
                        let index = *next % count;
                        *next = index + 1;
                        index
                    }),
                    PickMode::Random => {
                        usize::try_from(self.variables.random_below(count as u64)).unwrap_or(0)
                    }
                    PickMode::Switch { value, names } => {
                        let value = value.render(&mut self.variables);
                        match switch_choice(value.trim(), names) {
                            Some(index) => index,
                            None => return Flow::Next,
                        }
                    }
                    PickMode::Shuffled => return self.run_shuffled(choices).await,
                };
                match choices.get(index) {
                    Some(steps) => self.run_steps(steps).await,
                    None => Flow::Next,
                }
            }
            Step::Throttle {
                id,
                limit,
                per_user,
                body,
            } => {
                if self.throttle_allows(*id, *limit, *per_user) {
                    self.run_steps(body).await
                } else {
                    Flow::Next
                }
            }
            Step::Runtime { limit, body } => {
                let end = at(Instant::now(), *limit);
                self.repeat(body, None, move |_| Instant::now() < end).await
            }
            Step::Action(action) => self.action(*action).await,
            Step::SetVariables(pairs) => {
                for (name, value) in pairs {
                    match value.try_render(&mut self.variables, MAX_VARIABLE_BYTES) {
                        Ok(rendered) => {
                            self.variables.values.insert(name.clone(), rendered);
                        }
                        Err(too) => return self.give_up_on_growth(name, too.limit),
                    }
                }
                Flow::Next
            }
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

    /// A condition's verdict; `None` for one the evaluator cannot read (JMeter: false
    /// for both the then and the else branch), logged once per user.
    fn condition(&mut self, text: &str) -> Option<bool> {
        match condition::evaluate(text) {
            Ok(verdict) => Some(verdict),
            Err(why) => {
                tracing::debug!(condition = text, why, "if condition not evaluated; false");
                None
            }
        }
    }

    /// Runs `body` while `go_on` says so (checked before each pass), at most `passes`
    /// times; its `once` blocks run again on this entry.
    async fn repeat(
        &mut self,
        body: &'a Block,
        passes: Option<u64>,
        mut go_on: impl FnMut(&mut Self) -> bool + Send,
    ) -> Flow {
        for id in &body.onces {
            if let Some(done) = self.once_done.get_mut(*id) {
                *done = false;
            }
        }
        let mut pass = 0u64;
        while passes.is_none_or(|n| pass < n) && go_on(self) {
            let flow = self.run_steps(&body.steps).await;
            if flow != Flow::Next {
                return flow;
            }
            if self.should_end() {
                return Flow::End;
            }
            pass += 1;
            tokio::task::yield_now().await;
        }
        Flow::Next
    }

    async fn transaction(
        &mut self,
        label: usize,
        force_parent: bool,
        include_timers: bool,
        body: &'a [Step],
    ) -> Flow {
        self.transactions.push(OpenTransaction {
            started: Instant::now(),
            timers: Duration::ZERO,
            samples: 0,
            failed: 0,
            bytes: 0,
            force_parent,
        });
        let flow = self.run_steps(body).await;
        let Some(open) = self.transactions.pop() else {
            return flow;
        };
        let ended = Instant::now();
        let mut elapsed = ended - open.started;
        if !include_timers {
            elapsed = elapsed.saturating_sub(open.timers);
        }
        let error = (open.failed > 0).then(|| {
            let message = format!(
                "Number of samples in transaction : {}, number of failing samples : {}",
                open.samples, open.failed
            );
            (ErrorKind::Assertion, Arc::from(message))
        });
        let sample = Sample {
            label,
            due: open
                .started
                .saturating_duration_since(self.shared.run_start),
            response_time: elapsed,
            service_time: elapsed,
            latency: elapsed,
            connect_time: Duration::ZERO,
            tls_time: Duration::ZERO,
            status: if error.is_none() { 200 } else { 0 },
            bytes: open.bytes,
            error,
            check_time: Duration::ZERO,
        };
        self.record(sample, ended);
        flow
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
            let (mut request, relocated) = match render(prepared, &mut self.variables) {
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

/// The child a Switch Controller runs for `value`, as JMeter chooses it: an index (out of
/// range or blank: the first), else the child of that name, else one named `default` in
/// any case; `None`: no child runs.
fn switch_choice(value: &str, names: &[String]) -> Option<usize> {
    if value.is_empty() {
        return (!names.is_empty()).then_some(0);
    }
    if let Ok(index) = value.parse::<i64>() {
        let index = usize::try_from(index).ok().filter(|i| *i < names.len());
        return index.or((!names.is_empty()).then_some(0));
    }
    names
        .iter()
        .position(|name| name == value)
        .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case("default")))
}

/// The request with its `${…}` rendered for this user, and whether its URL named its own
/// host; or why it cannot be sent. The messages never quote the rendered value: one error
/// row per cause, not per value.
fn render(
    prepared: &PreparedRequest,
    variables: &mut UserVariables,
) -> Result<(Request, bool), String> {
    let mut request: Request = (*prepared.request).clone();
    let Some(dynamic) = prepared.request.dynamic.as_deref() else {
        return Ok((request, false));
    };
    let mut relocated = false;
    if dynamic.target.is_dynamic() || dynamic.origin.is_some() {
        let mut rendered = dynamic
            .target
            .try_render(variables, MAX_URL_BYTES)
            .map_err(|too| format!("the rendered URL is over {} bytes", too.limit))?;
        if let Some(origin) = &dynamic.origin {
            let mut full = origin
                .try_render(variables, MAX_URL_BYTES)
                .map_err(|too| format!("the rendered URL is over {} bytes", too.limit))?;
            full.push_str(&rendered);
            rendered = full;
        }
        // `url: ${path}` was joined to the default address with a `/`; a value that brings
        // its own (`/items/1`) must not double it, as JMeter adds one only when missing.
        let path = rendered.strip_prefix('/').filter(|p| p.starts_with('/'));
        // A full URL, in place of the path as JMeter takes one or as the origin gave it.
        let absolute = Some(rendered.strip_prefix('/').unwrap_or(&rendered))
            .filter(|text| crate::url::is_absolute(text));
        if let Some(full) = absolute {
            relocate(&mut request, full)?;
            relocated = true;
        } else if dynamic.origin.is_some() {
            return Err(
                "the rendered URL does not start with http:// or https:// (its host is decided at run time)"
                    .to_owned(),
            );
        } else {
            let target = encode_target(path.unwrap_or(&rendered));
            if target.len() > MAX_URL_BYTES {
                return Err(format!(
                    "the rendered URL is over {MAX_URL_BYTES} bytes once encoded"
                ));
            }
            request.target = target
                .parse()
                .map_err(|_| "the rendered URL is not a valid request target".to_owned())?;
        }
    }
    for (name, template) in &dynamic.headers {
        let value = template
            .try_render(variables, MAX_URL_BYTES)
            .map_err(|too| {
                format!(
                    "header {name}: the rendered value is over {} bytes",
                    too.limit
                )
            })?;
        let value = http::HeaderValue::from_str(&value).map_err(|_| {
            format!("header {name}: the rendered value is not a valid header value (a control character or line break)")
        })?;
        request.headers.insert(name.clone(), value);
    }
    if dynamic.body.is_dynamic() {
        let body = dynamic
            .body
            .try_render(variables, MAX_RENDERED_BYTES)
            .map_err(|too| format!("the rendered body is over {} bytes", too.limit))?;
        request.body = body.into();
    }
    Ok((request, relocated))
}

/// Points `request` at the rendered absolute URL `full`: its scheme, host, port, `Host`
/// header and target.
fn relocate(request: &mut Request, full: &str) -> Result<(), String> {
    if full.len() > MAX_URL_BYTES {
        return Err(format!("the rendered URL is over {MAX_URL_BYTES} bytes"));
    }
    let url = crate::url::parse_rendered(full)
        .map_err(|_| "the rendered URL is not a valid http:// or https:// URL".to_owned())?;
    let host = http::HeaderValue::from_str(&url.authority)
        .map_err(|_| "the rendered URL's host is not a valid Host header".to_owned())?;
    request.headers.insert(http::header::HOST, host);
    request.https = url.https;
    request.host = url.host;
    request.port = url.port;
    request.authority = url.authority;
    request.target = url.target;
    Ok(())
}

/// The pause before `request`: its think-time, drawn from its distribution.
pub fn think_pause(request: &Request, variables: &mut UserVariables) -> Duration {
    draw(request.think, request.think_time, variables.random())
}

/// A think-time drawn as JMeter's timers draw it (Taurus `think-time` formulas).
pub fn draw(think: ThinkTime, constant: Duration, random: &mut Random) -> Duration {
    let millis = |d: Duration| d.as_secs_f64() * 1000.0;
    let drawn_ms = match think {
        ThinkTime::Constant => return constant,
        ThinkTime::Uniform { mean, spread } => {
            (millis(mean) - millis(spread) + random.unit() * 2.0 * millis(spread)).abs()
        }
        ThinkTime::Gaussian { mean, deviation } => {
            random.normal(millis(mean), millis(deviation)).abs()
        }
        ThinkTime::Poisson { mean, offset } => {
            let lambda = (millis(mean) - millis(offset)).round().max(0.0);
            millis(offset) + random.poisson(lambda)
        }
    };
    Duration::from_secs_f64((drawn_ms / 1000.0).clamp(0.0, crate::plan::MAX_DURATION.as_secs_f64()))
}

/// The pause before `request` on the fast path: the constant think-time unless it has a
/// distribution.
pub fn think_pause_fast(request: &Request, random: &mut Random) -> Duration {
    if request.think == ThinkTime::Constant {
        return request.think_time;
    }
    draw(request.think, request.think_time, random)
}

/// A random source for the fast path's think-times.
pub fn user_random(user: u32) -> Random {
    Random::seeded(u64::from(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_value_chooses_as_jmeters_switch_controller() {
        let names: Vec<String> = ["A", "Named", "DEFAULT"].map(str::to_owned).to_vec();
        let choose = |value: &str| switch_choice(value, &names);
        assert_eq!(
            [
                choose("1"),
                choose(""),
                choose("9"),
                choose("-1"),
                choose("Named")
            ],
            [Some(1), Some(0), Some(0), Some(0), Some(1)]
        );
        // No such name: the child named default (any case); without one, none.
        assert_eq!(choose("other"), Some(2));
        assert_eq!(switch_choice("other", &names[..2]), None);
        assert_eq!(switch_choice("", &[]), None);
    }

    fn stats(think: ThinkTime) -> (f64, f64) {
        let mut random = Random::seeded(7);
        let draws: Vec<f64> = (0..20_000)
            .map(|_| draw(think, Duration::ZERO, &mut random).as_secs_f64() * 1000.0)
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        (mean, var.sqrt())
    }

    #[test]
    fn distributions_have_taurus_means_and_spreads() {
        let ms = Duration::from_millis;
        let (mean, sd) = stats(ThinkTime::Uniform {
            mean: ms(1000),
            spread: ms(500),
        });
        assert!(
            (mean - 1000.0).abs() < 10.0 && (sd - 288.7).abs() < 10.0,
            "{mean} {sd}"
        );
        let (mean, sd) = stats(ThinkTime::Gaussian {
            mean: ms(1000),
            deviation: ms(100),
        });
        assert!(
            (mean - 1000.0).abs() < 5.0 && (sd - 100.0).abs() < 5.0,
            "{mean} {sd}"
        );
        let (mean, sd) = stats(ThinkTime::Poisson {
            mean: ms(1000),
            offset: ms(200),
        });
        assert!(
            (mean - 1000.0).abs() < 2.0 && (sd - 28.3).abs() < 2.0,
            "{mean} {sd}"
        );
        let (mean, _) = stats(ThinkTime::Poisson {
            mean: ms(20),
            offset: ms(10),
        });
        assert!((mean - 20.0).abs() < 0.5, "{mean}");
    }
}
