//! Service-level objectives for the capacity search: `p99<100ms`, `avg-rt<=50ms`,
//! `errors<1%`, each a subject with an upper bound. A rate holds when every term holds.

use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::duration::parse_duration;

/// What one SLO term bounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Subject {
    /// A response-time percentile (corrected for coordinated omission), e.g. 99.
    Percentile(f64),
    /// The average response time.
    AvgRt,
    /// Failed requests as a percentage of all.
    Errors,
}

/// One term: the subject stays under (or at most at) a bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Term {
    /// As the user wrote it, normalised: `p99<100ms`.
    pub text: String,
    /// What is bounded.
    pub subject: Subject,
    /// The bound: seconds for times, a percentage for errors.
    pub bound: f64,
    /// `<=` (the bound itself holds) rather than `<`.
    pub inclusive: bool,
}

impl Term {
    /// Whether `value` (in the bound's unit) holds this term.
    pub fn holds(&self, value: f64) -> bool {
        if self.inclusive {
            value <= self.bound
        } else {
            value < self.bound
        }
    }

    /// The bound in seconds, for a time term.
    pub fn time_bound(&self) -> Option<f64> {
        (self.subject != Subject::Errors).then_some(self.bound)
    }

    /// The bound as text: `100 ms`, `1 %`.
    pub fn bound_text(&self) -> String {
        match self.subject {
            Subject::Errors => format!("{}%", self.bound),
            _ => milliseconds(self.bound),
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Seconds as `100ms` or `1.5ms`.
fn milliseconds(seconds: f64) -> String {
    let ms = seconds * 1000.0;
    if (ms - ms.round()).abs() < 1e-9 {
        format!("{ms:.0}ms")
    } else {
        format!("{ms}ms")
    }
}

/// Reads one `--slo` term: `p99<100ms`, `p95<=250ms`, `avg-rt<50ms`, `errors<1%`.
pub fn parse(text: &str) -> Result<Term, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let (subject_text, inclusive, bound_text) = if let Some((s, b)) = compact.split_once("<=") {
        (s, true, b)
    } else if let Some((s, b)) = compact.split_once('<') {
        (s, false, b)
    } else {
        return Err(format!(
            "cannot read SLO {text:?}: expected a subject under a bound, e.g. p99<100ms, avg-rt<50ms or errors<1%"
        ));
    };
    let subject = subject_of(&subject_text.to_ascii_lowercase()).ok_or_else(|| {
        format!("unknown SLO subject {subject_text:?} in {text:?}: use pN (e.g. p99, p99.9), avg-rt or errors")
    })?;
    let bound = match subject {
        Subject::Errors => bound_text
            .strip_suffix('%')
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|n| n.is_finite() && (0.0..=100.0).contains(n))
            .ok_or_else(|| {
                format!("{text:?}: an errors bound is a percentage from 0% to 100%, e.g. errors<1%")
            })?,
        _ => parse_duration(bound_text)
            .map_err(|e| format!("{text:?}: {e}"))?
            .as_secs_f64(),
    };
    if bound <= 0.0 && !inclusive {
        return Err(format!("{text:?}: nothing is under a bound of zero"));
    }
    let term = Term {
        text: String::new(),
        subject,
        bound,
        inclusive,
    };
    let operator = if inclusive { "<=" } else { "<" };
    Ok(Term {
        text: format!(
            "{}{operator}{}",
            subject_text.to_ascii_lowercase(),
            term.bound_text()
        ),
        ..term
    })
}

fn subject_of(text: &str) -> Option<Subject> {
    match text {
        "avg-rt" => Some(Subject::AvgRt),
        "errors" | "error" | "fail" | "failures" => Some(Subject::Errors),
        _ => text
            .strip_prefix('p')
            .and_then(|level| level.parse::<f64>().ok())
            .filter(|level| level.is_finite() && *level > 0.0 && *level < 100.0)
            .map(Subject::Percentile),
    }
}

/// The whole SLO: every term must hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slo {
    /// The terms, as given.
    pub terms: Vec<Term>,
}

impl Slo {
    /// The SLO used when none is given and the config has no criteria: `p99<100ms`,
    /// `errors<1%`.
    pub fn default_terms() -> Self {
        Self {
            terms: ["p99<100ms", "errors<1%"]
                .iter()
                .filter_map(|t| parse(t).ok())
                .collect(),
        }
    }

    /// The largest time bound, seconds: how long a request may take and still hold.
    pub fn longest_time_bound(&self) -> Option<f64> {
        self.terms
            .iter()
            .filter_map(Term::time_bound)
            .reduce(f64::max)
    }

    /// `p99<100ms, errors<1%`.
    pub fn text(&self) -> String {
        self.terms
            .iter()
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The first term `figures` break, with the figure that broke it.
    pub fn broken_by(&self, figures: &Figures<'_>) -> Option<(Term, f64)> {
        self.terms.iter().find_map(|term| {
            let value = figures.value(term.subject)?;
            (!term.holds(value)).then(|| (term.clone(), value))
        })
    }
}

/// What a step measured, as an SLO reads it.
pub struct Figures<'a> {
    /// Response times (µs).
    pub times: &'a Histogram<u64>,
    /// Failed requests, percent.
    pub error_percent: f64,
}

impl Figures<'_> {
    /// The figure for `subject`: seconds for times, percent for errors; `None` without samples.
    pub fn value(&self, subject: Subject) -> Option<f64> {
        if self.times.is_empty() {
            return None;
        }
        Some(match subject {
            Subject::Percentile(level) => self.times.value_at_quantile(level / 100.0) as f64 / 1e6,
            Subject::AvgRt => self.times.mean() / 1e6,
            Subject::Errors => self.error_percent,
        })
    }
}

/// A figure as the console prints it: `12.3 ms` or `0.50 %`.
pub fn figure_text(subject: Subject, value: f64) -> String {
    match subject {
        Subject::Errors => format!("{value:.2}%"),
        _ => format!("{:.1} ms", value * 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_read_percentiles_averages_and_errors() {
        let p99 = parse("p99<100ms").unwrap();
        assert_eq!(
            (p99.subject, p99.bound, p99.inclusive),
            (Subject::Percentile(99.0), 0.1, false)
        );
        assert_eq!(p99.text, "p99<100ms");
        assert!(p99.holds(0.099) && !p99.holds(0.1));
        let avg = parse(" avg-rt <= 0.5s").unwrap();
        assert_eq!(
            (avg.subject, avg.bound, avg.inclusive),
            (Subject::AvgRt, 0.5, true)
        );
        assert_eq!(avg.text, "avg-rt<=500ms");
        assert!(avg.holds(0.5));
        let errors = parse("errors<1%").unwrap();
        assert_eq!((errors.subject, errors.bound), (Subject::Errors, 1.0));
        assert_eq!(
            parse("p99.9<1s").unwrap().subject,
            Subject::Percentile(99.9)
        );
    }

    #[test]
    fn malformed_terms_say_what_is_expected() {
        for (text, expected) in [
            ("p99>100ms", "expected a subject under a bound"),
            ("p100<1s", "unknown SLO subject"),
            ("rps<5", "unknown SLO subject"),
            ("p99<fast", "invalid duration"),
            ("errors<1", "percentage"),
            ("errors<101%", "percentage"),
            ("p99<0ms", "zero"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn the_first_broken_term_is_named_with_its_figure() {
        let slo = Slo::default_terms();
        let mut times = crate::stats::hdr::empty();
        for ms in 1..=100u64 {
            times.saturating_record(ms * 1000);
        }
        let figures = Figures {
            times: &times,
            error_percent: 0.0,
        };
        assert!(slo.broken_by(&figures).is_none(), "p99 is 99 ms");
        times.saturating_record_n(500_000, 5);
        let figures = Figures {
            times: &times,
            error_percent: 2.0,
        };
        let (term, value) = slo.broken_by(&figures).unwrap();
        assert_eq!(term.text, "p99<100ms");
        assert!(value >= 0.5, "{value}");
        assert_eq!(slo.longest_time_bound(), Some(0.1));
    }
}
