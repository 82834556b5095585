//! The capacity search: the highest request rate a service holds within its SLO. Steps at
//! fixed arrival rates (the open model, latency corrected for coordinated omission) double
//! from a start rate until one breaks the SLO, then bisect the bracket to a tolerance. Each
//! step has an unmeasured warm-up, stops early once certainly broken, and is checked for
//! whether the generator rather than the service was the limit; the whole search keeps to
//! a time budget.

mod search;
mod step;

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::plan::Plan;
use crate::report::Report;
pub use crate::report::capacity::{Capacity, Outcome, Step, Verdict, rate_text};
pub use crate::slo::{self, Slo, Term};
pub use search::{Bracket, GROWTH, Next};
pub use step::{Objective, plan_at};

/// Defaults, chosen for a stable answer on a noisy machine in under three minutes: see
/// docs/capacity.md.
pub mod defaults {
    use std::time::Duration;

    /// Relative width of the final bracket: 5 %.
    pub const TOLERANCE: f64 = 0.05;
    /// The first (lowest) rate offered, requests per second.
    pub const START_RATE: f64 = 50.0;
    /// Unmeasured time at the start of each step.
    pub const WARM_UP: Duration = Duration::from_secs(2);
    /// Measured time of each step.
    pub const STEP: Duration = Duration::from_secs(5);
    /// The whole search's budget.
    pub const MAX_DURATION: Duration = Duration::from_secs(180);
}

/// How to search.
#[derive(Debug, Clone)]
pub struct Options {
    /// The SLO; `None`: the plan's pass/fail criteria, or [`Slo::default_terms`] without any.
    pub slo: Option<Slo>,
    /// Stop when the lowest broken rate is within this fraction above the highest held one.
    pub tolerance: f64,
    /// The first rate offered.
    pub start_rate: f64,
    /// Unmeasured part of each step.
    pub warm_up: Duration,
    /// Measured part of each step.
    pub step: Duration,
    /// No step starts that could not end within this time from the search's start.
    pub max_duration: Duration,
    /// Connections per step (`None`: sized from each rate and the SLO's time bound).
    pub connections: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            slo: None,
            tolerance: defaults::TOLERANCE,
            start_rate: defaults::START_RATE,
            warm_up: defaults::WARM_UP,
            step: defaults::STEP,
            max_duration: defaults::MAX_DURATION,
            connections: None,
        }
    }
}

/// What a search produced: its answer, and the report of the step at the capacity (or the
/// last step run) with the answer attached.
pub struct Search {
    /// The answer.
    pub capacity: Capacity,
    /// The report of the highest step that held (else the last step), `capacity` set.
    pub report: Option<Report>,
}

/// Searches the capacity of what `plan` offers; `on_step` hears every step as it ends and
/// `interrupted` turning true stops the search.
pub async fn find(
    plan: &Plan,
    options: &Options,
    interrupted: watch::Receiver<bool>,
    mut on_step: impl FnMut(&Step),
) -> Search {
    let started = Instant::now();
    let (plan, objective) = objective_of(plan, options.slo.clone());
    let setup = step::Setup {
        plan: &plan,
        objective: &objective,
        warm_up: options.warm_up,
        measure: options.step,
        connections: options.connections,
        interrupted,
    };
    let mut bracket = Bracket::default();
    let mut steps: Vec<Step> = Vec::new();
    let mut held_report: Option<Report> = None;
    let mut last_report: Option<Report> = None;
    let mut baseline_service = None;
    let (outcome, problem) = loop {
        let rate = match bracket.next(options.start_rate, options.tolerance) {
            Next::Offer(rate) => rate,
            Next::Found => break (Outcome::Found, None),
            Next::LowestBroke => break (Outcome::LowestStepBroke, None),
        };
        if started.elapsed() + options.warm_up + options.step > options.max_duration {
            break out_of_time(&bracket);
        }
        let mut ran = setup.run(rate, baseline_service).await;
        // Noise on a shared machine (another process taking the cores for a moment) only
        // ever slows a step, and can break one that would have held: a break is run once
        // more, and the repeat stands. A real overload breaks again, early and cheaply.
        if let Ok((first, _)) = &ran
            && first.verdict == Verdict::Broke
        {
            on_step(first);
            if let Ok((first, _)) = ran {
                steps.push(first);
            }
            ran = setup
                .run(rate, baseline_service)
                .await
                .map(|(mut step, report)| {
                    step.repeat = true;
                    (step, report)
                });
        }
        let (step, report) = match ran {
            Ok(done) => done,
            Err(step::Unfinished::Interrupted) => break (Outcome::Interrupted, None),
            Err(step::Unfinished::Aborted(problem)) => break (Outcome::Aborted, Some(problem)),
        };
        on_step(&step);
        baseline_service.get_or_insert_with(|| mean_service(&report));
        let verdict = step.verdict;
        let reason = step.reason.clone();
        steps.push(step);
        match verdict {
            Verdict::GeneratorLimit => {
                last_report = Some(report);
                break (Outcome::GeneratorLimit, reason);
            }
            Verdict::Held => {
                bracket.record(rate, true);
                if bracket.held == Some(rate) {
                    held_report = Some(report);
                }
            }
            Verdict::Broke => {
                bracket.record(rate, false);
                last_report = Some(report);
            }
        }
    };
    let capacity = Capacity {
        rate: bracket
            .held
            .filter(|_| matches!(outcome, Outcome::Found | Outcome::NotReached)),
        bracket: [bracket.held, bracket.broke],
        slo: objective_terms(&objective),
        outcome,
        tolerance: options.tolerance,
        problem,
        seconds: started.elapsed().as_secs_f64(),
        steps,
        terms: match &objective {
            Objective::Slo(slo) => slo.terms.clone(),
            Objective::Criteria(_) => Vec::new(),
        },
    };
    let report = held_report.or(last_report).map(|mut report| {
        report.capacity = Some(capacity.clone());
        report
    });
    Search { capacity, report }
}

/// Where a search that ran out of time stands.
fn out_of_time(bracket: &Bracket) -> (Outcome, Option<String>) {
    match (bracket.held, bracket.broke) {
        (Some(_), Some(_)) => (Outcome::Found, None),
        (Some(_), None) => (Outcome::NotReached, None),
        _ => (
            Outcome::Aborted,
            Some("--max-duration ran out before a step could run".into()),
        ),
    }
}

/// The plan to offer and what its steps are held to: `--slo` (the config's criteria then
/// set aside, so they neither judge nor stop a step), else the config's criteria, else the
/// default SLO.
fn objective_of(plan: &Plan, slo: Option<Slo>) -> (Plan, Objective) {
    let mut plan = plan.clone();
    let objective = match slo {
        None if !plan.criteria.is_empty() => Objective::Criteria(
            plan.criteria
                .iter()
                .map(|c| c.condition_text.clone())
                .collect(),
        ),
        given => {
            plan.criteria.clear();
            Objective::Slo(given.unwrap_or_else(Slo::default_terms))
        }
    };
    (plan, objective)
}

fn objective_terms(objective: &Objective) -> Vec<String> {
    match objective {
        Objective::Slo(slo) => slo.terms.iter().map(|t| t.text.clone()).collect(),
        Objective::Criteria(criteria) => criteria.iter().map(|c| format!("not {c}")).collect(),
    }
}

/// A step's mean service time, seconds.
fn mean_service(report: &Report) -> f64 {
    crate::stats::hdr::decode(&report.distributions.service)
        .map(|h| h.mean() / 1e6)
        .unwrap_or(0.0)
}
