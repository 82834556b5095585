//! Versioned schema migrations, embedded in the binary, one folder per backend.

/// One schema change, applied once and recorded in `peregrine_migrations`.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Migrations for PostgreSQL, in order.
pub(crate) const POSTGRES: &[Migration] = &[Migration {
    version: 1,
    name: "create_orguser",
    sql: include_str!("../migrations/postgres/0001_create_orguser.sql"),
}];

/// Migrations for SQLite, in order.
pub(crate) const SQLITE: &[Migration] = &[Migration {
    version: 1,
    name: "create_orguser",
    sql: include_str!("../migrations/sqlite/0001_create_orguser.sql"),
}];

/// The DDL of the table that records which migrations a database has had.
macro_rules! history_ddl {
    () => {
        "CREATE TABLE IF NOT EXISTS peregrine_migrations (
    version    BIGINT       NOT NULL PRIMARY KEY,
    name       VARCHAR(255) NOT NULL,
    applied_at TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP
)"
    };
}

/// The migration history table (same DDL on both backends).
pub(crate) const HISTORY_DDL: &str = history_ddl!();

/// [`HISTORY_DDL`] for PostgreSQL, run inside the migration transaction: without the
/// NOTICE "relation already exists, skipping" that `IF NOT EXISTS` sends on every start
/// after the first, which the driver logs at INFO as if something were wrong.
pub(crate) const POSTGRES_HISTORY_DDL: &str =
    concat!("SET LOCAL client_min_messages = warning;\n", history_ddl!());

/// The migrations still to apply, or an error when the database is newer than this binary.
pub(crate) fn pending(
    all: &'static [Migration],
    newest_applied: Option<i64>,
) -> Result<&'static [Migration], crate::StoreError> {
    let newest_known = all.last().map_or(0, |m| m.version);
    match newest_applied {
        Some(applied) if applied > newest_known => Err(crate::StoreError::Config(format!(
            "the database schema is at version {applied}, newer than this peregrine knows \
             ({newest_known}); upgrade peregrine"
        ))),
        Some(applied) => Ok(&all[all.partition_point(|m| m.version <= applied)..]),
        None => Ok(all),
    }
}

/// What a migration run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationReport {
    /// How many migrations this run applied (0 when the schema was current).
    pub applied: usize,
    /// The schema version the database is at now.
    pub version: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_and_pending_follows_them() {
        for all in [POSTGRES, SQLITE] {
            assert!(all.windows(2).all(|w| w[0].version < w[1].version));
            assert_eq!(pending(all, None).map(<[_]>::len).ok(), Some(all.len()));
            let last = all.last().map_or(0, |m| m.version);
            assert_eq!(pending(all, Some(last)).map(<[_]>::len).ok(), Some(0));
            assert!(pending(all, Some(last + 1)).is_err());
        }
    }
}
