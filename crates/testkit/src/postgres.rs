//! A private PostgreSQL cluster in a temp dir, plain or with TLS (a CA and a server
//! certificate made for it). As root, PostgreSQL's binaries run as the `postgres` OS user
//! (PostgreSQL refuses root). A watchdog process stops the cluster and removes its files
//! when the test process ends, however it ends.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::tls;

/// The password-authenticated role of a TLS cluster.
pub const TLS_USER: &str = "app";
/// [`TLS_USER`]'s password.
pub const TLS_PASSWORD: &str = "app-s3cret-pw";

/// A running private PostgreSQL cluster; dropping it stops it and deletes its files.
pub struct PgCluster {
    root: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    as_postgres_user: bool,
    tls: bool,
}

/// How initdb makes every cluster's data directory (`-D` follows).
const INITDB_ARGS: [&str; 7] = [
    "--auth=trust",
    "--username=postgres",
    "--encoding=UTF8",
    "--locale=C",
    "--no-sync",
    "--no-instructions",
    "-D",
];

static SHARED: OnceLock<PgCluster> = OnceLock::new();
static SHARED_TLS: OnceLock<PgCluster> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

impl PgCluster {
    /// The cluster shared by every test of this test binary, started on first use.
    ///
    /// Panics with the reason when PostgreSQL cannot be started: a test that needs it fails.
    pub fn shared() -> &'static PgCluster {
        SHARED.get_or_init(|| match Self::start() {
            Ok(cluster) => cluster,
            Err(err) => panic!("cannot start a private PostgreSQL cluster: {err}"),
        })
    }

    /// The TLS cluster shared by every test of this test binary ([`PgCluster::start_tls`]).
    pub fn shared_tls() -> &'static PgCluster {
        SHARED_TLS.get_or_init(|| match Self::start_tls() {
            Ok(cluster) => cluster,
            Err(err) => panic!("cannot start a private PostgreSQL cluster with TLS: {err}"),
        })
    }

    /// Creates and starts a new cluster of this test's own (for tests that stop it).
    pub fn start() -> Result<Self, String> {
        Self::start_with(false)
    }

    /// As [`PgCluster::start`], with `settings` (postgresql.conf lines) appended to the
    /// configuration initdb wrote: whether PostgreSQL starts with them is the result.
    pub fn start_configured(settings: &str) -> Result<Self, String> {
        Self::start_configured_with(false, settings)
    }

    /// Creates and starts a cluster with `ssl=on` and a certificate for `localhost` (not for
    /// `127.0.0.1`) signed by a CA made for it ([`PgCluster::ca_file`]). Over TCP it lets
    /// clients in only over TLS and with a password: the role [`TLS_USER`] with
    /// [`TLS_PASSWORD`] (CREATEDB). The Unix socket stays open to `postgres` without one.
    pub fn start_tls() -> Result<Self, String> {
        let cluster = Self::start_with(true)?;
        run(cluster
            .command("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(cluster.root.path())
            .args([
                "-p",
                &cluster.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
            ])
            .arg(format!(
                "CREATE ROLE {TLS_USER} LOGIN CREATEDB PASSWORD '{TLS_PASSWORD}'"
            )))?;
        Ok(cluster)
    }

    fn start_with(tls: bool) -> Result<Self, String> {
        Self::start_configured_with(tls, "")
    }

    fn start_configured_with(tls: bool, settings: &str) -> Result<Self, String> {
        let bindir = find_bindir()?;
        let as_postgres_user = is_root();
        let root = private_dir("peregrine-pg-", as_postgres_user)?;
        let mut cluster = Self {
            root,
            bindir,
            port: 0,
            as_postgres_user,
            tls,
        };
        let data = cluster.data_dir();
        let template = cluster.template()?;
        run(Command::new("cp").arg("-a").arg(&template).arg(&data))?;
        if tls {
            cluster.write_tls_files()?;
        }
        if !settings.is_empty() {
            use std::io::Write as _;
            let conf = data.join("postgresql.conf");
            std::fs::OpenOptions::new()
                .append(true)
                .open(&conf)
                .and_then(|mut file| file.write_all(format!("\n{settings}\n").as_bytes()))
                .map_err(|e| format!("cannot add settings to {}: {e}", conf.display()))?;
        }
        cluster.start_on_a_free_port()?;
        Ok(cluster)
    }

    /// A data directory as initdb makes it, made once per machine: initdb's work is the
    /// same for every cluster, and nextest starts a cluster in most test processes, so each
    /// copies this template (a copy costs a small part of an initdb's CPU). It lives in the
    /// temp dir under a name that changes with the binaries and initdb's arguments, and is
    /// moved into place whole, so a process never sees half of one.
    fn template(&self) -> Result<PathBuf, String> {
        use std::hash::{Hash, Hasher};
        let mut key = std::collections::hash_map::DefaultHasher::new();
        (&self.bindir, INITDB_ARGS, self.as_postgres_user).hash(&mut key);
        let template =
            std::env::temp_dir().join(format!("peregrine-pg-template-{:016x}", key.finish()));
        if template.join("PG_VERSION").is_file() {
            return Ok(template);
        }
        let build = private_dir("peregrine-pg-template-", self.as_postgres_user)?;
        let data = build.path().join("data");
        run(
            command_as(&self.bindir.join("initdb"), self.as_postgres_user)
                .args(INITDB_ARGS)
                .arg(&data),
        )?;
        // Another process may have moved its own into place meanwhile: either one will do.
        if std::fs::rename(&data, &template).is_err() && !template.join("PG_VERSION").is_file() {
            return Err(format!(
                "cannot move the template cluster to {}",
                template.display()
            ));
        }
        Ok(template)
    }

    /// Starts the server on a free port, trying another when one is taken meanwhile, with
    /// a watchdog that removes it once this process is gone.
    fn start_on_a_free_port(&mut self) -> Result<(), String> {
        self.spawn_watchdog()?;
        let mut last_error = String::new();
        for _ in 0..3 {
            self.port = free_port()?;
            match self.start_again() {
                Ok(()) => return Ok(()),
                Err(err) => last_error = err,
            }
        }
        Err(last_error)
    }

    /// Starts a streaming replica of this (plain) cluster: `pg_basebackup -R` over TCP into
    /// a temp dir of its own (initdb's pg_hba.conf lets local replication connections in),
    /// started on another free port. Dropping it stops it and deletes its files.
    pub fn start_replica(&self) -> Result<Self, String> {
        let root = private_dir("peregrine-replica-", self.as_postgres_user)?;
        let mut replica = Self {
            root,
            bindir: self.bindir.clone(),
            port: 0,
            as_postgres_user: self.as_postgres_user,
            tls: false,
        };
        run(replica
            .command("pg_basebackup")
            .args([
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &self.port.to_string(), "-D"])
            .arg(replica.data_dir()))?;
        replica.start_on_a_free_port()?;
        Ok(replica)
    }

    /// The TCP port the cluster listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `dbname` as the superuser `postgres` (trust auth, no password).
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{dbname}", self.port)
    }

    /// The PEM file of the CA that signed a TLS cluster's server certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.root.path().join("ca.crt")
    }

    /// The PEM file of another CA, which signed nothing this cluster presents.
    pub fn other_ca_file(&self) -> PathBuf {
        self.root.path().join("other-ca.crt")
    }

    /// The directory holding the cluster's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.root.path()
    }

    /// A connection as `postgres` over the Unix socket (no password, no TLS needed).
    pub async fn admin(&self) -> tokio_postgres::Client {
        let connected = tokio_postgres::Config::new()
            .host_path(self.root.path())
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect(tokio_postgres::NoTls)
            .await;
        match connected {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                client
            }
            Err(err) => panic!("cannot connect to the cluster's socket: {err}"),
        }
    }

    /// Creates a new empty database with a unique name and returns its URL.
    pub async fn fresh_database(&self) -> String {
        let name = self.fresh_database_name().await;
        self.url(&name)
    }

    /// Creates a new empty database with a unique name (owned by [`TLS_USER`] on a TLS
    /// cluster) and returns the name.
    pub async fn fresh_database_name(&self) -> String {
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{}_{n}", std::process::id());
        let owner = if self.tls { TLS_USER } else { "postgres" };
        let client = self.admin().await;
        if let Err(err) = client
            .batch_execute(&format!("CREATE DATABASE {name} OWNER {owner}"))
            .await
        {
            panic!("cannot create database {name}: {err}");
        }
        name
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    pub fn stop(&self) -> Result<(), String> {
        run(self
            .command("pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(self.data_dir()))
    }

    /// Freezes the server with SIGSTOP (the postmaster and every backend): it keeps its
    /// sockets open but answers nothing, like a hung host. [`PgCluster::thaw`] resumes it.
    pub fn freeze(&self) -> Result<(), String> {
        self.signal_all("STOP")
    }

    /// Resumes a server that [`PgCluster::freeze`] stopped.
    pub fn thaw(&self) -> Result<(), String> {
        self.signal_all("CONT")
    }

    /// Sends `signal` to the postmaster and all its children.
    fn signal_all(&self, signal: &str) -> Result<(), String> {
        let pid_file = self.data_dir().join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file)
            .map_err(|e| format!("cannot read {}: {e}", pid_file.display()))?;
        let postmaster = text.lines().next().unwrap_or_default().trim().to_owned();
        let mut pids = children_of(&postmaster);
        pids.push(postmaster);
        run(Command::new("kill").arg(format!("-{signal}")).args(&pids))
    }

    /// Starts the server again on the same port after [`PgCluster::stop`].
    pub fn start_again(&self) -> Result<(), String> {
        let mut options = format!(
            "-p {} -h 127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300",
            self.port,
            self.root.path().display()
        );
        if self.tls {
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                self.root.path().join("server.crt").display(),
                self.root.path().join("server.key").display()
            ));
        }
        let started = run(self
            .command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-o", &options, "-l"])
            .arg(self.root.path().join("server.log"))
            .arg("-D")
            .arg(self.data_dir()));
        started.map_err(|err| {
            let log = std::fs::read_to_string(self.root.path().join("server.log"));
            format!("{err}\nserver log:\n{}", log.unwrap_or_default())
        })
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// Writes the CAs, the server's certificate and key, and a pg_hba.conf that admits TCP
    /// clients only over TLS with a password.
    fn write_tls_files(&self) -> Result<(), String> {
        let (ca, server_cert, server_key) =
            tls::server_certificate("Peregrine test CA", "localhost")?;
        let (other_ca, _, _) = tls::server_certificate("Another test CA", "localhost")?;
        let hba = "local all all trust\n\
                   hostssl all all 127.0.0.1/32 scram-sha-256\n\
                   hostssl all all ::1/128 scram-sha-256\n";
        let files = [
            (self.ca_file(), ca),
            (self.other_ca_file(), other_ca),
            (self.root.path().join("server.crt"), server_cert),
            (self.root.path().join("server.key"), server_key),
            (self.data_dir().join("pg_hba.conf"), hba.to_owned()),
        ];
        for (path, text) in files {
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            // PostgreSQL refuses a key others can read.
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
            if self.as_postgres_user {
                run(Command::new("chown").arg("postgres:postgres").arg(&path))?;
            }
        }
        // The tests read the CA files: they need no secrecy.
        for path in [self.ca_file(), self.other_ca_file()] {
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// A command for one of PostgreSQL's programs, as the `postgres` user when we are root.
    fn command(&self, program: &str) -> Command {
        let mut command = command_as(&self.bindir.join(program), self.as_postgres_user);
        command.stdin(Stdio::null());
        command
    }

    /// Starts a shell that outlives nothing but this process: once it is gone, the cluster
    /// is stopped and its files removed, even after a crash or `process::exit`.
    fn spawn_watchdog(&self) -> Result<(), String> {
        let pg_ctl = self.bindir.join("pg_ctl");
        let as_user = if self.as_postgres_user {
            "runuser -u postgres -- "
        } else {
            ""
        };
        let script = format!(
            "{as_user}'{pg_ctl}' stop -m immediate -D '{data}' >/dev/null 2>&1; rm -rf '{root}'",
            pg_ctl = pg_ctl.display(),
            data = self.data_dir().display(),
            root = self.root.path().display(),
        );
        spawn_watchdog(&script, "cluster")
    }
}

/// A temp dir named `prefix…`, owned by the `postgres` user when the servers run as it.
pub(crate) fn private_dir(
    prefix: &str,
    as_postgres_user: bool,
) -> Result<tempfile::TempDir, String> {
    let root = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?;
    if as_postgres_user {
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(root.path()))?;
    }
    Ok(root)
}

/// A command for `program`, run as the `postgres` user when `as_postgres_user` (the
/// servers refuse root).
pub(crate) fn command_as(program: &Path, as_postgres_user: bool) -> Command {
    if as_postgres_user {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Runs `cleanup` (a shell script) once this process is gone, even after a crash or
/// `process::exit`: a watchdog for what the tests start outside the process.
pub(crate) fn spawn_watchdog(cleanup: &str, what: &str) -> Result<(), String> {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {cleanup}",
        pid = std::process::id()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot start the {what} watchdog: {e}"))
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Connects to `url` and drives the connection in the background; panics on failure.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(err) => panic!("cannot connect to {url}: {err}"),
    }
}

/// Waits, for at most 10 s, until some session of the cluster waits for a lock; panics
/// when none does. `session` may be inside a transaction (the one holding the lock).
pub async fn wait_for_a_lock_waiter(session: &impl tokio_postgres::GenericClient) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // Inside a transaction the statistics are a snapshot: take a fresh one each time.
        let waiting = async {
            session
                .batch_execute("SELECT pg_stat_clear_snapshot()")
                .await?;
            let row = session
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                    &[],
                )
                .await?;
            row.try_get::<_, i64>(0)
        };
        match waiting.await {
            Ok(n) if n > 0 => return,
            Ok(_) => {}
            Err(err) => panic!("cannot read pg_stat_activity: {err}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no session waits for a lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// PostgreSQL's program directory: `pg_config --bindir`, else the newest under /usr/lib.
fn find_bindir() -> Result<PathBuf, String> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").is_file() {
            return Ok(dir);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().map(|d| d.path().join("bin")).collect())
        .unwrap_or_default();
    found.retain(|dir| dir.join("initdb").is_file());
    found.sort_by_key(|dir| version_of(dir));
    found.pop().ok_or_else(|| {
        "PostgreSQL's binaries (initdb, pg_ctl) were not found: install them with \
         `apt-get install -y postgresql` (`.ci/run` does)"
            .to_owned()
    })
}

fn version_of(bindir: &Path) -> u32 {
    let version = bindir.parent().and_then(Path::file_name);
    version
        .and_then(|v| v.to_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// The pids of the processes whose parent is `parent`, read from /proc.
fn children_of(parent: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.to_owned();
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (comm) state ppid …": the command may hold spaces, so split after ')'.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .to_owned();
            (ppid == parent).then_some(pid)
        })
        .collect()
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

pub(crate) fn run(command: &mut Command) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
