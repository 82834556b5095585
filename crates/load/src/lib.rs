//! Peregrine's load generator: reads Taurus configs (or a quick URL form) into a [`Plan`],
//! runs it with virtual users on tokio and its own HTTP/1.1 client (plain or over rustls
//! TLS, see `tls`), keeps latency histograms, and writes Taurus-style console stats, JSON,
//! CSV, JUnit and a self-contained HTML report. Knows nothing of the API.
//!
//! Data flows one way: config (`taurus`, `quick`) → [`Plan`] → engine → `stats` →
//! [`Report`]. The engine returns what it measured as a [`Finished`] and knows nothing of
//! reports; [`Report::new`] builds the report from it and the plan.

pub mod assertion;
pub mod capacity;
pub mod condition;
mod config_error;
pub mod criteria;
pub mod duration;
mod engine;
pub mod exit_code;
pub mod extract;
pub mod files;
mod http1;
mod jmx;
pub mod jsonpath;
pub mod live;
mod markup;
#[cfg(test)]
mod module_cycles;
pub mod plan;
pub mod quick;
pub mod report;
pub mod shard;
pub mod slo;
pub mod stats;
mod taurus;
mod tls;
mod totals;
pub mod url;
pub mod variables;

use std::path::PathBuf;

pub use config_error::{ConfigError, Rejected};
pub use engine::{Ending, Finished, Progress};
pub use plan::Plan;
pub use quick::{QuickTest, from_quick};
pub use report::{LatencyKind, Report};

/// Runs `plan` until it ends or `interrupt` completes (`progress` hears every second) and
/// reports on it.
pub async fn run(
    plan: &Plan,
    interrupt: impl Future<Output = ()> + Send,
    progress: impl FnMut(&Progress),
) -> Report {
    run_watched(plan, interrupt, progress, |_| {}).await
}

/// [`run`], and `at_end` hears the final counts before the report is made (the live views'
/// last update: what the report counts).
pub async fn run_watched(
    plan: &Plan,
    interrupt: impl Future<Output = ()> + Send,
    progress: impl FnMut(&Progress),
    at_end: impl FnOnce(live::Totals),
) -> Report {
    let finished = engine::run(plan, interrupt, progress).await;
    at_end(live::Totals::of(&finished.collector, &finished.monitor));
    Report::new(plan, finished)
}

/// Reads Taurus config files with overrides into a plan; a rejected config keeps the
/// warnings gathered before the error.
pub fn read_plan(files: &[PathBuf], overrides: &[String]) -> Result<Plan, Rejected> {
    let (document, notes) = taurus::document::load(files, overrides)?;
    match taurus::from_taurus_files(&document, files) {
        Ok(mut plan) => {
            plan.warnings.splice(0..0, notes);
            Ok(plan)
        }
        Err(mut rejected) => {
            rejected.warnings.splice(0..0, notes);
            Err(rejected)
        }
    }
}

/// Reads one Taurus config given as text (`name` is used in error messages) into a plan.
pub fn plan_from_str(name: &str, text: &str, overrides: &[String]) -> Result<Plan, ConfigError> {
    let document =
        taurus::document::merge_sources(&[(PathBuf::from(name), text.to_owned())], overrides)?;
    taurus::from_taurus(&document)
}
