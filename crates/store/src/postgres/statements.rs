//! How the serving connections send their statements (named and prepared, or unnamed behind
//! a pooler), the switch to unnamed ones when a pooler loses the named, and each query
//! counted for `/metrics` as it is sent.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::PostgresStore;
use super::connection::{Answer, Connection, Params, Pipelined, Query};
use crate::StoreError;
use crate::db_stats::DbFailure;

/// How the serving connections send their statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatementMode {
    /// Named prepared statements, unless the server looks like a connection pooler: it
    /// refuses the `options` startup parameter, or reports a `port` other than the one
    /// connected to.
    #[default]
    Auto,
    /// Each statement prepared once per connection and kept (named): parsed and planned
    /// once. Breaks behind a pooler in transaction mode that does not track them.
    Prepared,
    /// Each call parses an unnamed statement and runs it in the same round trip; nothing is
    /// kept on the server between calls, so it works behind any pooler.
    Unnamed,
}

impl std::str::FromStr for StatementMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Self::Auto),
            "prepared" => Ok(Self::Prepared),
            "unnamed" => Ok(Self::Unnamed),
            other => Err(format!(
                "{other:?} is not a statement mode: use auto, prepared or unnamed"
            )),
        }
    }
}

impl PostgresStore {
    /// Runs `query` on `conn`. Under [`StatementMode::Auto`], a named statement the server
    /// does not know (or knows twice) means a pooler in transaction mode is in between,
    /// which the detection at connect time missed: the store sends every statement unnamed
    /// from then on, and this query again, unnamed, once (it never ran: the server refused
    /// the statement's name).
    ///
    /// A query the watchdog gave up (the connection hung) fails as no answer within
    /// `deadline`.
    pub(super) async fn run_on(
        &self,
        conn: &Connection,
        deadline: Duration,
        query: Query,
        params: &Params<'_>,
    ) -> Result<Answer, StoreError> {
        let unnamed = self.unnamed_forced.load(Ordering::Relaxed);
        let result = match self.counted(conn, query, params, unnamed).await {
            Err(err)
                if !unnamed
                    && self.statements == StatementMode::Auto
                    && lost_named_statement(&err) =>
            {
                self.fall_back_to_unnamed(&err);
                self.counted(conn, query, params, true).await
            }
            result => result,
        };
        result.map_err(|err| match conn.gave_up(&err) {
            true => StoreError::timed_out(deadline),
            false => err.into(),
        })
    }

    /// [`Connection::run`], counted for `/metrics`: the query, its connection's pipeline
    /// depth, and its failure by kind.
    pub(super) async fn counted(
        &self,
        conn: &Connection,
        query: Query,
        params: &Params<'_>,
        unnamed: bool,
    ) -> Result<Answer, tokio_postgres::Error> {
        let depth = conn.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        let _pipelined = Pipelined(&conn.in_flight);
        let _watched = conn.watch.sent();
        let _in_flight = self.stats.sent(depth);
        let result = conn.run(query, params, unnamed).await;
        if let Err(err) = &result {
            self.stats.failed(match err.as_db_error() {
                Some(_) => DbFailure::Server,
                None if conn.gave_up(err) => DbFailure::Timeout,
                None => DbFailure::ConnectionLost,
            });
        }
        result
    }

    /// Switches this store to unnamed statements, saying why once per hub.
    fn fall_back_to_unnamed(&self, err: &tokio_postgres::Error) {
        self.unnamed_forced.store(true, Ordering::Relaxed);
        if self.hub.first_unnamed_fallback() {
            tracing::warn!(
                error = %err,
                "the server lost a named prepared statement: a connection pooler in transaction \
                 mode (PgBouncer < 1.21, or without max_prepared_statements) is in between; \
                 sending every statement unnamed from now on (one round trip, parsed each time). \
                 Say so explicitly with --db-statements unnamed (PEREGRINE_DB_STATEMENTS=unnamed), \
                 or enable max_prepared_statements in the pooler and use --db-statements prepared"
            );
        }
    }
}

/// Whether `err` says the server does not know a named statement, or already has one of
/// that name: what a pooler in transaction mode does to them.
fn lost_named_statement(err: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    err.code().is_some_and(|code| {
        *code == SqlState::INVALID_SQL_STATEMENT_NAME || *code == SqlState::DUPLICATE_PSTATEMENT
    })
}
