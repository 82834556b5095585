//! Assertions and extractors in a sampler's scope read into the Taurus request keys that
//! carry them (`assert`, `assert-jsonpath`, `extract-*`).

use serde_json::{Map, Value, json};

use super::Reader;
use super::scenario::Scope;
use super::tree::Element;

/// Response Assertion test type bits.
const MATCH: u32 = 1;
const CONTAINS: u32 = 2;
const NOT: u32 = 4;
const EQUALS: u32 = 8;
const SUBSTRING: u32 = 16;
const OR: u32 = 32;

/// Adds the assertions and extractors of `scope` to `request`.
pub(super) fn apply(reader: &mut Reader<'_>, scope: &Scope<'_>, request: &mut Map<String, Value>) {
    let mut asserts = Vec::new();
    let mut json_asserts = Vec::new();
    let mut xpath_asserts = Vec::new();
    for element in scope {
        match element.class.as_str() {
            "ResponseAssertion" => asserts.extend(reader.response_assertion(element)),
            "JSONPathAssertion" => json_asserts.push(json_assertion(element)),
            // XPath2 reads XML only; the first one may parse HTML as browsers do.
            "XPathAssertion" | "XPath2Assertion" => xpath_asserts.push(json!({
                "xpath": element.string("XPath.xpath").trim(),
                "invert": element.flag("XPath.negate", false),
                "use-tolerant-parser": element.class == "XPathAssertion"
                    && element.flag("XPath.tolerant", false),
            })),
            "DurationAssertion" => {
                // 0 (or blank) disables the check, as in JMeter.
                let limit = element
                    .string("DurationAssertion.duration")
                    .trim()
                    .parse::<u64>();
                if let Ok(limit) = limit
                    .map_err(|_| ())
                    .and_then(|l| if l > 0 { Ok(l) } else { Err(()) })
                {
                    let tighter = request
                        .get("jmx-max-duration")
                        .and_then(Value::as_str)
                        .and_then(|t| t.trim_end_matches("ms").parse::<u64>().ok())
                        .is_none_or(|current| limit < current);
                    if tighter {
                        request.insert("jmx-max-duration".into(), json!(format!("{limit}ms")));
                    }
                }
            }
            "SizeAssertion" => {
                let op = match element.string("SizeAssertion.operator").trim() {
                    "2" => "!=",
                    "3" => ">",
                    "4" => "<",
                    "5" => ">=",
                    "6" => "<=",
                    _ => "=",
                };
                if let Ok(bytes) = element.string("SizeAssertion.size").trim().parse::<u64>() {
                    request.insert("jmx-size".into(), json!({"op": op, "bytes": bytes}));
                }
            }
            _ => {}
        }
        if let Some((key, variable, spec)) = extractor(element) {
            let entry = request
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = entry {
                map.insert(variable, spec);
            }
        }
        if element.class == "JSONPostProcessor" {
            for (variable, spec) in json_extractors(element) {
                let entry = request
                    .entry("extract-jsonpath")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = entry {
                    map.insert(variable, spec);
                }
            }
        }
    }
    if !asserts.is_empty() {
        request.insert("assert".into(), Value::Array(asserts));
    }
    if !json_asserts.is_empty() {
        request.insert("assert-jsonpath".into(), Value::Array(json_asserts));
    }
    if !xpath_asserts.is_empty() {
        request.insert("assert-xpath".into(), Value::Array(xpath_asserts));
    }
}

impl Reader<'_> {
    fn response_assertion(&mut self, element: &Element) -> Option<Value> {
        let subject = match element.string("Assertion.test_field").trim() {
            "Assertion.response_data" | "" => "body",
            "Assertion.response_code" => "http-code",
            "Assertion.response_headers" => "headers",
            other => {
                self.warn(
                    element,
                    &format!("the field {other} is not checked by Peregrine (body, code and headers are); skipped"),
                );
                return None;
            }
        };
        let strings: Vec<&str> = ["Asserion.test_strings", "Assertion.test_strings"]
            .iter()
            .flat_map(|name| element.collection(None, name))
            .map(|p| p.text.as_str())
            .collect();
        if strings.is_empty() {
            return None;
        }
        let test = element
            .string("Assertion.test_type")
            .trim()
            .parse::<u32>()
            .unwrap_or(CONTAINS);
        let pattern = |text: &str| -> String {
            if test & MATCH != 0 {
                format!(r"\A(?:{text})\z")
            } else if test & EQUALS != 0 {
                format!(r"\A{}\z", regex::escape(text))
            } else if test & SUBSTRING != 0 {
                regex::escape(text)
            } else {
                text.to_owned()
            }
        };
        let patterns: Vec<String> = if test & OR != 0 {
            vec![
                strings
                    .iter()
                    .map(|s| format!("(?:{})", pattern(s)))
                    .collect::<Vec<_>>()
                    .join("|"),
            ]
        } else {
            strings.iter().map(|s| pattern(s)).collect()
        };
        Some(json!({
            "contains": patterns,
            "subject": subject,
            "regexp": true,
            "not": test & NOT != 0,
        }))
    }
}

fn json_assertion(element: &Element) -> Value {
    let mut item = json!({
        "jsonpath": element.string("JSON_PATH").trim(),
        "expect-null": element.flag("EXPECT_NULL", false),
        "invert": element.flag("INVERT", false),
        "validate": element.flag("JSONVALIDATION", false),
    });
    if element.flag("JSONVALIDATION", false) && !element.flag("EXPECT_NULL", false) {
        item["expected-value"] = json!(element.string("EXPECTED_VALUE"));
        item["regexp"] = json!(element.flag("ISREGEX", false));
    }
    item
}

/// A match number as JMeter writes it ("" is its default, `default`).
fn match_no(text: &str, default: i64) -> i64 {
    text.trim().parse().unwrap_or(default)
}

/// A single-variable extractor: (Taurus key, variable, spec).
fn extractor(element: &Element) -> Option<(String, String, Value)> {
    let s = |name: &str| element.string(name).to_owned();
    let (key, variable, spec) = match element.class.as_str() {
        "RegexExtractor" => {
            let subject = match element.string("RegexExtractor.useHeaders").trim() {
                "true" => "headers",
                "code" => "http-code",
                _ => "body",
            };
            let default = if element.flag("RegexExtractor.default_empty_value", false) {
                String::new()
            } else {
                s("RegexExtractor.default")
            };
            (
                "extract-regexp",
                s("RegexExtractor.refname"),
                json!({
                    "regexp": s("RegexExtractor.regex"),
                    "template": s("RegexExtractor.template"),
                    "match-no": match_no(element.string("RegexExtractor.match_number"), 0),
                    "default": default,
                    "subject": subject,
                }),
            )
        }
        "JSONPathExtractor" => (
            "extract-jsonpath",
            s("VAR"),
            json!({
                "jsonpath": s("JSONPATH"),
                "default": s("DEFAULT"),
                "match-no": match_no(element.string("MATCH_NUMBER"), 0),
            }),
        ),
        "XPathExtractor" | "XPath2Extractor" => {
            let p = if element.class == "XPathExtractor" {
                "XPathExtractor"
            } else {
                "XPathExtractor2"
            };
            (
                "extract-xpath",
                s(&format!("{p}.refname")),
                json!({
                    "xpath": s(&format!("{p}.xpathQuery")),
                    "default": s(&format!("{p}.default")),
                    "match-no": match_no(element.string(&format!("{p}.matchNumber")), 0),
                    "use-tolerant-parser": element.flag(&format!("{p}.tolerant"), false).to_string(),
                }),
            )
        }
        "BoundaryExtractor" => (
            "extract-boundary",
            s("BoundaryExtractor.refname"),
            json!({
                "left": s("BoundaryExtractor.lboundary"),
                "right": s("BoundaryExtractor.rboundary"),
                "default": s("BoundaryExtractor.default"),
                "match-no": match_no(element.string("BoundaryExtractor.match_number"), 0),
            }),
        ),
        "HtmlExtractor" => (
            "extract-css-jquery",
            s("HtmlExtractor.refname"),
            json!({
                "expression": s("HtmlExtractor.expr"),
                "attribute": s("HtmlExtractor.attribute"),
                "default": s("HtmlExtractor.default"),
                "match-no": match_no(element.string("HtmlExtractor.match_number"), 0),
            }),
        ),
        _ => return None,
    };
    let variable = variable.trim().to_owned();
    (!variable.is_empty()).then(|| (key.to_owned(), variable, spec))
}

/// The JSON Extractor's variables: names, paths, match numbers and defaults are lists
/// separated by `;`, matched by position.
fn json_extractors(element: &Element) -> Vec<(String, Value)> {
    let list = |name: &str| -> Vec<String> {
        element
            .string(name)
            .split(';')
            .map(|s| s.trim().to_owned())
            .collect()
    };
    let names = list("JSONPostProcessor.referenceNames");
    let paths = list("JSONPostProcessor.jsonPathExprs");
    let numbers = list("JSONPostProcessor.match_numbers");
    let defaults = list("JSONPostProcessor.defaultValues");
    let concat = element.flag("JSONPostProcessor.compute_concat", false);
    names
        .iter()
        .enumerate()
        .filter(|(_, n)| !n.is_empty())
        .map(|(i, name)| {
            let get = |v: &Vec<String>| v.get(i).cloned().unwrap_or_default();
            (
                name.clone(),
                json!({
                    "jsonpath": get(&paths),
                    "match-no": match_no(&get(&numbers), 0),
                    "default": get(&defaults),
                    "concat": concat.to_string(),
                }),
            )
        })
        .collect()
}
