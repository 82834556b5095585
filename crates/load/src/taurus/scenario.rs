//! Scenarios and their requests: defaults a scenario gives its requests, URLs, headers,
//! bodies and think-times. Over 600 lines: a request has many keys, each read here with
//! its error naming the key path.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};
use serde_json::{Map, Value};

use super::assertions::{assertions, json_assertions};
use super::values::{ConfigValue, boolean, byte_size, child, duration, duration_text, optional};
use super::{Builder, Steps, keys};
use crate::ConfigError;
use crate::plan::{
    DEFAULT_ASSERT_BODY_LIMIT, DEFAULT_TIMEOUT, DynamicRequest, Program, Request, Scenario,
    ThinkTime,
};
use crate::variables::Template;

const SCENARIO_KEYS: &[&str] = &[
    "assert-body-limit",
    "requests",
    "default-address",
    "headers",
    "timeout",
    "think-time",
    "keepalive",
    "variables",
    "data-sources",
    "force-parent-sample",
    "store-cookie",
    "cookies",
    "follow-redirects",
    "properties",
];
const REQUEST_KEYS: &[&str] = &[
    "assert-body-limit",
    "assert-jsonpath",
    "assert-xpath",
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
    "extract-regexp",
    "extract-jsonpath",
    "extract-boundary",
    "extract-xpath",
    "extract-css-jquery",
    "follow-redirects",
    // Written by the JMX reader for JMeter's Duration and Size Assertions.
    "jmx-max-duration",
    "jmx-size",
];

impl Builder {
    pub(super) fn scenario(
        &mut self,
        node: &ConfigValue<'_>,
        scenarios: &Value,
    ) -> Result<Scenario, ConfigError> {
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
        let node = &ConfigValue { value, path };
        if !value.is_object() {
            return Err(node.error("must be a mapping with requests"));
        }
        self.check_keys(node, SCENARIO_KEYS, &keys::SCENARIO)?;
        let data_sources = self.data_sources(node)?;
        for source in &data_sources {
            self.context
                .runtime_names
                .extend(source.names.iter().cloned());
        }
        let defaults = ScenarioDefaults::read(node, &self.context.runtime_names)?;
        let requests_node = child(node, "requests").ok_or_else(|| node.error("has no requests"))?;
        if requests_node.items("")?.is_empty() {
            return Err(requests_node.error("is empty"));
        }
        let mut out = Steps {
            requests: Vec::new(),
            has_blocks: false,
            onces: 0,
            picks: 0,
            throttles: 0,
            including: vec![name.clone()],
            scenarios,
            entries: 0,
            sizes: Default::default(),
            data_sources: Vec::new(),
            sourced: Vec::new(),
        };
        let steps = self.steps(&requests_node, &defaults, &mut out)?;
        self.note_undefined(&node.path, &defaults);
        let mut data_sources = data_sources;
        data_sources.append(&mut out.data_sources);
        let store_cookie = optional(child(node, "store-cookie"), boolean)?.unwrap_or(true);
        let cookies = cookies(child(node, "cookies"))?;
        // The fast path keeps cookies and follows redirects itself; preset cookies need
        // the program's per-user jar.
        let needs_program = out.has_blocks
            || !cookies.is_empty()
            || !data_sources.is_empty()
            || out
                .requests
                .iter()
                .any(|r| r.dynamic.is_some() || !r.extractors.is_empty());
        let program = needs_program.then(|| {
            Arc::new(Program {
                steps,
                variables: defaults.runtime_variables.clone(),
                data_sources,
                onces: out.onces,
                picks: out.picks,
                throttles: out.throttles,
                cookies,
                properties: Arc::new(self.properties_with(child(node, "properties"))),
                environment: Arc::clone(&self.context.environment),
            })
        });
        Ok(Scenario {
            name,
            requests: out.requests,
            program,
            store_cookie,
        })
    }

    /// Warns once per `${name}` that nothing defines (it is sent as written).
    pub(super) fn note_undefined(&mut self, path: &str, defaults: &ScenarioDefaults) {
        for variable in defaults.undefined.take() {
            let defined = variable.starts_with("__")
                || variable.starts_with("JMeterThread.")
                || self.context.runtime_names.contains(&variable)
                || self
                    .context
                    .runtime_names
                    .contains(match_list_base(&variable))
                || defaults
                    .runtime_variables
                    .iter()
                    .any(|(n, _)| *n == variable);
            if !defined && self.notes.undefined_variables.insert(variable.clone()) {
                self.warn(
                    path,
                    &format!(
                        "${{{variable}}} is used but no variable defines it; it is sent as written"
                    ),
                );
            }
        }
    }

    pub(super) fn request(
        &mut self,
        node: &ConfigValue<'_>,
        defaults: &ScenarioDefaults,
    ) -> Result<Request, ConfigError> {
        let shorthand;
        let node = match node.value {
            Value::String(url) => {
                shorthand = serde_json::json!({ "url": url });
                &ConfigValue {
                    value: &shorthand,
                    path: node.path.clone(),
                }
            }
            Value::Object(_) => node,
            _ => return Err(node.error("must be a URL or a request mapping")),
        };
        self.check_keys(node, REQUEST_KEYS, &keys::REQUEST)?;
        self.check_item_keys(child(node, "assert").as_ref(), &keys::ASSERT)?;
        self.check_item_keys(
            child(node, "assert-jsonpath").as_ref(),
            &keys::ASSERT_JSONPATH,
        )?;
        self.check_item_keys(child(node, "assert-xpath").as_ref(), &keys::ASSERT_XPATH)?;
        let get = |key: &'static str| child(node, key);
        let url_node = get("url").ok_or_else(|| node.error("has no url"))?;
        let url_text = defaults.substitute(
            url_node
                .value
                .as_str()
                .ok_or_else(|| url_node.error("must be a string"))?,
        );
        let full = full_url(&url_text, defaults.address.as_deref())
            .map_err(|message| url_node.error(message))?;
        let (base, path_and_query) = split_url(&full);
        let base = functions_at_load_time(base, &mut self.load_time_user());
        // A scheme or host from a run-time variable (a CSV column, an extractor): the URL
        // is rendered and its host resolved per request; every other request keeps its
        // address resolved once before the run.
        let origin = base.contains("${").then(|| Template::parse(&base));
        let url = match &origin {
            Some(_) => run_time_placeholder(&base, path_and_query),
            None => resolve_url(
                &format!("{base}{}", crate::variables::encode_target(path_and_query)),
                None,
            )
            .map_err(|message| url_node.error(message))?,
        };
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
                let text = defaults.substitute(value.to_str().unwrap_or_default());
                headers.insert(name, HeaderValue::from_str(&text).unwrap_or(value));
            }
        }
        let mut body_file = get("body-file");
        if let (Some(_), Some(file)) = (get("body"), &body_file) {
            self.warn(
                &file.path,
                "ignored: body is set too, and Taurus sends body",
            );
            body_file = None;
        }
        let body = match (get("body"), body_file) {
            (Some(body), _) => match body.value {
                Value::String(text) => Bytes::from(defaults.substitute(text)),
                Value::Null => Bytes::new(),
                Value::Object(fields) if sends_form(fields, &headers, &method) => {
                    headers
                        .entry(CONTENT_TYPE)
                        .or_insert(HeaderValue::from_static(
                            "application/x-www-form-urlencoded",
                        ));
                    Bytes::from(defaults.substitute(&form_encoded(fields)))
                }
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
                let limit = crate::files::MAX_BODY_FILE_BYTES;
                let source = crate::files::Source::RegularFile;
                let bytes = crate::files::read_limited(std::path::Path::new(path), limit, source)
                    .map_err(|e| file.error(format!("cannot read {path}: {e}")))?;
                Bytes::from(bytes)
            }
            (None, None) => Bytes::new(),
        };
        if origin.is_none() {
            let host_header = HeaderValue::from_str(&url.authority)
                .map_err(|_| url_node.error("invalid host"))?;
            headers.insert(HOST, host_header);
        }
        let timeout = optional(get("timeout"), duration)?.unwrap_or(defaults.timeout);
        if timeout.is_zero() {
            return Err(get("timeout").map_or_else(
                || node.error("timeout must be positive"),
                |t| t.error("must be positive"),
            ));
        }
        let (think_time, think) = match get("think-time") {
            Some(t) if t.value.as_str().is_some_and(|v| v.contains("${")) => {
                self.warn(
                    &t.path,
                    "a think-time from a run-time variable is not supported; no pause is made",
                );
                (Duration::ZERO, ThinkTime::Constant)
            }
            Some(t) => think_time(&t)?,
            None => (defaults.think_time, defaults.think),
        };
        let keepalive = optional(get("keepalive"), boolean)?.unwrap_or(defaults.keepalive);
        let assert_body_limit =
            optional(get("assert-body-limit"), byte_size)?.unwrap_or(defaults.assert_body_limit);
        let assertions = match get("assert") {
            Some(a) => assertions(&a)?,
            None => Vec::new(),
        };
        let json_assertions = match get("assert-jsonpath") {
            Some(a) => json_assertions(&a)?,
            None => Vec::new(),
        };
        let xpath_assertions = match get("assert-xpath") {
            Some(a) => super::assertions::xpath_assertions(&a)?,
            None => Vec::new(),
        };
        let dynamic = dynamic_parts(origin, path_and_query, &headers, &body);
        let follow_redirects =
            optional(get("follow-redirects"), boolean)?.unwrap_or(defaults.follow_redirects);
        let extractors = self.extractors(node)?;
        let max_duration = optional(get("jmx-max-duration"), duration)?;
        let size_check = match get("jmx-size") {
            Some(size) => Some(
                size.value
                    .get("op")
                    .and_then(Value::as_str)
                    .zip(size.value.get("bytes").and_then(Value::as_u64))
                    .and_then(|(op, bytes)| crate::assertion::SizeCheck::new(op, bytes))
                    .ok_or_else(|| size.error("needs op (=, !=, >, <, >=, <=) and bytes"))?,
            ),
            None => None,
        };
        Ok(Request {
            max_duration,
            size_check,
            dynamic,
            extractors,
            think,
            follow_redirects,
            label,
            method,
            authority: url.authority,
            host: url.host,
            port: url.port,
            https: url.https,
            target: url.target,
            headers,
            body,
            timeout,
            think_time,
            keepalive,
            assert_body_limit,
            assertions,
            json_assertions,
            xpath_assertions,
        })
    }

    /// The index of `label` in the plan's labels, added when new (a map, not a scan: a
    /// config may have 100,000 labels).
    pub(super) fn label_index(&mut self, label: String) -> usize {
        if let Some(&index) = self.label_indexes.get(&label) {
            return index;
        }
        self.labels.push(label.clone());
        self.label_indexes.insert(label, self.labels.len() - 1);
        self.labels.len() - 1
    }
}

/// Scenario-level settings that requests inherit.
pub(super) struct ScenarioDefaults {
    address: Option<String>,
    /// Headers every request gets.
    pub(super) headers: HeaderMap,
    timeout: Duration,
    think_time: Duration,
    think: ThinkTime,
    keepalive: bool,
    assert_body_limit: usize,
    /// `follow-redirects` for its requests (default true).
    follow_redirects: bool,
    /// `force-parent-sample` for its transactions.
    pub(super) force_parent_sample: bool,
    /// Variables substituted when the config is read.
    variables: BTreeMap<String, String>,
    /// Every variable, set per user when it starts (in Taurus's alphabetical order).
    pub(super) runtime_variables: Vec<(String, Template)>,
    /// `${name}`s used that no variable defines.
    pub(super) undefined: RefCell<BTreeSet<String>>,
}

impl ScenarioDefaults {
    pub(super) fn read(
        node: &ConfigValue<'_>,
        runtime_names: &HashSet<String>,
    ) -> Result<Self, ConfigError> {
        let get = |key: &'static str| child(node, key);
        let mut variables = BTreeMap::new();
        let mut runtime_variables = Vec::new();
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
                // Every variable is also set per user, for blocks and run-time references;
                // the constant ones are besides substituted when the config is read.
                runtime_variables.push((name.clone(), Template::parse(&text)));
                if !text.contains("${") && !runtime_names.contains(name) {
                    variables.insert(name.clone(), text);
                }
            }
        }
        runtime_variables.sort_by(|a: &(String, Template), b| a.0.cmp(&b.0));
        let (think_time, think) = match get("think-time") {
            Some(t) => think_time(&t)?,
            None => (Duration::ZERO, ThinkTime::Constant),
        };
        let mut defaults = Self {
            address: None,
            headers: HeaderMap::new(),
            timeout: optional(get("timeout"), duration)?.unwrap_or(DEFAULT_TIMEOUT),
            think_time,
            think,
            force_parent_sample: optional(get("force-parent-sample"), boolean)?.unwrap_or(false),
            follow_redirects: optional(get("follow-redirects"), boolean)?.unwrap_or(true),
            runtime_variables,
            keepalive: optional(get("keepalive"), boolean)?.unwrap_or(true),
            assert_body_limit: optional(get("assert-body-limit"), byte_size)?
                .unwrap_or(DEFAULT_ASSERT_BODY_LIMIT),
            variables,
            undefined: RefCell::default(),
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

    /// Takes what an included scenario gets from the one including it, as Taurus's
    /// generated plan gives it: the top scenario's variables and headers (Taurus puts them
    /// on the whole test plan and ignores an included scenario's own), and its default
    /// address unless the included scenario names its own (the nearer HTTP Request
    /// Defaults win in JMeter). Timeouts, think-times and the other request defaults stay
    /// the included scenario's, as Taurus reads them from the request's own scenario.
    pub(super) fn inherit(&mut self, outer: &ScenarioDefaults) {
        self.headers = outer.headers.clone();
        self.variables = outer.variables.clone();
        self.runtime_variables = outer.runtime_variables.clone();
        if self.address.is_none() {
            self.address = outer.address.clone();
        }
    }

    /// Replaces `${name}` with the variable's value; unknown names stay as written, and are
    /// remembered for a warning.
    pub(super) fn substitute(&self, text: &str) -> String {
        if !text.contains("${") {
            return text.to_owned();
        }
        let mut out = text.to_owned();
        for (name, value) in &self.variables {
            out = out.replace(&format!("${{{name}}}"), value);
        }
        let mut rest = out.as_str();
        while let Some((_, after)) = rest.split_once("${") {
            let Some((name, tail)) = after.split_once('}') else {
                break;
            };
            self.undefined.borrow_mut().insert(name.to_owned());
            rest = tail;
        }
        out
    }
}

/// `text` (joined to the default address when relative) taken apart.
fn resolve_url(
    text: &str,
    default_address: Option<&str>,
) -> Result<crate::url::AbsoluteUrl, String> {
    crate::url::parse(&full_url(text, default_address)?)
}

fn header_pairs(node: &ConfigValue<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
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

/// Whether a mapping `body` is sent as form parameters, as Taurus sends it: its values are
/// all strings, numbers or booleans, the content type is not exactly `application/json`
/// and the method carries a form body (Taurus puts a GET's into the query string; Peregrine
/// sends those as JSON, as before).
fn sends_form(
    fields: &serde_json::Map<String, Value>,
    headers: &HeaderMap,
    method: &Method,
) -> bool {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    let flat = fields
        .values()
        .all(|v| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)));
    !json && flat && [Method::POST, Method::PUT, Method::PATCH].contains(method)
}

/// `name=value&…` URL-encoded (booleans as Python writes them, `True`/`False`); `${…}`
/// references are kept as written, for their values to be put in at run time.
fn form_encoded(fields: &serde_json::Map<String, Value>) -> String {
    let encode = |text: &str| {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            let end = rest[start..]
                .find('}')
                .map_or(rest.len(), |e| start + e + 1);
            out.push_str(&crate::variables::url_encode(&rest[..start]));
            out.push_str(&rest[start..end]);
            rest = &rest[end..];
        }
        out.push_str(&crate::variables::url_encode(rest));
        out
    };
    fields
        .iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Bool(true) => "True".into(),
                Value::Bool(false) => "False".into(),
                other => other.to_string(),
            };
            format!("{}={}", encode(name), encode(&text))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The URL with the scenario's `default-address` in front when it has no scheme.
fn full_url(text: &str, default_address: Option<&str>) -> Result<String, String> {
    // `- ${url}` without a default address: the whole URL comes at run time.
    if text.contains("://") || (default_address.is_none() && text.starts_with("${")) {
        return Ok(text.to_owned());
    }
    let base = default_address.ok_or_else(|| {
        format!("{text:?} is not an absolute URL and the scenario has no default-address")
    })?;
    Ok(format!(
        "{}/{}",
        base.trim_end_matches('/'),
        text.trim_start_matches('/')
    ))
}

/// What a request whose scheme or host is decided at run time holds until it is rendered:
/// its origin as written (shown by the run's description), nothing to connect to.
fn run_time_placeholder(base: &str, path_and_query: &str) -> crate::url::AbsoluteUrl {
    crate::url::AbsoluteUrl {
        authority: base.to_owned(),
        host: String::new(),
        port: 0,
        https: base
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://")),
        target: crate::variables::encode_target(path_and_query)
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/")),
    }
}

/// `scheme://authority` and the rest (path and query).
fn split_url(full: &str) -> (&str, &str) {
    let after_scheme = full.find("://").map_or(0, |i| i + 3);
    let end = full[after_scheme..]
        .find(['/', '?'])
        .map_or(full.len(), |i| after_scheme + i);
    (&full[..end], &full[end..])
}

/// The run-time `${…}` parts of a request, if it has any.
fn dynamic_parts(
    origin: Option<Template>,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Arc<DynamicRequest>> {
    let target = Template::parse(path_and_query);
    let headers: Vec<_> = headers
        .iter()
        .filter_map(|(name, value)| {
            let template = Template::parse(value.to_str().ok()?);
            template.is_dynamic().then(|| (name.clone(), template))
        })
        .collect();
    let body = std::str::from_utf8(body).map_or_else(|_| Template::default(), Template::parse);
    (origin.is_some() || target.is_dynamic() || !headers.is_empty() || body.is_dynamic()).then(
        || {
            Arc::new(DynamicRequest {
                origin,
                target,
                headers,
                body,
            })
        },
    )
}

/// A think-time: a duration, or `uniform|gaussian|poisson(mean, second)`; the first value
/// is the mean (what the fast path and reports use).
fn think_time(node: &ConfigValue<'_>) -> Result<(Duration, ThinkTime), ConfigError> {
    let text = match node.value {
        Value::String(text) => text.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return Err(node.error("must be a duration")),
    };
    let Some((kind, inner)) = text.strip_suffix(')').and_then(|t| t.split_once('(')) else {
        return Ok((duration_text(node, &text)?, ThinkTime::Constant));
    };
    let (first, second) = inner
        .split_once(',')
        .ok_or_else(|| node.error("a random think-time needs two durations: uniform(1s, 200ms)"))?;
    let mean = duration_text(node, first.trim())?;
    let other = duration_text(node, second.trim())?;
    let think = match kind.trim().to_ascii_lowercase().as_str() {
        "uniform" => ThinkTime::Uniform {
            mean,
            spread: other,
        },
        "gaussian" => ThinkTime::Gaussian {
            mean,
            deviation: other,
        },
        "poisson" => ThinkTime::Poisson {
            mean,
            offset: other,
        },
        other => {
            return Err(node.error(format!(
                "unknown think-time distribution {other:?}: use uniform, gaussian or poisson"
            )));
        }
    };
    Ok((mean, think))
}

/// `cookies: [{name, value, domain}]`: every user's jar starts with them.
fn cookies(node: Option<ConfigValue<'_>>) -> Result<Vec<(String, String)>, ConfigError> {
    let Some(node) = node else {
        return Ok(Vec::new());
    };
    node.items(" of cookies")?
        .iter()
        .map(|item| {
            let field = |key: &str| item.value.get(key).and_then(Value::as_str);
            match (field("name"), field("value")) {
                (Some(name), Some(value)) => Ok((name.to_owned(), value.to_owned())),
                _ => Err(item.error("a cookie needs name and value")),
            }
        })
        .collect()
}

/// The scheme and host with their JMeter functions evaluated once (`${__P(host,localhost)}`
/// gives its default, `${__env(HOST)}` the environment): the host is resolved before the run.
fn functions_at_load_time(base: &str, nobody: &mut crate::variables::UserVariables) -> String {
    if !base.contains("${") {
        return base.to_owned();
    }
    Template::parse(base).render(nobody)
}

/// The extractor variable `name` belongs to when it is one of the `name_N`, `name_matchNr`
/// or `name_ALL` a `match-no: -1` writes; else `name` itself.
fn match_list_base(name: &str) -> &str {
    match name.rsplit_once('_') {
        Some((base, suffix))
            if suffix == "matchNr"
                || suffix == "ALL"
                || (!suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit())) =>
        {
            base
        }
        _ => name,
    }
}
