//! Run-time variables: `${name}` and the common JMeter functions (`${__Random(1,9)}`,
//! `${__UUID()}`, …) in URLs, headers and bodies, parsed once into a [`Template`] and
//! rendered per virtual user. An undefined `${name}` is sent as written, as JMeter does.
//! Over 600 lines: the template parser and every function it renders share the user's
//! variables, counters and random source kept here.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use rand_distr::{Distribution as _, Normal, Poisson};

/// Most nesting of `${…}` inside function arguments.
const MAX_NESTING: usize = 8;
/// Longest string `__RandomString` makes, so a config cannot ask for gigabytes per request.
const MAX_RANDOM_STRING: usize = 64 * 1024;
/// Longest value a variable may hold (`set-variables`, a data-source field): a value that
/// grows from itself (`x: ${x}${x}`) stops the run at this size instead of doubling until
/// memory runs out.
pub const MAX_VARIABLE_BYTES: usize = 1024 * 1024;
/// Longest text a template renders to (a URL, header or body); longer is a `render` error
/// of the request, which is not sent.
pub const MAX_RENDERED_BYTES: usize = 16 * 1024 * 1024;

/// A rendering that grew past its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong {
    /// The limit it grew past, in bytes.
    pub limit: usize,
}

/// Text with `${…}` references, split once into pieces.
#[derive(Debug, Clone, Default)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Variable(String),
    Function(Function),
}

/// A JMeter function call.
#[derive(Debug, Clone)]
struct Function {
    name: String,
    args: Vec<Template>,
    /// The call as written, sent when the function is not implemented.
    written: String,
}

/// JMeter functions implemented here; any other `${__name(…)}` is sent as written.
pub const FUNCTIONS: &[&str] = &[
    "__Random",
    "__RandomString",
    "__UUID",
    "__time",
    "__threadNum",
    "__counter",
    "__P",
    "__property",
    "__env",
    "__urlencode",
    "__intSum",
    "__longSum",
    "__chooseRandom",
    "__jexl3",
    "__groovy",
    "__javaScript",
    "__V",
];

impl Template {
    /// Parses `text`; never fails (unbalanced `${` stays text).
    pub fn parse(text: &str) -> Self {
        parse_at_depth(text, 0)
    }

    /// Whether rendering can give anything but the text itself.
    pub fn is_dynamic(&self) -> bool {
        self.pieces.iter().any(|p| !matches!(p, Piece::Text(_)))
    }

    /// Variable names referenced (not function names), for warnings.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Variable(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The variables its function calls store their results in (`${__Random(1,9,n)}`: `n`).
    pub fn stored_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            if let Piece::Function(f) = piece {
                let texts: Vec<&str> = f
                    .args
                    .iter()
                    .map(|a| a.plain_text().unwrap_or(""))
                    .collect();
                if let Some(i) = store_position(&f.name, &texts)
                    && let Some(name) = texts.get(i).map(|n| n.trim())
                    && !name.is_empty()
                {
                    out.push(name.to_owned());
                }
                for arg in &f.args {
                    out.extend(arg.stored_names());
                }
            }
        }
        out
    }

    /// The text, when it holds no reference.
    fn plain_text(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Text(text)] => Some(text),
            _ => None,
        }
    }

    /// Function names referenced that are not implemented, for warnings.
    pub fn unknown_functions(&self) -> Vec<String> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            if let Piece::Function(f) = piece {
                if !FUNCTIONS.contains(&f.name.as_str()) {
                    out.push(f.name.clone());
                }
                for arg in &f.args {
                    out.extend(arg.unknown_functions());
                }
            }
        }
        out
    }

    /// The text with every reference replaced for `user`, cut at [`MAX_RENDERED_BYTES`]
    /// (conditions, loop counts: where a longer text means nothing anyway).
    pub fn render(&self, user: &mut UserVariables) -> String {
        let mut out = String::new();
        let _ = self.render_into(user, &mut out, MAX_RENDERED_BYTES);
        out
    }

    /// The text with every reference replaced for `user`, or [`TooLong`] when it would be
    /// over `limit` bytes.
    pub fn try_render(&self, user: &mut UserVariables, limit: usize) -> Result<String, TooLong> {
        let mut out = String::new();
        self.render_into(user, &mut out, limit)?;
        Ok(out)
    }

    fn render_into(
        &self,
        user: &mut UserVariables,
        out: &mut String,
        limit: usize,
    ) -> Result<(), TooLong> {
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Variable(name) => match user.values.get(name) {
                    Some(value) => out.push_str(value),
                    None => {
                        let _ = write!(out, "${{{name}}}");
                    }
                },
                Piece::Function(function) => out.push_str(&call(function, user)),
            }
            if out.len() > limit {
                let mut cut = limit;
                while !out.is_char_boundary(cut) {
                    cut -= 1;
                }
                out.truncate(cut);
                return Err(TooLong { limit });
            }
        }
        Ok(())
    }
}

fn parse_at_depth(text: &str, depth: usize) -> Template {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(end) = closing_brace(&rest[start + 2..]) else {
            break;
        };
        literal.push_str(&rest[..start]);
        let inner = &rest[start + 2..start + 2 + end];
        let written = &rest[start..start + 3 + end];
        rest = &rest[start + 3 + end..];
        let piece = if inner.trim_start().starts_with("__") && depth < MAX_NESTING {
            Piece::Function(function(inner.trim(), written, depth))
        } else {
            Piece::Variable(inner.trim().to_owned())
        };
        if !literal.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut literal)));
        }
        pieces.push(piece);
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Template { pieces }
}

/// The index of the `}` closing a `${`, counting nested `${…}`.
fn closing_brace(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn function(inner: &str, written: &str, depth: usize) -> Function {
    let (name, args) = match inner.split_once('(') {
        Some((name, args)) => (name.trim(), args.strip_suffix(')').unwrap_or(args)),
        None => (inner, ""),
    };
    let args = if args.is_empty() {
        Vec::new()
    } else {
        split_args(args)
            .iter()
            .map(|a| parse_at_depth(a, depth + 1))
            .collect()
    };
    Function {
        name: name.to_owned(),
        args,
        written: written.to_owned(),
    }
}

/// Splits function arguments at commas not escaped (`\,`) and not inside a nested `${…}`.
fn split_args(text: &str) -> Vec<String> {
    let mut args = vec![String::new()];
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let current = args.last_mut();
        match c {
            '\\' if chars.peek() == Some(&',') => {
                chars.next();
                current.into_iter().for_each(|a| a.push(','));
            }
            ',' if depth == 0 => args.push(String::new()),
            _ => {
                if c == '{' {
                    depth += 1;
                } else if c == '}' {
                    depth = depth.saturating_sub(1);
                }
                current.into_iter().for_each(|a| a.push(c));
            }
        }
    }
    args
}

/// What the functions of one execution share: the global `__counter`.
#[derive(Debug, Default)]
pub struct SharedCounters {
    global: AtomicU64,
}

/// One virtual user's variables, numbers and random source.
#[derive(Debug)]
pub struct UserVariables {
    /// Name to value.
    pub values: HashMap<String, String>,
    /// 1-based user number (`__threadNum`).
    pub thread_number: u64,
    counter: u64,
    random: Random,
    shared: std::sync::Arc<SharedCounters>,
    /// JMeter properties (`modules.jmeter.properties`, `scenario.properties`) for `__P`.
    properties: std::sync::Arc<HashMap<String, String>>,
    /// `settings.env`, which Taurus exports to JMeter's environment, for `__env`; `None`:
    /// removed (a `null` value).
    environment: std::sync::Arc<HashMap<String, Option<String>>>,
}

impl UserVariables {
    /// A user's variables, starting from `initial`.
    pub fn new(
        initial: HashMap<String, String>,
        thread_number: u64,
        shared: std::sync::Arc<SharedCounters>,
    ) -> Self {
        Self {
            values: initial,
            thread_number,
            counter: 0,
            random: Random::seeded(thread_number),
            shared,
            properties: std::sync::Arc::default(),
            environment: std::sync::Arc::default(),
        }
    }

    /// The same, with `settings.env` over the process environment for `__env`.
    pub fn with_environment(
        mut self,
        environment: std::sync::Arc<HashMap<String, Option<String>>>,
    ) -> Self {
        self.environment = environment;
        self
    }

    /// The same, reading `__P` and `__property` from `properties`.
    pub fn with_properties(mut self, properties: std::sync::Arc<HashMap<String, String>>) -> Self {
        self.properties = properties;
        self
    }

    /// A random number from 0 to `bound - 1` (0 when `bound` is 0).
    pub fn random_below(&mut self, bound: u64) -> u64 {
        self.random.below(bound)
    }

    /// The user's random source.
    pub fn random(&mut self) -> &mut Random {
        &mut self.random
    }
}

fn call(function: &Function, user: &mut UserVariables) -> String {
    let args: Vec<String> = function.args.iter().map(|a| a.render(user)).collect();
    let arg = |i: usize| args.get(i).map(|a| a.trim()).unwrap_or_default();
    let value = match function.name.as_str() {
        "__Random" => {
            let (low, high) = (
                arg(0).parse::<i64>().unwrap_or(0),
                arg(1).parse::<i64>().unwrap_or(0),
            );
            let (low, high) = (low.min(high), low.max(high));
            let span = high.abs_diff(low).saturating_add(1);
            let value = low.saturating_add_unsigned(user.random.below(span));
            value.to_string()
        }
        "__RandomString" => random_string(user, arg(0), args.get(1)),
        "__UUID" => uuid(&mut user.random),
        "__time" => time(arg(0)),
        "__threadNum" => user.thread_number.to_string(),
        "__counter" => {
            let value = if arg(0).eq_ignore_ascii_case("false") {
                user.shared.global.fetch_add(1, Ordering::Relaxed) + 1
            } else {
                user.counter += 1;
                user.counter
            };
            value.to_string()
        }
        "__P" => match user.properties.get(arg(0)) {
            Some(value) => value.clone(),
            None => default_or(args.get(1), "1"),
        },
        "__property" => match user.properties.get(arg(0)) {
            Some(value) => value.clone(),
            None => default_or(args.get(2), arg(0)),
        },
        "__env" => {
            let value = match user.environment.get(arg(0)) {
                Some(set) => set.clone(),
                None => std::env::var(arg(0)).ok(),
            };
            value.unwrap_or_else(|| default_or(args.get(2), arg(0)))
        }
        // The expressions real configs put in conditions read the same in JEXL, Groovy and
        // JavaScript: evaluate that subset, send any other script as written.
        "__jexl3" | "__groovy" | "__javaScript" => match crate::condition::evaluate_to_text(arg(0))
        {
            Ok(value) => value,
            Err(_) => return function.written.clone(),
        },
        "__urlencode" => url_encode(args.first().map_or("", String::as_str)),
        // `${__V(name_${i})}`: the variable whose name the argument renders to.
        "__V" => match user.values.get(arg(0)) {
            Some(value) => value.clone(),
            None => default_or(args.get(1), arg(0)),
        },
        "__intSum" | "__longSum" => sum(&args),
        "__chooseRandom" if args.len() >= 2 => {
            let choices = &args[..args.len() - 1];
            let pick = user.random.below(choices.len() as u64);
            usize::try_from(pick)
                .ok()
                .and_then(|i| choices.get(i))
                .cloned()
                .unwrap_or_default()
        }
        _ => return function.written.clone(),
    };
    let texts: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Some(store_in) = store_position(&function.name, &texts).map(arg)
        && !store_in.is_empty()
    {
        user.values.insert(store_in.to_owned(), value.clone());
    }
    value
}

/// Which argument of function `name` names the variable its result is also stored in.
fn store_position(name: &str, args: &[&str]) -> Option<usize> {
    match name {
        "__Random" | "__RandomString" => Some(2),
        "__time" | "__counter" | "__property" | "__env" | "__jexl3" | "__groovy"
        | "__javaScript" => Some(1),
        "__chooseRandom" if args.len() >= 2 => Some(args.len() - 1),
        "__intSum" | "__longSum"
            if args.len() > 2 && args.last()?.trim().parse::<i64>().is_err() =>
        {
            Some(args.len() - 1)
        }
        _ => None,
    }
}

fn default_or(given: Option<&String>, fallback: &str) -> String {
    given.map_or_else(|| fallback.to_owned(), |g| g.trim().to_owned())
}

fn sum(args: &[String]) -> String {
    let numbers = match args.last() {
        Some(last) if args.len() > 2 && last.trim().parse::<i64>().is_err() => {
            &args[..args.len() - 1]
        }
        _ => args,
    };
    let total = numbers
        .iter()
        .filter_map(|n| n.trim().parse::<i64>().ok())
        .fold(0i64, i64::saturating_add);
    total.to_string()
}

fn random_string(user: &mut UserVariables, length: &str, chars: Option<&String>) -> String {
    let length = length.parse::<usize>().unwrap_or(0).min(MAX_RANDOM_STRING);
    let alphabet: Vec<char> = match chars.map(|c| c.chars().collect::<Vec<_>>()) {
        Some(c) if !c.is_empty() => c,
        _ => ('a'..='z').chain('A'..='Z').chain('0'..='9').collect(),
    };
    (0..length)
        .map(|_| {
            let i = user.random.below(alphabet.len() as u64);
            alphabet[usize::try_from(i).unwrap_or(0) % alphabet.len()]
        })
        .collect()
}

/// A type-4 UUID from the user's random source.
fn uuid(random: &mut Random) -> String {
    let mut bytes = [0u8; 16];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&random.bits().to_le_bytes()[..chunk.len()]);
    }
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// `__time`: epoch milliseconds, `/1000` seconds, or a date format (UTC): `YMD`, `HMS`,
/// `YMDHMS` or the SimpleDateFormat letters `yyyy MM dd HH mm ss SSS`.
fn time(format: &str) -> String {
    format_time(SystemTime::now(), format)
}

/// [`time`] at `now`.
fn format_time(now: SystemTime, format: &str) -> String {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    match format {
        "" => return since_epoch.as_millis().to_string(),
        "/1000" => return since_epoch.as_secs().to_string(),
        _ => {}
    }
    let format = match format {
        "YMD" => "yyyyMMdd",
        "HMS" => "HHmmss",
        "YMDHMS" => "yyyyMMdd-HHmmss",
        other => other,
    };
    // `YYYY-MM-DDTHH:MM:SS.mmmZ`: the calendar is humantime's.
    let stamp = humantime::format_rfc3339_millis(now).to_string();
    let part = |range: std::ops::Range<usize>| stamp.get(range).unwrap_or("00").to_owned();
    format
        .replace("yyyy", &part(0..4))
        .replace("MM", &part(5..7))
        .replace("dd", &part(8..10))
        .replace("HH", &part(11..13))
        .replace("mm", &part(14..16))
        .replace("ss", &part(17..19))
        .replace("SSS", &part(20..23))
}

/// Percent-encodes everything but unreserved characters, as a form value.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// Percent-encodes the bytes a request target may not carry (`{`, `}`, spaces, non-ASCII…),
/// so a literal `${name}` in a path is sent as JMeter users see it, not refused.
pub fn encode_target(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_graphic() && !b"{}\"<>\\^`|".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    if out.is_empty() { "/".to_owned() } else { out }
}

/// The load generator's random source: rand's small fast generator, seeded per user from
/// the clock (load generation needs spread, not secrecy), with rand_distr's samplers for
/// think-times.
#[derive(Debug, Clone)]
pub struct Random(SmallRng);

impl Random {
    /// A source seeded from the clock and `salt`.
    pub fn seeded(salt: u64) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self(SmallRng::seed_from_u64(
            nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ))
    }

    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0.random()
    }

    /// A number from 0 to `bound - 1` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.0.random_range(0..bound)
        }
    }

    /// A number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0.random()
    }

    /// A normal deviate of `mean` and standard deviation `deviation` (the mean when the
    /// deviation is not a finite, non-negative number).
    pub fn normal(&mut self, mean: f64, deviation: f64) -> f64 {
        Normal::new(mean, deviation).map_or(mean, |normal| normal.sample(&mut self.0))
    }

    /// A Poisson deviate of mean `lambda` (0 for a mean of 0 or less).
    pub fn poisson(&mut self, lambda: f64) -> f64 {
        if lambda <= 0.0 {
            return 0.0;
        }
        Poisson::new(lambda).map_or(lambda, |poisson| poisson.sample(&mut self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(values: &[(&str, &str)]) -> UserVariables {
        let values = values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        UserVariables::new(values, 3, std::sync::Arc::default())
    }

    #[test]
    fn variables_functions_and_undefined_names_render() {
        let mut u = user(&[("id", "42")]);
        let t = Template::parse("/u/${id}/${ id }?x=${missing}&t=${__threadNum}");
        assert_eq!(t.render(&mut u), "/u/42/42?x=${missing}&t=3");
        let r = Template::parse("${__Random(5,7,picked)}").render(&mut u);
        assert!(["5", "6", "7"].contains(&r.as_str()));
        assert_eq!(u.values["picked"], r);
        assert_eq!(Template::parse("${__UUID()}").render(&mut u).len(), 36);
        let c = Template::parse("${__counter(TRUE)}");
        assert_eq!(
            (c.render(&mut u), c.render(&mut u)),
            ("1".into(), "2".into())
        );
        assert_eq!(Template::parse("${__P(x)}").render(&mut u), "1");
        assert_eq!(
            Template::parse("${__javaScript(1+1)}").render(&mut u),
            "${__javaScript(1+1)}"
        );
        assert_eq!(
            Template::parse("${__intSum(2,${id},s)}").render(&mut u),
            "44"
        );
        let new_year_2024 = UNIX_EPOCH + std::time::Duration::from_secs(19_723 * 86_400 + 3_723);
        assert_eq!(
            format_time(new_year_2024, "yyyy-MM-dd HH:mm:ss.SSS"),
            "2024-01-01 01:02:03.000"
        );
        assert_eq!(format_time(new_year_2024, "YMDHMS"), "20240101-010203");
    }
}
