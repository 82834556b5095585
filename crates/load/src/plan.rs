//! The one internal form of a load test. The Taurus reader and the quick command-line form
//! both build a [`Plan`]; the engine and the reporters only ever see this.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};
use regex::Regex;
use serde_json::{Map, Value};

use crate::ConfigError;
use crate::criteria::Criterion;
use crate::duration::parse_duration;

/// Default request timeout, as in Taurus.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections used by the open model when the config names no concurrency.
pub const DEFAULT_OPEN_CONNECTIONS: u32 = 50;
/// Percentile levels reported, as Taurus's final-stats reports them.
pub const PERCENTILES: [f64; 7] = [0.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0];

/// A whole load test.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Executions, run side by side.
    pub executions: Vec<Execution>,
    /// Pass/fail criteria.
    pub criteria: Vec<Criterion>,
    /// Extra outputs the config asks for.
    pub outputs: Outputs,
    /// Keys Peregrine read but does not implement, each with a note.
    pub warnings: Vec<String>,
    /// Every request label, in order of first appearance.
    pub labels: Vec<String>,
}

/// Files the config's reporting section asks for.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// final-stats `dump-xml`.
    pub dump_xml: Option<PathBuf>,
    /// final-stats `dump-csv`.
    pub dump_csv: Option<PathBuf>,
    /// junit-xml `filename`.
    pub junit_xml: Option<PathBuf>,
    /// junit-xml `data-source` is `pass-fail` (else `sample-labels`).
    pub junit_pass_fail: bool,
}

/// One load profile with its scenario.
#[derive(Debug, Clone)]
pub struct Execution {
    /// Virtual users (closed model) or connections (open model).
    pub concurrency: u32,
    /// Time to grow from 0 to `concurrency` users (or to the full rate).
    pub ramp_up: Duration,
    /// Time held at full load after the ramp-up.
    pub hold_for: Duration,
    /// Passes through the scenario per user; `None` = until the time is up.
    pub iterations: Option<u64>,
    /// A cap on requests per second across all users (Taurus `throughput`).
    pub throughput: Option<f64>,
    /// Stairs the ramp-up is split into.
    pub steps: Option<u32>,
    /// Open model: requests per second sent regardless of responses (`arrival-rate`).
    pub arrival_rate: Option<f64>,
    /// What each user does.
    pub scenario: Arc<Scenario>,
}

impl Execution {
    /// Ramp-up plus hold-for; zero when the execution is bounded by iterations only.
    pub fn duration(&self) -> Duration {
        self.ramp_up + self.hold_for
    }
}

/// A named list of requests.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name in `scenarios` (or `inline-N`).
    pub name: String,
    /// The requests, sent in order by each user.
    pub requests: Vec<Request>,
}

/// One request, fully resolved: URL, headers and body as they are sent.
#[derive(Debug, Clone)]
pub struct Request {
    /// Index of the label in [`Plan::labels`].
    pub label: usize,
    /// HTTP method.
    pub method: Method,
    /// `host:port` to connect to.
    pub authority: String,
    /// Host and port, resolved at the start of the run.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Origin-form target: path and query.
    pub target: Uri,
    /// Headers, including `Host`.
    pub headers: HeaderMap,
    /// Body bytes (empty for none).
    pub body: Bytes,
    /// Connect-plus-response timeout.
    pub timeout: Duration,
    /// Pause after the response.
    pub think_time: Duration,
    /// Reuse the connection for the next request.
    pub keepalive: bool,
    /// Checks on the response; a failed one makes the sample an error.
    pub assertions: Vec<Assertion>,
    /// JSONPath checks on the response body (`assert-jsonpath`).
    pub json_assertions: Vec<JsonAssertion>,
    /// Set at the start of the run: where `authority` resolves to.
    pub address: Option<SocketAddr>,
    /// Set at the start of the run: the request as written on the connection.
    pub wire: Bytes,
}

/// A Taurus `assert` item.
#[derive(Debug, Clone)]
pub struct Assertion {
    /// What is checked.
    pub subject: Subject,
    /// Patterns that must all match (or none, with `invert`).
    pub patterns: Vec<Pattern>,
    /// `not: true`: the patterns must not match.
    pub invert: bool,
}

/// A Taurus `assert-jsonpath` item.
#[derive(Debug, Clone)]
pub struct JsonAssertion {
    /// The path as written, e.g. `$.id`.
    pub text: String,
    /// The parsed path.
    pub path: serde_json_path::JsonPath,
    /// The value the first match must have (`expected-value`, checked when `validate` or given).
    pub expected: Option<Pattern>,
    /// The first match must be `null`.
    pub expect_null: bool,
    /// Pass when the check fails instead.
    pub invert: bool,
}

impl JsonAssertion {
    /// `None` when `body` passes; otherwise why it failed.
    pub fn check(&self, body: &[u8]) -> Option<String> {
        let failure = match serde_json::from_slice::<Value>(body) {
            Err(_) => Some("the body is not JSON".to_owned()),
            Ok(document) => {
                let nodes = self.path.query(&document).all();
                match nodes.first() {
                    None => Some(format!("{} not found", self.text)),
                    Some(found) if self.expect_null && !found.is_null() => {
                        Some(format!("{} is {found}, expected null", self.text))
                    }
                    Some(found) => {
                        let text = found
                            .as_str()
                            .map_or_else(|| found.to_string(), str::to_owned);
                        match &self.expected {
                            Some(expected) if !expected.matches_whole(&text) => Some(format!(
                                "{} is {found}, expected {:?}",
                                self.text,
                                expected.as_str()
                            )),
                            _ => None,
                        }
                    }
                }
            }
        };
        match (failure, self.invert) {
            (Some(reason), false) => Some(format!("assertion failed: {reason}")),
            (None, true) => Some(format!(
                "assertion failed: {} matched, and invert is set",
                self.text
            )),
            _ => None,
        }
    }
}

/// The part of the response an assertion reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// The body text.
    Body,
    /// The headers, as `Name: value` lines.
    Headers,
    /// The status code, as text.
    HttpCode,
}

/// A pattern to look for.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// A regular expression (`regexp: true`, the default).
    Regex(Regex),
    /// A plain substring.
    Text(String),
}

impl Pattern {
    /// Whether the pattern occurs in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        match self {
            Self::Regex(regex) => regex.is_match(text),
            Self::Text(needle) => text.contains(needle.as_str()),
        }
    }

    /// Whether the whole of `text` matches (a regex must match all of it, as JMeter's does).
    pub fn matches_whole(&self, text: &str) -> bool {
        match self {
            Self::Regex(regex) => regex
                .find(text)
                .is_some_and(|m| m.start() == 0 && m.end() == text.len()),
            Self::Text(expected) => text == expected,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Regex(regex) => regex.as_str(),
            Self::Text(text) => text,
        }
    }
}

/// A position in the config, for error messages: `execution.0.hold-for`.
#[derive(Clone)]
struct Node<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Node<'a> {
    /// The elements of a list, each with its own key path (`path.0`, `path.1`, …); `what`
    /// names the elements in the error for a value that is not a list.
    fn items(&self, what: &str) -> Result<Vec<Node<'a>>, ConfigError> {
        let list = self
            .value
            .as_array()
            .ok_or_else(|| self.error(format!("must be a list{what}")))?;
        Ok(list
            .iter()
            .enumerate()
            .map(|(i, value)| Node {
                value,
                path: format!("{}.{i}", self.path),
            })
            .collect())
    }

    fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            message: message.into(),
        }
    }
}

/// Builds a plan from a merged Taurus document.
pub fn from_taurus(document: &Value) -> Result<Plan, ConfigError> {
    let mut builder = Builder::default();
    let scenarios = document.get("scenarios").cloned().unwrap_or(Value::Null);
    let executions = match document.get("execution") {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Object(_)) => vec![document["execution"].clone()],
        Some(Value::Null) | None => Vec::new(),
        Some(_) => {
            return Err(ConfigError::Invalid {
                path: "execution".into(),
                message: "must be a list of executions or one execution mapping".into(),
            });
        }
    };
    if executions.is_empty() {
        return Err(ConfigError::Invalid {
            path: "execution".into(),
            message: "no execution: add `execution:` with a concurrency and a scenario".into(),
        });
    }
    for (i, execution) in executions.iter().enumerate() {
        let path = format!("execution.{i}");
        let built = builder.execution(
            &Node {
                value: execution,
                path,
            },
            &scenarios,
        )?;
        builder.executions.push(built);
    }
    if let Some(reporting) = document.get("reporting") {
        builder.reporting(&Node {
            value: reporting,
            path: "reporting".into(),
        })?;
    }
    for key in document.as_object().into_iter().flat_map(Map::keys) {
        if ![
            "execution",
            "scenarios",
            "reporting",
            "settings",
            "modules",
            "provisioning",
            "services",
            "included-configs",
            "cli-aliases",
        ]
        .contains(&key.as_str())
        {
            builder.warn(key, "unknown top-level key; ignored");
        } else if [
            "services",
            "provisioning",
            "modules",
            "included-configs",
            "cli-aliases",
        ]
        .contains(&key.as_str())
        {
            builder.warn(key, "not implemented by Peregrine; ignored");
        }
    }
    builder.finish()
}

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
        Value::String(format!("{}ms", test.timeout.as_millis())),
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
        Value::String(format!("{}ms", test.ramp_up.as_millis())),
    );
    execution.insert(
        "hold-for".into(),
        Value::String(format!("{}ms", test.hold_for.as_millis())),
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
    from_taurus(&serde_json::json!({ "execution": [Value::Object(execution)] }))
}

#[derive(Default)]
struct Builder {
    executions: Vec<Execution>,
    criteria: Vec<Criterion>,
    outputs: Outputs,
    warnings: Vec<String>,
    labels: Vec<String>,
    inline_scenarios: usize,
}

const EXECUTION_KEYS: &[&str] = &[
    "concurrency",
    "ramp-up",
    "hold-for",
    "iterations",
    "throughput",
    "steps",
    "arrival-rate",
    "scenario",
    "executor",
];
const SCENARIO_KEYS: &[&str] = &[
    "requests",
    "default-address",
    "headers",
    "timeout",
    "think-time",
    "keepalive",
    "variables",
];
const REQUEST_KEYS: &[&str] = &[
    "assert-jsonpath",
    "url",
    "method",
    "label",
    "headers",
    "body",
    "body-file",
    "think-time",
    "timeout",
    "keepalive",
    "assert",
];

impl Builder {
    fn warn(&mut self, path: &str, note: &str) {
        self.warnings.push(format!("{path}: {note}"));
    }

    fn warn_unknown(&mut self, node: &Node<'_>, known: &[&str]) {
        for key in node.value.as_object().into_iter().flat_map(Map::keys) {
            if !known.contains(&key.as_str()) {
                self.warn(
                    &format!("{}.{key}", node.path),
                    "not implemented by Peregrine; ignored",
                );
            }
        }
    }

    fn finish(self) -> Result<Plan, ConfigError> {
        for criterion in &self.criteria {
            if let Some(label) = &criterion.label
                && !self.labels.contains(label)
            {
                return Err(ConfigError::Invalid {
                    path: criterion.path.clone(),
                    message: format!(
                        "criterion names label {label:?}, which no request has (labels: {})",
                        self.labels.join(", ")
                    ),
                });
            }
        }
        Ok(Plan {
            executions: self.executions,
            criteria: self.criteria,
            outputs: self.outputs,
            warnings: self.warnings,
            labels: self.labels,
        })
    }

    fn execution(&mut self, node: &Node<'_>, scenarios: &Value) -> Result<Execution, ConfigError> {
        if !node.value.is_object() {
            return Err(node.error("must be a mapping with concurrency, hold-for, scenario…"));
        }
        self.warn_unknown(node, EXECUTION_KEYS);
        let child = |key: &'static str| child(node, key);
        if let Some(executor) = child("executor")
            && executor.value.as_str() != Some("peregrine")
        {
            let name = executor.value.as_str().unwrap_or("?").to_owned();
            self.warn(
                &executor.path,
                &format!(
                    "executor {name:?} is not used; Peregrine's own engine runs this execution"
                ),
            );
        }
        let arrival_rate = optional(child("arrival-rate"), positive_number)?;
        let concurrency = match optional(child("concurrency"), provisioned_count)? {
            Some(n) => n,
            None if arrival_rate.is_some() => u64::from(DEFAULT_OPEN_CONNECTIONS),
            None => 1,
        };
        let ramp_up = optional(child("ramp-up"), duration)?.unwrap_or_default();
        let hold_for = optional(child("hold-for"), duration)?.unwrap_or_default();
        let mut iterations = optional(child("iterations"), count)?;
        if iterations.is_none() && (ramp_up + hold_for).is_zero() {
            iterations = Some(1);
        }
        let throughput = optional(child("throughput"), provisioned_number)?;
        if throughput.is_some() && arrival_rate.is_some() {
            return Err(
                node.error("set either throughput (a cap) or arrival-rate (open model), not both")
            );
        }
        if arrival_rate.is_some() && (ramp_up + hold_for).is_zero() {
            return Err(node.error("arrival-rate needs hold-for (and optionally ramp-up)"));
        }
        let steps = optional(child("steps"), count)?
            .map(|n| u32::try_from(n).map_err(|_| node.error("steps is too large")))
            .transpose()?;
        let scenario_node = child("scenario").ok_or_else(|| node.error("has no scenario"))?;
        let scenario = self.scenario(&scenario_node, scenarios)?;
        Ok(Execution {
            concurrency: u32::try_from(concurrency)
                .map_err(|_| node.error("concurrency is too large"))?,
            ramp_up,
            hold_for,
            iterations,
            throughput,
            steps,
            arrival_rate,
            scenario: Arc::new(scenario),
        })
    }

    fn scenario(&mut self, node: &Node<'_>, scenarios: &Value) -> Result<Scenario, ConfigError> {
        let (name, path, value) = match node.value {
            Value::String(name) => {
                let value = scenarios.get(name).ok_or_else(|| {
                    let known: Vec<_> = scenarios
                        .as_object()
                        .into_iter()
                        .flat_map(Map::keys)
                        .cloned()
                        .collect();
                    node.error(format!(
                        "no scenario named {name:?} in scenarios (known: {})",
                        known.join(", ")
                    ))
                })?;
                (name.clone(), format!("scenarios.{name}"), value)
            }
            Value::Object(_) => {
                self.inline_scenarios += 1;
                (
                    format!("inline-{}", self.inline_scenarios),
                    node.path.to_owned(),
                    node.value,
                )
            }
            _ => return Err(node.error("must be a scenario name or an inline scenario mapping")),
        };
        let node = &Node { value, path };
        if !value.is_object() {
            return Err(node.error("must be a mapping with requests"));
        }
        self.warn_unknown(node, SCENARIO_KEYS);
        let defaults = ScenarioDefaults::read(node)?;
        let requests_node = child(node, "requests").ok_or_else(|| node.error("has no requests"))?;
        let items = requests_node.items("")?;
        if items.is_empty() {
            return Err(requests_node.error("is empty"));
        }
        let mut requests = Vec::with_capacity(items.len());
        for item in &items {
            requests.push(self.request(item, &defaults)?);
        }
        Ok(Scenario { name, requests })
    }

    fn request(
        &mut self,
        node: &Node<'_>,
        defaults: &ScenarioDefaults,
    ) -> Result<Request, ConfigError> {
        let shorthand;
        let node = match node.value {
            Value::String(url) => {
                shorthand = serde_json::json!({ "url": url });
                &Node {
                    value: &shorthand,
                    path: node.path.clone(),
                }
            }
            Value::Object(_) => node,
            _ => return Err(node.error("must be a URL or a request mapping")),
        };
        self.warn_unknown(node, REQUEST_KEYS);
        let get = |key: &'static str| child(node, key);
        let url_node = get("url").ok_or_else(|| node.error("has no url"))?;
        let url_text = defaults.substitute(
            url_node
                .value
                .as_str()
                .ok_or_else(|| url_node.error("must be a string"))?,
        );
        let url = resolve_url(&url_text, defaults.address.as_deref())
            .map_err(|message| url_node.error(message))?;
        let method = match get("method") {
            Some(m) => {
                let text = m
                    .value
                    .as_str()
                    .ok_or_else(|| m.error("must be a string"))?;
                Method::from_bytes(text.to_ascii_uppercase().as_bytes())
                    .map_err(|_| m.error(format!("invalid HTTP method {text:?}")))?
            }
            None => Method::GET,
        };
        let label = match get("label") {
            Some(l) => l
                .value
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| l.error("must be a string"))?,
            None => url_text.clone(),
        };
        let label = self.label_index(label);
        let mut headers = defaults.headers.clone();
        if let Some(h) = get("headers") {
            for (name, value) in header_pairs(&h)? {
                headers.insert(name, value);
            }
        }
        let body = match (get("body"), get("body-file")) {
            (Some(_), Some(file)) => return Err(file.error("set body or body-file, not both")),
            (Some(body), None) => match body.value {
                Value::String(text) => Bytes::from(defaults.substitute(text)),
                Value::Null => Bytes::new(),
                other => {
                    headers
                        .entry(CONTENT_TYPE)
                        .or_insert(HeaderValue::from_static("application/json"));
                    Bytes::from(defaults.substitute(&other.to_string()))
                }
            },
            (None, Some(file)) => {
                let path = file
                    .value
                    .as_str()
                    .ok_or_else(|| file.error("must be a file path"))?;
                Bytes::from(
                    std::fs::read(path)
                        .map_err(|e| file.error(format!("cannot read {path}: {e}")))?,
                )
            }
            (None, None) => Bytes::new(),
        };
        let host_header =
            HeaderValue::from_str(&url.authority).map_err(|_| url_node.error("invalid host"))?;
        headers.insert(HOST, host_header);
        let timeout = optional(get("timeout"), duration)?.unwrap_or(defaults.timeout);
        if timeout.is_zero() {
            return Err(get("timeout").map_or_else(
                || node.error("timeout must be positive"),
                |t| t.error("must be positive"),
            ));
        }
        let think_time = match get("think-time") {
            Some(t) => self.think_time(&t)?,
            None => defaults.think_time,
        };
        let keepalive = optional(get("keepalive"), boolean)?.unwrap_or(defaults.keepalive);
        let assertions = match get("assert") {
            Some(a) => assertions(&a)?,
            None => Vec::new(),
        };
        let json_assertions = match get("assert-jsonpath") {
            Some(a) => json_assertions(&a)?,
            None => Vec::new(),
        };
        Ok(Request {
            label,
            method,
            authority: url.authority,
            host: url.host,
            port: url.port,
            target: url.target,
            headers,
            body,
            timeout,
            think_time,
            keepalive,
            assertions,
            json_assertions,
            address: None,
            wire: Bytes::new(),
        })
    }

    fn think_time(&mut self, node: &Node<'_>) -> Result<Duration, ConfigError> {
        let text = match node.value {
            Value::String(text) => text.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(node.error("must be a duration")),
        };
        if let Some(inner) = text.strip_suffix(')').and_then(|t| t.split_once('(')) {
            let mean = inner.1.split(',').next().unwrap_or_default();
            let parsed = parse_duration(mean).map_err(|e| node.error(e.to_string()))?;
            self.warn(
                &node.path.clone(),
                &format!(
                    "random think-time {:?} is not implemented; its mean {mean} is used",
                    inner.0
                ),
            );
            return Ok(parsed);
        }
        parse_duration(&text).map_err(|e| node.error(e.to_string()))
    }

    fn label_index(&mut self, label: String) -> usize {
        match self.labels.iter().position(|l| *l == label) {
            Some(i) => i,
            None => {
                self.labels.push(label);
                self.labels.len() - 1
            }
        }
    }

    fn reporting(&mut self, node: &Node<'_>) -> Result<(), ConfigError> {
        let mut seen = HashSet::new();
        for item in &node.items(" of reporters")? {
            let module = match item.value {
                Value::String(name) => name.as_str(),
                Value::Object(map) => map
                    .get("module")
                    .and_then(Value::as_str)
                    .ok_or_else(|| item.error("has no module"))?,
                _ => return Err(item.error("must be a module name or a mapping with module")),
            };
            seen.insert(module.to_owned());
            match module {
                "final-stats" => {
                    self.outputs.dump_xml = optional(child(item, "dump-xml"), path_value)?
                        .or(self.outputs.dump_xml.take());
                    self.outputs.dump_csv = optional(child(item, "dump-csv"), path_value)?
                        .or(self.outputs.dump_csv.take());
                }
                "passfail" => {
                    if let Some(criteria) = child(item, "criteria") {
                        self.criteria_list(&criteria)?;
                    }
                }
                "junit-xml" => {
                    self.outputs.junit_xml = Some(
                        optional(child(item, "filename"), path_value)?
                            .unwrap_or_else(|| PathBuf::from("xunit.xml")),
                    );
                    if let Some(source) = child(item, "data-source") {
                        match source.value.as_str() {
                            Some("pass-fail") => self.outputs.junit_pass_fail = true,
                            Some("sample-labels") => {}
                            _ => return Err(source.error("must be sample-labels or pass-fail")),
                        }
                    }
                }
                "console" => {}
                other => self.warn(
                    &item.path,
                    &format!("reporter {other:?} is not implemented by Peregrine; ignored"),
                ),
            }
        }
        Ok(())
    }

    fn criteria_list(&mut self, node: &Node<'_>) -> Result<(), ConfigError> {
        for item in node.items(" of criteria")? {
            let criterion = crate::criteria::parse(item.value, &item.path)?;
            self.criteria.push(criterion);
        }
        Ok(())
    }
}

/// Scenario-level settings that requests inherit.
struct ScenarioDefaults {
    address: Option<String>,
    headers: HeaderMap,
    timeout: Duration,
    think_time: Duration,
    keepalive: bool,
    variables: BTreeMap<String, String>,
}

impl ScenarioDefaults {
    fn read(node: &Node<'_>) -> Result<Self, ConfigError> {
        let get = |key: &'static str| child(node, key);
        let mut variables = BTreeMap::new();
        if let Some(vars) = get("variables") {
            let map = vars
                .value
                .as_object()
                .ok_or_else(|| vars.error("must be a mapping"))?;
            for (name, value) in map {
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                variables.insert(name.clone(), text);
            }
        }
        let mut defaults = Self {
            address: None,
            headers: HeaderMap::new(),
            timeout: optional(get("timeout"), duration)?.unwrap_or(DEFAULT_TIMEOUT),
            think_time: optional(get("think-time"), duration)?.unwrap_or_default(),
            keepalive: optional(get("keepalive"), boolean)?.unwrap_or(true),
            variables,
        };
        if let Some(address) = get("default-address") {
            let text = address
                .value
                .as_str()
                .ok_or_else(|| address.error("must be a URL"))?;
            defaults.address = Some(defaults.substitute(text));
        }
        if let Some(headers) = get("headers") {
            for (name, value) in header_pairs(&headers)? {
                let value =
                    HeaderValue::from_str(&defaults.substitute(value.to_str().unwrap_or_default()))
                        .unwrap_or(value);
                defaults.headers.insert(name, value);
            }
        }
        Ok(defaults)
    }

    /// Replaces `${name}` with the variable's value; unknown names stay as written.
    fn substitute(&self, text: &str) -> String {
        if !text.contains("${") {
            return text.to_owned();
        }
        let mut out = text.to_owned();
        for (name, value) in &self.variables {
            out = out.replace(&format!("${{{name}}}"), value);
        }
        out
    }
}

struct ResolvedUrl {
    authority: String,
    host: String,
    port: u16,
    target: Uri,
}

fn resolve_url(text: &str, default_address: Option<&str>) -> Result<ResolvedUrl, String> {
    let full = if text.contains("://") {
        text.to_owned()
    } else {
        let base = default_address.ok_or_else(|| {
            format!("{text:?} is not an absolute URL and the scenario has no default-address")
        })?;
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            text.trim_start_matches('/')
        )
    };
    let uri: Uri = full
        .parse()
        .map_err(|e| format!("invalid URL {full:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(format!("{full:?}: https is not supported yet; use http://")),
        _ => return Err(format!("{full:?}: the URL must start with http://")),
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{full:?} has no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri.authority().map(ToString::to_string).unwrap_or_default();
    let target: Uri = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|e| format!("invalid path: {e}"))?;
    Ok(ResolvedUrl {
        authority,
        host,
        port,
        target,
    })
}

fn header_pairs(node: &Node<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    let map = node
        .value
        .as_object()
        .ok_or_else(|| node.error("must be a mapping of header names to values"))?;
    map.iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| node.error(format!("invalid header name {name:?}")))?;
            let value = HeaderValue::from_str(&text)
                .map_err(|_| node.error(format!("invalid value for header {name}")))?;
            Ok((name, value))
        })
        .collect()
}

fn assertions(node: &Node<'_>) -> Result<Vec<Assertion>, ConfigError> {
    let items = node.items("")?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let (contains, subject, regexp, invert) = match item.value {
            Value::String(text) => (vec![text.clone()], Subject::Body, true, false),
            Value::Object(_) => {
                let contains = match child(item, "contains").map(|c| c.value) {
                    Some(Value::String(s)) => vec![s.clone()],
                    Some(Value::Array(list)) => list
                        .iter()
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                        .collect(),
                    Some(Value::Number(n)) => vec![n.to_string()],
                    _ => return Err(item.error("needs contains: a pattern or a list of patterns")),
                };
                let subject = match child(item, "subject").and_then(|s| s.value.as_str()) {
                    None | Some("body") => Subject::Body,
                    Some("headers") => Subject::Headers,
                    Some("http-code") => Subject::HttpCode,
                    Some(other) => {
                        return Err(item.error(format!(
                            "subject {other:?} is not body, headers or http-code"
                        )));
                    }
                };
                let regexp = optional(child(item, "regexp"), boolean)?.unwrap_or(true);
                let invert = optional(child(item, "not"), boolean)?.unwrap_or(false);
                (contains, subject, regexp, invert)
            }
            _ => return Err(item.error("must be a pattern or a mapping with contains")),
        };
        let patterns = contains
            .into_iter()
            .map(|text| {
                if regexp {
                    Regex::new(&text)
                        .map(Pattern::Regex)
                        .map_err(|e| item.error(format!("invalid regular expression: {e}")))
                } else {
                    Ok(Pattern::Text(text))
                }
            })
            .collect::<Result<_, _>>()?;
        out.push(Assertion {
            subject,
            patterns,
            invert,
        });
    }
    Ok(out)
}

fn json_assertions(node: &Node<'_>) -> Result<Vec<JsonAssertion>, ConfigError> {
    let items = node.items("")?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let text = match item.value {
            Value::String(path) => path.clone(),
            Value::Object(map) => map
                .get("jsonpath")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| item.error("needs jsonpath"))?,
            _ => return Err(item.error("must be a JSONPath or a mapping with jsonpath")),
        };
        let path = serde_json_path::JsonPath::parse(&text)
            .map_err(|e| item.error(format!("invalid JSONPath {text:?}: {e}")))?;
        let flag =
            |key: &'static str| optional(child(item, key), boolean).map(Option::unwrap_or_default);
        let expected = match child(item, "expected-value") {
            Some(value) if flag("validate")? || item.value.get("validate").is_none() => {
                let text = value
                    .value
                    .as_str()
                    .map_or_else(|| value.value.to_string(), str::to_owned);
                let regexp = optional(child(item, "regexp"), boolean)?.unwrap_or(true);
                Some(if regexp {
                    Regex::new(&text)
                        .map(Pattern::Regex)
                        .map_err(|e| value.error(format!("invalid regular expression: {e}")))?
                } else {
                    Pattern::Text(text)
                })
            }
            _ => None,
        };
        out.push(JsonAssertion {
            text,
            path,
            expected,
            expect_null: flag("expect-null")?,
            invert: flag("invert")?,
        });
    }
    Ok(out)
}

fn child<'a>(node: &Node<'a>, key: &str) -> Option<Node<'a>> {
    let value = node.value.get(key)?;
    Some(Node {
        value,
        path: format!("{}.{key}", node.path),
    })
}

fn optional<T>(
    node: Option<Node<'_>>,
    read: fn(&Node<'_>) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    match node {
        Some(node) if !node.value.is_null() => read(&node).map(Some),
        _ => Ok(None),
    }
}

fn duration(node: &Node<'_>) -> Result<Duration, ConfigError> {
    let text = match node.value {
        Value::String(text) => text.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(node.error("must be a duration such as 2m30s")),
    };
    parse_duration(&text).map_err(|e| node.error(e.to_string()))
}

fn count(node: &Node<'_>) -> Result<u64, ConfigError> {
    node.value
        .as_u64()
        .ok_or_else(|| node.error(format!("must be a whole number, got {}", node.value)))
}

fn positive_number(node: &Node<'_>) -> Result<f64, ConfigError> {
    match node.value.as_f64() {
        Some(n) if n > 0.0 && n.is_finite() => Ok(n),
        _ => Err(node.error(format!("must be a positive number, got {}", node.value))),
    }
}

/// A number, or Taurus's `{local: N, cloud: M}` form (the local value is used).
fn provisioned_number(node: &Node<'_>) -> Result<f64, ConfigError> {
    match node.value.get("local") {
        Some(local) => positive_number(&Node {
            value: local,
            path: node.path.clone(),
        }),
        None => positive_number(node),
    }
}

fn provisioned_count(node: &Node<'_>) -> Result<u64, ConfigError> {
    let value = node.value.get("local").unwrap_or(node.value);
    match value.as_u64() {
        Some(n) if n >= 1 => Ok(n),
        _ => Err(node.error(format!("must be a whole number of at least 1, got {value}"))),
    }
}

fn boolean(node: &Node<'_>) -> Result<bool, ConfigError> {
    node.value
        .as_bool()
        .ok_or_else(|| node.error(format!("must be true or false, got {}", node.value)))
}

fn path_value(node: &Node<'_>) -> Result<PathBuf, ConfigError> {
    node.value
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| node.error("must be a file path"))
}
