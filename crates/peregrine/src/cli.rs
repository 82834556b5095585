//! The command line as the user types it; each subcommand turns it into settings once.

use std::net::SocketAddr;
use std::num::NonZeroUsize;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// sqlite://FILE (created if missing) or postgres://USER:PASSWORD@HOST:PORT/DATABASE.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://peregrine.db",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Database connections (PostgreSQL: shared, pipelined connections; SQLite: readers).
    #[arg(long, env = "PEREGRINE_DB_POOL_SIZE", default_value = "2")]
    pub db_pool_size: NonZeroUsize,
    /// How long to wait for the database to answer at start, e.g. 10s, 1m.
    #[arg(long, env = "PEREGRINE_DB_WAIT", default_value = "10s")]
    pub db_wait: humantime::Duration,
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
    /// Runtime worker threads [default: the number of CPUs].
    #[arg(long, env = "PEREGRINE_WORKERS", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub workers: Option<u64>,
    /// Bearer token that writes (POST, PUT, DELETE) must present; without one, writes get 403.
    #[arg(long, env = "PEREGRINE_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Make sure at least N users exist, adding sample users when there are fewer.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Largest `limit` a list request may ask for.
    #[arg(long, env = "PEREGRINE_MAX_PAGE_SIZE", default_value_t = peregrine_api::DEFAULT_MAX_PAGE_SIZE,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_page_size: u32,
    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish.
    #[arg(long, env = "PEREGRINE_SHUTDOWN_TIMEOUT", default_value = "10s")]
    pub shutdown_timeout: humantime::Duration,
}
