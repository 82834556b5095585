//! Taurus config files to one merged document: YAML or JSON files merged in order as
//! Taurus merges them, then `-o path.to.key=value` overrides.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::ConfigError;

/// Reads, parses and merges `files` in order, then the files their `included-configs`
/// name (merged over them, until none is new), then applies `overrides`; with notes about
/// includes that were skipped.
pub fn load(files: &[PathBuf], overrides: &[String]) -> Result<(Value, Vec<String>), ConfigError> {
    let mut sources = Vec::with_capacity(files.len());
    for file in files {
        // `peregrine load plan.jmx` is Taurus's `bzt plan.jmx`: an execution running the
        // plan with its own thread-group settings.
        let text = if crate::jmx::is_jmx(&file.to_string_lossy()) {
            serde_json::json!({"execution": [{"scenario": {"script": file}}]}).to_string()
        } else {
            read(file)?
        };
        sources.push((file.clone(), text));
    }
    let mut merged = merge_files(&sources)?;
    let notes = include_configs(&mut merged, files)?;
    for text in overrides {
        apply_override(&mut merged, text)?;
    }
    Ok((merged, notes))
}

fn read(file: &Path) -> Result<String, ConfigError> {
    use crate::files::{MAX_CONFIG_BYTES, Source, read_text_limited};
    read_text_limited(file, MAX_CONFIG_BYTES, Source::FileOrPipe).map_err(|message| {
        ConfigError::Read {
            file: file.to_path_buf(),
            message,
        }
    })
}

/// Merges the files `included-configs` names over `merged`, in order, repeating for the
/// includes they add; a file already read is skipped (so cycles end). A relative path is
/// looked up in the working directory, then beside each config read so far, as Taurus
/// does. URLs are not fetched: skipped with a note.
fn include_configs(merged: &mut Value, files: &[PathBuf]) -> Result<Vec<String>, ConfigError> {
    let mut read_files: Vec<PathBuf> = files.to_vec();
    let mut seen: Vec<PathBuf> = files.iter().map(|f| canonical(f)).collect();
    let mut notes = Vec::new();
    let mut done = 0;
    loop {
        let listed: Vec<Value> = match merged.get("included-configs") {
            Some(Value::Array(items)) => items.clone(),
            Some(Value::String(one)) => vec![Value::String(one.clone())],
            _ => Vec::new(),
        };
        if done >= listed.len() {
            return Ok(notes);
        }
        for (i, item) in listed.iter().enumerate().skip(done) {
            let path = format!("included-configs.{i}");
            let Some(name) = item.as_str() else {
                return Err(ConfigError::Invalid {
                    path,
                    message: "must be a file path".into(),
                });
            };
            if name.starts_with("http://") || name.starts_with("https://") {
                notes.push(format!(
                    "{path}: {name} is a URL; Peregrine does not download configs, so it is skipped"
                ));
                continue;
            }
            let file = find_file(name, &read_files).ok_or_else(|| ConfigError::Invalid {
                path: path.clone(),
                message: format!("{name}: no such file (looked in the working directory and beside the configs read)"),
            })?;
            if seen.contains(&canonical(&file)) {
                continue;
            }
            seen.push(canonical(&file));
            let mut document = parse(&file, &read(&file)?)?;
            resolve_relative_files(&mut document, &file);
            merge(merged, document);
            read_files.push(file);
        }
        done = listed.len();
    }
}

fn canonical(file: &Path) -> PathBuf {
    std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf())
}

fn find_file(name: &str, read_files: &[PathBuf]) -> Option<PathBuf> {
    let path = Path::new(name);
    if path.is_absolute() || path.is_file() {
        return path.is_file().then(|| path.to_path_buf());
    }
    read_files
        .iter()
        .filter_map(|f| f.parent())
        .map(|dir| dir.join(path))
        .find(|candidate| candidate.is_file())
}

/// Parses and merges `(name, text)` sources in order, then applies `overrides`.
pub fn merge_sources(
    sources: &[(PathBuf, String)],
    overrides: &[String],
) -> Result<Value, ConfigError> {
    let mut merged = merge_files(sources)?;
    for text in overrides {
        apply_override(&mut merged, text)?;
    }
    Ok(merged)
}

fn merge_files(sources: &[(PathBuf, String)]) -> Result<Value, ConfigError> {
    let mut merged = Value::Object(Map::new());
    for (file, text) in sources {
        let mut document = parse(file, text)?;
        resolve_relative_files(&mut document, file);
        merge(&mut merged, document);
    }
    Ok(merged)
}

/// Most YAML nodes (mappings, sequences, scalars) one config file may hold.
const MAX_YAML_NODES: usize = 2_000_000;

/// Parses one file as YAML (JSON is YAML); errors name the file, line and column. Several
/// YAML documents in one file are merged in order, as Taurus merges them.
pub fn parse(file: &Path, text: &str) -> Result<Value, ConfigError> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    // Above the parser's default node budget (250,000): 100,000 requests with a url and a
    // label each take about 500,000 nodes. The file size limit bounds the rest.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: MAX_YAML_NODES,
            max_events: 4 * MAX_YAML_NODES,
        },
    };
    let documents: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|err| {
            ConfigError::Syntax {
                file: file.to_path_buf(),
                message: syntax_message(&err.to_string()),
            }
        })?;
    let mut merged = Value::Object(Map::new());
    for (i, document) in documents.into_iter().enumerate() {
        match document {
            Value::Object(_) => merge(&mut merged, executions_as_list(document)),
            Value::Null => {}
            _ => {
                return Err(ConfigError::Syntax {
                    file: file.to_path_buf(),
                    message: format!(
                        "document {}: the top level must be a mapping (execution:, scenarios:, …)",
                        i + 1
                    ),
                });
            }
        }
    }
    Ok(merged)
}

/// A single execution mapping as a one-item list, so documents and files append their
/// executions as Taurus does and `execution.0.…` overrides work.
fn executions_as_list(mut document: Value) -> Value {
    if let Some(execution) = document.get_mut("execution")
        && execution.is_object()
    {
        *execution = Value::Array(vec![execution.take()]);
    }
    document
}

/// The parser's message as `line L column C: problem`: its first line only (the rest
/// quotes the source with a placeholder file name), without a repeated `error:` or a hint
/// about the parser's own API.
fn syntax_message(raw: &str) -> String {
    let first = raw.lines().next().unwrap_or(raw).trim();
    let first = first.strip_prefix("error:").unwrap_or(first).trim();
    match first.split_once("multiple YAML documents detected") {
        Some((position, _)) => format!(
            "{position}a second YAML document (after ---) starts here; a config file holds one document: split it into files"
        ),
        None => first.to_owned(),
    }
}

/// `body-file` and `ca-cert` paths are relative to the config file that names them.
fn resolve_relative_files(document: &mut Value, file: &Path) {
    let Some(dir) = file.parent() else { return };
    let mut stack = vec![document];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    if (key == "body-file" || key == "ca-cert")
                        && let Value::String(path) = child
                        && Path::new(path.as_str()).is_relative()
                    {
                        *path = dir.join(path.as_str()).to_string_lossy().into_owned();
                    } else {
                        stack.push(child);
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
}

/// Taurus merge: mappings merge key by key, lists concatenate, `~key` replaces, `^key`
/// deletes, `$key` merges lists item by item; a type mismatch overwrites.
pub fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                if let Some(key) = key.strip_prefix('~') {
                    base.insert(key.to_owned(), value);
                } else if let Some(key) = key.strip_prefix('^') {
                    base.shift_remove(key);
                } else if let Some(key) = key.strip_prefix('$') {
                    merge_items(base.entry(key.to_owned()).or_insert(Value::Null), value);
                } else {
                    match base.get_mut(&key) {
                        Some(existing) => merge(existing, value),
                        None => {
                            base.insert(key, value);
                        }
                    }
                }
            }
        }
        (Value::Array(base), Value::Array(overlay)) => base.extend(overlay),
        (base, overlay) => *base = overlay,
    }
}

fn merge_items(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Array(base), Value::Array(overlay)) => {
            for (i, value) in overlay.into_iter().enumerate() {
                match base.get_mut(i) {
                    Some(existing) => merge(existing, value),
                    None => base.push(value),
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// Applies `path.to.key=value` (the value read as YAML; a list index of -1 appends).
pub fn apply_override(document: &mut Value, text: &str) -> Result<(), ConfigError> {
    let invalid = |message: &str| ConfigError::Override {
        text: text.to_owned(),
        message: message.to_owned(),
    };
    let (path, raw) = text
        .split_once('=')
        .ok_or_else(|| invalid("expected path.to.key=value"))?;
    if path.is_empty() {
        return Err(invalid("the key path is empty"));
    }
    let value: Value = if raw.trim().is_empty() {
        Value::Null
    } else {
        serde_saphyr::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
    };
    let keys: Vec<&str> = path.split('.').collect();
    let mut node = document;
    for (depth, key) in keys.iter().enumerate() {
        let last = depth + 1 == keys.len();
        node = match node {
            Value::Array(items) => {
                let index: i64 = key
                    .parse()
                    .map_err(|_| invalid(&format!("{key:?} is not a list index")))?;
                if index == -1 {
                    items.push(Value::Null);
                }
                let len = items.len() as i64;
                let index = if index < 0 { len + index } else { index };
                if !(0..len).contains(&index) {
                    return Err(invalid(&format!("list index {key} is out of range")));
                }
                &mut items[index as usize]
            }
            other => {
                if !other.is_object() {
                    *other = Value::Object(Map::new());
                }
                let Value::Object(map) = other else {
                    return Err(invalid("unreachable"));
                };
                map.entry((*key).to_owned()).or_insert(Value::Null)
            }
        };
        if last {
            *node = value;
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn syntax_errors_say_file_line_column_and_the_problem_only() {
        let err = parse(Path::new("two.yml"), "a: 1\n---\nb: [\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("two.yml: line 3 column 4: unclosed bracket"),
            "{err}"
        );
        assert!(
            !err.contains("<input>")
                && !err.contains("from_str")
                && err.matches("error").count() == 0,
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    #[test]
    fn documents_of_one_file_merge_in_order() {
        let text = "execution: {concurrency: 1, scenario: a}\nsettings: {x: 1}\n---\n---\n{\"execution\": [{\"scenario\": \"b\"}], \"settings\": {\"x\": 2}}\n";
        let merged = parse(Path::new("multi.yml"), text).map_err(|e| e.to_string());
        assert_eq!(
            merged,
            Ok(
                json!({"execution": [{"concurrency": 1, "scenario": "a"}, {"scenario": "b"}], "settings": {"x": 2}})
            )
        );
        let err = parse(Path::new("m.yml"), "a: 1\n---\n- 2\n").map_err(|e| e.to_string());
        assert!(err.is_err_and(|e| e.contains("document 2: the top level must be a mapping")));
    }

    #[test]
    fn merge_follows_taurus_rules() {
        let mut base =
            json!({"a": {"x": 1, "y": [1]}, "l": [1], "r": {"k": 1}, "d": 1, "m": [{"p": 1}]});
        merge(
            &mut base,
            json!({"a": {"y": [2], "z": 3}, "l": [2], "~r": {"n": 2}, "^d": null, "$m": [{"q": 2}]}),
        );
        assert_eq!(
            base,
            json!({"a": {"x": 1, "y": [1, 2], "z": 3}, "l": [1, 2], "r": {"n": 2}, "m": [{"p": 1, "q": 2}]})
        );
    }

    #[test]
    fn overrides_set_create_and_append() {
        let mut doc = json!({"execution": [{"concurrency": 1, "scenario": {"requests": [{"url": "http://ip-addr:8000/users/"}]}}]});
        let apply =
            |doc: &mut Value, text: &str| apply_override(doc, text).map_err(|e| e.to_string());
        assert!(
            apply(
                &mut doc,
                "execution.0.scenario.requests.0.url=http://127.0.0.1:9/users/"
            )
            .is_ok()
        );
        assert!(apply(&mut doc, "execution.0.concurrency=5").is_ok());
        assert!(apply(&mut doc, "execution.0.hold-for=10s").is_ok());
        assert!(apply(&mut doc, "reporting.x=1").is_ok());
        assert!(apply(&mut doc, "execution.-1={concurrency: 2}").is_ok());
        assert_eq!(
            doc["execution"][0]["scenario"]["requests"][0]["url"],
            "http://127.0.0.1:9/users/"
        );
        assert_eq!(doc["execution"][0]["concurrency"], 5);
        assert_eq!(doc["execution"][0]["hold-for"], "10s");
        assert_eq!(doc["execution"][1]["concurrency"], 2);
        assert!(
            apply(&mut doc, "execution.7.concurrency=1").is_err_and(|e| e.contains("out of range"))
        );
        assert!(apply(&mut doc, "no-equals-sign").is_err());
    }
}
