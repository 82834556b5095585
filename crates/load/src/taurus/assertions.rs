//! `assert` and `assert-jsonpath` lists.

use regex::Regex;
use serde_json::Value;

use super::values::{ConfigValue, boolean, child, optional};
use crate::ConfigError;
use crate::assertion::{Assertion, JsonAssertion, Pattern, Subject};

pub(super) fn assertions(node: &ConfigValue<'_>) -> Result<Vec<Assertion>, ConfigError> {
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

pub(super) fn json_assertions(node: &ConfigValue<'_>) -> Result<Vec<JsonAssertion>, ConfigError> {
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
        let (path, _) = crate::jsonpath::JaywayPath::parse(&text)
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

/// `assert-xpath`: each item an XPath, or a mapping with `xpath`, `invert` and
/// `use-tolerant-parser` (`validate-xml`, `ignore-whitespace` and `use-namespaces` are
/// accepted and do not change the check).
pub(super) fn xpath_assertions(
    node: &ConfigValue<'_>,
) -> Result<Vec<crate::assertion::XPathAssertion>, ConfigError> {
    let items = node.items("")?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let expression = match item.value {
            Value::String(path) => path.clone(),
            Value::Object(map) => map
                .get("xpath")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| item.error("needs xpath"))?,
            _ => return Err(item.error("must be an XPath or a mapping with xpath")),
        };
        crate::extract::check_xpath(&expression)
            .map_err(|e| item.error(format!("invalid XPath {expression:?}: {e}")))?;
        let flag =
            |key: &'static str| optional(child(item, key), boolean).map(Option::unwrap_or_default);
        out.push(crate::assertion::XPathAssertion {
            expression,
            tolerant: flag("use-tolerant-parser")?,
            invert: flag("invert")?,
        });
    }
    Ok(out)
}
