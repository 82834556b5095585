//! `peregrine report merge`: the reports of the N shards of one plan as one report.
//!
//! Counts, bytes, status codes and errors are summed; response-time and service-time
//! percentiles, mean and standard deviation come from the merged HDR histograms (never
//! averaged); latency and connect averages are weighted by samples. The per-second timeline
//! sums counts, bytes, sums of times and codes per second, and its percentiles, overall and
//! per label, come from the merged per-second histograms. Given the plan,
//! [`evaluate_criteria`] evaluates its pass/fail criteria on the merged figures.
//!
//! Shards are read into the typed [`Report`]; only the schema and the counts are first read
//! as written ([`Guard`]), so that a hostile or hand-edited file is refused with its own
//! value quoted back rather than a bare "invalid type". About 600 lines in one file: reading,
//! checking and summing shards are one concern, in short functions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::Value;

use super::describe::histogram_bins;
use super::{LabelSummary, RateCheck, Report, SCHEMA, Verdict, kind_name};
use crate::criteria::{Monitor, Outcome};
use crate::engine::Ending;
use crate::shard::Shard;
use crate::stats::hdr::{self, LabelDistribution, decode, encode, value_at};
use crate::stats::{
    ErrorCount, ErrorKind, LabelWindow, LatencyHistogram, PERCENTILES, Percentile, Second, Summary,
    Window,
};

/// One shard's report as read.
struct ShardReport {
    file: PathBuf,
    report: Report,
}

/// Why shards cannot be merged; each names the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct MergeError {
    /// The report (or directory) at fault.
    pub file: PathBuf,
    /// What is wrong.
    pub message: String,
}

fn fail(file: &Path, message: impl Into<String>) -> MergeError {
    MergeError {
        file: file.to_path_buf(),
        message: message.into(),
    }
}

/// Reads `DIR/report.json` of every shard directory, checks that they are all the shards
/// of one plan, and merges them into one report.
pub fn merge_dirs(dirs: &[PathBuf]) -> Result<Report, MergeError> {
    let mut budget = MAX_MERGE_INPUT_BYTES;
    let shards = dirs
        .iter()
        .map(|dir| read_shard(&dir.join("report.json"), &mut budget))
        .collect::<Result<Vec<_>, _>>()?;
    check_complete(&shards)?;
    merge(&shards)
}

/// Most bytes of report.json all shards together may hold: merging keeps every shard's
/// report in memory, at several times its size.
pub const MAX_MERGE_INPUT_BYTES: u64 = 64 * 1024 * 1024;

/// What a shard's file says before it is trusted: its schema and counts as written.
#[derive(Deserialize)]
struct Guard {
    #[serde(default)]
    schema: Value,
    #[serde(default)]
    overall: Counts,
    #[serde(default)]
    labels: Vec<Counts>,
}

/// A summary's counts as written (any JSON value, to quote a wrong one back).
#[derive(Default, Deserialize)]
struct Counts {
    #[serde(default)]
    samples: Value,
    #[serde(default)]
    failures: Value,
}

fn read_shard(file: &Path, budget: &mut u64) -> Result<ShardReport, MergeError> {
    let bytes = crate::files::read_limited(file, *budget, crate::files::Source::RegularFile)
        .map_err(|err| {
            fail(
                file,
                format!(
                    "cannot read: {err} (the shards' reports may hold {MAX_MERGE_INPUT_BYTES} bytes together)"
                ),
            )
        })?;
    *budget -= bytes.len() as u64;
    let unreadable = |err: serde_json::Error| match err.classify() {
        serde_json::error::Category::Data => fail(file, format!("not a report.json: {err}")),
        _ => fail(file, format!("not JSON: {err}")),
    };
    let guard: Guard = serde_json::from_slice(&bytes).map_err(unreadable)?;
    if guard.schema != SCHEMA {
        return Err(fail(
            file,
            format!("a {} report, not a {SCHEMA} one", guard.schema),
        ));
    }
    let samples = check_counts(&guard).map_err(|message| fail(file, message))?;
    let report: Report = serde_json::from_slice(&bytes).map_err(unreadable)?;
    drop(bytes);
    let recorded = decode(&report.distributions.overall)
        .map_err(|err| fail(file, err))?
        .len();
    if recorded != samples {
        return Err(fail(
            file,
            format!(
                "overall.samples ({samples}) disagrees with its response-time distribution ({recorded} samples)"
            ),
        ));
    }
    if report.fingerprint.is_empty() {
        return Err(fail(file, "has no plan fingerprint"));
    }
    Ok(ShardReport {
        file: file.to_path_buf(),
        report,
    })
}

/// Whether a shard's counts can be what a run recorded: whole numbers, failures within
/// samples, the labels adding up to the whole. A hand-edited or corrupt report is refused,
/// not merged into nonsense. The whole's samples when they can.
fn check_counts(guard: &Guard) -> Result<u64, String> {
    let counts = |part: &Counts, path: &str| -> Result<(u64, u64), String> {
        let count = |value: &Value, key: &str| {
            value
                .as_u64()
                .ok_or_else(|| format!("{path}.{key} is {value}, not a whole number"))
        };
        let samples = count(&part.samples, "samples")?;
        let failures = count(&part.failures, "failures")?;
        if failures > samples {
            return Err(format!(
                "{path}.failures ({failures}) is more than its samples ({samples})"
            ));
        }
        Ok((samples, failures))
    };
    let (samples, _) = counts(&guard.overall, "overall")?;
    let mut total = 0u64;
    for (i, label) in guard.labels.iter().enumerate() {
        let (label_samples, _) = counts(label, &format!("labels.{i}"))?;
        total = total.saturating_add(label_samples);
    }
    if !guard.labels.is_empty() && total != samples {
        return Err(format!(
            "the labels' samples add up to {total}, not overall.samples ({samples})"
        ));
    }
    Ok(samples)
}

/// Same plan, same N, distinct indexes covering 0..N.
fn check_complete(shards: &[ShardReport]) -> Result<(), MergeError> {
    let Some(first) = shards.first() else {
        return Err(fail(Path::new("."), "no shard directories given"));
    };
    let (fingerprint, count) = (&first.report.fingerprint, first.report.shard.count);
    let mut seen: BTreeMap<u32, &Path> = BTreeMap::new();
    for shard in shards {
        let Shard {
            index: this_index,
            count: this_count,
        } = shard.report.shard;
        if shard.report.fingerprint != *fingerprint {
            return Err(fail(
                &shard.file,
                format!(
                    "is a different plan (fingerprint {}) from {} ({fingerprint})",
                    shard.report.fingerprint,
                    first.file.display(),
                ),
            ));
        }
        if this_count != count {
            return Err(fail(
                &shard.file,
                format!(
                    "is shard {this_index}/{this_count} but {} is of {count} shards",
                    first.file.display(),
                ),
            ));
        }
        if let Some(other) = seen.insert(this_index, &shard.file) {
            return Err(fail(
                &shard.file,
                format!(
                    "is shard {this_index}/{this_count} again (also {})",
                    other.display()
                ),
            ));
        }
    }
    if let Some(missing) = (0..count).find(|i| !seen.contains_key(i)) {
        return Err(fail(
            &first.file,
            format!("shard {missing}/{count} is missing: give all {count} shard directories"),
        ));
    }
    Ok(())
}

fn merge(shards: &[ShardReport]) -> Result<Report, MergeError> {
    let first = &shards[0].report;
    let duration = shards
        .iter()
        .map(|s| s.report.duration_seconds)
        .fold(0.0, f64::max);
    let overall = Times::merged(shards, |r| Some((&r.overall, &r.service)))?;
    let mut labels = Vec::new();
    let mut distributions = Vec::new();
    for (i, label) in first.labels.iter().enumerate() {
        let times = Times::merged(shards, |r| {
            r.labels
                .get(i)
                .map(|l: &LabelDistribution| (&l.response, &l.service))
        })?;
        let parts = shards.iter().filter_map(|s| s.report.labels.get(i));
        labels.push(LabelSummary {
            label: label.label.clone(),
            summary: merged_summary(parts.map(|l| &l.summary), &times, duration),
        });
        distributions.push(LabelDistribution {
            label: label.label.clone(),
            response: encode(&times.response),
            service: times.service.as_ref().map(encode).unwrap_or_default(),
        });
    }
    let mut report = first.clone();
    report.duration_seconds = duration;
    report.overall = merged_summary(shards.iter().map(|s| &s.report.overall), &overall, duration);
    report.labels = labels;
    report.distributions = hdr::Distributions {
        unit: "us".to_owned(),
        overall: encode(&overall.response),
        service: overall.service.as_ref().map(encode).unwrap_or_default(),
        labels: distributions,
    };
    report.errors = merged_errors(shards);
    report.timeline = merged_timeline(shards);
    report.shard = Shard::WHOLE;
    report.merged_shards = Some(first.shard.count);
    report.criteria = Vec::new();
    report.cancelled_in_flight = shards
        .iter()
        .map(|s| s.report.cancelled_in_flight)
        .fold(0, u64::saturating_add);
    report.late_start_seconds = shards
        .iter()
        .filter_map(|s| s.report.late_start_seconds)
        .reduce(f64::max);
    (report.verdict, report.ending) = merged_verdict(shards);
    report.rate = merged_rate(shards);
    // The earliest start (RFC 3339 UTC texts of one format sort as times).
    if let Some(started) = shards.iter().map(|s| &s.report.run.started_at).min() {
        report.run.started_at = started.clone();
    }
    report.latency_histogram = histogram_bins(&to_compact(&overall.response));
    report.set_exit_code_of_verdict();
    Ok(report)
}

/// The merged run's verdict and ending before criteria: aborted or interrupted when any
/// shard was, else passed and completed (the shards' own criteria judged slices only).
fn merged_verdict(shards: &[ShardReport]) -> (Verdict, Ending) {
    let any = |verdict: Verdict| shards.iter().any(|s| s.report.verdict == verdict);
    if any(Verdict::Aborted) {
        (Verdict::Aborted, Ending::Aborted)
    } else if any(Verdict::Interrupted) {
        (Verdict::Interrupted, Ending::Interrupted)
    } else {
        (Verdict::Passed, Ending::Completed)
    }
}

/// An HDR histogram as the load generator's own (for the report's histogram bins).
fn to_compact(histogram: &Histogram<u64>) -> LatencyHistogram {
    let mut compact = LatencyHistogram::dense();
    for value in histogram.iter_recorded() {
        compact.record_n(value.value_iterated_to(), value.count_at_value());
    }
    compact
}

/// The open model's rates: the shards' requested and achieved rates summed (each shard
/// counts the same seconds of the plan, so the sum of their averages is the average of the
/// sums); none when a shard has none.
fn merged_rate(shards: &[ShardReport]) -> Option<RateCheck> {
    let rates: Vec<RateCheck> = shards
        .iter()
        .map(|s| s.report.rate)
        .collect::<Option<_>>()?;
    let requested: f64 = rates.iter().map(|r| r.requested).sum();
    let achieved: f64 = rates.iter().map(|r| r.achieved).sum();
    Some(RateCheck {
        requested,
        achieved,
        below_target: achieved < super::BELOW_TARGET * requested,
    })
}

/// The merged response-time and service-time histograms of the whole run or of a label.
struct Times {
    response: Histogram<u64>,
    /// None when a shard has none (a report of an older version).
    service: Option<Histogram<u64>>,
}

impl Times {
    /// The sums of the shards' response-time and service-time histograms that `pick` finds
    /// in each report's distributions (encoded; an empty service text: none).
    fn merged(
        shards: &[ShardReport],
        pick: impl Fn(&hdr::Distributions) -> Option<(&String, &String)>,
    ) -> Result<Self, MergeError> {
        let has_service = shards
            .iter()
            .all(|s| pick(&s.report.distributions).is_some_and(|(_, service)| !service.is_empty()));
        let response = merged_histogram(shards, |d| pick(d).map(|p| p.0))?;
        let service = if has_service {
            Some(merged_histogram(shards, |d| pick(d).map(|p| p.1))?)
        } else {
            None
        };
        Ok(Self { response, service })
    }
}

/// The sum of the shards' histograms picked by `pick`.
fn merged_histogram<'a>(
    shards: &'a [ShardReport],
    pick: impl Fn(&'a hdr::Distributions) -> Option<&'a String>,
) -> Result<Histogram<u64>, MergeError> {
    let mut merged = hdr::empty();
    for shard in shards {
        let text = pick(&shard.report.distributions)
            .ok_or_else(|| fail(&shard.file, "has no response-time distribution"))?;
        let histogram = decode(text).map_err(|err| fail(&shard.file, err))?;
        merged
            .add(histogram)
            .map_err(|err| fail(&shard.file, format!("cannot add its histogram: {err:?}")))?;
    }
    Ok(merged)
}

/// A summary from the shards' summaries and the merged histograms.
fn merged_summary<'a>(
    parts: impl Iterator<Item = &'a Summary> + Clone,
    times: &Times,
    duration: f64,
) -> Summary {
    let histogram = &times.response;
    let sum = |count: fn(&Summary) -> u64| parts.clone().map(count).fold(0u64, u64::saturating_add);
    let (samples, failures) = (sum(|p| p.samples), sum(|p| p.failures));
    let weighted = |average: fn(&Summary) -> f64| {
        let total: f64 = parts.clone().map(|p| average(p) * p.samples as f64).sum();
        if samples == 0 {
            0.0
        } else {
            total / samples as f64
        }
    };
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    for part in parts.clone() {
        for (code, count) in &part.codes {
            *codes.entry(code.clone()).or_default() += count;
        }
    }
    Summary {
        samples,
        failures,
        failure_percent: if samples == 0 {
            0.0
        } else {
            failures as f64 * 100.0 / samples as f64
        },
        bytes: sum(|p| p.bytes),
        throughput: if duration > 0.0 {
            samples as f64 / duration
        } else {
            0.0
        },
        avg_rt: if histogram.is_empty() {
            0.0
        } else {
            histogram.mean() / 1e6
        },
        avg_lt: weighted(|p| p.avg_lt),
        avg_ct: weighted(|p| p.avg_ct),
        avg_tls: weighted(|p| p.avg_tls),
        avg_check: weighted(|p| p.avg_check),
        stdev_rt: if histogram.is_empty() {
            0.0
        } else {
            histogram.stdev() / 1e6
        },
        percentiles: percentile_table(histogram, &PERCENTILES),
        service_percentiles: times
            .service
            .as_ref()
            .map(|service| percentile_table(service, &PERCENTILES))
            .unwrap_or_default(),
        codes,
    }
}

/// The percentiles of `histogram` at `levels`, as a report holds them (seconds).
fn percentile_table(histogram: &Histogram<u64>, levels: &[f64]) -> Vec<Percentile> {
    levels
        .iter()
        .map(|&level| Percentile {
            level,
            seconds: value_at(histogram, level) / 1e6,
        })
        .collect()
}

/// Errors summed by label, kind and message; the most frequent first, then by label, kind
/// (as the report spells it) and message.
fn merged_errors(shards: &[ShardReport]) -> Vec<ErrorCount> {
    let mut counts: BTreeMap<(&str, ErrorKind, &str), u64> = BTreeMap::new();
    for error in shards.iter().flat_map(|s| &s.report.errors) {
        let count = counts
            .entry((&error.label, error.kind, &error.message))
            .or_default();
        *count = count.saturating_add(error.count);
    }
    let mut rows: Vec<_> = counts
        .into_iter()
        .map(|((label, kind, message), count)| (count, label, kind_name(kind), kind, message))
        .collect();
    rows.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| (a.1, &a.2, a.4).cmp(&(b.1, &b.2, b.4)))
    });
    rows.into_iter()
        .map(|(count, label, _, kind, message)| ErrorCount {
            label: label.to_owned(),
            kind,
            message: message.to_owned(),
            count,
        })
        .collect()
}

/// One window (overall or a label's) of one second being summed.
#[derive(Default)]
struct MergedWindow {
    window: Window,
    histogram: Option<Histogram<u64>>,
    /// A part with samples had no histogram (an older report): no percentiles then.
    incomplete: bool,
}

impl MergedWindow {
    fn add(&mut self, window: &Window, histogram: &str) {
        add_window(&mut self.window, window);
        let decoded = Some(histogram)
            .filter(|h| !h.is_empty())
            .and_then(|h| decode(h).ok());
        match decoded {
            // Both histograms have the same bounds, so adding cannot fail.
            Some(histogram) => {
                let _ = self.histogram.get_or_insert_with(hdr::empty).add(histogram);
            }
            None => self.incomplete |= window.hits > 0,
        }
    }

    /// The summed window with its percentiles at `levels` from the merged histogram, and the
    /// merged histogram encoded.
    fn finish(mut self, levels: &[f64]) -> (Window, String) {
        match self.histogram.filter(|_| !self.incomplete) {
            Some(histogram) => {
                self.window.percentiles = percentile_table(&histogram, levels);
                (self.window, encode(&histogram))
            }
            None => (self.window, String::new()),
        }
    }
}

/// One second being summed: users, the overall window and the windows by label index.
#[derive(Default)]
struct MergedSecond {
    users: u64,
    overall: MergedWindow,
    labels: BTreeMap<usize, MergedWindow>,
}

/// Seconds summed by second and label; their percentiles, overall and per label, come from
/// the merged per-second histograms.
fn merged_timeline(shards: &[ShardReport]) -> Vec<Second> {
    let all_seconds = || shards.iter().flat_map(|s| &s.report.timeline);
    // The levels a shard's seconds carry: the standard ones plus those its criteria watch.
    let levels: Vec<f64> = all_seconds()
        .map(|second| &second.overall.percentiles)
        .find(|table| !table.is_empty())
        .map_or_else(
            || PERCENTILES.to_vec(),
            |table| table.iter().map(|p| p.level).collect(),
        );
    let mut seconds: BTreeMap<u64, MergedSecond> = BTreeMap::new();
    for second in all_seconds() {
        let entry = seconds.entry(second.second).or_default();
        entry.users = entry.users.saturating_add(second.users);
        entry.overall.add(&second.overall, &second.histogram);
        for label in &second.labels {
            entry
                .labels
                .entry(label.label)
                .or_default()
                .add(&label.window, &label.histogram);
        }
    }
    seconds
        .into_iter()
        .map(|(second, merged)| {
            let (overall, histogram) = merged.overall.finish(&levels);
            let labels = merged
                .labels
                .into_iter()
                .map(|(label, window)| {
                    let (window, histogram) = window.finish(&levels);
                    LabelWindow {
                        label,
                        window,
                        histogram,
                    }
                })
                .collect();
            Second {
                second,
                users: merged.users,
                overall,
                histogram,
                labels,
            }
        })
        .collect()
}

/// Adds the counts and sums of `window` into `into`.
fn add_window(into: &mut Window, window: &Window) {
    into.hits = into.hits.saturating_add(window.hits);
    into.failures = into.failures.saturating_add(window.failures);
    into.bytes = into.bytes.saturating_add(window.bytes);
    into.sum_rt += window.sum_rt;
    into.sum_lt += window.sum_lt;
    into.sum_ct += window.sum_ct;
    into.sum_sq_rt += window.sum_sq_rt;
    into.percentiles.clear();
    for (code, count) in &window.codes {
        let total = into.codes.entry(*code).or_default();
        *total = total.saturating_add(*count);
    }
}

/// Evaluates `plan`'s pass/fail criteria on a merged report (`plan` must be the plan the
/// shards ran: same fingerprint), stores the outcomes in it and returns them. Timeframe
/// criteria see the merged timeline second by second, as a single run's monitor does.
pub fn evaluate_criteria(
    merged: &mut Report,
    plan: &crate::Plan,
    config: &Path,
) -> Result<Vec<Outcome>, MergeError> {
    if merged.fingerprint != plan.fingerprint {
        return Err(fail(
            config,
            format!(
                "is not the plan the shards ran (fingerprint {} against {:?}): give the same files and -o overrides",
                plan.fingerprint, merged.fingerprint
            ),
        ));
    }
    let mut monitor = Monitor::new(plan.criteria.clone(), plan.labels.clone());
    for end in 1..=merged.timeline.len() {
        monitor.on_seconds(&merged.timeline[..end]);
    }
    let labels: Vec<Summary> = merged.labels.iter().map(|l| l.summary.clone()).collect();
    let outcomes = monitor.finish(&merged.overall, &labels);
    merged.criteria.clone_from(&outcomes);
    if outcomes.iter().any(|o| o.failed) {
        merged.verdict = Verdict::Failed;
        merged.set_exit_code_of_verdict();
    }
    Ok(outcomes)
}
