//! `peregrine serve`: the users API until SIGINT or SIGTERM.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use peregrine_api::{ApiSettings, Limits, ServeConfig};
use peregrine_store::{Serving, StoreHub, Synchronous};

use crate::cli::ServeArgs;
use crate::db;

/// Longest `--db-timeout`, `--idle-timeout`, `--body-timeout`, `--shutdown-grace` and
/// `--shutdown-timeout`: longer ones are typing mistakes.
const LONGEST_TIMEOUT: Duration = Duration::from_secs(3600);

/// Binds the address, opens the database, optionally seeds it, and serves until a shutdown
/// signal.
///
/// Serving is thread-per-core (see [`peregrine_api::bind`]): each worker thread has its own
/// listener and, on PostgreSQL, its own long-lived connections, so a request never leaves
/// its thread. The address is bound first, so that a busy port fails before migrations.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let url = args.database.url()?;
    let api_token = args.api_token()?;
    let db_timeout = checked_duration(args.db_timeout, "--db-timeout", Duration::from_millis(1))?;
    let pool_size = args.database.pool_size(&url);
    let serving = Serving {
        statements: args.db_statements,
        replicas: args.read_replicas(&url)?,
        read_primary_after_write: checked_duration(
            args.db_read_primary_after_write,
            "--db-read-primary-after-write",
            Duration::ZERO,
        )?,
        ..Serving::new(pool_size, db_timeout)
    };
    let config = serve_config(&args)?;
    let bound = peregrine_api::bind(config).map_err(|err| {
        let flag = if err.metrics {
            "--metrics-bind"
        } else {
            "--bind"
        };
        listen_error(err.address, flag, &err.source)
    })?;
    let address = bound.local_addr()?;
    if let Some(metrics) = bound.metrics_addr() {
        tracing::info!("metrics on http://{metrics}/metrics");
    }
    // The hub makes each worker's store and owns their counters (see `/metrics`).
    let hub = StoreHub::new(url.clone(), serving);
    let store = db::ready(hub.open()?, &url, args.database.db_wait).await?;
    sqlite_durability(&store, args.sqlite_synchronous).await?;
    let store = hub.first_worker(store)?;
    if let Some(wanted) = args.seed {
        let existing = store.count().await?;
        if existing < wanted {
            let added = db::add_users(&store, wanted - existing).await?;
            tracing::info!(added, "added sample users");
        }
    }
    let settings = ApiSettings {
        api_token,
        max_page_size: args.max_page_size,
        cors_origins: args.cors_origins.clone(),
        ..ApiSettings::default()
    };
    if settings.api_token.is_none() {
        tracing::info!(
            "writes are disabled: set PEREGRINE_API_TOKEN or --api-token-file to enable them"
        );
    }
    if !settings.cors_origins.is_empty() {
        // Not silent: CORS turns the server's front off (see docs/serve.md#cors).
        tracing::info!(
            "CORS is on: every request goes through the router, the plain reads included"
        );
    }
    let make_app = move |worker: usize| {
        Ok(peregrine_api::app(
            hub.worker_store(worker)?,
            settings.clone(),
        ))
    };
    let shutdown = shutdown_signal()?;
    tracing::info!(
        workers = args_workers(&args),
        "listening on http://{address}"
    );
    let stopped = bound
        .serve(make_app, shutdown)
        .await
        .context("server failed")?;
    if stopped.dropped_requests > 0 {
        anyhow::bail!(
            "{} request(s) were still in flight when --shutdown-timeout ran out and were dropped",
            stopped.dropped_requests
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Sets `--sqlite-synchronous` on a SQLite store and says what SQLite reads back: the
/// durability of acknowledged writes is worth a line at start. On PostgreSQL only the
/// default is accepted, so that a relaxed setting is never silently ignored.
async fn sqlite_durability(
    store: &peregrine_store::UserStore,
    mode: Synchronous,
) -> anyhow::Result<()> {
    match store.set_sqlite_synchronous(mode).await? {
        Some(Synchronous::Full) => tracing::info!(
            "SQLite commits with synchronous=FULL: an acknowledged write survives a power loss"
        ),
        Some(Synchronous::Normal) => tracing::warn!(
            "SQLite commits with synchronous=NORMAL (--sqlite-synchronous normal): the last \
             acknowledged writes may be lost on a power loss or an OS crash"
        ),
        None if mode != Synchronous::Full => {
            anyhow::bail!("--sqlite-synchronous applies to SQLite only, not to PostgreSQL")
        }
        None => {}
    }
    Ok(())
}

/// The serving flags, range-checked.
fn serve_config(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let limits = Limits {
        max_connections: connection_limit(args.max_connections),
        max_head_bytes: usize::try_from(args.max_header_bytes).unwrap_or(usize::MAX),
        idle_timeout: checked_duration(
            args.idle_timeout,
            "--idle-timeout",
            Duration::from_millis(1),
        )?,
        body_timeout: checked_duration(
            args.body_timeout,
            "--body-timeout",
            Duration::from_millis(1),
        )?,
        max_client_connections: usize::try_from(args.max_client_connections).unwrap_or(usize::MAX),
        max_client_bodies: usize::try_from(args.max_client_bodies).unwrap_or(usize::MAX),
        max_unsent_bytes: usize::try_from(args.max_unsent_bytes).unwrap_or(usize::MAX),
    };
    Ok(ServeConfig {
        bind: args.bind,
        workers: args_workers(args),
        limits,
        shutdown_grace: checked_duration(args.shutdown_grace, "--shutdown-grace", Duration::ZERO)?,
        shutdown_timeout: checked_duration(
            args.shutdown_timeout,
            "--shutdown-timeout",
            Duration::ZERO,
        )?,
        metrics_bind: args.metrics_bind,
        access_log: args.access_log,
    })
}

/// Descriptors kept free beside the connections: database sockets, files, the log, and
/// the `--metrics-bind` listener's connections.
const RESERVED_FILES: u64 = 64 + peregrine_api::MAX_SCRAPE_CONNECTIONS as u64;

/// `--max-connections`, lowered (with a warning) to what the open-file limit allows: past
/// that limit accepting fails for everyone instead of shedding idle connections.
fn connection_limit(wanted: u64) -> usize {
    let limit = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) if soft < wanted.saturating_add(RESERVED_FILES) => {
            let fitting = soft.saturating_sub(RESERVED_FILES).max(1);
            tracing::warn!(
                wanted,
                open_file_limit = soft,
                using = fitting,
                "--max-connections is above what the open-file limit allows; lowering it"
            );
            fitting
        }
        _ => wanted,
    };
    usize::try_from(limit).unwrap_or(usize::MAX)
}

fn args_workers(args: &ServeArgs) -> usize {
    args.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        |n| usize::try_from(n).unwrap_or(1),
    )
}

/// `value` when it is from `shortest` to [`LONGEST_TIMEOUT`], else an error naming `flag`.
fn checked_duration(value: Duration, flag: &str, shortest: Duration) -> anyhow::Result<Duration> {
    if value < shortest || value > LONGEST_TIMEOUT {
        anyhow::bail!(
            "{flag}: must be from {} to {}, got {}",
            humantime::format_duration(shortest),
            humantime::format_duration(LONGEST_TIMEOUT),
            humantime::format_duration(value)
        );
    }
    Ok(value)
}

/// The error of a failed bind, with what to do about a busy address.
fn listen_error(address: SocketAddr, flag: &str, err: &io::Error) -> anyhow::Error {
    if err.kind() == io::ErrorKind::AddrInUse {
        anyhow::anyhow!(
            "cannot listen on {address}: address already in use (is another server running \
             there?); choose another address with {flag}"
        )
    } else {
        anyhow::anyhow!("cannot listen on {address}: {err}")
    }
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM. The handlers are installed now, not
/// when the future is first polled: a signal that comes once the server says it listens
/// must start the orderly shutdown, never kill the process.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
