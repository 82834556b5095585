//! `report.html`: one self-contained file (inline CSS and SVG, no network) with charts over
//! time of users, requests per second, latency percentiles and errors, and the summary tables.

use std::fmt::Write as _;

use crate::report::Report;
use crate::report::xml::escape;

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 36.0;

struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

/// The whole page.
pub fn page(report: &Report) -> String {
    let seconds: Vec<f64> = report.timeline.iter().map(|s| s.second as f64).collect();
    let series = |name, color, values: Vec<f64>| Series {
        name,
        color,
        points: seconds.iter().copied().zip(values).collect(),
    };
    let users = series(
        "users",
        "#6b5bd2",
        report.timeline.iter().map(|s| s.users as f64).collect(),
    );
    let rps = series(
        "requests/s",
        "#1f77b4",
        report
            .timeline
            .iter()
            .map(|s| s.overall.hits as f64)
            .collect(),
    );
    let level = |l: f64| {
        report
            .timeline
            .iter()
            .map(|s| s.overall.percentile(l).unwrap_or(0.0) * 1000.0)
            .collect::<Vec<_>>()
    };
    let errors = series(
        "errors/s",
        "#d62728",
        report
            .timeline
            .iter()
            .map(|s| s.overall.failures as f64)
            .collect(),
    );
    let charts = [
        chart("users", "Active users", "", &[users]),
        chart("throughput", "Requests per second", "", &[rps]),
        chart(
            "latency",
            "Response time percentiles",
            " ms",
            &[
                series("p50", "#2ca02c", level(50.0)),
                series("p90", "#ff7f0e", level(90.0)),
                series("p99", "#d62728", level(99.0)),
            ],
        ),
        chart("errors", "Errors per second", "", &[errors]),
    ];
    let mut body = String::new();
    let o = &report.overall;
    let _ = write!(
        body,
        "<h1>Peregrine load report</h1>\n<p class=\"meta\">{} · {:.1} s · {} · {}</p>\n\
         <div class=\"tiles\"><div><b>{}</b>samples</div><div><b>{:.2}%</b>failures</div><div><b>{:.1}</b>req/s</div>\
         <div><b>{:.1} ms</b>average</div><div><b>{:.1} ms</b>p99</div></div>\n",
        escape(&report.tool),
        report.duration_seconds,
        escape(report.ending.as_str()),
        escape(report.latency_note()),
        o.samples,
        o.failure_percent,
        o.throughput,
        o.avg_rt * 1000.0,
        o.percentile(99.0).unwrap_or(0.0) * 1000.0,
    );
    if let Some(rate) = &report.rate {
        let _ = writeln!(
            body,
            "<p class=\"{}\">Request rate: requested {:.1}/s, achieved {:.1}/s</p>",
            if rate.below_target { "warn" } else { "meta" },
            rate.requested,
            rate.achieved
        );
    }
    for chart in &charts {
        body.push_str(chart);
    }
    body.push_str("<h2>Percentiles</h2>\n<table><tr><th>percentile</th><th>response time, ms</th><th>service time, ms</th></tr>\n");
    for (p, s) in o.percentiles.iter().zip(&o.service_percentiles) {
        let _ = writeln!(
            body,
            "<tr><td>{:.1}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            p.level,
            p.seconds * 1000.0,
            s.seconds * 1000.0
        );
    }
    body.push_str("</table>\n<h2>Labels</h2>\n<table><tr><th>label</th><th>samples</th><th>failures</th><th>avg, ms</th><th>p50, ms</th><th>p90, ms</th><th>p99, ms</th><th>req/s</th></tr>\n");
    for label in &report.labels {
        let s = &label.summary;
        let at = |l: f64| s.percentile(l).unwrap_or(0.0) * 1000.0;
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.1}</td></tr>",
            escape(&label.label),
            s.samples,
            s.failures,
            s.avg_rt * 1000.0,
            at(50.0),
            at(90.0),
            at(99.0),
            s.throughput
        );
    }
    body.push_str("</table>\n");
    if !report.errors.is_empty() {
        body.push_str(
            "<h2>Errors</h2>\n<table><tr><th>label</th><th>count</th><th>message</th></tr>\n",
        );
        for e in &report.errors {
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&e.label),
                e.count,
                escape(&e.message)
            );
        }
        body.push_str("</table>\n");
    }
    if !report.criteria.is_empty() {
        body.push_str("<h2>Pass/fail criteria</h2>\n<ul>\n");
        for c in &report.criteria {
            let _ = writeln!(
                body,
                "<li class=\"{}\">{}</li>",
                if c.failed { "warn" } else { "ok" },
                escape(&c.verdict)
            );
        }
        body.push_str("</ul>\n");
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Peregrine load report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:900px;color:#222}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}.meta{color:#666;margin:0 0 12px}\
.warn{color:#b00}.ok{color:#080}.tiles{display:flex;gap:12px;margin:12px 0}\
.tiles div{flex:1;border:1px solid #ddd;border-radius:6px;padding:8px;color:#666}.tiles b{display:block;font-size:20px;color:#222}\
figure{margin:16px 0}figcaption{font-weight:600;margin-bottom:4px}svg{width:100%;height:auto;background:#fafafa;border:1px solid #eee}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:4px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}.legend{font-size:12px}";

/// Marks the page once the browser has laid out every chart line, so a test can tell the
/// charts rendered (not just that the markup exists).
const SCRIPT: &str = "window.addEventListener('load',function(){var n=0;document.querySelectorAll('svg.chart').forEach(function(s){\
var ok=Array.prototype.some.call(s.querySelectorAll('polyline'),function(p){var b=p.getBBox();return b.width>0||b.height>0;});\
if(ok){n++;}});document.body.setAttribute('data-charts-rendered',String(n));});";

fn chart(id: &str, title: &str, unit: &str, series: &[Series<'_>]) -> String {
    let max_x = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0_f64, f64::max);
    let max_y = nice_ceiling(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0_f64, f64::max),
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |v: f64| LEFT + v / max_x * plot_w;
    let y = |v: f64| TOP + plot_h - v / max_y * plot_h;
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg class=\"chart\" data-chart=\"{id}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">\n",
        escape(title),
        escape(title)
    );
    for i in 0..=4 {
        let value = max_y * f64::from(i) / 4.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e4e4e4\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#666\">{}{unit}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(value) + 4.0,
            format_tick(value),
            y = y(value)
        );
    }
    for i in 0..=5 {
        let value = max_x * f64::from(i) / 5.0;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#666\">{}s</text>",
            x(value),
            HEIGHT - 14.0,
            format_tick(value)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(px, py)| format!("{:.1},{:.1}", x(px), y(py)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" points=\"{}\"/>",
            s.color,
            points.join(" ")
        );
        let lx = LEFT + 8.0 + i as f64 * 90.0;
        let _ = writeln!(
            svg,
            "<g class=\"legend\"><rect x=\"{lx:.1}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{}\" font-size=\"11\">{}</text></g>",
            TOP + 2.0,
            s.color,
            lx + 14.0,
            TOP + 11.0,
            escape(s.name)
        );
    }
    svg.push_str("</svg></figure>\n");
    svg
}

/// A round number at or above `value`, for the top of an axis.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&c| c >= value)
        .unwrap_or(10.0 * magnitude)
}

fn format_tick(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}
