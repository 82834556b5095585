//! The JMeter reader: a JMX test plan read into the Taurus document form the Taurus reader
//! already turns into a [`crate::Plan`], so a JMX plan and its YAML equivalent compile to
//! the same plan and run on the same engine. Each execution whose scenario is
//! `script: plan.jmx` (or a `plan.jmx` given on the command line) is replaced by one
//! execution per thread group, each with a scenario read from the group's subtree.
//!
//! Messages name elements by their path in the plan tree (`Test Plan > Thread Group >
//! Login`); errors the Taurus reader finds in a generated scenario are renamed so too.

mod checks;
mod groups;
mod kinds;
mod sampler;
mod scenario;
mod tree;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::ConfigError;
use crate::plan::{Phase, Stage};
use kinds::{Kind, kind};
use scenario::GroupScenario;
use tree::Element;

/// Deepest nesting of Include Controllers.
const MAX_INCLUDE_DEPTH: usize = 8;
/// Largest file uploaded by a sampler.
const MAX_UPLOAD_BYTES: u64 = 16 * 1024 * 1024;

/// Whether `name` is a JMeter plan by its extension.
pub(crate) fn is_jmx(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".jmx")
}

/// What expanding the JMX executions of a document gives besides the document.
#[derive(Debug, Default)]
pub(crate) struct Expanded {
    /// Notes about elements skipped or approximated.
    pub(crate) warnings: Vec<String>,
    /// Taurus key paths of generated entries and the JMX elements they came from.
    origins: Vec<(String, String)>,
    /// The phase of each generated execution, by its index in `execution`.
    pub(crate) phases: Vec<(usize, Phase)>,
}

impl Expanded {
    /// `path` renamed to the JMX element it came from, when it is in a generated part.
    pub(crate) fn rename(&self, path: &str) -> Option<String> {
        self.origins
            .iter()
            .filter(|(prefix, _)| {
                path.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
            })
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(prefix, origin)| {
                let rest = &path[prefix.len()..];
                if rest.is_empty() {
                    origin.clone()
                } else {
                    format!("{origin} ({})", rest.trim_start_matches('.'))
                }
            })
    }
}

/// Replaces every execution whose scenario runs a JMX script by one execution per
/// thread group of the plan. Relative plan paths are looked up in the working directory,
/// then in `config_dirs`.
pub(crate) fn expand(
    document: &mut Value,
    config_dirs: &[PathBuf],
) -> Result<Expanded, ConfigError> {
    let mut expanded = Expanded::default();
    let executions = match document.get("execution") {
        Some(Value::Array(items)) => items.clone(),
        Some(item @ Value::Object(_)) => vec![item.clone()],
        _ => return Ok(expanded),
    };
    let mut scenarios = match document.get("scenarios") {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    let properties = jmeter_properties(document);
    let mut out = Vec::new();
    let mut changed = false;
    for (i, execution) in executions.into_iter().enumerate() {
        let Some((script, scenario)) = jmx_script(&execution, &scenarios) else {
            out.push(execution);
            continue;
        };
        changed = true;
        let path = format!("execution.{i}.scenario");
        let file = find(&script, config_dirs).ok_or_else(|| ConfigError::Invalid {
            path: path.clone(),
            message: format!(
                "JMeter plan {script:?} not found (looked in the working directory and beside the config)"
            ),
        })?;
        let mut plan = tree::read(&file)?;
        let dirs: Vec<PathBuf> = file
            .parent()
            .map(Path::to_path_buf)
            .into_iter()
            .chain(config_dirs.iter().cloned())
            .collect();
        resolve_includes(&mut plan, &dirs, 0)?;
        let mut reader = Reader {
            file: file.clone(),
            root: &plan,
            dirs,
            properties: Arc::clone(&properties),
            warnings: Vec::new(),
            warned: HashSet::new(),
            origins: Vec::new(),
            modules: 0,
            phases: Vec::new(),
        };
        let generated = reader.executions(&execution, &scenario, &mut scenarios, out.len())?;
        expanded.warnings.append(&mut reader.warnings);
        expanded.origins.append(&mut reader.origins);
        expanded.phases.append(&mut reader.phases);
        out.extend(generated);
    }
    if changed {
        document["execution"] = Value::Array(out);
        document["scenarios"] = Value::Object(scenarios);
    }
    Ok(expanded)
}

/// When a thread group runs: a setUp group before the others, a tearDown group after them.
fn stage(group: &Element) -> Stage {
    match group.class.as_str() {
        "SetupThreadGroup" => Stage::Setup,
        "PostThreadGroup" => Stage::Teardown,
        _ => Stage::Main,
    }
}

/// The JMX file an execution's scenario runs, with the scenario's other keys.
fn jmx_script(execution: &Value, scenarios: &Map<String, Value>) -> Option<(String, Value)> {
    let scenario = match execution.get("scenario")? {
        Value::String(name) => match scenarios.get(name) {
            Some(found) => found.clone(),
            None if is_jmx(name) => json!({ "script": name }),
            None => return None,
        },
        inline => inline.clone(),
    };
    let script = scenario.get("script")?.as_str()?;
    is_jmx(script).then(|| (script.to_owned(), scenario.clone()))
}

fn find(written: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    let path = PathBuf::from(written);
    if path.is_absolute() || path.is_file() {
        return path.is_file().then_some(path);
    }
    dirs.iter().map(|d| d.join(&path)).find(|c| c.is_file())
}

/// `modules.jmeter.properties`, for `${__P(…)}` in thread group settings.
fn jmeter_properties(document: &Value) -> Arc<HashMap<String, String>> {
    let map = document
        .pointer("/modules/jmeter/properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .map(|(k, v)| {
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default();
    Arc::new(map)
}

/// Puts each Include Controller's plan (its test fragments' contents) under it.
fn resolve_includes(
    element: &mut Element,
    dirs: &[PathBuf],
    depth: usize,
) -> Result<(), ConfigError> {
    for child in &mut element.children {
        if child.class == "IncludeController" && child.enabled {
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(invalid(
                    child.path.clone(),
                    format!("Include Controllers nest deeper than {MAX_INCLUDE_DEPTH} levels"),
                ));
            }
            let written = child
                .string("IncludeController.includepath")
                .trim()
                .to_owned();
            let file = find(&written, dirs).ok_or_else(|| {
                invalid(
                    child.path.clone(),
                    format!("included plan {written:?} not found (looked beside the plan and in the working directory)"),
                )
            })?;
            let included = tree::read(&file)?;
            child.children = included
                .children
                .into_iter()
                .flat_map(|c| {
                    if kind(&c.class) == Kind::Fragment {
                        c.children
                    } else {
                        vec![c]
                    }
                })
                .collect();
            resolve_includes(child, dirs, depth + 1)?;
        } else {
            resolve_includes(child, dirs, depth)?;
        }
    }
    Ok(())
}

/// An error about the element at `path`.
fn invalid(path: String, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path,
        message: message.into(),
    }
}

/// A file read as text, bounded.
fn read_text(file: &Path) -> Result<String, String> {
    let size = std::fs::metadata(file).map_err(|e| e.to_string())?.len();
    if size > MAX_UPLOAD_BYTES {
        return Err(format!(
            "{size} bytes; files up to {MAX_UPLOAD_BYTES} bytes are read"
        ));
    }
    std::fs::read_to_string(file).map_err(|e| format!("{e} (only text files are sent)"))
}

/// Reads one plan.
struct Reader<'t> {
    /// The JMX file.
    file: PathBuf,
    /// The test plan element.
    root: &'t Element,
    /// Where relative files are looked for after the working directory.
    dirs: Vec<PathBuf>,
    /// JMeter properties for thread-group settings.
    properties: Arc<HashMap<String, String>>,
    warnings: Vec<String>,
    warned: HashSet<String>,
    /// Taurus key paths and the elements they came from.
    origins: Vec<(String, String)>,
    /// Module Controllers being expanded.
    modules: usize,
    /// The phase of each generated execution, by its index in `execution`.
    phases: Vec<(usize, Phase)>,
}

impl<'t> Reader<'t> {
    /// `plan.jmx: Test Plan > Thread Group > Login`.
    fn where_(&self, element: &Element) -> String {
        format!("{}: {}", self.file.display(), element.path)
    }

    /// A warning about `element`, given once.
    fn warn(&mut self, element: &Element, note: &str) {
        let warning = format!("{}: {note}", self.where_(element));
        if self.warned.insert(warning.clone()) {
            self.warnings.push(warning);
        }
    }

    /// A file a plan names: as written, beside the plan, in the working directory, beside
    /// the config.
    fn find_file(&self, written: &str) -> Option<PathBuf> {
        let path = PathBuf::from(written);
        if path.is_absolute() {
            return path.is_file().then_some(path);
        }
        self.dirs
            .first()
            .map(|d| d.join(&path))
            .into_iter()
            .chain(std::iter::once(path.clone()))
            .chain(self.dirs.iter().skip(1).map(|d| d.join(&path)))
            .find(|c| c.is_file())
    }

    /// `text` with its JMeter functions (`${__P(threads,10)}`) evaluated now.
    fn evaluate(&self, text: &str) -> String {
        if !text.contains("${") {
            return text.to_owned();
        }
        let mut nobody = crate::variables::UserVariables::new(HashMap::new(), 1, Arc::default())
            .with_properties(Arc::clone(&self.properties));
        crate::variables::Template::parse(text).render(&mut nobody)
    }

    /// The executions replacing `execution` (whose scenario is `scenario`, running this
    /// plan), their scenarios added to `scenarios`; `first` is the index of the first.
    fn executions(
        &mut self,
        execution: &Value,
        scenario: &Value,
        scenarios: &mut Map<String, Value>,
        first: usize,
    ) -> Result<Vec<Value>, ConfigError> {
        let root = self.root;
        // "Run Thread Groups consecutively": each group of a stage waits for the one before.
        let consecutive = root.flag("TestPlan.serialize_threadgroups", false);
        let mut plan_scope = GroupScenario::default();
        if let Some(udv) = root.prop("TestPlan.user_defined_variables") {
            let items = udv
                .get("Arguments.arguments")
                .map(|c| c.children.clone())
                .unwrap_or_default();
            self.add_variables(&items, &mut plan_scope);
        }
        let groups: Vec<&'t Element> = root
            .enabled_children()
            .filter(|c| kind(&c.class) == Kind::ThreadGroup)
            .collect();
        let mut built = Vec::new();
        for group in &groups {
            let mut scenario_doc = plan_scope_for(&plan_scope);
            let scope: scenario::Scope<'t> = root
                .enabled_children()
                .filter(|c| kind(&c.class) == Kind::Scoped)
                .collect();
            for element in &scope {
                self.scoped_once(element, &mut scenario_doc)?;
            }
            let name = unique_name(&group.name, scenarios);
            let prefix = format!("scenarios.{name}.requests");
            let mut requests = Vec::new();
            self.steps(group, &scope, &prefix, &mut requests, &mut scenario_doc)?;
            if requests.is_empty() {
                self.warn(group, "sends no HTTP request; skipped");
                continue;
            }
            scenario_doc.requests = requests;
            self.origins.push((
                format!("scenarios.{name}"),
                format!("{}: {}", self.file.display(), group.path),
            ));
            let load = self.group_load(group);
            built.push((*group, name, scenario_doc, load));
        }
        if built.is_empty() {
            return Err(invalid(
                format!("{}: {}", self.file.display(), root.path),
                "no enabled thread group with an HTTP request: nothing to run",
            ));
        }
        let overrides = scenario_overrides(scenario);
        let loads = self.spread(execution, &built);
        let mut out = Vec::new();
        for (index, ((group, name, mut doc, _), mut keys)) in
            built.into_iter().zip(loads).enumerate()
        {
            for (variable, value) in &overrides.variables {
                doc.variables.insert(variable.clone(), value.clone());
            }
            let mut scenario_value = doc.document();
            for (key, value) in &overrides.keys {
                scenario_value[key] = value.clone();
            }
            scenarios.insert(name.clone(), scenario_value);
            keys.insert("scenario".into(), json!(name));
            if let Some(executor) = execution.get("executor") {
                keys.insert("executor".into(), executor.clone());
            }
            self.origins.push((
                format!("execution.{}", first + index),
                format!("{}: {}", self.file.display(), group.path),
            ));
            let phase = Phase {
                stage: stage(group),
                turn: if consecutive { index as u32 } else { 0 },
            };
            if phase != Phase::default() {
                self.phases.push((first + index, phase));
            }
            out.push(Value::Object(keys));
        }
        Ok(out)
    }

    /// The execution keys of each built group: the group's own load, or the execution's
    /// keys spread as Taurus spreads them.
    fn spread(
        &mut self,
        execution: &Value,
        built: &[(&Element, String, GroupScenario, groups::Load)],
    ) -> Vec<Map<String, Value>> {
        let given = |key: &str| execution.get(key).filter(|v| !v.is_null()).cloned();
        // setUp and tearDown groups keep their own settings, as under Taurus.
        let main = |group: &Element| stage(group) == Stage::Main;
        let threads: Vec<u64> = built
            .iter()
            .map(|b| {
                if main(b.0) {
                    b.3.threads().unwrap_or(1)
                } else {
                    0
                }
            })
            .collect();
        let concurrency = given("concurrency");
        let divided = concurrency
            .as_ref()
            .and_then(|c| c.as_u64().or_else(|| c.as_str()?.trim().parse().ok()))
            .map(|c| groups::divide(c, &threads));
        let timed = given("ramp-up").is_some() || given("hold-for").is_some();
        let total_threads: u64 = threads.iter().sum::<u64>().max(1);
        built
            .iter()
            .enumerate()
            .map(|(i, (group, _, doc, load))| {
                let mut keys = load.keys();
                if !main(group) {
                    return keys;
                }
                match (&divided, &concurrency) {
                    (Some(divided), _) => {
                        keys.insert("concurrency".into(), json!(divided[i]));
                    }
                    (None, Some(text)) => {
                        keys.insert("concurrency".into(), text.clone());
                    }
                    (None, None) => {}
                }
                if timed {
                    keys.remove("iterations");
                    keys.insert("ramp-up".into(), json!("0s"));
                    keys.insert("hold-for".into(), json!("0s"));
                }
                for key in ["ramp-up", "hold-for", "iterations", "steps", "executor"] {
                    if let Some(value) = given(key) {
                        keys.insert(key.into(), value);
                    }
                }
                // Throughput: the execution's, spread like the threads; else the group's
                // Constant Throughput Timers.
                let share = threads[i] as f64 / total_threads as f64;
                let threads_now = keys
                    .get("concurrency")
                    .and_then(Value::as_u64)
                    .unwrap_or(threads[i]);
                for key in ["throughput", "arrival-rate"] {
                    if let Some(rate) = given(key) {
                        match rate.as_f64() {
                            Some(r) => keys.insert(key.into(), json!(r * share)),
                            None => keys.insert(key.into(), rate),
                        };
                    }
                }
                if !keys.contains_key("throughput") && !keys.contains_key("arrival-rate") {
                    let rate: f64 = doc
                        .throughput
                        .iter()
                        .map(|(r, per_user)| {
                            if *per_user {
                                r * threads_now as f64
                            } else {
                                *r
                            }
                        })
                        .sum();
                    if rate > 0.0 {
                        keys.insert("throughput".into(), json!(rate));
                    }
                }
                keys
            })
            .collect()
    }
}

/// A scenario holding the plan's variables, to start a group's from.
fn plan_scope_for(plan: &GroupScenario) -> GroupScenario {
    GroupScenario {
        variables: plan.variables.clone(),
        ..GroupScenario::default()
    }
}

/// `name`, or `name (2)`, … when a scenario has it already.
fn unique_name(name: &str, scenarios: &Map<String, Value>) -> String {
    let base = if name.trim().is_empty() {
        "Thread Group"
    } else {
        name.trim()
    };
    let base = base.replace('.', "_");
    if !scenarios.contains_key(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base} ({n})"))
        .find(|candidate| !scenarios.contains_key(candidate))
        .unwrap_or(base)
}

/// What a Taurus scenario running a script adds to the plan: `variables` (over the
/// plan's), `properties`, and `headers` (under the plan's own Header Managers).
#[derive(Default)]
struct Overrides {
    variables: Vec<(String, String)>,
    keys: Vec<(String, Value)>,
}

fn scenario_overrides(scenario: &Value) -> Overrides {
    let mut out = Overrides::default();
    if let Some(Value::Object(vars)) = scenario.get("variables") {
        out.variables = vars
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
            .collect();
    }
    for key in ["properties", "headers"] {
        if let Some(value) = scenario.get(key) {
            out.keys.push((key.to_owned(), value.clone()));
        }
    }
    out
}
