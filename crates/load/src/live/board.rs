//! The live state of a run, fed once a second by the engine's progress: the history the
//! charts draw, the current figures every live view shows, the latest totals for
//! `/metrics`, and the verdict once the run has ended. One lock, taken once a second by the
//! engine and briefly by each viewer.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;

use crate::engine::Progress;
use crate::plan::{Execution, Plan};
use crate::report::{Report, Verdict};
use crate::stats::{ErrorKind, Second, hdr};
use crate::totals::{CriterionState, Totals};

/// Seconds the current percentiles are taken over.
pub const RECENT_SECONDS: usize = 5;
/// Seconds of history kept for the charts (an hour at one point a second).
const HISTORY_SECONDS: usize = 3600;
/// Labels sent to the page's table (the busiest first).
const MAX_TABLE_LABELS: usize = 200;

/// One second of the run, as the charts draw it.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Seconds since the start.
    pub t: u64,
    /// Active users.
    pub users: u64,
    /// Requests finished in this second.
    pub rps: u64,
    /// Of which failed.
    pub errors: u64,
    /// Response-time percentiles of this second, seconds.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// The planned request rate (open model or throughput cap).
    pub offered: Option<f64>,
}

/// Response-time percentiles over the last [`RECENT_SECONDS`], seconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recent {
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// One label's row in the live tables.
#[derive(Debug, Clone, Serialize)]
pub struct LabelRow {
    /// The label.
    pub label: String,
    /// Requests since the start.
    pub requests: u64,
    /// Failed requests since the start.
    pub failures: u64,
    /// Requests in the last second.
    pub rps: u64,
    /// Average response time since the start, seconds.
    pub avg: Option<f64>,
    /// Percentiles of the last second, seconds (none without samples in it).
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// What every live view shows now.
#[derive(Debug, Clone, Serialize)]
pub struct Now {
    /// The last second, as the charts draw it.
    pub point: Point,
    /// Seconds since the start.
    pub elapsed: f64,
    /// Planned duration, seconds (0: bounded by iterations only).
    pub planned: f64,
    /// Requests since the start.
    pub requests: u64,
    /// Failed requests since the start.
    pub failures: u64,
    /// Percentiles of the last seconds.
    pub recent: Recent,
    /// Errors since the start, by kind.
    pub errors: BTreeMap<&'static str, u64>,
    /// Per label, busiest (last second, then since the start) first.
    pub labels: Vec<LabelRow>,
    /// The pass/fail criteria.
    pub criteria: Vec<CriterionState>,
}

/// How the run ended.
#[derive(Debug, Clone, Serialize)]
pub struct End {
    /// passed, failed, interrupted or aborted.
    pub verdict: Verdict,
    /// The process's exit code.
    pub exit_code: i32,
    /// Why an aborted run could not go on.
    pub problem: Option<String>,
    /// Where the dashboard serves the HTML report.
    pub report: &'static str,
    /// Requests and failures in the report.
    pub requests: u64,
    /// Failed requests in the report.
    pub failures: u64,
}

/// What does not change during the run.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    /// `peregrine <version>`.
    pub tool: String,
    /// The labels, in the plan's order.
    pub labels: Vec<String>,
    /// Planned duration, seconds.
    pub planned: f64,
    /// The slice of the plan this process runs, e.g. `1/4` (`0/1`: all of it).
    pub shard: String,
    #[serde(skip)]
    executions: Vec<Execution>,
}

/// The shared live state.
pub struct Board {
    meta: Meta,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    history: VecDeque<Point>,
    recent: VecDeque<Histogram<u64>>,
    now: Option<Now>,
    totals: Arc<Totals>,
    end: Option<End>,
    report_html: Option<Arc<str>>,
}

/// What a viewer reads at once under the lock.
pub struct Snapshot<'a> {
    guard: MutexGuard<'a, State>,
}

impl Snapshot<'_> {
    /// The current figures (none before the first second).
    pub fn now(&self) -> Option<&Now> {
        self.guard.now.as_ref()
    }

    /// The seconds so far, oldest first.
    pub fn history(&self) -> &VecDeque<Point> {
        &self.guard.history
    }

    /// The counts since the start.
    pub fn totals(&self) -> &Totals {
        &self.guard.totals
    }

    /// How the run ended, once it has.
    pub fn end(&self) -> Option<&End> {
        self.guard.end.as_ref()
    }
}

impl Board {
    /// An empty board for `plan`.
    pub fn new(plan: &Plan) -> Self {
        Self {
            meta: Meta {
                tool: format!("peregrine {}", env!("CARGO_PKG_VERSION")),
                labels: plan.labels.clone(),
                planned: plan.schedule().as_secs_f64(),
                shard: plan.shard().to_string(),
                executions: plan.executions.clone(),
            },
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
        }
    }

    /// What does not change during the run.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Hears of each change (the value counts them).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The state as it is now.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot { guard: self.lock() }
    }

    /// The HTML report, once the run has ended.
    pub fn report_html(&self) -> Option<Arc<str>> {
        self.lock().report_html.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A viewer that panicked holding the lock left consistent data: every update
        // replaces whole values.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes in one second of the run.
    pub fn update(&self, progress: &Progress) {
        let mut state = self.lock();
        if state.end.is_some() {
            return;
        }
        let second = &progress.second;
        let point = Point {
            t: second.second,
            users: progress.users,
            rps: second.overall.hits,
            errors: second.overall.failures,
            p50: second.overall.percentile(50.0),
            p90: second.overall.percentile(90.0),
            p99: second.overall.percentile(99.0),
            offered: offered_rate(&self.meta.executions, progress.elapsed),
        };
        if state.history.len() == HISTORY_SECONDS {
            state.history.pop_front();
        }
        state.history.push_back(point.clone());
        if state.recent.len() == RECENT_SECONDS {
            state.recent.pop_front();
        }
        state
            .recent
            .push_back(hdr::decode(&second.histogram).unwrap_or_else(|_| hdr::empty()));
        let recent = recent_percentiles(&state.recent);
        let (requests, failures) = progress.totals.overall();
        state.now = Some(Now {
            point,
            elapsed: progress.elapsed.as_secs_f64(),
            planned: self.meta.planned,
            requests,
            failures,
            recent,
            errors: errors_by_kind(&progress.totals),
            labels: label_rows(&self.meta.labels, &progress.totals, second),
            criteria: progress.totals.criteria.clone(),
        });
        state.totals = Arc::clone(&progress.totals);
        drop(state);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Takes in the final counts and the report: the views show the verdict from now on.
    pub fn finish(&self, mut totals: Totals, report: &Report) {
        totals.judged(&report.criteria);
        let mut state = self.lock();
        if let Some(now) = &mut state.now {
            now.requests = report.overall.samples;
            now.failures = report.overall.failures;
            now.errors = errors_by_kind(&totals);
            now.criteria = totals.criteria.clone();
            now.elapsed = report.duration_seconds;
        }
        state.end = Some(End {
            verdict: report.verdict,
            exit_code: report.exit_code(),
            problem: report.problem.clone(),
            report: "/report.html",
            requests: report.overall.samples,
            failures: report.overall.failures,
        });
        state.report_html = Some(Arc::from(report.html_page()));
        state.totals = Arc::new(totals);
        drop(state);
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The name an error kind has in reports (its serde name): `connect`, `timeout`, `http`,
/// `assertion`, `io`, `render`, `resources`.
pub fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Connect => "connect",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Http => "http",
        ErrorKind::Assertion => "assertion",
        ErrorKind::Io => "io",
        ErrorKind::Render => "render",
        ErrorKind::Resources => "resources",
    }
}

fn errors_by_kind(totals: &Totals) -> BTreeMap<&'static str, u64> {
    totals
        .errors_by_kind()
        .into_iter()
        .map(|(kind, count)| (kind_name(kind), count))
        .collect()
}

/// Percentiles of the seconds in `recent` together.
fn recent_percentiles(recent: &VecDeque<Histogram<u64>>) -> Recent {
    let mut merged = hdr::empty();
    for second in recent {
        // Both come from the same bounds: adding cannot fail; a failure would only leave
        // the percentiles short of a second.
        let _ = merged.add(second);
    }
    if merged.is_empty() {
        return Recent::default();
    }
    let at = |q: f64| Some(merged.value_at_quantile(q) as f64 / 1e6);
    Recent {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
    }
}

/// The labels' rows, busiest first.
fn label_rows(labels: &[String], totals: &Totals, second: &Second) -> Vec<LabelRow> {
    let mut rows: Vec<LabelRow> = totals
        .labels
        .iter()
        .enumerate()
        .filter(|(_, t)| t.samples > 0)
        .map(|(i, t)| {
            let window = second.label(i);
            LabelRow {
                label: labels.get(i).cloned().unwrap_or_default(),
                requests: t.samples,
                failures: t.failures,
                rps: window.hits,
                avg: (t.samples > 0).then(|| t.sum_seconds / t.samples as f64),
                p50: window.percentile(50.0),
                p90: window.percentile(90.0),
                p99: window.percentile(99.0),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.rps
            .cmp(&a.rps)
            .then(b.requests.cmp(&a.requests))
            .then_with(|| a.label.cmp(&b.label))
    });
    rows.truncate(MAX_TABLE_LABELS);
    rows
}

/// The request rate the plan asks for at `elapsed` (open model, or a throughput cap), growing
/// linearly over the ramp-up; `None` when no execution sets one.
pub fn offered_rate(executions: &[Execution], elapsed: Duration) -> Option<f64> {
    let t = elapsed.as_secs_f64();
    let mut rates = executions.iter().filter_map(|e| {
        let rate = e.shard.rate(e.arrival_rate.or(e.throughput)?);
        let end = e.duration().as_secs_f64();
        if end > 0.0 && t > end {
            return Some(0.0);
        }
        let ramp = e.ramp_up.as_secs_f64();
        let share = if ramp > 0.0 && t < ramp {
            match e.steps {
                Some(steps) if steps > 0 => {
                    let steps = f64::from(steps);
                    ((t / ramp * steps).floor() + 1.0).min(steps) / steps
                }
                _ => t / ramp,
            }
        } else {
            1.0
        };
        Some(rate * share)
    });
    let first = rates.next()?;
    Some(first + rates.sum::<f64>())
}
