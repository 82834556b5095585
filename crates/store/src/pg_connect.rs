//! Opening one PostgreSQL connection: TLS as `pg_tls` sets it up, one deadline over the
//! whole handshake, and a failure sorted into what happened (refused, no
//! such host, authentication failed, TLS refused…), what to do about it, and whether
//! retrying can help.

use std::io;
use std::time::Duration;

use rustls::CertificateError;
use tokio_postgres::Client;

use crate::StoreError;
use crate::pg_config::{PgConfig, RootCert};
use crate::pg_tls::{PgTls, TlsFailure};

/// A connection attempt that failed: what happened and what to do, and whether waiting
/// for the server could change the outcome.
#[derive(Debug)]
pub(crate) struct ConnectFailure {
    /// Retrying cannot help (wrong password, no such database, TLS mismatch…).
    pub(crate) permanent: bool,
    /// The cause and the remedy, without the password.
    pub(crate) message: String,
    /// The server refused a startup parameter (PgBouncer refuses `options` unless its
    /// `ignore_startup_parameters` lists it): connecting without it may succeed.
    pub(crate) refused_parameter: bool,
}

impl ConnectFailure {
    fn retry(message: String) -> Self {
        Self {
            permanent: false,
            message,
            refused_parameter: false,
        }
    }

    fn fatal(message: String) -> Self {
        Self {
            permanent: true,
            message,
            refused_parameter: false,
        }
    }

    /// As a store error at start-up: permanent failures are configuration errors, so
    /// waiting for the database stops at once.
    pub(crate) fn into_startup_error(self) -> StoreError {
        if self.permanent {
            StoreError::Config(self.message)
        } else {
            StoreError::unavailable(self.message)
        }
    }
}

/// While serving, any failed connect is "unavailable" to the request (503), whatever its cause.
impl From<ConnectFailure> for StoreError {
    fn from(failure: ConnectFailure) -> Self {
        Self::unavailable(failure.message)
    }
}

/// Opens one connection per `config` (TLS as `tls`, its setup, says) and drives it on a
/// task.
pub(crate) async fn connect(
    config: &PgConfig,
    tls: &PgTls,
) -> Result<(Client, tokio::task::AbortHandle), ConnectFailure> {
    let hosts = u32::try_from(config.client.get_hosts().len().max(1)).unwrap_or(1);
    let per_host = config
        .client
        .get_connect_timeout()
        .copied()
        .unwrap_or(Duration::from_secs(5));
    // tokio-postgres's connect_timeout covers opening the socket only; this covers the
    // TLS handshake and authentication too, host after host.
    let deadline = per_host * hosts;
    let connecting = config.client.connect(tls.connector());
    let (client, connection) = match tokio::time::timeout(deadline, connecting).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(err)) => return Err(classify(config, &err)),
        Err(_) => {
            return Err(ConnectFailure::retry(format!(
                "no answer from {} within {} (connect_timeout)",
                targets(config),
                humanize(deadline)
            )));
        }
    };
    let driver = tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %err, "PostgreSQL connection closed");
        }
    });
    Ok((client, driver.abort_handle()))
}

/// Sorts a failed connect by its cause, naming a remedy.
fn classify(config: &PgConfig, err: &tokio_postgres::Error) -> ConnectFailure {
    if let Some(db) = err.as_db_error() {
        return classify_server_refusal(config, db);
    }
    let source = std::error::Error::source(err);
    if let Some(tls) = source.and_then(|s| s.downcast_ref::<TlsFailure>()) {
        return classify_tls(config, tls);
    }
    if let Some(io) = source.and_then(|s| s.downcast_ref::<io::Error>()) {
        return classify_io(config, io);
    }
    // tokio-postgres's `Display` leaves out the cause; the cause's text tells some apart.
    let text = match source {
        Some(cause) => format!("{err}: {cause}"),
        None => err.to_string(),
    };
    if text.contains("server does not support TLS") {
        return ConnectFailure::fatal(format!(
            "TLS required but the server at {} does not offer it (sslmode={}): enable ssl on the server, or use sslmode=prefer to connect without TLS",
            targets(config),
            config.sslmode
        ));
    }
    if text.contains("password missing") {
        return ConnectFailure::fatal(
            "the server asks for a password and none is given: put it in the URL (postgres://USER:PASSWORD@HOST/DATABASE) or set PGPASSWORD".into(),
        );
    }
    if text.starts_with("authentication error") {
        // Decided by the client: e.g. channel_binding=require and the server offers none.
        return ConnectFailure::fatal(format!(
            "authentication failed ({text}): check the user, password and channel_binding in the database URL"
        ));
    }
    if text.contains("timeout") {
        return ConnectFailure::retry(format!("no answer from {} ({text})", targets(config)));
    }
    ConnectFailure::retry(format!("cannot connect to {}: {text}", targets(config)))
}

/// The server answered and refused: its SQLSTATE says whether waiting can help.
fn classify_server_refusal(
    config: &PgConfig,
    db: &tokio_postgres::error::DbError,
) -> ConnectFailure {
    let message = db.message();
    match db.code().code() {
        "28P01" => ConnectFailure::fatal(format!(
            "authentication failed ({message}): check the user name and password in the database URL (or PGPASSWORD)"
        )),
        "28000" if message.contains("no encryption") => ConnectFailure::fatal(format!(
            "TLS required: the server accepts this connection only over TLS ({message}); use sslmode=require or stronger instead of sslmode={}",
            config.sslmode
        )),
        "28000" => ConnectFailure::fatal(format!(
            "the server refused the connection ({message}): its pg_hba.conf has no rule letting this user in from here"
        )),
        "3D000" => ConnectFailure::fatal(format!(
            "{message}: create it first (e.g. createdb {}) or fix the database name in the URL",
            config.dbname()
        )),
        "42501" => {
            ConnectFailure::fatal(format!("{message}: grant the user CONNECT on the database"))
        }
        "08P01" if message.starts_with("unsupported startup parameter") => ConnectFailure {
            refused_parameter: true,
            ..ConnectFailure::fatal(format!(
                "{message}: the server (a connection pooler such as PgBouncer?) refuses it; \
                 list it in PgBouncer's ignore_startup_parameters, or leave it out of the URL"
            ))
        },
        "53300" => ConnectFailure::retry(format!(
            "{message}: raise the server's max_connections, or lower --workers or --db-pool-size"
        )),
        code if code.starts_with("08") || code.starts_with("53") || code.starts_with("57") => {
            ConnectFailure::retry(format!(
                "the server is not accepting connections yet ({message})"
            ))
        }
        code => ConnectFailure::fatal(format!(
            "the server refused the connection ({code}: {message})"
        )),
    }
}

fn classify_tls(config: &PgConfig, failure: &TlsFailure) -> ConnectFailure {
    let mode = config.sslmode;
    let roots = match &config.root_cert {
        Some(RootCert::System) => "the system's trusted roots (sslrootcert=system)".to_owned(),
        Some(RootCert::File(path)) => format!("sslrootcert={}", path.display()),
        None => "the default root certificate (~/.postgresql/root.crt)".to_owned(),
    };
    match failure {
        TlsFailure::Rejected(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => ConnectFailure::fatal(format!(
            "the server's TLS certificate is not valid for host {} (sslmode={mode} checks the host name): connect with a host name the certificate lists, or use sslmode=verify-ca",
            targets(config)
        )),
        TlsFailure::Rejected(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => ConnectFailure::fatal(format!(
            "the server's TLS certificate is not signed by a CA in {roots} (sslmode={mode}): point sslrootcert at the CA that signed it"
        )),
        TlsFailure::Rejected(err) => ConnectFailure::fatal(format!(
            "TLS handshake with {} failed (sslmode={mode}): {err}",
            targets(config)
        )),
        TlsFailure::Io(err) => ConnectFailure::retry(format!(
            "the TLS handshake with {} was cut short: {err}",
            targets(config)
        )),
        TlsFailure::BadName(host) => ConnectFailure::fatal(format!(
            "{host:?} cannot be checked against a TLS certificate: use a host name or IP address"
        )),
        TlsFailure::NotConfigured => {
            ConnectFailure::fatal("TLS was asked for with sslmode=disable".to_owned())
        }
    }
}

fn classify_io(config: &PgConfig, err: &io::Error) -> ConnectFailure {
    let text = err.to_string();
    if let Some(detail) = text.strip_prefix("failed to lookup address information: ") {
        return ConnectFailure::retry(format!(
            "no such host: {} cannot be resolved ({detail}); check the host name in the database URL",
            host_names(config)
        ));
    }
    match err.kind() {
        io::ErrorKind::ConnectionRefused => ConnectFailure::retry(format!(
            "connection refused by {}: is PostgreSQL running and listening there? (check the host and port)",
            targets(config)
        )),
        io::ErrorKind::NotFound => ConnectFailure::retry(format!(
            "no PostgreSQL socket at {}: is the server running, and is that its socket directory and port?",
            targets(config)
        )),
        io::ErrorKind::TimedOut => ConnectFailure::retry(format!(
            "no answer from {} (connect_timeout): is a firewall dropping the packets?",
            targets(config)
        )),
        _ => ConnectFailure::retry(format!("cannot connect to {}: {text}", targets(config))),
    }
}

/// `host:port` of every host tried, for messages.
fn targets(config: &PgConfig) -> String {
    let ports = config.client.get_ports();
    let hosts = config.client.get_hosts();
    let list: Vec<String> = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                tokio_postgres::config::Host::Unix(dir) => {
                    dir.join(format!(".s.PGSQL.{port}")).display().to_string()
                }
            }
        })
        .collect();
    list.join(", ")
}

fn host_names(config: &PgConfig) -> String {
    let names: Vec<String> = config
        .client
        .get_hosts()
        .iter()
        .filter_map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => Some(format!("{name:?}")),
            tokio_postgres::config::Host::Unix(_) => None,
        })
        .collect();
    names.join(", ")
}

fn humanize(duration: Duration) -> String {
    format!("{}s", duration.as_secs())
}
