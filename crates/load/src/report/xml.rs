//! XML outputs: JUnit (per label or per criterion) and Taurus's final-stats `dump-xml`.

use std::fmt::Write as _;

use crate::report::Report;
use crate::stats::Summary;

/// Escapes text for XML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && !matches!(c, '\n' | '\t') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: a test case per label (`sample-labels`), or per criterion (`pass-fail`).
pub fn junit(report: &Report, pass_fail: bool) -> String {
    let mut cases = String::new();
    let mut failures = 0;
    let mut count = 0;
    if pass_fail {
        for outcome in &report.criteria {
            count += 1;
            let _ = write!(
                cases,
                "    <testcase classname=\"peregrine.passfail\" name=\"{}\"",
                escape(&outcome.criterion)
            );
            if outcome.failed {
                failures += 1;
                let _ = write!(
                    cases,
                    ">\n      <failure message=\"{}\" type=\"pass/fail criteria triggered\"/>\n    </testcase>\n",
                    escape(&outcome.verdict)
                );
            } else {
                cases.push_str("/>\n");
            }
        }
    } else {
        for label in &report.labels {
            count += 1;
            let s = &label.summary;
            let _ = write!(
                cases,
                "    <testcase classname=\"peregrine.labels\" name=\"{}\" time=\"{:.6}\"",
                escape(&label.label),
                s.avg_rt
            );
            let errors: Vec<String> = report
                .errors
                .iter()
                .filter(|e| e.label == label.label)
                .map(|e| format!("{} × {}", e.count, e.message))
                .collect();
            if s.failures > 0 {
                failures += 1;
                let _ = write!(
                    cases,
                    ">\n      <failure message=\"{} of {} samples failed\" type=\"errors\">{}</failure>\n    </testcase>\n",
                    s.failures,
                    s.samples,
                    escape(&errors.join("\n"))
                );
            } else {
                cases.push_str("/>\n");
            }
        }
    }
    let name = if pass_fail {
        "peregrine_pass_fail"
    } else {
        "peregrine_sample_labels"
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"{name}\" package_name=\"peregrine\" tests=\"{count}\" failures=\"{failures}\" time=\"{:.3}\">\n{cases}  </testsuite>\n</testsuites>\n",
        report.duration_seconds
    )
}

/// Taurus's `dump-xml`: `<FinalStatus>` with a `<Group>` per label and one for all.
pub fn final_status(report: &Report) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<FinalStatus>\n");
    let _ = writeln!(
        out,
        "  <TestDuration>{:.3}</TestDuration>",
        report.duration_seconds
    );
    let users = super::tables::peak_users(report);
    for label in &report.labels {
        group(&mut out, &label.label, &label.summary, users);
    }
    group(&mut out, "", &report.overall, users);
    out.push_str("</FinalStatus>\n");
    out
}

fn group(out: &mut String, label: &str, s: &Summary, users: u64) {
    let _ = writeln!(out, "  <Group label=\"{}\">", escape(label));
    let kpi = |out: &mut String, name: &str, value: String| {
        let _ = writeln!(
            out,
            "    <{name} value=\"{value}\">\n      <name>{name}</name>\n      <value>{value}</value>\n    </{name}>"
        );
    };
    kpi(out, "avg_ct", format!("{:.5}", s.avg_ct));
    kpi(out, "avg_lt", format!("{:.5}", s.avg_lt));
    kpi(out, "avg_rt", format!("{:.5}", s.avg_rt));
    kpi(out, "bytes", s.bytes.to_string());
    kpi(out, "concurrency", users.to_string());
    kpi(out, "fail", s.failures.to_string());
    kpi(out, "stdev_rt", format!("{:.5}", s.stdev_rt));
    kpi(out, "succ", (s.samples - s.failures).to_string());
    kpi(out, "throughput", s.samples.to_string());
    for p in &s.percentiles {
        let _ = writeln!(
            out,
            "    <perc value=\"{v:.5}\" param=\"{l:.1}\">\n      <name>perc/{l:.1}</name>\n      <value>{v:.5}</value>\n    </perc>",
            v = p.seconds,
            l = p.level
        );
    }
    for (code, count) in &s.codes {
        let _ = writeln!(
            out,
            "    <rc value=\"{count}\" param=\"{code}\">\n      <name>rc/{code}</name>\n      <value>{count}</value>\n    </rc>"
        );
    }
    out.push_str("  </Group>\n");
}
