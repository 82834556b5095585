//! `settings.env`: the one load-time substitution Taurus does. Every string value in the
//! config has `${KEY}` replaced when KEY is a `settings.env` key; other `${…}` stay for run
//! time. Env values first expand the process environment (`$HOME`, `${HOME}`), as Taurus's
//! `os.path.expandvars` does.
//!
//! Taurus substitutes twice over a dict, so a chain of keys (`A: ${B}`, `B: ${C}`, …)
//! resolved differently with the dict's order. Here env values are resolved among
//! themselves first, in dependency order (a reference back into a loop stays as written),
//! then substituted once: the same config gives the same requests on every run. A value
//! that grows past [`MAX_ENV_VALUE`], or a config that grows past [`MAX_EXPANSION`], is an
//! error naming the key.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::ConfigError;

/// Longest value a `settings.env` key may resolve to.
pub const MAX_ENV_VALUE: usize = 1024 * 1024;
/// Most bytes substitution may add to the whole config.
pub const MAX_EXPANSION: usize = 64 * 1024 * 1024;
/// Longest chain of keys referring to each other.
const MAX_CHAIN: usize = 64;

/// `settings.env` resolved: process environment expanded, references to other keys
/// replaced in dependency order (`None` for `null`, which removes the variable).
pub(super) fn resolved_environment(
    document: &Value,
) -> Result<BTreeMap<String, Option<String>>, ConfigError> {
    let Some(env) = document
        .get("settings")
        .and_then(|s| s.get("env"))
        .and_then(Value::as_object)
    else {
        return Ok(BTreeMap::new());
    };
    let raw: BTreeMap<String, Option<String>> = env
        .iter()
        .map(|(key, value)| {
            let text = match value {
                Value::Null => None,
                Value::String(s) => Some(expand_process_env(&expand_process_env(s))),
                other => Some(other.to_string()),
            };
            (key.clone(), text)
        })
        .collect();
    let mut resolver = Resolver {
        raw: &raw,
        done: BTreeMap::new(),
        chain: Vec::new(),
    };
    for key in raw.keys() {
        resolver.resolve(key)?;
    }
    Ok(raw
        .iter()
        .map(|(key, value)| {
            let resolved = value
                .as_ref()
                .map(|_| resolver.done.get(key).cloned().unwrap_or_default());
            (key.clone(), resolved)
        })
        .collect())
}

/// The environment as run-time `__env` reads it.
pub(super) fn as_run_time(
    env: &BTreeMap<String, Option<String>>,
) -> HashMap<String, Option<String>> {
    env.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

struct Resolver<'a> {
    raw: &'a BTreeMap<String, Option<String>>,
    done: BTreeMap<String, String>,
    chain: Vec<String>,
}

impl Resolver<'_> {
    fn resolve(&mut self, key: &str) -> Result<String, ConfigError> {
        if let Some(value) = self.done.get(key) {
            return Ok(value.clone());
        }
        let invalid = |message: String| ConfigError::Invalid {
            path: format!("settings.env.{key}"),
            message,
        };
        if self.chain.len() >= MAX_CHAIN {
            return Err(invalid(format!(
                "refers through more than {MAX_CHAIN} other settings.env keys"
            )));
        }
        let text = self.raw.get(key).cloned().flatten().unwrap_or_default();
        self.chain.push(key.to_owned());
        let mut out = String::with_capacity(text.len());
        let mut failed = None;
        substitute(&text, &mut out, &mut |name, out| {
            if failed.is_some()
                || !self.raw.contains_key(name)
                || self.chain.iter().any(|k| k == name)
            {
                return false;
            }
            match self.resolve(name) {
                Ok(value) => out.push_str(&value),
                Err(err) => failed = Some(err),
            }
            true
        });
        self.chain.pop();
        if let Some(err) = failed {
            return Err(err);
        }
        if out.len() > MAX_ENV_VALUE {
            return Err(invalid(format!(
                "expands to {} bytes, over the {MAX_ENV_VALUE} a settings.env value may hold",
                out.len()
            )));
        }
        self.done.insert(key.to_owned(), out.clone());
        Ok(out)
    }
}

/// Copies `text` to `out`, letting `replace` write each `${NAME}`; a reference it declines
/// (returns false for) is copied as written.
fn substitute(text: &str, out: &mut String, replace: &mut dyn FnMut(&str, &mut String) -> bool) {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(end) = rest[start + 2..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        let name = &rest[start + 2..start + 2 + end];
        if !replace(name, out) {
            out.push_str(&rest[start..start + 3 + end]);
        }
        rest = &rest[start + 3 + end..];
    }
    out.push_str(rest);
}

/// The document with the resolved `settings.env` keys substituted in every string value
/// (not keys).
pub(super) fn substitute_settings_env(
    document: &Value,
    env: &BTreeMap<String, Option<String>>,
) -> Result<Value, ConfigError> {
    let mut out = document.clone();
    if env.is_empty() {
        return Ok(out);
    }
    let mut added = 0usize;
    let mut path = Vec::new();
    replace_in(&mut out, env, &mut added, &mut path)?;
    Ok(out)
}

fn replace_in(
    value: &mut Value,
    env: &BTreeMap<String, Option<String>>,
    added: &mut usize,
    path: &mut Vec<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(text) if text.contains("${") => {
            let mut out = String::with_capacity(text.len());
            substitute(text, &mut out, &mut |name, out| match env.get(name) {
                Some(value) => {
                    out.push_str(value.as_deref().unwrap_or_default());
                    true
                }
                None => false,
            });
            *added += out.len().saturating_sub(text.len());
            if *added > MAX_EXPANSION {
                return Err(ConfigError::Invalid {
                    path: path.join("."),
                    message: format!(
                        "settings.env substitution makes the config over {MAX_EXPANSION} bytes larger"
                    ),
                });
            }
            *text = out;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                replace_in(item, env, added, path)?;
                path.pop();
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                path.push(key.clone());
                replace_in(item, env, added, path)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// `$NAME` and `${NAME}` from the process environment; unknown names stay as written.
fn expand_process_env(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, used) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match std::env::var(name) {
            Ok(value) if !name.is_empty() => out.push_str(&value),
            _ => out.push_str(&rest[i..=i + used]),
        }
        rest = &after[used..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_are_substituted_twice_and_others_stay() {
        let document = serde_json::json!({
            "settings": {"env": {"HOST": "http://h:1", "BASE": "${HOST}/api", "GONE": null}},
            "scenarios": {"s": {"requests": ["${BASE}/x${GONE}", "${OTHER}/y"]}}
        });
        let env = resolved_environment(&document).unwrap();
        let out = substitute_settings_env(&document, &env).unwrap();
        assert_eq!(out["scenarios"]["s"]["requests"][0], "http://h:1/api/x");
        assert_eq!(out["scenarios"]["s"]["requests"][1], "${OTHER}/y");
    }

    /// The chain: map order once decided how far it resolved.
    #[test]
    fn chains_resolve_fully_in_dependency_order_and_loops_stay_as_written() {
        let document = serde_json::json!({
            "settings": {"env": {"A": "${B}", "B": "${C}", "C": "${D}", "D": "end",
                                  "X": "x${Y}", "Y": "y${X}"}},
            "scenarios": {"s": {"requests": ["/?a=${A}", "/?x=${X}"]}}
        });
        let env = resolved_environment(&document).unwrap();
        let out = substitute_settings_env(&document, &env).unwrap();
        assert_eq!(out["scenarios"]["s"]["requests"][0], "/?a=end");
        assert_eq!(out["scenarios"]["s"]["requests"][1], "/?x=xy${X}");
    }

    #[test]
    fn a_value_that_doubles_through_a_chain_is_an_error_naming_its_key() {
        let mut env = serde_json::Map::new();
        env.insert("K0".into(), "0123456789abcdef".repeat(64).into());
        for i in 1..40 {
            env.insert(
                format!("K{i}"),
                format!("${{K{}}}${{K{}}}", i - 1, i - 1).into(),
            );
        }
        let document = serde_json::json!({"settings": {"env": env}});
        let err = resolved_environment(&document).unwrap_err().to_string();
        assert!(err.starts_with("settings.env.K"), "{err}");
        assert!(err.contains("over the 1048576"), "{err}");
    }
}
