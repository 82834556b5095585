//! The Taurus reader: a merged config document (see [`merge`]) read into a [`Plan`], every
//! value checked and every error named by its key path.

mod assertions;
mod blocks;
mod data_source;
pub mod document;
mod env;
mod executors;
mod extractors;
mod keys;
mod properties;
mod scenario;
mod settings;
mod values;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use crate::criteria::Criterion;
use crate::plan::{DEFAULT_OPEN_CONNECTIONS, Execution, Outputs, Plan, Request};
use crate::{ConfigError, Rejected};
use values::{
    ConfigValue, boolean, child, count, duration, optional, path_value, provisioned_count,
    provisioned_number, rate,
};

/// Builds a plan from a merged Taurus document.
pub fn from_taurus(document: &Value) -> Result<Plan, ConfigError> {
    from_taurus_with_warnings(document).map_err(|rejected| rejected.error)
}

/// Builds a plan from a merged Taurus document; a rejected one keeps the warnings
/// gathered before the error.
pub fn from_taurus_with_warnings(document: &Value) -> Result<Plan, Rejected> {
    from_taurus_files(document, &[])
}

/// Builds a plan from a merged Taurus document read from `files`: relative data-source
/// paths are looked up in the current directory, then next to each file.
pub fn from_taurus_files(document: &Value, files: &[PathBuf]) -> Result<Plan, Rejected> {
    let mut builder = Builder::default();
    builder.context.config_dirs = files
        .iter()
        .filter_map(|f| f.parent().map(std::path::Path::to_path_buf))
        .collect();
    let environment = env::resolved_environment(document)?;
    let mut document = env::substitute_settings_env(document, &environment)?;
    // JMX plans are read after settings.env is put in (it may name the script), so that
    // their own `${…}` are left for JMeter's rules.
    let jmx = crate::jmx::expand(&mut document, &builder.context.config_dirs)?;
    builder.notes.warnings.extend(jmx.warnings.iter().cloned());
    let document = &document;
    blocks::runtime_names(document, &mut builder.context.runtime_names);
    builder.context.properties = properties::jmeter_properties(document);
    builder.context.environment = Arc::new(env::as_run_time(&environment));
    let result = match read(&mut builder, document) {
        Ok(()) => {
            let mut plan = builder.finish().map_err(|error| Rejected {
                error,
                warnings: Vec::new(),
            })?;
            plan.fingerprint = fingerprint(document);
            for (index, phase) in &jmx.phases {
                if let Some(execution) = plan.executions.get_mut(*index) {
                    execution.phase = *phase;
                }
            }
            Ok(plan)
        }
        Err(error) => Err(Rejected {
            error,
            warnings: builder.notes.warnings,
        }),
    };
    result
        .map(|mut plan| {
            rename_warnings(&mut plan.warnings, &jmx);
            plan
        })
        .map_err(|mut rejected| {
            rename_warnings(&mut rejected.warnings, &jmx);
            if let ConfigError::Invalid { path, .. } = &mut rejected.error
                && let Some(renamed) = jmx.rename(path)
            {
                *path = renamed;
            }
            rejected
        })
}

/// Warnings about generated scenarios renamed to the JMX elements they came from.
fn rename_warnings(warnings: &mut [String], jmx: &crate::jmx::Expanded) {
    for warning in warnings {
        if let Some((path, note)) = warning.split_once(": ")
            && let Some(renamed) = jmx.rename(path)
        {
            *warning = format!("{renamed}: {note}");
        }
    }
}

/// A hash of the merged config (after overrides and settings.env), so that the shards of
/// one plan can be told from those of another: hex of the first 16 bytes of its SHA-256.
fn fingerprint(document: &Value) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(document.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn read(builder: &mut Builder, document: &Value) -> Result<(), ConfigError> {
    builder.top_level(document)?;
    let scenarios = document.get("scenarios").cloned().unwrap_or(Value::Null);
    let executions = match document.get("execution") {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Object(_)) => vec![document["execution"].clone()],
        Some(Value::Null) | None => Vec::new(),
        Some(_) => {
            return Err(ConfigError::Invalid {
                path: "execution".into(),
                message: "must be a list of executions or one execution mapping".into(),
            });
        }
    };
    if executions.is_empty() {
        return Err(ConfigError::Invalid {
            path: "execution".into(),
            message: "no execution: add `execution:` with a concurrency and a scenario".into(),
        });
    }
    let mut skipped = Vec::new();
    for (i, execution) in executions.iter().enumerate() {
        let node = ConfigValue {
            value: execution,
            path: format!("execution.{i}"),
        };
        let executor = executors::executor_of(
            execution,
            builder.context.default_executor.as_deref(),
            document,
        );
        if let Some(reason) = executors::skip_reason(&node, &executor, &scenarios) {
            builder.warn(&node.path, &reason);
            skipped.push(format!("{}: {reason}", node.path));
            continue;
        }
        let built = builder.execution(&node, &executor, &scenarios)?;
        builder.executions.push(built);
    }
    if builder.executions.is_empty() {
        return Err(ConfigError::Invalid {
            path: "execution".into(),
            message: format!("no execution Peregrine can run ({})", skipped.join("; ")),
        });
    }
    if let Some(reporting) = document.get("reporting") {
        builder.reporting(&ConfigValue {
            value: reporting,
            path: "reporting".into(),
        })?;
    }
    Ok(())
}

/// What reading one scenario's request list builds up.
pub(super) struct Steps<'s> {
    /// Every request, in the order written.
    pub(super) requests: Vec<Arc<Request>>,
    /// Whether any entry is a block (the scenario then needs a program).
    pub(super) has_blocks: bool,
    /// `once` blocks so far.
    pub(super) onces: usize,
    /// `jmx-random` and `jmx-interleave` blocks so far.
    pub(super) picks: usize,
    /// `jmx-throughput` blocks so far.
    pub(super) throttles: usize,
    /// Names of the scenarios being read, to refuse `include-scenario` recursion.
    pub(super) including: Vec<String>,
    /// The config's `scenarios`.
    pub(super) scenarios: &'s Value,
    /// Requests and blocks read so far, included copies too (see [`blocks::MAX_SCENARIO_ENTRIES`]).
    pub(super) entries: usize,
    /// How many entries each scenario expands to, once counted.
    pub(super) sizes: HashMap<String, usize>,
    /// Data sources of included scenarios (each scenario's once, however often included):
    /// in Taurus they become CSV Data Sets in the plan, and JMeter advances every one each
    /// iteration wherever it sits.
    pub(super) data_sources: Vec<Arc<crate::plan::DataSource>>,
    /// Included scenarios whose data sources are read.
    pub(super) sourced: Vec<String>,
}

#[derive(Default)]
struct Builder {
    pub(super) executions: Vec<Execution>,
    pub(super) criteria: Vec<Criterion>,
    pub(super) outputs: Outputs,
    pub(super) labels: Vec<String>,
    pub(super) inline_scenarios: usize,
    /// Where each label is in `labels`.
    pub(super) label_indexes: HashMap<String, usize>,
    /// `modules.peregrine` TLS settings.
    pub(super) tls: crate::plan::TlsOptions,
    /// What the config says about reading the rest of it.
    pub(super) context: Context,
    /// What the reader has to say about the config.
    pub(super) notes: Notes,
}

/// What the config says about reading the rest of it, known before its scenarios are read.
#[derive(Default)]
pub(super) struct Context {
    /// `settings.default-executor`: the executor of executions that name none.
    pub(super) default_executor: Option<String>,
    /// Variables the config writes at run time (extractors, set-variables, foreach, CSV).
    pub(super) runtime_names: HashSet<String>,
    /// `modules.jmeter.properties`, for `${__P(name)}`.
    pub(super) properties: HashMap<String, String>,
    /// `settings.env`, for `${__env(NAME)}`.
    pub(super) environment: Arc<HashMap<String, Option<String>>>,
    /// Directories of the config files, for relative data-source paths.
    pub(super) config_dirs: Vec<PathBuf>,
}

/// The warnings about a config, each given once.
#[derive(Default)]
pub(super) struct Notes {
    pub(super) warnings: Vec<String>,
    /// Every warning given, to give each once.
    pub(super) warned: HashSet<String>,
    /// `${name}`s already warned about.
    pub(super) undefined_variables: HashSet<String>,
}

const EXECUTION_KEYS: &[&str] = &[
    "concurrency",
    "ramp-up",
    "hold-for",
    "iterations",
    "throughput",
    "steps",
    "arrival-rate",
    "scenario",
    "executor",
];
impl Builder {
    /// Adds a warning, once: a scenario that two executions run is read twice.
    pub(super) fn warn(&mut self, path: &str, note: &str) {
        let warning = format!("{path}: {note}");
        if self.notes.warned.insert(warning.clone()) {
            self.notes.warnings.push(warning);
        }
    }

    fn finish(self) -> Result<Plan, ConfigError> {
        for criterion in &self.criteria {
            if let Some(label) = &criterion.label
                && !self.labels.contains(label)
            {
                return Err(ConfigError::Invalid {
                    path: criterion.path.clone(),
                    message: format!(
                        "criterion names label {label:?}, which no request has (labels: {})",
                        self.labels.join(", ")
                    ),
                });
            }
        }
        Ok(Plan {
            executions: self.executions,
            criteria: self.criteria,
            outputs: self.outputs,
            warnings: self.notes.warnings,
            labels: self.labels,
            tls: self.tls,
            fingerprint: String::new(),
            graceful_stop: None,
        })
    }

    fn execution(
        &mut self,
        node: &ConfigValue<'_>,
        executor: &str,
        scenarios: &Value,
    ) -> Result<Execution, ConfigError> {
        if !node.value.is_object() {
            return Err(node.error("must be a mapping with concurrency, hold-for, scenario…"));
        }
        self.check_keys(node, EXECUTION_KEYS, &keys::EXECUTION)?;
        let evaluated = properties::evaluate_load_fields(node.value, &mut self.load_time_user());
        let node = &ConfigValue {
            value: &evaluated,
            path: node.path.clone(),
        };
        let child = |key: &'static str| child(node, key);
        if !["jmeter", "peregrine"].contains(&executor) {
            self.warn(
                &format!("{}.executor", node.path),
                &format!(
                    "executor {executor:?} is not used; Peregrine's own engine runs this execution's requests"
                ),
            );
        }
        let arrival_rate = optional(child("arrival-rate"), rate)?;
        let concurrency = match optional(child("concurrency"), provisioned_count)? {
            Some(n) => n,
            None if arrival_rate.is_some() => u64::from(DEFAULT_OPEN_CONNECTIONS),
            None => 1,
        };
        let ramp_up = optional(child("ramp-up"), duration)?.unwrap_or_default();
        let hold_for = optional(child("hold-for"), duration)?.unwrap_or_default();
        let mut iterations = optional(child("iterations"), count)?;
        if iterations.is_none() && (ramp_up + hold_for).is_zero() {
            iterations = Some(1);
        }
        let throughput = optional(child("throughput"), provisioned_number)?;
        if throughput.is_some() && arrival_rate.is_some() {
            return Err(
                node.error("set either throughput (a cap) or arrival-rate (open model), not both")
            );
        }
        if arrival_rate.is_some() && (ramp_up + hold_for).is_zero() {
            return Err(node.error("arrival-rate needs hold-for (and optionally ramp-up)"));
        }
        let steps = optional(child("steps"), count)?
            .map(|n| u32::try_from(n).map_err(|_| node.error("steps is too large")))
            .transpose()?;
        let scenario_node = child("scenario").ok_or_else(|| node.error("has no scenario"))?;
        let scenario = self.scenario(&scenario_node, scenarios)?;
        Ok(Execution {
            concurrency: u32::try_from(concurrency)
                .map_err(|_| node.error("concurrency is too large"))?,
            ramp_up,
            hold_for,
            iterations,
            throughput,
            steps,
            arrival_rate,
            scenario: Arc::new(scenario),
            shard: crate::plan::Shard::WHOLE,
            phase: crate::plan::Phase::default(),
        })
    }

    fn reporting(&mut self, node: &ConfigValue<'_>) -> Result<(), ConfigError> {
        let mut seen = HashSet::new();
        for item in &node.items(" of reporters")? {
            let module = match item.value {
                Value::String(name) => name.as_str(),
                Value::Object(map) => map
                    .get("module")
                    .and_then(Value::as_str)
                    .ok_or_else(|| item.error("has no module"))?,
                _ => return Err(item.error("must be a module name or a mapping with module")),
            };
            seen.insert(module.to_owned());
            let section = match module {
                "final-stats" => Some(&keys::FINAL_STATS),
                "passfail" => Some(&keys::PASSFAIL),
                "junit-xml" => Some(&keys::JUNIT_XML),
                "console" => Some(&keys::CONSOLE),
                _ => None,
            };
            if let Some(section) = section {
                self.check_keys(item, &[], section)?;
            }
            match module {
                "final-stats" => {
                    self.outputs.dump_xml = optional(child(item, "dump-xml"), path_value)?
                        .or(self.outputs.dump_xml.take());
                    self.outputs.dump_csv = optional(child(item, "dump-csv"), path_value)?
                        .or(self.outputs.dump_csv.take());
                    let parts = &mut self.outputs.final_stats;
                    for (key, part) in [
                        ("summary", &mut parts.summary),
                        ("percentiles", &mut parts.percentiles),
                        ("summary-labels", &mut parts.summary_labels),
                        ("failed-labels", &mut parts.failed_labels),
                        ("test-duration", &mut parts.test_duration),
                    ] {
                        if let Some(on) = optional(child(item, key), boolean)? {
                            *part = on;
                        }
                    }
                }
                "passfail" => {
                    if let Some(criteria) = child(item, "criteria") {
                        self.criteria_list(&criteria)?;
                    }
                }
                "junit-xml" => {
                    self.outputs.junit_xml = Some(
                        optional(child(item, "filename"), path_value)?
                            .unwrap_or_else(|| PathBuf::from("xunit.xml")),
                    );
                    if let Some(source) = child(item, "data-source") {
                        match source.value.as_str() {
                            Some("pass-fail") => self.outputs.junit_pass_fail = true,
                            Some("sample-labels") => {}
                            _ => return Err(source.error("must be sample-labels or pass-fail")),
                        }
                    }
                }
                "console" => {}
                other => self.warn(
                    &item.path,
                    &format!("reporter {other:?} is not implemented by Peregrine; ignored"),
                ),
            }
        }
        Ok(())
    }

    fn criteria_list(&mut self, node: &ConfigValue<'_>) -> Result<(), ConfigError> {
        for item in node.items(" of criteria")? {
            if is_long_criterion(item.value) {
                self.check_keys(&item, &[], &keys::CRITERION)?;
            }
            let criterion = crate::criteria::parse(item.value, &item.path)?;
            self.criteria.push(criterion);
        }
        Ok(())
    }
}

/// A criterion in long form (a mapping of subject, condition, …), not the short form's
/// `{message: "avg-rt>1s"}`.
fn is_long_criterion(value: &Value) -> bool {
    value.as_object().is_some_and(|map| {
        map.len() > 1 || map.contains_key("subject") || !map.values().all(Value::is_string)
    })
}
