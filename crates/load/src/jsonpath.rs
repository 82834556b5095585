//! JSONPath as JMeter and Taurus users write it: Jayway's dialect, read into the RFC 9535
//! form `serde_json_path` evaluates. Jayway accepts a dot before a bracket (`$.[0]`,
//! `$..[*]`), a path without `$` (Taurus adds `$.`), dotted names RFC 9535 would have
//! quoted (`$.first-name`), filters in parentheses with its own operators (`=~ /re/i`,
//! `in`, `nin`, `size`, `empty`, `@.list.length()`), `[(@.length-1)]`, and a function at
//! the end of a path (`length()`, `size()`, `min()`, `max()`, `avg()`, `sum()`,
//! `stddev()`, `first()`, `last()`, `keys()`), evaluated here on what the path found.
//! Over 600 lines: half of it is the table of Jayway expressions and their results that
//! proves the translation, kept beside it.

use std::borrow::Cow;

use serde_json::Value;

/// A parsed Jayway JSONPath.
#[derive(Debug, Clone)]
pub struct JaywayPath {
    /// The RFC 9535 query.
    query: serde_json_path::JsonPath,
    /// The query names at most one node (no wildcard, descendant, filter, slice or
    /// union): a function then reads that node, else the list of every node found.
    definite: bool,
    /// The function at the end, if any.
    function: Option<Function>,
}

/// A Jayway function at the end of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Length,
    Min,
    Max,
    Avg,
    Sum,
    Stddev,
    First,
    Last,
    Keys,
}

impl Function {
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "length" | "size" => Self::Length,
            "min" => Self::Min,
            "max" => Self::Max,
            "avg" => Self::Avg,
            "sum" => Self::Sum,
            "stddev" => Self::Stddev,
            "first" => Self::First,
            "last" => Self::Last,
            "keys" => Self::Keys,
            _ => return None,
        })
    }
}

/// What a Jayway path was read as.
#[derive(Debug)]
pub struct Translated {
    /// The RFC 9535 text.
    pub rfc: String,
    /// A trailing `.` was dropped (`$.` read as `$`): worth a warning, Jayway refuses it.
    pub trailing_dot: bool,
}

impl JaywayPath {
    /// Reads `text`; the error says what is wrong (or not supported) and how it was read.
    pub fn parse(text: &str) -> Result<(Self, Translated), String> {
        let mut scanner = Scanner::new(text.trim());
        let mut rfc = String::from("$");
        if !scanner.eat('$') && !scanner.rest().starts_with(['.', '[']) {
            // Taurus reads `token` as `$.token`.
            scanner.text = format!(".{}", scanner.text);
        }
        let path = scanner.segments(&mut rfc, false)?;
        if scanner.peek().is_some() {
            return Err(format!(
                "unexpected {:?} at character {}",
                scanner.rest(),
                scanner.at + 1
            ));
        }
        let query =
            serde_json_path::JsonPath::parse(&rfc).map_err(|e| format!("{e} (read as {rfc:?})"))?;
        Ok((
            Self {
                query,
                definite: path.definite,
                function: path.function,
            },
            Translated {
                rfc,
                trailing_dot: path.trailing_dot,
            },
        ))
    }

    /// Every value the path gives in `document`, in document order.
    pub fn query<'a>(&self, document: &'a Value) -> Vec<Cow<'a, Value>> {
        let found = self.query.query(document).all();
        let Some(function) = self.function else {
            return found.into_iter().map(Cow::Borrowed).collect();
        };
        let list;
        let input = if self.definite {
            match found.first() {
                Some(value) => *value,
                None => return Vec::new(),
            }
        } else {
            list = Value::Array(found.into_iter().cloned().collect());
            &list
        };
        apply(function, input).map(Cow::Owned).into_iter().collect()
    }
}

/// `function` on `input`, as Jayway computes it; `None` where Jayway fails (an aggregate
/// of no numbers, the length of a number).
fn apply(function: Function, input: &Value) -> Option<Value> {
    let items = input.as_array();
    let numbers = || -> Vec<f64> {
        items
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect()
    };
    let float = |x: f64| serde_json::Number::from_f64(x).map(Value::Number);
    match function {
        Function::Length => match input {
            Value::Array(items) => Some(items.len().into()),
            Value::Object(map) => Some(map.len().into()),
            Value::String(text) => Some(text.chars().count().into()),
            _ => None,
        },
        Function::First => items?.first().cloned(),
        Function::Last => items?.last().cloned(),
        Function::Keys => Some(Value::Array(
            input
                .as_object()?
                .keys()
                .cloned()
                .map(Value::String)
                .collect(),
        )),
        Function::Sum => {
            let values = numbers();
            (!values.is_empty()).then(|| float(values.iter().sum()))?
        }
        Function::Min => float(numbers().into_iter().reduce(f64::min)?),
        Function::Max => float(numbers().into_iter().reduce(f64::max)?),
        Function::Avg => {
            let values = numbers();
            (!values.is_empty()).then(|| float(values.iter().sum::<f64>() / values.len() as f64))?
        }
        Function::Stddev => {
            let values = numbers();
            if values.is_empty() {
                return None;
            }
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let squares = values.iter().map(|x| x * x).sum::<f64>() / n;
            float((squares - mean * mean).max(0.0).sqrt())
        }
    }
}

/// What reading a path's segments found out.
struct PathShape {
    definite: bool,
    function: Option<Function>,
    trailing_dot: bool,
}

/// Characters that end a path inside a filter.
const FILTER_STOPS: &str = " \t\r\n=!<>&|)],";

struct Scanner {
    text: String,
    at: usize,
}

impl Scanner {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            at: 0,
        }
    }

    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn eat_str(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.at += s.len();
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    /// Reads segments after the root into `out`. In a filter (`in_filter`) the path ends
    /// at an operator or a space; at the top it must take the whole text.
    fn segments(&mut self, out: &mut String, in_filter: bool) -> Result<PathShape, String> {
        let mut shape = PathShape {
            definite: true,
            function: None,
            trailing_dot: false,
        };
        loop {
            if shape.function.is_some() && matches!(self.peek(), Some('.' | '[')) {
                return Err("a function such as length() must end the path".to_owned());
            }
            if self.eat_str("..") {
                shape.definite = false;
                out.push_str("..");
                match self.peek() {
                    Some('[') => self.bracket(out, &mut shape)?,
                    Some('*') => {
                        self.at += 1;
                        out.push('*');
                    }
                    _ => {
                        let name = self.name(in_filter);
                        if name.is_empty() {
                            return Err("`..` must be followed by a name, `*` or `[`".to_owned());
                        }
                        push_name(out, &name, "");
                    }
                }
            } else if self.eat('.') {
                match self.peek() {
                    Some('[') => self.bracket(out, &mut shape)?,
                    Some('*') => {
                        self.at += 1;
                        shape.definite = false;
                        out.push_str(".*");
                    }
                    None if !in_filter => {
                        shape.trailing_dot = true;
                        return Ok(shape);
                    }
                    _ => {
                        let name = self.name(in_filter);
                        if name.is_empty() {
                            return Err(format!(
                                "a name is missing after `.` at {:?}",
                                self.rest()
                            ));
                        }
                        if self.eat_str("()") {
                            shape.function = Some(Function::named(&name).ok_or_else(|| {
                                format!("the function {name}() is not supported (length, size, min, max, avg, sum, stddev, first, last, keys are)")
                            })?);
                        } else {
                            push_name(out, &name, ".");
                        }
                    }
                }
            } else if self.peek() == Some('[') {
                self.bracket(out, &mut shape)?;
            } else {
                return Ok(shape);
            }
        }
    }

    /// A dotted name: up to the next `.`, `[`, `(` (or, in a filter, an operator).
    fn name(&mut self, in_filter: bool) -> String {
        let rest = self.rest();
        let end = rest
            .find(|c: char| {
                c == '.' || c == '[' || c == '(' || (in_filter && FILTER_STOPS.contains(c))
            })
            .unwrap_or(rest.len());
        let name = rest[..end].to_owned();
        self.at += end;
        name
    }

    /// A `[…]` selector, translated.
    fn bracket(&mut self, out: &mut String, shape: &mut PathShape) -> Result<(), String> {
        let content = self.balanced()?;
        let inner = content.trim();
        if let Some(filter) = inner.strip_prefix('?') {
            shape.definite = false;
            let filter = filter.trim();
            let filter = strip_outer_parens(filter).unwrap_or(filter);
            out.push_str("[?");
            out.push_str(&translate_filter(filter)?);
            out.push(']');
            return Ok(());
        }
        if inner.starts_with('(') {
            // Jayway's script `[(@.length-N)]`: the N-th element from the end.
            let script: String = inner.chars().filter(|c| !c.is_whitespace()).collect();
            let back = script
                .strip_prefix("(@.length-")
                .and_then(|s| s.strip_suffix(')'))
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| {
                    format!("the script [{inner}] is not supported (only [(@.length-N)] is)")
                })?;
            out.push_str(&format!("[-{back}]"));
            return Ok(());
        }
        let items = split_top_level(inner, ',');
        if items.len() > 1 {
            shape.definite = false;
        }
        for item in &items {
            let item = item.trim();
            let quoted = item.len() >= 2
                && ((item.starts_with('\'') && item.ends_with('\''))
                    || (item.starts_with('"') && item.ends_with('"')));
            let index = item.parse::<i64>().is_ok();
            let slice = item.contains(':')
                && item
                    .split(':')
                    .all(|p| p.trim().is_empty() || p.trim().parse::<i64>().is_ok());
            if item == "*" || slice {
                shape.definite = false;
            } else if !(quoted || index) {
                return Err(format!(
                    "[{inner}]: a bracket holds quoted names, indexes, slices, `*` or a filter `?(…)`"
                ));
            }
        }
        out.push('[');
        out.push_str(&items.iter().map(|i| i.trim()).collect::<Vec<_>>().join(","));
        out.push(']');
        Ok(())
    }

    /// The text inside the `[…]` that comes next, quotes respected.
    fn balanced(&mut self) -> Result<String, String> {
        let rest = self.rest();
        let end = matching(rest)
            .filter(|_| rest.starts_with('['))
            .ok_or_else(|| format!("{rest:?}: no matching `]`"))?;
        let inner = rest[1..end].to_owned();
        self.at += end + 1;
        Ok(inner)
    }
}

/// The index of the bracket or parenthesis closing the one `text` starts with, quotes
/// respected.
fn matching(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '[' | '(' => depth += 1,
            ']' | ')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `inner` when `text` is `(inner)` as a whole.
fn strip_outer_parens(text: &str) -> Option<&str> {
    (text.starts_with('(') && matching(text) == Some(text.len() - 1))
        .then(|| &text[1..text.len() - 1])
}

/// `text` split at `separator` outside quotes and brackets.
fn split_top_level(text: &str, separator: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let (mut depth, mut quote, mut escaped) = (0i32, None::<char>, false);
    for c in text.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
        } else {
            match c {
                '\'' | '"' => quote = Some(c),
                '[' | '(' => depth += 1,
                ']' | ')' => depth -= 1,
                c if c == separator && depth == 0 => {
                    parts.push(String::new());
                    continue;
                }
                _ => {}
            }
        }
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

/// Appends a member name: `.name` (`..name` with an empty `dot`) when RFC 9535 reads it
/// bare, else `['name']`.
fn push_name(out: &mut String, name: &str, dot: &str) {
    let mut chars = name.chars();
    let bare = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || !c.is_ascii())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii());
    if bare {
        out.push_str(dot);
        out.push_str(name);
    } else {
        out.push_str("['");
        out.push_str(&name.replace('\\', "\\\\").replace('\'', "\\'"));
        out.push_str("']");
    }
}

/// A Jayway filter expression in RFC 9535 form.
fn translate_filter(filter: &str) -> Result<String, String> {
    let mut scanner = Scanner::new(filter);
    let mut out = String::new();
    while let Some(c) = scanner.peek() {
        match c {
            '\'' | '"' => {
                let rest = scanner.rest();
                let end = string_end(rest).ok_or_else(|| format!("{rest:?}: unclosed string"))?;
                out.push_str(&rest[..end]);
                scanner.at += end;
            }
            '@' | '$' => {
                scanner.at += 1;
                let mut query = String::from(c);
                let shape = scanner.segments(&mut query, true)?;
                let operand = match shape.function {
                    None => query,
                    Some(Function::Length) => format!("length({query})"),
                    Some(_) => {
                        return Err("in a filter only length() and size() are supported".to_owned());
                    }
                };
                out.push_str(&jayway_operator(&mut scanner, &operand)?);
            }
            _ => {
                out.push(c);
                scanner.at += c.len_utf8();
            }
        }
    }
    Ok(out)
}

/// The end (exclusive) of the quoted string `text` starts with.
fn string_end(text: &str) -> Option<usize> {
    let quote = text.chars().next()?;
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == quote {
            return Some(i + 1);
        }
    }
    None
}

/// `operand` with the Jayway-only operator that follows it (`=~`, `in`, `nin`, `size`,
/// `empty`) rewritten; other operators are left for the caller to copy.
fn jayway_operator(scanner: &mut Scanner, operand: &str) -> Result<String, String> {
    let start = scanner.at;
    scanner.skip_spaces();
    if scanner.eat_str("=~") {
        scanner.skip_spaces();
        if !scanner.eat('/') {
            return Err("`=~` needs a /regular expression/".to_owned());
        }
        let rest = scanner.rest();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '/' {
                end = Some(i);
                break;
            }
        }
        let end = end.ok_or("`=~`: the regular expression has no closing /")?;
        let pattern = rest[..end].replace("\\/", "/");
        scanner.at += end + 1;
        let flags = scanner.name(true);
        let prefix = if flags.contains('i') { "(?i)" } else { "" };
        let literal = format!("{prefix}{pattern}")
            .replace('\\', "\\\\")
            .replace('\'', "\\'");
        // Jayway matches the whole string, as RFC 9535's match() does.
        return Ok(format!("match({operand}, '{literal}')"));
    }
    for word in [
        "nin", "in", "size", "empty", "subsetof", "anyof", "noneof", "contains",
    ] {
        let rest = scanner.rest();
        let follows = rest
            .strip_prefix(word)
            .is_some_and(|after| after.starts_with(|c: char| c.is_whitespace() || c == '['));
        if !follows {
            continue;
        }
        scanner.at += word.len();
        scanner.skip_spaces();
        return match word {
            "in" | "nin" => {
                let list = scanner.balanced()?;
                let (op, join) = if word == "in" {
                    ("==", " || ")
                } else {
                    ("!=", " && ")
                };
                let terms: Vec<String> = split_top_level(&list, ',')
                    .iter()
                    .filter(|t| !t.trim().is_empty())
                    .map(|t| format!("{operand} {op} {}", t.trim()))
                    .collect();
                Ok(match (terms.is_empty(), word) {
                    (true, "in") => "false".to_owned(),
                    (true, _) => "true".to_owned(),
                    _ => format!("({})", terms.join(join)),
                })
            }
            "size" => {
                let n = scanner.name(true);
                let n: u64 = n
                    .parse()
                    .map_err(|_| format!("`size` needs a number, not {n:?}"))?;
                Ok(format!("length({operand}) == {n}"))
            }
            "empty" => match scanner.name(true).as_str() {
                "true" => Ok(format!("length({operand}) == 0")),
                "false" => Ok(format!("length({operand}) > 0")),
                other => Err(format!("`empty` needs true or false, not {other:?}")),
            },
            _ => Err(format!("the filter operator `{word}` is not supported")),
        };
    }
    scanner.at = start;
    Ok(operand.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: &str = r#"{
        "store": {
            "book": [
                {"category": "reference", "author": "Nigel Rees", "title": "Sayings", "price": 8.95},
                {"category": "fiction", "author": "Evelyn Waugh", "title": "Sword", "price": 12.99},
                {"category": "fiction", "author": "Herman Melville", "title": "Moby Dick", "isbn": "0-553", "price": 8.99},
                {"category": "fiction", "author": "J. R. R. Tolkien", "title": "The Lord", "isbn": "0-395", "price": 22.99}
            ],
            "bicycle": {"color": "red", "price": 19.95},
            "first-name": "Ann",
            "0": "zero",
            "with space": 1
        },
        "users": [{"userId": 1, "id": 1, "tags": ["a", "b", "c"]}, {"userId": 2, "id": 2, "tags": []}],
        "expensive": 10
    }"#;

    /// The results of `path` on STORE, each as compact JSON.
    fn run(path: &str) -> Vec<String> {
        let document: Value = serde_json::from_str(STORE).unwrap_or_default();
        let (path, _) = JaywayPath::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        path.query(&document)
            .iter()
            .map(|v| v.to_string())
            .collect()
    }

    #[test]
    fn jayway_expressions_give_what_jayway_gives() {
        let table: &[(&str, &[&str])] = &[
            ("$.store.bicycle.color", &[r#""red""#]),
            ("store.bicycle.color", &[r#""red""#]),
            ("$['store']['bicycle']['color']", &[r#""red""#]),
            (r#"$["store"].bicycle["color"]"#, &[r#""red""#]),
            ("$.store.['bicycle'].color", &[r#""red""#]),
            ("$.users.[0].userId", &["1"]),
            ("$.users[-1].id", &["2"]),
            ("$.users[(@.length-1)].id", &["2"]),
            ("$.store.book[1:3].price", &["12.99", "8.99"]),
            (
                "$.store.book[-2:].title",
                &[r#""Moby Dick""#, r#""The Lord""#],
            ),
            ("$.store.book[:1].title", &[r#""Sayings""#]),
            ("$.store.book[0,2].price", &["8.95", "8.99"]),
            (
                "$.store.book[*].author",
                &[
                    r#""Nigel Rees""#,
                    r#""Evelyn Waugh""#,
                    r#""Herman Melville""#,
                    r#""J. R. R. Tolkien""#,
                ],
            ),
            ("$..isbn", &[r#""0-553""#, r#""0-395""#]),
            ("$.store.first-name", &[r#""Ann""#]),
            ("$.store.0", &[r#""zero""#]),
            ("$.store['with space']", &["1"]),
            (
                "$.store.book[?(@.price < 10)].title",
                &[r#""Sayings""#, r#""Moby Dick""#],
            ),
            (
                "$.store.book[?(@.isbn)].title",
                &[r#""Moby Dick""#, r#""The Lord""#],
            ),
            (
                "$.store.book[?(@.price > $.expensive)].price",
                &["12.99", "22.99"],
            ),
            (
                "$.store.book[?(@.category == 'fiction' && @.price < 13)].price",
                &["12.99", "8.99"],
            ),
            (
                "$.store.book[?(@.author =~ /.*melville/i)].price",
                &["8.99"],
            ),
            ("$.store.book[?(@.author =~ /Nigel.*/)].price", &["8.95"]),
            (
                "$.store.book[?(@.category in ['reference'])].price",
                &["8.95"],
            ),
            (
                "$.store.book[?(@.category nin ['fiction'])].price",
                &["8.95"],
            ),
            ("$.users[?(@.tags size 3)].id", &["1"]),
            ("$.users[?(@.tags empty true)].id", &["2"]),
            ("$.users[?(@.tags.length() > 1)].id", &["1"]),
            ("$.store.book.length()", &["4"]),
            ("$.store.book[*].price.length()", &["4"]),
            ("$.users[0].tags.size()", &["3"]),
            ("$.store.book[*].price.min()", &["8.95"]),
            ("$.store.book[*].price.max()", &["22.99"]),
            ("$.users[*].id.sum()", &["3.0"]),
            ("$.users[*].id.avg()", &["1.5"]),
            ("$.users[*].id.stddev()", &["0.5"]),
            ("$.users[0].tags.first()", &[r#""a""#]),
            ("$.users[0].tags.last()", &[r#""c""#]),
            ("$.store.bicycle.keys()", &[r#"["color","price"]"#]),
            ("$.missing", &[]),
            ("$.users[5]", &[]),
        ];
        for (path, expected) in table {
            assert_eq!(run(path), *expected, "{path}");
        }
        // `$..[*]`: every member and element, at every depth.
        assert_eq!(run("$..[*]").len(), run("$..*").len());
        assert!(run("$..[*]").len() > 30);
        assert_eq!(run("$.[0]"), run("$[0]"));
    }

    #[test]
    fn unsupported_forms_are_refused_with_a_reason() {
        for (path, reason) in [
            ("$.a.foo()", "not supported"),
            ("$.a.length().b", "must end the path"),
            ("$[?(@.a anyof [1])]", "not supported"),
            ("$[(@.foo)]", "script"),
            ("$[unquoted]", "quoted names"),
            ("$.a[", "no matching"),
        ] {
            let error = JaywayPath::parse(path).err().unwrap_or_default();
            assert!(error.contains(reason), "{path}: {error}");
        }
        let (_, read) = JaywayPath::parse("$.").unwrap_or_else(|e| panic!("{e}"));
        assert!(read.trailing_dot);
        assert_eq!(read.rfc, "$");
    }
}
