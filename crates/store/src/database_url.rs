//! Which database to use, parsed from a URL; its `Display` never shows a password.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::StoreError;
use crate::pg_config::{self, PgConfig, PgOptions};

/// A parsed `--database-url`: `sqlite://FILE`, or PostgreSQL's libpq forms (a
/// `postgres://` or `postgresql://` URL, or `host=… dbname=…`; see [`PgConfig`]).
#[derive(Clone)]
pub enum DatabaseUrl {
    /// An SQLite file, created when missing.
    Sqlite(PathBuf),
    /// A PostgreSQL server; the config keeps the password, `Display` hides it.
    Postgres(Box<PgConfig>),
}

/// Reads the URL with the process's `PG*` environment and no flags.
impl FromStr for DatabaseUrl {
    type Err = StoreError;

    fn from_str(url: &str) -> Result<Self, StoreError> {
        Self::parse(url, &PgOptions::default())
    }
}

impl DatabaseUrl {
    /// Reads `url`; for PostgreSQL, `options` (flags) and then the `PG*` environment fill in
    /// what the URL leaves out, as libpq does.
    pub fn parse(url: &str, options: &PgOptions) -> Result<Self, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(StoreError::Config(
                    "database URL `sqlite://` names no file; use e.g. sqlite://peregrine.db".into(),
                ));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if pg_config::is_url(url) || pg_config::is_keyword_form(url) {
            let env = |name: &str| std::env::var(name).ok();
            let config = PgConfig::parse(url, options, &env)?;
            return Ok(Self::Postgres(Box::new(config)));
        }
        Err(StoreError::Config(scheme_advice(url)))
    }
}

/// What to write instead of a URL with a missing or unknown scheme; never echoes what may
/// be a password.
fn scheme_advice(url: &str) -> String {
    const FORMS: &str = "use sqlite://FILE or postgres://USER:PASSWORD@HOST:PORT/DATABASE";
    if let Some((scheme, _)) = url.split_once("://") {
        return format!("unsupported database URL scheme {scheme:?}: {FORMS}");
    }
    if url.contains('@') {
        return format!("the database URL has no scheme: {FORMS}");
    }
    format!(
        "the database URL {url:?} has no scheme: for an SQLite file write sqlite://{url}, for PostgreSQL postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    )
}

impl DatabaseUrl {
    /// The same server with another database name (PostgreSQL); `None` for SQLite.
    pub fn with_database(&self, name: &str) -> Option<Self> {
        match self {
            Self::Postgres(config) => Some(Self::Postgres(Box::new(config.with_database(name)))),
            Self::Sqlite(_) => None,
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(config) => write!(f, "{config}"),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_hides_the_password() {
        let url: DatabaseUrl = "postgres://orguser:s3cret@127.0.0.1:55432/orgdb"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{url} {url:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://orguser:***@127.0.0.1:55432/orgdb"),
            "{shown}"
        );
    }

    #[test]
    fn sqlite_urls_name_a_file() {
        let url: DatabaseUrl = "sqlite://peregrine.db"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(url, DatabaseUrl::Sqlite(ref p) if p == &PathBuf::from("peregrine.db")));
        let url: DatabaseUrl = "sqlite:///tmp/x.db"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(url, DatabaseUrl::Sqlite(ref p) if p == &PathBuf::from("/tmp/x.db")));
        assert!("sqlite://".parse::<DatabaseUrl>().is_err());
    }

    #[test]
    fn bad_urls_are_clear_and_never_echo_secrets() {
        let err = "mysql://root:hunter2@db/x".parse::<DatabaseUrl>().err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains("unsupported database URL scheme \"mysql\""),
            "{text}"
        );
        assert!(!text.contains("hunter2"));
        let err = "postgres://u:hunter2@host:notaport/db"
            .parse::<DatabaseUrl>()
            .err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.starts_with("invalid port \"notaport\""), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let text = "app:hunter2@db/x"
            .parse::<DatabaseUrl>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            text.contains("has no scheme") && !text.contains("hunter2"),
            "{text}"
        );
    }

    #[test]
    fn a_bare_file_name_suggests_sqlite() {
        let text = "peregrine.db"
            .parse::<DatabaseUrl>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(text.contains("write sqlite://peregrine.db"), "{text}");
    }
}
