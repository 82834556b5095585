//! The binary's test harness: `peregrine` run to completion or served in the background
//! ([`Served`]), and the small helpers every subject's tests share.
#![allow(
    clippy::unwrap_used,
    reason = "helpers of a test binary: a failed step should fail the test"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_peregrine");

/// A running `peregrine serve`, killed if the test forgets to stop it.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) base: String,
    pub(crate) logs: Arc<Mutex<String>>,
}

impl Served {
    /// Starts `peregrine serve ARGS --bind 127.0.0.1:0` in `dir` and waits until it listens.
    pub(crate) fn start(dir: &Path, args: &[&str]) -> Self {
        Self::start_with(dir, &[args, &["--bind", "127.0.0.1:0"]].concat(), "info")
    }

    /// Starts `peregrine serve ARGS` with RUST_LOG=`log` and waits until it listens.
    pub(crate) fn start_with(dir: &Path, args: &[&str], log: &str) -> Self {
        let mut command = Command::new(BINARY);
        command.arg("serve").args(args);
        Self::spawn(command, dir, log)
    }

    /// Runs `command` (which starts `peregrine serve`) and waits until it listens.
    pub(crate) fn spawn(command: Command, dir: &Path, log: &str) -> Self {
        let (mut served, listening) = Self::launch(command, dir, log);
        match listening.recv_timeout(Duration::from_secs(60)) {
            Ok(address) => {
                served.base = address.split('"').next().unwrap_or_default().to_owned();
                served
            }
            Err(_) => panic!(
                "peregrine serve did not start listening:\n{}",
                served.logs()
            ),
        }
    }

    /// Runs `peregrine ARGS` in `dir`, collecting its logs, without waiting for anything.
    pub(crate) fn spawn_quiet(dir: &Path, args: &[&str]) -> Self {
        let mut command = Command::new(BINARY);
        command.args(args);
        Self::launch(command, dir, "info").0
    }

    /// Starts `command`, its stderr read into the logs on a thread of its own; the receiver
    /// hears the address once it listens.
    pub(crate) fn launch(
        mut command: Command,
        dir: &Path,
        log: &str,
    ) -> (Self, std::sync::mpsc::Receiver<String>) {
        let mut child = command
            .current_dir(dir)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BINARY}: {e}"));
        let logs = Arc::new(Mutex::new(String::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in stderr
                .map(BufReader::new)
                .into_iter()
                .flat_map(BufRead::lines)
            {
                let Ok(line) = line else { break };
                // Stored before the address is announced, so a test that starts once the
                // server listens always finds the "listening" line in the logs.
                if let Ok(mut logs) = sink.lock() {
                    logs.push_str(&line);
                    logs.push('\n');
                }
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let address = rest.split(['"', ' ']).next().unwrap_or_default();
                    let _ = address_tx.send(address.to_owned());
                }
            }
        });
        let base = String::new();
        (Self { child, base, logs }, address_rx)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// Waits for the process to exit, for at most `limit`.
    pub(crate) fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "peregrine did not exit within {limit:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the logs contain `text` (they are read on another thread), at most 5 s.
    pub(crate) fn wait_for_log(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let logs = self.logs();
            if logs.contains(text) {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the logs:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn logs(&self) -> String {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `peregrine ARGS` to completion in `dir`: (status, stdout, stderr).
pub(crate) fn run(dir: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    run_env(dir, args, &[])
}

pub(crate) async fn get_json(url: &str) -> (u16, Value) {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(crate) fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn free_port() -> u16 {
    peregrine_testkit::free_port().unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) async fn get_json_owned(url: String) -> (u16, Value) {
    get_json(&url).await
}

/// Runs `peregrine ARGS` on a blocking thread, so servers in this test's runtime keep serving.
pub(crate) async fn run_async(dir: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&dir, &args)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// [`run`] with exactly `env` among libpq's variables.
pub(crate) fn run_env(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (ExitStatus, String, String) {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL");
    for name in PG_ENV {
        command.env_remove(name);
    }
    let out = command
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BINARY}: {e}"));
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status, text(&out.stdout), text(&out.stderr))
}

/// libpq's environment variables, cleared so that only the test's own apply.
pub(crate) const PG_ENV: [&str; 8] = [
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGCONNECT_TIMEOUT",
];

/// The value of the metric line starting with `name` (labels included) in `metrics`.
pub(crate) fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub(crate) async fn metrics_text(server: &Served) -> String {
    reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
