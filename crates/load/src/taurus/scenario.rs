//! Scenarios and their requests: defaults a scenario gives its requests, URLs, headers,
//! bodies and think-times.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};
use serde_json::{Map, Value};

use super::assertions::{assertions, json_assertions};
use super::values::{ConfigValue, boolean, byte_size, child, duration, duration_text, optional};
use super::{Builder, keys};
use crate::ConfigError;
use crate::plan::{DEFAULT_ASSERT_BODY_LIMIT, DEFAULT_TIMEOUT, Request, Scenario};

const SCENARIO_KEYS: &[&str] = &[
    "assert-body-limit",
    "requests",
    "default-address",
    "headers",
    "timeout",
    "think-time",
    "keepalive",
    "variables",
];
const REQUEST_KEYS: &[&str] = &[
    "assert-body-limit",
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
        let defaults = ScenarioDefaults::read(node)?;
        let requests_node = child(node, "requests").ok_or_else(|| node.error("has no requests"))?;
        let items = requests_node.items("")?;
        if items.is_empty() {
            return Err(requests_node.error("is empty"));
        }
        let mut requests = Vec::with_capacity(items.len());
        for item in &items {
            requests.push(Arc::new(self.request(item, &defaults)?));
        }
        for variable in defaults.undefined.take() {
            if self.undefined_variables.insert(variable.clone()) {
                self.warn(
                    &node.path,
                    &format!(
                        "${{{variable}}} is used but no variable defines it; it is sent as written"
                    ),
                );
            }
        }
        Ok(Scenario { name, requests })
    }

    fn request(
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
        Ok(Request {
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
        })
    }

    fn think_time(&mut self, node: &ConfigValue<'_>) -> Result<Duration, ConfigError> {
        let text = match node.value {
            Value::String(text) => text.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(node.error("must be a duration")),
        };
        if let Some(inner) = text.strip_suffix(')').and_then(|t| t.split_once('(')) {
            let mean = inner.1.split(',').next().unwrap_or_default();
            let parsed = duration_text(node, mean)?;
            self.warn(
                &node.path.clone(),
                &format!(
                    "random think-time {:?} is not implemented; its mean {mean} is used",
                    inner.0
                ),
            );
            return Ok(parsed);
        }
        duration_text(node, &text)
    }

    /// The index of `label` in the plan's labels, added when new (a map, not a scan: a
    /// config may have 100,000 labels).
    fn label_index(&mut self, label: String) -> usize {
        if let Some(&index) = self.label_indexes.get(&label) {
            return index;
        }
        self.labels.push(label.clone());
        self.label_indexes.insert(label, self.labels.len() - 1);
        self.labels.len() - 1
    }
}

/// Scenario-level settings that requests inherit.
struct ScenarioDefaults {
    address: Option<String>,
    headers: HeaderMap,
    timeout: Duration,
    think_time: Duration,
    keepalive: bool,
    assert_body_limit: usize,
    variables: BTreeMap<String, String>,
    /// `${name}`s used that no variable defines.
    undefined: RefCell<BTreeSet<String>>,
}

impl ScenarioDefaults {
    fn read(node: &ConfigValue<'_>) -> Result<Self, ConfigError> {
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

    /// Replaces `${name}` with the variable's value; unknown names stay as written, and are
    /// remembered for a warning.
    fn substitute(&self, text: &str) -> String {
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

struct ResolvedUrl {
    authority: String,
    host: String,
    port: u16,
    https: bool,
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
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(format!(
                "{full:?}: the URL must start with http:// or https://"
            ));
        }
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{full:?} has no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
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
        https,
        target,
    })
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
