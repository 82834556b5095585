//! `peregrine db init` and `peregrine db seed`, and readying the database for `serve`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::{HumanCount, ProgressBar, ProgressState, ProgressStyle};
use peregrine_store::{DatabaseUrl, UserStore};

use crate::cli::{DatabaseArgs, SeedArgs};
use crate::out::say;

/// The least time migrations are given: at least `--db-wait`.
const MIGRATION_WAIT: Duration = Duration::from_secs(60);

/// Opens the database, waits for it to answer and brings its schema up to date.
pub async fn open_migrated(args: &DatabaseArgs) -> anyhow::Result<UserStore> {
    let url = args.url()?;
    open_url(&url, args.pool_size(&url), args.db_wait).await
}

/// [`open_migrated`] for a parsed URL.
pub async fn open_url(
    url: &DatabaseUrl,
    connections: usize,
    wait: Duration,
) -> anyhow::Result<UserStore> {
    ready(UserStore::open(url, connections)?, url, wait).await
}

/// `store` (of the database at `url`) once it answers, within `wait`, and its schema is
/// up to date.
pub async fn ready(
    store: UserStore,
    url: &DatabaseUrl,
    wait: Duration,
) -> anyhow::Result<UserStore> {
    store
        .wait_until_ready(wait)
        .await
        .with_context(|| format!("cannot connect to the database at {url}"))?;
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
    if report.applied == 0 {
        tracing::info!(
            database = %url,
            version = report.version,
            "database schema is up to date; no migration to apply"
        );
    } else {
        tracing::info!(
            database = %url,
            applied = report.applied,
            version = report.version,
            "applied {} migration{}; database schema is now at version {}",
            report.applied,
            if report.applied == 1 { "" } else { "s" },
            report.version
        );
    }
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
    say!("added {added} users; {total} users in all");
    Ok(())
}

/// Adds `count` users with a progress bar on a terminal.
pub async fn add_users(store: &UserStore, count: u64) -> anyhow::Result<u64> {
    let bar = ProgressBar::new(count).with_style(
        ProgressStyle::with_template(
            "{spinner} seeding {bar:40} {pos}/{len} users ({rate}, {eta} left)",
        )
        .map(|style| {
            style.with_key("rate", |state: &ProgressState, out: &mut dyn fmt::Write| {
                // indicatif's {per_sec} prints four decimals ("317,878.1405/s").
                let _ = out.write_str(&users_per_second(state.per_sec()));
            })
        })
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

/// A seeding rate as a person reads it: `317,878 users/s`, or one decimal below 10.
fn users_per_second(rate: f64) -> String {
    if !rate.is_finite() || rate <= 0.0 {
        "- users/s".to_owned()
    } else if rate < 10.0 {
        format!("{rate:.1} users/s")
    } else {
        // Finite and positive; `as` saturates at u64::MAX, far above any real rate.
        format!("{} users/s", HumanCount(rate.round() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::users_per_second;

    #[test]
    fn seed_rate_is_rounded_with_thousands_separators() {
        assert_eq!(users_per_second(317_878.140_5), "317,878 users/s");
        assert_eq!(users_per_second(42.6), "43 users/s");
        assert_eq!(users_per_second(2.25), "2.2 users/s");
        assert_eq!(users_per_second(0.0), "- users/s");
        assert_eq!(users_per_second(f64::NAN), "- users/s");
    }
}
