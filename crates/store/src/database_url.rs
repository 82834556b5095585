//! Which database to use, parsed from a URL; its `Display` never shows a password.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::StoreError;

/// A parsed `--database-url`: `sqlite://FILE` or `postgres://user:pass@host:port/db`.
#[derive(Clone)]
pub enum DatabaseUrl {
    /// An SQLite file, created when missing.
    Sqlite(PathBuf),
    /// A PostgreSQL server; the config keeps the password, `Display` hides it.
    Postgres(Box<tokio_postgres::Config>),
}

impl FromStr for DatabaseUrl {
    type Err = StoreError;

    fn from_str(url: &str) -> Result<Self, StoreError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(StoreError::Config(
                    "database URL `sqlite://` names no file; use e.g. sqlite://peregrine.db".into(),
                ));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // The parser's own message never echoes the URL, so no password can leak here.
            let config = tokio_postgres::Config::from_str(url).map_err(|err| {
                StoreError::Config(format!("invalid PostgreSQL database URL: {err}"))
            })?;
            return Ok(Self::Postgres(Box::new(config)));
        }
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        Err(StoreError::Config(format!(
            "unsupported database URL scheme {scheme:?}: use sqlite://FILE or postgres://USER:PASSWORD@HOST:PORT/DATABASE"
        )))
    }
}

impl DatabaseUrl {
    /// The same server with another database name (PostgreSQL); `None` for SQLite.
    pub fn with_database(&self, name: &str) -> Option<Self> {
        match self {
            Self::Postgres(config) => {
                let mut config = config.clone();
                config.dbname(name);
                Some(Self::Postgres(config))
            }
            Self::Sqlite(_) => None,
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(config) => {
                f.write_str("postgres://")?;
                if let Some(user) = config.get_user() {
                    write!(f, "{user}")?;
                    if config.get_password().is_some() {
                        f.write_str(":***")?;
                    }
                    f.write_str("@")?;
                }
                let hosts = config.get_hosts();
                let ports = config.get_ports();
                for (i, host) in hosts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    match host {
                        tokio_postgres::config::Host::Tcp(name) => f.write_str(name)?,
                        tokio_postgres::config::Host::Unix(path) => {
                            write!(f, "[{}]", path.display())?;
                        }
                    }
                    if let Some(port) = ports.get(i).or(ports.first()) {
                        write!(f, ":{port}")?;
                    }
                }
                write!(f, "/{}", config.get_dbname().unwrap_or_default())
            }
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
        assert!(
            text.starts_with("invalid PostgreSQL database URL"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }
}
