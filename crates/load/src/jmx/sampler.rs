//! An HTTP sampler read into a Taurus request, with what its scope gives it: HTTP Request
//! Defaults, headers, basic authorization, timers (its think-time), assertions and
//! extractors.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{Map, Value, json};

use super::Reader;
use super::checks;
use super::scenario::{GroupScenario, Scope, is_http_defaults, substitute};
use super::tree::{Element, Prop};
use crate::ConfigError;

/// Methods whose arguments JMeter sends as a form body (others put them in the query).
const BODY_METHODS: &[&str] = &["POST", "PUT", "PATCH"];

/// An argument of a sampler (`HTTPArgument`).
struct Argument {
    name: String,
    value: String,
    encode: bool,
    equals: bool,
}

impl<'t> Reader<'t> {
    /// The Taurus request for HTTP sampler `sampler`, with `scope` the elements in its
    /// scope (outermost first, its own children last).
    pub(super) fn request(
        &mut self,
        sampler: &Element,
        scope: &Scope<'t>,
        group: &GroupScenario,
    ) -> Result<Value, ConfigError> {
        let defaults: Vec<&Element> = scope
            .iter()
            .copied()
            .filter(|e| is_http_defaults(e))
            .collect();
        // The sampler's own field, else the nearest default's.
        let field = |name: &str| -> String {
            let own = sampler.string(name).trim();
            if !own.is_empty() {
                return own.to_owned();
            }
            defaults
                .iter()
                .rev()
                .map(|d| d.string(name).trim())
                .find(|v| !v.is_empty())
                .unwrap_or("")
                .to_owned()
        };
        let method = match sampler.string("HTTPSampler.method").trim() {
            "" => "GET".to_owned(),
            m => m.to_ascii_uppercase(),
        };
        let mut arguments: Vec<Argument> = defaults
            .iter()
            .flat_map(|d| arguments(d))
            .chain(arguments(sampler))
            .collect();
        let raw_body = sampler.flag("HTTPSampler.postBodyRaw", false);
        let mut headers = self.headers(scope, &group.variables);
        let mut request = Map::new();
        let mut url = self.url(sampler, &|name| substitute(&field(name), &group.variables))?;
        let body_method = BODY_METHODS.contains(&method.as_str());
        let files = self.files(sampler)?;
        if raw_body {
            let body: String = arguments.drain(..).map(|a| a.value).collect();
            request.insert("body".into(), json!(body));
        } else if !files.is_empty() || sampler.flag("HTTPSampler.DO_MULTIPART_POST", false) {
            let (content_type, body) = multipart(&arguments, &files);
            headers.entry("Content-Type".into()).or_insert(content_type);
            request.insert("body".into(), json!(body));
        } else if !arguments.is_empty() {
            let encoded = encode_arguments(&arguments);
            if body_method {
                let has_type = headers
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case("content-type"));
                if !has_type {
                    headers.insert(
                        "Content-Type".into(),
                        "application/x-www-form-urlencoded".into(),
                    );
                }
                request.insert("body".into(), json!(encoded));
            } else {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&encoded);
            }
        }
        if let Some(authorization) = self.authorization(scope, &url, &group.variables) {
            headers.insert("Authorization".into(), authorization);
        }
        request.insert("url".into(), json!(url));
        request.insert("method".into(), json!(method));
        request.insert("label".into(), json!(sampler.name));
        if !headers.is_empty() {
            request.insert("headers".into(), json!(headers));
        }
        let follow = sampler.flag("HTTPSampler.follow_redirects", false)
            || sampler.flag("HTTPSampler.auto_redirects", false);
        request.insert("follow-redirects".into(), json!(follow));
        request.insert(
            "keepalive".into(),
            json!(sampler.flag("HTTPSampler.use_keepalive", false)),
        );
        if let Some(timeout) = timeout(&field) {
            request.insert("timeout".into(), json!(format!("{timeout}ms")));
        }
        if let Some(think) = self.think_time(scope, &group.variables) {
            request.insert("think-time".into(), json!(think));
        }
        checks::apply(self, scope, &mut request);
        Ok(Value::Object(request))
    }

    fn url(
        &mut self,
        sampler: &Element,
        field: &dyn Fn(&str) -> String,
    ) -> Result<String, ConfigError> {
        let path = field("HTTPSampler.path");
        if path.starts_with("http://") || path.starts_with("https://") {
            return Ok(path);
        }
        let domain = field("HTTPSampler.domain");
        // `${url}` as the path and no server: the whole URL comes at run time.
        if domain.is_empty() && path.starts_with("${") {
            return Ok(path);
        }
        if domain.is_empty() {
            return Err(super::invalid(
                self.where_(sampler),
                "has no server name (HTTPSampler.domain), and no HTTP Request Defaults in its scope give one",
            ));
        }
        let port = field("HTTPSampler.port");
        let protocol = match field("HTTPSampler.protocol").to_ascii_lowercase().as_str() {
            "" if port == "443" => "https".to_owned(),
            "" => "http".to_owned(),
            p => p.to_owned(),
        };
        let authority = if port.is_empty() {
            domain
        } else {
            format!("{domain}:{port}")
        };
        let path = if path.starts_with('/') || path.is_empty() {
            path
        } else {
            format!("/{path}")
        };
        Ok(format!("{protocol}://{authority}{path}"))
    }

    /// The headers of the Header Managers in scope; a nearer manager's header replaces
    /// an outer one of the same name.
    fn headers(
        &self,
        scope: &Scope<'t>,
        variables: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for manager in scope.iter().filter(|e| e.class == "HeaderManager") {
            for header in manager.collection(None, "HeaderManager.headers") {
                let name = header.string("Header.name").trim();
                if name.is_empty() {
                    continue;
                }
                out.retain(|k, _| !k.eq_ignore_ascii_case(name));
                out.insert(
                    name.to_owned(),
                    substitute(header.string("Header.value"), variables),
                );
            }
        }
        out
    }

    /// `Basic …` from the first Authorization Manager entry whose URL prefixes `url`.
    fn authorization(
        &mut self,
        scope: &Scope<'t>,
        url: &str,
        variables: &BTreeMap<String, String>,
    ) -> Option<String> {
        let manager = scope.iter().rev().find(|e| e.class == "AuthManager")?;
        let entry = manager
            .collection(None, "AuthManager.auth_list")
            .iter()
            .find(|a| url.starts_with(a.string("Authorization.url").trim()))?;
        let mechanism = entry.string("Authorization.mechanism").trim();
        if !matches!(mechanism, "" | "BASIC" | "BASIC_DIGEST") {
            self.warn(
                manager,
                &format!("{mechanism} authorization is not supported; only BASIC is sent"),
            );
            return None;
        }
        let user = substitute(entry.string("Authorization.username"), variables);
        let password = substitute(entry.string("Authorization.password"), variables);
        if user.contains("${") || password.contains("${") {
            self.warn(
                manager,
                "a user or password from a run-time variable is not supported; no Authorization header is sent",
            );
            return None;
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Some(format!("Basic {token}"))
    }

    /// The files a sampler uploads: (parameter name, MIME type, file name, text).
    fn files(
        &mut self,
        sampler: &Element,
    ) -> Result<Vec<(String, String, String, String)>, ConfigError> {
        let mut out = Vec::new();
        for file in sampler.collection(Some("HTTPsampler.Files"), "HTTPFileArgs.files") {
            let written = file.string("File.path").trim();
            if written.is_empty() {
                continue;
            }
            let found = self.find_file(written).ok_or_else(|| {
                super::invalid(
                    self.where_(sampler),
                    format!("file to upload {written:?} not found (looked beside the plan and in the working directory)"),
                )
            })?;
            let text = super::read_text(&found).map_err(|message| {
                super::invalid(
                    self.where_(sampler),
                    format!("file to upload {written:?}: {message}"),
                )
            })?;
            let name = std::path::Path::new(written)
                .file_name()
                .map_or_else(|| written.to_owned(), |n| n.to_string_lossy().into_owned());
            let mime = match file.string("File.mimetype").trim() {
                "" => "application/octet-stream".to_owned(),
                m => m.to_owned(),
            };
            out.push((
                file.string("File.paramname").trim().to_owned(),
                mime,
                name,
                text,
            ));
        }
        Ok(out)
    }

    /// The timers in scope as one Taurus think-time: constant parts add up; the first
    /// random timer gives the distribution.
    fn think_time(
        &mut self,
        scope: &Scope<'t>,
        variables: &BTreeMap<String, String>,
    ) -> Option<String> {
        let mut constant = 0.0;
        let mut random: Option<(&str, f64, f64)> = None;
        let mut any = false;
        for timer in scope {
            let number = |name: &str| -> Option<f64> {
                substitute(timer.string(name), variables)
                    .trim()
                    .parse::<f64>()
                    .ok()
            };
            let delay = number("ConstantTimer.delay");
            let range = number("RandomTimer.range").unwrap_or(0.0);
            let (kind, a, b) = match timer.class.as_str() {
                "ConstantTimer" => ("constant", delay, 0.0),
                // mean ± spread: delay + range/2 ± range/2.
                "UniformRandomTimer" => ("uniform", delay.map(|d| d + range / 2.0), range / 2.0),
                "GaussianRandomTimer" => ("gaussian", delay, range),
                // Taurus poisson(mean, offset): lambda = mean - offset.
                "PoissonRandomTimer" => ("poisson", delay.map(|d| d + range), delay.unwrap_or(0.0)),
                _ => continue,
            };
            let Some(a) = a else {
                self.warn(
                    timer,
                    "its delay is not a number (a run-time variable?): the timer is ignored",
                );
                continue;
            };
            any = true;
            match (kind, &random) {
                ("constant", _) => constant += a,
                (_, None) => random = Some((kind, a, b)),
                (_, Some(_)) => {
                    self.warn(timer, "a second random timer in scope adds its mean only");
                    constant += a;
                }
            }
        }
        if !any {
            return None;
        }
        Some(match random {
            None => format!("{}ms", constant.round()),
            Some(("poisson", mean, offset)) => format!(
                "poisson({}ms, {}ms)",
                (mean + constant).round(),
                (offset + constant).round()
            ),
            Some((kind, mean, second)) => {
                format!(
                    "{kind}({}ms, {}ms)",
                    (mean + constant).round(),
                    second.round()
                )
            }
        })
    }
}

/// The arguments of a sampler or defaults element.
fn arguments(element: &Element) -> Vec<Argument> {
    element
        .collection(Some("HTTPsampler.Arguments"), "Arguments.arguments")
        .iter()
        .map(argument)
        .collect()
}

fn argument(prop: &Prop) -> Argument {
    let name = match prop.string("Argument.name") {
        "" => prop.name.clone(),
        n => n.to_owned(),
    };
    Argument {
        name,
        value: prop.string("Argument.value").to_owned(),
        encode: prop
            .get("HTTPArgument.always_encode")
            .is_some_and(|p| p.text.trim() == "true"),
        equals: prop
            .get("HTTPArgument.use_equals")
            .is_none_or(|p| p.text.trim() != "false"),
    }
}

/// `name=value&…`, encoded where the argument asks; `${…}` kept for run time.
fn encode_arguments(arguments: &[Argument]) -> String {
    arguments
        .iter()
        .map(|a| {
            let (name, value) = if a.encode {
                (
                    encode_keeping_references(&a.name),
                    encode_keeping_references(&a.value),
                )
            } else {
                (a.name.clone(), a.value.clone())
            };
            if value.is_empty() && !a.equals {
                name
            } else {
                format!("{name}={value}")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// URL-encodes `text` except its `${…}` references.
fn encode_keeping_references(text: &str) -> String {
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
}

/// A `multipart/form-data` body of the arguments and files, with its content type.
fn multipart(
    arguments: &[Argument],
    files: &[(String, String, String, String)],
) -> (String, String) {
    const BOUNDARY: &str = "peregrine-jmx-boundary-7MA4YWxkTrZu0gW";
    let mut body = String::new();
    for a in arguments {
        body.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{}\r\n",
            a.name, a.value
        ));
    }
    for (param, mime, name, text) in files {
        body.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{param}\"; filename=\"{name}\"\r\nContent-Type: {mime}\r\n\r\n{text}\r\n"
        ));
    }
    body.push_str(&format!("--{BOUNDARY}--\r\n"));
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// Connect plus response timeout in milliseconds, when either is set (a connect timeout
/// alone gets Peregrine's default response time on top).
fn timeout(field: &dyn Fn(&str) -> String) -> Option<u64> {
    let read = |name: &str| field(name).parse::<u64>().ok().filter(|t| *t > 0);
    match (
        read("HTTPSampler.connect_timeout"),
        read("HTTPSampler.response_timeout"),
    ) {
        (None, None) => None,
        (Some(c), None) => Some(c.saturating_add(
            u64::try_from(crate::plan::DEFAULT_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
        )),
        (c, Some(r)) => Some(c.unwrap_or(0).saturating_add(r)),
    }
}
