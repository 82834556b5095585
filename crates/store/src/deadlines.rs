//! The deadlines of database calls: the default, and how late past it a call may fail.

use std::time::Duration;

/// Deadline of each database call unless configured otherwise.
pub const DEFAULT_DB_TIMEOUT: Duration = Duration::from_secs(5);

/// How late a request's database call may fail past its deadline (`--db-timeout`): the
/// PostgreSQL watchdog's two ticks, SQLite's waits for a running job. Documented.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(100);
