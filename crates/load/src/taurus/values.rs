//! Config values with their key paths, and readers for each kind of value that name the
//! key path in their errors.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::ConfigError;
use crate::duration::parse_duration;
use crate::plan::{MAX_CONCURRENCY, MAX_DURATION, MAX_RATE, MIN_RATE};

/// A position in the config, for error messages: `execution.0.hold-for`.
#[derive(Clone)]
pub(super) struct ConfigValue<'a> {
    pub(super) value: &'a Value,
    pub(super) path: String,
}

impl<'a> ConfigValue<'a> {
    /// The elements of a list, each with its own key path (`path.0`, `path.1`, …); `what`
    /// names the elements in the error for a value that is not a list.
    pub(super) fn items(&self, what: &str) -> Result<Vec<ConfigValue<'a>>, ConfigError> {
        let list = self
            .value
            .as_array()
            .ok_or_else(|| self.error(format!("must be a list{what}")))?;
        Ok(list
            .iter()
            .enumerate()
            .map(|(i, value)| ConfigValue {
                value,
                path: format!("{}.{i}", self.path),
            })
            .collect())
    }

    pub(super) fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            message: message.into(),
        }
    }
}

pub(super) fn child<'a>(node: &ConfigValue<'a>, key: &str) -> Option<ConfigValue<'a>> {
    let value = node.value.get(key)?;
    Some(ConfigValue {
        value,
        path: format!("{}.{key}", node.path),
    })
}

pub(super) fn optional<T>(
    node: Option<ConfigValue<'_>>,
    read: fn(&ConfigValue<'_>) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    match node {
        Some(node) if !node.value.is_null() => read(&node).map(Some),
        _ => Ok(None),
    }
}

pub(super) fn duration(node: &ConfigValue<'_>) -> Result<Duration, ConfigError> {
    let text = match node.value {
        Value::String(text) => text.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(node.error("must be a duration such as 2m30s")),
    };
    duration_text(node, &text)
}

/// Reads `text` as a duration of at most [`MAX_DURATION`], errors naming `node`'s key path.
pub(super) fn duration_text(node: &ConfigValue<'_>, text: &str) -> Result<Duration, ConfigError> {
    let parsed = parse_duration(text).map_err(|e| node.error(e.to_string()))?;
    if parsed > MAX_DURATION {
        return Err(node.error(format!(
            "{text:?} is longer than the longest duration accepted, {} days",
            MAX_DURATION.as_secs() / 86_400
        )));
    }
    Ok(parsed)
}

pub(super) fn count(node: &ConfigValue<'_>) -> Result<u64, ConfigError> {
    node.value
        .as_u64()
        .ok_or_else(|| node.error(format!("must be a whole number, got {}", node.value)))
}

/// A request rate per second, from [`MIN_RATE`] to [`MAX_RATE`].
pub(super) fn rate(node: &ConfigValue<'_>) -> Result<f64, ConfigError> {
    match node.value.as_f64() {
        Some(n) if (MIN_RATE..=MAX_RATE).contains(&n) => Ok(n),
        _ => Err(node.error(format!(
            "must be a rate from {MIN_RATE} to {MAX_RATE} requests per second, got {}",
            node.value
        ))),
    }
}

/// A number, or Taurus's `{local: N, cloud: M}` form (the local value is used).
pub(super) fn provisioned_number(node: &ConfigValue<'_>) -> Result<f64, ConfigError> {
    match node.value.get("local") {
        Some(local) => rate(&ConfigValue {
            value: local,
            path: node.path.clone(),
        }),
        None => rate(node),
    }
}

pub(super) fn provisioned_count(node: &ConfigValue<'_>) -> Result<u64, ConfigError> {
    let value = node.value.get("local").unwrap_or(node.value);
    match value.as_u64() {
        Some(n) if (1..=u64::from(MAX_CONCURRENCY)).contains(&n) => Ok(n),
        _ => Err(node.error(format!(
            "must be a whole number from 1 to {MAX_CONCURRENCY} (each user holds a connection), got {value}"
        ))),
    }
}

pub(super) fn boolean(node: &ConfigValue<'_>) -> Result<bool, ConfigError> {
    node.value
        .as_bool()
        .ok_or_else(|| node.error(format!("must be true or false, got {}", node.value)))
}

pub(super) fn path_value(node: &ConfigValue<'_>) -> Result<PathBuf, ConfigError> {
    node.value
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| node.error("must be a file path"))
}

/// Largest `assert-body-limit`: 1 GiB.
const MAX_BODY_LIMIT: u64 = 1 << 30;

/// A size in bytes: a whole number, or a number with `kB`/`MB` (powers of 1024).
pub(super) fn byte_size(node: &ConfigValue<'_>) -> Result<usize, ConfigError> {
    let invalid = || {
        node.error(format!(
            "must be a size from 1 byte to 1024MB, e.g. 65536, 64kB or 10MB; got {}",
            node.value
        ))
    };
    let bytes = match node.value {
        Value::Number(n) => n.as_u64().ok_or_else(invalid)?,
        Value::String(text) => {
            let lower = text.trim().to_ascii_lowercase();
            let (number, scale) = if let Some(n) = lower.strip_suffix("mb") {
                (n, 1 << 20)
            } else if let Some(n) = lower.strip_suffix("kb") {
                (n, 1 << 10)
            } else {
                (lower.strip_suffix('b').unwrap_or(&lower), 1)
            };
            let number: u64 = number.trim().parse().map_err(|_| invalid())?;
            number.checked_mul(scale).ok_or_else(invalid)?
        }
        _ => return Err(invalid()),
    };
    if !(1..=MAX_BODY_LIMIT).contains(&bytes) {
        return Err(invalid());
    }
    usize::try_from(bytes).map_err(|_| invalid())
}
