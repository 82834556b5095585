//! `peregrine serve`: the users API until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use peregrine_api::{ApiSettings, Server};
use peregrine_store::{DatabaseUrl, UserStore};
use tokio::sync::{oneshot, watch};

use crate::cli::ServeArgs;
use crate::db;

/// Opens the database, optionally seeds it, and serves until a shutdown signal.
///
/// Serving is thread-per-core: each worker thread runs a single-threaded runtime with its
/// own listener on the shared address (`SO_REUSEPORT`) and, on PostgreSQL, its own
/// long-lived connections, so a request never leaves its thread. This is the first one.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let url: DatabaseUrl = args
        .database
        .database_url
        .parse()
        .context("--database-url")?;
    let store =
        Arc::new(db::open_url(&url, args.database.pool_size(&url), args.database.db_wait).await?);
    if let Some(wanted) = args.seed {
        let existing = store.count().await?;
        if existing < wanted {
            let added = db::add_users(&store, wanted - existing).await?;
            tracing::info!(added, "added sample users");
        }
    }
    let settings = ApiSettings {
        api_token: args.api_token.filter(|token| !token.is_empty()),
        max_page_size: args.max_page_size,
    };
    if settings.api_token.is_none() {
        tracing::info!(
            "writes are disabled: set --api-token or PEREGRINE_API_TOKEN to enable them"
        );
    }
    let workers = args.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        |n| usize::try_from(n).unwrap_or(1),
    );
    let first = Server::bind_shared(
        args.bind,
        peregrine_api::app(Arc::clone(&store), settings.clone()),
    )
    .with_context(|| format!("cannot listen on {}", args.bind))?;
    let address = first.local_addr()?;
    let drain: Duration = args.shutdown_timeout;
    let (stop, stopping) = watch::channel(false);
    let mut others = Vec::with_capacity(workers.saturating_sub(1));
    for worker in 1..workers {
        // SQLite's store already has its own threads; PostgreSQL gets connections per worker.
        let store = match &url {
            DatabaseUrl::Sqlite(_) => Arc::clone(&store),
            DatabaseUrl::Postgres(_) => {
                Arc::new(UserStore::open(&url, args.database.pool_size(&url))?)
            }
        };
        let app = peregrine_api::app(store, settings.clone());
        others.push(spawn_worker(worker, address, app, stopping.clone(), drain).await?);
    }
    tracing::info!(workers, "listening on http://{address}");
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    };
    first.run(shutdown, drain).await.context("server failed")?;
    for worker in others {
        match worker.join() {
            Ok(result) => result?,
            Err(_) => anyhow::bail!("a server worker thread panicked"),
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts worker `index` on a thread of its own, and returns once it listens.
async fn spawn_worker(
    index: usize,
    address: SocketAddr,
    app: peregrine_api::App,
    mut stopping: watch::Receiver<bool>,
    drain: Duration,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    let (ready, listening) = oneshot::channel::<anyhow::Result<()>>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name(format!("peregrine-worker-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                let server = match Server::bind_shared(address, app) {
                    Ok(server) => server,
                    Err(err) => {
                        let _ = ready.send(Err(anyhow::Error::new(err)
                            .context(format!("worker {index} cannot listen on {address}"))));
                        return Ok(());
                    }
                };
                let _ = ready.send(Ok(()));
                let shutdown = async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                };
                server.run(shutdown, drain).await.context("server failed")
            })
        })?;
    listening
        .await
        .context("a server worker thread stopped")??;
    Ok(thread)
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = interrupt => {}
        () = terminate => {}
    }
}
