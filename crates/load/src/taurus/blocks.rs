//! Request entries that are blocks (`if`, `once`, `loop`, `while`, `foreach`,
//! `transaction`, `include-scenario`, `action`, `set-variables`) read into the plan's
//! [`Step`]s. A dict is classified by the first of these keys it has, in Taurus's order;
//! otherwise it is an HTTP request.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::scenario::ScenarioDefaults;
use super::values::{ConfigValue, boolean, child, duration, optional};
use super::{Builder, Steps};
use crate::ConfigError;
use crate::plan::{Action, Block, LoopCount, PickMode, Step, ThrottleLimit};
use crate::variables::Template;

/// Block keys, in the order Taurus tries them.
const BLOCK_KEYS: &[&str] = &[
    "if",
    "once",
    "loop",
    "while",
    "foreach",
    "transaction",
    "include-scenario",
    "action",
    "set-variables",
    // Peregrine's own, written by the JMX reader for JMeter's Random, Interleave and
    // Runtime Controllers (no Taurus config uses these names).
    "jmx-random",
    "jmx-interleave",
    "jmx-switch",
    "jmx-random-order",
    "jmx-throughput",
    "jmx-runtime",
];

/// Deepest nesting of blocks and included scenarios.
const MAX_DEPTH: usize = 32;
/// Most requests and blocks one scenario expands to. Each `include-scenario` copies the
/// scenario it names, so a few nested includes can ask for billions (30 levels, each
/// including the next twice: 2^30); every entry is held in memory for the run.
pub const MAX_SCENARIO_ENTRIES: usize = 250_000;

/// How many requests and blocks `list` expands to, includes copied in (saturating; a name
/// being counted counts 0, so recursion ends here and is refused where it is read).
fn expanded_size(
    list: Option<&Value>,
    scenarios: &Value,
    sizes: &mut HashMap<String, usize>,
    depth: usize,
) -> usize {
    let Some(items) = list.and_then(Value::as_array) else {
        return 0;
    };
    if depth > MAX_DEPTH {
        return 0;
    }
    let mut total = 0usize;
    for item in items {
        let mut size = 1usize;
        if let Some(name) = item.get("include-scenario").and_then(Value::as_str) {
            size = size.saturating_add(match sizes.get(name) {
                Some(known) => *known,
                None => {
                    // Counted as nothing while it is being counted: a cycle adds nothing.
                    sizes.insert(name.to_owned(), 0);
                    let requests = scenarios.get(name).and_then(|s| s.get("requests"));
                    let counted = expanded_size(requests, scenarios, sizes, depth + 1);
                    sizes.insert(name.to_owned(), counted);
                    counted
                }
            });
        } else if item.is_object() {
            for key in ["then", "else", "do", "once"] {
                let inner = expanded_size(item.get(key), scenarios, sizes, depth + 1);
                size = size.saturating_add(inner);
            }
        }
        total = total.saturating_add(size);
    }
    total
}

impl Builder {
    /// Reads a list of request entries into steps.
    pub(super) fn steps(
        &mut self,
        node: &ConfigValue<'_>,
        defaults: &ScenarioDefaults,
        out: &mut Steps<'_>,
    ) -> Result<Vec<Step>, ConfigError> {
        if out.including.len() + 1 > MAX_DEPTH {
            return Err(node.error(format!("blocks nest deeper than {MAX_DEPTH} levels")));
        }
        let mut steps = Vec::new();
        for item in node.items(" of requests")? {
            out.entries += 1;
            if out.entries > MAX_SCENARIO_ENTRIES {
                let top = out.including.first().map_or("", String::as_str);
                return Err(item.error(format!(
                    "scenario {top:?} expands to over {MAX_SCENARIO_ENTRIES} requests and blocks: each include-scenario copies the scenario it names, so nested includes multiply"
                )));
            }
            let block = BLOCK_KEYS
                .iter()
                .find(|key| item.value.get(**key).is_some());
            match block {
                None => {
                    out.requests.push(Arc::new(self.request(&item, defaults)?));
                    steps.push(Step::Request(out.requests.len() - 1));
                }
                Some(key) => {
                    out.has_blocks = true;
                    out.including.push(String::new());
                    let step = self.block(key, &item, defaults, out);
                    out.including.pop();
                    steps.push(step?);
                }
            }
        }
        Ok(steps)
    }

    fn block(
        &mut self,
        key: &str,
        node: &ConfigValue<'_>,
        defaults: &ScenarioDefaults,
        out: &mut Steps<'_>,
    ) -> Result<Step, ConfigError> {
        let get = |k: &str| child(node, k);
        let body = |builder: &mut Self, out: &mut Steps<'_>, k: &str| match get(k) {
            Some(list) => builder.steps(&list, defaults, out),
            None => Err(node.error(format!("'{k}' clause is mandatory for {key}"))),
        };
        Ok(match key {
            "if" => Step::If {
                condition: template(&get("if"))?,
                then: body(self, out, "then")?,
                otherwise: match get("else") {
                    Some(list) => self.steps(&list, defaults, out)?,
                    None => Vec::new(),
                },
            },
            "once" => {
                let list = get("once").ok_or_else(|| node.error("once needs a list"))?;
                let body = self.steps(&list, defaults, out)?;
                out.onces += 1;
                Step::Once {
                    id: out.onces - 1,
                    body,
                }
            }
            "loop" => Step::Loop {
                count: loop_count(&get("loop"))?,
                body: loop_block(body(self, out, "do")?),
            },
            "while" => Step::While {
                condition: template(&get("while"))?,
                body: loop_block(body(self, out, "do")?),
            },
            "foreach" => {
                let spec = get("foreach").and_then(|f| f.value.as_str().map(str::to_owned));
                let (variable, input) = spec
                    .as_deref()
                    .and_then(foreach_parts)
                    .ok_or_else(|| node.error("foreach must read \"<variable> in <input>\""))?;
                Step::Foreach {
                    variable,
                    input,
                    body: loop_block(body(self, out, "do")?),
                }
            }
            "transaction" => self.transaction(node, defaults, out)?,
            "include-scenario" => self.include(node, defaults, out)?,
            "action" => Step::Action(action(node)?),
            "set-variables" => Step::SetVariables(assignments(&get("set-variables"))?),
            "jmx-random" | "jmx-interleave" | "jmx-switch" | "jmx-random-order" => {
                let list = get(key).ok_or_else(|| node.error(format!("{key} needs a list")))?;
                let mut choices = Vec::new();
                for choice in list.items(" of choices")? {
                    choices.push(self.steps(&choice, defaults, out)?);
                }
                let mode = match key {
                    "jmx-random" => PickMode::Random,
                    "jmx-interleave" => PickMode::Interleave,
                    "jmx-random-order" => PickMode::Shuffled,
                    _ => PickMode::Switch {
                        value: template(&get("value"))?,
                        names: get("names")
                            .and_then(|n| n.value.as_array().cloned())
                            .unwrap_or_default()
                            .iter()
                            .map(|n| n.as_str().unwrap_or_default().to_owned())
                            .collect(),
                    },
                };
                out.picks += 1;
                Step::Pick {
                    id: out.picks - 1,
                    mode,
                    choices,
                }
            }
            "jmx-throughput" => {
                let spec = get("jmx-throughput");
                let number = |key: &str| {
                    spec.as_ref()
                        .and_then(|s| s.value.get(key))
                        .and_then(Value::as_f64)
                };
                let limit = match (number("total"), number("percent")) {
                    (Some(total), _) => ThrottleLimit::Total(total.max(0.0) as u64),
                    (None, Some(percent)) => ThrottleLimit::Percent(percent),
                    _ => return Err(node.error("jmx-throughput needs total or percent")),
                };
                let per_user = spec
                    .as_ref()
                    .and_then(|s| s.value.get("per-user"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let body = body(self, out, "do")?;
                out.throttles += 1;
                Step::Throttle {
                    id: out.throttles - 1,
                    limit,
                    per_user,
                    body,
                }
            }
            "jmx-runtime" => Step::Runtime {
                limit: optional(get("jmx-runtime"), duration)?.unwrap_or_default(),
                body: loop_block(body(self, out, "do")?),
            },
            _ => return Err(node.error(format!("unknown block {key}"))),
        })
    }

    fn transaction(
        &mut self,
        node: &ConfigValue<'_>,
        defaults: &ScenarioDefaults,
        out: &mut Steps<'_>,
    ) -> Result<Step, ConfigError> {
        let label = child(node, "transaction")
            .and_then(|l| match l.value {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            })
            .ok_or_else(|| node.error("transaction needs a label"))?;
        let list = child(node, "do").ok_or_else(|| node.error("'do' is mandatory"))?;
        let force_parent = optional(child(node, "force-parent-sample"), boolean)?
            .unwrap_or(defaults.force_parent_sample);
        let include_timers = optional(child(node, "include-timers"), boolean)?.unwrap_or(false);
        let body = self.steps(&list, defaults, out)?;
        Ok(Step::Transaction {
            label: self.label_index(label),
            force_parent,
            include_timers,
            body,
        })
    }

    fn include(
        &mut self,
        node: &ConfigValue<'_>,
        outer: &ScenarioDefaults,
        out: &mut Steps<'_>,
    ) -> Result<Step, ConfigError> {
        let name_node = child(node, "include-scenario").unwrap_or_else(|| node.clone());
        let name = name_node
            .value
            .as_str()
            .ok_or_else(|| name_node.error("must name a scenario"))?
            .to_owned();
        if out.including.contains(&name) {
            return Err(name_node.error(format!("mutual recursion: {name} includes itself")));
        }
        let value = out
            .scenarios
            .get(&name)
            .ok_or_else(|| name_node.error(format!("no scenario named {name:?} in scenarios")))?;
        let scenario = ConfigValue {
            value,
            path: format!("scenarios.{name}"),
        };
        let requests =
            child(&scenario, "requests").ok_or_else(|| scenario.error("has no requests"))?;
        // Counted before it is copied in: 2^30 copies must be refused at once, not after
        // building the first quarter million of them.
        let size = expanded_size(Some(requests.value), out.scenarios, &mut out.sizes, 0);
        if out.entries.saturating_add(size) > MAX_SCENARIO_ENTRIES {
            let top = out.including.first().map_or("", String::as_str);
            return Err(name_node.error(format!(
                "scenario {top:?} expands to over {MAX_SCENARIO_ENTRIES} requests and blocks: {name} alone is {size}, and each include-scenario copies the scenario it names, so nested includes multiply"
            )));
        }
        if !out.sourced.contains(&name) {
            let sources = self.data_sources(&scenario)?;
            for source in &sources {
                self.context
                    .runtime_names
                    .extend(source.names.iter().cloned());
            }
            out.data_sources.extend(sources);
            out.sourced.push(name.clone());
        }
        let mut defaults = ScenarioDefaults::read(&scenario, &self.context.runtime_names)?;
        defaults.inherit(outer);
        if let Some(last) = out.including.last_mut() {
            *last = name;
        }
        let steps = self.steps(&requests, &defaults, out)?;
        self.note_undefined(&scenario.path, &defaults);
        // A Simple Controller: its steps run as if written in place.
        Ok(Step::If {
            condition: Template::parse("true"),
            then: steps,
            otherwise: Vec::new(),
        })
    }
}

fn template(node: &Option<ConfigValue<'_>>) -> Result<Template, ConfigError> {
    match node.as_ref().map(|n| n.value) {
        Some(Value::String(text)) => Ok(Template::parse(text)),
        Some(Value::Bool(b)) => Ok(Template::parse(&b.to_string())),
        Some(Value::Null) | None => Ok(Template::default()),
        Some(other) => Ok(Template::parse(&other.to_string())),
    }
}

fn loop_count(node: &Option<ConfigValue<'_>>) -> Result<LoopCount, ConfigError> {
    let Some(node) = node else {
        return Ok(LoopCount::Times(1));
    };
    match node.value {
        Value::Number(n) => Ok(match n.as_i64() {
            Some(i) if i < 0 => LoopCount::Forever,
            Some(i) => LoopCount::Times(i.unsigned_abs()),
            None => return Err(node.error("must be a whole number, forever or a ${variable}")),
        }),
        Value::String(text) if text.trim() == "forever" => Ok(LoopCount::Forever),
        Value::String(text) => match text.trim().parse::<i64>() {
            Ok(i) if i < 0 => Ok(LoopCount::Forever),
            Ok(i) => Ok(LoopCount::Times(i.unsigned_abs())),
            Err(_) if text.contains("${") => Ok(LoopCount::Variable(Template::parse(text))),
            Err(_) => Err(node.error("must be a whole number, forever or a ${variable}")),
        },
        _ => Err(node.error("must be a whole number, forever or a ${variable}")),
    }
}

/// A loop body with the `once` blocks directly inside it, which run again on each entry.
fn loop_block(steps: Vec<Step>) -> Block {
    fn collect(steps: &[Step], onces: &mut Vec<usize>) {
        for step in steps {
            match step {
                Step::Once { id, body } => {
                    onces.push(*id);
                    collect(body, onces);
                }
                Step::If {
                    then, otherwise, ..
                } => {
                    collect(then, onces);
                    collect(otherwise, onces);
                }
                Step::Transaction { body, .. } | Step::Throttle { body, .. } => {
                    collect(body, onces);
                }
                Step::Pick { choices, .. } => {
                    for choice in choices {
                        collect(choice, onces);
                    }
                }
                _ => {}
            }
        }
    }
    let mut onces = Vec::new();
    collect(&steps, &mut onces);
    Block { steps, onces }
}

/// `"<variable> in <input>"`, split as Taurus does (greedy: the last ` in `).
fn foreach_parts(spec: &str) -> Option<(String, String)> {
    let (variable, input) = spec.rsplit_once(" in ")?;
    (!variable.is_empty() && !input.is_empty()).then(|| (variable.to_owned(), input.to_owned()))
}

fn action(node: &ConfigValue<'_>) -> Result<Action, ConfigError> {
    let kind = child(node, "action").and_then(|a| a.value.as_str().map(str::to_owned));
    let all_threads = match child(node, "target") {
        None => false,
        Some(target) => match target.value.as_str() {
            Some("current-thread") => false,
            Some("all-threads") => true,
            _ => return Err(target.error("must be current-thread or all-threads")),
        },
    };
    Ok(match kind.as_deref() {
        Some("pause") => {
            Action::Pause(optional(child(node, "pause-duration"), duration)?.unwrap_or_default())
        }
        Some("stop" | "stop-now") if all_threads => Action::StopAll,
        Some("stop" | "stop-now") => Action::StopUser,
        Some("continue") => Action::NextIteration,
        _ => return Err(node.error("action must be pause, stop, stop-now or continue")),
    })
}

fn assignments(node: &Option<ConfigValue<'_>>) -> Result<Vec<(String, Template)>, ConfigError> {
    let Some(node) = node else {
        return Ok(Vec::new());
    };
    let map = node
        .value
        .as_object()
        .ok_or_else(|| node.error("must be a mapping of variable names to values"))?;
    let mut pairs: Vec<_> = map
        .iter()
        .map(|(name, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name.clone(), Template::parse(&text))
        })
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(pairs)
}

/// Every variable name a config writes at run time (extractors, `set-variables`,
/// `foreach`, functions storing their result): these are never substituted at load time.
pub(super) fn runtime_names(value: &Value, names: &mut std::collections::HashSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let writes = key.starts_with("extract-") || key == "set-variables";
                if writes && let Some(vars) = inner.as_object() {
                    names.extend(vars.keys().cloned());
                }
                if key == "foreach"
                    && let Some((variable, _)) = inner.as_str().and_then(foreach_parts)
                {
                    names.insert(variable);
                }
                runtime_names(inner, names);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| runtime_names(i, names)),
        Value::String(text) if text.contains("${__") => {
            names.extend(crate::variables::Template::parse(text).stored_names());
        }
        _ => {}
    }
}
