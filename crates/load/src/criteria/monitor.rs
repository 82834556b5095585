//! The criteria at work: the value each measures in a second, a timeframe or the totals,
//! and the [`Monitor`] that watches them through the run and gives each its [`Outcome`].

use serde::Serialize;

use super::{Condition, Criterion, Logic, Measure};
use crate::stats::{Second, Summary, Window};

impl Criterion {
    /// Percentile levels this criterion needs in per-second windows.
    pub fn level(&self) -> Option<f64> {
        match self.subject {
            Measure::Percentile(level) => Some(level),
            _ => None,
        }
    }

    fn holds(&self, value: f64) -> bool {
        match self.condition {
            Condition::Gt => value > self.threshold,
            Condition::Lt => value < self.threshold,
            Condition::Ge => value >= self.threshold,
            Condition::Le => value <= self.threshold,
            Condition::Eq => (value - self.threshold).abs() < 1e-9,
        }
    }

    pub(crate) fn label_index(&self, labels: &[String]) -> Option<usize> {
        self.label
            .as_ref()
            .and_then(|l| labels.iter().position(|x| x == l))
    }

    /// The measured value of one window (a second, or an aggregate of seconds).
    fn window_value(&self, window: &Window) -> Option<f64> {
        let hits = window.hits as f64;
        let per_hit = |sum: f64| (hits > 0.0).then(|| sum / hits);
        self.value(Figures {
            hits: window.hits,
            failures: window.failures,
            bytes: window.bytes,
            avg_rt: window.avg_rt(),
            avg_lt: per_hit(window.sum_lt),
            avg_ct: per_hit(window.sum_ct),
            stdev_rt: per_hit(window.sum_sq_rt)
                .zip(window.avg_rt())
                .map(|(mean_sq, mean)| (mean_sq - mean * mean).max(0.0).sqrt()),
            percentile: &|level| window.percentile(level),
            codes: &mut window.codes.iter().map(|(code, n)| (*code, *n)),
        })
    }

    /// The measured value of the final totals.
    fn summary_value(&self, summary: &Summary) -> Option<f64> {
        self.value(Figures {
            hits: summary.samples,
            failures: summary.failures,
            bytes: summary.bytes,
            avg_rt: Some(summary.avg_rt),
            avg_lt: Some(summary.avg_lt),
            avg_ct: Some(summary.avg_ct),
            stdev_rt: Some(summary.stdev_rt),
            percentile: &|level| Some(summary.percentile(level).unwrap_or(0.0)),
            codes: &mut summary
                .codes
                .iter()
                .filter_map(|(code, n)| Some((code.parse().ok()?, *n))),
        })
    }

    fn value(&self, figures: Figures<'_>) -> Option<f64> {
        let hits = figures.hits as f64;
        let share = |count: u64| {
            if self.percent {
                (hits > 0.0).then(|| count as f64 * 100.0 / hits)
            } else {
                Some(count as f64)
            }
        };
        match &self.subject {
            Measure::AvgRt => figures.avg_rt,
            Measure::AvgLt => figures.avg_lt,
            Measure::AvgCt => figures.avg_ct,
            Measure::StdevRt => figures.stdev_rt,
            Measure::Percentile(level) => (figures.percentile)(*level),
            Measure::Hits => Some(hits),
            Measure::Bytes => Some(figures.bytes as f64),
            Measure::Succ => share(figures.hits - figures.failures),
            Measure::Fail => share(figures.failures),
            Measure::Rc(pattern) => share(
                figures
                    .codes
                    .filter(|(code, _)| code_matches(pattern, *code))
                    .map(|(_, n)| n)
                    .sum(),
            ),
        }
    }
}

/// What a criterion can measure, from a second's window or from the final totals.
struct Figures<'a> {
    hits: u64,
    failures: u64,
    bytes: u64,
    avg_rt: Option<f64>,
    avg_lt: Option<f64>,
    avg_ct: Option<f64>,
    stdev_rt: Option<f64>,
    percentile: &'a dyn Fn(f64) -> Option<f64>,
    codes: &'a mut dyn Iterator<Item = (u16, u64)>,
}

/// `5??` matches 500..=599; `*` matches any rest.
fn code_matches(pattern: &str, code: u16) -> bool {
    let code = code.to_string();
    let mut chars = code.chars();
    for p in pattern.chars() {
        match p {
            '*' => return true,
            '?' => {
                if chars.next().is_none() {
                    return false;
                }
            }
            digit => {
                if chars.next() != Some(digit) {
                    return false;
                }
            }
        }
    }
    chars.next().is_none()
}

/// How a criterion ended.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Outcome {
    /// The criterion as written.
    pub criterion: String,
    /// The user's message.
    pub message: Option<String>,
    /// It triggered.
    pub triggered: bool,
    /// It triggered and counts as a failure.
    pub failed: bool,
    /// Second of the test when it triggered.
    pub at_second: Option<u64>,
    /// The value that triggered it (or the final value).
    pub value: Option<f64>,
    /// Taurus's line: `Failed: p99>1ms for 1 sec`.
    pub verdict: String,
}

/// Watches the criteria second by second and on the totals.
pub struct Monitor {
    criteria: Vec<Criterion>,
    labels: Vec<String>,
    streaks: Vec<u64>,
    outcomes: Vec<Option<Outcome>>,
}

impl Monitor {
    /// A monitor for `criteria` over `labels`.
    pub fn new(criteria: Vec<Criterion>, labels: Vec<String>) -> Self {
        let n = criteria.len();
        Self {
            criteria,
            labels,
            streaks: vec![0; n],
            outcomes: vec![None; n],
        }
    }

    /// Checks the criteria with a timeframe after `timeline` gained seconds; returns true
    /// when a triggered criterion asks to stop the test.
    pub fn on_seconds(&mut self, timeline: &[Second]) -> bool {
        let Some(last) = timeline.last() else {
            return false;
        };
        let mut stop = false;
        for (i, criterion) in self.criteria.iter().enumerate() {
            if criterion.timeframe.is_zero() || self.outcomes[i].is_some() {
                continue;
            }
            let label = criterion.label_index(&self.labels);
            let window_of = |second: &Second| match label {
                Some(l) => second.label(l),
                None => second.overall.clone(),
            };
            let frame = criterion.timeframe.as_secs().max(1);
            let value = match criterion.logic {
                Logic::For => {
                    let holds = criterion
                        .window_value(&window_of(last))
                        .is_some_and(|v| criterion.holds(v));
                    self.streaks[i] = if holds { self.streaks[i] + 1 } else { 0 };
                    (self.streaks[i] >= frame)
                        .then(|| criterion.window_value(&window_of(last)))
                        .flatten()
                }
                Logic::Within | Logic::Over => {
                    let start = timeline.len().saturating_sub(frame as usize);
                    let seconds = &timeline[start..];
                    if criterion.logic == Logic::Over && (seconds.len() as u64) < frame {
                        None
                    } else {
                        let merged = merge_windows(seconds.iter().map(window_of));
                        criterion
                            .window_value(&merged)
                            .filter(|v| criterion.holds(*v))
                    }
                }
            };
            if let Some(value) = value {
                stop |= criterion.stop;
                self.outcomes[i] = Some(outcome(criterion, Some(last.second), Some(value), true));
            }
        }
        stop
    }

    /// Each criterion with its outcome if it has triggered already: for live views.
    pub fn states(&self) -> impl Iterator<Item = (&Criterion, Option<&Outcome>)> {
        self.criteria
            .iter()
            .zip(self.outcomes.iter().map(Option::as_ref))
    }

    /// Checks the criteria without a timeframe on the final totals; returns every outcome.
    pub fn finish(mut self, overall: &Summary, per_label: &[Summary]) -> Vec<Outcome> {
        for (i, criterion) in self.criteria.iter().enumerate() {
            if self.outcomes[i].is_some() {
                continue;
            }
            let summary = match criterion.label_index(&self.labels) {
                Some(l) => per_label.get(l).unwrap_or(overall),
                None => overall,
            };
            let value = criterion.summary_value(summary);
            let triggered =
                criterion.timeframe.is_zero() && value.is_some_and(|v| criterion.holds(v));
            self.outcomes[i] = Some(outcome(criterion, None, value, triggered));
        }
        self.outcomes.into_iter().flatten().collect()
    }
}

fn outcome(
    criterion: &Criterion,
    at_second: Option<u64>,
    value: Option<f64>,
    triggered: bool,
) -> Outcome {
    let kind = match (triggered, criterion.fail) {
        (false, _) => "Passed",
        (true, true) => "Failed",
        (true, false) => "Notice",
    };
    let timeframe = if criterion.timeframe.is_zero() {
        String::new()
    } else {
        format!(
            " {} {} sec",
            serde_json::to_value(criterion.logic)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            criterion.timeframe.as_secs()
        )
    };
    Outcome {
        criterion: criterion.text.clone(),
        message: criterion.message.clone(),
        triggered,
        failed: triggered && criterion.fail,
        at_second,
        value,
        verdict: format!("{kind}: {}{timeframe}", criterion.condition_text),
    }
}

/// Sums counts of several seconds; percentiles become hit-weighted averages (an approximation).
fn merge_windows(windows: impl Iterator<Item = Window>) -> Window {
    let mut merged = Window::default();
    let mut weighted: Vec<(f64, f64)> = Vec::new();
    for w in windows {
        merged.hits += w.hits;
        merged.failures += w.failures;
        merged.bytes += w.bytes;
        merged.sum_rt += w.sum_rt;
        merged.sum_lt += w.sum_lt;
        merged.sum_ct += w.sum_ct;
        merged.sum_sq_rt += w.sum_sq_rt;
        for (code, n) in &w.codes {
            *merged.codes.entry(*code).or_default() += n;
        }
        for (i, p) in w.percentiles.iter().enumerate() {
            if weighted.len() <= i {
                weighted.push((p.level, 0.0));
            }
            weighted[i].1 += p.seconds * w.hits as f64;
        }
    }
    merged.percentiles = weighted
        .into_iter()
        .map(|(level, sum)| crate::stats::Percentile {
            level,
            seconds: if merged.hits > 0 {
                sum / merged.hits as f64
            } else {
                0.0
            },
        })
        .collect();
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_code_patterns() {
        assert!(
            code_matches("5??", 503)
                && !code_matches("5??", 404)
                && code_matches("4*", 404)
                && code_matches("200", 200)
        );
    }
}
