//! The `if` conditions real Taurus configs use, evaluated after `${…}` substitution as
//! JMeter's JavaScript would for this subset: string, number and boolean literals,
//! `== != === !== < <= > >= && || !`, parentheses, `"…".length`, `parseInt(…)` and
//! `parseFloat(…)`. Anything else is an error, which JMeter (and Peregrine) treat as false.
//! The script functions (`__jexl3`, `__groovy`, `__javaScript`) evaluate the same subset.

/// A JavaScript value of the subset.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Number(f64),
    Bool(bool),
}

impl Value {
    fn number(&self) -> f64 {
        match self {
            Self::Number(n) => *n,
            Self::Bool(b) => f64::from(u8::from(*b)),
            Self::Text(t) if t.trim().is_empty() => 0.0,
            Self::Text(t) => t.trim().parse().unwrap_or(f64::NAN),
        }
    }

    fn truthy(&self) -> bool {
        match self {
            Self::Bool(b) => *b,
            Self::Number(n) => *n != 0.0 && !n.is_nan(),
            Self::Text(t) => !t.is_empty(),
        }
    }
}

/// Evaluates `condition`: `Ok(true)` only when the result is the boolean `true` (JMeter
/// requires the result to read exactly "true"); `Err` names what is not supported.
pub fn evaluate(condition: &str) -> Result<bool, String> {
    Ok(evaluate_to_text(condition)? == "true")
}

/// Evaluates `expression` to the text a script function returns for it (`true`, `7`,
/// `abc`); `Err` names what is not supported.
pub fn evaluate_to_text(expression: &str) -> Result<String, String> {
    let tokens = tokenize(expression)?;
    let mut parser = Parser { tokens, at: 0 };
    let value = parser.or()?;
    if parser.at != parser.tokens.len() {
        return Err(format!("unexpected {:?}", parser.tokens[parser.at]));
    }
    Ok(match value {
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{n:.0}"),
        Value::Number(n) => n.to_string(),
        Value::Text(t) => t,
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(Value),
    Name(String),
    Op(&'static str),
}

const OPERATORS: &[&str] = &[
    "===", "!==", "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", ".",
];

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut rest = text.trim_start();
    while let Some(c) = rest.chars().next() {
        if c == '"' || c == '\'' {
            let end = rest[1..]
                .find(c)
                .ok_or_else(|| "unterminated string".to_owned())?;
            tokens.push(Token::Literal(Value::Text(rest[1..=end].to_owned())));
            rest = &rest[end + 2..];
        } else if c.is_ascii_digit()
            || (c == '-' && rest[1..].starts_with(|d: char| d.is_ascii_digit()))
        {
            let end = rest[1..]
                .find(|d: char| !(d.is_ascii_digit() || d == '.'))
                .map_or(rest.len(), |e| e + 1);
            let number = rest[..end]
                .parse()
                .map_err(|_| format!("bad number {:?}", &rest[..end]))?;
            tokens.push(Token::Literal(Value::Number(number)));
            rest = &rest[end..];
        } else if c.is_alphabetic() || c == '_' {
            let end = rest
                .find(|d: char| !(d.is_alphanumeric() || d == '_'))
                .unwrap_or(rest.len());
            tokens.push(match &rest[..end] {
                "true" => Token::Literal(Value::Bool(true)),
                "false" => Token::Literal(Value::Bool(false)),
                name => Token::Name(name.to_owned()),
            });
            rest = &rest[end..];
        } else if let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) {
            tokens.push(Token::Op(op));
            rest = &rest[op.len()..];
        } else {
            return Err(format!("unsupported {c:?}"));
        }
        rest = rest.trim_start();
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn eat(&mut self, op: &'static str) -> bool {
        if self.tokens.get(self.at) == Some(&Token::Op(op)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Value, String> {
        let mut left = self.and()?;
        while self.eat("||") {
            let right = self.and()?;
            left = Value::Bool(left.truthy() || right.truthy());
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Value, String> {
        let mut left = self.comparison()?;
        while self.eat("&&") {
            let right = self.comparison()?;
            left = Value::Bool(left.truthy() && right.truthy());
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Value, String> {
        let left = self.unary()?;
        for op in ["===", "!==", "==", "!=", "<=", ">=", "<", ">"] {
            if self.eat(op) {
                let right = self.unary()?;
                return Ok(Value::Bool(compare(op, &left, &right)));
            }
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Value, String> {
        if self.eat("!") {
            return Ok(Value::Bool(!self.unary()?.truthy()));
        }
        let mut value = self.primary()?;
        while self.eat(".") {
            match self.tokens.get(self.at) {
                Some(Token::Name(name)) if name == "length" => {
                    self.at += 1;
                    let Value::Text(text) = &value else {
                        return Err(".length of a non-string".into());
                    };
                    value = Value::Number(text.chars().count() as f64);
                }
                other => return Err(format!("unsupported property {other:?}")),
            }
        }
        Ok(value)
    }

    fn primary(&mut self) -> Result<Value, String> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        match token {
            Some(Token::Literal(value)) => Ok(value),
            Some(Token::Op("(")) => {
                let value = self.or()?;
                if self.eat(")") {
                    Ok(value)
                } else {
                    Err("missing )".into())
                }
            }
            Some(Token::Name(name)) if name == "parseInt" || name == "parseFloat" => {
                if !self.eat("(") {
                    return Err(format!("{name} without ("));
                }
                let argument = self.or()?;
                if !self.eat(")") {
                    return Err("missing )".into());
                }
                let number = argument.number();
                Ok(Value::Number(if name == "parseInt" {
                    number.trunc()
                } else {
                    number
                }))
            }
            Some(Token::Name(name)) => Err(format!("{name} is not defined")),
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

fn compare(op: &str, left: &Value, right: &Value) -> bool {
    let strict_equal =
        std::mem::discriminant(left) == std::mem::discriminant(right) && loose_equal(left, right);
    match op {
        "===" => strict_equal,
        "!==" => !strict_equal,
        "==" => loose_equal(left, right),
        "!=" => !loose_equal(left, right),
        _ => {
            let ordering = match (left, right) {
                (Value::Text(a), Value::Text(b)) => a.partial_cmp(b),
                _ => left.number().partial_cmp(&right.number()),
            };
            ordering.is_some_and(|o| match op {
                "<" => o.is_lt(),
                "<=" => o.is_le(),
                ">" => o.is_gt(),
                _ => o.is_ge(),
            })
        }
    }
}

fn loose_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Text(a), Value::Text(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        _ => left.number() == right.number(),
    }
}

#[cfg(test)]
mod tests {
    use super::{evaluate, evaluate_to_text};

    #[test]
    fn the_conditions_real_configs_use() {
        assert_eq!(evaluate(r#""google" == "google""#), Ok(true));
        assert_eq!(evaluate("200 == 200"), Ok(true));
        assert_eq!(
            evaluate(r#""abc" != "NOT_FOUND" && "abc".length > 2"#),
            Ok(true)
        );
        assert_eq!(evaluate("true"), Ok(true));
        assert_eq!(evaluate("false || !(1 < 2)"), Ok(false));
        assert_eq!(evaluate(r#"parseInt("7") >= 3"#), Ok(true));
        assert_eq!(evaluate("\"5\" === 5"), Ok(false));
        assert!(evaluate("google == google").is_err());
        assert_eq!(evaluate_to_text(r#"parseInt("7")"#).as_deref(), Ok("7"));
        assert_eq!(evaluate_to_text("1 < 2").as_deref(), Ok("true"));
        assert!(evaluate("${x} == 1").is_err());
        assert_eq!(evaluate("1"), Ok(false));
    }
}
