//! `settings.env`: the one load-time substitution Taurus does. Every string value in the
//! config has `${KEY}` replaced when KEY is a `settings.env` key (twice, so env values may
//! refer to other keys); other `${…}` stay for run time. Env values first expand the
//! process environment (`$HOME`, `${HOME}`), as Taurus's `os.path.expandvars` does.

use std::collections::HashMap;

use serde_json::Value;

/// How many times values are expanded, as Taurus (`VARIABLE_EXPAND_DEPTH`).
const EXPAND_DEPTH: usize = 2;

/// The document with `settings.env` keys substituted in every string value (not keys).
pub(super) fn substitute_settings_env(document: &Value) -> Value {
    let pairs: Vec<(String, String)> = settings_environment(document)
        .into_iter()
        .map(|(key, value)| (key, value.unwrap_or_default()))
        .collect();
    if pairs.is_empty() {
        return document.clone();
    }
    let mut out = document.clone();
    for _ in 0..EXPAND_DEPTH {
        replace_in(&mut out, &pairs);
    }
    out
}

/// `settings.env` with the process environment expanded in its values: what Taurus
/// exports to the environment (`None` for `null`, which removes the variable).
pub(super) fn settings_environment(document: &Value) -> HashMap<String, Option<String>> {
    let Some(env) = document
        .get("settings")
        .and_then(|s| s.get("env"))
        .and_then(Value::as_object)
    else {
        return HashMap::new();
    };
    env.iter()
        .map(|(key, value)| {
            let text = match value {
                Value::Null => None,
                Value::String(s) => Some(expand_process_env(&expand_process_env(s))),
                other => Some(other.to_string()),
            };
            (key.clone(), text)
        })
        .collect()
}

fn replace_in(value: &mut Value, pairs: &[(String, String)]) {
    match value {
        Value::String(text) if text.contains("${") => {
            for (key, replacement) in pairs {
                let reference = format!("${{{key}}}");
                if text.contains(&reference) {
                    *text = text.replace(&reference, replacement);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| replace_in(i, pairs)),
        Value::Object(map) => map.values_mut().for_each(|v| replace_in(v, pairs)),
        _ => {}
    }
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
        let out = substitute_settings_env(&document);
        assert_eq!(out["scenarios"]["s"]["requests"][0], "http://h:1/api/x");
        assert_eq!(out["scenarios"]["s"]["requests"][1], "${OTHER}/y");
    }
}
