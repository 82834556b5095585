//! One thread group's subtree read into a Taurus scenario document: controllers become
//! Taurus blocks, HTTP samplers requests, and the config elements, timers, assertions and
//! extractors in scope are applied to each request they govern (JMeter's scoping rules:
//! an element applies to every sampler under its parent, or to its own sampler).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::kinds::{Kind, kind};
use super::tree::{Element, Prop};
use super::{Reader, invalid};
use crate::ConfigError;

/// The elements in scope of a sampler, outermost first.
pub(super) type Scope<'t> = Vec<&'t Element>;

/// What a thread group's subtree reads into.
#[derive(Default)]
pub(super) struct GroupScenario {
    /// The Taurus `requests` list.
    pub(super) requests: Vec<Value>,
    /// `variables`: User Defined Variables of the plan and the group.
    pub(super) variables: BTreeMap<String, String>,
    /// `data-sources`.
    pub(super) data_sources: Vec<Value>,
    /// A Cookie Manager is in scope (else JMeter keeps no cookies).
    pub(super) cookie_manager: bool,
    /// The Cookie Managers' user-defined cookies.
    pub(super) cookies: Vec<Value>,
    /// Constant Throughput Timers' targets, in requests per second for the whole group
    /// (`per_user`: the target is per thread, to multiply by the group's threads).
    pub(super) throughput: Vec<(f64, bool)>,
}

impl GroupScenario {
    /// The scenario document.
    pub(super) fn document(&self) -> Value {
        let mut scenario = Map::new();
        if !self.variables.is_empty() {
            scenario.insert("variables".into(), json!(self.variables));
        }
        if !self.data_sources.is_empty() {
            scenario.insert("data-sources".into(), json!(self.data_sources));
        }
        scenario.insert("store-cookie".into(), json!(self.cookie_manager));
        if !self.cookies.is_empty() {
            scenario.insert("cookies".into(), json!(self.cookies));
        }
        scenario.insert("requests".into(), Value::Array(self.requests.clone()));
        Value::Object(scenario)
    }
}

/// Deepest nesting of Module Controllers (each may point at another).
const MAX_MODULE_DEPTH: usize = 16;

impl<'t> Reader<'t> {
    /// Reads the children of a container (thread group or controller) into `out`, with
    /// `scope` the elements in scope from outside.
    pub(super) fn steps(
        &mut self,
        container: &'t Element,
        scope: &Scope<'t>,
        prefix: &str,
        out: &mut Vec<Value>,
        group: &mut GroupScenario,
    ) -> Result<(), ConfigError> {
        let inner = scope_of(container, scope);
        for child in container.enabled_children() {
            self.step(child, &inner, prefix, out, group)?;
        }
        Ok(())
    }

    /// Reads one child of a container, with `inner` the scope inside the container.
    fn step(
        &mut self,
        child: &'t Element,
        inner: &Scope<'t>,
        prefix: &str,
        out: &mut Vec<Value>,
        group: &mut GroupScenario,
    ) -> Result<(), ConfigError> {
        match kind(&child.class) {
            Kind::HttpSampler => {
                let mut own = inner.clone();
                own.extend(
                    child
                        .enabled_children()
                        .filter(|c| kind(&c.class) == Kind::Scoped),
                );
                for element in child.enabled_children() {
                    self.scoped_once(element, group)?;
                }
                let request = self.request(child, &own, group)?;
                self.record(prefix, out.len(), child);
                out.push(request);
            }
            Kind::Action => {
                if let Some(action) = self.action(child) {
                    self.record(prefix, out.len(), child);
                    out.push(action);
                }
            }
            Kind::OtherSampler => {
                return Err(invalid(
                    self.where_(child),
                    format!(
                        "{} is not an HTTP sampler: Peregrine sends HTTP requests only, so this plan cannot run (disable the element to run the rest)",
                        child.class
                    ),
                ));
            }
            Kind::Controller => self.controller(child, inner, prefix, out, group)?,
            Kind::Scoped => self.scoped_once(child, group)?,
            Kind::Fragment | Kind::Listener | Kind::Plan => {}
            Kind::ThreadGroup => {
                self.warn(child, "a thread group inside another element is skipped")
            }
            Kind::Unknown => self.warn(
                child,
                &format!("{} is not supported by Peregrine; skipped", child.class),
            ),
        }
        Ok(())
    }

    /// Remembers that Taurus key path `prefix.index` came from `element`, for messages.
    fn record(&mut self, prefix: &str, index: usize, element: &Element) {
        let origin = self.where_(element);
        self.origins.push((format!("{prefix}.{index}"), origin));
    }

    fn controller(
        &mut self,
        element: &'t Element,
        scope: &Scope<'t>,
        prefix: &str,
        out: &mut Vec<Value>,
        group: &mut GroupScenario,
    ) -> Result<(), ConfigError> {
        let index = out.len();
        let here = format!("{prefix}.{index}");
        let mut body = Vec::new();
        let class = element.class.as_str();
        let block = match class {
            "GenericController" | "RecordingController" | "CriticalSectionController" => {
                return self.steps(element, scope, prefix, out, group);
            }
            "ModuleController" => return self.module(element, scope, prefix, out, group),
            "IncludeController" => {
                // Its children are the included plan's, put there when the file was read.
                return self.steps(element, scope, prefix, out, group);
            }
            "TransactionController" => {
                self.steps(element, scope, &format!("{here}.do"), &mut body, group)?;
                json!({
                    "transaction": element.name,
                    "force-parent-sample": element.flag("TransactionController.parent", false),
                    "include-timers": element.flag("TransactionController.includeTimers", false),
                    "do": body,
                })
            }
            "LoopController" => {
                self.steps(element, scope, &format!("{here}.do"), &mut body, group)?;
                let loops = element.string("LoopController.loops").trim();
                let count = if element.flag("LoopController.continue_forever", false)
                    && loops.starts_with('-')
                    || loops == "-1"
                {
                    json!("forever")
                } else if let Ok(n) = loops.parse::<u64>() {
                    json!(n)
                } else if loops.contains("${") {
                    json!(loops)
                } else {
                    json!(0)
                };
                json!({"loop": count, "do": body})
            }
            "WhileController" => {
                self.steps(element, scope, &format!("{here}.do"), &mut body, group)?;
                json!({"while": element.string("WhileController.condition"), "do": body})
            }
            "IfController" => {
                self.steps(element, scope, &format!("{here}.then"), &mut body, group)?;
                if element.flag("IfController.evaluateAll", false) {
                    self.warn(
                        element,
                        "\"Evaluate for all children\" is not supported: the condition is evaluated once, before the first child",
                    );
                }
                json!({"if": element.string("IfController.condition").trim(), "then": body})
            }
            "OnceOnlyController" => {
                self.steps(element, scope, &format!("{here}.once"), &mut body, group)?;
                json!({"once": body})
            }
            "RandomController" | "InterleaveControl" | "RandomOrderController" => {
                let key = match class {
                    "RandomController" => "jmx-random",
                    "InterleaveControl" => "jmx-interleave",
                    _ => "jmx-random-order",
                };
                let (choices, _) =
                    self.choices(element, scope, &format!("{here}.{key}"), group, false)?;
                json!({ key: choices })
            }
            "SwitchController" => {
                // JMeter counts its samplers and controllers, empty ones too, by index.
                let at = format!("{here}.jmx-switch");
                let (choices, names) = self.choices(element, scope, &at, group, true)?;
                json!({
                    "jmx-switch": choices,
                    "value": element.string("SwitchController.value"),
                    "names": names,
                })
            }
            "ThroughputController" => {
                self.steps(element, scope, &format!("{here}.do"), &mut body, group)?;
                let number = |name: &str| {
                    self.evaluate(element.string(name))
                        .trim()
                        .parse::<f64>()
                        .unwrap_or(0.0)
                };
                let per_user = element.flag("ThroughputController.perThread", false);
                // Style 1 is "Percent Executions", anything else "Total Executions".
                let spec = if element.string("ThroughputController.style").trim() == "1" {
                    json!({"percent": number("ThroughputController.percentThroughput"), "per-user": per_user})
                } else {
                    json!({"total": number("ThroughputController.maxThroughput"), "per-user": per_user})
                };
                json!({"jmx-throughput": spec, "do": body})
            }
            "RuntimeController" => {
                self.steps(element, scope, &format!("{here}.do"), &mut body, group)?;
                let seconds = self
                    .evaluate(element.string("RuntimeController.seconds"))
                    .trim()
                    .parse::<f64>()
                    .unwrap_or(0.0)
                    .max(0.0);
                json!({"jmx-runtime": format!("{}ms", (seconds * 1000.0).round()), "do": body})
            }
            "ForeachController" => {
                self.steps(element, scope, &format!("{here}.do"), &mut body, group)?;
                self.foreach(element, body)
            }
            _ => {
                self.warn(
                    element,
                    &format!(
                        "{class} is not supported by Peregrine: its children run in order, once, as in a Simple Controller"
                    ),
                );
                return self.steps(element, scope, prefix, out, group);
            }
        };
        if block_is_empty(&block) {
            return Ok(());
        }
        self.record(prefix, index, element);
        out.push(block);
        Ok(())
    }

    /// Each child of a choosing controller as one choice, with its name; `keep_empty`
    /// keeps a sampler or controller that sends nothing (a Switch counts it).
    fn choices(
        &mut self,
        element: &'t Element,
        scope: &Scope<'t>,
        at: &str,
        group: &mut GroupScenario,
        keep_empty: bool,
    ) -> Result<(Vec<Value>, Vec<String>), ConfigError> {
        let inner = scope_of(element, scope);
        let (mut choices, mut names) = (Vec::new(), Vec::new());
        for child in element.enabled_children() {
            let mut unit = Vec::new();
            let here = format!("{at}.{}", choices.len());
            self.step(child, &inner, &here, &mut unit, group)?;
            let counted = matches!(
                kind(&child.class),
                Kind::HttpSampler | Kind::Controller | Kind::Action
            );
            if !unit.is_empty() || (keep_empty && counted) {
                choices.push(Value::Array(unit));
                names.push(child.name.clone());
            }
        }
        Ok((choices, names))
    }

    fn foreach(&mut self, element: &Element, body: Vec<Value>) -> Value {
        let input = element.string("ForeachController.inputVal").trim();
        let output = element.string("ForeachController.returnVal").trim();
        if !element.flag("ForeachController.useSeparator", true) {
            self.warn(
                element,
                "\"Add _ before number\" is off: Peregrine reads input_1, input_2, … all the same",
            );
        }
        let bounded = ["ForeachController.startIndex", "ForeachController.endIndex"]
            .iter()
            .any(|p| !element.string(p).trim().is_empty());
        if bounded {
            self.warn(
                element,
                "start and end indexes are not supported: every value is visited",
            );
        }
        json!({"foreach": format!("{output} in {input}"), "do": body})
    }

    /// A Module Controller runs the controller its node path names, with this scope.
    fn module(
        &mut self,
        element: &'t Element,
        scope: &Scope<'t>,
        prefix: &str,
        out: &mut Vec<Value>,
        group: &mut GroupScenario,
    ) -> Result<(), ConfigError> {
        let names: Vec<&str> = element
            .collection(None, "ModuleController.node_path")
            .iter()
            .map(|p| p.text.as_str())
            .collect();
        let target = self.find_node(&names).ok_or_else(|| {
            invalid(
                self.where_(element),
                format!(
                    "the Module Controller's target {:?} is not in the plan",
                    names.join(" > ")
                ),
            )
        })?;
        if self.modules >= MAX_MODULE_DEPTH {
            return Err(invalid(
                self.where_(element),
                format!("Module Controllers nest deeper than {MAX_MODULE_DEPTH} levels (a cycle?)"),
            ));
        }
        self.modules += 1;
        let result = match kind(&target.class) {
            Kind::Fragment => self.steps(target, scope, prefix, out, group),
            Kind::Controller => self.controller(target, scope, prefix, out, group),
            _ => Err(invalid(
                self.where_(element),
                format!(
                    "the Module Controller's target {:?} is a {}, not a controller or test fragment",
                    target.path, target.class
                ),
            )),
        };
        self.modules -= 1;
        result
    }

    /// The element a Module Controller's node path names: test element names from the
    /// root, the first being the plan (older JMeter writes the WorkBench or the plan twice).
    fn find_node(&self, names: &[&str]) -> Option<&'t Element> {
        let root = self.root;
        let mut rest = names;
        while rest
            .first()
            .is_some_and(|n| *n == root.name || *n == "WorkBench")
        {
            rest = &rest[1..];
        }
        let mut node = root;
        for name in rest {
            node = node.children.iter().find(|c| c.name == *name)?;
        }
        (!std::ptr::eq(node, root)).then_some(node)
    }

    /// Flow Control Action: a pause, a stop or the next iteration.
    fn action(&mut self, element: &Element) -> Option<Value> {
        let target = match element.string("ActionProcessor.target").trim() {
            "2" => "all-threads",
            _ => "current-thread",
        };
        match element.string("ActionProcessor.action").trim() {
            "1" => {
                let millis = element.string("ActionProcessor.duration").trim();
                Some(
                    json!({"action": "pause", "pause-duration": format!("{}ms", millis.parse::<u64>().unwrap_or(0))}),
                )
            }
            "0" | "2" => Some(json!({"action": "stop", "target": target})),
            "3" => Some(json!({"action": "continue"})),
            other => {
                self.warn(
                    element,
                    &format!("Flow Control Action {other:?} (break loop, restart loop) is not supported; skipped"),
                );
                None
            }
        }
    }

    /// Config elements that act once, where they are, not per request: variables, CSV
    /// data, cookies, throughput; and warnings for the ones Peregrine does not apply.
    pub(super) fn scoped_once(
        &mut self,
        element: &'t Element,
        group: &mut GroupScenario,
    ) -> Result<(), ConfigError> {
        match element.class.as_str() {
            "Arguments" => {
                let items = element.collection(None, "Arguments.arguments").to_vec();
                self.add_variables(&items, group);
            }
            "CSVDataSet" => self.csv(element, group),
            "CookieManager" => {
                group.cookie_manager = true;
                for cookie in element.collection(None, "CookieManager.cookies") {
                    group.cookies.push(json!({
                        "name": cookie.name,
                        "value": cookie.string("Cookie.value"),
                        "domain": cookie.string("Cookie.domain"),
                    }));
                }
            }
            "ConstantThroughputTimer" => self.throughput_timer(element, group),
            "DNSCacheManager" => self.warn(
                element,
                "custom DNS servers and static hosts are not used: the system resolver is, once per host at the start of the run",
            ),
            "ConfigTestElement" if !is_http_defaults(element) => self.warn(
                element,
                &format!("{} is not supported by Peregrine; skipped", element.gui),
            ),
            _ => {}
        }
        Ok(())
    }

    /// User Defined Variables, in order: a value may use the ones before it, and its
    /// functions are evaluated now.
    pub(super) fn add_variables(&mut self, items: &[Prop], group: &mut GroupScenario) {
        for item in items {
            let name = item.string("Argument.name").trim();
            if name.is_empty() {
                continue;
            }
            // JMeter evaluates them once, at the start: `${__P(host,localhost)}` is fixed.
            let value = self.evaluate(&substitute(item.string("Argument.value"), &group.variables));
            group.variables.insert(name.to_owned(), value);
        }
    }

    fn throughput_timer(&mut self, element: &Element, group: &mut GroupScenario) {
        let per_minute = element.string("throughput").trim().parse::<f64>().ok();
        let Some(per_minute) = per_minute.filter(|t| *t > 0.0) else {
            self.warn(element, "no numeric throughput: the timer is ignored");
            return;
        };
        // calcMode 0: this thread only; 1-4: shared by the active threads.
        let per_user = element.string("calcMode").trim() == "0";
        group.throughput.push((per_minute / 60.0, per_user));
    }

    fn csv(&mut self, element: &Element, group: &mut GroupScenario) {
        let written = substitute(element.string("filename").trim(), &group.variables);
        let names: Vec<String> = element
            .string("variableNames")
            .split(',')
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        let Some(file) = self.find_file(&written) else {
            self.warn(
                element,
                &format!(
                    "CSV file {written:?} not found (looked beside the plan and in the working directory): its variables are <EOF>, as in JMeter"
                ),
            );
            for name in names {
                group.variables.insert(name, "<EOF>".into());
            }
            return;
        };
        let delimiter = match element.string("delimiter") {
            "" => ",".to_owned(),
            "\\t" | "\t" => "tab".to_owned(),
            d => d.to_owned(),
        };
        let mut source = json!({
            "path": file.to_string_lossy(),
            "delimiter": delimiter,
            "quoted": element.flag("quotedData", false),
            "loop": element.flag("recycle", true),
        });
        if !names.is_empty() {
            source["variable-names"] = json!(names.join(","));
            source["ignore-first-line"] = json!(element.flag("ignoreFirstLine", false));
        }
        if !element.flag("recycle", true) && !element.flag("stopThread", false) {
            self.warn(
                element,
                "at the end of the file each user stops (JMeter would go on with <EOF> values)",
            );
        }
        group.data_sources.push(source);
    }
}

/// The scope inside `container`: the outer scope and its config elements, timers,
/// assertions and extractors.
fn scope_of<'t>(container: &'t Element, scope: &Scope<'t>) -> Scope<'t> {
    let mut inner = scope.clone();
    inner.extend(
        container
            .enabled_children()
            .filter(|c| kind(&c.class) == Kind::Scoped),
    );
    inner
}

/// An HTTP Request Defaults element (a `ConfigTestElement` holding HTTP sampler fields).
pub(super) fn is_http_defaults(element: &Element) -> bool {
    element.class == "ConfigTestElement"
        && (element.gui == "HttpDefaultsGui"
            || element
                .props
                .iter()
                .any(|p| p.name.starts_with("HTTPSampler.") || p.name == "HTTPsampler.Arguments"))
}

/// `text` with `${name}` replaced by the variables known so far.
pub(super) fn substitute(text: &str, variables: &BTreeMap<String, String>) -> String {
    if !text.contains("${") {
        return text.to_owned();
    }
    let mut out = text.to_owned();
    for (name, value) in variables {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    out
}

/// A block whose body is empty (Taurus refuses those, and they send nothing).
fn block_is_empty(block: &Value) -> bool {
    [
        "do",
        "then",
        "once",
        "jmx-random",
        "jmx-interleave",
        "jmx-switch",
        "jmx-random-order",
    ]
    .iter()
    .any(|key| {
        block
            .get(key)
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
    })
}
