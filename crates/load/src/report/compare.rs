//! `peregrine report compare`: two runs' reports side by side, per label, with whether each
//! change is beyond noise, and the noise it was measured against.
//!
//! Method. A change at a percentile is beyond noise when it is larger than the noise AND the
//! two runs' 95 % confidence intervals do not overlap. The noise comes from the runs
//! themselves: the interquartile range of that percentile over the run's seconds (each
//! second's own percentile, from the per-second histograms the report carries), the larger
//! of the two runs' — how much the figure drifts within a run (machine load, other tenants,
//! GC), which no interval computed from the whole run can see. A run with fewer than
//! [`MIN_SECONDS`] seconds of samples has no such spread; half the interquartile range of
//! its whole distribution stands in. Floors that scale with the latency guard the rest:
//! `--noise` (5 % of the base value by default), and an absolute `--noise-floor` only when
//! asked for (a fixed floor larger than the service's latency would hide any change).
//!
//! A percentile's 95 % confidence interval comes from the order statistics of the run's own
//! histogram: with n samples the p-th quantile lies between the values at ranks
//! n·q ∓ 1.96·√(n·q·(1−q)) (the binomial, distribution-free interval; it assumes samples are
//! independent). A configured threshold fails the comparison only for a change that is
//! beyond noise.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Deserialize;

use super::SCHEMA;
use crate::files::{MAX_REPORT_BYTES, Source, read_limited};
use crate::stats::hdr::{decode, value_at};

/// What a comparison reads of a report.json: the figures, the encoded distributions and the
/// timeline's encoded per-second histograms (for the noise), not the errors; histograms are
/// decoded one label at a time, so a report with 100,000 labels costs little more than its
/// text.
#[derive(Debug, Deserialize)]
pub struct CompareInput {
    overall: Figures,
    #[serde(default)]
    labels: Vec<LabelFigures>,
    #[serde(default)]
    distributions: Option<Encoded>,
    #[serde(default)]
    timeline: Vec<Second>,
}

/// One second of the timeline: its histogram and its labels' (by index into `labels`).
#[derive(Debug, Deserialize)]
struct Second {
    #[serde(default)]
    histogram: Option<String>,
    #[serde(default)]
    labels: Vec<SecondLabel>,
}

#[derive(Debug, Deserialize)]
struct SecondLabel {
    label: usize,
    #[serde(default)]
    histogram: Option<String>,
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
/// Fewest seconds with samples for a run's per-second spread to be measured.
pub const MIN_SECONDS: usize = 4;

/// What counts as noise and what fails.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Relative noise floor, a fraction (0.05 = 5 %).
    pub noise_relative: f64,
    /// Absolute noise floor, µs (0: none).
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
            noise_micros: 0.0,
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
    /// Each second's response times (seconds with samples).
    seconds: Vec<Histogram<u64>>,
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
        "{:<24} {:>12} {:>12} {:>9} | {:>5} {:>10} {:>10} {:>8} {:>10}  verdict",
        "label",
        "base req/s",
        "new req/s",
        "err% b/n",
        "pct",
        "base ms",
        "new ms",
        "change",
        "noise ms"
    );
    let mut sources = Vec::new();
    let (base_seconds, new_seconds) = (SecondsIndex::of(base), SecondsIndex::of(new));
    // One pair at a time: a decoded histogram takes tens of kilobytes, so holding every
    // label's at once took gigabytes for 100,000 labels.
    for (label, base_at, new_at) in pairs(base, new) {
        let base_side = side(base, &base_seconds, base_at, "base")?;
        let new_side = side(new, &new_seconds, new_at, "new")?;
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
            let noise = noise(&base_side, &new_side, *level, limits);
            if !sources.contains(&noise.source) {
                sources.push(noise.source);
            }
            let significant = beyond_noise(&base_side, &new_side, *level, noise.micros);
            let _ = writeln!(
                text,
                "{:<24} {:>12} {:>12} {:>9} | p{:<4} {:>10.3} {:>10.3} {:>+7.1}% {:>10}  {}",
                "",
                "",
                "",
                "",
                level,
                b / 1e3,
                n / 1e3,
                change * 100.0,
                format!("±{:.3}", noise.micros / 1e3),
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
    let _ = writeln!(text, "{}", noise_note(&sources, limits));
    Ok(Comparison { text, failures })
}

/// Where a line's noise came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoiseSource {
    /// The spread of the per-second percentile within the runs.
    PerSecond,
    /// A run too short for that: its whole distribution's spread.
    Distribution,
    /// A floor (`--noise`, `--noise-floor`) was larger.
    Floor,
}

/// The noise a change at one level is measured against, µs.
struct Noise {
    micros: f64,
    source: NoiseSource,
}

/// The larger of: each run's spread at `level`, `--noise` × the base value, `--noise-floor`.
fn noise(base: &Side, new: &Side, level: f64, limits: &Thresholds) -> Noise {
    let (spread, source) = match (
        per_second_spread(base, level),
        per_second_spread(new, level),
    ) {
        (Some(b), Some(n)) => (b.max(n), NoiseSource::PerSecond),
        _ => (
            distribution_spread(&base.histogram).max(distribution_spread(&new.histogram)),
            NoiseSource::Distribution,
        ),
    };
    let floor = (value_at(&base.histogram, level) * limits.noise_relative).max(limits.noise_micros);
    if floor > spread {
        Noise {
            micros: floor,
            source: NoiseSource::Floor,
        }
    } else {
        Noise {
            micros: spread,
            source,
        }
    }
}

/// The interquartile range of the per-second values of the percentile at `level`, µs;
/// `None` for a run with fewer than [`MIN_SECONDS`] seconds of samples.
fn per_second_spread(side: &Side, level: f64) -> Option<f64> {
    if side.seconds.len() < MIN_SECONDS {
        return None;
    }
    let mut values: Vec<f64> = side.seconds.iter().map(|h| value_at(h, level)).collect();
    values.sort_by(f64::total_cmp);
    Some(quartile(&values, 0.75) - quartile(&values, 0.25))
}

/// The value at fraction `q` of sorted `values`, interpolated between neighbours.
fn quartile(values: &[f64], q: f64) -> f64 {
    let position = q * (values.len().saturating_sub(1)) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    let (a, b) = (
        values.get(low).copied().unwrap_or(0.0),
        values.get(high).copied().unwrap_or(0.0),
    );
    a + (b - a) * (position - position.floor())
}

/// Half the interquartile range of a whole run's response times, µs.
fn distribution_spread(histogram: &Histogram<u64>) -> f64 {
    (value_at(histogram, 75.0) - value_at(histogram, 25.0)) / 2.0
}

/// How the noise column was found, for the reader.
fn noise_note(sources: &[NoiseSource], limits: &Thresholds) -> String {
    let mut parts = vec![format!(
        "noise: the larger of each run's spread of that percentile (interquartile range over its seconds), {:.0}% of the base value (--noise)",
        limits.noise_relative * 100.0
    )];
    if limits.noise_micros > 0.0 {
        parts.push(format!(
            "and {:.3} ms (--noise-floor)",
            limits.noise_micros / 1e3
        ));
    }
    let mut text = parts.join(" ");
    text.push_str("; a change is SIGNIFICANT when it is larger than the noise and the runs' 95 % intervals do not overlap.");
    if sources.contains(&NoiseSource::Distribution) {
        let _ = write!(
            text,
            "\nnote: a run with fewer than {MIN_SECONDS} seconds of samples has no per-second spread: half the interquartile range of its whole distribution stood in; run longer for a sharper comparison."
        );
    }
    text
}

/// Whether the change at `level` is larger than `noise` and beyond the 95 % intervals.
fn beyond_noise(base: &Side, new: &Side, level: f64, noise: f64) -> bool {
    let (b_low, b_high) = interval(&base.histogram, level);
    let (n_low, n_high) = interval(&new.histogram, level);
    let (b, n) = (
        value_at(&base.histogram, level),
        value_at(&new.histogram, level),
    );
    let apart = n_low > b_high || n_high < b_low;
    base.samples > 0 && new.samples > 0 && apart && (n - b).abs() > noise
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

/// Each label's encoded per-second histograms (`None`: the whole run's), gathered in one
/// pass over the timeline rather than one pass per label.
struct SecondsIndex<'a> {
    overall: Vec<&'a str>,
    labels: HashMap<usize, Vec<&'a str>>,
}

impl<'a> SecondsIndex<'a> {
    fn of(report: &'a CompareInput) -> Self {
        let mut index = SecondsIndex {
            overall: Vec::new(),
            labels: HashMap::new(),
        };
        for second in &report.timeline {
            index.overall.extend(second.histogram.as_deref());
            for label in &second.labels {
                if let Some(encoded) = label.histogram.as_deref() {
                    index.labels.entry(label.label).or_default().push(encoded);
                }
            }
        }
        index
    }

    /// The decoded per-second histograms of label `at`, for the seconds that had samples;
    /// a second that does not decode is left out.
    fn decoded(&self, at: Option<usize>) -> Vec<Histogram<u64>> {
        let encoded = match at {
            None => self.overall.as_slice(),
            Some(i) => self.labels.get(&i).map_or(&[][..], Vec::as_slice),
        };
        encoded
            .iter()
            .filter_map(|e| decode(e).ok())
            .filter(|h| !h.is_empty())
            .collect()
    }
}

/// The figures, decoded distribution and per-second histograms of label `at` (`None`: the
/// whole run).
fn side(
    report: &CompareInput,
    seconds: &SecondsIndex<'_>,
    at: Option<usize>,
    which: &str,
) -> Result<Side, String> {
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
        seconds: seconds.decoded(at),
    })
}
