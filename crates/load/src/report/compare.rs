//! `peregrine report compare`: two runs' reports side by side, per label, with whether each
//! change is beyond noise.
//!
//! Method. A percentile's 95 % confidence interval comes from the order statistics of the
//! run's own histogram: with n samples the p-th quantile lies between the values at ranks
//! n·q ∓ 1.96·√(n·q·(1−q)) (the binomial, distribution-free interval; it assumes samples are
//! independent). A change is beyond noise when the two runs' intervals do not overlap AND it
//! is larger than both noise floors (by default 5 % and 0.5 ms): with thousands of samples
//! the intervals are narrow, and the floors stand for run-to-run drift (machine load, other
//! tenants, GC) that no single run's interval can see. A configured threshold fails the
//! comparison only for a change that is beyond noise.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Deserialize;

use super::SCHEMA;
use super::merge::value_at;
use crate::files::{MAX_REPORT_BYTES, Source, read_limited};
use crate::stats::hdr::decode;

/// What a comparison reads of a report.json: the figures and encoded distributions, not
/// the timeline or errors (parsed past without being kept, so a report with 100,000 labels
/// costs little more than its distributions).
#[derive(Debug, Deserialize)]
pub struct CompareInput {
    overall: Figures,
    #[serde(default)]
    labels: Vec<LabelFigures>,
    #[serde(default)]
    distributions: Option<Encoded>,
}

#[derive(Debug, Default, Deserialize)]
struct Figures {
    #[serde(default)]
    samples: u64,
    #[serde(default)]
    throughput: f64,
    #[serde(default)]
    failure_percent: f64,
}

#[derive(Debug, Deserialize)]
struct LabelFigures {
    label: String,
    #[serde(default)]
    samples: u64,
    #[serde(default)]
    throughput: f64,
    #[serde(default)]
    failure_percent: f64,
}

#[derive(Debug, Deserialize)]
struct Encoded {
    #[serde(default)]
    overall: Option<String>,
    #[serde(default)]
    labels: Vec<EncodedLabel>,
}

#[derive(Debug, Deserialize)]
struct EncodedLabel {
    #[serde(default)]
    response: Option<String>,
}

impl CompareInput {
    /// Reads `file` (at most [`MAX_REPORT_BYTES`]); errors name it. A report of another
    /// schema version is refused: its fields may mean something else.
    pub fn read(file: &Path) -> Result<Self, String> {
        let shown = file.display();
        let bytes = read_limited(file, MAX_REPORT_BYTES, Source::RegularFile)
            .map_err(|e| format!("cannot read {shown}: {e}"))?;
        let schema = serde_json::from_slice::<SchemaOnly>(&bytes)
            .map_err(|e| format!("{shown}: not a report.json: {e}"))?
            .schema;
        if schema != SCHEMA {
            return Err(format!(
                "{shown}: a {schema:?} report; this peregrine compares {SCHEMA} reports"
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("{shown}: not a report.json: {e}"))
    }
}

#[derive(Deserialize)]
struct SchemaOnly {
    #[serde(default)]
    schema: String,
}

/// Levels compared.
pub const LEVELS: [f64; 3] = [50.0, 90.0, 99.0];
/// z for a two-sided 95 % interval.
const Z95: f64 = 1.96;

/// What counts as noise and what fails.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Relative noise floor, a fraction (0.05 = 5 %).
    pub noise_relative: f64,
    /// Absolute noise floor, µs.
    pub noise_micros: f64,
    /// Most accepted regression per level of [`LEVELS`], a fraction.
    pub max_regression: [Option<f64>; 3],
    /// Most accepted rise of the error rate, percentage points.
    pub max_error_rate_increase: Option<f64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            noise_relative: 0.05,
            noise_micros: 500.0,
            max_regression: [None; 3],
            max_error_rate_increase: None,
        }
    }
}

/// One label (or `ALL`) of one run.
struct Side {
    samples: u64,
    throughput: f64,
    error_percent: f64,
    histogram: Histogram<u64>,
}

/// The comparison's text and whether a threshold was crossed.
#[derive(Debug)]
pub struct Comparison {
    /// The table.
    pub text: String,
    /// Thresholds crossed, described.
    pub failures: Vec<String>,
}

/// Compares report.json documents `base` and `new`.
pub fn compare(
    base: &CompareInput,
    new: &CompareInput,
    limits: &Thresholds,
) -> Result<Comparison, String> {
    let mut text = String::new();
    let mut failures = Vec::new();
    let _ = writeln!(
        text,
        "{:<24} {:>12} {:>12} {:>9} | {:>5} {:>10} {:>10} {:>8}  noise?",
        "label", "base req/s", "new req/s", "err% b/n", "pct", "base ms", "new ms", "change"
    );
    // One pair at a time: a decoded histogram takes tens of kilobytes, so holding every
    // label's at once took gigabytes for 100,000 labels.
    for (label, base_at, new_at) in pairs(base, new) {
        let base_side = side(base, base_at, "base")?;
        let new_side = side(new, new_at, "new")?;
        let _ = writeln!(
            text,
            "{label:<24} {:>12.1} {:>12.1} {:>4.1}/{:<4.1}",
            base_side.throughput,
            new_side.throughput,
            base_side.error_percent,
            new_side.error_percent
        );
        for (i, level) in LEVELS.iter().enumerate() {
            let (b, n) = (
                value_at(&base_side.histogram, *level),
                value_at(&new_side.histogram, *level),
            );
            let change = if b > 0.0 { (n - b) / b } else { 0.0 };
            let significant = beyond_noise(&base_side, &new_side, *level, limits);
            let _ = writeln!(
                text,
                "{:<24} {:>12} {:>12} {:>9} | p{:<4} {:>10.3} {:>10.3} {:>+7.1}%  {}",
                "",
                "",
                "",
                "",
                level,
                b / 1e3,
                n / 1e3,
                change * 100.0,
                if significant {
                    "SIGNIFICANT"
                } else {
                    "within noise"
                }
            );
            if let Some(max) = limits.max_regression[i]
                && significant
                && change > max
            {
                failures.push(format!(
                    "{label}: p{level} rose {:.1}% (limit {:.1}%)",
                    change * 100.0,
                    max * 100.0
                ));
            }
        }
        if let Some(max) = limits.max_error_rate_increase {
            let rise = new_side.error_percent - base_side.error_percent;
            if rise > max {
                failures.push(format!(
                    "{label}: error rate rose {rise:.2} points (limit {max:.2})"
                ));
            }
        }
    }
    Ok(Comparison { text, failures })
}

/// Whether the change at `level` is beyond the 95 % intervals and the noise floors.
fn beyond_noise(base: &Side, new: &Side, level: f64, limits: &Thresholds) -> bool {
    let (b_low, b_high) = interval(&base.histogram, level);
    let (n_low, n_high) = interval(&new.histogram, level);
    let (b, n) = (
        value_at(&base.histogram, level),
        value_at(&new.histogram, level),
    );
    let apart = n_low > b_high || n_high < b_low;
    let floor = (b * limits.noise_relative).max(limits.noise_micros);
    base.samples > 0 && new.samples > 0 && apart && (n - b).abs() > floor
}

/// The distribution-free 95 % interval of the quantile at `level`, µs.
fn interval(histogram: &Histogram<u64>, level: f64) -> (f64, f64) {
    let n = histogram.len() as f64;
    if n == 0.0 {
        return (0.0, 0.0);
    }
    let q = (level / 100.0).clamp(0.0, 1.0);
    let spread = Z95 * (n * q * (1.0 - q)).sqrt();
    let at = |rank: f64| value_at(histogram, (rank / n).clamp(0.0, 1.0) * 100.0);
    (at(n * q - spread), at(n * q + spread))
}

/// `ALL` (`None`) and every label present in both reports, with its index in each.
fn pairs(base: &CompareInput, new: &CompareInput) -> Vec<(String, Option<usize>, Option<usize>)> {
    let mut pairs = vec![("ALL".to_owned(), None, None)];
    // By name: a label may sit at another position in the new run.
    let new_index: HashMap<&str, usize> = new
        .labels
        .iter()
        .enumerate()
        .map(|(j, l)| (l.label.as_str(), j))
        .collect();
    for (i, label) in base.labels.iter().enumerate() {
        if let Some(&j) = new_index.get(label.label.as_str()) {
            pairs.push((label.label.clone(), Some(i), Some(j)));
        }
    }
    pairs
}

/// The figures and decoded distribution of label `at` (`None`: the whole run).
fn side(report: &CompareInput, at: Option<usize>, which: &str) -> Result<Side, String> {
    let (samples, throughput, error_percent) = match at.and_then(|i| report.labels.get(i)) {
        Some(l) => (l.samples, l.throughput, l.failure_percent),
        None => (
            report.overall.samples,
            report.overall.throughput,
            report.overall.failure_percent,
        ),
    };
    let encoded = report.distributions.as_ref().and_then(|d| match at {
        None => d.overall.as_deref(),
        Some(i) => d.labels.get(i)?.response.as_deref(),
    });
    let encoded = encoded.ok_or_else(|| {
        format!(
            "the {which} report has no response-time distribution (written by an older peregrine?)"
        )
    })?;
    Ok(Side {
        samples,
        throughput,
        error_percent,
        histogram: decode(encoded).map_err(|err| format!("the {which} report: {err}"))?,
    })
}
