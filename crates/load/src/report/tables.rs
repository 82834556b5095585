//! CSV outputs: Peregrine's per-second timeline and Taurus's final-stats `dump-csv`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::report::Report;
use crate::stats::Summary;

/// `timeline.csv`: one row per second for the whole test.
pub fn timeline_csv(report: &Report) -> String {
    let mut out = String::from("second,users,requests,errors,bytes,avg_rt,p50,p90,p99\n");
    for second in &report.timeline {
        let w = &second.overall;
        let level = |l: f64| {
            w.percentile(l)
                .map_or_else(String::new, |s| format!("{s:.6}"))
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            second.second,
            second.users,
            w.hits,
            w.failures,
            w.bytes,
            w.avg_rt().map_or_else(String::new, |s| format!("{s:.6}")),
            level(50.0),
            level(90.0),
            level(99.0)
        );
    }
    out
}

/// Taurus's `dump-csv`: one row per label and one with an empty label for all.
pub fn final_stats_csv(report: &Report) -> String {
    let codes: BTreeSet<&String> = report.overall.codes.keys().collect();
    let mut header =
        String::from("label,avg_ct,avg_lt,avg_rt,bytes,concurrency,fail,stdev_rt,succ,throughput");
    for p in &report.overall.percentiles {
        let _ = write!(header, ",perc_{:.1}", p.level);
    }
    for code in &codes {
        let _ = write!(header, ",rc_{code}");
    }
    let mut out = header + "\n";
    let users = peak_users(report);
    let mut row = |label: &str, s: &Summary| {
        let _ = write!(
            out,
            "{},{:.5},{:.5},{:.5},{},{},{},{:.5},{},{}",
            csv_field(label),
            s.avg_ct,
            s.avg_lt,
            s.avg_rt,
            s.bytes,
            users,
            s.failures,
            s.stdev_rt,
            s.samples - s.failures,
            s.samples
        );
        for p in &s.percentiles {
            let _ = write!(out, ",{:.5}", p.seconds);
        }
        for code in &codes {
            let _ = write!(out, ",{}", s.codes.get(*code).copied().unwrap_or(0));
        }
        out.push('\n');
    };
    for label in &report.labels {
        row(&label.label, &label.summary);
    }
    row("", &report.overall);
    out
}

/// Taurus's `concurrency` KPI in the final stats: the most users active in any second (as
/// the cumulative figure Taurus prints, from JMeter's active-threads count).
pub(super) fn peak_users(report: &Report) -> u64 {
    report.timeline.iter().map(|s| s.users).max().unwrap_or(0)
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
