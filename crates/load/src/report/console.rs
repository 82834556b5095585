//! Console output: a line per second while running, and Taurus-style final stats.

use std::fmt::Write as _;

use crate::duration::format_clock;
use crate::plan::FinalStatsParts;
use crate::report::{Progress, Report, kind_name};

/// The finest time printed in the final stats, as decimals of a second: a microsecond, the
/// resolution of the response-time histograms (an average connect time of a few
/// nanoseconds, one connect over thousands of reused requests, prints as 0.000000).
const MAX_DECIMALS: usize = 6;

/// One progress line: `[  12s/210s] users 100 | 1234 req/s | avg 1.2 ms | p99 4.5 ms | errors 0`.
pub fn progress_line(progress: &Progress) -> String {
    let window = &progress.second.overall;
    let avg = window.avg_rt().map_or_else(|| "-".to_owned(), format_ms);
    let p99 = window
        .percentile(99.0)
        .map_or_else(|| "-".to_owned(), format_ms);
    let total = if progress.total.is_zero() {
        String::new()
    } else {
        format!("/{}s", progress.total.as_secs())
    };
    format!(
        "[{:>5}s{total}] users {} | {} req/s | avg {avg} | p99 {p99} | errors {}",
        progress.elapsed.as_secs(),
        progress.users,
        window.hits,
        window.failures
    )
}

/// Milliseconds with at least one decimal and three significant digits: `0.0312 ms`, `4.5 ms`.
fn format_ms(seconds: f64) -> String {
    let ms = seconds * 1000.0;
    format!("{ms:.0$} ms", decimals_for(ms, 1))
}

/// Decimals that show `value` to three significant digits, and at least `min`: a value that
/// is not zero never prints as zero (up to 15 decimals, far below a nanosecond in seconds).
pub(crate) fn decimals_for(value: f64, min: usize) -> usize {
    if !value.is_finite() || value.abs() < 1e-15 {
        return min;
    }
    let leading = value.abs().log10().floor();
    let wanted = (2.0 - leading).clamp(0.0, 15.0) as usize;
    wanted.max(min)
}

/// Seconds in Taurus's columns: three decimals as Taurus prints them, more when the value
/// is under 0.1 s, so a fast service reads `0.000214` rather than `0.000` (down to a
/// microsecond).
fn seconds3(seconds: f64) -> String {
    format!("{seconds:.0$}", decimals_for(seconds, 3).min(MAX_DECIMALS))
}

/// Taurus's final-stats text, plus throughput, service times (open model) and errors.
pub fn final_stats(report: &Report) -> String {
    final_stats_of(report, FinalStatsParts::default())
}

/// [`final_stats`] with the parts a config's final-stats reporter switched on or off.
pub fn final_stats_of(report: &Report, parts: FinalStatsParts) -> String {
    let mut out = String::new();
    if parts.test_duration {
        let duration = std::time::Duration::from_secs_f64(report.duration_seconds);
        let _ = writeln!(out, "Test duration: {}", format_clock(duration));
    }
    if parts.summary {
        summary(&mut out, report);
    }
    if parts.percentiles {
        percentiles(&mut out, report);
    }
    if parts.summary_labels {
        label_stats(&mut out, report);
    }
    if parts.failed_labels {
        for label in report.labels.iter().filter(|l| l.summary.failures > 0) {
            let _ = writeln!(
                out,
                "{} failed samples: {}",
                label.summary.failures, label.label
            );
        }
    }
    errors_and_criteria(&mut out, report);
    out
}

/// The samples count and failures, the throughput and (open model) the request rate.
fn summary(out: &mut String, report: &Report) {
    let overall = &report.overall;
    let _ = writeln!(
        out,
        "Samples count: {}, {:.2}% failures",
        overall.samples, overall.failure_percent
    );
    let _ = writeln!(out, "Throughput: {:.1} req/s", overall.throughput);
    if report.cancelled_in_flight > 0 {
        let _ = writeln!(
            out,
            "Cancelled in flight at the stop (not measured): {}",
            report.cancelled_in_flight
        );
    }
    if let Some(rate) = &report.rate {
        let _ = writeln!(
            out,
            "Request rate: requested {:.1}/s, achieved {:.1}/s",
            rate.requested, rate.achieved
        );
    }
}

/// The average times (all with the total's decimals) and the percentiles table.
fn percentiles(out: &mut String, report: &Report) {
    let overall = &report.overall;
    let decimals = decimals_for(overall.avg_rt, 3).min(MAX_DECIMALS);
    let seconds = |value: f64| format!("{value:.decimals$}");
    let _ = write!(
        out,
        "Average times: total {}, latency {}, connect {}",
        seconds(overall.avg_rt),
        seconds(overall.avg_lt),
        seconds(overall.avg_ct)
    );
    // Only https runs shake hands; `connect` includes it, as in Taurus.
    if overall.avg_tls > 0.0 {
        let _ = write!(out, " (of which tls {})", seconds(overall.avg_tls));
    }
    out.push('\n');
    if overall.avg_check > 0.0 {
        let _ = writeln!(
            out,
            "Assertions and extractors: {} s per response on average, after it (not in the times above)",
            seconds(overall.avg_check)
        );
    }
    let _ = writeln!(out, "Percentiles:");
    if report.rate.is_some() {
        let rows: Vec<Vec<String>> = overall
            .percentiles
            .iter()
            .zip(&overall.service_percentiles)
            .map(|(corrected, service)| {
                vec![
                    fmt_level(corrected.level),
                    fmt_seconds(corrected.seconds),
                    fmt_seconds(service.seconds),
                ]
            })
            .collect();
        table(
            out,
            &["Percentile, %", "Resp. Time, s", "Service Time, s"],
            &rows,
        );
        let _ = writeln!(
            out,
            "Resp. Time is corrected for coordinated omission (counted from when each request was due);"
        );
        let _ = writeln!(
            out,
            "Service Time is uncorrected (counted from the actual send)."
        );
    } else {
        let rows: Vec<Vec<String>> = overall
            .percentiles
            .iter()
            .map(|p| vec![fmt_level(p.level), fmt_seconds(p.seconds)])
            .collect();
        table(out, &["Percentile, %", "Resp. Time, s"], &rows);
    }
}

/// The per-label table.
fn label_stats(out: &mut String, report: &Report) {
    let _ = writeln!(out, "Request label stats:");
    let rows: Vec<Vec<String>> = report
        .labels
        .iter()
        .map(|l| {
            let s = &l.summary;
            let errors: Vec<&str> = report
                .errors
                .iter()
                .filter(|e| e.label == l.label)
                .map(|e| e.message.as_str())
                .collect();
            vec![
                l.label.clone(),
                if s.failures == 0 {
                    "OK".into()
                } else {
                    "FAIL".into()
                },
                format!(
                    "{:.2}%",
                    if s.samples == 0 {
                        0.0
                    } else {
                        100.0 - s.failure_percent
                    }
                ),
                seconds3(s.avg_rt),
                errors.join("; "),
            ]
        })
        .collect();
    table(out, &["label", "status", "succ", "avg_rt", "error"], &rows);
}

/// The errors table (when there were errors) and the criteria's verdicts.
fn errors_and_criteria(out: &mut String, report: &Report) {
    if !report.errors.is_empty() {
        let _ = writeln!(out, "Errors:");
        let rows: Vec<Vec<String>> = report
            .errors
            .iter()
            .map(|e| {
                vec![
                    e.label.clone(),
                    kind_name(e.kind),
                    e.count.to_string(),
                    e.message.clone(),
                ]
            })
            .collect();
        table(out, &["label", "kind", "count", "message"], &rows);
    }
    for outcome in &report.criteria {
        let message = outcome
            .message
            .as_deref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        let _ = writeln!(out, "{}{message}", outcome.verdict);
    }
}

fn fmt_level(level: f64) -> String {
    format!("{level:.1}")
}

/// Seconds as Taurus prints them (up to 3 decimals, no trailing zeros), with more decimals
/// when needed for three significant digits, so a non-zero time never reads `0.0`.
fn fmt_seconds(seconds: f64) -> String {
    let text = format!("{seconds:.0$}", decimals_for(seconds, 3).min(MAX_DECIMALS));
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.contains('.') {
        text.to_owned()
    } else {
        format!("{text}.0")
    }
}

/// A `+---+` bordered table; the first column of numbers is right-aligned like Taurus's.
fn table(out: &mut String, headers: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
                .max(h.chars().count())
        })
        .collect();
    let border: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+";
    let _ = writeln!(out, "{border}");
    let header: String = headers
        .iter()
        .zip(&widths)
        .map(|(h, w)| format!("| {h:<w$} "))
        .collect::<String>()
        + "|";
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "{border}");
    for row in rows {
        let line: String = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| {
                if cell.parse::<f64>().is_ok() {
                    format!("| {cell:>w$} ")
                } else {
                    format!("| {cell:<w$} ")
                }
            })
            .collect::<String>()
            + "|";
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "{border}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_print_like_taurus() {
        assert_eq!(fmt_seconds(0.0), "0.0");
        assert_eq!(fmt_seconds(0.012), "0.012");
        assert_eq!(fmt_seconds(1.05), "1.05");
        assert_eq!(fmt_seconds(0.0501), "0.0501");
        assert_eq!(fmt_seconds(1.0501), "1.05");
    }

    #[test]
    fn a_fast_service_never_reads_as_zero() {
        assert_eq!(fmt_seconds(0.000_214), "0.000214");
        assert_eq!(fmt_seconds(0.000_001), "0.000001");
        assert_eq!(seconds3(0.000_041_3), "0.000041");
        assert_eq!(seconds3(0.0), "0.000");
        assert_eq!(seconds3(1.23456), "1.235");
        // Below a microsecond: zero to the microsecond, not nine decimals.
        assert_eq!(seconds3(3.11e-9), "0.000000");
        assert_eq!(format_ms(0.000_031_2), "0.0312 ms");
        assert_eq!(format_ms(0.0045), "4.50 ms");
        assert_eq!(format_ms(0.123), "123.0 ms");
    }
}
