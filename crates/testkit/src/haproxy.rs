//! A private HAProxy (Debian's package) on 127.0.0.1 balancing HTTP over a few backends and
//! health-checking them, as a production load balancer in front of `peregrine serve` would;
//! its statistics (which backends are up, how many requests came in) are read over a
//! listener of their own. A watchdog stops it when the test process ends.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::pgbouncer::{find_sbin_program, wait_for};
use crate::postgres::{free_port, spawn_watchdog};

/// How long HAProxy may take to listen after it starts.
const START_WAIT: Duration = Duration::from_secs(10);
/// Deadline of one read of the statistics.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);
/// The backend's name in the configuration and the statistics.
const BACKEND: &str = "app";
/// The frontend's name.
const FRONTEND: &str = "api";

/// A running HAProxy; dropping it stops it and deletes its files.
pub struct HaProxy {
    root: tempfile::TempDir,
    port: u16,
    stats_port: u16,
    child: Child,
}

impl HaProxy {
    /// Starts HAProxy in front of the HTTP servers on 127.0.0.1 at `backends`, round robin,
    /// checking `GET check_path` every `interval`: a server is down after one failed check
    /// and up again after two good ones. A request whose connection fails or gets no answer
    /// is retried on another server.
    pub fn start(backends: &[u16], check_path: &str, interval: Duration) -> Result<Self, String> {
        let binary = find_sbin_program("haproxy", "haproxy")?;
        let root = tempfile::Builder::new()
            .prefix("peregrine-haproxy-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let port = free_port()?;
        let stats_port = free_port()?;
        let config = root.path().join("haproxy.cfg");
        let text = configuration(port, stats_port, backends, check_path, interval);
        std::fs::write(&config, text)
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let log = std::fs::File::create(root.path().join("haproxy.log"))
            .map_err(|e| format!("cannot create HAProxy's log: {e}"))?;
        let child = Command::new(&binary)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let haproxy = Self {
            root,
            port,
            stats_port,
            child,
        };
        spawn_watchdog(
            &format!(
                "kill {} 2>/dev/null; rm -rf '{}'",
                haproxy.child.id(),
                haproxy.root.path().display()
            ),
            "HAProxy",
        )?;
        haproxy.wait_until_listening()?;
        Ok(haproxy)
    }

    /// The port HAProxy takes requests on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// HAProxy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("haproxy.log")).unwrap_or_default()
    }

    /// How many backend servers the health checks take for up now.
    pub fn servers_up(&self) -> Result<usize, String> {
        let rows = self.stats()?;
        Ok(rows
            .iter()
            .filter(|row| row.proxy == BACKEND && row.server != "BACKEND" && row.status == "UP")
            .count())
    }

    /// How many requests the frontend has taken so far.
    pub fn requests(&self) -> Result<u64, String> {
        let rows = self.stats()?;
        rows.iter()
            .find(|row| row.proxy == FRONTEND && row.server == "FRONTEND")
            .map(|row| row.requests)
            .ok_or_else(|| "HAProxy's statistics have no frontend row".to_owned())
    }

    /// Waits, for at most `wait`, until `count` backend servers are up.
    pub fn wait_until_up(&self, count: usize, wait: Duration) -> Result<(), String> {
        let deadline = Instant::now() + wait;
        loop {
            let up = self.servers_up()?;
            if up == count {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{up} of the backend servers are up after {wait:?}, not {count}; HAProxy's log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The statistics page as CSV rows.
    fn stats(&self) -> Result<Vec<StatRow>, String> {
        let text = self.stats_csv()?;
        let mut lines = text.lines();
        let header = lines
            .find(|line| line.starts_with("# "))
            .ok_or_else(|| format!("HAProxy's statistics have no header:\n{text}"))?;
        let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
        let column = |name: &str| {
            columns
                .iter()
                .position(|c| *c == name)
                .ok_or_else(|| format!("HAProxy's statistics have no {name} column"))
        };
        let (status, requests) = (column("status")?, column("req_tot")?);
        Ok(lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|fields| fields.len() > status.max(requests))
            .map(|fields| StatRow {
                proxy: fields[0].to_owned(),
                server: fields[1].to_owned(),
                status: fields[status].to_owned(),
                requests: fields[requests].parse().unwrap_or(0),
            })
            .collect())
    }

    /// `GET /stats;csv` on the statistics listener, over a plain socket with a deadline.
    fn stats_csv(&self) -> Result<String, String> {
        let failed = |e: std::io::Error| format!("cannot read HAProxy's statistics: {e}");
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.stats_port));
        let mut stream = TcpStream::connect_timeout(&address, STATS_TIMEOUT).map_err(failed)?;
        stream
            .set_read_timeout(Some(STATS_TIMEOUT))
            .map_err(failed)?;
        stream
            .set_write_timeout(Some(STATS_TIMEOUT))
            .map_err(failed)?;
        stream
            .write_all(b"GET /stats;csv HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .map_err(failed)?;
        let mut response = String::new();
        stream.read_to_string(&mut response).map_err(failed)?;
        Ok(response
            .split_once("\r\n\r\n")
            .map_or(response.clone(), |(_, body)| body.to_owned()))
    }

    fn wait_until_listening(&self) -> Result<(), String> {
        let both = || {
            [self.port, self.stats_port]
                .iter()
                .all(|port| TcpStream::connect(("127.0.0.1", *port)).is_ok())
        };
        if wait_for(START_WAIT, both) {
            return Ok(());
        }
        Err(format!(
            "HAProxy did not listen on 127.0.0.1:{} within {START_WAIT:?}; its log:\n{}",
            self.port,
            self.log()
        ))
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One row of HAProxy's statistics.
struct StatRow {
    proxy: String,
    server: String,
    status: String,
    requests: u64,
}

/// The configuration: one frontend, one health-checked backend, a statistics listener.
fn configuration(
    port: u16,
    stats_port: u16,
    backends: &[u16],
    check_path: &str,
    interval: Duration,
) -> String {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(n, backend)| format!("    server s{n} 127.0.0.1:{backend} check\n"))
        .collect();
    format!(
        "global\n\
         \x20   maxconn 1000\n\
         \x20   nbthread 1\n\
         defaults\n\
         \x20   mode http\n\
         \x20   timeout connect 1s\n\
         \x20   timeout client 10s\n\
         \x20   timeout server 10s\n\
         \x20   retries 2\n\
         \x20   option redispatch\n\
         \x20   retry-on conn-failure empty-response\n\
         frontend {FRONTEND}\n\
         \x20   bind 127.0.0.1:{port}\n\
         \x20   default_backend {BACKEND}\n\
         backend {BACKEND}\n\
         \x20   balance roundrobin\n\
         \x20   option httpchk GET {check_path}\n\
         \x20   http-check expect status 200\n\
         \x20   default-server inter {interval}ms fall 1 rise 2\n\
         {servers}\
         listen stats\n\
         \x20   bind 127.0.0.1:{stats_port}\n\
         \x20   stats enable\n\
         \x20   stats uri /stats\n",
        interval = interval.as_millis().max(1),
    )
}
