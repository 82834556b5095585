//! The one internal form of a load test. The Taurus reader and the quick command-line form
//! both build a [`Plan`]; the engine and the reporters only ever see this.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderMap;
use http::{Method, Uri};

use crate::assertion::{Assertion, JsonAssertion};
use crate::criteria::Criterion;
pub use crate::tls::TlsOptions;

/// Default request timeout, as in Taurus.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections used by the open model when the config names no concurrency.
pub const DEFAULT_OPEN_CONNECTIONS: u32 = 50;
/// Largest response body kept for assertions unless the config says otherwise: 10 MiB.
pub const DEFAULT_ASSERT_BODY_LIMIT: usize = 10 * 1024 * 1024;
/// Most virtual users (or open-model connections) per execution: each holds a connection,
/// and one machine's ports and file descriptors run out well before this.
pub const MAX_CONCURRENCY: u32 = 100_000;
/// Longest duration accepted anywhere in a config: a year.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);
/// Lowest request rate accepted (`throughput`, `arrival-rate`): one request per 1000 s.
pub const MIN_RATE: f64 = 0.001;
/// Highest request rate accepted: far above what one machine can send.
pub const MAX_RATE: f64 = 10_000_000.0;

/// A whole load test.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Executions, run side by side.
    pub executions: Vec<Execution>,
    /// Pass/fail criteria.
    pub criteria: Vec<Criterion>,
    /// Extra outputs the config asks for.
    pub outputs: Outputs,
    /// Keys Peregrine read but does not implement, each with a note.
    pub warnings: Vec<String>,
    /// Every request label, in order of first appearance.
    pub labels: Vec<String>,
    /// How HTTPS servers are trusted.
    pub tls: TlsOptions,
}

impl Plan {
    /// Turns certificate verification off, with one loud warning.
    pub fn skip_verification(&mut self) {
        if !self.tls.insecure {
            self.tls.insecure = true;
            self.warnings.push(crate::tls::INSECURE_WARNING.to_owned());
        }
    }
}

/// Files the config's reporting section asks for.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// final-stats `dump-xml`.
    pub dump_xml: Option<PathBuf>,
    /// final-stats `dump-csv`.
    pub dump_csv: Option<PathBuf>,
    /// junit-xml `filename`.
    pub junit_xml: Option<PathBuf>,
    /// junit-xml `data-source` is `pass-fail` (else `sample-labels`).
    pub junit_pass_fail: bool,
}

/// One load profile with its scenario.
#[derive(Debug, Clone)]
pub struct Execution {
    /// Virtual users (closed model) or connections (open model).
    pub concurrency: u32,
    /// Time to grow from 0 to `concurrency` users (or to the full rate).
    pub ramp_up: Duration,
    /// Time held at full load after the ramp-up.
    pub hold_for: Duration,
    /// Passes through the scenario per user; `None` = until the time is up.
    pub iterations: Option<u64>,
    /// A cap on requests per second across all users (Taurus `throughput`).
    pub throughput: Option<f64>,
    /// Stairs the ramp-up is split into.
    pub steps: Option<u32>,
    /// Open model: requests per second sent regardless of responses (`arrival-rate`).
    pub arrival_rate: Option<f64>,
    /// What each user does.
    pub scenario: Arc<Scenario>,
}

impl Execution {
    /// Ramp-up plus hold-for; zero when the execution is bounded by iterations only.
    pub fn duration(&self) -> Duration {
        self.ramp_up + self.hold_for
    }
}

/// A named list of requests.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name in `scenarios` (or `inline-N`).
    pub name: String,
    /// The requests, sent in order by each user.
    pub requests: Vec<Arc<Request>>,
}

/// One request, fully resolved: URL, headers and body as they are sent.
#[derive(Debug, Clone)]
pub struct Request {
    /// Index of the label in [`Plan::labels`].
    pub label: usize,
    /// HTTP method.
    pub method: Method,
    /// `host:port` to connect to.
    pub authority: String,
    /// Host and port, resolved at the start of the run.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Over TLS (an `https://` URL).
    pub https: bool,
    /// Origin-form target: path and query.
    pub target: Uri,
    /// Headers, including `Host`.
    pub headers: HeaderMap,
    /// Body bytes (empty for none).
    pub body: Bytes,
    /// Connect-plus-response timeout.
    pub timeout: Duration,
    /// Pause after the response.
    pub think_time: Duration,
    /// Reuse the connection for the next request.
    pub keepalive: bool,
    /// Checks on the response; a failed one makes the sample an error.
    pub assertions: Vec<Assertion>,
    /// JSONPath checks on the response body (`assert-jsonpath`).
    pub json_assertions: Vec<JsonAssertion>,
    /// The largest response body an assertion may read (`assert-body-limit`); a larger one
    /// fails the request.
    pub assert_body_limit: usize,
}
