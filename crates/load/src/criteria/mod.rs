//! Pass/fail criteria in Taurus syntax, parsed from the short or long form. The [`Monitor`]
//! checks them every second (with a timeframe) or once on the final totals (without one).

mod monitor;

use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::Serialize;
use serde_json::Value;

use crate::ConfigError;
use crate::duration::parse_duration;
pub use monitor::{Monitor, Outcome};

/// One criterion.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    /// Where it was written in the config.
    pub path: String,
    /// How it reads: `avg-rt of api>150ms for 10s`.
    pub text: String,
    /// The comparison alone, without message, timeframe or action: `avg-rt of api>150ms`.
    pub condition_text: String,
    /// The user's message, if any.
    pub message: Option<String>,
    /// What is measured.
    pub subject: Measure,
    /// Only this label, or all when `None`.
    pub label: Option<String>,
    /// The comparison.
    pub condition: Condition,
    /// The threshold: seconds for times, a percentage when `percent`, else a count.
    pub threshold: f64,
    /// The threshold ends with `%`.
    pub percent: bool,
    /// How the timeframe is read.
    pub logic: Logic,
    /// Zero: checked once on the totals at the end.
    pub timeframe: Duration,
    /// Stop the test when it triggers.
    pub stop: bool,
    /// A triggered criterion fails the test (exit code 3).
    pub fail: bool,
}

/// What a criterion measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// Average response time.
    AvgRt,
    /// Average latency.
    AvgLt,
    /// Average connect time.
    AvgCt,
    /// Standard deviation of response time.
    StdevRt,
    /// A response-time percentile.
    Percentile(f64),
    /// Samples.
    Hits,
    /// Body bytes.
    Bytes,
    /// Successful samples.
    Succ,
    /// Failed samples.
    Fail,
    /// Samples whose status matches a pattern such as `5??` or `404`.
    Rc(String),
}

/// The comparison of a criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Condition {
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `=` or `==`
    Eq,
}

/// How the timeframe is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Logic {
    /// Every second of the timeframe matches.
    For,
    /// The timeframe's aggregate matches, even before a full timeframe has passed.
    Within,
    /// The aggregate of a full timeframe matches.
    Over,
}

static SHORT_FORM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*([\w?*.\-]+)(?:\s+of\s+(.+?))?\s*([<>=]+)\s*(\S+?)(?:\s+(for|within|over)\s+(\S+))?\s*$")
        .unwrap_or_else(|e| unreachable!("the criterion pattern is valid: {e}"))
});

/// Parses a criterion in short (`avg-rt>150ms for 10s, stop as failed`) or long (mapping) form.
pub fn parse(value: &Value, path: &str) -> Result<Criterion, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_owned(),
        message,
    };
    match value {
        Value::String(text) => parse_short(text, None, path),
        Value::Object(map)
            if map.len() == 1
                && map.values().all(Value::is_string)
                && !map.contains_key("subject") =>
        {
            let (message, text) = map
                .iter()
                .next()
                .map(|(m, t)| (m.clone(), t.as_str().unwrap_or_default().to_owned()))
                .unwrap_or_default();
            parse_short(&text, Some(message), path)
        }
        Value::Object(map) => {
            let text_of = |key: &str| {
                map.get(key)
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            };
            let subject = text_of("subject").ok_or_else(|| invalid("has no subject".into()))?;
            let condition =
                text_of("condition").ok_or_else(|| invalid("has no condition".into()))?;
            let threshold =
                text_of("threshold").ok_or_else(|| invalid("has no threshold".into()))?;
            let mut text = subject.clone();
            if let Some(label) = text_of("label") {
                text.push_str(&format!(" of {label}"));
            }
            text.push_str(&format!("{condition}{threshold}"));
            if let Some(timeframe) = text_of("timeframe") {
                let logic = text_of("logic").unwrap_or_else(|| "for".into());
                text.push_str(&format!(" {logic} {timeframe}"));
            }
            let mut criterion = parse_short(&text, text_of("message"), path)?;
            let flag = |key: &str, default: bool| match map.get(key) {
                None => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(invalid(format!("{key} must be true or false, got {other}"))),
            };
            criterion.stop = flag("stop", true)?;
            criterion.fail = flag("fail", true)?;
            Ok(criterion)
        }
        other => Err(invalid(format!(
            "must be a criterion string or mapping, got {other}"
        ))),
    }
}

fn parse_short(text: &str, message: Option<String>, path: &str) -> Result<Criterion, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: path.to_owned(),
        message,
    };
    let (body, action) = match text.split_once(',') {
        Some((body, action)) => (body, Some(action.trim().to_ascii_lowercase())),
        None => (text, None),
    };
    let (message, body) = match (message, body.split_once(':')) {
        (Some(m), _) => (Some(m), body),
        (None, Some((m, rest))) if !m.contains("://") && !rest.starts_with("//") => {
            (Some(m.trim().to_owned()), rest)
        }
        (None, _) => (None, body),
    };
    let caps = SHORT_FORM.captures(body).ok_or_else(|| {
        invalid(format!("cannot read criterion {text:?}: expected e.g. `avg-rt of api>150ms for 10s, stop as failed`"))
    })?;
    let group = |i: usize| caps.get(i).map(|m| m.as_str());
    let subject_text = group(1).unwrap_or_default().to_ascii_lowercase();
    let subject = measure(&subject_text).ok_or_else(|| {
        invalid(format!("unknown subject {subject_text:?}: use avg-rt, avg-lt, avg-ct, stdev-rt, p90 (any pN), hits, bytes, succ, fail or rc<code>"))
    })?;
    let condition = match group(3).unwrap_or_default() {
        ">" => Condition::Gt,
        "<" => Condition::Lt,
        ">=" => Condition::Ge,
        "<=" => Condition::Le,
        "=" | "==" => Condition::Eq,
        other => {
            return Err(invalid(format!(
                "unknown condition {other:?}: use >, <, >=, <= or ="
            )));
        }
    };
    let threshold_text = group(4).unwrap_or_default();
    let (threshold, percent) = threshold(&subject, threshold_text).map_err(invalid)?;
    let logic = match group(5) {
        Some("within") => Logic::Within,
        Some("over") => Logic::Over,
        _ => Logic::For,
    };
    let timeframe = match group(6) {
        Some(t) => parse_duration(t).map_err(|e| invalid(format!("timeframe: {e}")))?,
        None => Duration::ZERO,
    };
    let (stop, fail) = match action.as_deref() {
        None => (true, true),
        Some(action) => {
            let words: Vec<&str> = action.split_whitespace().collect();
            let stop = match words.first() {
                Some(&"stop") => true,
                Some(&"continue") => false,
                _ => {
                    return Err(invalid(format!(
                        "unknown action {action:?}: use `stop` or `continue`, optionally `as failed` / `as non-failed`"
                    )));
                }
            };
            let fail = match &words[1..] {
                [] | ["as", "failed"] => true,
                ["as", "non-failed"] => false,
                _ => {
                    return Err(invalid(format!(
                        "unknown action {action:?}: use `as failed` or `as non-failed`"
                    )));
                }
            };
            (stop, fail)
        }
    };
    let condition_text = match group(2) {
        Some(label) => format!(
            "{subject_text} of {}{}{threshold_text}",
            label.trim(),
            group(3).unwrap_or_default()
        ),
        None => format!(
            "{subject_text}{}{threshold_text}",
            group(3).unwrap_or_default()
        ),
    };
    Ok(Criterion {
        path: path.to_owned(),
        text: body.trim().to_owned(),
        condition_text,
        message,
        subject,
        label: group(2).map(|l| l.trim().to_owned()),
        condition,
        threshold,
        percent,
        logic,
        timeframe,
        stop,
        fail,
    })
}

fn measure(subject: &str) -> Option<Measure> {
    Some(match subject {
        "avg-rt" => Measure::AvgRt,
        "avg-lt" => Measure::AvgLt,
        "avg-ct" => Measure::AvgCt,
        "stdev-rt" => Measure::StdevRt,
        "hits" => Measure::Hits,
        "bytes" => Measure::Bytes,
        "succ" | "success" => Measure::Succ,
        "fail" | "failures" => Measure::Fail,
        _ => {
            if let Some(level) = subject.strip_prefix('p') {
                let level: f64 = level.parse().ok()?;
                return (0.0..=100.0)
                    .contains(&level)
                    .then_some(Measure::Percentile(level));
            }
            let code = subject.strip_prefix("rc")?;
            let valid = !code.is_empty()
                && code.len() <= 3
                && code
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '?' || c == '*');
            return valid.then(|| Measure::Rc(code.to_owned()));
        }
    })
}

fn threshold(subject: &Measure, text: &str) -> Result<(f64, bool), String> {
    let bad = || format!("invalid threshold {text:?} for this subject");
    if let Some(number) = text.strip_suffix('%') {
        if !matches!(subject, Measure::Succ | Measure::Fail | Measure::Rc(_)) {
            return Err(format!(
                "a percentage threshold ({text}) only applies to succ, fail and rc"
            ));
        }
        return number.parse().map(|n| (n, true)).map_err(|_| bad());
    }
    match subject {
        Measure::AvgRt
        | Measure::AvgLt
        | Measure::AvgCt
        | Measure::StdevRt
        | Measure::Percentile(_) => parse_duration(text)
            .map(|d| (d.as_secs_f64(), false))
            .map_err(|e| e.to_string()),
        Measure::Bytes => {
            let lower = text.to_ascii_lowercase();
            let (number, scale) = if let Some(n) = lower.strip_suffix("mb") {
                (n, 1024.0 * 1024.0)
            } else if let Some(n) = lower.strip_suffix("kb") {
                (n, 1024.0)
            } else {
                (lower.strip_suffix('b').unwrap_or(&lower), 1.0)
            };
            number
                .parse::<f64>()
                .map(|n| (n * scale, false))
                .map_err(|_| bad())
        }
        _ => text.parse().map(|n| (n, false)).map_err(|_| bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(text: &str) -> Criterion {
        parse(&Value::String(text.into()), "reporting.0.criteria.0").unwrap()
    }

    #[test]
    fn short_forms() {
        let c = short("avg-rt of api>150ms for 10s, stop as failed");
        assert_eq!(c.subject, Measure::AvgRt);
        assert_eq!(c.label.as_deref(), Some("api"));
        assert_eq!(c.condition, Condition::Gt);
        assert!((c.threshold - 0.15).abs() < 1e-9);
        assert_eq!(
            (c.logic, c.timeframe, c.stop, c.fail),
            (Logic::For, Duration::from_secs(10), true, true)
        );
        let c = short("fail>5%");
        assert_eq!(
            (c.subject.clone(), c.percent, c.timeframe),
            (Measure::Fail, true, Duration::ZERO)
        );
        let c = short("My msg: p99.9>1s within 30s, continue as non-failed");
        assert_eq!(c.message.as_deref(), Some("My msg"));
        assert_eq!(c.subject, Measure::Percentile(99.9));
        assert_eq!((c.logic, c.stop, c.fail), (Logic::Within, false, false));
        assert_eq!(short("rc5??>=1%").subject, Measure::Rc("5??".into()));
        assert!((short("bytes<2kB").threshold - 2048.0).abs() < 1e-9);
        assert_eq!(short("hits<10 over 5s").logic, Logic::Over);
    }

    #[test]
    fn bad_criteria_name_their_path() {
        for text in [
            "speed>1",
            "avg-rt>fast",
            "p99~1s",
            "avg-rt>1s, explode",
            "avg-rt>10%",
            "avg-rt>1s for soon",
        ] {
            let err = parse(&Value::String(text.into()), "reporting.0.criteria.3")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.starts_with("reporting.0.criteria.3: "), "{text}: {err}");
        }
    }

    #[test]
    fn long_form_and_codes() {
        let value = serde_json::json!({"subject": "avg-rt", "label": "api", "condition": ">", "threshold": "150ms", "timeframe": "10s", "logic": "within", "stop": false, "fail": true, "message": "too slow"});
        let c = parse(&value, "p").unwrap();
        assert_eq!(
            (c.logic, c.stop, c.message.as_deref()),
            (Logic::Within, false, Some("too slow"))
        );
    }
}
