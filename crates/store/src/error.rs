//! The one error type of the storage layer.

use std::time::Duration;

/// The underlying error a [`StoreError`] keeps as its source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What can go wrong in a store operation, sorted by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No user has the given id.
    #[error("no such user")]
    NotFound,
    /// The username is already taken by another user.
    #[error("username is already taken")]
    Conflict,
    /// The value is valid but the database cannot store it as configured (e.g. a character
    /// its encoding lacks, or more bytes than a `SQL_ASCII` column holds).
    #[error("the database cannot store this value ({reason})")]
    Unstorable {
        /// Which rule of the database the value breaks, without the value itself.
        reason: &'static str,
    },
    /// The database accepts reads only (a replica, `default_transaction_read_only`).
    #[error("the database is read-only")]
    ReadOnly,
    /// The connection is lost or refused, an I/O error, or no answer within the deadline:
    /// retrying later may succeed.
    #[error("database unavailable: {reason}")]
    Unavailable {
        /// What happened, in words.
        reason: String,
        /// The error underneath, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The database URL or setting is not usable.
    #[error("{0}")]
    Config(String),
    /// Anything else: a bug or a database in a state Peregrine does not expect.
    #[error("database error: {reason}")]
    Internal {
        /// What failed, in words.
        reason: String,
        /// The error underneath, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

impl StoreError {
    /// [`StoreError::Unavailable`] without an underlying error.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
            source: None,
        }
    }

    /// [`StoreError::Internal`] without an underlying error.
    pub fn internal(reason: impl Into<String>) -> Self {
        Self::Internal {
            reason: reason.into(),
            source: None,
        }
    }

    /// No answer within `deadline`.
    pub fn timed_out(deadline: Duration) -> Self {
        Self::unavailable(format!(
            "no answer within the deadline of {} ms",
            deadline.as_millis()
        ))
    }

    /// Whether PostgreSQL ended the call at its `lock_timeout` (SQLSTATE 55P03): a row
    /// lock was held longer than the session waits for one.
    pub(crate) fn is_lock_timeout(&self) -> bool {
        let Self::Unavailable {
            source: Some(source),
            ..
        } = self
        else {
            return false;
        };
        source
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::code)
            .is_some_and(|code| *code == tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE)
    }

    /// Whether the caller may succeed by retrying later (a 503 rather than a 500).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::ReadOnly)
    }
}

impl From<getrandom::Error> for StoreError {
    fn from(err: getrandom::Error) -> Self {
        Self::Internal {
            reason: "cannot draw random bytes for names".into(),
            source: Some(Box::new(err)),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        use rusqlite::ffi::{SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE};
        let (code, extended) = match &err {
            rusqlite::Error::SqliteFailure(failure, _) => (failure.code, failure.extended_code),
            _ => return internal("SQLite call failed", err),
        };
        match code {
            ErrorCode::ConstraintViolation
                if matches!(
                    extended,
                    SQLITE_CONSTRAINT_UNIQUE | SQLITE_CONSTRAINT_PRIMARYKEY
                ) =>
            {
                Self::Conflict
            }
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Self::Unavailable {
                reason: "another connection holds the SQLite database's lock".into(),
                source: Some(Box::new(err)),
            },
            ErrorCode::CannotOpen | ErrorCode::DiskFull | ErrorCode::SystemIoFailure => {
                Self::Unavailable {
                    reason: "SQLite cannot read or write its file".into(),
                    source: Some(Box::new(err)),
                }
            }
            ErrorCode::ReadOnly => Self::ReadOnly,
            _ => internal("SQLite call failed", err),
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let Some(code) = err.code().cloned() else {
            return without_sqlstate(err);
        };
        if code == SqlState::UNIQUE_VIOLATION {
            return Self::Conflict;
        }
        // The database's own rules about what it can store: the client's value, not a fault.
        if code == SqlState::STRING_DATA_RIGHT_TRUNCATION {
            return Self::Unstorable {
                reason: "too long for the column in the database's encoding",
            };
        }
        if code == SqlState::UNTRANSLATABLE_CHARACTER
            || code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
        {
            return Self::Unstorable {
                reason: "a character the database's encoding cannot represent",
            };
        }
        if code == SqlState::READ_ONLY_SQL_TRANSACTION {
            return Self::ReadOnly;
        }
        if code == SqlState::INVALID_SQL_STATEMENT_NAME || code == SqlState::DUPLICATE_PSTATEMENT {
            return Self::Internal {
                reason: format!(
                    "PostgreSQL error {}: a named prepared statement is missing or taken; a \
                     connection pooler in transaction mode is in between: use --db-statements unnamed",
                    code.code()
                ),
                source: Some(Box::new(err)),
            };
        }
        let class = code.code().get(..2).unwrap_or_default();
        // 08: connection exception, 53: insufficient resources (too many connections),
        // 57: operator intervention (shutdown, a cancelled statement: statement_timeout),
        // 55P03: lock_timeout.
        let transient = matches!(class, "08" | "53" | "57") || code == SqlState::LOCK_NOT_AVAILABLE;
        let reason = format!("PostgreSQL error {}", code.code());
        if transient {
            Self::Unavailable {
                reason,
                source: Some(Box::new(err)),
            }
        } else {
            Self::Internal {
                reason,
                source: Some(Box::new(err)),
            }
        }
    }
}

/// A tokio-postgres error that the server did not send: only a closed socket, an I/O error
/// (which includes a refused connection) or a timeout is the database being unavailable;
/// decoding a value or an unexpected row count is a bug or an unexpected schema.
fn without_sqlstate(err: tokio_postgres::Error) -> StoreError {
    use std::error::Error as _;
    let io = err
        .source()
        .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some());
    let timeout = err.to_string() == "timeout waiting for server";
    if err.is_closed() || io || timeout {
        StoreError::Unavailable {
            reason: "the connection to PostgreSQL is lost, refused or not answering".into(),
            source: Some(Box::new(err)),
        }
    } else {
        internal("PostgreSQL call failed", err)
    }
}

fn internal(reason: &str, err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Internal {
        reason: reason.into(),
        source: Some(Box::new(err)),
    }
}

/// `err` and its sources, joined by `: `, for a log line.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
