//! `peregrine db init` and `peregrine db seed`, and opening the database for `serve`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use peregrine_store::{DatabaseUrl, UserStore};

use crate::cli::{DatabaseArgs, SeedArgs};

/// Opens the database, waits for it to answer and brings its schema up to date.
pub async fn open_migrated(args: &DatabaseArgs) -> anyhow::Result<UserStore> {
    let url: DatabaseUrl = args.database_url.parse().context("--database-url")?;
    open_url(&url, args.pool_size(&url), args.db_wait).await
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
    let report = store
        .migrate()
        .await
        .with_context(|| format!("cannot migrate the database at {url}"))?;
    tracing::info!(
        database = %url,
        applied = report.applied,
        version = report.version,
        "database schema is current"
    );
    Ok(store)
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
