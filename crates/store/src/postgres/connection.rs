//! One open connection: the statements the server runs for requests (prepared on it, or
//! sent unnamed), how a query runs on it, and the watchdog that gives it up when a query
//! outlives the deadline.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Statement};

use crate::StoreError;
use crate::watchdog::Watch;

/// The statements the server runs for requests.
#[derive(Clone, Copy)]
pub(super) enum Query {
    List,
    Get,
    Insert,
    Rename,
    Delete,
    Count,
    Ping,
}

impl Query {
    const ALL: [Query; 7] = [
        Query::List,
        Query::Get,
        Query::Insert,
        Query::Rename,
        Query::Delete,
        Query::Count,
        Query::Ping,
    ];

    pub(super) fn sql(self) -> &'static str {
        match self {
            Query::List => "SELECT id, username FROM orguser WHERE id > $1 ORDER BY id LIMIT $2",
            Query::Get => "SELECT id, username FROM orguser WHERE id = $1",
            Query::Insert => "INSERT INTO orguser (username) VALUES ($1) RETURNING id",
            Query::Rename => "UPDATE orguser SET username = $2 WHERE id = $1",
            Query::Delete => "DELETE FROM orguser WHERE id = $1",
            Query::Count => "SELECT count(*) FROM orguser",
            Query::Ping => "SELECT 1",
        }
    }

    /// The parameters' types, given so that neither mode needs a round trip to learn them.
    pub(super) fn types(self) -> &'static [Type] {
        match self {
            Query::List => &[Type::INT4, Type::INT8],
            Query::Get | Query::Delete => &[Type::INT4],
            Query::Insert => &[Type::VARCHAR],
            Query::Rename => &[Type::INT4, Type::VARCHAR],
            Query::Count | Query::Ping => &[],
        }
    }

    /// Whether the answer is a count of changed rows rather than rows.
    fn changes_rows(self) -> bool {
        matches!(self, Query::Rename | Query::Delete)
    }
}

/// What a query answered: its rows, or how many rows it changed.
pub(super) struct Answer {
    pub(super) rows: Vec<Row>,
    pub(super) changed: u64,
}

pub(super) type Params<'a> = [&'a (dyn ToSql + Sync)];

/// A connection, with its prepared statements in [`StatementMode::Prepared`].
pub(super) struct Connection {
    pub(super) client: Client,
    /// The task that drives the socket: stopped when the connection is dropped, so that a
    /// connection given up as hung does not linger, and by the watchdog, which makes the
    /// queries on it fail at once.
    driver: tokio::task::AbortHandle,
    /// Indexed by [`Query`]; `None` when statements are sent unnamed.
    pub(super) prepared: Option<Box<[Statement]>>,
    /// Queries sent on it and not answered yet: the pipeline's depth.
    pub(super) in_flight: AtomicU64,
    /// Its queries by when they were sent, for the watchdog.
    pub(super) watch: Watch,
    /// The watchdog task, stopped with the connection.
    watchdog: OnceLock<tokio::task::AbortHandle>,
}

impl Connection {
    pub(super) async fn new(
        client: Client,
        driver: tokio::task::AbortHandle,
        prepared: bool,
        deadline: Duration,
    ) -> Result<Self, StoreError> {
        let prepared = if prepared {
            let statements = Query::ALL
                .iter()
                .map(|query| client.prepare_typed(query.sql(), query.types()));
            Some(
                futures_util::future::try_join_all(statements)
                    .await?
                    .into_boxed_slice(),
            )
        } else {
            None
        };
        Ok(Self {
            client,
            driver,
            prepared,
            in_flight: AtomicU64::new(0),
            watch: Watch::new(deadline),
            watchdog: OnceLock::new(),
        })
    }

    /// `conn`, shared, with its watchdog started on the current runtime (the one that
    /// drives its socket).
    pub(super) fn watched(conn: Self) -> Arc<Self> {
        let conn = Arc::new(conn);
        let watchdog = tokio::spawn(watch_over(Arc::downgrade(&conn)));
        let _ = conn.watchdog.set(watchdog.abort_handle());
        conn
    }

    /// Whether calls may be sent on it: neither closed nor given up as hung.
    pub(super) fn usable(&self) -> bool {
        !self.client.is_closed() && !self.watch.is_hung()
    }

    /// Whether `err` (of a query on this connection) comes of the watchdog giving the
    /// connection up, rather than of the server.
    pub(super) fn gave_up(&self, err: &tokio_postgres::Error) -> bool {
        err.as_db_error().is_none() && self.watch.is_hung()
    }

    /// Gives the connection up as hung: stops its socket's task, so that every query on it
    /// fails at once (as a timeout) and the next call opens a new connection.
    fn give_up(&self) {
        self.watch.give_up();
        self.driver.abort();
        tracing::warn!(
            deadline_ms = self.watch.deadline().as_millis(),
            in_flight = self.watch.in_flight(),
            "PostgreSQL did not answer in time; replacing the connection"
        );
    }

    /// Runs `query`: by its prepared statement unless `unnamed` (or none was prepared), else
    /// as an unnamed one with its types.
    pub(super) async fn run(
        &self,
        query: Query,
        params: &Params<'_>,
        unnamed: bool,
    ) -> Result<Answer, tokio_postgres::Error> {
        let client = &self.client;
        let prepared = match unnamed {
            true => None,
            false => self.prepared.as_ref().map(|p| &p[query as usize]),
        };
        if query.changes_rows() {
            let changed = match prepared {
                Some(statement) => client.execute(statement, params).await?,
                None => {
                    client
                        .execute_typed(query.sql(), &typed(query, params))
                        .await?
                }
            };
            return Ok(Answer {
                rows: Vec::new(),
                changed,
            });
        }
        let rows = match prepared {
            Some(statement) => client.query(statement, params).await?,
            None => {
                client
                    .query_typed(query.sql(), &typed(query, params))
                    .await?
            }
        };
        Ok(Answer { rows, changed: 0 })
    }
}

/// Counts a query in its connection's pipeline while it lives (even when abandoned at the
/// deadline).
pub(super) struct Pipelined<'a>(pub(super) &'a AtomicU64);

impl Drop for Pipelined<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `params` paired with `query`'s parameter types, as unnamed statements take them.
fn typed<'a>(query: Query, params: &Params<'a>) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params
        .iter()
        .copied()
        .zip(query.types().iter().cloned())
        .collect()
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
        if let Some(watchdog) = self.watchdog.get() {
            watchdog.abort();
        }
    }
}

/// Looks at `conn`'s queries every tick, giving the connection up when one of them is past
/// the deadline; ends with the connection.
async fn watch_over(conn: Weak<Connection>) {
    let Some(tick) = conn.upgrade().map(|c| c.watch.tick()) else {
        return;
    };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    // A late tick is counted late, never twice: the ages it measures only ever fall short
    // of the truth, so a query is never given up before its deadline.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 1.. {
        ticks.tick().await;
        let Some(conn) = conn.upgrade() else {
            return;
        };
        if !conn.watch.advance(n) {
            conn.give_up();
            return;
        }
    }
}
