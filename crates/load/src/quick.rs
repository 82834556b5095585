//! The quick form: one URL and a few flags, built into a plan through the Taurus reader.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::ConfigError;
use crate::duration::format_duration;
use crate::plan::Plan;
use crate::taurus::from_taurus;

/// The quick form: one URL, no file.
#[derive(Debug, Clone)]
pub struct QuickTest {
    /// The target URL.
    pub url: String,
    /// Virtual users (or connections with a rate).
    pub concurrency: Option<u32>,
    /// Ramp-up.
    pub ramp_up: Duration,
    /// Hold-for.
    pub hold_for: Duration,
    /// Passes per user.
    pub iterations: Option<u64>,
    /// Request timeout.
    pub timeout: Duration,
    /// Open model: requests per second.
    pub rate: Option<f64>,
    /// Throughput cap (closed model).
    pub throughput: Option<f64>,
    /// `Name: value` headers.
    pub headers: Vec<String>,
    /// HTTP method.
    pub method: String,
    /// Request body.
    pub body: Option<String>,
    /// Keep connections alive.
    pub keepalive: bool,
}

/// Builds a plan from the quick form, through the same reader as files.
pub fn from_quick(test: &QuickTest) -> Result<Plan, ConfigError> {
    let mut headers = Map::new();
    for header in &test.headers {
        let (name, value) = header.split_once(':').ok_or_else(|| ConfigError::Invalid {
            path: "--header".into(),
            message: format!("expected 'Name: value', got {header:?}"),
        })?;
        headers.insert(
            name.trim().to_owned(),
            Value::String(value.trim().to_owned()),
        );
    }
    let mut request = Map::new();
    request.insert("url".into(), Value::String(test.url.clone()));
    request.insert("method".into(), Value::String(test.method.clone()));
    request.insert("headers".into(), Value::Object(headers));
    request.insert(
        "timeout".into(),
        Value::String(format_duration(test.timeout)),
    );
    request.insert("keepalive".into(), Value::Bool(test.keepalive));
    if let Some(body) = &test.body {
        request.insert("body".into(), Value::String(body.clone()));
    }
    let mut execution = Map::new();
    if let Some(c) = test.concurrency {
        execution.insert("concurrency".into(), Value::from(c));
    }
    execution.insert(
        "ramp-up".into(),
        Value::String(format_duration(test.ramp_up)),
    );
    execution.insert(
        "hold-for".into(),
        Value::String(format_duration(test.hold_for)),
    );
    if let Some(n) = test.iterations {
        execution.insert("iterations".into(), Value::from(n));
    }
    if let Some(rate) = test.rate {
        execution.insert("arrival-rate".into(), Value::from(rate));
    }
    if let Some(cap) = test.throughput {
        execution.insert("throughput".into(), Value::from(cap));
    }
    execution.insert(
        "scenario".into(),
        serde_json::json!({ "requests": [Value::Object(request)] }),
    );
    from_taurus(&serde_json::json!({ "execution": [Value::Object(execution)] })).map_err(|error| {
        match error {
            ConfigError::Invalid { path, message } => ConfigError::Invalid {
                path: argument_of(&path).to_owned(),
                message,
            },
            other => other,
        }
    })
}

/// The command-line argument a key path of the quick form's generated config came from.
fn argument_of(path: &str) -> &str {
    let key = path.rsplit('.').next().unwrap_or(path);
    match key {
        "url" => "the URL argument",
        "concurrency" => "-c",
        "ramp-up" => "--ramp-up",
        "hold-for" => "--hold-for",
        "iterations" => "--iterations",
        "arrival-rate" => "--rate",
        "throughput" => "--throughput",
        "timeout" => "--timeout",
        "method" => "--method",
        "headers" => "--header",
        _ => path,
    }
}
