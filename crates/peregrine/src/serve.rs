//! `peregrine serve`: the users API until SIGINT or SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use peregrine_api::{ApiSettings, Server};

use crate::cli::ServeArgs;
use crate::db;

/// Opens the database, optionally seeds it, and serves until a shutdown signal.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let store = db::open_migrated(&args.database).await?;
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
    let app = peregrine_api::app(Arc::new(store), settings);
    let server = Server::bind(args.bind, app)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let address = server.local_addr()?;
    tracing::info!("listening on http://{address}");
    server
        .run(shutdown_signal(), args.shutdown_timeout.into())
        .await
        .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
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
