//! One step of the capacity search: the plan offered at a fixed arrival rate (open model,
//! latency corrected for coordinated omission), first for an unmeasured warm-up, then for
//! the measured time; stopped as soon as it is certainly broken; then judged against the
//! SLO, and checked for whether the generator, not the service, was the limit.

use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::watch;

use crate::plan::{MAX_CONCURRENCY, Plan};
use crate::report::Report;
use crate::report::capacity::{Step, Verdict, rate_text};
use crate::slo::{Figures, Slo, Subject, Term, figure_text};
use crate::stats::{Second, hdr};
use crate::{Ending, Progress};

/// How long a step may run past its planned end while its queue drains before it is cut.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// A step that completed fewer requests than this fraction of those offered did not keep up.
const KEPT_UP: f64 = 0.9;
/// Connections busy on average beyond this fraction of those open: they ran out.
const SATURATED: f64 = 0.8;

/// What the search holds a step to.
#[derive(Debug, Clone)]
pub enum Objective {
    /// `--slo` terms (or the default ones).
    Slo(Slo),
    /// The config's pass/fail criteria: a rate holds when none fails.
    Criteria(Vec<String>),
}

impl Objective {
    /// How the objective reads: `p99<100ms, errors<1%`.
    pub fn text(&self) -> String {
        match self {
            Self::Slo(slo) => slo.text(),
            Self::Criteria(criteria) => format!("no criterion fails: {}", criteria.join(", ")),
        }
    }
}

/// How steps are run: the same for every step of one search.
pub struct Setup<'a> {
    /// The plan whose scenario is offered (its criteria already set for the objective).
    pub plan: &'a Plan,
    /// What a step is held to.
    pub objective: &'a Objective,
    /// The unmeasured part of each step.
    pub warm_up: Duration,
    /// The measured part of each step.
    pub measure: Duration,
    /// Connections given (`None`: sized from the rate and the SLO's time bound).
    pub connections: Option<u32>,
    /// Completes the search when it turns true (Ctrl-C).
    pub interrupted: watch::Receiver<bool>,
}

/// Why a step gave no verdict.
pub enum Unfinished {
    /// The user interrupted it.
    Interrupted,
    /// The run could not go on (unreachable target, bad TLS setup…).
    Aborted(String),
}

impl Setup<'_> {
    /// Connections for `rate`: enough that a service answering within the SLO's longest
    /// time bound never runs them out (twice rate × bound), at least the open model's
    /// default.
    pub fn connections_for(&self, rate: f64) -> u32 {
        if let Some(given) = self.connections {
            return given;
        }
        let bound = match self.objective {
            Objective::Slo(slo) => slo.longest_time_bound().unwrap_or(1.0),
            Objective::Criteria(_) => 1.0,
        };
        let configured = self
            .plan
            .executions
            .iter()
            .map(|e| e.concurrency)
            .max()
            .unwrap_or(0);
        let needed = (2.0 * rate * bound).ceil().min(f64::from(MAX_CONCURRENCY)) as u32;
        needed
            .max(crate::plan::DEFAULT_OPEN_CONNECTIONS)
            .max(configured)
            .min(MAX_CONCURRENCY)
    }

    /// Runs one step at `rate`; `baseline_service` is the first step's mean service time.
    pub async fn run(
        &self,
        rate: f64,
        baseline_service: Option<f64>,
    ) -> Result<(Step, Report), Unfinished> {
        let connections = self.connections_for(rate);
        if !self.warm_up.is_zero() {
            self.offer(rate, connections, self.warm_up).await?;
        }
        let (report, stopped_early) = self.offer(rate, connections, self.measure).await?;
        let step = judge(
            self,
            rate,
            connections,
            &report,
            stopped_early,
            baseline_service,
        );
        Ok((step, report))
    }

    /// Offers `rate` for `hold`, stopping early once the SLO is certainly broken.
    async fn offer(
        &self,
        rate: f64,
        connections: u32,
        hold: Duration,
    ) -> Result<(Report, bool), Unfinished> {
        let plan = plan_at(self.plan, rate, connections, hold);
        let mut watcher = Watcher::new(self.objective, rate * hold.as_secs_f64());
        let (early_tx, early) = watch::channel(false);
        let stop = stop_when(early, self.interrupted.clone(), hold + DRAIN_GRACE);
        let report = crate::run(&plan, stop, |progress: &Progress| {
            if watcher.certainly_broken(&progress.second) {
                let _ = early_tx.send(true);
            }
        })
        .await;
        if *self.interrupted.borrow() {
            return Err(Unfinished::Interrupted);
        }
        if report.ending == Ending::Aborted {
            let problem = report
                .problem
                .clone()
                .unwrap_or_else(|| "the run was aborted".into());
            return Err(Unfinished::Aborted(problem));
        }
        if let Some(problem) = unreachable(&report) {
            return Err(Unfinished::Aborted(problem));
        }
        Ok((report, watcher.broken))
    }
}

/// Why a step says nothing about the service: every request failed to connect (a step
/// shorter than the engine's own give-up time ends before it would say so).
fn unreachable(report: &Report) -> Option<String> {
    let connect = report
        .errors
        .iter()
        .filter(|e| e.kind == crate::stats::ErrorKind::Connect);
    let failed: u64 = connect.clone().map(|e| e.count).sum();
    let first = connect.map(|e| e.message.as_str()).next()?;
    (failed == report.overall.samples).then(|| {
        format!(
            "every request failed to connect ({first}): is the target running, and is its address right?"
        )
    })
}

/// `base` offered at `rate` (split over its executions as their own rates are, else
/// evenly) for `hold`, with `connections` connections per execution.
pub fn plan_at(base: &Plan, rate: f64, connections: u32, hold: Duration) -> Plan {
    let mut plan = base.clone();
    let weights: Vec<f64> = if plan.executions.iter().all(|e| e.arrival_rate.is_some()) {
        plan.executions
            .iter()
            .filter_map(|e| e.arrival_rate)
            .collect()
    } else {
        vec![1.0; plan.executions.len()]
    };
    let total: f64 = weights.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    for (execution, weight) in plan.executions.iter_mut().zip(weights) {
        execution.arrival_rate = Some((rate * weight / total).max(crate::plan::MIN_RATE));
        execution.concurrency = connections;
        execution.ramp_up = Duration::ZERO;
        execution.hold_for = hold;
        execution.iterations = None;
        execution.throughput = None;
        execution.steps = None;
    }
    plan
}

/// Completes when `early` or `interrupted` turns true, or after `limit`.
async fn stop_when(
    early: watch::Receiver<bool>,
    interrupted: watch::Receiver<bool>,
    limit: Duration,
) {
    tokio::select! {
        () = signalled(early) => {}
        () = signalled(interrupted) => {}
        () = tokio::time::sleep(limit) => {}
    }
}

/// Completes when `receiver` turns true; never when its sender is gone without a signal.
async fn signalled(mut receiver: watch::Receiver<bool>) {
    if receiver.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Watches a step second by second for the point where it is certainly broken: more
/// requests already over a percentile's bound than the whole step may have, more failures
/// than the errors bound allows, or more total time than the average allows. The counts
/// are of finished requests and only grow, so the step's end cannot mend them.
struct Watcher {
    terms: Vec<Term>,
    expected: f64,
    over: Vec<u64>,
    failures: u64,
    total_time: f64,
    broken: bool,
}

impl Watcher {
    fn new(objective: &Objective, expected: f64) -> Self {
        let terms = match objective {
            Objective::Slo(slo) => slo.terms.clone(),
            // The config's criteria stop the run themselves when they say `stop`.
            Objective::Criteria(_) => Vec::new(),
        };
        Self {
            over: vec![0; terms.len()],
            terms,
            expected,
            failures: 0,
            total_time: 0.0,
            broken: false,
        }
    }

    fn certainly_broken(&mut self, second: &Second) -> bool {
        if self.broken || self.terms.is_empty() {
            return self.broken;
        }
        self.failures += second.overall.failures;
        self.total_time += second.overall.sum_rt;
        let histogram = hdr::decode(&second.histogram).ok();
        for (term, over) in self.terms.iter().zip(&mut self.over) {
            let Subject::Percentile(level) = term.subject else {
                continue;
            };
            if let Some(histogram) = &histogram {
                *over += count_over(histogram, term);
            }
            self.broken |= *over as f64 > (1.0 - level / 100.0) * self.expected;
        }
        for term in &self.terms {
            self.broken |= match term.subject {
                Subject::Errors => {
                    self.failures as f64 * 100.0 > term.bound * self.expected.max(1.0)
                }
                Subject::AvgRt => self.total_time > term.bound * self.expected.max(1.0),
                Subject::Percentile(_) => false,
            };
        }
        self.broken
    }
}

/// Samples of `histogram` (µs) that break `term`'s time bound.
fn count_over(histogram: &Histogram<u64>, term: &Term) -> u64 {
    let bound = (term.bound * 1e6).round() as u64;
    let from = if term.inclusive { bound + 1 } else { bound };
    if histogram.is_empty() || histogram.max() < from {
        return 0;
    }
    histogram.count_between(from.max(1), histogram.max())
}

/// The step's figures and verdict from its measured run.
fn judge(
    setup: &Setup<'_>,
    rate: f64,
    connections: u32,
    report: &Report,
    stopped_early: bool,
    baseline_service: Option<f64>,
) -> Step {
    let times = hdr::decode(&report.distributions.overall).unwrap_or_else(|_| hdr::empty());
    let service = hdr::decode(&report.distributions.service).unwrap_or_else(|_| hdr::empty());
    let error_percent = report.overall.failure_percent;
    let achieved = achieved_rate(report, setup.measure, stopped_early);
    let quantile =
        |h: &Histogram<u64>, q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1e6);
    let mut step = Step {
        offered: rate,
        achieved,
        connections,
        samples: report.overall.samples,
        p50: quantile(&times, 0.5),
        p99: quantile(&times, 0.99),
        service_p99: quantile(&service, 0.99),
        error_percent,
        verdict: Verdict::Held,
        reason: None,
        stopped_early,
        seconds: report.duration_seconds,
        repeat: false,
    };
    let broke = broken_because(setup.objective, report, &times, stopped_early).or_else(|| {
        (achieved < KEPT_UP * rate).then(|| {
            format!(
                "completed {} of the {} req/s offered",
                rate_text(achieved),
                rate_text(rate)
            )
        })
    });
    let Some(reason) = broke else {
        return step;
    };
    let service_held = match setup.objective {
        Objective::Slo(slo) => slo
            .broken_by(&Figures {
                times: &service,
                error_percent,
            })
            .is_none(),
        Objective::Criteria(_) => {
            let mean = service.mean() / 1e6;
            baseline_service.is_none_or(|base| mean <= 2.0 * base)
        }
    };
    step.verdict = Verdict::Broke;
    step.reason = Some(reason);
    if service_held && let Some(limit) = generator_limit(&step, &times, &service) {
        step.verdict = Verdict::GeneratorLimit;
        step.reason = Some(limit);
    }
    step
}

/// Why the step broke the objective, if it did.
fn broken_because(
    objective: &Objective,
    report: &Report,
    times: &Histogram<u64>,
    stopped_early: bool,
) -> Option<String> {
    let early = if stopped_early {
        " (stopped early)"
    } else {
        ""
    };
    match objective {
        Objective::Slo(slo) => {
            if times.is_empty() {
                return Some("no request completed".into());
            }
            slo.broken_by(&Figures {
                times,
                error_percent: report.overall.failure_percent,
            })
            .map(|(term, value)| {
                format!(
                    "{} was {}, bound {}{early}",
                    subject_name(term.subject),
                    figure_text(term.subject, value),
                    term.bound_text()
                )
            })
        }
        Objective::Criteria(_) => report
            .criteria
            .iter()
            .find(|c| c.failed)
            .map(|c| format!("{}{early}", c.verdict)),
    }
}

fn subject_name(subject: Subject) -> String {
    match subject {
        Subject::Percentile(level) => format!("p{level}"),
        Subject::AvgRt => "avg-rt".into(),
        Subject::Errors => "errors".into(),
    }
}

/// When the service answered within the objective but requests waited for the generator:
/// which of its limits it was. By Little's law the connections were busy on average
/// `achieved × mean service time`; near all of them means they ran out, fewer means the
/// generator sent late with connections free (it fell behind its own schedule).
fn generator_limit(
    step: &Step,
    times: &Histogram<u64>,
    service: &Histogram<u64>,
) -> Option<String> {
    let mean_service = service.mean() / 1e6;
    let mean_wait = (times.mean() / 1e6 - mean_service).max(0.0);
    let busy = step.achieved * mean_service;
    let connections = f64::from(step.connections);
    if busy >= SATURATED * connections {
        let most = connections / mean_service.max(1e-6);
        return Some(format!(
            "all {} connections were busy (each request took {:.1} ms, so they carry at most ~{} req/s) while requests waited {:.1} ms on average to be sent: give more connections (-c)",
            step.connections,
            mean_service * 1000.0,
            rate_text(most),
            mean_wait * 1000.0
        ));
    }
    (mean_wait > mean_service.max(0.001)).then(|| {
        format!(
            "requests waited {:.1} ms on average to be sent with connections free: this machine fell behind the schedule (its CPU); run the generator elsewhere or split it with --shard",
            mean_wait * 1000.0
        )
    })
}

/// Requests per second completed: over the planned time, unless the step was stopped
/// early (then over its wall time). Arrivals are only scheduled within the planned time,
/// so this never exceeds the rate offered, and a queue drained after the end counts.
fn achieved_rate(report: &Report, measure: Duration, stopped_early: bool) -> f64 {
    let seconds = if stopped_early {
        report.duration_seconds
    } else {
        measure.as_secs_f64()
    };
    if seconds > 0.0 {
        report.overall.samples as f64 / seconds
    } else {
        0.0
    }
}
