//! Peregrine's storage layer: the `orguser` table of the tutorial behind one small interface,
//! with native backends for PostgreSQL (pipelined tokio-postgres) and SQLite (rusqlite),
//! embedded migrations for each, and tutorial-style seeding; a [`StoreHub`] per process
//! makes each serving worker's store. Knows nothing of HTTP.
//!
//! This file only declares the modules and what they offer: no module uses the crate root.

mod database_url;
mod db_stats;
mod deadlines;
mod error;
mod group_commit;
mod hub;
mod hub_state;
mod migrations;
mod model;
mod pg_config;
mod pg_connect;
mod pg_tls;
mod postgres;
mod seed;
mod sqlite;
mod sqlite_lock_wait;
mod user_store;
mod watchdog;

pub use database_url::DatabaseUrl;
pub use db_stats::{DbCounters, DbFailure, DbStats, PIPELINE_DEPTH_BUCKETS};
pub use deadlines::{DEADLINE_MARGIN, DEFAULT_DB_TIMEOUT};
pub use error::{BoxError, StoreError, error_chain};
pub use hub::{Serving, StoreHub};
pub use migrations::MigrationReport;
pub use model::{
    InvalidUserId, InvalidUsername, Page, USERNAME_MAX_CHARS, User, UserId, UserSink, Username,
    username_pattern,
};
pub use pg_config::{PgConfig, PgOptions, SslMode};
pub use postgres::{PostgresAdmin, StatementMode};
pub use seed::Progress;
pub use sqlite::Synchronous;
pub use user_store::UserStore;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use peregrine_testkit::module_cycles::{cycles, edges, sources};

    /// No module of the store imports one that imports it back; the hub makes the stores.
    #[test]
    fn no_module_of_the_store_imports_one_that_imports_it_back() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let files = sources(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        assert!(files.len() > 20, "read only {} files", files.len());
        let edges = edges(&files).unwrap_or_else(|e| panic!("{e}"));
        let hub = edges.get(&vec!["hub".to_owned()]);
        assert!(hub.is_some_and(|e| e.contains_key(&vec!["user_store".to_owned()])));
        let cycles = cycles(&edges);
        assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
    }
}
