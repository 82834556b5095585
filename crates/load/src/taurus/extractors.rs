//! Request extractors (`extract-regexp`, `extract-jsonpath`, `extract-boundary`,
//! `extract-css-jquery`, `extract-xpath`) read into [`Extractor`]s with Taurus's defaults.

use regex::Regex;
use serde_json::Value;

use super::Builder;
use super::values::{ConfigValue, child};
use crate::ConfigError;
use crate::extract::{ExtractSubject, Extractor, ExtractorKind, NOT_FOUND};
use crate::jsonpath::JaywayPath;

impl Builder {
    /// The extractors of a request.
    pub(super) fn extractors(
        &mut self,
        request: &ConfigValue<'_>,
    ) -> Result<Vec<Extractor>, ConfigError> {
        let mut out = Vec::new();
        for (key, main, match_no) in [
            ("extract-regexp", "regexp", 1),
            ("extract-jsonpath", "jsonpath", 0),
            ("extract-boundary", "left", 1),
            ("extract-css-jquery", "expression", 0),
            ("extract-xpath", "xpath", -1),
        ] {
            let Some(node) = child(request, key) else {
                continue;
            };
            for (variable, spec) in entries(&node)? {
                let spec_node = ConfigValue {
                    value: spec,
                    path: format!("{}.{variable}", node.path),
                };
                out.push(self.extractor(key, main, match_no, variable, &spec_node)?);
            }
        }
        Ok(out)
    }

    fn extractor(
        &mut self,
        key: &str,
        main: &str,
        default_match_no: i64,
        variable: &str,
        node: &ConfigValue<'_>,
    ) -> Result<Extractor, ConfigError> {
        let field = |name: &str| -> Option<String> {
            match node.value {
                Value::String(s) if name == main => Some(s.clone()),
                Value::Object(map) => map.get(name).map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }),
                _ => None,
            }
        };
        let expression = field(main).ok_or_else(|| node.error(format!("{key} needs `{main}`")))?;
        let match_no = match field("match-no") {
            Some(text) => text
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= -1)
                .ok_or_else(|| node.error("match-no must be -1, 0 or a positive number"))?,
            None => default_match_no,
        };
        let kind = match key {
            "extract-regexp" => ExtractorKind::Regexp {
                regex: Regex::new(&expression).map_err(|e| {
                    node.error(format!(
                        "invalid regexp {expression:?} (Rust regex syntax): {e}"
                    ))
                })?,
                template: match field("template") {
                    Some(t) if t.trim().parse::<u32>().is_ok() => format!("${}$", t.trim()),
                    Some(t) => t,
                    None => "$1$".into(),
                },
            },
            "extract-jsonpath" => {
                let (path, read) = JaywayPath::parse(&expression)
                    .map_err(|e| node.error(format!("invalid JSONPath {expression:?}: {e}")))?;
                if read.trailing_dot {
                    self.warn(
                        &node.path,
                        "JSONPath `$.` is read as `$` (the whole document)",
                    );
                }
                ExtractorKind::JsonPath {
                    path,
                    concat: field("concat").is_some_and(|c| c == "true"),
                }
            }
            "extract-css-jquery" => ExtractorKind::Css {
                selector: scraper::Selector::parse(&expression)
                    .map_err(|e| node.error(format!("invalid CSS selector {expression:?}: {e}")))?,
                attribute: field("attribute").filter(|a| !a.trim().is_empty()),
            },
            "extract-xpath" => {
                crate::extract::check_xpath(&expression)
                    .map_err(|e| node.error(format!("invalid XPath {expression:?}: {e}")))?;
                ExtractorKind::XPath {
                    expression,
                    tolerant: field("use-tolerant-parser").is_some_and(|t| t == "true"),
                }
            }
            _ => ExtractorKind::Boundary {
                left: expression,
                right: field("right").ok_or_else(|| node.error("needs `right`"))?,
            },
        };
        let subject = match (key, field("subject").as_deref()) {
            ("extract-regexp", Some("headers")) => ExtractSubject::Headers,
            ("extract-regexp", Some("http-code")) => ExtractSubject::Code,
            _ => ExtractSubject::Body,
        };
        Ok(Extractor {
            subject,
            variable: variable.to_owned(),
            default: field("default").unwrap_or_else(|| NOT_FOUND.to_owned()),
            match_no,
            kind,
        })
    }
}

fn entries<'a>(node: &ConfigValue<'a>) -> Result<Vec<(&'a str, &'a Value)>, ConfigError> {
    let map = node
        .value
        .as_object()
        .ok_or_else(|| node.error("must be a mapping of variable names to extractors"))?;
    Ok(map.iter().map(|(k, v)| (k.as_str(), v)).collect())
}
