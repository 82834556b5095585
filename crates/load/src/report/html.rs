//! `report.html`: one self-contained file (inline CSS and SVG, no network): the verdict, what
//! was run, charts over time (overall and per label), the response-time histogram, and the
//! summary tables (status codes, percentiles, labels, errors, criteria). This file decides
//! what the page says, in figures as read; the markup is the askama template
//! `templates/report/page.html` (the charts' in `templates/report/chart/`), which escapes
//! every value it is given.

use std::fmt::Write as _;

use askama::Template;

use crate::report::capacity;
use crate::report::chart::{
    self, HistogramChart, Line, LineChart, PALETTE, format_number, thousands,
};
use crate::report::console::decimals_for;
use crate::report::describe::{ExecutionDescription, Model};
use crate::report::{Report, Verdict, kind_name};
use crate::stats::{Second, Window};

/// Labels drawn in the per-label charts at most (those with the most samples).
const MAX_CHART_LABELS: usize = 10;

/// The whole page.
pub fn page(report: &Report) -> String {
    let (seconds, cut) = whole_seconds(report);
    let page = Page {
        merged_shards: report.merged_shards,
        banner: banner(report),
        capacity: capacity::section(report.capacity.as_ref()),
        run: run_description(report),
        tiles: tiles(report),
        rate: report.rate.as_ref().map(|rate| RateLine {
            below_target: rate.below_target,
            requested: format_number(rate.requested, 0.1),
            achieved: format_number(rate.achieved, 0.1),
        }),
        partial_second: cut.map(|part| format_number(part, 0.01)),
        timeline: timeline_charts(seconds),
        histogram: chart::histogram(
            "histogram",
            "Response times: samples per bin",
            &report.latency_histogram,
        ),
        per_label: label_charts(report, seconds),
        status_codes: status_codes(report),
        percentiles: percentiles(report),
        labels: report.labels.iter().map(label_row).collect(),
        errors: report.errors.iter().map(error_row).collect(),
        criteria: report
            .criteria
            .iter()
            .map(|c| (c.failed, c.verdict.as_str()))
            .collect(),
        warnings: &report.warnings,
    };
    // Rendering into a String fails only if a value's Display fails, and none of these does.
    page.render()
        .unwrap_or_else(|e| format!("report.html could not be rendered: {e}"))
}

/// The page's figures, each as the reader sees it.
#[derive(Template)]
#[template(path = "report/page.html")]
struct Page<'a> {
    merged_shards: Option<u32>,
    banner: Banner<'a>,
    capacity: Option<capacity::Section>,
    /// "What was run": a name and its value per line.
    run: Vec<(String, String)>,
    tiles: Tiles,
    rate: Option<RateLine>,
    /// How much of the run's last, cut second ran, when it was left out of the charts.
    partial_second: Option<String>,
    /// The charts over time; none for a run shorter than a second.
    timeline: Vec<LineChart>,
    histogram: Option<HistogramChart>,
    per_label: Option<PerLabel>,
    status_codes: Vec<StatusRow>,
    percentiles: Vec<[String; 3]>,
    labels: Vec<LabelRow<'a>>,
    errors: Vec<ErrorRow<'a>>,
    /// Each criterion: failed, and its verdict.
    criteria: Vec<(bool, &'a str)>,
    warnings: &'a [String],
}

/// The outcome in one coloured line, with the failed criteria under it.
struct Banner<'a> {
    class: &'static str,
    verdict: &'static str,
    title: &'static str,
    detail: String,
    exit_code: i32,
    failed: Vec<&'a str>,
}

/// The headline figures.
struct Tiles {
    samples: String,
    failures: String,
    throughput: String,
    average: String,
    p99: String,
}

/// An open model's requested and achieved rates.
struct RateLine {
    below_target: bool,
    requested: String,
    achieved: String,
}

/// The per-label charts, and the note when they leave labels out.
struct PerLabel {
    /// How many labels are drawn and how many there are, when not all are drawn.
    capped: Option<(usize, String)>,
    charts: [LineChart; 2],
}

struct StatusRow {
    name: String,
    count: String,
    share: String,
}

struct LabelRow<'a> {
    label: &'a str,
    samples: String,
    failures: String,
    average: String,
    p50: String,
    p90: String,
    p99: String,
    throughput: String,
}

struct ErrorRow<'a> {
    label: &'a str,
    kind: String,
    count: String,
    message: &'a str,
}

fn banner(report: &Report) -> Banner<'_> {
    let o = &report.overall;
    let failed: Vec<&str> = report
        .criteria
        .iter()
        .filter(|c| c.failed)
        .map(|c| c.verdict.as_str())
        .collect();
    let (class, title, detail) = match report.verdict {
        Verdict::Passed if o.failures > 0 => (
            "errors",
            "Passed, with errors",
            format!(
                "{} of {} requests failed ({:.2}%); no pass/fail criterion failed",
                thousands(o.failures),
                thousands(o.samples),
                o.failure_percent
            ),
        ),
        Verdict::Passed if report.criteria.is_empty() => (
            "passed",
            "Passed",
            "the test ran to its end without errors (no pass/fail criteria were set)".to_owned(),
        ),
        Verdict::Passed => (
            "passed",
            "Passed",
            format!("all {} pass/fail criteria held", report.criteria.len()),
        ),
        Verdict::Failed => (
            "failed",
            "Failed",
            format!(
                "{} of {} pass/fail criteria failed{}",
                failed.len(),
                report.criteria.len(),
                if report.ending.as_str() == "stopped-by-criterion" {
                    "; a criterion stopped the test early"
                } else {
                    ""
                }
            ),
        ),
        Verdict::Interrupted => (
            "interrupted",
            "Interrupted",
            "stopped by Ctrl-C or SIGTERM: the figures cover the part that ran".to_owned(),
        ),
        Verdict::Aborted => (
            "aborted",
            "Aborted",
            format!(
                "the run could not go on: {}",
                report.problem.as_deref().unwrap_or("see the log")
            ),
        ),
    };
    Banner {
        class,
        verdict: verdict_name(report.verdict),
        title,
        detail,
        exit_code: report.exit_code(),
        failed,
    }
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Passed => "passed",
        Verdict::Failed => "failed",
        Verdict::Interrupted => "interrupted",
        Verdict::Aborted => "aborted",
    }
}

/// What was run: targets, load model, durations, start time, tool.
fn run_description(report: &Report) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for (i, execution) in report.run.executions.iter().enumerate() {
        let prefix = if report.run.executions.len() > 1 {
            format!("Execution {} ", i + 1)
        } else {
            String::new()
        };
        let more = execution.requests.saturating_sub(execution.targets.len());
        let mut targets = execution.targets.join(", ");
        if more > 0 {
            let _ = write!(targets, " and {} more requests", thousands(more as u64));
        }
        rows.push((format!("{prefix}Target"), targets));
        rows.push((format!("{prefix}Load"), load_text(execution)));
        rows.push((format!("{prefix}Schedule"), schedule_text(execution)));
    }
    let ran_for = format!(
        "{} s ({})",
        format_number(report.duration_seconds, 0.1),
        report.ending.as_str()
    );
    rows.extend([
        (
            "Started".to_owned(),
            report.run.started_at.replace('T', " "),
        ),
        ("Ran for".to_owned(), ran_for),
        ("Tool".to_owned(), report.tool.clone()),
        (
            "Response times".to_owned(),
            report.latency_note().to_owned(),
        ),
    ]);
    rows
}

fn load_text(execution: &ExecutionDescription) -> String {
    let mut text = match (execution.model, execution.arrival_rate) {
        (Model::Open, Some(rate)) => format!(
            "open model: {} requests/s over {} connections",
            trimmed(rate),
            thousands(u64::from(execution.concurrency))
        ),
        _ => format!(
            "closed model: {} virtual users",
            thousands(u64::from(execution.concurrency))
        ),
    };
    if let Some(cap) = execution.throughput {
        let _ = write!(text, ", capped at {} requests/s", trimmed(cap));
    }
    text
}

fn schedule_text(execution: &ExecutionDescription) -> String {
    let mut parts = Vec::new();
    if execution.ramp_up_seconds > 0.0 {
        parts.push(format!("{} s ramp-up", trimmed(execution.ramp_up_seconds)));
    }
    if execution.hold_for_seconds > 0.0 {
        parts.push(format!("{} s hold", trimmed(execution.hold_for_seconds)));
    }
    if let Some(iterations) = execution.iterations {
        parts.push(format!("{} iterations per user", thousands(iterations)));
    }
    parts.join(", ")
}

/// A planned figure (seconds, requests/s) to three decimals without trailing zeros: `1`, `2.5`.
fn trimmed(value: f64) -> String {
    let text = format_number(value, 0.001);
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

fn tiles(report: &Report) -> Tiles {
    let o = &report.overall;
    Tiles {
        samples: thousands(o.samples),
        failures: format!("{:.2}%", o.failure_percent),
        throughput: format_number(o.throughput, 0.1),
        average: ms_unit(o.avg_rt),
        p99: ms_unit(o.percentile(99.0).unwrap_or(0.0)),
    }
}

/// Milliseconds with three significant digits (more decimals for small values).
fn ms(seconds: f64) -> String {
    let value = seconds * 1000.0;
    format_number(value, 10f64.powi(-(decimals_for(value, 1) as i32)))
}

fn ms_unit(seconds: f64) -> String {
    format!("{} ms", ms(seconds))
}

/// A second cut this short of whole still counts as whole: its rate reads at most 2 % low,
/// where dropping it would hide a second of data (runs end a few ms before their plan).
const NEARLY_WHOLE: f64 = 0.02;

/// The seconds of the timeline that were whole: the last one is usually cut short by the
/// end of the test, and drawing it would show a false drop in requests per second.
fn whole_seconds(report: &Report) -> (&[Second], Option<f64>) {
    let whole = report
        .timeline
        .iter()
        .take_while(|s| (s.second + 1) as f64 <= report.duration_seconds + NEARLY_WHOLE)
        .count();
    let cut = report
        .timeline
        .get(whole)
        .map(|s| (report.duration_seconds - s.second as f64).max(0.0));
    (&report.timeline[..whole], cut)
}

fn timeline_charts(seconds: &[Second]) -> Vec<LineChart> {
    if seconds.is_empty() {
        return Vec::new();
    }
    let span = seconds.len() as u64;
    let overall = |f: &dyn Fn(&Second) -> Option<f64>| -> Vec<(u64, Option<f64>)> {
        seconds.iter().map(|s| (s.second, f(s))).collect()
    };
    let line = |name: &str, color, points| Line {
        name: name.to_owned(),
        color,
        points,
    };
    let level = |l: f64| overall(&|s: &Second| s.overall.percentile(l).map(|v| v * 1000.0));
    vec![
        chart::lines(
            "users",
            "Active users",
            "",
            span,
            &[line("users", "#6b5bd2", overall(&|s| Some(s.users as f64)))],
        ),
        chart::lines(
            "throughput",
            "Requests per second",
            "",
            span,
            &[line(
                "requests/s",
                PALETTE[0],
                overall(&|s| Some(s.overall.hits as f64)),
            )],
        ),
        chart::lines(
            "latency",
            "Response time percentiles (seconds without samples are gaps)",
            " ms",
            span,
            &[
                line("p50", PALETTE[2], level(50.0)),
                line("p90", PALETTE[1], level(90.0)),
                line("p99", PALETTE[3], level(99.0)),
            ],
        ),
        chart::lines(
            "errors",
            "Errors per second",
            "",
            span,
            &[line(
                "errors/s",
                PALETTE[3],
                overall(&|s| Some(s.overall.failures as f64)),
            )],
        ),
    ]
}

/// Requests per second and p90 per label, for the labels with the most samples.
fn label_charts(report: &Report, seconds: &[Second]) -> Option<PerLabel> {
    let mut in_timeline = vec![false; report.labels.len()];
    for window in seconds.iter().flat_map(|s| &s.labels) {
        if let Some(seen) = in_timeline.get_mut(window.label) {
            *seen = true;
        }
    }
    let mut drawn: Vec<usize> = (0..report.labels.len())
        .filter(|&i| in_timeline[i])
        .collect();
    if drawn.len() < 2 {
        return None;
    }
    let with_timeline = drawn.len();
    drawn.sort_by_key(|&i| std::cmp::Reverse(report.labels[i].summary.samples));
    drawn.truncate(MAX_CHART_LABELS);
    let capped = (with_timeline > drawn.len() || report.labels.len() > with_timeline)
        .then(|| (drawn.len(), thousands(report.labels.len() as u64)));
    let lines = |value: &dyn Fn(&Window) -> Option<f64>| -> Vec<Line> {
        drawn
            .iter()
            .enumerate()
            .map(|(n, &i)| Line {
                name: report.labels[i].label.clone(),
                color: PALETTE[n % PALETTE.len()],
                points: seconds
                    .iter()
                    .map(|s| (s.second, value(&s.label(i))))
                    .collect(),
            })
            .collect()
    };
    let span = seconds.len() as u64;
    let charts = [
        chart::lines(
            "label-throughput",
            "Requests per second, per label",
            "",
            span,
            &lines(&|w| Some(w.hits as f64)),
        ),
        chart::lines(
            "label-p90",
            "p90 response time, per label",
            " ms",
            span,
            &lines(&|w| w.percentile(90.0).map(|v| v * 1000.0)),
        ),
    ];
    Some(PerLabel { capped, charts })
}

fn status_codes(report: &Report) -> Vec<StatusRow> {
    let o = &report.overall;
    o.codes
        .iter()
        .map(|(code, count)| StatusRow {
            name: if code == "none" {
                "none (no response)".to_owned()
            } else {
                code.clone()
            },
            count: thousands(*count),
            share: format!("{:.2}%", *count as f64 * 100.0 / o.samples.max(1) as f64),
        })
        .collect()
}

/// Each percentile level: the level, its response time and its service time.
fn percentiles(report: &Report) -> Vec<[String; 3]> {
    let o = &report.overall;
    o.percentiles
        .iter()
        .zip(&o.service_percentiles)
        .map(|(p, s)| [format!("{:.1}", p.level), ms(p.seconds), ms(s.seconds)])
        .collect()
}

fn label_row(label: &crate::report::LabelSummary) -> LabelRow<'_> {
    let s = &label.summary;
    let at = |l: f64| ms(s.percentile(l).unwrap_or(0.0));
    LabelRow {
        label: &label.label,
        samples: thousands(s.samples),
        failures: thousands(s.failures),
        average: ms(s.avg_rt),
        p50: at(50.0),
        p90: at(90.0),
        p99: at(99.0),
        throughput: format_number(s.throughput, 0.1),
    }
}

fn error_row(e: &crate::stats::ErrorCount) -> ErrorRow<'_> {
    ErrorRow {
        label: &e.label,
        kind: kind_name(e.kind),
        count: thousands(e.count),
        message: &e.message,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every template's file, under `dir`.
    fn templates(dir: &Path, found: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                templates(&path, found);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                found.push((path.display().to_string(), text));
            }
        }
    }

    /// Labels, URLs, error messages and warnings are the user's text: the page is safe only
    /// while every value goes through askama's HTML escaping, so no template turns it off.
    #[test]
    fn no_template_turns_escaping_off() {
        let mut found = Vec::new();
        templates(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("templates"),
            &mut found,
        );
        assert!(found.len() >= 6, "{found:?}");
        for (path, text) in found {
            for off in ["|safe", "| safe", "escape(", "|e(", "autoescape"] {
                assert!(!text.contains(off), "{path} has {off}");
            }
        }
        // Nor a template's derive: an escaper or an extension other than the file's `.html`.
        let derives = [
            include_str!("html.rs"),
            include_str!("chart.rs"),
            include_str!("capacity.rs"),
        ];
        let attributes: Vec<&str> = derives
            .iter()
            .flat_map(|source| source.lines())
            .filter(|line| line.starts_with("#[template("))
            .collect();
        assert!(attributes.len() >= 6, "{attributes:?}");
        for attribute in attributes {
            let path_only = attribute.starts_with("#[template(path = \"")
                && attribute.ends_with(".html\")]")
                && attribute.matches('=').count() == 1;
            assert!(path_only, "{attribute}");
        }
    }
}
