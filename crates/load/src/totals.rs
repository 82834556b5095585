//! Counts since the start of a run, taken from the collector and the criteria monitor once a
//! second (never per request): what `/metrics` exposes as counters and histograms, and the
//! criteria's state the live views show.

use serde::Serialize;

use crate::criteria::{Monitor, Outcome};
use crate::stats::{Collector, ErrorKind};

/// Upper bounds of the latency histogram buckets, in µs (Prometheus `le`, without `+Inf`):
/// from 100 µs for services on the same host to 10 s.
pub const BUCKETS_MICROS: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Everything counted so far.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Per label, in the plan's order.
    pub labels: Vec<LabelTotals>,
    /// Errors per label and kind (only the pairs that happened).
    pub errors: Vec<KindCount>,
    /// Each pass/fail criterion's state.
    pub criteria: Vec<CriterionState>,
}

/// One label's counts since the start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelTotals {
    /// Requests finished (with or without error).
    pub samples: u64,
    /// Of which failed.
    pub failures: u64,
    /// Sum of response times, seconds.
    pub sum_seconds: f64,
    /// Samples at or under each bound of [`BUCKETS_MICROS`] (cumulative, as Prometheus's).
    pub buckets: Vec<u64>,
}

/// Errors of one kind on one label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindCount {
    /// The label's index.
    pub label: usize,
    /// The kind of error.
    pub kind: ErrorKind,
    /// How many.
    pub count: u64,
}

/// Where a pass/fail criterion stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CriterionStatus {
    /// Watched each second; has not triggered.
    Watching,
    /// Checked once on the totals when the run ends.
    AtEnd,
    /// Triggered, without failing the test (`continue as non-failed`).
    Triggered,
    /// Triggered and fails the test.
    Failed,
    /// The run ended and it did not trigger.
    Passed,
}

/// One criterion and its state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CriterionState {
    /// The criterion as written.
    pub criterion: String,
    /// Where it stands.
    pub status: CriterionStatus,
    /// The second it triggered at.
    pub at_second: Option<u64>,
    /// The value that triggered it.
    pub value: Option<f64>,
}

impl Totals {
    /// The totals of what `collector` recorded and the state of `monitor`'s criteria.
    pub fn of(collector: &Collector, monitor: &Monitor) -> Self {
        let labels = collector
            .per_label()
            .iter()
            .map(|tally| LabelTotals {
                samples: tally.samples,
                failures: tally.failures,
                sum_seconds: tally.response.mean() * tally.response.len() as f64 / 1e6,
                buckets: cumulative_buckets(tally.response.counts()),
            })
            .collect();
        let errors = collector
            .errors_by_kind()
            .into_iter()
            .map(|((label, kind), count)| KindCount { label, kind, count })
            .collect();
        let criteria = monitor
            .states()
            .map(|(criterion, outcome)| match outcome {
                Some(outcome) => state_of(outcome),
                None => CriterionState {
                    criterion: criterion.text.clone(),
                    status: if criterion.timeframe.is_zero() {
                        CriterionStatus::AtEnd
                    } else {
                        CriterionStatus::Watching
                    },
                    at_second: None,
                    value: None,
                },
            })
            .collect();
        Self {
            labels,
            errors,
            criteria,
        }
    }

    /// The criteria as the finished report judged them.
    pub fn judged(&mut self, outcomes: &[Outcome]) {
        self.criteria = outcomes.iter().map(state_of).collect();
    }

    /// All labels' samples and failures together.
    pub fn overall(&self) -> (u64, u64) {
        self.labels
            .iter()
            .fold((0, 0), |(s, f), l| (s + l.samples, f + l.failures))
    }

    /// Errors per kind over all labels, in kind order.
    pub fn errors_by_kind(&self) -> Vec<(ErrorKind, u64)> {
        let mut by_kind: std::collections::BTreeMap<ErrorKind, u64> = Default::default();
        for error in &self.errors {
            *by_kind.entry(error.kind).or_default() += error.count;
        }
        by_kind.into_iter().collect()
    }
}

/// A criterion's state from its outcome.
fn state_of(outcome: &Outcome) -> CriterionState {
    CriterionState {
        criterion: outcome.criterion.clone(),
        status: match (outcome.triggered, outcome.failed) {
            (true, true) => CriterionStatus::Failed,
            (true, false) => CriterionStatus::Triggered,
            _ => CriterionStatus::Passed,
        },
        at_second: outcome.at_second,
        value: outcome.value,
    }
}

/// Counts at or under each bound, from `(value µs, count)` pairs in increasing order.
fn cumulative_buckets(counts: impl Iterator<Item = (u64, u64)>) -> Vec<u64> {
    let mut buckets = vec![0; BUCKETS_MICROS.len()];
    let mut first_bound = 0;
    for (value, count) in counts {
        while first_bound < BUCKETS_MICROS.len() && BUCKETS_MICROS[first_bound] < value {
            first_bound += 1;
        }
        for bucket in &mut buckets[first_bound..] {
            *bucket += count;
        }
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_every_value_at_or_under_their_bound() {
        let buckets =
            cumulative_buckets([(50, 2), (100, 1), (101, 4), (20_000_000, 1)].into_iter());
        assert_eq!(&buckets[..3], &[3, 7, 7]);
        assert_eq!(
            buckets[BUCKETS_MICROS.len() - 1],
            7,
            "the 20 s one is only in +Inf"
        );
    }
}
