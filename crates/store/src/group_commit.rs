//! The SQLite writer thread and its group commit: writes that queued up while another
//! committed share one transaction and so one sync to disk, each inside its own savepoint
//! so that a failing write is undone alone and gets its own error. Every caller is
//! answered only after the commit that holds its write has returned.

use std::thread;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use rusqlite::Connection;

use crate::StoreError;

/// The most writes one commit takes: bounds how long the first of them waits for its answer.
const MAX_BATCH: usize = 128;

/// Work for the writer thread.
pub(crate) enum WriterJob {
    /// Runs on its own, outside any batch (migrations, seeding, settings): it answers
    /// its caller itself.
    Alone(Box<dyn FnOnce(&mut Connection) + Send>),
    /// One request's write, which may share a commit with others queued with it.
    Write(Write),
}

/// A request's write, ready to run.
pub(crate) struct Write {
    /// Until when the caller waits; a batch waits for the write lock until the earliest.
    pub(crate) deadline: Instant,
    /// Runs the write on the connection (in autocommit mode when alone, inside a
    /// savepoint in a batch) and keeps its answer for later. Given no connection, it
    /// refuses: the writer's connection is stuck in a transaction it could not end, where
    /// a write would seem to succeed without being committed.
    pub(crate) run: Run,
}

/// Runs a write; see [`Write::run`].
pub(crate) type Run = Box<dyn FnOnce(Option<&mut Connection>) -> Ran + Send>;

/// A write that has run, with its answer not yet sent.
pub(crate) struct Ran {
    /// Whether the write succeeded (and so its changes are to be kept).
    pub(crate) succeeded: bool,
    /// Sends the answer: the write's own outcome, or for a write that succeeded, the
    /// error of the commit that was to hold it when that commit failed.
    pub(crate) answer: Answer,
}

/// Sends a write's answer, given the error of its commit if that failed.
pub(crate) type Answer = Box<dyn FnOnce(Option<&StoreError>) + Send>;

impl Write {
    /// Runs the write alone, committing by itself (as without batching), and answers.
    fn run_alone(self, conn: &mut Connection) {
        let usable = out_of_transaction(conn);
        let ran = (self.run)(usable.then_some(conn));
        (ran.answer)(None);
    }
}

/// Starts the writer thread on `conn` and returns its queue.
pub(crate) fn spawn_writer(mut conn: Connection) -> Sender<WriterJob> {
    let (tx, rx) = crossbeam_channel::unbounded::<WriterJob>();
    let spawned = thread::Builder::new()
        .name("sqlite-writer".to_owned())
        .spawn(move || writer_loop(&mut conn, &rx));
    if let Err(err) = spawned {
        tracing::error!(error = %err, "cannot start SQLite writer thread");
    }
    tx
}

/// Takes jobs in order; a write takes with it the writes queued behind it (never waiting
/// for more to come), up to [`MAX_BATCH`] or the next job that must run alone.
fn writer_loop(conn: &mut Connection, jobs: &Receiver<WriterJob>) {
    let mut held = None;
    loop {
        let job = match held.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        match job {
            WriterJob::Alone(job) => job(conn),
            WriterJob::Write(first) => {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match jobs.try_recv() {
                        Ok(WriterJob::Write(write)) => batch.push(write),
                        Ok(alone) => {
                            held = Some(alone);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                run_batch(conn, batch);
            }
        }
    }
}

/// Runs `batch` in one transaction with one commit, or a lone write as it always ran.
fn run_batch(conn: &mut Connection, batch: Vec<Write>) {
    if batch.len() == 1 {
        batch.into_iter().for_each(|write| write.run_alone(conn));
        return;
    }
    let earliest = batch.iter().map(|write| write.deadline).min();
    let begun =
        crate::sqlite_lock_wait::with_lock_deadline(earliest.unwrap_or_else(Instant::now), || {
            conn.execute_batch("BEGIN IMMEDIATE")
        });
    if begun.is_err() {
        // No lock by the earliest deadline (or the file fails): each write alone waits
        // for the lock until its own deadline, or meets its own error, as without batching,
        // so no caller is answered later than its deadline because of the others.
        batch.into_iter().for_each(|write| write.run_alone(conn));
        return;
    }
    let mut answers = Vec::with_capacity(batch.len());
    let mut writes = batch.into_iter();
    let mut failure = None;
    for write in writes.by_ref() {
        if let Err(err) = conn.execute_batch("SAVEPOINT write") {
            // This write has not run: it runs alone after the rollback, with the rest.
            failure = Some((StoreError::from(err), Some(write)));
            break;
        }
        let ran = (write.run)(Some(conn));
        answers.push(ran.answer);
        let end = if ran.succeeded {
            "RELEASE write"
        } else {
            "ROLLBACK TO write; RELEASE write"
        };
        if let Err(err) = conn.execute_batch(end) {
            failure = Some((StoreError::from(err), None));
            break;
        }
    }
    let (failure, unrun) = failure.map_or((None, None), |(err, write)| (Some(err), write));
    let outcome = match failure {
        None => conn.execute_batch("COMMIT").map_err(StoreError::from),
        Some(err) => Err(err),
    };
    if outcome.is_err() && !conn.is_autocommit() {
        // Nothing of the batch is kept; a failed rollback leaves the connection as
        // SQLite left it, and the next write reports what is wrong.
        let _ = conn.execute_batch("ROLLBACK");
    }
    let commit = outcome.err();
    for answer in answers {
        answer(commit.as_ref());
    }
    // Writes the batch never reached (its machinery failed): each alone, as ever.
    unrun
        .into_iter()
        .chain(writes)
        .for_each(|write| write.run_alone(conn));
}

/// Whether `conn` is outside any transaction, so that a write commits as it runs; rolls
/// back one a failed batch left open.
fn out_of_transaction(conn: &mut Connection) -> bool {
    if conn.is_autocommit() {
        return true;
    }
    if let Err(err) = conn.execute_batch("ROLLBACK") {
        tracing::error!(error = %err, "cannot roll back a failed batch of SQLite writes");
    }
    conn.is_autocommit()
}

/// The error a write that succeeded gets when the commit meant to hold it failed.
pub(crate) fn commit_failed(err: &StoreError) -> StoreError {
    let reason = format!("the commit holding this write failed: {err}");
    if err.is_transient() {
        StoreError::unavailable(reason)
    } else {
        StoreError::internal(reason)
    }
}
