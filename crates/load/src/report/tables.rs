//! CSV outputs: Peregrine's per-second timeline and Taurus's final-stats `dump-csv`, written
//! with the `csv` crate (quoting as RFC 4180 asks); the figures are formatted here, to the
//! digits each file has always had.

use std::collections::BTreeSet;

use crate::report::Report;
use crate::stats::Summary;

/// `rows` as CSV text, one line each.
fn csv_text(rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    for row in rows {
        // Writing into memory cannot fail.
        let _ = writer.write_record(&row);
    }
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

fn fixed(value: f64, digits: usize) -> String {
    format!("{value:.digits$}")
}

/// `timeline.csv`: one row per second for the whole test.
pub fn timeline_csv(report: &Report) -> String {
    let header = [
        "second", "users", "requests", "errors", "bytes", "avg_rt", "p50", "p90", "p99",
    ];
    let rows = report.timeline.iter().map(|second| {
        let w = &second.overall;
        let level = |l: f64| w.percentile(l).map_or_else(String::new, |s| fixed(s, 6));
        vec![
            second.second.to_string(),
            second.users.to_string(),
            w.hits.to_string(),
            w.failures.to_string(),
            w.bytes.to_string(),
            w.avg_rt().map_or_else(String::new, |s| fixed(s, 6)),
            level(50.0),
            level(90.0),
            level(99.0),
        ]
    });
    csv_text(std::iter::once(header.map(str::to_owned).to_vec()).chain(rows))
}

/// Taurus's `dump-csv`: one row per label and one with an empty label for all.
pub fn final_stats_csv(report: &Report) -> String {
    let codes: BTreeSet<&String> = report.overall.codes.keys().collect();
    let mut header: Vec<String> = [
        "label",
        "avg_ct",
        "avg_lt",
        "avg_rt",
        "bytes",
        "concurrency",
        "fail",
        "stdev_rt",
        "succ",
        "throughput",
    ]
    .map(str::to_owned)
    .to_vec();
    header.extend(
        report
            .overall
            .percentiles
            .iter()
            .map(|p| format!("perc_{:.1}", p.level)),
    );
    header.extend(codes.iter().map(|code| format!("rc_{code}")));
    let users = peak_users(report);
    let row = |label: &str, s: &Summary| {
        let mut row = vec![
            label.to_owned(),
            fixed(s.avg_ct, 5),
            fixed(s.avg_lt, 5),
            fixed(s.avg_rt, 5),
            s.bytes.to_string(),
            users.to_string(),
            s.failures.to_string(),
            fixed(s.stdev_rt, 5),
            (s.samples - s.failures).to_string(),
            s.samples.to_string(),
        ];
        row.extend(s.percentiles.iter().map(|p| fixed(p.seconds, 5)));
        row.extend(
            codes
                .iter()
                .map(|code| s.codes.get(*code).copied().unwrap_or(0).to_string()),
        );
        row
    };
    let labels = report
        .labels
        .iter()
        .map(|label| row(&label.label, &label.summary));
    csv_text(
        std::iter::once(header)
            .chain(labels)
            .chain(std::iter::once(row("", &report.overall))),
    )
}

/// Taurus's `concurrency` KPI in the final stats: the most users active in any second (as
/// the cumulative figure Taurus prints, from JMeter's active-threads count).
pub(super) fn peak_users(report: &Report) -> u64 {
    report.timeline.iter().map(|s| s.users).max().unwrap_or(0)
}
