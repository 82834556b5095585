//! `report.html`: one self-contained file (inline CSS and SVG, no network): the verdict, what
//! was run, charts over time (overall and per label), the response-time histogram, and the
//! summary tables (status codes, percentiles, labels, errors, criteria).

use std::fmt::Write as _;

use crate::markup::escape;
use crate::report::chart::{self, Line, PALETTE, format_number, thousands};
use crate::report::console::decimals_for;
use crate::report::describe::{ExecutionDescription, Model};
use crate::report::{Report, Verdict, kind_name};
use crate::stats::{Second, Window};

/// Labels drawn in the per-label charts at most (those with the most samples).
const MAX_CHART_LABELS: usize = 10;

/// The whole page.
pub fn page(report: &Report) -> String {
    let mut body = String::from("<h1>Peregrine load report</h1>\n");
    if let Some(shards) = report.merged_shards {
        let _ = writeln!(
            body,
            "<p class=\"meta\" id=\"merged\">Merged from {shards} shards by <code>peregrine report merge</code>: counts summed, percentiles from the shards' merged histograms.</p>"
        );
    }
    body.push_str(&banner(report));
    body.push_str(&super::capacity::section(report.capacity.as_ref()));
    body.push_str(&run_description(report));
    body.push_str(&tiles(report));
    body.push_str(&timeline_charts(report));
    body.push_str(&chart::histogram(
        "histogram",
        "Response times: samples per bin",
        &report.latency_histogram,
    ));
    body.push_str(&label_charts(report));
    body.push_str(&status_codes(report));
    body.push_str(&tables(report));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Peregrine load report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:900px;color:#222}\
h1{font-size:22px;margin:0 0 8px}h2{font-size:16px;margin:24px 0 8px}.meta{color:#666;margin:4px 0 12px}\
.warn{color:#b00}.ok{color:#080}.tiles{display:flex;gap:12px;margin:12px 0}\
.banner{padding:10px 14px;border-radius:6px;margin:8px 0 12px;border:1px solid}.banner b{font-size:18px;margin-right:8px}\
.banner.passed{background:#e9f7ec;border-color:#7bc38c}.banner.failed,.banner.aborted{background:#fdecec;border-color:#e08a8a}\
.banner.interrupted,.banner.errors{background:#fff6e0;border-color:#e0b860}.banner ul{margin:6px 0 0;padding-left:20px}\
.tiles div{flex:1;border:1px solid #ddd;border-radius:6px;padding:8px;color:#666}.tiles b{display:block;font-size:20px;color:#222}\
dl.run{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0}dl.run dt{color:#666}dl.run dd{margin:0}\
figure{margin:16px 0}figcaption{font-weight:600;margin-bottom:4px}svg{width:100%;height:auto;background:#fafafa;border:1px solid #eee}\
.legend{font-size:12px;display:flex;flex-wrap:wrap;gap:4px 14px;margin-top:4px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:4px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left;overflow-wrap:anywhere}.text{text-align:left}";

/// Marks the page once the browser has laid out every chart's lines or bars, so a test can
/// tell the charts rendered (not just that the markup exists).
const SCRIPT: &str = "window.addEventListener('load',function(){var n=0;document.querySelectorAll('svg.chart').forEach(function(s){\
var ok=Array.prototype.some.call(s.querySelectorAll('polyline,circle,rect.bar'),function(p){var b=p.getBBox();return b.width>0||b.height>0;});\
if(ok){n++;}});document.body.setAttribute('data-charts-rendered',String(n));});";

/// The outcome in one coloured line, with the reasons under it.
fn banner(report: &Report) -> String {
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
            "Passed, with errors".to_owned(),
            format!(
                "{} of {} requests failed ({:.2}%); no pass/fail criterion failed",
                thousands(o.failures),
                thousands(o.samples),
                o.failure_percent
            ),
        ),
        Verdict::Passed if report.criteria.is_empty() => (
            "passed",
            "Passed".to_owned(),
            "the test ran to its end without errors (no pass/fail criteria were set)".to_owned(),
        ),
        Verdict::Passed => (
            "passed",
            "Passed".to_owned(),
            format!("all {} pass/fail criteria held", report.criteria.len()),
        ),
        Verdict::Failed => (
            "failed",
            "Failed".to_owned(),
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
            "Interrupted".to_owned(),
            "stopped by Ctrl-C or SIGTERM: the figures cover the part that ran".to_owned(),
        ),
        Verdict::Aborted => (
            "aborted",
            "Aborted".to_owned(),
            format!(
                "the run could not go on: {}",
                report.problem.as_deref().unwrap_or("see the log")
            ),
        ),
    };
    let mut html = format!(
        "<div class=\"banner {class}\" id=\"verdict\" data-verdict=\"{}\"><b>{title}</b>{} <span class=\"meta\">(exit code {})</span>",
        verdict_name(report.verdict),
        escape(&detail),
        report.exit_code()
    );
    if !failed.is_empty() {
        html.push_str("<ul>");
        for verdict in failed {
            let _ = write!(html, "<li>{}</li>", escape(verdict));
        }
        html.push_str("</ul>");
    }
    html.push_str("</div>\n");
    html
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
fn run_description(report: &Report) -> String {
    let mut rows = String::new();
    let mut row = |name: &str, value: String| {
        let _ = write!(rows, "<dt>{name}</dt><dd>{}</dd>", escape(&value));
    };
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
        row(&format!("{prefix}Target"), targets);
        row(&format!("{prefix}Load"), load_text(execution));
        row(&format!("{prefix}Schedule"), schedule_text(execution));
    }
    row("Started", report.run.started_at.replace('T', " "));
    row(
        "Ran for",
        format!(
            "{} s ({})",
            format_number(report.duration_seconds, 0.1),
            report.ending.as_str()
        ),
    );
    row("Tool", report.tool.clone());
    row("Response times", report.latency_note().to_owned());
    format!("<h2>What was run</h2>\n<dl class=\"run\" id=\"run\">{rows}</dl>\n")
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

fn tiles(report: &Report) -> String {
    let o = &report.overall;
    let mut html = format!(
        "<div class=\"tiles\"><div><b>{}</b>samples</div><div><b>{:.2}%</b>failures</div><div><b>{}</b>req/s</div>\
         <div><b>{}</b>average</div><div><b>{}</b>p99</div></div>\n",
        thousands(o.samples),
        o.failure_percent,
        format_number(o.throughput, 0.1),
        ms_unit(o.avg_rt),
        ms_unit(o.percentile(99.0).unwrap_or(0.0)),
    );
    if let Some(rate) = &report.rate {
        let _ = writeln!(
            html,
            "<p class=\"{}\">Request rate: requested {}/s, achieved {}/s</p>",
            if rate.below_target { "warn" } else { "meta" },
            format_number(rate.requested, 0.1),
            format_number(rate.achieved, 0.1)
        );
    }
    html
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

fn timeline_charts(report: &Report) -> String {
    let (seconds, cut) = whole_seconds(report);
    let mut html = String::from("<h2>Over time</h2>\n");
    if let Some(part) = cut {
        let _ = writeln!(
            html,
            "<p class=\"meta\" id=\"partial-second\">Each point is one whole second; the run's last second, cut short ({} s of it ran), is left out of these charts but counted everywhere else.</p>",
            format_number(part, 0.01)
        );
    }
    if seconds.is_empty() {
        html.push_str("<p class=\"meta\">The run was shorter than one second: there is no timeline to draw.</p>\n");
        return html;
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
    let charts = [
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
    ];
    html.extend(charts);
    html
}

/// Requests per second and p90 per label, for the labels with the most samples.
fn label_charts(report: &Report) -> String {
    let (seconds, _) = whole_seconds(report);
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
        return String::new();
    }
    let with_timeline = drawn.len();
    drawn.sort_by_key(|&i| std::cmp::Reverse(report.labels[i].summary.samples));
    drawn.truncate(MAX_CHART_LABELS);
    let mut html = String::from("<h2>Per label</h2>\n");
    if with_timeline > drawn.len() || report.labels.len() > with_timeline {
        let _ = writeln!(
            html,
            "<p class=\"meta\" id=\"labels-capped\">Showing the {} labels with the most samples, of {}.</p>",
            drawn.len(),
            thousands(report.labels.len() as u64)
        );
    }
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
    html.push_str(&chart::lines(
        "label-throughput",
        "Requests per second, per label",
        "",
        span,
        &lines(&|w| Some(w.hits as f64)),
    ));
    html.push_str(&chart::lines(
        "label-p90",
        "p90 response time, per label",
        " ms",
        span,
        &lines(&|w| w.percentile(90.0).map(|v| v * 1000.0)),
    ));
    html
}

fn status_codes(report: &Report) -> String {
    let o = &report.overall;
    let mut html = String::from(
        "<h2>Status codes</h2>\n<table id=\"status-codes\"><tr><th>status</th><th>samples</th><th>share</th></tr>\n",
    );
    for (code, count) in &o.codes {
        let name = if code == "none" {
            "none (no response)"
        } else {
            code
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{:.2}%</td></tr>",
            escape(name),
            thousands(*count),
            *count as f64 * 100.0 / o.samples.max(1) as f64
        );
    }
    html.push_str("</table>\n");
    html
}

fn tables(report: &Report) -> String {
    let o = &report.overall;
    let mut html = String::from(
        "<h2>Percentiles</h2>\n<table><tr><th>percentile</th><th>response time, ms</th><th>service time, ms</th></tr>\n",
    );
    for (p, s) in o.percentiles.iter().zip(&o.service_percentiles) {
        let _ = writeln!(
            html,
            "<tr><td>{:.1}</td><td>{}</td><td>{}</td></tr>",
            p.level,
            ms(p.seconds),
            ms(s.seconds)
        );
    }
    html.push_str("</table>\n<h2>Labels</h2>\n<table><tr><th>label</th><th>samples</th><th>failures</th><th>avg, ms</th><th>p50, ms</th><th>p90, ms</th><th>p99, ms</th><th>req/s</th></tr>\n");
    for label in &report.labels {
        let s = &label.summary;
        let at = |l: f64| ms(s.percentile(l).unwrap_or(0.0));
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&label.label),
            thousands(s.samples),
            thousands(s.failures),
            ms(s.avg_rt),
            at(50.0),
            at(90.0),
            at(99.0),
            format_number(s.throughput, 0.1)
        );
    }
    html.push_str("</table>\n");
    html.push_str(&errors(report));
    html.push_str(&criteria_and_warnings(report));
    html
}

fn errors(report: &Report) -> String {
    if report.errors.is_empty() {
        return String::new();
    }
    let mut html = String::from(
        "<h2>Errors</h2>\n<table id=\"errors\"><tr><th>label</th><th class=\"text\">kind</th><th>count</th><th class=\"text\">message</th></tr>\n",
    );
    for e in &report.errors {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td class=\"text\">{}</td><td>{}</td><td class=\"text\">{}</td></tr>",
            escape(&e.label),
            escape(&kind_name(e.kind)),
            thousands(e.count),
            escape(&e.message)
        );
    }
    html.push_str("</table>\n");
    html
}

fn criteria_and_warnings(report: &Report) -> String {
    let mut html = String::new();
    if !report.criteria.is_empty() {
        html.push_str("<h2>Pass/fail criteria</h2>\n<ul>\n");
        for c in &report.criteria {
            let _ = writeln!(
                html,
                "<li class=\"{}\">{}</li>",
                if c.failed { "warn" } else { "ok" },
                escape(&c.verdict)
            );
        }
        html.push_str("</ul>\n");
    }
    if !report.warnings.is_empty() {
        html.push_str("<h2>Config warnings</h2>\n<ul>\n");
        for warning in &report.warnings {
            let _ = writeln!(html, "<li>{}</li>", escape(warning));
        }
        html.push_str("</ul>\n");
    }
    html
}
