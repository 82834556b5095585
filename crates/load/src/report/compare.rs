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

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::Value;

use super::merge::value_at;
use crate::stats::hdr::decode;

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
pub fn compare(base: &Value, new: &Value, limits: &Thresholds) -> Result<Comparison, String> {
    let mut text = String::new();
    let mut failures = Vec::new();
    let _ = writeln!(
        text,
        "{:<24} {:>12} {:>12} {:>9} | {:>5} {:>10} {:>10} {:>8}  noise?",
        "label", "base req/s", "new req/s", "err% b/n", "pct", "base ms", "new ms", "change"
    );
    for (label, base_side, new_side) in pairs(base, new)? {
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

/// `ALL` and every label present in both reports, with both sides.
fn pairs(base: &Value, new: &Value) -> Result<Vec<(String, Side, Side)>, String> {
    let mut pairs = vec![(
        "ALL".to_owned(),
        side(&base["overall"], &base["distributions"]["overall"], "base")?,
        side(&new["overall"], &new["distributions"]["overall"], "new")?,
    )];
    let labels = |report: &Value| report["labels"].as_array().cloned().unwrap_or_default();
    let (base_labels, new_labels) = (labels(base), labels(new));
    for (i, label) in base_labels.iter().enumerate() {
        let name = label["label"].as_str().unwrap_or_default();
        let Some(j) = new_labels.iter().position(|l| l["label"] == name) else {
            continue;
        };
        pairs.push((
            name.to_owned(),
            side(
                label,
                &base["distributions"]["labels"][i]["response"],
                "base",
            )?,
            side(
                &new_labels[j],
                &new["distributions"]["labels"][j]["response"],
                "new",
            )?,
        ));
    }
    Ok(pairs)
}

fn side(summary: &Value, encoded: &Value, which: &str) -> Result<Side, String> {
    let encoded = encoded.as_str().ok_or_else(|| {
        format!(
            "the {which} report has no response-time distribution (written by an older peregrine?)"
        )
    })?;
    Ok(Side {
        samples: summary["samples"].as_u64().unwrap_or(0),
        throughput: summary["throughput"].as_f64().unwrap_or(0.0),
        error_percent: summary["failure_percent"].as_f64().unwrap_or(0.0),
        histogram: decode(encoded).map_err(|err| format!("the {which} report: {err}"))?,
    })
}
