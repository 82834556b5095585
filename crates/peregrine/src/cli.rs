//! The command line as the user types it; each subcommand turns it into settings once.
//! Over 600 lines: clap's definitions of every subcommand's flags, each with its help text
//! and range check, kept in one place so `--help` and the checks agree.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use peregrine_store::{DatabaseUrl, PgConfig, PgOptions, SslMode, StatementMode, Synchronous};

/// A fast users REST API on PostgreSQL or SQLite.
#[derive(Debug, Parser)]
#[command(name = "peregrine", version, about, max_term_width = 100)]
pub struct Cli {
    /// Log line format (level filter: RUST_LOG, default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PEREGRINE_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the users API (applies migrations first).
    Serve(ServeArgs),
    /// Manage the database: create the schema, add sample users.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Load-test an HTTP service: Taurus config files, or one URL with the quick flags.
    Load(LoadArgs),
    /// Work with load reports: merge the shards of one plan, compare two runs.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// The whole tutorial, measured on this machine: schema, 20 users, the API with 1 worker
    /// and with all cores, the tutorial's load test at 100 and 500 users.
    Demo(DemoArgs),
    /// PgTune's PostgreSQL configuration for a host (this one with --detect).
    Tune(TuneArgs),
    /// Check a running server: GET its health URL, exit 0 on 2xx (for container health
    /// checks where there is no curl).
    Health(HealthArgs),
}

/// `peregrine health`
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The URL to GET (http:// only).
    #[arg(
        long,
        env = "PEREGRINE_HEALTH_URL",
        default_value = "http://127.0.0.1:8000/healthz"
    )]
    pub url: String,
    /// How long to wait for the answer.
    #[arg(long, default_value = "3s", value_parser = duration_flag)]
    pub timeout: Duration,
}

/// `peregrine load`
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  peregrine load bzt-config.yml -o execution.0.scenario.requests.0.url=http://127.0.0.1:8000/users/\n  peregrine load http://127.0.0.1:8000/users/ -c 100 --ramp-up 10s --hold-for 30s\n  peregrine load http://127.0.0.1:8000/users/7 --rate 2000 --hold-for 30s --report out/"
)]
pub struct LoadArgs {
    /// Taurus YAML/JSON config files (merged in order), or one http:// URL for a quick test.
    #[arg(required = true, value_name = "CONFIG.yml|URL")]
    pub targets: Vec<String>,
    /// Override a config key, as Taurus's -o: path.to.key=value (value read as YAML).
    #[arg(short = 'o', long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Write report.json, timeline.csv, junit.xml and report.html into DIR.
    #[arg(long, value_name = "DIR")]
    pub report: Option<std::path::PathBuf>,
    /// Print a plain progress line every second on stderr instead of the live view (without
    /// it: the live view when stdout is a terminal, else a line every 10 s).
    #[arg(long, conflicts_with = "quiet")]
    pub progress: bool,
    /// Show nothing while the test runs (the final stats and reports are unchanged).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Serve a live web dashboard and Prometheus /metrics on ADDR, e.g. 127.0.0.1:5665
    /// (port 0: any free port, printed on stderr).
    #[arg(long, value_name = "ADDR", value_parser = dashboard_flag)]
    pub dashboard: Option<SocketAddr>,
    /// Keep serving the dashboard, /metrics and the HTML report this long after the run
    /// ends (Ctrl-C stops waiting); by default it closes once the page has the verdict.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = duration_flag, requires = "dashboard")]
    pub dashboard_keep: Duration,
    /// Trust the CA certificate(s) in this PEM file for https targets, beside the system's
    /// roots (repeatable; also modules.peregrine.ca-cert in a config).
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Vec<std::path::PathBuf>,
    /// Do not verify https targets' certificates (self-signed staging servers): encrypted
    /// but not authenticated.
    #[arg(long)]
    pub insecure: bool,
    /// Run slice I of N of the plan (users, arrivals and caps split so that the N shards
    /// together are exactly the whole plan); 0/1 is the whole plan.
    #[arg(long, value_name = "I/N", env = "PEREGRINE_SHARD", value_parser = shard_flag, conflicts_with = "shard_from_job_index")]
    pub shard: Option<peregrine_load::shard::Shard>,
    /// Wait until TIME (RFC 3339, e.g. 2026-11-28T20:30:00Z, or Unix seconds) before
    /// starting, so shards started apart begin together; a late start is reported. `now`
    /// starts at once (a manifest's default).
    #[arg(long, value_name = "TIME", env = "PEREGRINE_START_AT", value_parser = start_at_flag)]
    pub start_at: Option<std::time::SystemTime>,
    /// When the schedule ends, how long requests in flight may still take before they are
    /// cancelled unmeasured (counted in the report) [default: the longest request timeout,
    /// so none is cut short]. A stop signal gives them 1 s.
    #[arg(long, value_name = "DURATION", value_parser = duration_flag)]
    pub graceful_stop: Option<Duration>,
    /// Run slice I of N where I is the Kubernetes Indexed Job's JOB_COMPLETION_INDEX.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(peregrine_load::shard::MAX_SHARDS)))]
    pub shard_from_job_index: Option<u32>,
    /// Quick form: virtual users (with --rate: connections) [default: 10; with --rate: 50]
    #[arg(short = 'c', long, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: Option<u32>,
    /// Quick form: time to reach full load, e.g. 10s.
    #[arg(long, value_name = "DURATION", value_parser = duration_flag)]
    pub ramp_up: Option<Duration>,
    /// Quick form: time at full load after the ramp-up [default: 10s unless --iterations]
    #[arg(long, value_name = "DURATION", value_parser = duration_flag)]
    pub hold_for: Option<Duration>,
    /// Quick form: passes per virtual user.
    #[arg(long, value_name = "N")]
    pub iterations: Option<u64>,
    /// Quick form: request timeout.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration_flag)]
    pub timeout: Duration,
    /// Quick form, open model: send R requests per second whatever the response times.
    #[arg(long, value_name = "R", value_parser = rate_flag)]
    pub rate: Option<f64>,
    /// Quick form, closed model: cap the request rate at R per second (Taurus throughput).
    #[arg(long, value_name = "R", value_parser = rate_flag)]
    pub throughput: Option<f64>,
    /// Quick form: a request header, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Quick form: HTTP method.
    #[arg(short = 'm', long, default_value = "GET")]
    pub method: String,
    /// Quick form: request body.
    #[arg(short = 'd', long, value_name = "BODY")]
    pub body: Option<String>,
    /// Quick form: open a new connection for every request.
    #[arg(long)]
    pub no_keepalive: bool,
    /// Capacity search options (`--find-capacity`).
    #[command(flatten)]
    pub capacity: CapacityArgs,
}

/// `peregrine load --find-capacity`: the highest rate the target holds within its SLO.
#[derive(Debug, Args)]
#[command(next_help_heading = "Capacity search")]
pub struct CapacityArgs {
    /// Find the highest request rate the target holds within its SLO: open-model steps
    /// doubling from --start-rate until one breaks, then bisected (see docs/capacity.md).
    #[arg(long, conflicts_with_all = ["rate", "throughput", "iterations", "ramp_up", "hold_for", "shard", "shard_from_job_index", "start_at"])]
    pub find_capacity: bool,
    /// An SLO term every step must hold, e.g. p99<100ms, p95<=250ms, avg-rt<50ms, errors<1%
    /// (repeatable) [default: the config's pass/fail criteria, else p99<100ms and errors<1%]
    #[arg(long, value_name = "EXPR", requires = "find_capacity", value_parser = slo_flag)]
    pub slo: Vec<peregrine_load::capacity::Term>,
    /// Stop when the lowest rate that broke is within this much of the highest that held.
    #[arg(long, value_name = "PERCENT", default_value = "5%", requires = "find_capacity", value_parser = tolerance_flag)]
    pub capacity_tolerance: f64,
    /// The first, lowest rate offered (req/s).
    #[arg(long, value_name = "R", default_value = "50", requires = "find_capacity", value_parser = rate_flag)]
    pub start_rate: f64,
    /// Measured time of each step.
    #[arg(long, value_name = "DURATION", default_value = "5s", requires = "find_capacity", value_parser = step_flag)]
    pub step_duration: Duration,
    /// Unmeasured warm-up at the start of each step.
    #[arg(long, value_name = "DURATION", default_value = "2s", requires = "find_capacity", value_parser = duration_flag)]
    pub warm_up: Duration,
    /// The whole search's time budget: no step starts that could not end within it.
    #[arg(long, value_name = "DURATION", default_value = "3m", requires = "find_capacity", value_parser = duration_flag)]
    pub max_duration: Duration,
}

/// `peregrine report …`
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Merge the report directories of the N shards of one plan (`load --shard I/N
    /// --report DIR`) into one report: counts summed, percentiles from the merged histograms.
    Merge(MergeArgs),
    /// Compare two report directories per label: throughput, error rate, p50/p90/p99, with
    /// whether each change is beyond noise; exit 3 when a --max-* limit is crossed.
    Compare(CompareArgs),
}

/// `peregrine report merge`
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' report directories (each holds a report.json).
    #[arg(required = true, value_name = "SHARD_DIR")]
    pub shards: Vec<std::path::PathBuf>,
    /// Where to write the merged report.json.
    #[arg(long, value_name = "DIR")]
    pub out: std::path::PathBuf,
    /// The config files the shards ran (repeatable, merged in order): evaluates its
    /// pass/fail criteria on the merged figures and exits 3 when one fails.
    #[arg(long, value_name = "CONFIG.yml")]
    pub config: Vec<std::path::PathBuf>,
    /// An override the shards ran with, as `peregrine load -o` (with --config).
    #[arg(
        short = 'o',
        long = "override",
        value_name = "KEY=VALUE",
        requires = "config"
    )]
    pub overrides: Vec<String>,
}

/// `peregrine report compare`
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline run's report directory.
    pub base: std::path::PathBuf,
    /// The new run's report directory.
    pub new: std::path::PathBuf,
    /// Fail when p50 rose by more than this beyond noise, e.g. 10%.
    #[arg(long, value_name = "PERCENT", value_parser = percent_flag)]
    pub max_p50_regression: Option<f64>,
    /// Fail when p90 rose by more than this beyond noise, e.g. 10%.
    #[arg(long, value_name = "PERCENT", value_parser = percent_flag)]
    pub max_p90_regression: Option<f64>,
    /// Fail when p99 rose by more than this beyond noise, e.g. 10%.
    #[arg(long, value_name = "PERCENT", value_parser = percent_flag)]
    pub max_p99_regression: Option<f64>,
    /// Fail when the error rate rose by more than this many percentage points.
    #[arg(long, value_name = "POINTS", value_parser = percent_flag)]
    pub max_error_rate_increase: Option<f64>,
    /// Relative noise floor, a share of the base value: smaller changes are never
    /// significant (the noise is otherwise the runs' own per-second spread).
    #[arg(long, value_name = "PERCENT", default_value = "5%", value_parser = percent_flag)]
    pub noise: f64,
    /// Absolute noise floor: smaller changes are never significant. None by default: a
    /// fixed floor above the service's latency would hide every change.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = duration_flag)]
    pub noise_floor: Duration,
}

/// `peregrine db …`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create the schema if missing (idempotent).
    Init(DatabaseArgs),
    /// Add N new users named like the tutorial's (8 hex characters of a UUIDv4).
    Seed(SeedArgs),
}

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which database, and how to reach it.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// sqlite://FILE (created if missing) or postgres://USER:PASSWORD@HOST:PORT/DATABASE
    /// (libpq's URL: postgresql:// too, ?sslmode=…&host=…; PGHOST, PGUSER… fill in the rest).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://peregrine.db",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Read the database URL from FILE instead (its first line): a password in a flag is
    /// readable by every user of the machine in /proc/PID/cmdline.
    #[arg(long, env = "DATABASE_URL_FILE", value_name = "FILE")]
    pub database_url_file: Option<std::path::PathBuf>,
    /// Database connections. PostgreSQL: long-lived pipelined connections per server thread
    /// [default: 1]; SQLite: reader threads [default: 2].
    #[arg(long, env = "PEREGRINE_DB_POOL_SIZE")]
    pub db_pool_size: Option<NonZeroUsize>,
    /// How long to wait for the database to answer at start, e.g. 10s, 1m.
    #[arg(long, env = "PEREGRINE_DB_WAIT", default_value = "10s", value_parser = duration_flag)]
    pub db_wait: Duration,
    /// PostgreSQL TLS, as libpq's sslmode: disable, prefer, require, verify-ca, verify-full
    /// [default: the URL's sslmode, else PGSSLMODE, else prefer]
    #[arg(long, env = "PEREGRINE_DB_SSLMODE", value_name = "MODE")]
    pub db_sslmode: Option<SslMode>,
    /// PostgreSQL TLS: PEM file of the CA that signed the server's certificate, or `system`
    /// for the OS's trusted roots [default: the URL's sslrootcert, else PGSSLROOTCERT]
    #[arg(long, env = "PEREGRINE_DB_SSLROOTCERT", value_name = "FILE|system")]
    pub db_sslrootcert: Option<String>,
}

impl DatabaseArgs {
    /// The database URL (from `--database-url-file` when given, else `--database-url`),
    /// with `--db-sslmode`/`--db-sslrootcert` and then the `PG*` environment filling in
    /// what it leaves out.
    pub fn url(&self) -> anyhow::Result<DatabaseUrl> {
        let options = PgOptions {
            sslmode: self.db_sslmode,
            sslrootcert: self.db_sslrootcert.clone(),
        };
        let url = match &self.database_url_file {
            Some(path) => {
                let text = secret_from_file(path, "--database-url-file")?;
                DatabaseUrl::parse(&text, &options)
                    .with_context(|| format!("--database-url-file {}", path.display()))?
            }
            None => DatabaseUrl::parse(&self.database_url, &options).context("--database-url")?,
        };
        if matches!(url, DatabaseUrl::Sqlite(_))
            && (options.sslmode.is_some() || options.sslrootcert.is_some())
        {
            anyhow::bail!(
                "--db-sslmode and --db-sslrootcert apply to PostgreSQL only, not to {url}"
            );
        }
        Ok(url)
    }

    /// `--db-pool-size`, or the default for `url`'s kind of database: one connection per
    /// server thread on PostgreSQL (measured fastest: every added connection is another
    /// backend process competing for the same cores), two reader threads on SQLite.
    pub fn pool_size(&self, url: &DatabaseUrl) -> usize {
        self.db_pool_size
            .map_or(default_pool_size(url), NonZeroUsize::get)
    }
}

/// The default `--db-pool-size` for `url`'s kind of database.
pub fn default_pool_size(url: &DatabaseUrl) -> usize {
    match url {
        DatabaseUrl::Postgres(_) => 1,
        DatabaseUrl::Sqlite(_) => 2,
    }
}

/// `peregrine db seed`
#[derive(Debug, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// How many new users to add.
    #[arg(long, short = 'n')]
    pub users: u64,
}

/// `peregrine serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "PEREGRINE_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// Server threads, each with its own single-threaded runtime, listener and (PostgreSQL)
    /// connections [default: the number of CPUs].
    #[arg(long, env = "PEREGRINE_WORKERS", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub workers: Option<u64>,
    /// Bearer token that writes (POST, PUT, DELETE) must present; without one, writes get 403.
    #[arg(long, env = "PEREGRINE_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Read the bearer token from FILE instead (its first line), so that it is not in
    /// /proc/PID/cmdline for every user of the machine to read.
    #[arg(
        long,
        env = "PEREGRINE_API_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "api_token"
    )]
    pub api_token_file: Option<std::path::PathBuf>,
    /// Deadline of every database call of a request, e.g. 5s, 500ms: past it the request
    /// gets 503 with Retry-After, the connection is replaced, and /readyz answers 503. Also
    /// PostgreSQL's statement_timeout and lock_timeout of the server's connections.
    #[arg(long, env = "PEREGRINE_DB_TIMEOUT", default_value = "5s", value_parser = duration_flag)]
    pub db_timeout: Duration,
    /// How SQLite syncs each commit: `full` (an acknowledged write survives a power loss or
    /// an OS crash) or `normal` (faster commits; the last acknowledged ones may be lost on
    /// a power loss or an OS crash, not on a crash of the process). SQLite only.
    #[arg(
        long,
        env = "PEREGRINE_SQLITE_SYNCHRONOUS",
        default_value = "full",
        value_name = "full|normal"
    )]
    pub sqlite_synchronous: Synchronous,
    /// How PostgreSQL statements are sent: `prepared` (named, parsed once per connection),
    /// `unnamed` (parsed on each call, in the same round trip: works behind PgBouncer in
    /// transaction mode), or `auto`: unnamed when the server looks like a pooler.
    #[arg(
        long,
        env = "PEREGRINE_DB_STATEMENTS",
        default_value = "auto",
        value_name = "auto|prepared|unnamed"
    )]
    pub db_statements: StatementMode,
    /// A streaming replica that serves list and get requests (repeatable; the variable
    /// takes a comma-separated list); the primary serves writes, and reads when no replica
    /// answers.
    #[arg(
        long = "database-read-url",
        env = "PEREGRINE_DATABASE_READ_URL",
        value_name = "URL",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub database_read_urls: Vec<String>,
    /// After a write of this process, reads go to the primary for this long, so that a
    /// client reading right after its write sees it [default: 0s, replicas serve every read].
    #[arg(long, env = "PEREGRINE_DB_READ_PRIMARY_AFTER_WRITE", default_value = "0s", value_parser = duration_flag)]
    pub db_read_primary_after_write: Duration,
    /// Most open connections per process; past it the oldest idle connection is closed to
    /// make room, or the new one when all are busy.
    #[arg(long, env = "PEREGRINE_MAX_CONNECTIONS", default_value_t = peregrine_api::DEFAULT_MAX_CONNECTIONS as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Most open connections per client address (a quarter of --max-connections by
    /// default); past it that address's oldest idle connection is closed, else the one that
    /// has been sending its body longest, else the new one. Behind a proxy every client has
    /// the proxy's address: raise it to --max-connections there.
    #[arg(long, env = "PEREGRINE_MAX_CLIENT_CONNECTIONS", default_value_t = peregrine_api::DEFAULT_MAX_CLIENT_CONNECTIONS as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_client_connections: u64,
    /// Most request bodies one client address may be sending at once; past it the one that
    /// has been sending longest is closed.
    #[arg(long, env = "PEREGRINE_MAX_CLIENT_BODIES", default_value_t = peregrine_api::DEFAULT_MAX_CLIENT_BODIES as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_client_bodies: u64,
    /// Most bytes of answers waiting for clients that do not read them, in total; past it
    /// the connections whose clients have not read for longest are closed.
    #[arg(long, env = "PEREGRINE_MAX_UNSENT_BYTES", default_value_t = peregrine_api::DEFAULT_MAX_UNSENT_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1_048_576..=68_719_476_736))]
    pub max_unsent_bytes: u64,
    /// Largest request head (request line and headers) in bytes; larger ones get 431.
    #[arg(long, env = "PEREGRINE_MAX_HEADER_BYTES", default_value_t = peregrine_api::DEFAULT_MAX_HEAD_BYTES as u64,
          value_parser = clap::value_parser!(u64).range(1024..=1_048_576))]
    pub max_header_bytes: u64,
    /// How long a connection may stay open without sending a complete request head: idle
    /// keep-alive connections and slow clients are closed after it.
    #[arg(long, env = "PEREGRINE_IDLE_TIMEOUT", default_value = "30s", value_parser = duration_flag)]
    pub idle_timeout: Duration,
    /// How long a client may take to send a request body (408 past it).
    #[arg(long, env = "PEREGRINE_BODY_TIMEOUT", default_value = "30s", value_parser = duration_flag)]
    pub body_timeout: Duration,
    /// Make sure at least N users exist, adding sample users when there are fewer.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Largest `limit` a list request may ask for.
    #[arg(long, env = "PEREGRINE_MAX_PAGE_SIZE", default_value_t = peregrine_api::DEFAULT_MAX_PAGE_SIZE,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_page_size: u32,
    /// On SIGINT/SIGTERM, how long new connections are still accepted while /readyz
    /// already answers 503, so that a load balancer stops sending first.
    #[arg(long, env = "PEREGRINE_SHUTDOWN_GRACE", default_value = "0s", value_parser = duration_flag)]
    pub shutdown_grace: Duration,
    /// Then, how long in-flight requests may take to finish; requests still unanswered
    /// are dropped, logged, and make the exit code 1.
    #[arg(long, env = "PEREGRINE_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration_flag)]
    pub shutdown_timeout: Duration,
    /// Serve Prometheus's /metrics only on a listener of its own at ADDR (e.g. a private
    /// interface) instead of on --bind's.
    #[arg(long, env = "PEREGRINE_METRICS_BIND", value_name = "ADDR")]
    pub metrics_bind: Option<SocketAddr>,
    /// Log one line per request: method, route template, status, duration, request id.
    #[arg(long, env = "PEREGRINE_ACCESS_LOG")]
    pub access_log: bool,
    /// Allow browser requests from ORIGIN (e.g. https://app.example.com; `*` for any),
    /// repeatable: CORS headers and preflight OPTIONS answers.
    #[arg(long = "cors-origin", value_name = "ORIGIN", value_parser = cors_origin_flag)]
    pub cors_origins: Vec<String>,
}

/// One `--cors-origin`, checked.
fn cors_origin_flag(text: &str) -> Result<String, String> {
    peregrine_api::check_cors_origin(text).map(|()| text.to_owned())
}

impl ServeArgs {
    /// The `--database-read-url`s, read with the primary's `--db-sslmode`/`--db-sslrootcert`;
    /// PostgreSQL only.
    pub fn read_replicas(&self, primary: &DatabaseUrl) -> anyhow::Result<Vec<PgConfig>> {
        let options = PgOptions {
            sslmode: self.database.db_sslmode,
            sslrootcert: self.database.db_sslrootcert.clone(),
        };
        self.database_read_urls
            .iter()
            .map(|text| {
                let url = DatabaseUrl::parse(text.trim(), &options).context("--database-read-url")?;
                match (primary, url) {
                    (DatabaseUrl::Postgres(_), DatabaseUrl::Postgres(config)) => Ok(*config),
                    (DatabaseUrl::Sqlite(_), _) => anyhow::bail!(
                        "--database-read-url: read replicas are for PostgreSQL only, and the database is {primary}"
                    ),
                    (_, other) => anyhow::bail!(
                        "--database-read-url: {other} is not a PostgreSQL URL"
                    ),
                }
            })
            .collect()
    }

    /// The bearer token, from `--api-token-file` or `--api-token`; empty means none.
    pub fn api_token(&self) -> anyhow::Result<Option<String>> {
        let token = match &self.api_token_file {
            Some(path) => Some(secret_from_file(path, "--api-token-file")?),
            None => self.api_token.clone(),
        };
        Ok(token.filter(|token| !token.is_empty()))
    }
}

/// The first line of `path`, without its line ending: a secret kept out of the command line.
fn secret_from_file(path: &std::path::Path, flag: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{flag}: cannot read {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default().trim();
    if line.is_empty() {
        anyhow::bail!("{flag}: {} is empty", path.display());
    }
    Ok(line.to_owned())
}

/// `peregrine tune`: PgTune's form, as flags. Unset flags take PgTune's defaults, or with
/// `--detect` this host's values; flags given explicitly always win.
#[derive(Debug, Args)]
pub struct TuneArgs {
    /// PostgreSQL major version, 10 to 18 [default: 18, or detected]
    #[arg(long, value_name = "N")]
    pub db_version: Option<u32>,
    /// Operating system: linux, windows, mac [default: linux, or detected]
    #[arg(long, value_parser = parse_key::<peregrine_tune::Os>)]
    pub os: Option<peregrine_tune::Os>,
    /// Workload: web, oltp, dw, desktop, mixed
    #[arg(long, default_value = "web", value_parser = parse_key::<peregrine_tune::DbType>)]
    pub db_type: peregrine_tune::DbType,
    /// Total memory, e.g. 16GB, 16G, 512MB, 1.5GB (= 1536 MB), 1TB; a bare number is GB [required unless --detect]
    #[arg(long, value_parser = parse_key::<peregrine_tune::Memory>)]
    pub memory: Option<peregrine_tune::Memory>,
    /// Number of CPUs (threads) [default: not given, or detected]
    #[arg(long, value_name = "N")]
    pub cpus: Option<u32>,
    /// Maximum client connections, at least 20 [default: by workload]
    #[arg(long, value_name = "N")]
    pub connections: Option<u32>,
    /// Data storage: ssd, hdd, san, nvme
    #[arg(long, default_value = "ssd", value_parser = parse_key::<peregrine_tune::Storage>)]
    pub storage: peregrine_tune::Storage,
    /// Total data size compared with RAM ("Total Data Size" on PgTune's form)
    #[arg(long, value_enum, default_value_t = DataSizeArg::AboutRam)]
    pub data_size: DataSizeArg,
    /// Fill memory, CPUs, OS and (from `postgres --version` or --database-url) the version
    /// from this host.
    #[arg(long)]
    pub detect: bool,
    /// With --detect: ask this PostgreSQL server for its version.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// What to print.
    #[arg(long, value_enum, default_value_t = TuneFormat::Conf)]
    pub format: TuneFormat,
    /// Write the output to FILE (e.g. a conf.d include) instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub write: Option<std::path::PathBuf>,
    /// With --write: overwrite FILE if it exists.
    #[arg(long, requires = "write")]
    pub force: bool,
}

/// `--data-size` values.
#[expect(
    clippy::enum_variant_names,
    reason = "the flag values read less-than-ram, about-ram, more-than-ram"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataSizeArg {
    /// The data fits in RAM.
    LessThanRam,
    /// About one to three times RAM.
    AboutRam,
    /// More than three times RAM.
    MoreThanRam,
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TuneFormat {
    /// PgTune's postgresql.conf text.
    Conf,
    /// PgTune's ALTER SYSTEM statements.
    AlterSystem,
    /// JSON: input, warnings and settings, for tools.
    Json,
}

/// Every duration flag of every subcommand reads durations as Taurus configs write them:
/// `2m30s`, `1h`, `500ms`, `1.5s` or bare seconds.
fn duration_flag(text: &str) -> Result<Duration, String> {
    peregrine_load::duration::parse_duration(text).map_err(|err| err.to_string())
}

/// A dashboard address: `IP:PORT` (`localhost:PORT` reads as 127.0.0.1), since a name could
/// resolve to an address the user did not mean to expose.
fn dashboard_flag(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let local = text
        .strip_prefix("localhost:")
        .map(|port| format!("127.0.0.1:{port}"));
    local.as_deref().unwrap_or(text).parse().map_err(|_| {
        format!("{text:?} is not IP:PORT, e.g. 127.0.0.1:5665 (or 0.0.0.0:5665 to be reachable from other machines)")
    })
}

/// A percentage, `10%` or `10`, from 0 to 10000, as a number of percent.
fn percent_flag(text: &str) -> Result<f64, String> {
    match text.trim().trim_end_matches('%').trim().parse::<f64>() {
        Ok(value) if (0.0..=10_000.0).contains(&value) => Ok(value),
        _ => Err("must be a percentage from 0% to 10000%, e.g. 10%".to_owned()),
    }
}

/// A start time: Unix seconds, RFC 3339 or `now`.
fn start_at_flag(text: &str) -> Result<std::time::SystemTime, String> {
    let text = text.trim();
    if text == "now" {
        return Ok(std::time::SystemTime::now());
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .ok()
            .and_then(|since| std::time::UNIX_EPOCH.checked_add(since))
            .ok_or_else(|| format!("{text:?} is not a Unix time in seconds"));
    }
    humantime::parse_rfc3339_weak(text).map_err(|err| {
        format!("{text:?} is not RFC 3339 (2026-11-28T20:30:00Z), Unix seconds or `now`: {err}")
    })
}

/// An SLO term for the capacity search.
fn slo_flag(text: &str) -> Result<peregrine_load::capacity::Term, String> {
    peregrine_load::capacity::slo::parse(text)
}

/// The capacity search's tolerance: a percentage above 0 and at most 100, as a fraction.
fn tolerance_flag(text: &str) -> Result<f64, String> {
    match percent_flag(text) {
        Ok(value) if value > 0.0 && value <= 100.0 => Ok(value / 100.0),
        _ => Err("must be a percentage above 0% and at most 100%, e.g. 5%".to_owned()),
    }
}

/// A step of the capacity search: at least a second, so that it has a whole second to
/// measure its achieved rate on.
fn step_flag(text: &str) -> Result<Duration, String> {
    let step = duration_flag(text)?;
    if step < Duration::from_secs(1) {
        return Err(format!(
            "{text:?} is under a second: a step needs at least 1s"
        ));
    }
    Ok(step)
}

/// A shard, I/N.
fn shard_flag(text: &str) -> Result<peregrine_load::shard::Shard, String> {
    text.parse()
}

/// A request rate per second, in the range a config accepts.
fn rate_flag(text: &str) -> Result<f64, String> {
    use peregrine_load::plan::{MAX_RATE, MIN_RATE};
    match text.trim().parse::<f64>() {
        Ok(rate) if (MIN_RATE..=MAX_RATE).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "must be a rate from {MIN_RATE} to {MAX_RATE} requests per second"
        )),
    }
}

/// Parses a PgTune key (`linux`, `dw`, `16GB`…) with the tune crate's own error message.
fn parse_key<T: std::str::FromStr<Err = peregrine_tune::InputError>>(
    text: &str,
) -> Result<T, String> {
    text.parse()
        .map_err(|err: peregrine_tune::InputError| err.to_string())
}

/// `peregrine demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run on PostgreSQL (in a fresh database created on that server and dropped at the end)
    /// instead of a temporary SQLite file.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// The tutorial's own durations: ramp-up 1 min, hold 2 min 30 s per run.
    #[arg(long, conflicts_with_all = ["ramp_up", "hold_for"])]
    pub full: bool,
    /// Ramp-up of each run [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = duration_flag)]
    pub ramp_up: Option<Duration>,
    /// Hold of each run after the ramp-up [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = duration_flag)]
    pub hold_for: Option<Duration>,
    /// Where to put the database file and the reports [default: a new temporary directory]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
    /// Time budget of each of the two capacity searches (1 worker, all cores) at
    /// p99 < 100 ms; 0s skips them.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration_flag)]
    pub capacity_for: Duration,
}

/// Warnings for secrets given as flags, which every user of the machine can read in
/// `/proc/PID/cmdline` and `ps`: the API token, and a database URL with a password. Each
/// names the environment variable or file flag to use instead and never repeats the secret.
pub fn secrets_in_flags(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg.clone(), None),
        };
        let value = inline.or_else(|| args.peek().cloned()).unwrap_or_default();
        let warning = match flag.as_str() {
            "--api-token" => Some(
                "--api-token on the command line is readable by every user of this machine \
                 (ps, /proc/PID/cmdline): use PEREGRINE_API_TOKEN or --api-token-file"
                    .to_string(),
            ),
            "--database-url" | "--database-read-url" if url_has_password(&value) => Some(format!(
                "{flag} holds a password, readable by every user of this machine (ps, \
                 /proc/PID/cmdline): use {} or --database-url-file",
                if flag == "--database-url" {
                    "DATABASE_URL"
                } else {
                    "PEREGRINE_DATABASE_READ_URL"
                }
            )),
            _ => None,
        };
        warnings.extend(warning);
    }
    warnings
}

/// Whether a URL carries a password (`scheme://user:password@…` or `?password=`).
fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let userinfo = authority.rsplit_once('@').map(|(info, _)| info);
    userinfo.is_some_and(|info| info.contains(':')) || url.contains("password=")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn every_duration_flag_reads_the_same_syntax() {
        let demo = Cli::try_parse_from([
            "peregrine",
            "demo",
            "--hold-for",
            "10",
            "--ramp-up",
            "1m30s",
        ]);
        let Ok(Cli {
            command: Command::Demo(args),
            ..
        }) = demo
        else {
            panic!("demo --hold-for 10 is rejected: {demo:?}");
        };
        assert_eq!(args.hold_for, Some(Duration::from_secs(10)));
        assert_eq!(args.ramp_up, Some(Duration::from_secs(90)));
        let serve = Cli::try_parse_from(["peregrine", "serve", "--shutdown-timeout", "1.5"]);
        let Ok(Cli {
            command: Command::Serve(args),
            ..
        }) = serve
        else {
            panic!("serve --shutdown-timeout 1.5 is rejected: {serve:?}");
        };
        assert_eq!(args.shutdown_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn rates_that_are_not_finite_positive_numbers_are_rejected() {
        for (flag, value) in [
            ("--rate", "inf"),
            ("--rate", "NaN"),
            ("--throughput", "NaN"),
            ("--rate", "0"),
        ] {
            let err =
                Cli::try_parse_from(["peregrine", "load", "http://127.0.0.1:1/", flag, value])
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
            assert!(
                err.contains(flag) && err.contains("must be a rate"),
                "{flag} {value}: {err}"
            );
        }
    }
}
