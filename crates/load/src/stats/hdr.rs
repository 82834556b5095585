//! The raw latency distributions a report carries, as HDR histograms in the standard
//! compressed encoding (V2, DEFLATE, base64: what `HdrHistogram.decodeFromCompressedByteBuffer`
//! and the other HdrHistogram implementations read), so that the reports of the shards of one
//! plan can be merged exactly.
//!
//! The engine keeps its own compact log-linear histogram; each of its buckets is written as
//! its middle value into an HDR histogram of 3 significant digits. Both histograms resolve a
//! value to within 0.1 %, so the conversion may move a value by up to that precision, never
//! more; counts are exact.

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use super::histogram::LatencyHistogram;
use super::{Collector, MAX_MICROS};

/// Significant digits of the HDR histograms written.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// Response-time and service-time distributions (µs) of a run, overall and per label.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Distributions {
    /// Unit of the recorded values.
    pub unit: String,
    /// All samples' response times, encoded.
    pub overall: String,
    /// All samples' service times (from the actual send, uncorrected), encoded.
    #[serde(default)]
    pub service: String,
    /// Per label, in the plan's order.
    pub labels: Vec<LabelDistribution>,
}

/// One label's encoded response-time distribution.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LabelDistribution {
    /// The label.
    pub label: String,
    /// Its response times, encoded.
    pub response: String,
    /// Its service times, encoded.
    #[serde(default)]
    pub service: String,
}

impl Distributions {
    /// The response-time distributions of what `collector` recorded.
    pub fn of(labels: &[String], collector: &Collector) -> Self {
        Self {
            unit: "us".to_owned(),
            overall: encode(&to_hdr(&collector.overall().response)),
            service: encode(&to_hdr(&collector.overall().service)),
            labels: labels
                .iter()
                .zip(collector.per_label())
                .map(|(label, tally)| LabelDistribution {
                    label: label.clone(),
                    response: encode_samples(tally, &tally.response),
                    service: encode_samples(tally, &tally.service),
                })
                .collect(),
        }
    }
}

/// `histogram` of `tally` encoded; empty text for a label without samples, which a config
/// of many labels has many of (an HDR histogram is costly to build even empty).
fn encode_samples(tally: &super::Tally, histogram: &LatencyHistogram) -> String {
    if tally.samples == 0 {
        String::new()
    } else {
        encode(&to_hdr(histogram))
    }
}

/// An empty HDR histogram over 1 µs to an hour at [`SIGNIFICANT_DIGITS`].
pub fn empty() -> Histogram<u64> {
    // Constant bounds the crate accepts (low ≥ 1, high ≥ 2·low, digits ≤ 5): no input
    // reaches this.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, MAX_MICROS, SIGNIFICANT_DIGITS)
        .expect("constant HDR histogram bounds are valid")
}

/// The compact histogram as an HDR histogram (each bucket at its middle value).
pub fn to_hdr(histogram: &LatencyHistogram) -> Histogram<u64> {
    let mut hdr = empty();
    for (value, count) in histogram.counts() {
        hdr.saturating_record_n(value.clamp(1, MAX_MICROS), count);
    }
    hdr
}

/// The standard compressed base64 encoding of `histogram`.
pub fn encode(histogram: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Serializing into memory fails only on a histogram the format cannot hold, which
    // ours (bounded values, u64 counts) never is; an empty string then reads as an error.
    if V2DeflateSerializer::new()
        .serialize(histogram, &mut bytes)
        .is_err()
    {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads a histogram in the standard compressed base64 encoding; empty text is an empty
/// histogram.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    if text.trim().is_empty() {
        return Ok(empty());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|err| format!("not base64: {err}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|err| format!("not an HDR histogram: {err:?}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(values: &[u64]) -> LatencyHistogram {
        let mut histogram = LatencyHistogram::default();
        for &value in values {
            histogram.record(value);
        }
        histogram
    }

    #[test]
    fn the_encoding_round_trips_and_keeps_counts_and_precision() {
        let values: Vec<u64> = (1..5000).map(|i| i * 37 % 100_000 + 1).collect();
        let hdr = to_hdr(&compact(&values));
        let back = decode(&encode(&hdr)).unwrap();
        assert_eq!(back, hdr);
        assert_eq!(back.len(), values.len() as u64);
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let exact_p99 = sorted[(sorted.len() * 99).div_ceil(100) - 1] as f64;
        let p99 = back.value_at_quantile(0.99) as f64;
        assert!(
            (p99 - exact_p99).abs() <= exact_p99 * 0.002,
            "{p99} vs {exact_p99}"
        );
    }

    #[test]
    fn merging_two_histograms_equals_the_histogram_of_both_value_sets() {
        let a: Vec<u64> = (1..3000).map(|i| i * 13 % 40_000 + 1).collect();
        let b: Vec<u64> = (1..2000).map(|i| i * 7 % 900_000 + 5).collect();
        let mut merged = decode(&encode(&to_hdr(&compact(&a)))).unwrap();
        merged
            .add(decode(&encode(&to_hdr(&compact(&b)))).unwrap())
            .unwrap();
        let both: Vec<u64> = a.iter().chain(&b).copied().collect();
        assert_eq!(merged, to_hdr(&compact(&both)));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(decode("not base64!").unwrap_err().contains("base64"));
        assert!(decode("aGVsbG8=").unwrap_err().contains("HDR"));
        // A label without samples is written as empty text.
        assert!(decode("").unwrap().is_empty());
    }
}
