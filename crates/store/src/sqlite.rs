//! SQLite backend: one writer thread (SQLite allows one writer at a time) and a few reader
//! threads, each owning its connection; async callers hand them closures over channels.
//! A request's call has a deadline covering its wait in the queue and for another
//! process's write lock: past it the caller gets [`StoreError::Unavailable`] and the work
//! is not done. Commits are durable by default (`synchronous = FULL`): see [`Synchronous`];
//! writes queued together share a commit (see [`crate::group_commit`]).

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rusqlite::{Connection, OptionalExtension, params};

use crate::group_commit::{self, Ran, Write, WriterJob};
use crate::migrations::{self, MigrationReport};
use crate::seed::{self, Progress};
use crate::sqlite_lock_wait::{self as lock_wait, with_lock_deadline};
use crate::{Page, StoreError, User, UserId, UserSink, Username};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// How long a statement of migrations or seeding waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How SQLite syncs the write-ahead log on commit: its `synchronous` setting (PRAGMA
/// synchronous), which trades the durability of acknowledged writes for their speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// `FULL`: every commit is synced to disk before it is acknowledged, so an
    /// acknowledged write survives a power loss or an operating-system crash. The default.
    #[default]
    Full,
    /// `NORMAL`: the log is synced only at checkpoints; faster commits, but the last
    /// acknowledged ones may be lost on a power loss or an OS crash (not when only the
    /// process is killed).
    Normal,
}

impl Synchronous {
    /// The name SQLite gives the setting: `FULL` or `NORMAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }

    /// The setting as `PRAGMA synchronous` reads it back (0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA).
    fn from_pragma(value: i64) -> Result<Self, StoreError> {
        match value {
            1 => Ok(Self::Normal),
            2 => Ok(Self::Full),
            other => Err(StoreError::internal(format!(
                "SQLite reports synchronous = {other}, neither NORMAL (1) nor FULL (2)"
            ))),
        }
    }
}

impl std::str::FromStr for Synchronous {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            _ => Err(format!("expected full or normal, got {text:?}")),
        }
    }
}

impl std::fmt::Display for Synchronous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SQLite user store.
pub struct SqliteStore {
    readers: Sender<Job>,
    writer: Sender<WriterJob>,
    timeout: Duration,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` with `readers` reader threads.
    pub fn open(path: &Path, readers: usize) -> Result<Self, StoreError> {
        let open = || open_connection(path);
        let writer = group_commit::spawn_writer(open()?);
        let (reader_tx, reader_rx) = crossbeam_channel::unbounded();
        for i in 0..readers.max(1) {
            spawn_worker(&format!("sqlite-reader-{i}"), open()?, reader_rx.clone());
        }
        Ok(Self {
            readers: reader_tx,
            writer,
            timeout: crate::DEFAULT_DB_TIMEOUT,
        })
    }

    /// Sets the deadline of each call that serves a request.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Applies pending migrations in one immediate transaction.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        run_alone(&self.writer, |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute_batch(migrations::HISTORY_DDL)?;
            let newest: Option<i64> =
                tx.query_row("SELECT max(version) FROM peregrine_migrations", [], |r| {
                    r.get(0)
                })?;
            let pending = migrations::pending(migrations::SQLITE, newest)?;
            for migration in pending {
                tx.execute_batch(migration.sql)?;
                tx.execute(
                    "INSERT INTO peregrine_migrations (version, name) VALUES (?1, ?2)",
                    params![migration.version, migration.name],
                )?;
            }
            tx.commit()?;
            Ok(MigrationReport {
                applied: pending.len(),
                version: pending.last().map_or(newest.unwrap_or(0), |m| m.version),
            })
        })
        .await
    }

    /// Users in id order, starting after `page.after`.
    pub async fn list_into<S: UserSink>(&self, page: Page, mut sink: S) -> Result<S, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT id, username FROM orguser WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let after = page.after.map_or(0, UserId::get);
            let mut rows = statement.query(params![after, page.limit])?;
            while let Some(row) = rows.next()? {
                let name = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
                sink.user(UserId::from_db(row.get(0)?), name);
            }
            Ok(sink)
        })
        .await
    }

    /// The user with `id`.
    pub async fn get(&self, id: UserId) -> Result<User, StoreError> {
        self.read(move |conn| {
            let mut statement =
                conn.prepare_cached("SELECT id, username FROM orguser WHERE id = ?1")?;
            let user = statement.query_row([id.get()], user_from_row).optional()?;
            user.ok_or(StoreError::NotFound)
        })
        .await
    }

    /// Adds a user named `username`.
    pub async fn create(&self, username: &Username) -> Result<User, StoreError> {
        let username = username.clone();
        self.write(move |conn| {
            let mut statement =
                conn.prepare_cached("INSERT INTO orguser (username) VALUES (?1) RETURNING id")?;
            let id = statement.query_row([username.as_str()], |row| row.get(0))?;
            Ok(User {
                id: UserId::from_db(id),
                username,
            })
        })
        .await
    }

    /// Renames the user with `id`.
    pub async fn rename(&self, id: UserId, username: &Username) -> Result<User, StoreError> {
        let username = username.clone();
        self.write(move |conn| {
            let mut statement =
                conn.prepare_cached("UPDATE orguser SET username = ?2 WHERE id = ?1")?;
            match statement.execute(params![id.get(), username.as_str()])? {
                0 => Err(StoreError::NotFound),
                _ => Ok(User { id, username }),
            }
        })
        .await
    }

    /// Deletes the user with `id`.
    pub async fn delete(&self, id: UserId) -> Result<(), StoreError> {
        self.write(move |conn| {
            let mut statement = conn.prepare_cached("DELETE FROM orguser WHERE id = ?1")?;
            match statement.execute([id.get()])? {
                0 => Err(StoreError::NotFound),
                _ => Ok(()),
            }
        })
        .await
    }

    /// How many users exist.
    pub async fn count(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            let count: i64 = conn.query_row("SELECT count(*) FROM orguser", [], |r| r.get(0))?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    /// Succeeds when the database file can be read.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    /// Adds exactly `count` new random users in one transaction, skipping names that exist.
    pub async fn seed(&self, count: u64, progress: Progress) -> Result<u64, StoreError> {
        run_alone(&self.writer, move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut added = 0;
            {
                let mut insert =
                    tx.prepare("INSERT OR IGNORE INTO orguser (username) VALUES (?1)")?;
                let mut names = seed::NameSource::default();
                while added < count {
                    let mut inserted = 0;
                    for name in names.fresh((count - added).min(seed::BATCH))? {
                        inserted += insert.execute([name])? as u64;
                    }
                    added += inserted;
                    progress(inserted);
                }
            }
            tx.commit()?;
            Ok(added)
        })
        .await
    }

    /// Sets how the writer connection syncs commits and returns the setting as SQLite
    /// reads it back. Only the writer commits (and checkpoints), so only its setting counts.
    pub async fn set_synchronous(&self, mode: Synchronous) -> Result<Synchronous, StoreError> {
        run_alone(&self.writer, move |conn| {
            conn.pragma_update(None, "synchronous", mode.as_str())?;
            read_synchronous(conn)
        })
        .await
    }

    /// How the writer connection syncs commits, as `PRAGMA synchronous` reads it back.
    pub async fn synchronous(&self) -> Result<Synchronous, StoreError> {
        run_alone(&self.writer, |conn| read_synchronous(conn)).await
    }

    async fn read<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let deadline = Deadline::after(self.timeout);
        let (reply, result) = tokio::sync::oneshot::channel();
        self.readers
            .send(Box::new(move |conn| {
                // The caller may have gone away (request cancelled); nothing to tell then.
                let _ = reply.send(run_within(conn, Some(deadline), |conn| job(conn)));
            }))
            .map_err(|_| stopped())?;
        answer_of(result, Some(deadline)).await
    }

    /// Queues a request's write; it may share its commit with writes queued with it, and
    /// its answer comes only once that commit has returned.
    async fn write<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let deadline = Deadline::after(self.timeout);
        let (reply, result) = tokio::sync::oneshot::channel();
        let run = move |conn: Option<&mut Connection>| {
            let outcome = match conn {
                Some(conn) => run_within(conn, Some(deadline), job),
                None => Err(StoreError::unavailable(
                    "the SQLite writer is stuck in a transaction it cannot end",
                )),
            };
            Ran {
                succeeded: outcome.is_ok(),
                answer: Box::new(move |commit: Option<&StoreError>| {
                    let outcome = match (outcome, commit) {
                        (Ok(_), Some(err)) => Err(group_commit::commit_failed(err)),
                        (outcome, _) => outcome,
                    };
                    let _ = reply.send(outcome);
                }),
            }
        };
        self.writer
            .send(WriterJob::Write(Write {
                deadline: deadline.at,
                run: Box::new(run),
            }))
            .map_err(|_| stopped())?;
        answer_of(result, Some(deadline)).await
    }
}

/// When a call's time is up, and how long it had.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    fn after(timeout: Duration) -> Self {
        Self {
            at: Instant::now() + timeout,
            timeout,
        }
    }
}

/// Runs `job` on the writer thread on its own, without a deadline (migrations, seeding,
/// settings: not a request's call), and waits for its result.
async fn run_alone<T: Send + 'static>(
    writer: &Sender<WriterJob>,
    job: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let (reply, result) = tokio::sync::oneshot::channel();
    writer
        .send(WriterJob::Alone(Box::new(move |conn| {
            let _ = reply.send(run_within(conn, None, job));
        })))
        .map_err(|_| stopped())?;
    answer_of(result, None).await
}

/// Runs `job` now, within `deadline` when there is one: a job whose deadline has passed is
/// skipped, and one that starts waits for another connection's lock only as long as is left.
fn run_within<T>(
    conn: &mut Connection,
    deadline: Option<Deadline>,
    job: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match deadline {
        None => with_lock_deadline(Instant::now() + BUSY_TIMEOUT, || job(conn)),
        Some(Deadline { at, timeout }) if Instant::now() < at => {
            with_lock_deadline(at, || job(conn)).map_err(|err| past_deadline(err, at, timeout))
        }
        Some(Deadline { timeout, .. }) => Err(StoreError::timed_out(timeout)),
    }
}

fn stopped() -> StoreError {
    StoreError::unavailable("SQLite worker threads have stopped")
}

/// Waits for a worker thread's answer, for at most the deadline when there is one.
async fn answer_of<T>(
    result: tokio::sync::oneshot::Receiver<Result<T, StoreError>>,
    deadline: Option<Deadline>,
) -> Result<T, StoreError> {
    let answer = async {
        result
            .await
            .map_err(|_| StoreError::internal("SQLite worker thread failed"))?
    };
    match deadline {
        None => answer.await,
        // A little past the deadline: the worker itself answers at the deadline, unless a
        // job that started before it runs on (then the caller is told 503 at the margin).
        Some(Deadline { timeout, .. }) => {
            tokio::time::timeout(timeout + crate::DEADLINE_MARGIN / 2, answer)
                .await
                .unwrap_or_else(|_| Err(StoreError::timed_out(timeout)))
        }
    }
}

/// A busy error at the deadline is the deadline's: say so.
fn past_deadline(err: StoreError, at: Instant, timeout: Duration) -> StoreError {
    match err {
        StoreError::Unavailable { source, .. } if Instant::now() >= at => StoreError::Unavailable {
            reason: format!(
                "no answer within the deadline of {} ms (another connection holds the lock)",
                timeout.as_millis()
            ),
            source,
        },
        other => other,
    }
}

/// Starts a reader thread that runs jobs on `conn` from the queue the readers share.
fn spawn_worker(name: &str, mut conn: Connection, jobs: Receiver<Job>) {
    let spawned = thread::Builder::new().name(name.to_owned()).spawn(move || {
        for job in jobs {
            job(&mut conn);
        }
    });
    if let Err(err) = spawned {
        tracing::error!(error = %err, "cannot start SQLite worker thread");
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path).map_err(|err| {
        StoreError::Config(format!(
            "cannot open SQLite database {}: {err}",
            path.display()
        ))
    })?;
    conn.busy_handler(Some(lock_wait::wait_for_lock))?;
    with_lock_deadline(Instant::now() + BUSY_TIMEOUT, || {
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
    })?;
    Ok(conn)
}

fn read_synchronous(conn: &Connection) -> Result<Synchronous, StoreError> {
    let value: i64 = conn.query_row("PRAGMA synchronous", [], |row| row.get(0))?;
    Synchronous::from_pragma(value)
}

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: UserId::from_db(row.get(0)?),
        username: Username::from_db(row.get(1)?),
    })
}
