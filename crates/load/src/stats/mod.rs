//! Statistics: every sample goes into latency histograms (1 µs to 1 h, 0.1 % precision) per
//! label and overall, so memory stays flat however long the run, plus a per-second timeline.
//! A label costs memory only for what it saw: histograms follow the latencies recorded, and
//! a second keeps windows only for the labels that had samples in it.

pub mod hdr;
mod histogram;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use histogram::LatencyHistogram;

/// Percentile levels reported, as Taurus's final-stats reports them.
pub const PERCENTILES: [f64; 7] = [0.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0];

/// Largest latency recorded, in µs (1 hour); longer ones are clamped to it.
const MAX_MICROS: u64 = 3_600_000_000;

/// What went wrong with a request.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// No connection could be made.
    Connect,
    /// No complete response within the timeout.
    Timeout,
    /// A response with status 400 or above.
    Http,
    /// A response that failed an assertion.
    Assertion,
    /// The connection broke while sending or receiving.
    Io,
    /// The request could not be made from its template (an invalid header value, a URL
    /// too long or malformed): it was never sent.
    Render,
    /// The machine ran out of a resource (open files, ports): not the target's fault.
    Resources,
}

/// One finished request, as the engine reports it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Index of the request's label.
    pub label: usize,
    /// When the request was due, from the start of the test.
    pub due: Duration,
    /// From due time to the end of the response: what a user waited (corrected latency).
    pub response_time: Duration,
    /// From the actual send to the end of the response (uncorrected service time).
    pub service_time: Duration,
    /// From the send to the response headers.
    pub latency: Duration,
    /// Time spent connecting (zero on a reused connection).
    pub connect_time: Duration,
    /// Of which the TLS handshake (zero over plain HTTP or a reused connection).
    pub tls_time: Duration,
    /// The HTTP status, or 0 when there was no response.
    pub status: u16,
    /// Response body bytes.
    pub bytes: u64,
    /// The error, if the sample failed.
    pub error: Option<(ErrorKind, Arc<str>)>,
    /// Time spent after the response checking its assertions and running its extractors:
    /// the load generator's own work, never part of the response time.
    pub check_time: Duration,
}

/// Cumulative statistics of one label (or of all).
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub(crate) response: LatencyHistogram,
    pub(crate) service: LatencyHistogram,
    pub(crate) samples: u64,
    pub(crate) failures: u64,
    pub(crate) bytes: u64,
    pub(crate) sum_latency: f64,
    pub(crate) sum_connect: f64,
    pub(crate) sum_tls: f64,
    pub(crate) sum_check: f64,
    pub(crate) codes: BTreeMap<u16, u64>,
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(MAX_MICROS)
        .clamp(1, MAX_MICROS)
}

impl Tally {
    /// A tally whose histograms are arrays from the start: for the whole run's.
    fn dense() -> Self {
        Self {
            response: LatencyHistogram::dense(),
            service: LatencyHistogram::dense(),
            ..Self::default()
        }
    }

    fn record(&mut self, sample: &Sample) {
        self.response.record(micros(sample.response_time));
        self.service.record(micros(sample.service_time));
        self.samples += 1;
        self.failures += u64::from(sample.error.is_some());
        self.bytes += sample.bytes;
        self.sum_latency += sample.latency.as_secs_f64();
        self.sum_connect += sample.connect_time.as_secs_f64();
        self.sum_tls += sample.tls_time.as_secs_f64();
        self.sum_check += sample.check_time.as_secs_f64();
        *self.codes.entry(sample.status).or_default() += 1;
    }

    /// A finished summary of this tally over `duration`.
    pub fn summary(&self, duration: Duration, levels: &[f64]) -> Summary {
        let n = self.samples.max(1) as f64;
        let table = |h: &LatencyHistogram| percentile_table(h, levels);
        Summary {
            samples: self.samples,
            failures: self.failures,
            failure_percent: if self.samples == 0 {
                0.0
            } else {
                self.failures as f64 * 100.0 / n
            },
            bytes: self.bytes,
            throughput: rate(self.samples, duration),
            avg_rt: self.response.mean() / 1e6,
            avg_lt: self.sum_latency / n,
            avg_ct: self.sum_connect / n,
            avg_tls: self.sum_tls / n,
            avg_check: self.sum_check / n,
            stdev_rt: self.response.stdev() / 1e6,
            percentiles: table(&self.response),
            service_percentiles: table(&self.service),
            codes: self
                .codes
                .iter()
                .map(|(code, count)| (code_key(*code), *count))
                .collect(),
        }
    }
}

/// The percentiles of `histogram` at `levels`, in seconds.
fn percentile_table(histogram: &LatencyHistogram, levels: &[f64]) -> Vec<Percentile> {
    levels
        .iter()
        .map(|&level| Percentile {
            level,
            seconds: histogram.percentile(level) as f64 / 1e6,
        })
        .collect()
}

/// The entry for `level` in a percentile table (levels are compared with a tolerance, as
/// `99.9` may have been computed rather than written).
fn lookup(percentiles: &[Percentile], level: f64) -> Option<f64> {
    percentiles
        .iter()
        .find(|p| (p.level - level).abs() < 1e-9)
        .map(|p| p.seconds)
}

fn code_key(code: u16) -> String {
    if code == 0 {
        "none".to_owned()
    } else {
        code.to_string()
    }
}

fn rate(count: u64, duration: Duration) -> f64 {
    let seconds = duration.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// A percentile of response times.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Percentile {
    /// The level, 0 (minimum) to 100 (maximum).
    pub level: f64,
    /// The time at that level, in seconds.
    pub seconds: f64,
}

/// Final statistics of one label or of the whole test.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Summary {
    /// Requests completed (with or without error).
    pub samples: u64,
    /// Requests that failed.
    pub failures: u64,
    /// Failures as a percentage of samples.
    pub failure_percent: f64,
    /// Response body bytes received.
    pub bytes: u64,
    /// Samples per second of test duration.
    pub throughput: f64,
    /// Average response time, seconds (from the due time: corrected in the open model).
    pub avg_rt: f64,
    /// Average latency (time to response headers), seconds.
    pub avg_lt: f64,
    /// Average connect time, seconds (TCP connect plus TLS handshake, as Taurus counts it).
    pub avg_ct: f64,
    /// Average TLS handshake time, seconds (a part of `avg_ct`; not a Taurus figure).
    pub avg_tls: f64,
    /// Average time the load generator spent checking assertions and running extractors
    /// after each response, seconds: measured apart, never inside a response time.
    #[serde(default)]
    pub avg_check: f64,
    /// Standard deviation of response time, seconds.
    pub stdev_rt: f64,
    /// Response-time percentiles (corrected for coordinated omission in the open model).
    pub percentiles: Vec<Percentile>,
    /// Service-time percentiles: from the actual send, not corrected.
    pub service_percentiles: Vec<Percentile>,
    /// Samples per status code (`none` for no response).
    pub codes: BTreeMap<String, u64>,
}

impl Summary {
    /// The response time at percentile `level`, in seconds, if it was computed.
    pub fn percentile(&self, level: f64) -> Option<f64> {
        lookup(&self.percentiles, level)
    }

    /// The service time at percentile `level`, in seconds, if it was computed.
    pub fn service_percentile(&self, level: f64) -> Option<f64> {
        lookup(&self.service_percentiles, level)
    }
}

/// One second of the test.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Second {
    /// Seconds since the start; this row covers `[second, second + 1)`.
    pub second: u64,
    /// Virtual users (connections) active at the end of the second.
    pub users: u64,
    /// The whole test's figures for this second.
    pub overall: Window,
    /// The whole test's response times of this second (µs) as an HDR histogram in the
    /// standard compressed encoding (see [`hdr`]), so merged shards keep exact per-second
    /// percentiles; empty in a second without samples.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub histogram: String,
    /// The labels that had samples in this second, in label order (with more than
    /// [`MAX_TIMELINE_LABELS`] labels, only those a criterion names).
    pub labels: Vec<LabelWindow>,
}

impl Second {
    /// The window of label `label` (empty when it had no samples in this second).
    pub fn label(&self, label: usize) -> Window {
        self.labels
            .binary_search_by_key(&label, |w| w.label)
            .map(|i| self.labels[i].window.clone())
            .unwrap_or_default()
    }
}

/// One label's figures for one second.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct LabelWindow {
    /// Index of the label in the plan's labels (and the report's `labels`).
    pub label: usize,
    /// Its figures.
    #[serde(flatten)]
    pub window: Window,
    /// Its response times of this second (µs), encoded as [`Second::histogram`], so merged
    /// shards keep exact per-second percentiles per label too.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub histogram: String,
}

/// Figures for one second of one label (or of all).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Window {
    /// Samples that ended in this second.
    pub hits: u64,
    /// Of which failed.
    pub failures: u64,
    /// Body bytes.
    pub bytes: u64,
    /// Sum of response times, seconds.
    pub sum_rt: f64,
    /// Sum of latencies, seconds.
    pub sum_lt: f64,
    /// Sum of connect times, seconds.
    pub sum_ct: f64,
    /// Sum of squared response times, seconds².
    pub sum_sq_rt: f64,
    /// Response-time percentiles of this second (levels of [`PERCENTILES`] plus any criteria use).
    pub percentiles: Vec<Percentile>,
    /// Samples per status code.
    #[serde(deserialize_with = "codes_from_text")]
    pub codes: BTreeMap<u16, u64>,
}

/// Reads status codes that are JSON object keys (text) back as numbers; a flattened window
/// (a label's) reaches here as text keys that serde would not convert itself.
fn codes_from_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<u16, u64>, D::Error> {
    use serde::Deserialize as _;
    BTreeMap::<String, u64>::deserialize(deserializer)?
        .into_iter()
        .map(|(code, count)| {
            code.parse()
                .map(|code| (code, count))
                .map_err(|_| serde::de::Error::custom(format!("status code {code:?}")))
        })
        .collect()
}

impl Window {
    /// Average response time, seconds, or `None` without samples.
    pub fn avg_rt(&self) -> Option<f64> {
        (self.hits > 0).then(|| self.sum_rt / self.hits as f64)
    }

    /// The percentile at `level`, if this window has it.
    pub fn percentile(&self, level: f64) -> Option<f64> {
        lookup(&self.percentiles, level)
    }
}

/// A second being filled.
#[derive(Default)]
struct OpenWindow {
    window: Window,
    histogram: LatencyHistogram,
}

impl OpenWindow {
    /// A window whose histogram is an array from the start: for the whole run's seconds.
    fn dense() -> Self {
        Self {
            window: Window::default(),
            histogram: LatencyHistogram::dense(),
        }
    }

    fn record(&mut self, sample: &Sample) {
        let w = &mut self.window;
        let rt = sample.response_time.as_secs_f64();
        w.hits += 1;
        w.failures += u64::from(sample.error.is_some());
        w.bytes += sample.bytes;
        w.sum_rt += rt;
        w.sum_lt += sample.latency.as_secs_f64();
        w.sum_ct += sample.connect_time.as_secs_f64();
        w.sum_sq_rt += rt * rt;
        *w.codes.entry(sample.status).or_default() += 1;
        self.histogram.record(micros(sample.response_time));
    }

    /// The finished window and its histogram, encoded (empty without samples).
    fn close(mut self, levels: &[f64]) -> (Window, String) {
        if self.window.hits == 0 {
            return (self.window, String::new());
        }
        self.window.percentiles = percentile_table(&self.histogram, levels);
        (self.window, hdr::encode(&hdr::to_hdr(&self.histogram)))
    }
}

/// An error message and how often it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ErrorCount {
    /// The label it happened on.
    pub label: String,
    /// What kind of error.
    pub kind: ErrorKind,
    /// The message.
    pub message: String,
    /// How many samples had it.
    pub count: u64,
}

/// Collects samples as they come; closes seconds into the timeline.
pub struct Collector {
    levels: Vec<f64>,
    overall: Tally,
    per_label: Vec<Tally>,
    /// Seconds not yet closed: the whole test's window and those of the labels seen in it.
    open: BTreeMap<u64, (OpenWindow, BTreeMap<usize, OpenWindow>)>,
    timeline: Vec<Second>,
    errors: BTreeMap<(usize, ErrorKind, Arc<str>), u64>,
    /// Distinct messages kept per label and kind.
    error_variety: HashMap<(usize, ErrorKind), usize>,
    /// Labels that get a window in each second of the timeline.
    in_timeline: Vec<bool>,
}

/// Labels a config may have and still get per-second windows for each: with more, only the
/// labels a criterion names get them, so the timeline's memory does not grow with
/// labels × seconds.
pub const MAX_TIMELINE_LABELS: usize = 100;

/// Distinct error messages kept per label and kind, so a flood of unique messages can't grow memory.
const MAX_ERROR_VARIETY: usize = 100;

impl Collector {
    /// A collector for `labels` labels whose per-second windows keep `extra_levels` too;
    /// `watched` are the labels that need per-second windows even among many.
    pub fn new(labels: usize, extra_levels: &[f64], watched: &[usize]) -> Self {
        let mut in_timeline = vec![labels <= MAX_TIMELINE_LABELS; labels];
        for &label in watched {
            if let Some(slot) = in_timeline.get_mut(label) {
                *slot = true;
            }
        }
        let mut levels = PERCENTILES.to_vec();
        for &level in extra_levels {
            if !levels.iter().any(|l| (l - level).abs() < 1e-9) {
                levels.push(level);
            }
        }
        Self {
            levels,
            overall: Tally::dense(),
            per_label: vec![Tally::default(); labels],
            open: BTreeMap::new(),
            timeline: Vec::new(),
            errors: BTreeMap::new(),
            error_variety: HashMap::new(),
            in_timeline,
        }
    }

    /// Records a sample that ended `ended` after the start of the test.
    pub fn record(&mut self, sample: &Sample, ended: Duration) {
        self.overall.record(sample);
        if let Some(tally) = self.per_label.get_mut(sample.label) {
            tally.record(sample);
        }
        // A sample that arrives after its second was closed counts in the next open one.
        let first_open = self.timeline.last().map_or(0, |s| s.second + 1);
        let second = ended.as_secs().max(first_open);
        let (overall, per_label) = self
            .open
            .entry(second)
            .or_insert_with(|| (OpenWindow::dense(), BTreeMap::new()));
        overall.record(sample);
        if self.in_timeline.get(sample.label).copied().unwrap_or(false) {
            per_label.entry(sample.label).or_default().record(sample);
        }
        if let Some((kind, message)) = &sample.error {
            let key = (sample.label, *kind, Arc::clone(message));
            let variety = self.error_variety.entry((sample.label, *kind)).or_default();
            if let Some(count) = self.errors.get_mut(&key) {
                *count += 1;
            } else if *variety < MAX_ERROR_VARIETY {
                *variety += 1;
                self.errors.insert(key, 1);
            } else {
                *self
                    .errors
                    .entry((sample.label, *kind, Arc::from("(other messages)")))
                    .or_default() += 1;
            }
        }
    }

    /// Closes every second before `second` (empty ones too) into the timeline and returns
    /// them; `users_at[s]` is the active users sampled in second `s` (the last sample after).
    pub fn close_until(&mut self, second: u64, users_at: &[u64]) -> &[Second] {
        let first_new = self.timeline.len();
        let mut next = self.timeline.last().map_or(0, |s| s.second + 1);
        while next < second {
            let (overall, per_label) = self.open.remove(&next).unwrap_or_default();
            let users = usize::try_from(next)
                .ok()
                .and_then(|i| users_at.get(i))
                .or(users_at.last());
            let (overall, histogram) = overall.close(&self.levels);
            self.timeline.push(Second {
                second: next,
                users: users.copied().unwrap_or(0),
                histogram,
                overall,
                labels: per_label
                    .into_iter()
                    .map(|(label, w)| {
                        let (window, histogram) = w.close(&self.levels);
                        LabelWindow {
                            label,
                            window,
                            histogram,
                        }
                    })
                    .collect(),
            });
            next += 1;
        }
        &self.timeline[first_new..]
    }

    /// The timeline so far.
    pub fn timeline(&self) -> &[Second] {
        &self.timeline
    }

    /// Cumulative tally of everything.
    pub fn overall(&self) -> &Tally {
        &self.overall
    }

    /// Cumulative tally per label.
    pub fn per_label(&self) -> &[Tally] {
        &self.per_label
    }

    /// Errors counted per label and kind, in that order: for live views, without copying
    /// the messages.
    pub fn errors_by_kind(&self) -> BTreeMap<(usize, ErrorKind), u64> {
        let mut totals = BTreeMap::new();
        for ((label, kind, _), count) in &self.errors {
            *totals.entry((*label, *kind)).or_default() += count;
        }
        totals
    }

    /// Errors by label, kind and message, most frequent first.
    pub fn errors(&self, labels: &[String]) -> Vec<ErrorCount> {
        let mut errors: Vec<ErrorCount> = self
            .errors
            .iter()
            .map(|((label, kind, message), count)| ErrorCount {
                label: labels.get(*label).cloned().unwrap_or_default(),
                kind: *kind,
                message: message.to_string(),
                count: *count,
            })
            .collect();
        errors.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.message.cmp(&b.message))
        });
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, error: bool) -> Sample {
        Sample {
            label: 0,
            due: Duration::ZERO,
            response_time: Duration::from_millis(ms),
            service_time: Duration::from_millis(ms),
            latency: Duration::from_millis(ms / 2),
            connect_time: Duration::ZERO,
            tls_time: Duration::ZERO,
            status: if error { 500 } else { 200 },
            bytes: 10,
            error: error.then(|| (ErrorKind::Http, Arc::from("HTTP 500"))),
            check_time: Duration::ZERO,
        }
    }

    #[test]
    fn percentiles_failures_and_timeline() {
        let mut collector = Collector::new(1, &[], &[]);
        for ms in 1..=100 {
            collector.record(&sample(ms, ms % 10 == 0), Duration::from_millis(ms * 15));
        }
        let summary = collector
            .overall()
            .summary(Duration::from_secs(2), &PERCENTILES);
        assert_eq!(summary.samples, 100);
        assert_eq!(summary.failures, 10);
        assert!((summary.failure_percent - 10.0).abs() < 1e-9);
        assert!((summary.throughput - 50.0).abs() < 1e-9);
        let p50 = summary.percentiles[1].seconds;
        assert!((0.0499..=0.0501).contains(&p50), "{p50}");
        assert!((summary.percentiles[6].seconds - 0.1).abs() < 0.0001);
        let closed = collector.close_until(2, &[1]).to_vec();
        assert_eq!(closed.len(), 2);
        assert_eq!(closed[0].overall.hits + closed[1].overall.hits, 100);
        assert_eq!(collector.errors(&["api".into()])[0].count, 10);
    }

    #[test]
    fn many_labels_keep_per_second_windows_only_for_watched_ones() {
        let labels = MAX_TIMELINE_LABELS + 1;
        let mut collector = Collector::new(labels, &[], &[7]);
        for label in 0..labels {
            collector.record(
                &Sample {
                    label,
                    ..sample(5, false)
                },
                Duration::from_millis(10),
            );
        }
        let second = &collector.close_until(1, &[1])[0];
        assert_eq!(second.overall.hits, labels as u64);
        assert_eq!(second.labels.len(), 1);
        assert_eq!((second.labels[0].label, second.label(7).hits), (7, 1));
        assert_eq!(
            collector
                .per_label()
                .iter()
                .filter(|t| t.samples == 1)
                .count(),
            labels
        );
        let mut few = Collector::new(3, &[], &[]);
        few.record(
            &Sample {
                label: 2,
                ..sample(5, false)
            },
            Duration::ZERO,
        );
        assert_eq!(few.close_until(1, &[1])[0].labels.len(), 1);
    }
}
