//! `peregrine db init` and `peregrine db seed`, and opening the database for `serve`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use peregrine_store::{DatabaseUrl, UserStore};

use crate::cli::{DatabaseArgs, SeedArgs};

/// The least time migrations are given: at least `--db-wait`.
const MIGRATION_WAIT: Duration = Duration::from_secs(60);

/// Opens the database, waits for it to answer and brings its schema up to date.
pub async fn open_migrated(args: &DatabaseArgs) -> anyhow::Result<UserStore> {
    let url = args.url()?;
    open_url(&url, args.pool_size(&url), args.db_wait.into()).await
}

/// [`open_migrated`] for a parsed URL.
pub async fn open_url(
    url: &DatabaseUrl,
    connections: usize,
    wait: Duration,
) -> anyhow::Result<UserStore> {
    let store = UserStore::open(url, connections)?;
    store.wait_until_ready(wait).await.with_context(|| {
        format!(
            "cannot reach the database at {url} (waited {})",
            humantime::format_duration(wait)
        )
    })?;
    // Migrations may wait for another server's (an advisory lock), but not for ever: a
    // database that hangs must not hang the start.
    let limit = wait.max(MIGRATION_WAIT);
    let report = tokio::time::timeout(limit, store.migrate())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the database did not answer within {}",
                humantime::format_duration(limit)
            )
        })
        .and_then(|migrated| Ok(migrated?))
        .with_context(|| format!("cannot migrate the database at {url}"))?;
    tracing::info!(
        database = %url,
        applied = report.applied,
        version = report.version,
        "database schema is current"
    );
    Ok(store)
}

/// The store of serving worker `worker`: SQLite's store has its own threads and is shared
/// by all workers; on PostgreSQL each worker but the first (which has `first`) gets
/// connections of its own, so that a request never leaves its thread.
pub fn worker_store(
    first: &Arc<UserStore>,
    url: &DatabaseUrl,
    worker: usize,
    connections: usize,
    timeout: Duration,
) -> Result<Arc<UserStore>, peregrine_store::StoreError> {
    Ok(match (url, worker) {
        (DatabaseUrl::Sqlite(_), _) | (_, 0) => Arc::clone(first),
        (DatabaseUrl::Postgres(_), _) => {
            Arc::new(UserStore::open(url, connections)?.with_timeout(timeout))
        }
    })
}

/// `db init`: creates the schema if missing.
pub async fn init(args: DatabaseArgs) -> anyhow::Result<()> {
    open_migrated(&args).await?;
    Ok(())
}

/// `db seed --users N`: adds exactly N users.
pub async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let store = open_migrated(&args.database).await?;
    let added = add_users(&store, args.users).await?;
    let total = store.count().await?;
    println!("added {added} users; {total} users in all");
    Ok(())
}

/// Adds `count` users with a progress bar on a terminal.
pub async fn add_users(store: &UserStore, count: u64) -> anyhow::Result<u64> {
    let bar = ProgressBar::new(count).with_style(
        ProgressStyle::with_template(
            "{spinner} seeding {bar:40} {pos}/{len} users ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let ticker = bar.clone();
    let added = store
        .seed(count, Arc::new(move |n| ticker.inc(n)))
        .await
        .context("cannot add users")?;
    bar.finish_and_clear();
    Ok(added)
}
