//! JMeter properties: `modules.jmeter.properties` (and a scenario's `properties`) read by
//! `${__P(name[,default])}`, which Taurus also accepts in an execution's load fields
//! (`concurrency: ${__P(users,10)}`): those are evaluated when the config is read.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Number, Value};

use super::Builder;
use super::values::ConfigValue;
use crate::variables::{Template, UserVariables};

/// Execution keys that are not load fields: every other one may hold `${__P(…)}`.
const NOT_LOAD_FIELDS: &[&str] = &["scenario", "executor"];

/// `modules.jmeter.properties` as text.
pub(super) fn jmeter_properties(document: &Value) -> HashMap<String, String> {
    let properties = document
        .get("modules")
        .and_then(|m| m.get("jmeter"))
        .and_then(|j| j.get("properties"));
    as_text_map(properties)
}

fn as_text_map(value: Option<&Value>) -> HashMap<String, String> {
    value
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name.clone(), text)
        })
        .collect()
}

impl Builder {
    /// The JMeter properties with a scenario's `properties` over them.
    pub(super) fn properties_with(
        &self,
        scenario: Option<ConfigValue<'_>>,
    ) -> HashMap<String, String> {
        let mut merged = self.context.properties.clone();
        merged.extend(as_text_map(scenario.map(|s| s.value)));
        merged
    }

    /// A user for evaluating JMeter functions while the config is read: the JMeter
    /// properties and `settings.env`, no variables.
    pub(super) fn load_time_user(&self) -> UserVariables {
        UserVariables::new(HashMap::new(), 1, Arc::default())
            .with_properties(Arc::new(self.context.properties.clone()))
            .with_environment(Arc::clone(&self.context.environment))
    }
}

/// The execution with `${…}` in its load fields evaluated (a number stays a number).
pub(super) fn evaluate_load_fields(execution: &Value, nobody: &mut UserVariables) -> Value {
    let mut out = execution.clone();
    let Some(map) = out.as_object_mut() else {
        return out;
    };
    let load_fields = super::EXECUTION_KEYS
        .iter()
        .filter(|key| !NOT_LOAD_FIELDS.contains(key));
    for key in load_fields {
        let Some(Value::String(text)) = map.get(*key) else {
            continue;
        };
        if !text.contains("${") {
            continue;
        }
        let rendered = Template::parse(text).render(nobody);
        let value = match rendered.trim().parse::<u64>() {
            Ok(n) => Value::Number(n.into()),
            Err(_) => match rendered
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
            {
                Some(n) if *key == "throughput" || *key == "arrival-rate" => Value::Number(n),
                _ => Value::String(rendered),
            },
        };
        map.insert((*key).to_owned(), value);
    }
    out
}
