//! A capacity search's answer as a report carries it: the types report.json writes under
//! `capacity` (re-exported by `capacity`, which runs the search) and the HTML section that
//! draws them: p50/p99 and errors against the offered rate, with the SLO's bounds as dashed
//! lines and the capacity marked, then the steps' table (markup in the askama templates
//! `templates/report/capacity.html` and `templates/report/chart/capacity.html`). They live
//! on the report's side because a [`super::Report`] holds them while the search runs reports.

use askama::Template;
use askama::filters::HtmlSafe;
use serde::Serialize;

use super::chart::{BOTTOM, HEIGHT, LEFT, Point, Px, RIGHT, TOP, WIDTH};
use super::describe::nice_step;
use crate::exit_code;
use crate::slo::{Subject, Term};

/// How the search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A rate held and one above it broke: the capacity is the held one.
    Found,
    /// The time ran out before any step broke: the capacity is at least the last held rate.
    NotReached,
    /// Even the first, lowest step broke the SLO.
    LowestStepBroke,
    /// The generator could not offer a step's rate: no capacity is reported.
    GeneratorLimit,
    /// Stopped by Ctrl-C.
    Interrupted,
    /// A step could not run (see `problem`).
    Aborted,
}

/// The search's answer, as report.json carries it under `capacity`.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    /// The highest rate that held, req/s: the capacity when `outcome` is `found`.
    pub rate: Option<f64>,
    /// `[held, broke]`: the highest rate that held and the lowest that broke.
    pub bracket: [Option<f64>; 2],
    /// The objective: each SLO term, or the config's criteria.
    pub slo: Vec<String>,
    /// How the search ended.
    pub outcome: Outcome,
    /// The tolerance asked for.
    pub tolerance: f64,
    /// Why there is no capacity, or what limits it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The search's wall time, seconds.
    pub seconds: f64,
    /// Every step, in the order run.
    pub steps: Vec<Step>,
    /// The SLO's terms, for drawing their bounds.
    #[serde(skip)]
    pub terms: Vec<Term>,
}

impl Capacity {
    /// The exit code: 0 with a capacity, 3 when the lowest step broke, 1 when the
    /// generator was the limit or a step could not run, 2 when interrupted.
    pub fn exit_code(&self) -> i32 {
        match self.outcome {
            Outcome::Found | Outcome::NotReached => exit_code::OK,
            Outcome::LowestStepBroke => exit_code::CRITERIA_FAILED,
            Outcome::Interrupted => exit_code::INTERRUPTED,
            Outcome::GeneratorLimit | Outcome::Aborted => exit_code::TOOL_ERROR,
        }
    }

    /// The answer in one line: `Capacity: 1,000 req/s (p99<100ms, errors<1%): held at …`.
    pub fn answer(&self) -> String {
        let slo = self.slo.join(", ");
        let [held, broke] = self.bracket.map(|r| r.map(rate_text));
        match (self.outcome, held, broke) {
            (Outcome::Found, Some(held), Some(broke)) => {
                let wide = if within(self.bracket, self.tolerance) {
                    String::new()
                } else {
                    format!(
                        "; the time ran out before the bracket was within {}%",
                        self.tolerance * 100.0
                    )
                };
                format!(
                    "Capacity: {held} req/s ({slo}): held at {held}, broke at {broke} req/s{wide}"
                )
            }
            (Outcome::NotReached, Some(held), _) => format!(
                "Capacity: at least {held} req/s ({slo}): no step broke the SLO within the time budget"
            ),
            (Outcome::LowestStepBroke, _, Some(broke)) => format!(
                "No capacity: even the lowest step, {broke} req/s, broke the SLO ({slo}); try a lower --start-rate"
            ),
            (Outcome::GeneratorLimit, held, _) => format!(
                "No capacity: the load generator could not offer the rate{}: {}",
                held.map(|h| format!(" (the service held {h} req/s)"))
                    .unwrap_or_default(),
                self.problem.as_deref().unwrap_or("see the steps above")
            ),
            (Outcome::Interrupted, ..) => "No capacity: the search was interrupted".to_owned(),
            _ => format!(
                "No capacity: {}",
                self.problem
                    .as_deref()
                    .unwrap_or("the search could not run")
            ),
        }
    }
}

/// Whether the lowest rate that broke is within `tolerance` above the highest that held.
pub fn within(bracket: [Option<f64>; 2], tolerance: f64) -> bool {
    matches!(bracket, [Some(held), Some(broke)] if broke <= held * (1.0 + tolerance))
}

/// How a step ended for the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The service held the objective at this rate.
    Held,
    /// The service broke it.
    Broke,
    /// The generator could not offer the rate: the step says nothing about the service.
    GeneratorLimit,
}

/// One measured step, as the console, report.json and the HTML report show it.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Requests per second offered.
    pub offered: f64,
    /// Requests per second completed while the step held its rate.
    pub achieved: f64,
    /// Connections open for the step.
    pub connections: u32,
    /// Requests completed in the measured part.
    pub samples: u64,
    /// Median response time, seconds (corrected: from when each request was due).
    pub p50: Option<f64>,
    /// 99th percentile response time, seconds (corrected).
    pub p99: Option<f64>,
    /// 99th percentile service time, seconds (from the actual send: uncorrected).
    pub service_p99: Option<f64>,
    /// Failed requests, percent.
    pub error_percent: f64,
    /// Held, broke, or the generator's limit.
    pub verdict: Verdict,
    /// Why it broke, or what limited the generator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// It was stopped before its end, once certainly broken.
    pub stopped_early: bool,
    /// Measured wall time, seconds (the warm-up excluded).
    pub seconds: f64,
    /// A repeat of the step before at the same rate, whose break may have been the
    /// machine's noise; the repeat's verdict stands.
    pub repeat: bool,
}

impl Step {
    /// The console line: offered and achieved rate, p50, p99, errors, held or broke.
    pub fn line(&self) -> String {
        let ms =
            |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |s| format!("{:.1}", s * 1000.0));
        let outcome = match (self.verdict, &self.reason) {
            (Verdict::Held, _) => "held".to_owned(),
            (Verdict::Broke, Some(reason)) if !self.repeat => {
                format!("broke: {reason}; repeating to confirm")
            }
            (Verdict::Broke, Some(reason)) => format!("broke: {reason}"),
            (Verdict::Broke, None) => "broke".to_owned(),
            (Verdict::GeneratorLimit, reason) => format!(
                "generator limit: {}",
                reason.as_deref().unwrap_or("could not offer the rate")
            ),
        };
        format!(
            "offered {:>9} req/s  achieved {:>9} req/s  p50 {:>7} ms  p99 {:>7} ms  errors {:>6.2}%  {outcome}",
            rate_text(self.offered),
            rate_text(self.achieved),
            ms(self.p50),
            ms(self.p99),
            self.error_percent,
        )
    }
}

/// A rate as people read it: whole numbers from 100 up, one decimal below.
pub fn rate_text(rate: f64) -> String {
    if rate >= 100.0 {
        format!("{rate:.0}")
    } else {
        format!("{rate:.1}")
    }
}

/// A latency axis reaches at most this many times the SLO's largest bound, so one broken
/// step's seconds-long queue does not flatten the lines that matter; higher points are drawn
/// at the top.
const CLIP_OVER_BOUND: f64 = 4.0;

/// The section of the page: the `report/capacity.html` template.
#[derive(Template)]
#[template(path = "report/capacity.html")]
pub(crate) struct Section {
    outcome: String,
    answer: String,
    charts: Vec<Figure>,
    steps: Vec<StepRow>,
}

// A template whose own fields are escaped: it goes into the page as it is.
impl HtmlSafe for Section {}

/// One row of the steps' table.
struct StepRow {
    verdict: String,
    offered: String,
    achieved: String,
    connections: u32,
    p50: String,
    p99: String,
    errors: String,
    outcome: String,
}

/// The section, or nothing for a report without a capacity search.
pub(crate) fn section(capacity: Option<&Capacity>) -> Option<Section> {
    let capacity = capacity?;
    let charts = if capacity.steps.is_empty() {
        Vec::new()
    } else {
        vec![latency_chart(capacity), error_chart(capacity)]
    };
    Some(Section {
        outcome: json_name(capacity.outcome),
        answer: capacity.answer(),
        charts,
        steps: capacity.steps.iter().map(step_row).collect(),
    })
}

/// A value's name as report.json writes it (`found`, `generator-limit`).
fn json_name(value: impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One series of points (x: offered rate, y: value), `None` where a step has no value.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, Option<f64>, Verdict)>,
}

/// A horizontal dashed line: an SLO bound.
struct Bound {
    name: String,
    value: f64,
}

fn latency_chart(capacity: &Capacity) -> Figure {
    let bounds: Vec<Bound> = capacity
        .terms
        .iter()
        .filter(|t| t.subject != Subject::Errors)
        .map(|t| Bound {
            name: t.text.clone(),
            value: t.bound * 1000.0,
        })
        .collect();
    let ms = |v: Option<f64>| v.map(|s| s * 1000.0);
    let series = [
        Series {
            name: "p50",
            color: "#2b7bb9",
            points: sorted(capacity, |s| ms(s.p50)),
        },
        Series {
            name: "p99",
            color: "#d9822b",
            points: sorted(capacity, |s| ms(s.p99)),
        },
    ];
    figure(
        "capacity-latency",
        "Response time (corrected) against offered rate, ms",
        capacity,
        &series,
        &bounds,
    )
}

fn error_chart(capacity: &Capacity) -> Figure {
    let bounds: Vec<Bound> = capacity
        .terms
        .iter()
        .filter(|t| t.subject == Subject::Errors)
        .map(|t| Bound {
            name: t.text.clone(),
            value: t.bound,
        })
        .collect();
    let series = [Series {
        name: "errors %",
        color: "#c0392b",
        points: sorted(capacity, |s| Some(s.error_percent)),
    }];
    figure(
        "capacity-errors",
        "Errors against offered rate, %",
        capacity,
        &series,
        &bounds,
    )
}

/// The steps' values by offered rate.
fn sorted(
    capacity: &Capacity,
    value: impl Fn(&Step) -> Option<f64>,
) -> Vec<(f64, Option<f64>, Verdict)> {
    let mut points: Vec<_> = capacity
        .steps
        .iter()
        .map(|s| (s.offered, value(s), s.verdict))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// A chart of values against the offered rate: the `report/chart/capacity.html` template.
#[derive(Template)]
#[template(path = "report/chart/capacity.html")]
struct Figure {
    id: &'static str,
    title: &'static str,
    /// Value lines across, and their values.
    y_ticks: Vec<Level>,
    /// The rates under the x axis.
    x_ticks: Vec<Label>,
    /// The x axis's name, centred under it.
    axis_name: Label,
    /// The SLO's bounds, dashed.
    bounds: Vec<Level>,
    capacity: Option<CapacityLine>,
    lines: Vec<SeriesMarks>,
    /// The y axis's top, when higher values were drawn at the top.
    clipped_at: Option<String>,
}

impl HtmlSafe for Figure {}

/// A text at `(x, y)`.
struct Label {
    x: Px,
    y: Px,
    text: String,
}

/// A line across at height `y`, its text above it at `text_y`.
struct Level {
    text: String,
    y: Px,
    text_y: Px,
}

/// The vertical line at the capacity.
struct CapacityLine {
    x: Px,
    text_x: Px,
    rate: String,
}

/// A series drawn: its polyline and a circle per step, filled where the step held.
struct SeriesMarks {
    name: String,
    color: String,
    points: Vec<Point>,
    dots: Vec<(Px, Px, bool)>,
}

fn figure(
    id: &'static str,
    title: &'static str,
    capacity: &Capacity,
    series: &[Series<'_>],
    bounds: &[Bound],
) -> Figure {
    let x_max = capacity.steps.iter().map(|s| s.offered).fold(0.0, f64::max) * 1.05;
    let highest = series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|p| p.1))
        .chain(bounds.iter().map(|b| b.value))
        .fold(0.0, f64::max);
    let clip = bounds
        .iter()
        .map(|b| b.value * CLIP_OVER_BOUND)
        .reduce(f64::max)
        .unwrap_or(f64::INFINITY);
    let y_max = nice_top(highest.min(clip));
    let x = Axis::new(x_max, LEFT, WIDTH - RIGHT);
    let y = Axis::new(y_max, HEIGHT - BOTTOM, TOP);
    Figure {
        id,
        title,
        y_ticks: y
            .ticks()
            .into_iter()
            .map(|tick| Level {
                text: tick_text(tick),
                y: Px(y.px(tick)),
                text_y: Px(y.px(tick) + 4.0),
            })
            .collect(),
        x_ticks: x
            .ticks()
            .into_iter()
            .map(|tick| Label {
                x: Px(x.px(tick)),
                y: Px(HEIGHT - BOTTOM + 16.0),
                text: tick_text(tick),
            })
            .collect(),
        axis_name: Label {
            x: Px((LEFT + WIDTH - RIGHT) / 2.0),
            y: Px(HEIGHT - 4.0),
            text: "offered rate, req/s".to_owned(),
        },
        bounds: bounds
            .iter()
            .map(|bound| {
                let py = y.px(bound.value.min(y_max));
                Level {
                    text: bound.name.clone(),
                    y: Px(py),
                    text_y: Px(py - 4.0),
                }
            })
            .collect(),
        capacity: capacity.rate.map(|rate| CapacityLine {
            x: Px(x.px(rate)),
            text_x: Px(x.px(rate) + 4.0),
            rate: rate_text(rate),
        }),
        lines: series.iter().map(|line| marks(line, &x, &y)).collect(),
        clipped_at: (highest > clip).then(|| tick_text(y_max)),
    }
}

fn marks(line: &Series<'_>, x: &Axis, y: &Axis) -> SeriesMarks {
    let points: Vec<(Point, bool)> = line
        .points
        .iter()
        .filter_map(|&(rate, value, verdict)| {
            let value = value?;
            let point = Point(x.px(rate), y.px(value.min(y.max)));
            Some((point, verdict == Verdict::Held))
        })
        .collect();
    SeriesMarks {
        name: line.name.to_owned(),
        color: line.color.to_owned(),
        points: points.iter().map(|(point, _)| *point).collect(),
        dots: points
            .iter()
            .map(|&(Point(x, y), held)| (Px(x), Px(y), held))
            .collect(),
    }
}

/// A linear axis from 0 to `max`, mapped onto pixels `from`..`to`.
struct Axis {
    max: f64,
    from: f64,
    to: f64,
}

impl Axis {
    fn new(max: f64, from: f64, to: f64) -> Self {
        Self {
            max: if max > 0.0 { max } else { 1.0 },
            from,
            to,
        }
    }

    fn px(&self, value: f64) -> f64 {
        self.from + (self.to - self.from) * (value / self.max).clamp(0.0, 1.0)
    }

    /// About five round ticks.
    fn ticks(&self) -> Vec<f64> {
        let step = nice_step(self.max / 5.0);
        (0..=((self.max / step).floor() as usize))
            .map(|i| i as f64 * step)
            .collect()
    }
}

/// A round top at or above `value`.
fn nice_top(value: f64) -> f64 {
    let step = nice_step(value / 5.0);
    (value / step).ceil().max(1.0) * step
}

fn tick_text(value: f64) -> String {
    if value >= 10.0 || value == 0.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn step_row(step: &Step) -> StepRow {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |s| format!("{:.1}", s * 1000.0));
    let outcome = match step.verdict {
        Verdict::Held => "held".to_owned(),
        Verdict::Broke => format!("broke: {}", step.reason.as_deref().unwrap_or_default()),
        Verdict::GeneratorLimit => format!(
            "generator limit: {}",
            step.reason.as_deref().unwrap_or_default()
        ),
    };
    StepRow {
        verdict: json_name(step.verdict),
        offered: rate_text(step.offered),
        achieved: rate_text(step.achieved),
        connections: step.connections,
        p50: ms(step.p50),
        p99: ms(step.p99),
        errors: format!("{:.2}%", step.error_percent),
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_tick_in_round_steps() {
        assert_eq!(nice_step(18.0), 20.0);
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_top(430.0), 500.0);
        assert_eq!(tick_text(0.25), "0.25");
        assert_eq!(tick_text(1.5), "1.5");
    }
}
