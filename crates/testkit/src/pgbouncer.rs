//! A private PgBouncer (Debian's package) in transaction pooling mode in front of a
//! [`PgCluster`]: its configuration in a temp dir, a free port on 127.0.0.1, trust
//! authentication like the cluster's, and few server connections, so that consecutive
//! transactions of one client land on different server connections. As root it runs as the
//! `postgres` user (PgBouncer refuses root). A watchdog stops it when the test process ends.

use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::postgres::{PgCluster, command_as, free_port, is_root, private_dir, spawn_watchdog};

/// How long PgBouncer may take to listen after it starts.
const START_WAIT: Duration = Duration::from_secs(10);

/// A running PgBouncer; dropping it stops it and deletes its files.
pub struct PgBouncer {
    root: tempfile::TempDir,
    port: u16,
    /// Listening on a Unix socket in its directory instead of TCP.
    on_socket: bool,
    child: Child,
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode in front of `cluster`, with `server_connections`
    /// server connections per database and user. `extra` lines go into its `[pgbouncer]`
    /// section (e.g. `ignore_startup_parameters = extra_float_digits, options`).
    pub fn start(
        cluster: &PgCluster,
        server_connections: u32,
        extra: &str,
    ) -> Result<Self, String> {
        Self::start_listening(cluster, server_connections, extra, false)
    }

    /// Like [`PgBouncer::start`], but listening only on a Unix socket in its own directory
    /// ([`PgBouncer::socket_dir`]) under the cluster's own port number: `SHOW port` through
    /// it gives the port connected to, as when a pooler sits beside the server unseen.
    pub fn start_on_socket(
        cluster: &PgCluster,
        server_connections: u32,
        extra: &str,
    ) -> Result<Self, String> {
        Self::start_listening(cluster, server_connections, extra, true)
    }

    fn start_listening(
        cluster: &PgCluster,
        server_connections: u32,
        extra: &str,
        on_socket: bool,
    ) -> Result<Self, String> {
        let binary = find_sbin_program("pgbouncer", "pgbouncer")?;
        let as_postgres_user = is_root();
        let root = private_dir("peregrine-pgbouncer-", as_postgres_user)?;
        let dir = root.path().display();
        let (port, listen) = if on_socket {
            (cluster.port(), format!("unix_socket_dir = {dir}"))
        } else {
            (
                free_port()?,
                "listen_addr = 127.0.0.1\nunix_socket_dir =".to_owned(),
            )
        };
        let config = root.path().join("pgbouncer.ini");
        let text = format!(
            "[databases]\n\
             * = host=127.0.0.1 port={upstream}\n\
             [pgbouncer]\n\
             {listen}\n\
             listen_port = {port}\n\
             auth_type = trust\n\
             auth_file = {dir}/userlist.txt\n\
             pool_mode = transaction\n\
             default_pool_size = {server_connections}\n\
             max_client_conn = 1000\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n\
             {extra}\n",
            upstream = cluster.port(),
        );
        write(&config, &text)?;
        write(&root.path().join("userlist.txt"), "\"postgres\" \"\"\n")?;
        let child = command_as(&binary, as_postgres_user)
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let bouncer = Self {
            root,
            port,
            on_socket,
            child,
        };
        bouncer.spawn_watchdog()?;
        bouncer.wait_until_listening()?;
        Ok(bouncer)
    }

    /// The TCP port PgBouncer listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `dbname` through PgBouncer, as `postgres`.
    pub fn url(&self, dbname: &str) -> String {
        if self.on_socket {
            return format!(
                "postgres://postgres@/{dbname}?host={}&port={}",
                self.socket_dir().display(),
                self.port
            );
        }
        format!("postgres://postgres@127.0.0.1:{}/{dbname}", self.port)
    }

    /// Makes PgBouncer open `count` server connections to `dbname` now, by holding that many
    /// transactions at once through it. PgBouncer opens server connections only when
    /// transactions overlap: on a busy machine a test's requests may never overlap, and a
    /// single server connection would hide what happens when consecutive transactions land
    /// on different ones.
    pub async fn open_server_connections(&self, dbname: &str, count: usize) {
        let url = self.url(dbname);
        let mut clients = Vec::with_capacity(count);
        for _ in 0..count {
            let client = crate::connect(&url).await;
            if let Err(err) = client.batch_execute("BEGIN; SELECT 1").await {
                panic!("cannot begin a transaction through PgBouncer: {err}");
            }
            clients.push(client);
        }
        for client in clients {
            if let Err(err) = client.batch_execute("COMMIT").await {
                panic!("cannot commit through PgBouncer: {err}");
            }
        }
    }

    /// The directory of its Unix socket (when started with [`PgBouncer::start_on_socket`]).
    pub fn socket_dir(&self) -> &Path {
        self.root.path()
    }

    /// PgBouncer's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("pgbouncer.log")).unwrap_or_default()
    }

    fn wait_until_listening(&self) -> Result<(), String> {
        let socket = self.root.path().join(format!(".s.PGSQL.{}", self.port));
        let listening = || match self.on_socket {
            true => UnixStream::connect(&socket).is_ok(),
            false => TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
        };
        if wait_for(START_WAIT, listening) {
            return Ok(());
        }
        Err(format!(
            "PgBouncer did not listen on port {} within {START_WAIT:?}; its log:\n{}",
            self.port,
            self.log()
        ))
    }

    /// Stops PgBouncer once this process is gone, even after a crash.
    fn spawn_watchdog(&self) -> Result<(), String> {
        let dir = self.root.path().display();
        let cleanup = format!("kill $(cat '{dir}/pgbouncer.pid') 2>/dev/null; rm -rf '{dir}'");
        spawn_watchdog(&cleanup, "PgBouncer")
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // runuser passes SIGTERM on to PgBouncer; its pid file names it in any case.
        if let Ok(pid) = std::fs::read_to_string(self.root.path().join("pgbouncer.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Polls `ready` every 20 ms for at most `wait`; whether it held.
pub(crate) fn wait_for(wait: Duration, ready: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A program of Debian's `package` that lives in /usr/sbin: on PATH, else there.
pub(crate) fn find_sbin_program(name: &str, package: &str) -> Result<PathBuf, String> {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")]);
    for dir in candidates {
        let binary = dir.join(name);
        if binary.is_file() {
            return Ok(binary);
        }
    }
    Err(format!(
        "{name} was not found: install it with `apt-get install -y {package}` (`.ci/run` does)"
    ))
}
