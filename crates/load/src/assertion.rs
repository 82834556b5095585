//! Checks on responses (Taurus `assert` and `assert-jsonpath`), and which parts of a response
//! they need kept.

use regex::Regex;
use serde_json::Value;

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
    pub path: crate::jsonpath::JaywayPath,
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
                let nodes = self.path.query(&document);
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

/// A Taurus `assert-xpath` item (JMeter's XPath Assertion).
#[derive(Debug, Clone)]
pub struct XPathAssertion {
    /// The XPath, checked when the config was read.
    pub expression: String,
    /// Parse the body as HTML, as browsers do (`use-tolerant-parser`).
    pub tolerant: bool,
    /// Pass when the XPath does not hold instead.
    pub invert: bool,
}

impl XPathAssertion {
    /// `None` when `body` passes; otherwise why it failed.
    pub fn check(&self, body: &[u8]) -> Option<String> {
        let page = String::from_utf8_lossy(body);
        match crate::extract::xpath_holds(&page, &self.expression, self.tolerant) {
            Err(why) => Some(format!("assertion failed: {}: {why}", self.expression)),
            Ok(holds) if holds == self.invert => Some(if self.invert {
                format!(
                    "assertion failed: {} matched, and invert is set",
                    self.expression
                )
            } else {
                format!("assertion failed: {} matched nothing", self.expression)
            }),
            Ok(_) => None,
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

/// Which parts of a response the assertions read, so only those are kept: keeping headers
/// or a body costs time on the per-request hot path.
#[derive(Debug, Clone, Copy)]
pub struct ResponseParts {
    /// The headers, for header assertions.
    pub headers: bool,
    /// The body, for body, JSONPath and XPath assertions.
    pub body: bool,
    /// Only `Set-Cookie` and `Location`, for the cookie jar and redirects: two name
    /// comparisons per header, so a response without them costs nothing more.
    pub session_headers: bool,
    /// The largest body kept; a longer one fails the request instead of filling memory.
    pub body_limit: usize,
}

impl ResponseParts {
    /// What `assertions` and `json_assertions` read.
    pub fn read_by(
        assertions: &[Assertion],
        json_assertions: &[JsonAssertion],
        body_limit: usize,
    ) -> Self {
        Self {
            headers: assertions.iter().any(|a| a.subject == Subject::Headers),
            body: !json_assertions.is_empty()
                || assertions.iter().any(|a| a.subject == Subject::Body),
            session_headers: false,
            body_limit,
        }
    }
}

/// The first failed assertion, described.
pub fn check_assertions(
    assertions: &[Assertion],
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Option<String> {
    for assertion in assertions {
        let text = match assertion.subject {
            Subject::Body => String::from_utf8_lossy(body).into_owned(),
            Subject::HttpCode => status.to_string(),
            Subject::Headers => headers
                .iter()
                .map(|(name, value)| format!("{name}: {}\n", value.to_str().unwrap_or_default()))
                .collect(),
        };
        let subject = match assertion.subject {
            Subject::Body => "body",
            Subject::Headers => "headers",
            Subject::HttpCode => "http-code",
        };
        for pattern in &assertion.patterns {
            let found = pattern.is_match(&text);
            if found == assertion.invert {
                let verb = if assertion.invert {
                    "contains"
                } else {
                    "does not contain"
                };
                return Some(format!(
                    "assertion failed: {subject} {verb} {:?}",
                    pattern.as_str()
                ));
            }
        }
    }
    None
}

/// JMeter's Size Assertion: the response body's size compared with a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeCheck {
    /// The comparison: `=`, `!=`, `>`, `<`, `>=` or `<=`.
    pub op: &'static str,
    /// The size compared with.
    pub bytes: u64,
}

impl SizeCheck {
    /// The check for JMeter's operator text, if it is one.
    pub fn new(op: &str, bytes: u64) -> Option<Self> {
        let op = ["=", "!=", ">", "<", ">=", "<="]
            .into_iter()
            .find(|o| *o == op.trim())?;
        Some(Self { op, bytes })
    }

    /// `None` when a body of `size` bytes passes; otherwise why it failed.
    pub fn check(&self, size: u64) -> Option<String> {
        let passes = match self.op {
            "=" => size == self.bytes,
            "!=" => size != self.bytes,
            ">" => size > self.bytes,
            "<" => size < self.bytes,
            ">=" => size >= self.bytes,
            _ => size <= self.bytes,
        };
        (!passes).then(|| {
            format!(
                "assertion failed: the body is {size} bytes, expected {} {}",
                self.op, self.bytes
            )
        })
    }
}
