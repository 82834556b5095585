//! Extractors: after a response, values taken from its body (a regular expression, a
//! JSONPath, text between two boundaries, a CSS selector over HTML or an XPath) into the user's variables, with JMeter's
//! defaults and `match-no` rules. Only requests with extractors keep their response body.

use crate::jsonpath::JaywayPath;
use regex::Regex;
use serde_json::Value;

use crate::variables::UserVariables;

/// What JMeter writes when nothing matches and no default is given.
pub const NOT_FOUND: &str = "NOT_FOUND";

/// One extractor writing one variable.
#[derive(Debug, Clone)]
pub struct Extractor {
    /// The variable it writes.
    pub variable: String,
    /// Written when nothing matches.
    pub default: String,
    /// `0`: a random match; `N`: the N-th; `-1`: every match as `var_1..var_N`.
    pub match_no: i64,
    /// What it reads (`subject`; regexp only, else the body).
    pub subject: ExtractSubject,
    /// How matches are found.
    pub kind: ExtractorKind,
}

/// What part of the response an extractor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExtractSubject {
    /// The body.
    #[default]
    Body,
    /// The headers, one `Name: value` a line.
    Headers,
    /// The status code.
    Code,
}

/// How an extractor finds its matches.
#[derive(Debug, Clone)]
pub enum ExtractorKind {
    /// `extract-regexp`: a regex and a template such as `$1$`.
    Regexp {
        /// The expression.
        regex: Regex,
        /// `$N$` group references.
        template: String,
    },
    /// `extract-jsonpath`.
    JsonPath {
        /// The compiled path.
        path: JaywayPath,
        /// With `match-no: -1`, also write `var_ALL` joined by commas.
        concat: bool,
    },
    /// `extract-boundary`: text between `left` and `right`.
    Boundary {
        /// Text before the value.
        left: String,
        /// Text after the value.
        right: String,
    },
    /// `extract-css-jquery`: elements an HTML page's CSS selector picks.
    Css {
        /// The selector.
        selector: scraper::Selector,
        /// The attribute read; `None`: the element's text.
        attribute: Option<String>,
    },
    /// `extract-xpath`: an XPath over the body read as XML, or as HTML when tolerant.
    XPath {
        /// The expression, checked when the config was read (compiled queries cannot be
        /// shared between threads, so each response compiles it again).
        expression: String,
        /// `use-tolerant-parser`: parse the body as browsers parse HTML.
        tolerant: bool,
    },
}

impl Extractor {
    /// Reads the response and writes the variable(s) into `user`.
    pub fn apply(
        &self,
        status: u16,
        headers: &http::HeaderMap,
        body: &[u8],
        user: &mut UserVariables,
    ) {
        let text = match self.subject {
            ExtractSubject::Body => String::from_utf8_lossy(body),
            ExtractSubject::Code => status.to_string().into(),
            ExtractSubject::Headers => headers
                .iter()
                .map(|(name, value)| {
                    format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes()))
                })
                .collect::<String>()
                .into(),
        };
        let matches = match &self.kind {
            ExtractorKind::Regexp { regex, template } => regex
                .captures_iter(&text)
                .map(|c| fill_template(template, &c))
                .collect(),
            ExtractorKind::JsonPath { path, .. } => match serde_json::from_slice::<Value>(body) {
                Ok(json) => path.query(&json).iter().map(|v| json_text(v)).collect(),
                Err(_) => Vec::new(),
            },
            ExtractorKind::Boundary { left, right } => boundary_matches(&text, left, right),
            ExtractorKind::Css {
                selector,
                attribute,
            } => css_matches(&text, selector, attribute.as_deref()),
            ExtractorKind::XPath {
                expression,
                tolerant,
            } => xpath_matches(&text, expression, *tolerant),
        };
        // JMeter's XPath extractor also sets the variable itself to the first match when
        // it lists them all (`match-no: -1`).
        let first = match (&self.kind, self.match_no < 0) {
            (ExtractorKind::XPath { .. }, true) => matches.first().cloned(),
            _ => None,
        };
        self.write(matches, user);
        if let Some(first) = first {
            user.values.insert(self.variable.clone(), first);
        }
    }

    fn write(&self, matches: Vec<String>, user: &mut UserVariables) {
        let name = &self.variable;
        if self.match_no < 0 {
            user.values.insert(name.clone(), self.default.clone());
            user.values
                .insert(format!("{name}_matchNr"), matches.len().to_string());
            if let ExtractorKind::JsonPath { concat: true, .. } = self.kind {
                user.values.insert(format!("{name}_ALL"), matches.join(","));
            }
            // Stale `_N` from a previous longer match list would make foreach run too far.
            let mut stale = matches.len() + 1;
            while user.values.remove(&format!("{name}_{stale}")).is_some() {
                stale += 1;
            }
            for (i, value) in matches.into_iter().enumerate() {
                user.values.insert(format!("{name}_{}", i + 1), value);
            }
            return;
        }
        let chosen = match self.match_no {
            0 if !matches.is_empty() => {
                let pick = user.random_below(matches.len() as u64);
                usize::try_from(pick).ok().and_then(|i| matches.get(i))
            }
            n => usize::try_from(n - 1).ok().and_then(|i| matches.get(i)),
        };
        let value = chosen.cloned().unwrap_or_else(|| self.default.clone());
        user.values.insert(name.clone(), value);
    }
}

/// `$N$` in `template` replaced by capture group N (empty when the group did not match).
fn fill_template(template: &str, captures: &regex::Captures<'_>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let digits = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        match (
            after[..digits].parse::<usize>(),
            after[digits..].starts_with('$'),
        ) {
            (Ok(group), true) => {
                out.push_str(captures.get(group).map_or("", |m| m.as_str()));
                rest = &after[digits + 1..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A JSON value as JMeter writes it into a variable: strings raw, `null` empty, others JSON.
fn json_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// What each element `selector` picks in an HTML page gives, as JMeter's JSoup extractor
/// reads it: the attribute's value ("" when the element lacks it) or the element's text
/// with its whitespace collapsed, trimmed.
fn css_matches(page: &str, selector: &scraper::Selector, attribute: Option<&str>) -> Vec<String> {
    let document = scraper::Html::parse_document(page);
    document
        .select(selector)
        .map(|element| match attribute {
            Some(name) => element.value().attr(name).unwrap_or("").trim().to_owned(),
            None => element
                .text()
                .flat_map(str::split_whitespace)
                .collect::<Vec<_>>()
                .join(" "),
        })
        .collect()
}

/// Whether `expression` compiles as XPath 1.0 (what JMeter's XPath Extractor evaluates);
/// `Err` says why not.
pub fn check_xpath(expression: &str) -> Result<(), String> {
    match sxd_xpath::Factory::new().build(expression) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("the expression is empty".to_owned()),
        Err(err) => Err(err.to_string()),
    }
}

/// Deeper documents are not searched: evaluating XPath walks the tree recursively, and a
/// target answering with a million nested elements must not overflow the stack.
const MAX_XML_DEPTH: usize = 512;

/// Whether `expression` holds on `page`, as JMeter's XPath Assertion reads it: a node set
/// that is not empty, or a true boolean (XPath 1.0's `boolean()`). `Err` when the page does
/// not parse or nests too deep (JMeter fails such a sample too) or the query fails.
pub fn xpath_holds(page: &str, expression: &str, tolerant: bool) -> Result<bool, String> {
    let xml = xml_of(page, tolerant).ok_or_else(|| "the response nests too deep".to_owned())?;
    let package = sxd_document::parser::parse(&xml)
        .map_err(|_| "the response is not well-formed XML".to_owned())?;
    let document = package.as_document();
    let xpath = sxd_xpath::Factory::new()
        .build(expression)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the expression is empty".to_owned())?;
    xpath
        .evaluate(&sxd_xpath::Context::new(), document.root())
        .map(|value| value.boolean())
        .map_err(|e| e.to_string())
}

/// The page as XML to search: as it is, or (`tolerant`) parsed as browsers parse HTML and
/// written back as XML; `None` when it nests deeper than the parsers are let go.
fn xml_of(page: &str, tolerant: bool) -> Option<String> {
    let xml = if tolerant {
        // The HTML parser's work grows with the square of the nesting (it looks through the
        // open elements at each new one): a hostile page must not make it take minutes.
        if nesting_depth(page) > MAX_HTML_DEPTH {
            return None;
        }
        html_as_xml(page)
    } else {
        page.to_owned()
    };
    (nesting_depth(&xml) <= MAX_XML_DEPTH).then_some(xml)
}

/// The string value of each item `expression` selects (an element's text content, an
/// attribute's value, a computed string or number); nothing when the page does not parse or
/// nests deeper than [`MAX_XML_DEPTH`].
fn xpath_matches(page: &str, expression: &str, tolerant: bool) -> Vec<String> {
    let Some(xml) = xml_of(page, tolerant) else {
        return Vec::new();
    };
    let Ok(package) = sxd_document::parser::parse(&xml) else {
        return Vec::new();
    };
    let document = package.as_document();
    let Ok(Some(xpath)) = sxd_xpath::Factory::new().build(expression) else {
        return Vec::new();
    };
    match xpath.evaluate(&sxd_xpath::Context::new(), document.root()) {
        Ok(sxd_xpath::Value::Nodeset(nodes)) => nodes
            .document_order()
            .iter()
            .map(sxd_xpath::nodeset::Node::string_value)
            .collect(),
        Ok(value) => vec![value.into_string()],
        Err(_) => Vec::new(),
    }
}

/// Pages nesting deeper than this (by [`nesting_depth`], which counts HTML's unclosed
/// `<p>` and `<li>` as nesting too) are not parsed for `use-tolerant-parser`.
const MAX_HTML_DEPTH: usize = 4096;

/// HTML's void elements: they never have a closing tag, so they open no level.
const VOID_ELEMENTS: [&[u8]; 14] = [
    b"area", b"base", b"br", b"col", b"embed", b"hr", b"img", b"input", b"link", b"meta", b"param",
    b"source", b"track", b"wbr",
];

/// An upper bound of how deep a document's elements nest: every `<` that opens an element
/// (not a closing tag, a comment, a declaration or an HTML void element) counts one level
/// down until its `/>` or a closing tag.
fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    // Whether the tag being read opened a level (its `/>` closes it again).
    let mut opened = false;
    let bytes = text.as_bytes();
    for (at, byte) in bytes.iter().enumerate() {
        match byte {
            b'<' => {
                opened = false;
                match bytes.get(at + 1) {
                    Some(b'/') => depth = depth.saturating_sub(1),
                    Some(b'!' | b'?') => {}
                    _ if is_void_element(&bytes[at + 1..]) => {}
                    _ => {
                        depth += 1;
                        deepest = deepest.max(depth);
                        opened = true;
                    }
                }
            }
            b'>' => {
                if opened && at > 0 && bytes[at - 1] == b'/' {
                    depth = depth.saturating_sub(1);
                }
                opened = false;
            }
            _ => {}
        }
    }
    deepest
}

/// Whether `tag` (what follows a `<`) starts with the name of an HTML void element.
fn is_void_element(tag: &[u8]) -> bool {
    let name_end = tag
        .iter()
        .position(|b| !b.is_ascii_alphanumeric())
        .unwrap_or(tag.len());
    let name = &tag[..name_end];
    VOID_ELEMENTS
        .iter()
        .any(|void| void.eq_ignore_ascii_case(name))
}

/// An HTML page parsed as browsers parse it, written back as well-formed XML without
/// namespaces (so `//title` finds the title, as JMeter's tolerant parser does); attributes
/// whose names XML cannot hold are left out.
fn html_as_xml(page: &str) -> String {
    let document = scraper::Html::parse_document(page);
    let mut out = String::with_capacity(page.len() + 64);
    write_element(document.root_element(), &mut out, 1);
    out
}

/// Writes `element` at nesting level `depth`; below [`MAX_XML_DEPTH`] its children are left
/// out (the writing is recursive).
fn write_element(element: scraper::ElementRef<'_>, out: &mut String, depth: usize) {
    let name = element.value().name();
    out.push('<');
    out.push_str(name);
    for (attribute, value) in element.value().attrs() {
        let valid = attribute
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && attribute.starts_with(|c: char| c.is_alphabetic() || c == '_');
        if valid {
            out.push(' ');
            out.push_str(attribute);
            out.push_str("=\"");
            out.push_str(&crate::markup::escape(value));
            out.push('"');
        }
    }
    out.push('>');
    for child in element.children() {
        match child.value() {
            scraper::Node::Text(text) => out.push_str(&crate::markup::escape(text)),
            scraper::Node::Element(_) => {
                if let Some(inner) = scraper::ElementRef::wrap(child)
                    && depth < MAX_XML_DEPTH
                {
                    write_element(inner, out, depth + 1);
                }
            }
            _ => {}
        }
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn boundary_matches(text: &str, left: &str, right: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(left) {
        let after = &rest[start + left.len()..];
        let end = if right.is_empty() {
            Some(after.len())
        } else {
            after.find(right)
        };
        let Some(end) = end else { break };
        found.push(after[..end].to_owned());
        let advance = start + left.len() + end + right.len();
        if advance == 0 || advance >= rest.len() {
            break;
        }
        rest = &rest[advance..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserVariables {
        UserVariables::new(Default::default(), 1, std::sync::Arc::default())
    }

    fn jsonpath(text: &str, match_no: i64) -> Extractor {
        Extractor {
            variable: "v".into(),
            default: NOT_FOUND.into(),
            match_no,
            subject: ExtractSubject::Body,
            kind: ExtractorKind::JsonPath {
                path: JaywayPath::parse(text)
                    .unwrap_or_else(|e| panic!("{text}: {e}"))
                    .0,
                concat: true,
            },
        }
    }

    #[test]
    fn jayway_paths_read_as_jmeter_reads_them() {
        let body = br#"[{"userId":7,"id":1,"n":null},{"userId":8,"id":2,"tags":["a"]}]"#;
        let mut u = user();
        jsonpath("$.[0].userId", 1).apply(200, &http::HeaderMap::new(), body, &mut u);
        assert_eq!(u.values["v"], "7");
        jsonpath("$[0].n", 1).apply(200, &http::HeaderMap::new(), body, &mut u);
        assert_eq!(u.values["v"], "");
        jsonpath("$[1].tags", 1).apply(200, &http::HeaderMap::new(), body, &mut u);
        assert_eq!(u.values["v"], r#"["a"]"#);
        jsonpath("$..id", -1).apply(200, &http::HeaderMap::new(), body, &mut u);
        assert_eq!(
            (u.values["v_1"].as_str(), u.values["v_2"].as_str()),
            ("1", "2")
        );
        assert_eq!(u.values["v_ALL"], "1,2");
        jsonpath("$[?(@.userId > 7)].id", 1).apply(200, &http::HeaderMap::new(), body, &mut u);
        assert_eq!(u.values["v"], "2");
        jsonpath("missing", 1).apply(200, &http::HeaderMap::new(), body, &mut u);
        assert_eq!(u.values["v"], NOT_FOUND);
    }

    #[test]
    fn xpath_is_xpath_1_and_a_deep_document_is_not_searched() {
        let xml = "<shop><book id='b1'><t>Rust</t></book><book id='b2'><t>Go</t></book></shop>";
        assert_eq!(xpath_matches(xml, "count(//book)", false), ["2"]);
        assert_eq!(xpath_matches(xml, "//book/@id", false), ["b1", "b2"]);
        assert_eq!(xpath_matches(xml, "//book[2]/t", false), ["Go"]);
        assert_eq!(xpath_matches(xml, "string(//t)", false), ["Rust"]);
        assert_eq!(xpath_matches(xml, "//t = 'Go'", false), ["true"]);
        assert!(xpath_matches("<a><b></a>", "//b", false).is_empty());
        assert!(check_xpath("//a[@").is_err());
        assert!(check_xpath("").is_err());
        // XPath 1.0: later syntax is refused when read, a later function selects nothing.
        assert!(check_xpath("for $b in //book return $b").is_err());
        assert!(xpath_matches(xml, "upper-case(//t)", false).is_empty());
        // A million nested elements: no match and no stack overflow, strict or tolerant.
        let deep = format!("{}{}", "<a>".repeat(1_000_000), "</a>".repeat(1_000_000));
        assert_eq!(nesting_depth(&deep), 1_000_000);
        assert!(xpath_matches(&deep, "//a", false).is_empty());
        let deep_html = format!("<html><body>{}x</body></html>", "<div>".repeat(1_000_000));
        assert!(xpath_matches(&deep_html, "count(/html)", true).is_empty());
        let html = format!("<html><body>{}x</body></html>", "<div>".repeat(2_000));
        assert_eq!(xpath_matches(&html, "count(/html)", true), ["1"]);
        assert_eq!(
            nesting_depth("<a><br/><b>x</b><!-- c --><br><img src=x></a>"),
            2
        );
    }

    #[test]
    fn regexp_templates_and_boundaries() {
        let mut u = user();
        let regexp = Extractor {
            variable: "r".into(),
            default: "none".into(),
            match_no: 2,
            subject: ExtractSubject::Body,
            kind: ExtractorKind::Regexp {
                regex: Regex::new(r"id=(\d+);(\w)").unwrap_or_else(|e| panic!("{e}")),
                template: "$1$-$2$".into(),
            },
        };
        regexp.apply(200, &http::HeaderMap::new(), b"id=1;a id=22;b", &mut u);
        assert_eq!(u.values["r"], "22-b");
        let boundary = Extractor {
            variable: "b".into(),
            default: NOT_FOUND.into(),
            match_no: 1,
            subject: ExtractSubject::Body,
            kind: ExtractorKind::Boundary {
                left: "<t>".into(),
                right: "</t>".into(),
            },
        };
        boundary.apply(
            200,
            &http::HeaderMap::new(),
            b"x<t>first</t><t>2</t>",
            &mut u,
        );
        assert_eq!(u.values["b"], "first");
    }
}
