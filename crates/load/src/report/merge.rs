//! `peregrine report merge`: the reports of the N shards of one plan as one report.
//!
//! Counts, bytes, status codes and errors are summed; response-time and service-time
//! percentiles, mean and standard deviation come from the merged HDR histograms (never
//! averaged); latency and connect averages are weighted by samples. The per-second timeline
//! sums counts, bytes, sums of times and codes per second, and its percentiles, overall and
//! per label, come from the merged per-second histograms. Given the plan,
//! [`evaluate_criteria`] evaluates its pass/fail criteria on the merged figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use super::SCHEMA;
use super::describe::histogram_bins;
use crate::criteria::{Monitor, Outcome};
use crate::stats::LatencyHistogram;
use crate::stats::hdr::{self, decode, encode};
use crate::stats::{PERCENTILES, Second, Summary};

/// One shard's report as read.
struct ShardReport {
    file: PathBuf,
    index: u64,
    count: u64,
    fingerprint: String,
    json: Value,
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
/// of one plan, and merges them into one report.json document.
pub fn merge_dirs(dirs: &[PathBuf]) -> Result<Value, MergeError> {
    let mut budget = MAX_MERGE_INPUT_BYTES;
    let shards = dirs
        .iter()
        .map(|dir| read_shard(&dir.join("report.json"), &mut budget))
        .collect::<Result<Vec<_>, _>>()?;
    check_complete(&shards)?;
    merge(&shards)
}

/// Most bytes of report.json all shards together may hold: merging keeps every shard's
/// document in memory, at about 20 times its size.
pub const MAX_MERGE_INPUT_BYTES: u64 = 64 * 1024 * 1024;

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
    let json: Value =
        serde_json::from_slice(&bytes).map_err(|err| fail(file, format!("not JSON: {err}")))?;
    drop(bytes);
    if json["schema"] != SCHEMA {
        return Err(fail(
            file,
            format!("a {} report, not a {SCHEMA} one", json["schema"]),
        ));
    }
    check_counts(&json).map_err(|message| fail(file, message))?;
    let field = |name: &str| {
        json["shard"][name]
            .as_u64()
            .ok_or_else(|| fail(file, format!("has no shard.{name}")))
    };
    let (index, count) = (field("index")?, field("count")?);
    let fingerprint = json["fingerprint"]
        .as_str()
        .filter(|f| !f.is_empty())
        .ok_or_else(|| fail(file, "has no plan fingerprint"))?
        .to_owned();
    Ok(ShardReport {
        file: file.to_path_buf(),
        index,
        count,
        fingerprint,
        json,
    })
}

/// Whether a shard's counts can be what a run recorded: whole numbers, failures within
/// samples, the labels adding up to the whole and the whole agreeing with its recorded
/// distribution. A hand-edited or corrupt report is refused, not merged into nonsense.
fn check_counts(json: &Value) -> Result<(), String> {
    let counts = |part: &Value, path: &str| -> Result<(u64, u64), String> {
        let count = |key: &str| {
            part[key]
                .as_u64()
                .ok_or_else(|| format!("{path}.{key} is {}, not a whole number", part[key]))
        };
        let (samples, failures) = (count("samples")?, count("failures")?);
        if failures > samples {
            return Err(format!(
                "{path}.failures ({failures}) is more than its samples ({samples})"
            ));
        }
        Ok((samples, failures))
    };
    let (samples, _) = counts(&json["overall"], "overall")?;
    let recorded = json["distributions"]["overall"]
        .as_str()
        .map(|text| decode(text).map(|h| h.len()))
        .transpose()?;
    if let Some(recorded) = recorded
        && recorded != samples
    {
        return Err(format!(
            "overall.samples ({samples}) disagrees with its response-time distribution ({recorded} samples)"
        ));
    }
    let mut total = 0u64;
    let labels = json["labels"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, label) in labels.iter().enumerate() {
        let (label_samples, _) = counts(label, &format!("labels.{i}"))?;
        total = total.saturating_add(label_samples);
    }
    if !labels.is_empty() && total != samples {
        return Err(format!(
            "the labels' samples add up to {total}, not overall.samples ({samples})"
        ));
    }
    Ok(())
}

/// Same plan, same N, distinct indexes covering 0..N.
fn check_complete(shards: &[ShardReport]) -> Result<(), MergeError> {
    let Some(first) = shards.first() else {
        return Err(fail(Path::new("."), "no shard directories given"));
    };
    let mut seen: BTreeMap<u64, &Path> = BTreeMap::new();
    for shard in shards {
        if shard.fingerprint != first.fingerprint {
            return Err(fail(
                &shard.file,
                format!(
                    "is a different plan (fingerprint {}) from {} ({})",
                    shard.fingerprint,
                    first.file.display(),
                    first.fingerprint
                ),
            ));
        }
        if shard.count != first.count {
            return Err(fail(
                &shard.file,
                format!(
                    "is shard {}/{} but {} is of {} shards",
                    shard.index,
                    shard.count,
                    first.file.display(),
                    first.count
                ),
            ));
        }
        if let Some(other) = seen.insert(shard.index, &shard.file) {
            return Err(fail(
                &shard.file,
                format!(
                    "is shard {}/{} again (also {})",
                    shard.index,
                    shard.count,
                    other.display()
                ),
            ));
        }
    }
    if let Some(missing) = (0..first.count).find(|i| !seen.contains_key(i)) {
        return Err(fail(
            &first.file,
            format!(
                "shard {missing}/{} is missing: give all {} shard directories",
                first.count, first.count
            ),
        ));
    }
    Ok(())
}

fn merge(shards: &[ShardReport]) -> Result<Value, MergeError> {
    let first = &shards[0];
    let duration = shards
        .iter()
        .filter_map(|s| s.json["duration_seconds"].as_f64())
        .fold(0.0, f64::max);
    let overall = Times::merged(shards, |json| &json["distributions"], "overall")?;
    let mut report = first.json.clone();
    report["duration_seconds"] = json!(duration);
    report["overall"] = merged_summary(
        shards.iter().map(|s| &s.json["overall"]),
        &overall,
        duration,
    );
    let labels = first.json["labels"].as_array().cloned().unwrap_or_default();
    let mut merged_labels = Vec::new();
    let mut distributions = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let times = Times::merged(
            shards,
            |json| &json["distributions"]["labels"][i],
            "response",
        )?;
        let mut summary = merged_summary(
            shards.iter().map(|s| &s.json["labels"][i]),
            &times,
            duration,
        );
        summary["label"] = label["label"].clone();
        merged_labels.push(summary);
        let mut distribution = times.encoded("response");
        distribution["label"] = label["label"].clone();
        distributions.push(distribution);
    }
    report["labels"] = Value::Array(merged_labels);
    let mut encoded = overall.encoded("overall");
    encoded["unit"] = json!("us");
    encoded["labels"] = Value::Array(distributions);
    report["distributions"] = encoded;
    report["errors"] = merged_errors(shards);
    report["timeline"] = merged_timeline(shards);
    report["shard"] = json!({"index": 0, "count": 1});
    report["merged_shards"] = json!(first.count);
    report["criteria"] = json!([]);
    let cancelled: u64 = shards
        .iter()
        .filter_map(|s| s.json["cancelled_in_flight"].as_u64())
        .sum();
    report["cancelled_in_flight"] = json!(cancelled);
    let late = shards
        .iter()
        .filter_map(|s| s.json["late_start_seconds"].as_f64())
        .reduce(f64::max);
    report["late_start_seconds"] = json!(late);
    let (verdict, ending) = merged_verdict(shards);
    report["verdict"] = json!(verdict);
    report["ending"] = json!(ending);
    report["rate"] = merged_rate(shards);
    // The earliest start (RFC 3339 UTC texts of one format sort as times).
    if let Some(started) = shards
        .iter()
        .filter_map(|s| s.json["run"]["started_at"].as_str())
        .min()
    {
        report["run"]["started_at"] = json!(started);
    }
    report["latency_histogram"] =
        serde_json::to_value(histogram_bins(&to_compact(&overall.response))).unwrap_or_default();
    Ok(report)
}

/// The merged run's verdict and ending before criteria: aborted or interrupted when any
/// shard was, else passed and completed (the shards' own criteria judged slices only).
fn merged_verdict(shards: &[ShardReport]) -> (&'static str, &'static str) {
    let any = |verdict: &str| shards.iter().any(|s| s.json["verdict"] == verdict);
    if any("aborted") {
        ("aborted", "aborted")
    } else if any("interrupted") {
        ("interrupted", "interrupted")
    } else {
        ("passed", "completed")
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
fn merged_rate(shards: &[ShardReport]) -> Value {
    let rates: Option<Vec<(f64, f64)>> = shards
        .iter()
        .map(|s| {
            let rate = &s.json["rate"];
            Some((rate["requested"].as_f64()?, rate["achieved"].as_f64()?))
        })
        .collect();
    let Some(rates) = rates else {
        return Value::Null;
    };
    let requested: f64 = rates.iter().map(|r| r.0).sum();
    let achieved: f64 = rates.iter().map(|r| r.1).sum();
    json!({
        "requested": requested,
        "achieved": achieved,
        "below_target": achieved < super::BELOW_TARGET * requested,
    })
}

/// The merged response-time and service-time histograms of the whole run or of a label.
struct Times {
    response: Histogram<u64>,
    /// None when a shard has none (a report of an older version).
    service: Option<Histogram<u64>>,
}

impl Times {
    /// The sums of the shards' `RESPONSE_KEY` and `service` histograms in the object `pick`
    /// finds.
    fn merged(
        shards: &[ShardReport],
        pick: impl Fn(&Value) -> &Value,
        response_key: &str,
    ) -> Result<Self, MergeError> {
        let has = |key: &str| shards.iter().all(|s| pick(&s.json)[key].is_string());
        let response = merged_histogram(shards, |json| pick(json)[response_key].as_str())?;
        let service = if has("service") {
            Some(merged_histogram(shards, |json| {
                pick(json)["service"].as_str()
            })?)
        } else {
            None
        };
        Ok(Self { response, service })
    }

    /// `{RESPONSE_KEY: …, "service": …}` encoded.
    fn encoded(&self, response_key: &str) -> Value {
        let mut value = json!({ response_key: encode(&self.response) });
        if let Some(service) = &self.service {
            value["service"] = json!(encode(service));
        }
        value
    }
}

/// The sum of the shards' histograms picked by `pick`.
fn merged_histogram<'a>(
    shards: &'a [ShardReport],
    pick: impl Fn(&'a Value) -> Option<&'a str>,
) -> Result<Histogram<u64>, MergeError> {
    let mut merged = hdr::empty();
    for shard in shards {
        let text = pick(&shard.json)
            .ok_or_else(|| fail(&shard.file, "has no response-time distribution"))?;
        let histogram = decode(text).map_err(|err| fail(&shard.file, err))?;
        merged
            .add(histogram)
            .map_err(|err| fail(&shard.file, format!("cannot add its histogram: {err:?}")))?;
    }
    Ok(merged)
}

fn number(value: &Value, key: &str) -> f64 {
    value[key].as_f64().unwrap_or(0.0)
}

/// A summary from the shards' summaries and the merged histograms.
fn merged_summary<'a>(
    parts: impl Iterator<Item = &'a Value> + Clone,
    times: &Times,
    duration: f64,
) -> Value {
    let histogram = &times.response;
    let sum = |key: &str| {
        parts
            .clone()
            .map(|p| p[key].as_u64().unwrap_or(0))
            .fold(0u64, u64::saturating_add)
    };
    let (samples, failures) = (sum("samples"), sum("failures"));
    let weighted = |key: &str| {
        let total: f64 = parts
            .clone()
            .map(|p| number(p, key) * number(p, "samples"))
            .sum();
        if samples == 0 {
            0.0
        } else {
            total / samples as f64
        }
    };
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    for part in parts.clone() {
        for (code, count) in part["codes"].as_object().into_iter().flatten() {
            *codes.entry(code.clone()).or_default() += count.as_u64().unwrap_or(0);
        }
    }
    json!({
        "samples": samples,
        "failures": failures,
        "failure_percent": if samples == 0 { 0.0 } else { failures as f64 * 100.0 / samples as f64 },
        "bytes": sum("bytes"),
        "throughput": if duration > 0.0 { samples as f64 / duration } else { 0.0 },
        "avg_rt": if histogram.is_empty() { 0.0 } else { histogram.mean() / 1e6 },
        "avg_lt": weighted("avg_lt"),
        "avg_ct": weighted("avg_ct"),
        "avg_tls": weighted("avg_tls"),
        "avg_check": weighted("avg_check"),
        "stdev_rt": if histogram.is_empty() { 0.0 } else { histogram.stdev() / 1e6 },
        "percentiles": percentile_table(histogram, &PERCENTILES),
        "service_percentiles": times
            .service
            .as_ref()
            .map_or_else(|| json!([]), |service| percentile_table(service, &PERCENTILES)),
        "codes": codes,
    })
}

/// The percentiles of `histogram` at `levels`, as a report holds them (seconds).
fn percentile_table(histogram: &Histogram<u64>, levels: &[f64]) -> Value {
    levels
        .iter()
        .map(|&level| json!({"level": level, "seconds": value_at(histogram, level) / 1e6}))
        .collect()
}

/// The value at percentile `level` (0 = minimum, 100 = maximum), µs.
pub fn value_at(histogram: &Histogram<u64>, level: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    match level {
        l if l <= 0.0 => histogram.min() as f64,
        l if l >= 100.0 => histogram.max() as f64,
        l => histogram.value_at_quantile(l / 100.0) as f64,
    }
}

/// Errors summed by label, kind and message.
fn merged_errors(shards: &[ShardReport]) -> Value {
    let mut counts: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for error in shards
        .iter()
        .flat_map(|s| s.json["errors"].as_array().into_iter().flatten())
    {
        let text = |key: &str| error[key].as_str().unwrap_or_default().to_owned();
        *counts
            .entry((text("label"), text("kind"), text("message")))
            .or_default() += error["count"].as_u64().unwrap_or(0);
    }
    let mut rows: Vec<_> = counts.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows.into_iter()
        .map(|((label, kind, message), count)| {
            json!({"label": label, "kind": kind, "message": message, "count": count})
        })
        .collect()
}

/// One window (overall or a label's) of one second being summed.
#[derive(Default)]
struct MergedWindow {
    window: Map<String, Value>,
    histogram: Option<Histogram<u64>>,
    /// A part with samples had no histogram (an older report): no percentiles then.
    incomplete: bool,
}

impl MergedWindow {
    fn add(&mut self, window: &Value, histogram: &Value) {
        add_window(&mut self.window, window);
        let decoded = histogram
            .as_str()
            .filter(|h| !h.is_empty())
            .and_then(|h| decode(h).ok());
        match decoded {
            // Both histograms have the same bounds, so adding cannot fail.
            Some(histogram) => {
                let _ = self.histogram.get_or_insert_with(hdr::empty).add(histogram);
            }
            None => self.incomplete |= window["hits"].as_u64().unwrap_or(0) > 0,
        }
    }

    /// The summed window with its percentiles at `levels` from the merged histogram, and the
    /// merged histogram encoded.
    fn finish(mut self, levels: &[f64]) -> (Map<String, Value>, String) {
        match self.histogram.filter(|_| !self.incomplete) {
            Some(histogram) => {
                let table = percentile_table(&histogram, levels);
                self.window.insert("percentiles".to_owned(), table);
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
    labels: BTreeMap<u64, MergedWindow>,
}

/// Seconds summed by second and label; their percentiles, overall and per label, come from
/// the merged per-second histograms.
fn merged_timeline(shards: &[ShardReport]) -> Value {
    let mut seconds: BTreeMap<u64, MergedSecond> = BTreeMap::new();
    // The levels a shard's seconds carry: the standard ones plus those its criteria watch.
    let levels: Vec<f64> = shards
        .iter()
        .flat_map(|s| s.json["timeline"].as_array().into_iter().flatten())
        .find_map(|second| {
            let table = second["overall"]["percentiles"].as_array()?;
            (!table.is_empty()).then(|| table.iter().filter_map(|p| p["level"].as_f64()).collect())
        })
        .unwrap_or_else(|| PERCENTILES.to_vec());
    for second in shards
        .iter()
        .flat_map(|s| s.json["timeline"].as_array().into_iter().flatten())
    {
        let at = second["second"].as_u64().unwrap_or(0);
        let entry = seconds.entry(at).or_default();
        entry.users += second["users"].as_u64().unwrap_or(0);
        entry.overall.add(&second["overall"], &second["histogram"]);
        for label in second["labels"].as_array().into_iter().flatten() {
            let index = label["label"].as_u64().unwrap_or(0);
            entry
                .labels
                .entry(index)
                .or_default()
                .add(label, &label["histogram"]);
        }
    }
    seconds
        .into_iter()
        .map(|(second, merged)| {
            let (overall, histogram) = merged.overall.finish(&levels);
            let labels: Vec<Value> = merged
                .labels
                .into_iter()
                .map(|(index, window)| {
                    let (mut window, histogram) = window.finish(&levels);
                    window.insert("label".to_owned(), json!(index));
                    if !histogram.is_empty() {
                        window.insert("histogram".to_owned(), json!(histogram));
                    }
                    Value::Object(window)
                })
                .collect();
            json!({"second": second, "users": merged.users, "overall": overall, "labels": labels, "histogram": histogram})
        })
        .collect()
}

/// Adds the counts and sums of `window` into `into`.
fn add_window(into: &mut Map<String, Value>, window: &Value) {
    for key in ["hits", "failures", "bytes"] {
        let total =
            into.get(key).and_then(Value::as_u64).unwrap_or(0) + window[key].as_u64().unwrap_or(0);
        into.insert(key.to_owned(), json!(total));
    }
    for key in ["sum_rt", "sum_lt", "sum_ct", "sum_sq_rt"] {
        let total = into.get(key).and_then(Value::as_f64).unwrap_or(0.0) + number(window, key);
        into.insert(key.to_owned(), json!(total));
    }
    into.insert("percentiles".to_owned(), json!([]));
    let codes = into
        .entry("codes")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(codes) = codes {
        for (code, count) in window["codes"].as_object().into_iter().flatten() {
            let total =
                codes.get(code).and_then(Value::as_u64).unwrap_or(0) + count.as_u64().unwrap_or(0);
            codes.insert(code.clone(), json!(total));
        }
    }
}

/// Evaluates `plan`'s pass/fail criteria on a merged report (`plan` must be the plan the
/// shards ran: same fingerprint), stores the outcomes in it and returns them. Timeframe
/// criteria see the merged timeline second by second, as a single run's monitor does.
pub fn evaluate_criteria(
    merged: &mut Value,
    plan: &crate::Plan,
    config: &Path,
) -> Result<Vec<Outcome>, MergeError> {
    if merged["fingerprint"] != plan.fingerprint.as_str() {
        return Err(fail(
            config,
            format!(
                "is not the plan the shards ran (fingerprint {} against {}): give the same files and -o overrides",
                plan.fingerprint, merged["fingerprint"]
            ),
        ));
    }
    let read = |value: &Value, what: &str| {
        serde_json::from_value::<Summary>(value.clone())
            .map_err(|err| fail(config, format!("cannot read the merged {what}: {err}")))
    };
    let overall = read(&merged["overall"], "overall figures")?;
    let labels = merged["labels"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|label| read(label, "label figures"))
        .collect::<Result<Vec<_>, _>>()?;
    // From text: status codes are map keys, which only the text reader turns into numbers.
    let timeline: Vec<Second> = serde_json::from_str(&merged["timeline"].to_string())
        .map_err(|err| fail(config, format!("cannot read the merged timeline: {err}")))?;
    let mut monitor = Monitor::new(plan.criteria.clone(), plan.labels.clone());
    for end in 1..=timeline.len() {
        monitor.on_seconds(&timeline[..end]);
    }
    let outcomes = monitor.finish(&overall, &labels);
    merged["criteria"] = serde_json::to_value(&outcomes).unwrap_or_default();
    if outcomes.iter().any(|o| o.failed) {
        merged["verdict"] = json!("failed");
    }
    Ok(outcomes)
}
