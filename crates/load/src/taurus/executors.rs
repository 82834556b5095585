//! Which executions Peregrine can run. Taurus runs each execution with its own tool; an
//! execution whose scenario is a script (a JMX, a locustfile, …) or whose executor drives
//! a browser or a test framework has nothing Peregrine can send, so it is skipped with one
//! warning and the others run.

use serde_json::Value;

use super::values::ConfigValue;

/// Taurus's browser and functional-test executors, and its results loader: nothing there
/// is an HTTP request Peregrine can send.
const NOT_LOAD_EXECUTORS: &[&str] = &[
    "selenium",
    "playwright",
    "appium",
    "junit",
    "testng",
    "pytest",
    "rspec",
    "mocha",
    "nunit",
    "xunit",
    "robot",
    "newman",
    "wdio",
    "external-results-loader",
];

/// The class of Taurus's JMeter executor, for aliases defined under `modules`.
const JMETER_CLASS: &str = "bzt.modules.jmeter.JMeterExecutor";

/// The executor an execution names (or the default), with a `modules` alias resolved to
/// `jmeter` when its class is JMeter's.
pub(super) fn executor_of(
    execution: &Value,
    default_executor: Option<&str>,
    document: &Value,
) -> String {
    let name = execution
        .get("executor")
        .and_then(Value::as_str)
        .or(default_executor)
        .unwrap_or("jmeter");
    let class = match document.get("modules").and_then(|m| m.get(name)) {
        Some(Value::String(class)) => Some(class.as_str()),
        Some(module) => module.get("class").and_then(Value::as_str),
        None => None,
    };
    if class == Some(JMETER_CLASS) {
        "jmeter".to_owned()
    } else {
        name.to_owned()
    }
}

/// Why Peregrine cannot run `execution` (`None`: it can), given the executor it resolved to.
pub(super) fn skip_reason(
    execution: &ConfigValue<'_>,
    executor: &str,
    scenarios: &Value,
) -> Option<String> {
    if NOT_LOAD_EXECUTORS.contains(&executor) {
        return Some(format!(
            "executor {executor:?} drives a browser or a test framework, which Peregrine does not; this execution is skipped"
        ));
    }
    let scenario = match execution.value.get("scenario")? {
        Value::String(name) => match scenarios.get(name) {
            Some(scenario) => scenario,
            None if looks_like_file(name) => {
                return Some(format!(
                    "scenario {name:?} is a script file, which Peregrine does not run; this execution is skipped"
                ));
            }
            None => return None,
        },
        inline => inline,
    };
    let script = scenario.get("script").and_then(Value::as_str)?;
    Some(format!(
        "its scenario runs the script {script:?} (executor {executor:?}), which Peregrine does not; this execution is skipped"
    ))
}

/// Extensions of the scripts Taurus's executors run: JMeter plans, Locust/Apiritif/pytest
/// files, Gatling simulations, k6 and Mocha scripts, JUnit jars, Postman collections, …
const SCRIPT_EXTENSIONS: &[&str] = &[
    "jmx", "py", "scala", "js", "ts", "java", "jar", "rb", "robot", "json", "go", "xml", "cs",
    "dll",
];

/// A scenario string that names a script file rather than a scenario: `test.jmx`,
/// `tests/locustfile.py`.
fn looks_like_file(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| SCRIPT_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}
