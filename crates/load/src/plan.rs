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
use crate::extract::Extractor;
pub use crate::shard::Shard;
pub use crate::tls::TlsOptions;
use crate::variables::Template;

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
    /// Executions, run side by side within their [`Phase`].
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
    /// A hash of the merged config: the shards of one plan share it.
    pub fingerprint: String,
    /// How long requests in flight when the schedule ends may take to finish before they
    /// are cancelled (`None`: the longest request timeout, so none is cut short).
    pub graceful_stop: Option<Duration>,
}

impl Plan {
    /// The longest request timeout of any execution (zero without requests).
    pub fn longest_timeout(&self) -> Duration {
        self.executions
            .iter()
            .flat_map(|e| &e.scenario.requests)
            .map(|r| r.timeout)
            .max()
            .unwrap_or_default()
    }

    /// How long requests in flight at the end of the schedule may still take.
    pub fn grace_after_schedule(&self) -> Duration {
        self.graceful_stop.unwrap_or_else(|| self.longest_timeout())
    }

    /// Makes this process run slice `shard` of every execution.
    pub fn set_shard(&mut self, shard: Shard) {
        for execution in &mut self.executions {
            execution.shard = shard;
        }
    }

    /// How long the schedule lasts: each phase as long as its longest execution, the phases
    /// one after another (zero for executions bounded by iterations only).
    pub fn schedule(&self) -> Duration {
        let mut longest: std::collections::BTreeMap<Phase, Duration> = Default::default();
        for execution in &self.executions {
            let phase = longest.entry(execution.phase).or_default();
            *phase = (*phase).max(execution.duration());
        }
        longest.values().sum()
    }

    /// The slice of the plan this process runs.
    pub fn shard(&self) -> Shard {
        self.executions.first().map_or(Shard::WHOLE, |e| e.shard)
    }

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
    /// What the console's final stats show.
    pub final_stats: FinalStatsParts,
}

/// The parts of the console's final stats, as Taurus's final-stats switches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalStatsParts {
    /// `summary`: the samples count and failure rate (with throughput).
    pub summary: bool,
    /// `percentiles`: the average times and the percentiles table.
    pub percentiles: bool,
    /// `summary-labels`: the per-label table (on by default here; off in Taurus).
    pub summary_labels: bool,
    /// `failed-labels`: one line per label with failed samples.
    pub failed_labels: bool,
    /// `test-duration`: the test's duration.
    pub test_duration: bool,
}

impl Default for FinalStatsParts {
    fn default() -> Self {
        Self {
            summary: true,
            percentiles: true,
            summary_labels: true,
            failed_labels: false,
            test_duration: true,
        }
    }
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
    /// The slice of this execution this process runs (`0/1`: all of it).
    pub shard: Shard,
    /// When it runs: with the others, or before or after them (JMeter's setUp and tearDown
    /// thread groups).
    pub phase: Phase,
}

/// When an execution runs. The executions of a phase run side by side; phases run one after
/// another in their order, each once every user of the one before has finished; after a stop
/// (Ctrl-C, a criterion, an abort) no further phase starts. Every Taurus execution is in the
/// one main phase; a JMeter plan's setUp and tearDown thread groups run before and after the
/// others, and with "Run Thread Groups consecutively" each group has a turn of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Phase {
    /// Before, during or after the test.
    pub stage: Stage,
    /// Its turn within the stage (0 unless the groups run one after another).
    pub turn: u32,
}

/// The three stages of a test, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Stage {
    /// Before the others (a JMeter setUp Thread Group).
    Setup,
    /// The test itself.
    #[default]
    Main,
    /// After the others (a JMeter tearDown Thread Group).
    Teardown,
}

impl Execution {
    /// Ramp-up plus hold-for; zero when the execution is bounded by iterations only.
    pub fn duration(&self) -> Duration {
        self.ramp_up + self.hold_for
    }

    /// The users (open model: connections) this process runs: its shard's part of
    /// `concurrency`.
    pub fn shard_users(&self) -> u32 {
        self.shard.users(self.concurrency)
    }
}

/// A named list of requests.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name in `scenarios` (or `inline-N`).
    pub name: String,
    /// The requests, sent in order by each user (in the order they are written, when the
    /// scenario has a [`Program`]).
    pub requests: Vec<Arc<Request>>,
    /// Logic blocks, variables or data sources; `None` when the scenario is a plain list of
    /// requests, which then run on the fast path (prepared bytes, nothing per request).
    pub program: Option<Arc<Program>>,
    /// Each user keeps a cookie jar (`store-cookie`, default true), on either path.
    pub store_cookie: bool,
}

/// What a scenario with Taurus logic runs per virtual user: steps over its requests, with
/// per-user variables.
#[derive(Debug, Clone, Default)]
pub struct Program {
    /// The steps of one iteration.
    pub steps: Vec<Step>,
    /// `scenario.variables`, in Taurus's (alphabetical) order, rendered when a user starts.
    pub variables: Vec<(String, Template)>,
    /// CSV data sources: each iteration takes the next row of each.
    pub data_sources: Vec<Arc<DataSource>>,
    /// How many `once` blocks there are.
    pub onces: usize,
    /// How many [`Step::Pick`] steps there are (each interleave keeps its turn per user).
    pub picks: usize,
    /// How many [`Step::Throttle`] steps there are (each keeps counts, per user or
    /// shared).
    pub throttles: usize,
    /// Cookies every user's jar starts with (`cookies`).
    pub cookies: Vec<(String, String)>,
    /// JMeter properties for `${__P(name)}`: `modules.jmeter.properties` and the scenario's
    /// `properties` (which win).
    pub properties: Arc<std::collections::HashMap<String, String>>,
    /// `settings.env` for `${__env(NAME)}` (`None`: removed by a `null`).
    pub environment: Arc<std::collections::HashMap<String, Option<String>>>,
}

/// One step of a [`Program`].
#[derive(Debug, Clone)]
pub enum Step {
    /// Send [`Scenario::requests`]`[i]`.
    Request(usize),
    /// `if`/`then`/`else`: the else branch re-evaluates `!(condition)` after `then`, as
    /// JMeter's second If Controller does.
    If {
        /// The condition (see [`crate::condition`]).
        condition: Template,
        /// Steps when true.
        then: Vec<Step>,
        /// Steps when false.
        otherwise: Vec<Step>,
    },
    /// `loop`: the body N times, forever, or as many times as a variable says.
    Loop {
        /// How many passes.
        count: LoopCount,
        /// The body.
        body: Block,
    },
    /// `while`: repeat while the substituted condition is not `false`.
    While {
        /// The condition (blank or `LAST`: while the last sample succeeded).
        condition: Template,
        /// The body.
        body: Block,
    },
    /// `foreach: var in input`: `var` takes `input_1`, `input_2`, … until one is missing.
    Foreach {
        /// The variable set each pass.
        variable: String,
        /// The prefix of the variables read.
        input: String,
        /// The body.
        body: Block,
    },
    /// `once`: the first time per user (per entry of the enclosing loop).
    Once {
        /// Its index among the program's `once` blocks.
        id: usize,
        /// The steps.
        body: Vec<Step>,
    },
    /// `transaction`: an extra sample labelled with the transaction, timing its children.
    Transaction {
        /// Index of its label in [`Plan::labels`].
        label: usize,
        /// Only the transaction's sample is reported, not its children's.
        force_parent: bool,
        /// Think-times count in the transaction's time.
        include_timers: bool,
        /// The steps.
        body: Vec<Step>,
    },
    /// JMeter's Random, Interleave, Switch and Random Order Controllers: which of its
    /// children run on a pass (each user keeps its own interleave turn).
    Pick {
        /// Its index among the program's picks.
        id: usize,
        /// How the children are chosen.
        mode: PickMode,
        /// The choices, each one child of the controller.
        choices: Vec<Vec<Step>>,
    },
    /// JMeter's Throughput Controller: its steps on some of the passes that reach it.
    Throttle {
        /// Its index among the program's throttles.
        id: usize,
        /// How many passes run the steps.
        limit: ThrottleLimit,
        /// Counted per user ("Per User"), else across the execution's users.
        per_user: bool,
        /// The steps.
        body: Vec<Step>,
    },
    /// JMeter's Runtime Controller: the body again and again until `limit` has passed.
    Runtime {
        /// How long.
        limit: Duration,
        /// The body.
        body: Block,
    },
    /// `action`.
    Action(Action),
    /// `set-variables`: values rendered and assigned each time.
    SetVariables(Vec<(String, Template)>),
}

/// How many passes through a [`Step::Throttle`] run its steps.
#[derive(Debug, Clone, Copy)]
pub enum ThrottleLimit {
    /// The first N ("Total Executions").
    Total(u64),
    /// This percentage of them, spread evenly ("Percent Executions").
    Percent(f64),
}

impl ThrottleLimit {
    /// Whether the pass that is the `reached`-th (from 1) runs, `runs` having run before.
    pub fn allows(self, reached: u64, runs: u64) -> bool {
        match self {
            Self::Total(limit) => runs < limit,
            // As JMeter: run while the share so far, rounded, stays under the percentage.
            Self::Percent(percent) => (100.0 * runs as f64 + 50.0) / (reached as f64) < percent,
        }
    }
}

/// How a [`Step::Pick`] chooses among its children.
#[derive(Debug, Clone)]
pub enum PickMode {
    /// One child at random (Random Controller).
    Random,
    /// One child in turn (Interleave Controller).
    Interleave,
    /// The child the rendered value names (Switch Controller): an index (out of range or
    /// blank: the first), else a child's name, else one named `default` (any case), else
    /// none.
    Switch {
        /// The switch value.
        value: Template,
        /// Each choice's name.
        names: Vec<String>,
    },
    /// Every child, in a new random order each pass (Random Order Controller).
    Shuffled,
}

/// The steps of a loop, with the `once` blocks that run again each time the loop starts.
#[derive(Debug, Clone, Default)]
pub struct Block {
    /// The steps.
    pub steps: Vec<Step>,
    /// `once` ids directly inside (not inside a nested loop).
    pub onces: Vec<usize>,
}

/// Passes of a `loop` block.
#[derive(Debug, Clone)]
pub enum LoopCount {
    /// A fixed count.
    Times(u64),
    /// Until the user stops.
    Forever,
    /// A `${…}` rendered when the loop starts (not a number: zero passes).
    Variable(Template),
}

/// An `action` block.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// Sleep this long.
    Pause(Duration),
    /// This user stops (under a duration it is replaced by a fresh user, as Taurus's
    /// concurrency thread group does).
    StopUser,
    /// Every user of the execution stops.
    StopAll,
    /// Go on with the user's next iteration.
    NextIteration,
}

/// A CSV data source read at load time; all users share one cursor.
#[derive(Debug)]
pub struct DataSource {
    /// Variable names, one per column.
    pub names: Vec<String>,
    /// The rows.
    pub rows: Vec<Vec<String>>,
    /// Start over at the end (else a user reaching the end stops).
    pub repeat: bool,
}

/// Parts of a request holding run-time `${…}`, rendered per send.
#[derive(Debug, Clone)]
pub struct DynamicRequest {
    /// The scheme and host when a run-time variable gives them (`${url}`,
    /// `http://${host}`): rendered before [`Self::target`], the whole URL is then taken
    /// apart and its host resolved per user. `None`: the request's own address.
    pub origin: Option<Template>,
    /// Path and query.
    pub target: Template,
    /// Headers whose value has references.
    pub headers: Vec<(http::header::HeaderName, Template)>,
    /// The body.
    pub body: Template,
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
    /// XPath checks on the response body (`assert-xpath`).
    pub xpath_assertions: Vec<crate::assertion::XPathAssertion>,
    /// The largest response body an assertion may read (`assert-body-limit`); a larger one
    /// fails the request.
    pub assert_body_limit: usize,
    /// Run-time `${…}` in the target, headers or body (`None`: the prepared bytes are sent).
    pub dynamic: Option<Arc<DynamicRequest>>,
    /// Variables taken from the response.
    pub extractors: Vec<Extractor>,
    /// Pause after the request: constant or random.
    pub think: ThinkTime,
    /// Follow redirects (in programs only), as one sample.
    pub follow_redirects: bool,
    /// JMeter's Duration Assertion: a sample slower than this fails.
    pub max_duration: Option<Duration>,
    /// JMeter's Size Assertion on the response body.
    pub size_check: Option<crate::assertion::SizeCheck>,
}

impl Request {
    /// Whether its scheme and host are only known once rendered: its `host` and `port`
    /// are then placeholders, and its `authority` the origin as written.
    pub fn origin_at_run_time(&self) -> bool {
        self.dynamic.as_ref().is_some_and(|d| d.origin.is_some())
    }
}

/// A think-time: constant, or one of Taurus's random timers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum ThinkTime {
    /// No pause beyond `think_time`.
    #[default]
    Constant,
    /// `uniform(mean, spread)`: mean ± spread, evenly.
    Uniform {
        /// The mean.
        mean: Duration,
        /// Half the width.
        spread: Duration,
    },
    /// `gaussian(mean, deviation)`.
    Gaussian {
        /// The mean.
        mean: Duration,
        /// The standard deviation.
        deviation: Duration,
    },
    /// `poisson(mean, offset)`: offset plus a Poisson-distributed number of milliseconds.
    Poisson {
        /// The mean.
        mean: Duration,
        /// The constant part.
        offset: Duration,
    },
}
