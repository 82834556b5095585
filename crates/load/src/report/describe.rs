//! What a run was and how it came out, in words and bins a reader needs: the verdict, the
//! load that was applied, and the response-time histogram.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::exit_code;
use crate::plan::{Execution, Plan};
use crate::stats::LatencyHistogram;

/// The run's outcome, as its exit code tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Exit 0: the test ran and no pass/fail criterion failed.
    Passed,
    /// Exit 3: a pass/fail criterion failed the test.
    Failed,
    /// Exit 2: stopped by Ctrl-C or SIGTERM; the figures are partial.
    Interrupted,
    /// Exit 1: the run could not go on.
    Aborted,
}

impl Verdict {
    /// The verdict an exit code stands for.
    pub fn of(code: i32) -> Self {
        match code {
            exit_code::OK => Self::Passed,
            exit_code::CRITERIA_FAILED => Self::Failed,
            exit_code::INTERRUPTED => Self::Interrupted,
            _ => Self::Aborted,
        }
    }
}

/// What was run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunDescription {
    /// When the test started, UTC, RFC 3339 to the second (`2026-11-28T19:35:02Z`).
    pub started_at: String,
    /// Each execution, as planned.
    pub executions: Vec<ExecutionDescription>,
}

/// How the load was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// Virtual users each send the next request when the last one answered.
    Closed,
    /// Requests are sent at a fixed rate whatever the response times (`arrival-rate`).
    Open,
}

/// Requests named in an execution's description at most; the rest are counted.
const MAX_TARGETS: usize = 5;

/// One execution as planned.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ExecutionDescription {
    /// The scenario's name.
    pub scenario: String,
    /// Closed (users) or open (rate).
    pub model: Model,
    /// Virtual users (closed model) or connections (open model).
    pub concurrency: u32,
    /// Open model: requests per second at full rate.
    pub arrival_rate: Option<f64>,
    /// A cap on requests per second (Taurus `throughput`).
    pub throughput: Option<f64>,
    /// Ramp-up, seconds.
    pub ramp_up_seconds: f64,
    /// Hold at full load after the ramp-up, seconds.
    pub hold_for_seconds: f64,
    /// Passes through the scenario per user, when bounded.
    pub iterations: Option<u64>,
    /// The first few distinct requests, as `METHOD scheme://host:port/path`.
    pub targets: Vec<String>,
    /// Requests in the scenario.
    pub requests: usize,
}

impl RunDescription {
    /// The description of `plan`, which ran for `duration` and has just ended.
    pub fn of(plan: &Plan, duration: Duration) -> Self {
        let started = SystemTime::now()
            .checked_sub(duration)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            started_at: rfc3339(started.as_secs()),
            executions: plan.executions.iter().map(describe_execution).collect(),
        }
    }
}

fn describe_execution(execution: &Execution) -> ExecutionDescription {
    let mut seen = BTreeSet::new();
    let mut targets = Vec::new();
    for request in &execution.scenario.requests {
        if targets.len() == MAX_TARGETS {
            break;
        }
        let scheme = if request.https { "https" } else { "http" };
        let text = if request.origin_at_run_time() {
            // The URL as written: its host is only known per request.
            let path = Some(request.target.to_string()).filter(|t| t != "/");
            format!(
                "{} {}{}",
                request.method,
                request.authority,
                path.unwrap_or_default()
            )
        } else {
            format!(
                "{} {scheme}://{}{}",
                request.method, request.authority, request.target
            )
        };
        if seen.insert(text.clone()) {
            targets.push(text);
        }
    }
    ExecutionDescription {
        scenario: execution.scenario.name.clone(),
        model: if execution.arrival_rate.is_some() {
            Model::Open
        } else {
            Model::Closed
        },
        concurrency: execution.concurrency,
        arrival_rate: execution.arrival_rate,
        throughput: execution.throughput,
        ramp_up_seconds: execution.ramp_up.as_secs_f64(),
        hold_for_seconds: execution.hold_for.as_secs_f64(),
        iterations: execution.iterations,
        targets,
        requests: execution.scenario.requests.len(),
    }
}

/// Seconds since 1970 as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn rfc3339(unix_seconds: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// One bar of the response-time histogram: samples in `[from_seconds, to_seconds)`. The last
/// bar may be wider: it gathers the slowest 1 % or so, up to the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct HistogramBin {
    /// Lower bound, seconds.
    pub from_seconds: f64,
    /// Upper bound, seconds.
    pub to_seconds: f64,
    /// Samples in it.
    pub count: u64,
}

/// Bars aimed for between the fastest response and the 99th percentile.
const TARGET_BINS: f64 = 30.0;

/// Even bins of a round width (1, 2 or 5 × 10^n µs) from the minimum to the 99th percentile
/// (a long tail would squeeze the body of the distribution into a few bars), and one more
/// bin up to the maximum if slower samples remain.
pub fn histogram_bins(histogram: &LatencyHistogram) -> Vec<HistogramBin> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let low = histogram.min() as f64;
    let high = (histogram.percentile(99.0) as f64).max(low + 1.0);
    let width = nice_step((high - low) / TARGET_BINS).max(1.0);
    let first = (low / width).floor() * width;
    let count = ((high - first) / width).floor() as usize + 1;
    let mut bins: Vec<HistogramBin> = (0..count)
        .map(|i| HistogramBin {
            from_seconds: (first + i as f64 * width) / 1e6,
            to_seconds: (first + (i + 1) as f64 * width) / 1e6,
            count: 0,
        })
        .collect();
    let end = first + count as f64 * width;
    let max = histogram.percentile(100.0) as f64;
    if max >= end {
        bins.push(HistogramBin {
            from_seconds: end / 1e6,
            to_seconds: max / 1e6,
            count: 0,
        });
    }
    let last = bins.len() - 1;
    for (value, samples) in histogram.counts() {
        let index = (((value as f64 - first) / width).floor().max(0.0) as usize).min(last);
        bins[index].count += samples;
    }
    bins
}

/// The round step (1, 2 or 5 × a power of ten) nearest above `rough`.
pub fn nice_step(rough: f64) -> f64 {
    if !rough.is_finite() || rough <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&step| step >= rough * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_894_502), "2026-11-28T19:35:02Z");
    }

    #[test]
    fn steps_are_one_two_or_five() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(6.0), 10.0);
        assert_eq!(nice_step(230.0), 500.0);
        assert_eq!(nice_step(0.02), 0.02);
    }

    #[test]
    fn every_sample_falls_in_one_bin_of_a_round_width() {
        let mut histogram = LatencyHistogram::default();
        for micros in (1000..4000).step_by(3) {
            histogram.record(micros);
        }
        histogram.record(90_000);
        let bins = histogram_bins(&histogram);
        assert_eq!(bins.iter().map(|b| b.count).sum::<u64>(), histogram.len());
        let width = bins[0].to_seconds - bins[0].from_seconds;
        assert!((width - 0.0001).abs() < 1e-12, "{bins:?}");
        let last = bins[bins.len() - 1];
        assert_eq!((last.to_seconds, last.count), (0.09, 1), "{bins:?}");
    }
}
