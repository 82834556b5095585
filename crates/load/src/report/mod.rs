//! Reports read finished statistics only: the [`Report`] built once at the end, written as
//! console text, JSON, CSV, JUnit XML, Taurus's dump formats and a self-contained HTML page.

pub mod capacity;
pub(crate) mod chart;
pub mod compare;
mod console;
pub(crate) mod describe;
mod html;
pub mod merge;
mod tables;
pub(crate) mod xml;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::criteria::Outcome;
use crate::engine::{Ending, Finished};
use crate::exit_code;
use crate::plan::{Plan, Shard};
use crate::stats::hdr::Distributions;
use crate::stats::{ErrorCount, ErrorKind, PERCENTILES, Second, Summary};

pub use crate::engine::Progress;
pub use console::{final_stats, final_stats_of, progress_line};
pub use describe::{ExecutionDescription, HistogramBin, Model, RunDescription, Verdict};

/// The version of the `report.json` schema; bumped on any incompatible change.
pub const SCHEMA: &str = "peregrine-load-report/2";

fn current_schema() -> &'static str {
    SCHEMA
}

/// An open-model run whose achieved rate is under this fraction of the requested one is
/// below target.
const BELOW_TARGET: f64 = 0.95;

/// Everything a finished test produced.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Report {
    /// [`SCHEMA`].
    #[serde(skip_deserializing, default = "current_schema")]
    pub schema: &'static str,
    /// `peregrine <version>`.
    pub tool: String,
    /// Wall-clock test duration, seconds.
    pub duration_seconds: f64,
    /// How the run ended.
    pub ending: Ending,
    /// What the outcome means for the user: passed, failed (a criterion), interrupted, aborted.
    pub verdict: Verdict,
    /// What was run: when, against what, with which load.
    pub run: RunDescription,
    /// Why an aborted run could not go on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Requests still in flight when the run stopped that were given up unmeasured: after
    /// the graceful stop at the end of the schedule, or 1 s after a stop signal.
    #[serde(default)]
    pub cancelled_in_flight: u64,
    /// Open model: the requested and achieved request rates.
    pub rate: Option<RateCheck>,
    /// All samples together.
    pub overall: Summary,
    /// Per label.
    pub labels: Vec<LabelSummary>,
    /// Errors by label, kind and message.
    pub errors: Vec<ErrorCount>,
    /// Pass/fail criteria and how they ended.
    pub criteria: Vec<Outcome>,
    /// Per second.
    pub timeline: Vec<Second>,
    /// How many samples had each response time, in even bins (see [`HistogramBin`]).
    pub latency_histogram: Vec<HistogramBin>,
    /// Config keys that were not implemented and were ignored.
    pub warnings: Vec<String>,
    /// Which latency the percentiles are: see [`Report::latency_note`].
    pub latency: LatencyKind,
    /// The slice of the plan this run was (`0/1`: all of it).
    pub shard: Shard,
    /// How late the run started after `--start-at` (a merge: the latest shard's), seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_start_seconds: Option<f64>,
    /// A merged report: how many shards it was merged from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_shards: Option<u32>,
    /// A hash of the merged config: the shards of one plan share it.
    pub fingerprint: String,
    /// The raw response-time distributions, for exact merges of shards.
    pub distributions: Distributions,
    /// A capacity search's answer and steps (`load --find-capacity`); this report is then
    /// the run of the step at the capacity.
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<capacity::Capacity>,
    #[serde(skip)]
    exit_code: i32,
}

/// What the response-time percentiles count from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatencyKind {
    /// Closed model: from when each request was sent.
    Measured,
    /// Open model: from when each request was due (coordinated omission corrected).
    Corrected,
}

/// One label's summary.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LabelSummary {
    /// The label.
    pub label: String,
    /// Its figures.
    #[serde(flatten)]
    pub summary: Summary,
}

/// Requested against achieved request rate in the open model.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct RateCheck {
    /// Requests per second asked for (at full rate).
    pub requested: f64,
    /// Requests per second sent during the hold (after any ramp-up).
    pub achieved: f64,
    /// Achieved is under 95 % of requested.
    pub below_target: bool,
}

impl Report {
    /// The report of a finished run of `plan`.
    pub fn new(plan: &Plan, finished: Finished) -> Self {
        let Finished {
            collector,
            monitor,
            duration,
            ending,
            problem,
            cancelled,
        } = finished;
        let overall = collector.overall().summary(duration, &PERCENTILES);
        let labels: Vec<LabelSummary> = plan
            .labels
            .iter()
            .zip(collector.per_label())
            .map(|(label, tally)| LabelSummary {
                label: label.clone(),
                summary: tally.summary(duration, &PERCENTILES),
            })
            .collect();
        let per_label: Vec<Summary> = labels.iter().map(|l| l.summary.clone()).collect();
        let criteria = monitor.finish(&overall, &per_label);
        let rate = open_model_rate(plan, collector.timeline());
        let exit_code = match ending {
            Ending::Aborted => exit_code::TOOL_ERROR,
            Ending::Interrupted => exit_code::INTERRUPTED,
            _ if criteria.iter().any(|c| c.failed) => exit_code::CRITERIA_FAILED,
            _ => exit_code::OK,
        };
        Self {
            schema: SCHEMA,
            tool: format!("peregrine {}", env!("CARGO_PKG_VERSION")),
            duration_seconds: duration.as_secs_f64(),
            ending,
            verdict: Verdict::of(exit_code),
            run: RunDescription::of(plan, duration),
            latency_histogram: describe::histogram_bins(&collector.overall().response),
            problem,
            cancelled_in_flight: cancelled,
            latency: if rate.is_some() {
                LatencyKind::Corrected
            } else {
                LatencyKind::Measured
            },
            rate,
            overall,
            labels,
            errors: collector.errors(&plan.labels),
            criteria,
            timeline: collector.timeline().to_vec(),
            warnings: plan.warnings.clone(),
            shard: plan.shard(),
            late_start_seconds: None,
            merged_shards: None,
            fingerprint: plan.fingerprint.clone(),
            distributions: Distributions::of(&plan.labels, &collector),
            capacity: None,
            exit_code,
        }
    }

    /// A report as report.json holds it (e.g. merged from shards); its exit code follows
    /// its verdict.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        let mut report: Self = serde_json::from_str(json)?;
        report.set_exit_code_of_verdict();
        Ok(report)
    }

    /// Makes the exit code follow the verdict (a report read or merged, not run).
    fn set_exit_code_of_verdict(&mut self) {
        self.exit_code = match self.verdict {
            Verdict::Passed => exit_code::OK,
            Verdict::Failed => exit_code::CRITERIA_FAILED,
            Verdict::Interrupted => exit_code::INTERRUPTED,
            Verdict::Aborted => exit_code::TOOL_ERROR,
        };
    }

    /// The process exit code this result calls for.
    pub fn exit_code(&self) -> i32 {
        self.exit_code
    }

    /// The self-contained HTML page of this report (as `report.html`).
    pub fn html_page(&self) -> String {
        html::page(self)
    }

    /// What the response-time percentiles mean in this report.
    pub fn latency_note(&self) -> &'static str {
        if self.rate.is_some() {
            "response times count from when each request was due (coordinated omission corrected); \
             service times count from when it was actually sent (uncorrected)"
        } else {
            "response times count from when each request was sent (closed model)"
        }
    }

    /// Writes `report.json`, `timeline.csv`, `junit.xml` and `report.html` into `dir`.
    pub fn write_dir(&self, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
        std::fs::create_dir_all(dir).map_err(|e| ReportError::new(dir, &e))?;
        let files = [
            ("report.json", self.json()),
            ("timeline.csv", tables::timeline_csv(self)),
            ("junit.xml", xml::junit(self, false)),
            ("report.html", html::page(self)),
        ];
        files
            .into_iter()
            .map(|(name, content)| {
                let path = dir.join(name);
                std::fs::write(&path, content).map_err(|e| ReportError::new(&path, &e))?;
                Ok(path)
            })
            .collect()
    }

    /// Writes the outputs the config's reporting section asked for.
    pub fn write_configured(&self, plan: &Plan) -> Result<Vec<PathBuf>, ReportError> {
        let outputs = &plan.outputs;
        let mut written = Vec::new();
        let mut write = |path: &PathBuf, content: String| {
            std::fs::write(path, content).map_err(|e| ReportError::new(path, &e))?;
            written.push(path.clone());
            Ok::<(), ReportError>(())
        };
        if let Some(path) = &outputs.dump_xml {
            write(path, xml::final_status(self))?;
        }
        if let Some(path) = &outputs.dump_csv {
            write(path, tables::final_stats_csv(self))?;
        }
        if let Some(path) = &outputs.junit_xml {
            write(path, xml::junit(self, outputs.junit_pass_fail))?;
        }
        Ok(written)
    }

    /// The report as pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// An error kind as `report.json` spells it: `connect`, `timeout`, `http`, `assertion`, `io`.
fn kind_name(kind: ErrorKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn open_model_rate(plan: &Plan, timeline: &[Second]) -> Option<RateCheck> {
    let execution = plan.executions.iter().find(|e| e.arrival_rate.is_some())?;
    let requested: f64 = plan
        .executions
        .iter()
        .filter_map(|e| e.arrival_rate.map(|rate| e.shard.rate(rate)))
        .sum();
    // Count the seconds after the ramp-up, leaving out the partial last second.
    let from = execution.ramp_up.as_secs_f64().ceil() as u64;
    let to = execution.duration().as_secs();
    let held: Vec<&Second> = timeline
        .iter()
        .filter(|s| s.second >= from && s.second < to)
        .collect();
    let achieved = if held.is_empty() {
        0.0
    } else {
        held.iter().map(|s| s.overall.hits as f64).sum::<f64>() / held.len() as f64
    };
    Some(RateCheck {
        requested,
        achieved,
        below_target: achieved < BELOW_TARGET * requested,
    })
}

/// A report file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {message}")]
pub struct ReportError {
    path: String,
    message: String,
}

impl ReportError {
    fn new(path: &Path, err: &std::io::Error) -> Self {
        Self {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }
}
