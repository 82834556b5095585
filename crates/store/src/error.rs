//! The one error type of the storage layer.

/// What can go wrong in a store operation, sorted by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No user has the given id.
    #[error("no such user")]
    NotFound,
    /// The username is already taken by another user.
    #[error("username is already taken")]
    Conflict,
    /// The database cannot be reached right now; retrying later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database URL or setting is not usable.
    #[error("{0}")]
    Config(String),
    /// Anything else: a bug or a database in a state Peregrine does not expect.
    #[error("database error: {0}")]
    Internal(String),
}

impl From<getrandom::Error> for StoreError {
    fn from(err: getrandom::Error) -> Self {
        Self::Internal(format!("cannot draw random bytes for names: {err}"))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match err.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) => Self::Conflict,
            Some(
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::CannotOpen
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure,
            ) => Self::Unavailable(err.to_string()),
            _ => Self::Internal(err.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let Some(code) = err.code() else {
            // No SQLSTATE: the socket closed, an I/O error or a timeout.
            return Self::Unavailable(err.to_string());
        };
        if *code == SqlState::UNIQUE_VIOLATION {
            return Self::Conflict;
        }
        let class = code.code().get(..2).unwrap_or_default();
        // 08: connection exception, 53: insufficient resources, 57: operator intervention
        // (shutdown, crash recovery, "the database system is starting up").
        match class {
            "08" | "53" | "57" => Self::Unavailable(error_text(&err)),
            _ => Self::Internal(error_text(&err)),
        }
    }
}

/// The server's message when there is one; `Display` of tokio-postgres only says "db error".
fn error_text(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => err.to_string(),
    }
}
