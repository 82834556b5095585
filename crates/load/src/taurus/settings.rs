//! The top level beyond executions and scenarios: its keys checked, `settings` (the
//! default executor) and `modules` (Peregrine's own TLS settings, JMeter's TLS properties
//! warned about).

use serde_json::{Map, Value};

use super::Builder;
use super::keys;
use super::values::{ConfigValue, boolean, child, optional, path_value};
use crate::ConfigError;

/// JMeter/JVM property prefixes that tune TLS, which Peregrine's own options replace.
const JMETER_TLS_PREFIXES: &[&str] = &["https.", "javax.net.ssl."];

impl Builder {
    /// Checks the top level's keys and reads `settings` and `modules`.
    pub(super) fn top_level(&mut self, document: &Value) -> Result<(), ConfigError> {
        let root = ConfigValue {
            value: document,
            path: String::new(),
        };
        self.check_keys(&root, &[], &keys::TOP)?;
        let top = |key: &str| {
            root.value.get(key).map(|value| ConfigValue {
                value,
                path: key.to_owned(),
            })
        };
        if let Some(settings) = top("settings").filter(|s| s.value.is_object()) {
            self.check_keys(&settings, &[], &keys::SETTINGS)?;
            if let Some(executor) = child(&settings, "default-executor") {
                let name = executor
                    .value
                    .as_str()
                    .ok_or_else(|| executor.error("must be an executor name"))?;
                self.context.default_executor = Some(name.to_owned());
            }
        }
        if let Some(modules) = top("modules").filter(|m| m.value.is_object()) {
            self.modules(&modules)?;
        }
        Ok(())
    }

    /// `modules.peregrine` (TLS trust) and JMeter's TLS properties (warned about).
    fn modules(&mut self, modules: &ConfigValue<'_>) -> Result<(), ConfigError> {
        if let Some(own) = child(modules, "peregrine").filter(|m| m.value.is_object()) {
            self.check_keys(&own, &[], &keys::PEREGRINE_MODULE)?;
            if let Some(file) = optional(child(&own, "ca-cert"), path_value)? {
                self.tls.ca_certs.push(file);
            }
            if optional(child(&own, "insecure"), boolean)? == Some(true) {
                self.tls.insecure = true;
                self.warn(
                    &format!("{}.insecure", own.path),
                    crate::tls::INSECURE_WARNING,
                );
            }
        }
        let jmeter = child(modules, "jmeter");
        for group in ["properties", "system-properties"] {
            let Some(properties) = jmeter.as_ref().and_then(|j| child(j, group)) else {
                continue;
            };
            for key in properties.value.as_object().into_iter().flat_map(Map::keys) {
                if JMETER_TLS_PREFIXES.iter().any(|p| key.starts_with(p)) {
                    self.warn(
                        &format!("{}.{key}", properties.path),
                        "a JMeter TLS setting Peregrine does not use; see --ca-cert, --insecure and modules.peregrine",
                    );
                }
            }
        }
        Ok(())
    }
}
