//! PostgreSQL connection settings read as libpq reads them: a `postgres://` or
//! `postgresql://` URL (percent-encoded parts, several hosts, query parameters such as
//! `host=/socket/dir`, `sslmode`, `sslrootcert`, `options`), then the `PG*` environment
//! variables for what the URL leaves out, then libpq's defaults. Nothing here ever echoes a
//! password: errors name the setting and where it came from, never its value.
//!
//! Long (about 850 lines, a fifth of them its tests) because libpq's two syntaxes, the
//! environment and the flags all feed one table of settings, checked in one place; it only
//! reads settings: TLS is set up when a store opens (see `pg_tls`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::StoreError;

/// Connect timeout when neither the URL nor `PGCONNECT_TIMEOUT` sets one, in seconds.
const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 5;
/// Longest `connect_timeout` accepted, in seconds.
const MAX_CONNECT_TIMEOUT_SECS: u64 = 3600;
/// PostgreSQL's port when none is given.
const DEFAULT_PORT: u16 = 5432;
/// Where distributions put PostgreSQL's Unix socket; the first holding one is the default host.
const SOCKET_DIRS: [&str; 3] = ["/run/postgresql", "/var/run/postgresql", "/tmp"];

/// The libpq keywords Peregrine reads, each with the environment variable libpq falls back to.
const KEYWORDS: [(&str, Option<&str>); 21] = [
    ("host", Some("PGHOST")),
    ("hostaddr", Some("PGHOSTADDR")),
    ("port", Some("PGPORT")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("dbname", Some("PGDATABASE")),
    ("sslmode", Some("PGSSLMODE")),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslnegotiation", Some("PGSSLNEGOTIATION")),
    ("application_name", Some("PGAPPNAME")),
    ("fallback_application_name", None),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("options", Some("PGOPTIONS")),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("channel_binding", Some("PGCHANNELBINDING")),
    ("load_balance_hosts", Some("PGLOADBALANCEHOSTS")),
    ("keepalives", None),
    ("keepalives_idle", None),
    ("keepalives_interval", None),
    ("keepalives_count", None),
    ("tcp_user_timeout", None),
];

/// libpq keywords Peregrine knows but does not implement: refused by name, not ignored.
const UNSUPPORTED: [&str; 17] = [
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "gssencmode",
    "krbsrvname",
    "gsslib",
    "service",
    "passfile",
    "requirepeer",
    "require_auth",
    "replication",
];

/// libpq's `sslmode`, weakest first (`allow` is not offered: `prefer` covers its use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, plain otherwise; libpq's default.
    Prefer,
    /// TLS or nothing; the certificate is checked only when a root certificate is given.
    Require,
    /// TLS with a certificate signed by a trusted CA, whatever host name it is for.
    VerifyCa,
    /// TLS with a trusted certificate for the host name connected to.
    VerifyFull,
}

impl SslMode {
    /// The keyword as libpq writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate must chain to a trusted root.
    pub(crate) fn verifies(self) -> bool {
        self >= Self::VerifyCa
    }
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            "allow" => Err(
                "sslmode \"allow\" is not supported: use prefer (TLS when the server offers it)"
                    .into(),
            ),
            other => Err(format!(
                "invalid sslmode {other:?}: use disable, prefer, require, verify-ca or verify-full"
            )),
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CA certificates a server's certificate is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootCert {
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
    /// The operating system's trusted roots (`sslrootcert=system`).
    System,
}

/// Connection settings given beside the URL (`--db-sslmode`, `--db-sslrootcert`): they fill
/// in what the URL leaves out, win over the `PG*` environment, and must agree with the URL.
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// `sslmode`.
    pub sslmode: Option<SslMode>,
    /// `sslrootcert`: a file, or `system`.
    pub sslrootcert: Option<String>,
}

/// A PostgreSQL server to connect to, how, and with which TLS checks (set up when a store
/// is opened: see `pg_tls`). `Display` hides the password.
#[derive(Clone)]
pub struct PgConfig {
    pub(crate) client: tokio_postgres::Config,
    pub(crate) sslmode: SslMode,
    pub(crate) root_cert: Option<RootCert>,
    /// Where `root_cert` was set (the URL, an environment variable, a flag), for errors.
    pub(crate) root_cert_from: Option<String>,
}

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, Copy)]
enum Source {
    Url,
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url => f.write_str("the database URL"),
            Self::Env(name) | Self::Flag(name) => f.write_str(name),
        }
    }
}

#[derive(Debug, Clone)]
struct Setting {
    value: String,
    source: Source,
}

type Settings = BTreeMap<&'static str, Setting>;

impl PgConfig {
    /// Reads `url` as libpq does — a `postgres://` or `postgresql://` URL, or a keyword/value
    /// string (`host=db user=app sslmode=require`) — with `options` and then the
    /// environment (`env`, e.g. `std::env::var`) filling in what it leaves out.
    pub fn parse(
        url: &str,
        options: &PgOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, StoreError> {
        let mut settings = if is_url(url) {
            parse_url(url)?
        } else {
            parse_keywords(url)?
        };
        apply_options(&mut settings, options)?;
        for (keyword, variable) in KEYWORDS {
            if let Some(variable) = variable
                && !settings.contains_key(keyword)
                && let Some(value) = env(variable).filter(|v| !v.is_empty())
            {
                settings.insert(
                    keyword,
                    Setting {
                        value,
                        source: Source::Env(variable),
                    },
                );
            }
        }
        Self::from_settings(settings)
    }

    /// The same server with another database name.
    pub fn with_database(&self, name: &str) -> Self {
        let mut config = self.clone();
        config.client.dbname(name);
        config
    }

    /// The `sslmode` in effect.
    pub fn sslmode(&self) -> SslMode {
        self.sslmode
    }

    /// The user connecting.
    pub fn user(&self) -> &str {
        self.client.get_user().unwrap_or_default()
    }

    /// The database connected to (the user's name when none is given, as the server does).
    pub fn dbname(&self) -> &str {
        self.client.get_dbname().unwrap_or_else(|| self.user())
    }

    fn from_settings(mut settings: Settings) -> Result<Self, StoreError> {
        let sslmode = resolve_sslmode(&settings)?;
        let root_cert = settings
            .get("sslrootcert")
            .map(|setting| match setting.value.as_str() {
                "system" => RootCert::System,
                path => RootCert::File(PathBuf::from(path)),
            });
        require_user(&settings)?;
        check_ports(&settings)?;
        check_connect_timeout(&mut settings)?;
        let all_unix = default_hosts(&mut settings);
        let mut client = to_client_config(&settings)?;
        // libpq never asks for TLS over a Unix socket, whatever sslmode says.
        let sslmode = if all_unix { SslMode::Disable } else { sslmode };
        client.ssl_mode(match sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        let root_cert_from = settings.get("sslrootcert").map(|s| s.source.to_string());
        Ok(Self {
            client,
            sslmode,
            root_cert,
            root_cert_from,
        })
    }
}

/// Whether `text` is in libpq's URL form rather than its keyword/value form.
pub(crate) fn is_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// Whether `text` looks like libpq's keyword/value form: `keyword=value …`, no scheme.
pub(crate) fn is_keyword_form(text: &str) -> bool {
    !text.contains("://")
        && text.split_once('=').is_some_and(|(key, _)| {
            !key.trim().is_empty()
                && key
                    .trim()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

/// Reads libpq's keyword/value form: `key=value` pairs separated by spaces, a value in
/// single quotes when it holds spaces, a backslash escaping the next character.
fn parse_keywords(text: &str) -> Result<Settings, StoreError> {
    let mut settings = Settings::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(config_error(
                "a word without \"=\" in the connection string (not shown: it may be a password): write keyword=value pairs separated by spaces, quoting values with spaces in '…'",
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\'') if quoted => break,
                Some(c) if c.is_whitespace() && !quoted => break,
                Some('\\') => value.extend(chars.next()),
                Some(c) => value.push(c),
                None if quoted => {
                    return Err(config_error(&format!(
                        "the quoted value of {key:?} in the connection string is not closed"
                    )));
                }
                None => break,
            }
        }
        let keyword = known_keyword(&key)?;
        settings.insert(
            keyword,
            Setting {
                value,
                source: Source::Url,
            },
        );
    }
    Ok(settings)
}

/// Splits a libpq URL into keyword settings; query parameters win over the URL's body.
fn parse_url(url: &str) -> Result<Settings, StoreError> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
        .ok_or_else(|| config_error("a PostgreSQL URL starts with postgres:// or postgresql://"))?;
    let (body, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = body.split_once('/').unwrap_or((body, ""));
    let mut settings = Settings::new();
    let mut put = |keyword: &'static str, value: String| {
        settings.insert(
            keyword,
            Setting {
                value,
                source: Source::Url,
            },
        );
    };
    // A password may hold an unencoded '@'; host names never do.
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            put("user", decode(user, "the user name")?);
        }
        if let Some(password) = password {
            put("password", decode(password, "the password")?);
        }
    }
    if !hosts.is_empty() {
        let (hosts, ports) = split_hosts(hosts)?;
        if hosts.iter().any(|h| !h.is_empty()) {
            put("host", hosts.join(","));
        }
        if ports.iter().any(|p| !p.is_empty()) {
            put("port", ports.join(","));
        }
    }
    if !path.is_empty() {
        put("dbname", decode(path, "the database name")?);
    }
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            config_error(&format!(
                "query parameter {:?} in the database URL has no value (write key=value)",
                pair
            ))
        })?;
        let key = decode(key, "a query parameter name")?;
        let keyword = known_keyword(&key)?;
        put(keyword, decode(value, &format!("the value of {keyword}"))?);
    }
    Ok(settings)
}

/// The hosts and ports of `host1:port1,[::1]:port2,…`, each still percent-encoded
/// in the port and decoded in the host.
fn split_hosts(list: &str) -> Result<(Vec<String>, Vec<String>), StoreError> {
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for entry in list.split(',') {
        let (host, port) = if let Some(bracketed) = entry.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| {
                config_error("an IPv6 host in the database URL lacks its closing ']'")
            })?;
            (host, after.strip_prefix(':').unwrap_or(after))
        } else {
            entry.split_once(':').unwrap_or((entry, ""))
        };
        hosts.push(decode(host, "a host name")?);
        ports.push(port.to_owned());
    }
    Ok((hosts, ports))
}

/// `key` as one of [`KEYWORDS`], or an error naming it.
fn known_keyword(key: &str) -> Result<&'static str, StoreError> {
    if let Some((keyword, _)) = KEYWORDS.iter().find(|(keyword, _)| *keyword == key) {
        return Ok(keyword);
    }
    if UNSUPPORTED.contains(&key) {
        return Err(config_error(&format!(
            "the database URL's parameter {key:?} is not supported by Peregrine"
        )));
    }
    Err(config_error(&format!(
        "unknown parameter {key:?} in the database URL (libpq's keywords are accepted, e.g. sslmode, sslrootcert, host, application_name, connect_timeout, options)"
    )))
}

/// Flags fill in what the URL leaves out; a flag that contradicts the URL is an error
/// rather than a silent override (a weaker sslmode must never win by accident).
fn apply_options(settings: &mut Settings, options: &PgOptions) -> Result<(), StoreError> {
    let given = [
        (
            "sslmode",
            "--db-sslmode",
            options.sslmode.map(|m| m.as_str().to_owned()),
        ),
        (
            "sslrootcert",
            "--db-sslrootcert",
            options.sslrootcert.clone(),
        ),
    ];
    for (keyword, flag, value) in given {
        let Some(value) = value else { continue };
        if let Some(existing) = settings.get(keyword)
            && existing.value != value
        {
            return Err(config_error(&format!(
                "{flag} {value} contradicts {keyword}={} in the database URL: give it once",
                existing.value
            )));
        }
        settings.insert(
            keyword,
            Setting {
                value,
                source: Source::Flag(flag),
            },
        );
    }
    Ok(())
}

/// The sslmode in effect: as given, or libpq's default (`prefer`; `verify-full` with
/// `sslrootcert=system`, which refuses weaker modes as libpq 16 does).
fn resolve_sslmode(settings: &Settings) -> Result<SslMode, StoreError> {
    let system_roots = settings
        .get("sslrootcert")
        .is_some_and(|s| s.value == "system");
    let Some(setting) = settings.get("sslmode") else {
        return Ok(if system_roots {
            SslMode::VerifyFull
        } else {
            SslMode::Prefer
        });
    };
    let mode: SslMode = setting
        .value
        .parse()
        .map_err(|err: String| config_error(&format!("{err} (from {})", setting.source)))?;
    if system_roots && mode != SslMode::VerifyFull {
        return Err(config_error(&format!(
            "sslmode {mode} may not be used with sslrootcert=system: the system's roots trust every public CA, so only verify-full (which checks the host name) is safe"
        )));
    }
    Ok(mode)
}

fn require_user(settings: &Settings) -> Result<(), StoreError> {
    if settings.get("user").is_some_and(|s| !s.value.is_empty()) {
        return Ok(());
    }
    Err(config_error(
        "the database URL names no user: write postgres://USER:PASSWORD@HOST:PORT/DATABASE, or set PGUSER",
    ))
}

fn check_ports(settings: &Settings) -> Result<(), StoreError> {
    let Some(setting) = settings.get("port") else {
        return Ok(());
    };
    for port in setting.value.split(',').filter(|p| !p.is_empty()) {
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(config_error(&format!(
                "invalid port {port:?} in {}: a number from 1 to 65535",
                setting.source
            )));
        }
    }
    let hosts = settings
        .get("host")
        .map_or(1, |h| h.value.split(',').count());
    let ports = setting.value.split(',').count();
    if ports != 1 && ports != hosts {
        return Err(config_error(&format!(
            "{} gives {ports} ports for {hosts} hosts: give one port, or one per host",
            setting.source
        )));
    }
    Ok(())
}

/// Range-checks `connect_timeout` and sets the default: libpq's 0 ("wait forever") is
/// refused, as every call Peregrine makes outside the process has a deadline.
fn check_connect_timeout(settings: &mut Settings) -> Result<(), StoreError> {
    let Some(setting) = settings.get("connect_timeout") else {
        settings.insert(
            "connect_timeout",
            Setting {
                value: DEFAULT_CONNECT_TIMEOUT_SECS.to_string(),
                source: Source::Url,
            },
        );
        return Ok(());
    };
    match setting.value.trim().parse::<u64>() {
        Ok(secs) if (1..=MAX_CONNECT_TIMEOUT_SECS).contains(&secs) => Ok(()),
        _ => Err(config_error(&format!(
            "invalid connect_timeout {:?} in {}: whole seconds from 1 to {MAX_CONNECT_TIMEOUT_SECS}",
            setting.value, setting.source
        ))),
    }
}

/// Fills in libpq's default host when none is given: the first usual socket directory
/// holding the server's socket, else `localhost`. Says whether every host is a socket.
fn default_hosts(settings: &mut Settings) -> bool {
    if !settings.contains_key("host") && !settings.contains_key("hostaddr") {
        let port = settings
            .get("port")
            .and_then(|p| p.value.split(',').next().and_then(|p| p.parse().ok()))
            .unwrap_or(DEFAULT_PORT);
        let socket_dir = SOCKET_DIRS
            .iter()
            .find(|dir| Path::new(dir).join(format!(".s.PGSQL.{port}")).exists());
        settings.insert(
            "host",
            Setting {
                value: socket_dir.map_or("localhost", |dir| dir).to_owned(),
                source: Source::Url,
            },
        );
    }
    let hosts = settings
        .get("host")
        .map(|h| h.value.as_str())
        .unwrap_or_default();
    !settings.contains_key("hostaddr") && hosts.split(',').all(|h| h.starts_with('/'))
}

/// Hands every setting but the TLS ones to tokio-postgres, as a keyword/value string.
fn to_client_config(settings: &Settings) -> Result<tokio_postgres::Config, StoreError> {
    let mut conninfo = String::new();
    for (keyword, setting) in settings {
        let keyword = match *keyword {
            "sslmode" | "sslrootcert" => continue,
            "fallback_application_name" if settings.contains_key("application_name") => continue,
            "fallback_application_name" => "application_name",
            "keepalives_count" => "keepalives_retries",
            other => other,
        };
        let value = match keyword {
            "tcp_user_timeout" => milliseconds_as_seconds(setting)?,
            _ => setting.value.clone(),
        };
        let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
        conninfo.push_str(&format!("{keyword}='{quoted}' "));
    }
    let mut config = tokio_postgres::Config::from_str(&conninfo).map_err(|err| {
        // tokio-postgres names the option, never its value.
        config_error(&format!("invalid PostgreSQL connection setting: {err}"))
    })?;
    if config.get_application_name().is_none() {
        config.application_name("peregrine");
    }
    Ok(config)
}

/// libpq's `tcp_user_timeout` is in milliseconds, tokio-postgres's in whole seconds.
fn milliseconds_as_seconds(setting: &Setting) -> Result<String, StoreError> {
    let millis: u64 = setting.value.trim().parse().map_err(|_| {
        config_error(&format!(
            "invalid tcp_user_timeout {:?} in {}: whole milliseconds",
            setting.value, setting.source
        ))
    })?;
    Ok(millis.div_ceil(1000).to_string())
}

/// Percent-decodes one part of the URL, as libpq does (`+` stays a plus).
fn decode(text: &str, what: &str) -> Result<String, StoreError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .filter(|&b| b != 0)
                .ok_or_else(|| {
                    config_error(&format!(
                        "invalid percent-encoding in {what} in the database URL (write %XX with two hex digits, e.g. %40 for @)"
                    ))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        config_error(&format!(
            "{what} in the database URL is not UTF-8 once percent-decoded"
        ))
    })
}

fn config_error(message: &str) -> StoreError {
    StoreError::Config(message.to_owned())
}

impl fmt::Display for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("postgres://")?;
        if let Some(user) = self.client.get_user() {
            write!(f, "{user}")?;
            if self.client.get_password().is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        let ports = self.client.get_ports();
        for (i, host) in self.client.get_hosts().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match host {
                tokio_postgres::config::Host::Tcp(name) if name.contains(':') => {
                    write!(f, "[{name}]")?;
                }
                tokio_postgres::config::Host::Tcp(name) => f.write_str(name)?,
                tokio_postgres::config::Host::Unix(path) => write!(f, "[{}]", path.display())?,
            }
            if let Some(port) = ports.get(i).or(ports.first()) {
                write!(f, ":{port}")?;
            }
        }
        write!(f, "/{}", self.dbname())?;
        if self.sslmode != SslMode::Prefer {
            write!(f, "?sslmode={}", self.sslmode)?;
        }
        Ok(())
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgConfig({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(url: &str, env: &[(&str, &str)]) -> Result<PgConfig, StoreError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        PgConfig::parse(url, &PgOptions::default(), &move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn parse(url: &str) -> PgConfig {
        parse_with(url, &[]).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn error(url: &str, env: &[(&str, &str)]) -> String {
        match parse_with(url, env) {
            Ok(config) => panic!("{url} parsed as {config}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn both_schemes_and_percent_encoded_parts_are_read() {
        for scheme in ["postgres", "postgresql"] {
            let config = parse(&format!(
                "{scheme}://app%40corp:p%40ss%3Aw%2Fo+rd@db.example:6543/my%20db"
            ));
            assert_eq!(config.user(), "app@corp");
            assert_eq!(config.client.get_password(), Some(&b"p@ss:w/o+rd"[..]));
            assert_eq!(config.dbname(), "my db");
            assert_eq!(config.client.get_ports(), &[6543]);
            assert_eq!(
                config.to_string(),
                "postgres://app@corp:***@db.example:6543/my db"
            );
        }
        // An unencoded '@' in a password is read as users mean it.
        let config = parse("postgres://app:p@ss@127.0.0.1/app");
        assert_eq!(config.client.get_password(), Some(&b"p@ss"[..]));
        assert!(
            error("postgres://app:bad%zzpw@h/db", &[]).contains("percent-encoding in the password")
        );
    }

    #[test]
    fn query_parameters_set_hosts_sockets_and_session_settings() {
        let config = parse(
            "postgresql:///orgdb?host=%2Fvar%2Frun%2Fpostgresql&port=5433&user=app&application_name=api-7&connect_timeout=3&options=-c%20statement_timeout%3D5s",
        );
        assert!(matches!(
            config.client.get_hosts(),
            [tokio_postgres::config::Host::Unix(path)] if path == Path::new("/var/run/postgresql")
        ));
        assert_eq!(config.sslmode(), SslMode::Disable, "no TLS over a socket");
        assert_eq!(config.client.get_application_name(), Some("api-7"));
        assert_eq!(
            config.client.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        assert_eq!(config.client.get_options(), Some("-c statement_timeout=5s"));
        let config = parse("postgres://app:@h/x?tcp_user_timeout=2500&keepalives_idle=30");
        assert_eq!(config.client.get_password(), Some(&b""[..]));
        assert_eq!(
            config.client.get_tcp_user_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        let config = parse("postgres://app@[::1]:5433,db2:5434/x");
        assert_eq!(config.to_string(), "postgres://app@[::1]:5433,db2:5434/x");
    }

    #[test]
    fn the_environment_fills_in_what_the_url_leaves_out() {
        let env = [
            ("PGHOST", "db.internal"),
            ("PGPORT", "5444"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
            ("PGDATABASE", "envdb"),
            ("PGSSLMODE", "require"),
        ];
        let config = parse_with("postgres://", &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.to_string(),
            "postgres://envuser:***@db.internal:5444/envdb?sslmode=require"
        );
        // The URL wins over the environment.
        let config = parse_with("postgres://app@h/db?sslmode=disable", &env)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.to_string(),
            "postgres://app:***@h:5444/db?sslmode=disable"
        );
    }

    #[test]
    fn mistakes_name_the_setting_and_its_source_never_the_password() {
        let missing_user = error("postgres://:hunter2@h/db", &[]);
        assert!(missing_user.contains("names no user"), "{missing_user}");
        assert!(!missing_user.contains("hunter2"));
        assert!(
            error("postgres://u@h:0/db", &[]).contains("invalid port \"0\" in the database URL")
        );
        assert!(error("postgres://u@h/db", &[("PGPORT", "70000")]).contains("in PGPORT"));
        assert!(error("postgres://u@h/db?sslmode=verify", &[]).contains("invalid sslmode"));
        assert!(error("postgres://u@h/db", &[("PGSSLMODE", "on")]).contains("from PGSSLMODE"));
        assert!(
            error("postgres://u@h/db?connect_timeout=0", &[]).contains("invalid connect_timeout")
        );
        assert!(error("postgres://u@h/db?ssl=true", &[]).contains("unknown parameter \"ssl\""));
        assert!(error("postgres://u@h/db?sslcert=x", &[]).contains("not supported"));
        assert!(
            error("postgres://u@h/db?sslmode=require&sslrootcert=system", &[])
                .contains("may not be used with sslrootcert=system")
        );
        // A missing sslrootcert file is refused when TLS is set up, not here: see `pg_tls`.
        let config = parse("postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem");
        assert_eq!(config.sslmode(), SslMode::VerifyCa);
    }

    #[test]
    fn the_keyword_value_form_is_read_too() {
        let config = parse(
            "host=db.internal port=6432 dbname=orgdb user=app password='it\\'s a \\'secret\\'' sslmode=require",
        );
        assert_eq!(
            config.to_string(),
            "postgres://app:***@db.internal:6432/orgdb?sslmode=require"
        );
        assert_eq!(config.client.get_password(), Some(&b"it's a 'secret'"[..]));
        let text = error("host=h user=app hunter2", &[]);
        assert!(
            text.contains("a word without \"=\"") && !text.contains("hunter2"),
            "{text}"
        );
        assert!(error("host=h password='x", &[]).contains("is not closed"));
        assert!(error("host=h colour=blue", &[]).contains("unknown parameter \"colour\""));
        assert!(is_keyword_form("host=h dbname=x") && !is_keyword_form("peregrine.db"));
    }

    #[test]
    fn flags_fill_in_but_never_contradict_the_url() {
        let flags = PgOptions {
            sslmode: Some(SslMode::Require),
            sslrootcert: None,
        };
        let env = |_: &str| None;
        let config =
            PgConfig::parse("postgres://u@h/db", &flags, &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.sslmode(), SslMode::Require);
        let err = PgConfig::parse("postgres://u@h/db?sslmode=disable", &flags, &env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("--db-sslmode require contradicts sslmode=disable"),
            "{err}"
        );
    }
}
