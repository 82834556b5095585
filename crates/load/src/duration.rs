//! Durations as Taurus writes them: `2m30s`, `1h`, `500ms`, `1.5s`, `1d 2h`, bare seconds.
//!
//! Hand-written: humantime (a dependency already, for dates) reads neither fractions (`1.5s`)
//! nor bare numbers of seconds, both of which Taurus configs use; the grammar is a dozen
//! lines.

use std::time::Duration;

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: use e.g. 2m30s, 1h, 500ms or a number of seconds")]
pub struct InvalidDuration(pub String);

/// Parses a Taurus duration: `<number><unit>` tokens summed, units d, h, m, s, ms
/// (case-insensitive), no unit = seconds, spaces ignored.
pub fn parse_duration(text: &str) -> Result<Duration, InvalidDuration> {
    let invalid = || InvalidDuration(text.to_owned());
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err(invalid());
    }
    let mut seconds = 0.0_f64;
    let mut rest = compact.as_str();
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let unit_end = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let scale = match unit.to_ascii_lowercase().as_str() {
            "" | "s" => 1.0,
            "ms" => 0.001,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(invalid()),
        };
        seconds += value * scale;
        rest = after;
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| invalid())
}

/// `duration` as Taurus text in its largest whole unit (`400d`, `90m`, `1500ms`), so that
/// messages quoting it read as the user typed it, not as `34560000000ms`.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if millis > 0 && millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

/// `0:02:30` — how Taurus prints a test duration.
pub fn format_clock(duration: Duration) -> String {
    let total = duration.as_secs();
    format!("{}:{:02}:{:02}", total / 3600, total / 60 % 60, total % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taurus_examples() {
        let secs = |t: &str| parse_duration(t).map(|d| d.as_secs_f64()).ok();
        assert_eq!(secs("2m30s"), Some(150.0));
        assert_eq!(secs("1h"), Some(3600.0));
        assert_eq!(secs("1d 2h 3m 4s"), Some(93_784.0));
        assert_eq!(secs("1s200ms"), Some(1.2));
        assert_eq!(secs("3"), Some(3.0));
        assert_eq!(secs("500ms"), Some(0.5));
        let shown = |text: &str| {
            parse_duration(text)
                .map(format_duration)
                .unwrap_or_default()
        };
        assert_eq!(shown("400d"), "400d");
        assert_eq!(shown("90m"), "90m");
        assert_eq!(shown("1.5s"), "1500ms");
        assert_eq!(shown("0s"), "0ms");
        assert_eq!(secs("1h30m"), Some(5400.0));
        assert_eq!(secs("1.5S"), Some(1.5));
        for bad in ["", "abc", "5x", "1..2s", "-1s", "m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn clock_format() {
        assert_eq!(format_clock(Duration::from_secs(210)), "0:03:30");
        assert_eq!(format_clock(Duration::from_secs(3_725)), "1:02:05");
    }
}
