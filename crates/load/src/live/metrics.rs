//! `/metrics` in the Prometheus text exposition format (0.0.4): requests and errors per label
//! and kind as counters, response-time histograms per label, active users, offered and
//! achieved rates. Each process (each shard of a distributed run) exposes its own; a
//! `sum()` over the shards' series is the whole test.
//!
//! Written by hand rather than with a metrics crate: every figure already exists in the
//! once-a-second totals the live views read (nothing is counted per request here), and a
//! registry crate would keep a second copy of the same counts to print these few lines.

use std::fmt::Write as _;

use super::board::{Board, kind_name};
use crate::totals::BUCKETS_MICROS;

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition of `board` as it is now.
pub fn render(board: &Board) -> String {
    let meta = board.meta();
    let snapshot = board.snapshot();
    let totals = snapshot.totals();
    let label = |i: usize| escape(meta.labels.get(i).map_or("", String::as_str));
    let mut out = String::new();
    family(
        &mut out,
        "peregrine_load_info",
        "gauge",
        "The running load generator: its version and the shard of the plan it runs.",
    );
    let _ = writeln!(
        out,
        "peregrine_load_info{{version=\"{}\",shard=\"{}\"}} 1",
        escape(env!("CARGO_PKG_VERSION")),
        escape(&meta.shard)
    );
    family(
        &mut out,
        "peregrine_load_requests_total",
        "counter",
        "Requests finished (with or without error), per label.",
    );
    for (i, t) in totals.labels.iter().enumerate() {
        let _ = writeln!(
            out,
            "peregrine_load_requests_total{{label=\"{}\"}} {}",
            label(i),
            t.samples
        );
    }
    family(
        &mut out,
        "peregrine_load_errors_total",
        "counter",
        "Failed requests, per label and kind (connect, timeout, http, assertion, io).",
    );
    for error in &totals.errors {
        let _ = writeln!(
            out,
            "peregrine_load_errors_total{{label=\"{}\",kind=\"{}\"}} {}",
            label(error.label),
            kind_name(error.kind),
            error.count
        );
    }
    family(
        &mut out,
        "peregrine_load_response_time_seconds",
        "histogram",
        "Response times, per label (open model: from when each request was due).",
    );
    for (i, t) in totals.labels.iter().enumerate() {
        let name = label(i);
        for (bound, count) in BUCKETS_MICROS.iter().zip(&t.buckets) {
            let _ = writeln!(
                out,
                "peregrine_load_response_time_seconds_bucket{{label=\"{name}\",le=\"{}\"}} {count}",
                *bound as f64 / 1e6
            );
        }
        let _ = writeln!(
            out,
            "peregrine_load_response_time_seconds_bucket{{label=\"{name}\",le=\"+Inf\"}} {}",
            t.samples
        );
        let _ = writeln!(
            out,
            "peregrine_load_response_time_seconds_sum{{label=\"{name}\"}} {}",
            t.sum_seconds
        );
        let _ = writeln!(
            out,
            "peregrine_load_response_time_seconds_count{{label=\"{name}\"}} {}",
            t.samples
        );
    }
    let now = snapshot.now();
    let gauge = |out: &mut String, name: &str, help: &str, value: Option<f64>| {
        family(out, name, "gauge", help);
        if let Some(value) = value {
            let _ = writeln!(out, "{name} {value}");
        }
    };
    gauge(
        &mut out,
        "peregrine_load_active_users",
        "Virtual users (open model: connections) active in the last second.",
        now.map(|n| n.point.users as f64),
    );
    gauge(
        &mut out,
        "peregrine_load_offered_rate",
        "Requests per second the plan asks for now (open model or throughput cap); absent otherwise.",
        now.and_then(|n| n.point.offered),
    );
    gauge(
        &mut out,
        "peregrine_load_achieved_rate",
        "Requests finished in the last second.",
        now.map(|n| n.point.rps as f64),
    );
    gauge(
        &mut out,
        "peregrine_load_elapsed_seconds",
        "Time since the run started.",
        now.map(|n| n.elapsed),
    );
    gauge(
        &mut out,
        "peregrine_load_planned_seconds",
        "Planned duration of the run (0: bounded by iterations only).",
        Some(meta.planned),
    );
    gauge(
        &mut out,
        "peregrine_load_finished",
        "1 once the run has ended.",
        Some(if snapshot.end().is_some() { 1.0 } else { 0.0 }),
    );
    family(
        &mut out,
        "peregrine_load_criterion_failed",
        "gauge",
        "1 when a pass/fail criterion has failed the test, per criterion.",
    );
    for criterion in &totals.criteria {
        let failed = criterion.status == crate::totals::CriterionStatus::Failed;
        let _ = writeln!(
            out,
            "peregrine_load_criterion_failed{{criterion=\"{}\"}} {}",
            escape(&criterion.criterion),
            u8::from(failed)
        );
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the text format writes it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
