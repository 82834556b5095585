//! The real `peregrine` binary, driven as a user would: serve, db init, db seed, signals,
//! and the errors a user sees.
#![allow(
    clippy::unwrap_used,
    reason = "helpers of a test binary: a failed step should fail the test"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peregrine_testkit::PgCluster;
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_peregrine");

/// A running `peregrine serve`, killed if the test forgets to stop it.
struct Served {
    child: Child,
    base: String,
    logs: Arc<Mutex<String>>,
}

impl Served {
    /// Starts `peregrine serve ARGS --bind 127.0.0.1:0` in `dir` and waits until it listens.
    fn start(dir: &Path, args: &[&str]) -> Self {
        Self::start_with(dir, &[args, &["--bind", "127.0.0.1:0"]].concat(), "info")
    }

    /// Starts `peregrine serve ARGS` with RUST_LOG=`log` and waits until it listens.
    fn start_with(dir: &Path, args: &[&str], log: &str) -> Self {
        let mut command = Command::new(BINARY);
        command.arg("serve").args(args);
        Self::spawn(command, dir, log)
    }

    /// Runs `command` (which starts `peregrine serve`) and waits until it listens.
    fn spawn(command: Command, dir: &Path, log: &str) -> Self {
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
    fn spawn_quiet(dir: &Path, args: &[&str]) -> Self {
        let mut command = Command::new(BINARY);
        command.args(args);
        Self::launch(command, dir, "info").0
    }

    /// Starts `command`, its stderr read into the logs on a thread of its own; the receiver
    /// hears the address once it listens.
    fn launch(
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// Waits for the process to exit, for at most `limit`.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
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
    fn wait_for_log(&self, text: &str) -> String {
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

    fn logs(&self) -> String {
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
fn run(dir: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    run_env(dir, args, &[])
}

async fn get_json(url: &str) -> (u16, Value) {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

fn free_port() -> u16 {
    peregrine_testkit::free_port().unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn quickstart_serve_seed_20_on_the_default_sqlite_file_serves_20_users() {
    let dir = temp_dir();
    let mut server = Served::start(dir.path(), &["--seed", "20"]);
    assert!(
        dir.path().join("peregrine.db").is_file(),
        "the default is sqlite://peregrine.db"
    );
    let (status, users) = get_json(&server.url("/users/")).await;
    assert_eq!(status, 200);
    let users = users.as_array().cloned().unwrap_or_default();
    assert_eq!(users.len(), 20);
    for (i, user) in users.iter().enumerate() {
        assert_eq!(user["id"], i + 1);
        let name = user["username"].as_str().unwrap_or_default();
        assert!(
            name.len() == 8 && name.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}"
        );
    }
    server.signal("INT");
    assert!(server.wait(Duration::from_secs(10)).success());
    server.wait_for_log("stopped");

    // --seed N means "at least N": a restart adds nothing, a larger N tops up.
    let again = Served::start(dir.path(), &["--seed", "20"]);
    let (_, users) = get_json(&again.url("/users")).await;
    assert_eq!(users.as_array().map(Vec::len), Some(20));
    drop(again);
    let more = Served::start(dir.path(), &["--seed", "25"]);
    let (_, users) = get_json(&more.url("/users")).await;
    assert_eq!(users.as_array().map(Vec::len), Some(25));
}

/// SQLite commits are durable unless `--sqlite-synchronous normal` (or its variable) says
/// otherwise; the server says which at start, as SQLite reads the setting back.
#[tokio::test]
async fn sqlite_durability_is_full_by_default_and_the_flag_relaxes_it() {
    let dir = temp_dir();
    let server = Served::start(dir.path(), &[]);
    server.wait_for_log("synchronous=FULL");
    drop(server);
    let relaxed = Served::start(dir.path(), &["--sqlite-synchronous", "normal"]);
    let logs = relaxed.wait_for_log("synchronous=NORMAL");
    assert!(logs.contains("power loss"), "{logs}");
    assert!(!logs.contains("synchronous=FULL"), "{logs}");
    drop(relaxed);
    let mut command = Command::new(BINARY);
    command
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("PEREGRINE_SQLITE_SYNCHRONOUS", "normal");
    let from_env = Served::spawn(command, dir.path(), "info");
    from_env.wait_for_log("synchronous=NORMAL");
    drop(from_env);

    let (status, _, stderr) = run(dir.path(), &["serve", "--sqlite-synchronous", "off"]);
    assert!(!status.success());
    assert!(stderr.contains("--sqlite-synchronous"), "{stderr}");
    let postgres = PgCluster::shared().fresh_database().await;
    let (status, _, stderr) = run(
        dir.path(),
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            &postgres,
            "--sqlite-synchronous",
            "normal",
        ],
    );
    assert!(!status.success());
    assert!(stderr.contains("SQLite only"), "{stderr}");
}

/// Every write acknowledged by `serve` on SQLite is in the file, even when writes were
/// committed together and the process is then killed with SIGKILL: 40 concurrent POSTs of
/// 20 names give one 201 per name, and a new server on the file lists exactly those.
#[tokio::test]
async fn sqlite_writes_acknowledged_together_survive_kill_9() {
    let dir = temp_dir();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "kill-token-1234\n").unwrap();
    let args = ["--api-token-file", token_file.to_str().unwrap()];
    let mut server = Served::start(dir.path(), &args);
    let client = reqwest::Client::new();
    let posts: Vec<_> = (0..40)
        .map(|i| {
            let post = client
                .post(server.url("/users"))
                .bearer_auth("kill-token-1234")
                .json(&serde_json::json!({ "username": format!("durable-{}", i % 20) }))
                .send();
            tokio::spawn(post)
        })
        .collect();
    let mut acknowledged = std::collections::BTreeSet::new();
    for post in posts {
        let response = post.await.unwrap().unwrap();
        match response.status().as_u16() {
            201 => {
                let user: Value = response.json().await.unwrap();
                let name = user["username"].as_str().unwrap_or_default().to_owned();
                assert!(acknowledged.insert(name), "two 201s for one name");
            }
            409 => {}
            other => panic!("POST answered {other}"),
        }
    }
    assert_eq!(acknowledged.len(), 20);
    server.signal("KILL");
    server.wait(Duration::from_secs(10));
    drop(server);

    let again = Served::start(dir.path(), &args);
    let (status, users) = get_json(&again.url("/users?limit=100")).await;
    assert_eq!(status, 200);
    let listed: std::collections::BTreeSet<String> = users
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|user| user["username"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(listed, acknowledged);
}

#[tokio::test]
async fn db_init_is_idempotent_and_db_seed_adds_exactly_n_on_sqlite() {
    let dir = temp_dir();
    let url = "sqlite://seeded.db";
    for expected in [
        "applied 1 migration; database schema is now at version 1",
        "database schema is up to date; no migration to apply",
    ] {
        let (status, _, stderr) = run(dir.path(), &["db", "init", "--database-url", url]);
        assert!(status.success(), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
    let (status, stdout, stderr) = run(
        dir.path(),
        &["db", "seed", "--users", "1500", "--database-url", url],
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "added 1500 users; 1500 users in all");
    let (_, stdout, _) = run(
        dir.path(),
        &["db", "seed", "-n", "7", "--database-url", url],
    );
    assert_eq!(stdout.trim(), "added 7 users; 1507 users in all");
}

#[tokio::test]
async fn db_init_and_seed_work_on_postgres_and_never_print_the_password() {
    let url = PgCluster::shared().fresh_database().await;
    let url = url.replace("postgres@", "postgres:sekrit-pw@");
    let dir = temp_dir();
    let (status, _, stderr) = run(dir.path(), &["db", "init", "--database-url", &url]);
    assert!(status.success(), "{stderr}");
    let (status, stdout, stderr) = run(
        dir.path(),
        &["db", "seed", "--users", "3000", "--database-url", &url],
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "added 3000 users; 3000 users in all");
    assert!(
        stderr.contains("postgres://postgres:***@127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains("sekrit-pw") && !stdout.contains("sekrit-pw"));
}

/// SIGTERM with a request in flight: no new connections, the request completes, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_then_exits_0() {
    let url = PgCluster::shared().fresh_database().await;
    let dir = temp_dir();
    let mut server = Served::start(dir.path(), &["--database-url", &url, "--seed", "3"]);
    // Hold a lock that makes the next read wait, so a request is surely in flight.
    let mut locker = peregrine_testkit::connect(&url).await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE orguser IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let in_flight = tokio::spawn(get_json_owned(server.url("/users/")));
    peregrine_testkit::wait_for_a_lock_waiter(&lock).await;

    server.signal("TERM");
    // Without a grace period the listener closes at once.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(server.base.trim_start_matches("http://")).is_ok() {
        assert!(
            Instant::now() < deadline,
            "a stopping server must not accept new connections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!in_flight.is_finished());

    lock.rollback().await.unwrap();
    let (status, users) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(users.as_array().map(Vec::len), Some(3));
    assert_eq!(
        server.wait(Duration::from_secs(10)).code(),
        Some(0),
        "{}",
        server.logs()
    );
    // Durations in the logs in human units (not `grace=0ns`).
    let logs = server.logs();
    assert!(
        logs.contains("grace=0s") && logs.contains("timeout=") && !logs.contains("0ns"),
        "{logs}"
    );
}

/// SIGTERM as a load balancer needs it: /readyz fails at once, new connections are still
/// served during --shutdown-grace (with `Connection: close`), then a clean exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_readiness_at_once_and_serves_through_the_grace_period() {
    let dir = temp_dir();
    let mut server = Served::start(dir.path(), &["--seed", "2", "--shutdown-grace", "3s"]);
    let client = reqwest::Client::new();
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(ready.headers().get("connection").is_none());

    server.signal("TERM");
    let signalled = Instant::now();
    loop {
        // A new connection each time: they are still accepted.
        let fresh = reqwest::Client::new();
        let ready = fresh.get(server.url("/readyz")).send().await.unwrap();
        if ready.status() == 503 {
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "/readyz kept answering 200"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let users = client.get(server.url("/users/")).send().await.unwrap();
    assert_eq!(users.status(), 200);
    assert_eq!(users.headers()["connection"], "close");
    // The same on a new connection, whose plain read the front answers.
    let fresh = reqwest::Client::new();
    let users = fresh.get(server.url("/users/")).send().await.unwrap();
    assert_eq!(users.status(), 200);
    assert_eq!(users.headers()["connection"], "close");
    assert!(signalled.elapsed() < Duration::from_secs(3));
    assert_eq!(server.wait(Duration::from_secs(15)).code(), Some(0));
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "the grace period was cut short"
    );
}

/// A request sent on a connection the server accepted is answered, even as the listeners
/// close at the end of --shutdown-grace: clients connecting and sending at a steady pace
/// across that instant are refused or answered, never reset or closed without an answer
/// (which the exit code 0 would not own up to); connections the kernel completed but the
/// server had not accepted yet are taken before the listeners close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sent_as_the_listeners_close_are_answered() {
    let dir = temp_dir();
    let args = ["--seed", "2", "--workers", "2", "--shutdown-grace", "1s"];
    let mut server = Served::start(dir.path(), &args);
    let address: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    server.signal("TERM");
    let clients = (0..4).map(|_| {
        tokio::spawn(async move {
            let (mut answered, mut lost) = (0, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
                    break;
                };
                let request = b"GET /users/ HTTP/1.1\r\nHost: a\r\n\r\n";
                let sent = tokio::io::AsyncWriteExt::write_all(&mut stream, request).await;
                let mut response = Vec::new();
                let read = tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response),
                )
                .await;
                if response.starts_with(b"HTTP/1.1 200") {
                    answered += 1;
                } else {
                    let response = String::from_utf8_lossy(&response).into_owned();
                    lost.push(format!("sent {sent:?}, read {read:?}: {response:?}"));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (answered, lost)
        })
    });
    let (mut answered, mut lost) = (0, Vec::new());
    for client in clients.collect::<Vec<_>>() {
        let (some, unanswered) = client.await.unwrap();
        answered += some;
        lost.extend(unanswered);
    }
    assert!(answered > 0, "nothing was answered during the grace period");
    assert!(lost.is_empty(), "{} answered; lost: {lost:#?}", answered);
    assert_eq!(server.wait(Duration::from_secs(15)).code(), Some(0));
}

/// A request that cannot finish within --shutdown-timeout is dropped, logged, and the exit
/// code says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_dropped_at_the_shutdown_timeout_make_the_exit_code_1() {
    let url = PgCluster::shared().fresh_database().await;
    let dir = temp_dir();
    let mut server = Served::start(
        dir.path(),
        &[
            "--database-url",
            &url,
            "--seed",
            "1",
            "--db-timeout",
            "60s",
            "--shutdown-timeout",
            "1s",
        ],
    );
    let mut locker = peregrine_testkit::connect(&url).await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE orguser IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let stuck = tokio::spawn(get_json_owned(server.url("/users/")));
    peregrine_testkit::wait_for_a_lock_waiter(&lock).await;
    server.signal("TERM");
    assert_eq!(server.wait(Duration::from_secs(10)).code(), Some(1));
    server.wait_for_log("dropped=1");
    server.wait_for_log("were dropped");
    assert!(
        stuck.await.is_err_and(|e| e.is_panic()),
        "the request got no answer"
    );
    lock.rollback().await.unwrap();
}

/// Two servers never split one address's traffic: the second fails, saying why.
#[test]
fn a_second_server_on_the_same_address_fails_with_address_in_use() {
    let dir = temp_dir();
    let address = format!("127.0.0.1:{}", free_port());
    let _first = Served::start_with(dir.path(), &["--bind", &address], "info");
    // A second server that did bind would serve until stopped: wait a bounded time.
    let mut second = Served::spawn_quiet(dir.path(), &["serve", "--bind", &address]);
    let status = second.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let stderr = second.wait_for_log("address already in use");
    assert!(stderr.contains("--bind"), "{stderr}");

    // A taken metrics address names its own flag.
    let mut third = Served::spawn_quiet(
        dir.path(),
        &["serve", "--bind", "127.0.0.1:0", "--metrics-bind", &address],
    );
    assert_eq!(third.wait(Duration::from_secs(20)).code(), Some(1));
    let stderr = third.wait_for_log("address already in use");
    assert!(stderr.contains("--metrics-bind"), "{stderr}");
}

/// Secrets come from files, kept out of /proc/PID/cmdline; and no log level records user
/// data such as a username.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_come_from_files_and_debug_logs_hold_no_user_data() {
    let url = PgCluster::shared().fresh_database().await;
    let dir = temp_dir();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "file-token-5678\n").unwrap();
    let url_file = dir.path().join("database-url");
    std::fs::write(&url_file, format!("{url}\n")).unwrap();
    let server = Served::start_with(
        dir.path(),
        &[
            "--api-token-file",
            token_file.to_str().unwrap(),
            "--database-url-file",
            url_file.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ],
        "debug",
    );
    let name = "zq-private-name-0042";
    let created = reqwest::Client::new()
        .post(server.url("/users"))
        .bearer_auth("file-token-5678")
        .json(&serde_json::json!({ "username": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let (status, _) = get_json(&server.url("/users/1")).await;
    assert_eq!(status, 200);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("file-token-5678"));
    let logs = server.logs();
    assert!(logs.contains("DEBUG"), "debug logging is on: {logs}");
    assert!(!logs.contains(name), "a username in the logs:\n{logs}");
}

/// A read-only database (a replica) with a current schema can be served: reads work and
/// writes get 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_on_a_read_only_database_and_writes_get_503() {
    let url = PgCluster::shared().fresh_database().await;
    let dir = temp_dir();
    let (status, _, stderr) = run(
        dir.path(),
        &["db", "seed", "-n", "2", "--database-url", &url],
    );
    assert!(status.success(), "{stderr}");
    let database = url.rsplit('/').next().unwrap_or_default().to_string();
    let admin = peregrine_testkit::connect(&url).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {database} SET default_transaction_read_only = on"
        ))
        .await
        .unwrap();
    let server = Served::start(
        dir.path(),
        &[
            "--database-url",
            &url,
            "--api-token",
            "t0k3n-ro",
            "--access-log",
        ],
    );
    let (status, users) = get_json(&server.url("/users/")).await;
    assert_eq!(status, 200);
    assert_eq!(users.as_array().map(Vec::len), Some(2));
    let refused = reqwest::Client::new()
        .post(server.url("/users"))
        .bearer_auth("t0k3n-ro")
        .json(&serde_json::json!({ "username": "writer" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    // The first refusal is warned about in full, naming its request's id; a repeat is
    // counted rather than logged again (a worker that has not met it yet warns once too),
    // and each request's access-log line carries its database error. The metrics count both.
    let refused_again = reqwest::Client::new()
        .post(server.url("/users"))
        .bearer_auth("t0k3n-ro")
        .header("x-request-id", "ro-write-2")
        .json(&serde_json::json!({ "username": "writer" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused_again.status(), 503);
    let logs = server.wait_for_log("the database is read-only");
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN request{request_id=") && l.contains("read-only")),
        "{logs}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.logs().lines().any(|line| {
        line.contains(r#"request_id="ro-write-2""#)
            && line.contains("status=503")
            && line.contains("db_error=")
    }) {
        assert!(Instant::now() < deadline, "{}", server.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("peregrine_db_errors_total{kind=\"read_only\"} 2\n"),
        "{metrics}"
    );
}

async fn get_json_owned(url: String) -> (u16, Value) {
    get_json(&url).await
}

#[test]
fn an_unsupported_database_url_is_a_clear_error_without_secrets() {
    let dir = temp_dir();
    let (status, _, stderr) = run(
        dir.path(),
        &["serve", "--database-url", "mysql://root:hunter2@db/x"],
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("--database-url") && stderr.contains("unsupported database URL scheme"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn unreachable_postgres_at_start_fails_after_db_wait_without_secrets() {
    let dir = temp_dir();
    let url = format!("postgres://app:hunter2@127.0.0.1:{}/app", free_port());
    let started = Instant::now();
    let (status, _, stderr) = run(
        dir.path(),
        &["serve", "--database-url", &url, "--db-wait", "1s"],
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("cannot connect to the database at postgres://app:***@127.0.0.1")
            && stderr.contains("connection refused by 127.0.0.1:")
            && stderr.contains("still failing after"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn secrets_given_as_flags_are_warned_about_without_being_repeated() {
    let dir = temp_dir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let address = taken
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (status, _, stderr) = run(
        dir.path(),
        &["serve", "--bind", &address, "--api-token", "hunter2"],
    );
    assert_eq!(
        status.code(),
        Some(1),
        "the busy port still stops it: {stderr}"
    );
    assert!(
        stderr.contains("--api-token on the command line is readable by every user")
            && stderr.contains("PEREGRINE_API_TOKEN or --api-token-file"),
        "{stderr}"
    );
    let (_, _, stderr) = run(
        dir.path(),
        &[
            "db",
            "init",
            "--database-url=postgres://app:hunter2@127.0.0.1:1/x",
            "--db-wait",
            "0s",
        ],
    );
    assert!(
        stderr.contains("--database-url holds a password") && stderr.contains("DATABASE_URL"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // From the environment or a file: no warning.
    let (_, _, stderr) = run_env(
        dir.path(),
        &["serve", "--bind", &address],
        &[("PEREGRINE_API_TOKEN", "hunter2")],
    );
    assert!(!stderr.contains("readable by every user"), "{stderr}");
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let dir = temp_dir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let address = taken
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (status, _, stderr) = run(dir.path(), &["serve", "--bind", &address]);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains(&format!("cannot listen on {address}")),
        "{stderr}"
    );
}

#[test]
fn invalid_flags_are_rejected_by_name() {
    let dir = temp_dir();
    for (args, flag) in [
        (&["serve", "--workers", "0"][..], "--workers"),
        (&["serve", "--bind", "localhost"][..], "--bind"),
        (&["serve", "--db-pool-size", "0"][..], "--db-pool-size"),
        (&["serve", "--max-page-size", "0"][..], "--max-page-size"),
        (
            &["serve", "--shutdown-timeout", "soon"][..],
            "--shutdown-timeout",
        ),
        (&["db", "seed", "--users", "-5"][..], "--users"),
        (&["serve", "--log-format", "xml"][..], "--log-format"),
        (
            &["serve", "--db-statements", "named"][..],
            "--db-statements",
        ),
        (
            &["serve", "--cors-origin", "https://app.example/"][..],
            "--cors-origin",
        ),
        (
            &["serve", "--cors-origin", "app.example"][..],
            "--cors-origin",
        ),
        (
            &["serve", "--metrics-bind", "localhost"][..],
            "--metrics-bind",
        ),
    ] {
        let (status, _, stderr) = run(dir.path(), args);
        assert_eq!(status.code(), Some(1), "{args:?}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
    // Checked before anything is bound or opened: exit 1 naming the flag, no file made.
    let postgres = "postgres://app@127.0.0.1:1/db";
    for (args, expected) in [
        (
            &["serve", "--database-read-url", postgres][..],
            "--database-read-url: read replicas are for PostgreSQL only",
        ),
        (
            &[
                "serve",
                "--database-url",
                postgres,
                "--database-read-url",
                "sqlite://r.db",
            ][..],
            "--database-read-url: sqlite://r.db is not a PostgreSQL URL",
        ),
        (
            &[
                "serve",
                "--database-url",
                postgres,
                "--db-read-primary-after-write",
                "2h",
            ][..],
            "--db-read-primary-after-write: must be from 0s to 1h",
        ),
    ] {
        let (status, _, stderr) = run(dir.path(), args);
        assert_eq!(status.code(), Some(1), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(!dir.path().join("peregrine.db").exists());
}

/// The serving limits are range-checked, and a secret file that cannot be used is named.
#[test]
fn serving_limits_and_secret_files_are_checked_by_name() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("empty"), "\n").unwrap();
    for (args, flag, code) in [
        (
            &["serve", "--max-connections", "0"][..],
            "--max-connections",
            1,
        ),
        (
            &["serve", "--max-header-bytes", "10"][..],
            "--max-header-bytes",
            1,
        ),
        (&["serve", "--db-timeout", "0s"][..], "--db-timeout", 1),
        (
            &["serve", "--max-client-connections", "0"][..],
            "--max-client-connections",
            1,
        ),
        (
            &["serve", "--max-client-bodies", "0"][..],
            "--max-client-bodies",
            1,
        ),
        (
            &["serve", "--max-unsent-bytes", "1000"][..],
            "--max-unsent-bytes",
            1,
        ),
        (&["serve", "--idle-timeout", "2h"][..], "--idle-timeout", 1),
        (&["serve", "--body-timeout", "0s"][..], "--body-timeout", 1),
        (
            &["serve", "--shutdown-grace", "3h"][..],
            "--shutdown-grace",
            1,
        ),
        (
            &["serve", "--api-token-file", "missing"][..],
            "--api-token-file",
            1,
        ),
        (
            &["serve", "--api-token-file", "empty"][..],
            "--api-token-file",
            1,
        ),
        (
            &["db", "init", "--database-url-file", "missing"][..],
            "--database-url-file",
            1,
        ),
    ] {
        let (status, _, stderr) = run(dir.path(), args);
        assert_eq!(status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = temp_dir();
    let server = Served::start(dir.path(), &["--log-format", "json"]);
    let (status, _) = get_json(&server.url("/healthz")).await;
    assert_eq!(status, 200);
    let logs = server.logs();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
        .collect();
    assert!(
        !lines.is_empty() && lines.iter().all(Value::is_object),
        "{logs}"
    );
    assert!(lines.iter().any(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("listening on http://127.0.0.1:"))
    }));
}

/// One exit-code convention (docs/exit-codes.md): a usage error exits 1 in every
/// subcommand, with clap's message on stderr; help and version exit 0.
#[test]
fn a_usage_error_exits_1_in_every_subcommand_with_a_message_on_stderr() {
    let dir = temp_dir();
    let cases: [&[&str]; 12] = [
        &[],
        &["no-such-command"],
        &["serve", "--no-such-flag"],
        &["db", "init", "--no-such-flag"],
        &["db", "seed", "--count", "many"],
        &["load", "--no-such-flag"],
        &["report", "merge"],
        &["report", "compare", "only-one-dir"],
        &["report", "frobnicate"],
        &["tune", "--memory", "1MB", "--db-type", "nonsense"],
        &["demo", "--no-such-flag"],
        &["health", "--timeout", "soon"],
    ];
    for args in cases {
        let (status, stdout, stderr) = run(dir.path(), args);
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        // No subcommand at all: the help, on stderr, is the message.
        assert!(
            (args.is_empty() && stderr.contains("Usage:"))
                || (stderr.contains("error:") && stderr.contains("--help")),
            "{args:?}: {stderr}"
        );
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
    for args in [
        &["--help"][..],
        &["--version"],
        &["report", "compare", "--help"],
    ] {
        let (status, stdout, stderr) = run(dir.path(), args);
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stdout.is_empty(), "{args:?}");
    }
}

/// PgTune's 64kB of maintenance_work_mem for 1 MB of RAM is under PostgreSQL's 1MB
/// minimum: the output clamps it and says so, and a real PostgreSQL starts with the whole
/// configuration (and refuses PgTune's own value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_clamps_what_postgresql_would_refuse_and_postgresql_starts_with_it() {
    let dir = temp_dir();
    let (status, stdout, stderr) = run(
        dir.path(),
        &["tune", "--memory", "1MB", "--db-version", "15"],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains(
            "# maintenance_work_mem: PgTune's 64kB is below PostgreSQL's minimum; clamped to 1MB\nmaintenance_work_mem = 1MB\n"
        ),
        "{stdout}"
    );
    // Values PostgreSQL accepts stay PgTune's.
    assert!(stdout.contains("\nshared_buffers = 256kB\n"), "{stdout}");
    assert_eq!(stdout.matches("clamped").count(), 1, "{stdout}");
    let cluster = tokio::task::spawn_blocking(move || PgCluster::start_configured(&stdout))
        .await
        .unwrap()
        .unwrap_or_else(|err| panic!("PostgreSQL refused the tuned settings: {err}"));
    let client = cluster.admin().await;
    let shown: String = client
        .query_one("SHOW maintenance_work_mem", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown, "1MB");
    let refused =
        tokio::task::spawn_blocking(|| PgCluster::start_configured("maintenance_work_mem = 64kB"))
            .await
            .unwrap();
    let err = refused.err().unwrap_or_default();
    assert!(err.contains("maintenance_work_mem"), "{err}");

    // Far past the other end: values over PostgreSQL's maximum are clamped, in JSON too.
    let (status, stdout, stderr) = run(
        dir.path(),
        &[
            "tune",
            "--memory",
            "999999GB",
            "--connections",
            "999999",
            "--format",
            "json",
        ],
    );
    assert!(status.success(), "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    let clamped: Vec<&str> = json["clamped"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        clamped,
        ["shared_buffers", "effective_cache_size", "max_connections"],
        "{stdout}"
    );
    assert_eq!(
        json["clamped"][2]["message"],
        "max_connections: PgTune's 999999 is above PostgreSQL's maximum; clamped to 262121"
    );
}

#[test]
fn tune_prints_pgtunes_configuration_for_the_given_host() {
    let dir = temp_dir();
    let args = [
        "tune",
        "--db-version",
        "13",
        "--os",
        "linux",
        "--db-type",
        "dw",
        "--memory",
        "3GB",
    ];
    let (status, stdout, stderr) = run(
        dir.path(),
        &[
            &args[..],
            &["--cpus", "1", "--connections", "50", "--storage", "hdd"],
        ]
        .concat(),
    );
    assert!(status.success(), "{stderr}");
    let expected = "# DB Version: 13\n# OS Type: linux\n# DB Type: dw\n# Total Memory (RAM): 3 GB\n\
        # CPUs num: 1\n# Connections num: 50\n# Data Storage: hdd\n\nmax_connections = 50\n\
        shared_buffers = 768MB\neffective_cache_size = 2304MB\nmaintenance_work_mem = 384MB\n";
    assert!(stdout.starts_with(expected), "{stdout}");
    assert!(stdout.ends_with("max_wal_size = 16GB\n"), "{stdout}");
}

#[tokio::test]
async fn tune_detect_reads_this_host_and_explicit_flags_win() {
    let dir = temp_dir();
    let (status, stdout, stderr) = run(dir.path(), &["tune", "--detect", "--format", "json"]);
    assert!(status.success(), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    assert_eq!(report["input"]["cpu_num"], cpus);
    assert_eq!(report["input"]["os_type"], "linux");
    assert_eq!(report["input"]["total_memory"]["unit"], "GB");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let gb = report["input"]["total_memory"]["amount"]
        .as_f64()
        .unwrap_or(0.0);
    assert!((gb - kb / 1048576.0).abs() <= 0.5, "{gb} GB vs {kb} kB");
    // The installed PostgreSQL's major version, as `postgres --version` reports it.
    let installed = peregrine_installed_major();
    assert_eq!(report["input"]["db_version"], installed);
    assert_eq!(report["settings"][0]["name"], "max_connections");
    assert!(
        report["conf_text"]
            .as_str()
            .is_some_and(|t| t.contains("# CPUs num:"))
    );

    // Explicit flags win over detection; the version can come from a live server.
    let url = PgCluster::shared().fresh_database().await;
    let (status, stdout, stderr) = run(
        dir.path(),
        &[
            "tune",
            "--detect",
            "--database-url",
            &url,
            "--cpus",
            "64",
            "--memory",
            "1TB",
            "--format",
            "json",
        ],
    );
    assert!(status.success(), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["input"]["cpu_num"], 64);
    assert_eq!(report["input"]["total_memory"]["amount"], 1);
    assert_eq!(report["input"]["total_memory"]["unit"], "TB");
    assert_eq!(report["input"]["db_version"], installed);
    assert!(report["warnings"].as_array().is_some_and(|w| {
        w.iter()
            .any(|l| l == "this tool not being optimal for very high memory systems")
    }));
}

/// The major version of the PostgreSQL the tests run, from its own `postgres --version`.
fn peregrine_installed_major() -> u64 {
    let bindir = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let out = Command::new(format!("{bindir}/postgres"))
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split(')')
        .nth(1)
        .and_then(|v| v.trim().split('.').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{text}"))
}

#[test]
fn tune_writes_a_file_and_says_how_to_load_it() {
    let dir = temp_dir();
    let (status, stdout, stderr) = run(
        dir.path(),
        &["tune", "--memory", "8GB", "--write", "peregrine.conf"],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("include_if_exists = 'peregrine.conf'"),
        "{stdout}"
    );
    let written = std::fs::read_to_string(dir.path().join("peregrine.conf")).unwrap_or_default();
    assert!(
        written.contains("# DB Version: 18\n") && written.contains("\nshared_buffers = 2GB\n"),
        "{written}"
    );
    let (status, stdout, _) = run(
        dir.path(),
        &[
            "tune",
            "--memory",
            "8GB",
            "--format",
            "alter-system",
            "--write",
            "tune.sql",
        ],
    );
    assert!(status.success());
    assert!(stdout.contains("psql -f tune.sql"), "{stdout}");
    let sql = std::fs::read_to_string(dir.path().join("tune.sql")).unwrap_or_default();
    assert!(
        sql.contains("\nALTER SYSTEM SET shared_buffers = '2GB';\n"),
        "{sql}"
    );
    let (status, _, stderr) = run(
        dir.path(),
        &[
            "tune",
            "--memory",
            "8GB",
            "--write",
            "/nonexistent-dir/x.conf",
        ],
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("cannot write /nonexistent-dir/x.conf"),
        "{stderr}"
    );
}

#[test]
fn tune_rejects_what_pgtune_rejects_naming_the_flag() {
    let dir = temp_dir();
    for (args, expected) in [
        (
            &["tune", "--memory", "8GB", "--connections", "19"][..],
            "--connections: invalid connection count 19: allowed 20 to 999999",
        ),
        (
            &["tune", "--memory", "8GB", "--db-version", "9"][..],
            "--db-version: unsupported PostgreSQL version 9; allowed: 10 to 18",
        ),
        (
            &["tune", "--memory", "8GB", "--cpus", "0"][..],
            "--cpus: invalid CPU count 0",
        ),
        (&["tune"][..], "--memory is required"),
        (&["tune", "--memory", "0GB"][..], "--memory"),
        (
            &["tune", "--memory", "8GB", "--db-type", "warehouse"][..],
            "allowed: web, oltp, dw, desktop, mixed",
        ),
        (
            &["tune", "--memory", "8GB", "--storage", "tape"][..],
            "allowed: ssd, hdd, san, nvme",
        ),
        (
            &["tune", "--memory", "8GB", "--os", "bsd"][..],
            "allowed: linux, windows, mac",
        ),
        (
            &["tune", "--memory", "8GB", "--data-size", "huge"][..],
            "--data-size",
        ),
    ] {
        let (status, _, stderr) = run(dir.path(), args);
        assert!(!status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// Runs `peregrine ARGS` on a blocking thread, so servers in this test's runtime keep serving.
async fn run_async(dir: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&dir, &args)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_runs_the_tutorials_config_with_overrides_and_writes_reports() {
    let server = peregrine_testkit::TinyServer::start(peregrine_testkit::Behavior::default()).await;
    let dir = temp_dir();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/bzt-config.yml");
    let url = format!(
        "execution.0.scenario.requests.0.url={}",
        server.url("/users/")
    );
    let (status, stdout, stderr) = run_async(
        dir.path(),
        &[
            "load",
            config,
            "-o",
            &url,
            "-o",
            "execution.0.ramp-up=1s",
            "-o",
            "execution.0.hold-for=1s",
            "-o",
            "execution.0.concurrency=4",
            "--report",
            "out",
            "--progress",
        ],
    )
    .await;
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("Test duration: 0:00:02\nSamples count: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("| Percentile, % | Resp. Time, s |") && stdout.contains("| api   | OK "),
        "{stdout}"
    );
    assert!(
        stderr.contains("[    1s/2s] users"),
        "a progress line per second: {stderr}"
    );
    for file in ["report.json", "timeline.csv", "junit.xml", "report.html"] {
        assert!(dir.path().join("out").join(file).is_file(), "{file}");
    }
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out/report.json")).unwrap_or_default(),
    )
    .unwrap_or(Value::Null);
    assert_eq!(report["overall"]["samples"], server.received());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_exit_codes_follow_taurus() {
    let server = peregrine_testkit::TinyServer::start(peregrine_testkit::Behavior {
        delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let dir = temp_dir();
    let url = server.url("/users/7");
    let (status, stdout, _) =
        run_async(dir.path(), &["load", &url, "-c", "2", "--iterations", "3"]).await;
    assert_eq!(status.code(), Some(0));
    assert!(
        stdout.contains("Samples count: 6, 0.00% failures"),
        "{stdout}"
    );

    let config = dir.path().join("criteria.yml");
    let yaml = format!(
        "execution:\n- concurrency: 2\n  hold-for: 30s\n  scenario:\n    requests: [{{url: '{url}', label: api}}]\nreporting:\n- module: passfail\n  criteria: ['avg-rt of api>5ms for 1s, stop as failed']\n"
    );
    std::fs::write(&config, yaml).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let (status, stdout, _) = run_async(dir.path(), &["load", "criteria.yml"]).await;
    assert_eq!(status.code(), Some(3), "{stdout}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        stdout.contains("Failed: avg-rt of api>5ms for 1 sec"),
        "{stdout}"
    );

    std::fs::write(
        dir.path().join("broken.yml"),
        "execution:\n  - concurrency: 1\n   hold-for: [\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (status, _, stderr) = run_async(dir.path(), &["load", "broken.yml"]).await;
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("broken.yml") && stderr.contains("line"),
        "{stderr}"
    );

    let (status, _, stderr) = run_async(dir.path(), &["load", &url, "--hold-for", "soon"]).await;
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("--hold-for") && stderr.contains("invalid duration"),
        "{stderr}"
    );
}

#[test]
fn demo_tells_the_tutorials_story_with_measurements_and_reports() {
    let dir = temp_dir();
    let (status, stdout, stderr) = run(
        dir.path(),
        &[
            "demo",
            "--ramp-up",
            "500ms",
            "--hold-for",
            "1s",
            "--dir",
            "out",
            "--capacity-for",
            "6s",
        ],
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    for step in [
        "[1/8] schema: table orguser in a new SQLite file",
        "[2/8] 20 users",
        "[3/8] load: GET /users/ at 100 users",
        "[5/8] capacity: the highest rate of GET /users/ within p99<100ms, errors<1% with 1 worker(s)",
        "[8/8] capacity: the highest rate of GET /users/ within p99<100ms, errors<1%",
    ] {
        assert!(stdout.contains(step), "{step}\n{stdout}");
    }
    assert!(stdout.contains("users workers   samples  errors       avg       p99  throughput  tutorial (Falcon + gunicorn)"), "{stdout}");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("users workers"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    let shape: Vec<(&str, String)> = rows.iter().map(|r| (r[0], r[1].to_owned())).collect();
    assert_eq!(
        shape,
        [
            ("100", "1".to_owned()),
            ("500", "1".to_owned()),
            ("100", cores.to_string()),
            ("500", cores.to_string())
        ],
        "{stdout}"
    );
    for row in &rows {
        assert!(
            row[2].parse::<u64>().is_ok_and(|n| n > 0),
            "samples: {row:?}"
        );
        assert_eq!(
            row[3], "0.00%",
            "no errors on the embedded default: {row:?}"
        );
    }
    assert!(
        stdout.contains("~40 % errors (1 gunicorn worker)"),
        "the tutorial's figures stand beside: {stdout}"
    );
    let capacities: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Capacity within p99<100ms, errors<1%"))
        .filter(|l| l.contains(" worker(s): Capacity") || l.contains(" worker(s): No capacity"))
        .collect();
    assert_eq!(capacities.len(), 2, "1 worker and all cores: {stdout}");
    for line in &capacities {
        // 6 s is too short to bracket the API: the answer is a lower bound or a capacity,
        // or, on a machine busy with other tests, that even the lowest step broke; each
        // names its figures.
        assert!(
            line.contains("Capacity: at least ")
                || line.contains(" req/s (p99<100ms, errors<1%): held at ")
                || line.contains("No capacity: even the lowest step, "),
            "{line}"
        );
    }
    assert!(
        stdout.contains("tutorial: ~1000 req/s (1 gunicorn worker"),
        "the tutorial's ~1000 req/s stands beside: {stdout}"
    );
    for users in [100, 500] {
        for workers in [1, cores] {
            let html = dir.path().join(format!(
                "out/report-{users}-users-{workers}-workers/report.html"
            ));
            assert!(html.is_file(), "{}", html.display());
            assert!(
                stdout.contains(
                    &html
                        .display()
                        .to_string()
                        .replace(&format!("{}/", dir.path().display()), "")
                ),
                "{stdout}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_on_postgres_uses_a_fresh_database_and_leaves_existing_rows_alone() {
    let url = PgCluster::shared().fresh_database().await;
    let client = peregrine_testkit::connect(&url).await;
    client
        .batch_execute("CREATE TABLE orguser (id SERIAL PRIMARY KEY, username VARCHAR(255) NOT NULL UNIQUE); INSERT INTO orguser (username) VALUES ('keep-me');")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = temp_dir();
    let (status, stdout, stderr) = run_async(
        dir.path(),
        &[
            "demo",
            "--database-url",
            &url,
            "--ramp-up",
            "200ms",
            "--hold-for",
            "500ms",
            "--dir",
            "out",
            "--capacity-for",
            "0s",
        ],
    )
    .await;
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("a fresh PostgreSQL database, postgres://postgres@127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("PgTune's recommendations for this host")
            && stdout.contains("\nshared_buffers = "),
        "{stdout}"
    );
    let rows = client
        .query("SELECT username FROM orguser", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 1, "the user's own rows are untouched");
    let demo_databases = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'peregrine_demo_%'",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        demo_databases.is_empty(),
        "the demo database is dropped at the end"
    );
}

#[test]
fn demo_interrupted_prints_the_partial_table_and_exits_2() {
    let dir = temp_dir();
    let mut child = Command::new(BINARY)
        .args([
            "demo",
            "--ramp-up",
            "1s",
            "--hold-for",
            "30s",
            "--dir",
            "out",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the first load run has started, as the demo announces it.
    let mut stdout_lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    for line in stdout_lines.by_ref() {
        let line = line.unwrap();
        stdout.push_str(&line);
        stdout.push('\n');
        if line.starts_with("[3/") {
            break;
        }
    }
    assert!(
        stdout.contains("[3/"),
        "the demo never started a load run: {stdout}"
    );
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(status.is_ok_and(|s| s.success()));
    let started = Instant::now();
    for line in stdout_lines {
        stdout.push_str(&line.unwrap());
        stdout.push('\n');
    }
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    let rows = stdout
        .lines()
        .skip_while(|l| !l.starts_with("users workers"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .count();
    assert_eq!(rows, 1, "one partial run: {stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
}

/// Several server threads share the address; every request is answered, on PostgreSQL,
/// and by default each thread holds one connection (no more than one backend per thread);
/// `/metrics` counts the queries of every thread's store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_several_worker_threads_answers_every_request() {
    let url = PgCluster::shared().fresh_database().await;
    let dir = temp_dir();
    let server = Served::start(
        dir.path(),
        &["--database-url", &url, "--seed", "5", "--workers", "3"],
    );
    let client = reqwest::Client::new();
    let requests = (0..300).map(|i| {
        let client = client.clone();
        let url = server.url(&format!("/users/{}", i % 5 + 1));
        tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) })
    });
    for request in requests {
        let status = request.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status.ok(), Some(200));
    }
    assert!(server.logs().contains("workers=3"), "{}", server.logs());
    // The store hub counts the queries of every worker's store: each read is one query.
    let metrics = metrics_text(&server).await;
    assert!(
        metric(&metrics, "peregrine_db_queries_total ") >= 300.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "peregrine_db_queries_in_flight "),
        0.0,
        "{metrics}"
    );
    // Migration and seeding used connections of their own, which close on their own time.
    let admin = peregrine_testkit::connect(&url).await;
    let database = url.rsplit('/').next().unwrap_or_default().to_string();
    let mut serving = i64::MAX;
    for _ in 0..50 {
        let row = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = $1 AND application_name = 'peregrine'",
                &[&database],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        serving = row.get(0);
        if (1..=3).contains(&serving) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!((1..=3).contains(&serving), "{serving} server connections");
}

/// Runs `peregrine tune ARGS --format json`, which must succeed: (the report, stderr).
fn tune_json(dir: &Path, args: &[&str]) -> (Value, String) {
    let args = [&["tune"][..], args, &["--format", "json"]].concat();
    let (status, stdout, stderr) = run(dir, &args);
    assert!(status.success(), "{args:?}: {stderr}");
    (
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")),
        stderr,
    )
}

#[test]
fn tune_detect_with_an_unreachable_database_uses_the_installed_version_and_says_so() {
    let dir = temp_dir();
    let url = format!("postgres://orguser:s3cret@127.0.0.1:{}/orgdb", free_port());
    let (report, stderr) = tune_json(dir.path(), &["--detect", "--database-url", &url]);
    let installed = peregrine_installed_major();
    assert_eq!(report["input"]["db_version"], installed, "{stderr}");
    assert!(
        stderr.contains("cannot ask the database at postgres://orguser:***@127.0.0.1:")
            && stderr.contains("using the version of the PostgreSQL installed here"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
    // Settings only PostgreSQL 18 knows would stop an older server from starting.
    let conf = report["conf_text"].as_str().unwrap();
    assert_eq!(conf.contains("io_method"), installed >= 18, "{conf}");
}

#[test]
fn tune_write_keeps_an_existing_file_unless_forced() {
    let dir = temp_dir();
    let path = dir.path().join("peregrine.conf");
    std::fs::write(&path, "# edited by hand\n").unwrap();
    let (status, _, stderr) = run(
        dir.path(),
        &["tune", "--memory", "8GB", "--write", "peregrine.conf"],
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("--write: peregrine.conf already exists; add --force to overwrite it"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "# edited by hand\n"
    );
    let (status, _, stderr) = run(
        dir.path(),
        &[
            "tune",
            "--memory",
            "8GB",
            "--write",
            "peregrine.conf",
            "--force",
        ],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("\nshared_buffers = 2GB\n")
    );
    let (status, _, stderr) = run(dir.path(), &["tune", "--memory", "8GB", "--force"]);
    assert!(!status.success());
    assert!(stderr.contains("--write"), "{stderr}");
}

#[test]
fn tune_memory_takes_pgtunes_forms_and_says_what_it_takes() {
    let dir = temp_dir();
    let conf = |memory: &str| {
        let (status, stdout, stderr) = run(dir.path(), &["tune", "--memory", memory]);
        assert!(status.success(), "{memory}: {stderr}");
        stdout
    };
    assert_eq!(conf("16G"), conf("16GB"));
    assert_eq!(conf("16g"), conf("16 GB"));
    let fraction = conf("1.5GB");
    assert!(
        fraction.contains("# Total Memory (RAM): 1536 MB\n"),
        "{fraction}"
    );
    assert!(
        fraction.contains("\nshared_buffers = 384MB\n"),
        "{fraction}"
    );
    for bad in ["1.3GB", "16GiB", "1.5MB", "1.5.0GB", ".5GB"] {
        let (status, _, stderr) = run(dir.path(), &["tune", "--memory", bad]);
        assert!(!status.success(), "{bad}");
        assert!(
            stderr.contains("--memory")
                && stderr.contains("a unit MB, GB or TB (or M, G, T; none means GB)")
                && stderr.contains("1.5GB is 1536 MB"),
            "{bad}: {stderr}"
        );
    }
}

#[test]
fn tune_json_warnings_are_one_sentence_each() {
    let dir = temp_dir();
    let (report, _) = tune_json(dir.path(), &["--memory", "1TB", "--db-version", "15"]);
    assert_eq!(
        report["warnings"],
        serde_json::json!([
            "this tool not being optimal for very high memory systems",
            "wal_compression = lz4 requires PostgreSQL to be compiled with --with-lz4"
        ])
    );
}

#[tokio::test]
async fn db_init_says_what_it_applied_and_a_second_start_logs_no_notice() {
    let dir = temp_dir();
    let url = PgCluster::shared().fresh_database().await;
    let args = ["db", "init", "--database-url", url.as_str()];
    let (status, _, first) = run_async(dir.path(), &args).await;
    assert!(status.success(), "{first}");
    assert!(
        first.contains("applied 1 migration; database schema is now at version 1"),
        "{first}"
    );
    let (status, _, second) = run_async(dir.path(), &args).await;
    assert!(status.success(), "{second}");
    assert!(
        second.contains("database schema is up to date; no migration to apply"),
        "{second}"
    );
    assert!(!second.contains("already exists"), "{second}");
    assert!(!second.contains("applied 1"), "{second}");
}

/// libpq's environment variables, cleared so that only the test's own apply.
const PG_ENV: [&str; 8] = [
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGCONNECT_TIMEOUT",
];

/// [`run`] with exactly `env` among libpq's variables.
fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
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

/// A database on the TLS cluster (owned by the password user) and the cluster's CA file.
async fn tls_database() -> (String, String) {
    let cluster = PgCluster::shared_tls();
    let name = cluster.fresh_database_name().await;
    (name, cluster.ca_file().display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_tls_with_verify_full_from_flags_uses_an_encrypted_connection() {
    use peregrine_testkit::{TLS_PASSWORD, TLS_USER};
    let cluster = PgCluster::shared_tls();
    let (db, ca) = tls_database().await;
    let url = format!(
        "postgresql://{TLS_USER}:{TLS_PASSWORD}@localhost:{}/{db}?application_name=peregrine-tls-e2e",
        cluster.port()
    );
    let dir = temp_dir();
    let server = Served::start(
        dir.path(),
        &[
            "--database-url",
            &url,
            "--db-sslmode",
            "verify-full",
            "--db-sslrootcert",
            &ca,
            "--seed",
            "3",
            "--workers",
            "1",
        ],
    );
    let (status, users) = get_json(&server.url("/users/")).await;
    assert_eq!(status, 200);
    assert_eq!(users.as_array().map(Vec::len), Some(3));
    let (status, _) = get_json(&server.url("/readyz")).await;
    assert_eq!(status, 200);
    let admin = cluster.admin().await;
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity JOIN pg_stat_ssl USING (pid) \
             WHERE application_name = 'peregrine-tls-e2e' AND ssl",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        row.get::<_, i64>(0) >= 1,
        "no TLS connection named by application_name"
    );
    let logs = server.logs();
    assert!(logs.contains("sslmode=verify-full"), "{logs}");
    assert!(!logs.contains(TLS_PASSWORD), "{logs}");
}

#[tokio::test]
async fn db_init_reads_the_url_forms_users_paste() {
    let cluster = PgCluster::shared_tls();
    let (db, ca) = tls_database().await;
    // A password full of URL delimiters, percent-encoded as libpq expects.
    let admin = cluster.admin().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE paste_{db} LOGIN PASSWORD 'p@ss:w/rd%20?'; ALTER DATABASE {db} OWNER TO paste_{db}"
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = cluster.port().to_string();
    let url = format!(
        "postgresql://paste_{db}:p%40ss%3Aw%2Frd%2520%3F@localhost:{port}/{db}?sslmode=verify-full&sslrootcert={ca}&connect_timeout=3&application_name=pasted"
    );
    let dir = temp_dir();

    // `options` reaches the server: in a read-only session, the first migration fails.
    let read_only = format!("{url}&options=-c%20default_transaction_read_only%3Don");
    let (status, _, stderr) = run_env(
        dir.path(),
        &["db", "init", "--database-url", &read_only],
        &[],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("read-only"), "{stderr}");

    let (status, _, stderr) = run_env(dir.path(), &["db", "init", "--database-url", &url], &[]);
    assert!(status.success(), "{stderr}");
    assert!(
        !stderr.contains("p@ss") && !stderr.contains("p%40ss"),
        "{stderr}"
    );

    // What the URL leaves out comes from libpq's environment variables.
    let (db, _) = tls_database().await;
    let (status, _, stderr) = run_env(
        dir.path(),
        &["db", "init", "--database-url", "postgres://"],
        &[
            ("PGHOST", "localhost"),
            ("PGPORT", &port),
            ("PGUSER", peregrine_testkit::TLS_USER),
            ("PGPASSWORD", peregrine_testkit::TLS_PASSWORD),
            ("PGDATABASE", &db),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", &ca),
        ],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "postgres://app:***@localhost:{port}/{db}?sslmode=verify-full"
        )),
        "{stderr}"
    );

    // libpq's keyword/value form, as some providers show it.
    let (db, _) = tls_database().await;
    let keywords = format!(
        "host=localhost port={port} dbname={db} user={} password='{}' sslmode=verify-full sslrootcert={ca}",
        peregrine_testkit::TLS_USER,
        peregrine_testkit::TLS_PASSWORD
    );
    let (status, _, stderr) = run_env(
        dir.path(),
        &["db", "init", "--database-url", &keywords],
        &[],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        !stderr.contains(peregrine_testkit::TLS_PASSWORD),
        "{stderr}"
    );

    // host= naming a Unix socket directory, as in libpq's documentation.
    let plain = PgCluster::shared();
    let socket_db = plain.fresh_database_name().await;
    let url = format!(
        "postgres://postgres@/{socket_db}?host={}&port={}",
        plain.socket_dir().display(),
        plain.port()
    );
    let (status, _, stderr) = run_env(dir.path(), &["db", "init", "--database-url", &url], &[]);
    assert!(status.success(), "{stderr}");
}

/// Each connection failure says what happened and what to do, at once when waiting cannot
/// help, and never shows the password.
#[tokio::test]
async fn connection_failures_name_the_cause_and_do_not_wait_when_waiting_cannot_help() {
    use peregrine_testkit::{TLS_PASSWORD, TLS_USER};
    let tls = PgCluster::shared_tls();
    let plain = PgCluster::shared();
    let (db, ca) = tls_database().await;
    let plain_db = plain.fresh_database_name().await;
    let (tls_port, plain_port) = (tls.port(), plain.port());
    let cases = [
        (
            format!("postgres://{TLS_USER}:wrong-pw-123@localhost:{tls_port}/{db}"),
            vec!["authentication failed", "check the user name and password"],
        ),
        (
            format!("postgres://{TLS_USER}:{TLS_PASSWORD}@localhost:{tls_port}/nodb_here"),
            vec![
                "database \"nodb_here\" does not exist",
                "createdb nodb_here",
            ],
        ),
        (
            format!(
                "postgres://{TLS_USER}:{TLS_PASSWORD}@localhost:{tls_port}/{db}?sslmode=disable"
            ),
            vec!["TLS required", "use sslmode=require or stronger"],
        ),
        (
            format!(
                "postgres://{TLS_USER}:{TLS_PASSWORD}@127.0.0.1:{tls_port}/{db}?sslmode=verify-full&sslrootcert={ca}"
            ),
            vec!["not valid for host 127.0.0.1", "or use sslmode=verify-ca"],
        ),
        (
            format!(
                "postgres://postgres:{TLS_PASSWORD}@127.0.0.1:{plain_port}/{plain_db}?sslmode=require"
            ),
            vec![
                "TLS required but the server at 127.0.0.1",
                "does not offer it",
                "sslmode=prefer",
            ],
        ),
        (
            format!("postgres://:{TLS_PASSWORD}@127.0.0.1:{plain_port}/{plain_db}"),
            vec!["names no user", "PGUSER"],
        ),
        (
            "peregrine.db".to_owned(),
            vec!["--database-url", "write sqlite://peregrine.db"],
        ),
    ];
    let dir = temp_dir();
    for (url, expected) in cases {
        let started = Instant::now();
        let (status, _, stderr) = run_env(
            dir.path(),
            &["serve", "--database-url", &url, "--db-wait", "60s"],
            &[],
        );
        assert_eq!(status.code(), Some(1), "{url}: {stderr}");
        // Far less than --db-wait, with room for a loaded machine (SCRAM's key derivation
        // is slow in a debug build).
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{url}: took {:?}",
            started.elapsed()
        );
        for part in expected {
            assert!(stderr.contains(part), "{url}: lacks {part:?}: {stderr}");
        }
        assert!(
            !stderr.contains("still failing") && !stderr.contains("waited"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("waiting") && !stderr.contains("not ready"),
            "{stderr}"
        );
        assert!(
            !stderr.contains(TLS_PASSWORD) && !stderr.contains("wrong-pw"),
            "{stderr}"
        );
    }
    let (status, _, stderr) = run_env(dir.path(), &["db", "init", "--db-sslmode", "require"], &[]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("apply to PostgreSQL only"), "{stderr}");
    assert!(!dir.path().join("peregrine.db").exists());
}

/// A host name with a label longer than DNS allows fails in the resolver itself, so this
/// sends no query off the machine.
#[test]
fn an_unresolvable_host_is_named_as_such() {
    let host = format!("{}.invalid", "x".repeat(70));
    let url = format!("postgres://app:hunter2@{host}:5432/app");
    let dir = temp_dir();
    let (status, _, stderr) = run_env(
        dir.path(),
        &["serve", "--database-url", &url, "--db-wait", "1s"],
        &[],
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("no such host") && stderr.contains(&host),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// The container image's HEALTHCHECK: `peregrine health` (the runtime image has no curl).
#[test]
fn health_exits_0_only_when_the_server_answers_2xx() {
    let dir = temp_dir();
    let server = Served::start(dir.path(), &[]);
    let (status, _, stderr) = run(dir.path(), &["health", "--url", &server.url("/healthz")]);
    assert!(status.success(), "{stderr}");
    let (status, _, stderr) = run(dir.path(), &["health", "--url", &server.url("/nope")]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("answered 404"), "{stderr}");
    let closed = format!("http://127.0.0.1:{}/healthz", free_port());
    let (status, _, stderr) = run(dir.path(), &["health", "--url", &closed]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("cannot GET"), "{stderr}");
    let (status, _, stderr) = run(dir.path(), &["health", "--url", "https://x/healthz"]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("--url"), "{stderr}");
}

/// A server that accepts the TCP connection and then says nothing is given up on after
/// connect_timeout, which covers the whole handshake, not only opening the socket.
#[test]
fn a_silent_server_is_given_up_on_after_connect_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = silent.local_addr().map(|a| a.port()).unwrap_or_default();
    let url = format!("postgres://app:hunter2@127.0.0.1:{port}/app?connect_timeout=1");
    let dir = temp_dir();
    let started = Instant::now();
    let (status, _, stderr) = run_env(
        dir.path(),
        &["db", "init", "--database-url", &url, "--db-wait", "1s"],
        &[],
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains(&format!("no answer from 127.0.0.1:{port} within 1s")),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    drop(silent);
}

/// The `schemathesis` program: $SCHEMATHESIS (as `.ci/run` sets it), else on PATH.
fn schemathesis() -> String {
    std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".to_owned())
}

/// schemathesis, with every check, finds no difference between the OpenAPI document and
/// what the server does, on both backends (a short run: a bounded number of examples).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failures_on_either_backend() {
    let program = schemathesis();
    let postgres = PgCluster::shared().fresh_database().await;
    for database in ["sqlite://st.db", postgres.as_str()] {
        let dir = temp_dir();
        let server = Served::start(
            dir.path(),
            &[
                "--database-url",
                database,
                "--api-token",
                "st-token",
                "--seed",
                "5",
            ],
        );
        let out = Command::new(&program)
            .args(["run", &server.url("/openapi.json"), "--checks", "all"])
            .args(["--max-examples", "40", "--seed", "1"])
            .args(["-H", "Authorization: Bearer st-token"])
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {program} (install it: pip install schemathesis; .ci/run does): {e}"
                )
            });
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schemathesis failed on {}:\n{report}\n{}",
            database.split(':').next().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `peregrine serve` on one worker, with `extra` flags, under an open-file limit of 256.
fn serve_with_256_open_files(dir: &Path, extra: &str) -> Served {
    let mut command = Command::new("sh");
    command.args([
        "-c",
        &format!("ulimit -n 256 && exec {BINARY} serve --bind 127.0.0.1:0 --workers 1 {extra}"),
    ]);
    Served::spawn(command, dir, "info")
}

/// A flood of idle connections past the open-file limit does not lock clients out: the
/// connection limit stays under the limit and idle connections are shed for new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_past_the_open_file_limit_does_not_lock_clients_out() {
    let dir = temp_dir();
    let server = serve_with_256_open_files(dir.path(), "");
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut flood = Vec::new();
    for _ in 0..400 {
        match tokio::net::TcpStream::connect(&address).await {
            Ok(stream) => flood.push(stream),
            Err(err) => panic!("the flood could not connect: {err}"),
        }
    }
    let started = Instant::now();
    let probe = reqwest::Client::new()
        .get(server.url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        server.logs().contains("lowering it"),
        "the default limit is above 256 open files: {}",
        server.logs()
    );
}

/// A flood of connections on the `--metrics-bind` listener takes only a few descriptors:
/// the API's listener still has the ones its connection limit counts on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_on_the_metrics_listener_does_not_lock_api_clients_out() {
    let dir = temp_dir();
    let server = serve_with_256_open_files(dir.path(), "--metrics-bind 127.0.0.1:0");
    let logs = server.logs();
    let metrics = logs
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no metrics address in the logs: {logs}"))
        .to_owned();
    // More than the open-file limit leaves, fewer than that plus the listener's queue.
    let mut flood = Vec::new();
    for _ in 0..300 {
        let connect = tokio::net::TcpStream::connect(&metrics);
        match tokio::time::timeout(Duration::from_secs(2), connect).await {
            Ok(Ok(stream)) => flood.push(stream),
            Ok(Err(err)) => panic!("the flood could not connect: {err}"),
            Err(_) => panic!("the flood's connection {} was not taken", flood.len()),
        }
    }
    // Not a wait for a condition: time for the server to take the whole flood off the
    // kernel's queue (that is what used to use up its descriptors) before the probe.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probe = reqwest::Client::new()
        .get(server.url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        probe.as_ref().is_ok_and(|r| r.status() == 200),
        "{probe:?}\n{}",
        server.logs()
    );
}

/// Resident memory of process `pid`, in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"))
}

/// A page of 1,000 users from `server`, read by a client that reads.
async fn full_page(server: &Served) -> usize {
    let response = reqwest::Client::new()
        .get(server.url("/users/?limit=1000"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page: Vec<Value> = response.json().await.unwrap();
    page.len()
}

/// The value of the metric line starting with `name` (labels included) in `metrics`.
fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics_text(server: &Served) -> String {
    reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Clients that pipeline large pages on a small receive buffer and never read cost the
/// server a bounded amount of memory each, and the process at most --max-unsent-bytes
/// besides (the connections that have not read for longest are closed past it): the
/// issue's flood took ~130 KiB per connection and kept most of it after. A client that
/// reads is served meanwhile, and the memory goes once the flood does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_hold_bounded_memory_and_readers_are_served() {
    const FLOOD: u64 = 300;
    const PER_CONNECTION_KIB: u64 = 24;
    const UNSENT_MIB: u64 = 4;
    let dir = temp_dir();
    let mut command = Command::new(BINARY);
    command
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--seed",
            "1000",
            "--workers",
            "2",
        ])
        .args(["--max-unsent-bytes", &(UNSENT_MIB << 20).to_string()])
        // mimalloc returns freed memory to the system at once, not at the thread's next
        // use of the allocator (an idle worker would keep it): see docs/serve.md.
        .env("MIMALLOC_PURGE_DELAY", "0");
    let server = Served::spawn(command, dir.path(), "info");
    for _ in 0..20 {
        assert_eq!(full_page(&server).await, 1000);
    }
    let pid = server.child.id();
    let before = rss_kib(pid);
    let address: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let pipelined = "GET /users/?limit=1000 HTTP/1.1\r\nHost: a\r\n\r\n".repeat(40);
    let mut flood = Vec::new();
    let mut peak = before;
    for _ in 0..FLOOD {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(address).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, pipelined.as_bytes())
            .await
            .unwrap();
        flood.push(stream);
        peak = peak.max(rss_kib(pid));
    }
    // Until the server has answered all it can (every socket full): a reader is served
    // meanwhile.
    assert_eq!(full_page(&server).await, 1000);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut answered, mut still) = (-1.0, 0);
    while still < 3 && Instant::now() < deadline {
        peak = peak.max(rss_kib(pid));
        let now = metric(
            &metrics_text(&server).await,
            "peregrine_http_requests_total{route=\"/users\"",
        );
        still = if now == answered { still + 1 } else { 0 };
        answered = now;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(full_page(&server).await, 1000);
    let growth = peak.saturating_sub(before);
    let bound = (UNSENT_MIB << 10) + FLOOD * PER_CONNECTION_KIB;
    eprintln!(
        "RSS {before} KiB before, {peak} KiB at most during the flood of {FLOOD}: {} KiB per connection",
        growth / FLOOD
    );
    assert!(
        growth <= bound,
        "RSS grew by {growth} KiB for {FLOOD} connections that never read (bound {bound} KiB)"
    );
    let open = metric(
        &metrics_text(&server).await,
        "peregrine_http_connections_open",
    );
    assert!(
        open < FLOOD as f64,
        "{open} connections open: none was closed to keep the unsent bytes within the limit"
    );
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = rss_kib(pid);
    while after > before + (UNSENT_MIB << 10) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(full_page(&server).await, 1000);
        after = rss_kib(pid);
    }
    eprintln!("RSS {after} KiB once the flood is gone");
    assert!(
        after <= before + (UNSENT_MIB << 10),
        "RSS {after} KiB after the flood left, {before} KiB before it"
    );
}

/// A private PostgreSQL with a database `name`, and its URL.
async fn own_cluster(name: &str) -> (PgCluster, String) {
    let cluster = PgCluster::start().unwrap();
    let admin = peregrine_testkit::connect(&cluster.url("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = cluster.url(name);
    (cluster, url)
}

/// During a database outage every failed request gets its 503, but the log warns once and
/// then counts (one line per interval, and the rest at the shutdown) instead of one WARN per
/// request; the access log keeps each request with its `db_error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_warns_once_and_counts_the_repeats() {
    const N: u64 = 200;
    let (cluster, url) = own_cluster("outage").await;
    let dir = temp_dir();
    let args = ["--database-url", &url, "--seed", "3", "--workers", "2"];
    let mut server = Served::start(dir.path(), &[&args[..], &["--access-log"]].concat());
    assert_eq!(get_json(&server.url("/users/1")).await.0, 200);
    cluster.stop().unwrap();
    let client = reqwest::Client::new();
    for _ in 0..N {
        let response = client.get(server.url("/users/1")).send().await.unwrap();
        assert_eq!(response.status(), 503);
    }
    server.signal("TERM");
    server.wait(Duration::from_secs(20));
    let logs = server.logs();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("WARN"))
        .filter(|line| {
            line.contains("database unavailable error=")
                || line.contains("database unavailable: ") && line.contains("repeats=")
        })
        .collect();
    let counted: u64 = warnings
        .iter()
        .filter_map(|line| {
            line.split("repeats=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    let full = warnings.iter().filter(|l| !l.contains("repeats=")).count() as u64;
    assert!(
        warnings.len() <= 4 && full >= 1,
        "{} warnings for {N} failed requests:\n{logs}",
        warnings.len()
    );
    assert_eq!(full + counted, N, "{logs}");
    let failed = logs
        .lines()
        .filter(|line| {
            line.contains("status=503")
                && line.contains("db_error=")
                && line.contains("unavailable")
        })
        .count();
    assert_eq!(failed as u64, N, "{logs}");
}

/// After an outage `/readyz` turns 200 once and stays so: it waits until no check has
/// failed on any worker for a second (each worker's connection comes back on its own,
/// and without the wait probes saw 200, 503, 503, 200 within 300 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_does_not_flap_after_the_database_recovers() {
    let (cluster, url) = own_cluster("flaps").await;
    let dir = temp_dir();
    let server = Served::start(dir.path(), &["--database-url", &url, "--workers", "2"]);
    // A connection per probe: the kernel spreads them over the workers' listeners.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let probe = async || {
        let response = client.get(server.url("/readyz")).send().await;
        response.map_or(0, |r| r.status().as_u16())
    };
    assert_eq!(probe().await, 200);
    cluster.stop().unwrap();
    for _ in 0..20 {
        assert_eq!(probe().await, 503);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.start_again().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut before = Vec::new();
    while before.last() != Some(&200) {
        assert!(Instant::now() < deadline, "never ready again: {before:?}");
        before.push(probe().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut after = Vec::new();
    for _ in 0..60 {
        after.push(probe().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        after.iter().all(|&status| status == 200),
        "/readyz flapped once ready: {after:?} (before: {before:?})"
    );
}

/// Sends `count` requests at once to `server`: a third creates users, the others read one
/// user or a page. Returns the statuses.
async fn mixed_requests(server: &Served, token: &str, count: usize) -> Vec<u16> {
    let client = reqwest::Client::new();
    let requests = (0..count).map(|i| {
        let request = match i % 3 {
            0 => client
                .post(server.url("/users"))
                .bearer_auth(token)
                .json(&serde_json::json!({ "username": format!("mixed{i}") })),
            1 => client.get(server.url(&format!("/users/{}", i % 20 + 1))),
            _ => client.get(server.url("/users/?limit=50")),
        };
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
    });
    let mut statuses = Vec::new();
    for request in requests.collect::<Vec<_>>() {
        let status = request.await.unwrap_or_else(|e| panic!("{e}"));
        statuses.push(status.unwrap_or_else(|e| panic!("{e}")));
    }
    statuses
}

#[tokio::test]
async fn serve_behind_pgbouncer_in_transaction_mode_answers_every_request() {
    let cluster = PgCluster::shared();
    let database = cluster.fresh_database_name().await;
    // Fewer server connections than the server opens: statements meet other sessions.
    let bouncer =
        peregrine_testkit::PgBouncer::start(cluster, 2, "").unwrap_or_else(|e| panic!("{e}"));
    let dir = temp_dir();
    let url = bouncer.url(&database);
    let args = ["--database-url", &url, "--seed", "20", "--workers", "2"];
    let server = Served::start(
        dir.path(),
        &[&args[..], &["--api-token", "b0uncer"]].concat(),
    );
    let statuses = mixed_requests(&server, "b0uncer", 300).await;
    let failed: Vec<_> = statuses
        .iter()
        .filter(|s| !matches!(s, 200 | 201))
        .collect();
    assert!(failed.is_empty(), "{failed:?}\n{}", server.logs());
    let logs = server.logs();
    assert!(logs.contains("unnamed"), "{logs}");
    assert!(!logs.contains("prepared statement"), "{logs}");
}

/// A PgBouncer the detection cannot see (a Unix socket under PostgreSQL's port number,
/// `options` ignored): `auto` starts with named statements, meets the first lost one,
/// switches to unnamed and retries; no request fails and one WARN says what to set.
#[tokio::test]
async fn serve_behind_an_unseen_pgbouncer_switches_to_unnamed_and_warns_once() {
    let cluster = PgCluster::shared();
    let database = cluster.fresh_database_name().await;
    let bouncer = peregrine_testkit::PgBouncer::start_on_socket(
        cluster,
        2,
        // Round robin (not PgBouncer's default LIFO) hands consecutive transactions to
        // different server connections, so that a named statement is lost every run, not
        // only when the load happens to spread them.
        "ignore_startup_parameters = extra_float_digits, options\nserver_round_robin = 1",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Both server connections open before the server starts: round robin then alternates
    // between them even when the machine is too busy for the requests to overlap.
    bouncer.open_server_connections(&database, 2).await;
    let dir = temp_dir();
    let url = bouncer.url(&database);
    let args = ["--database-url", &url, "--seed", "20", "--workers", "2"];
    let server = Served::start(
        dir.path(),
        &[&args[..], &["--api-token", "s0cket"]].concat(),
    );
    let statuses = mixed_requests(&server, "s0cket", 300).await;
    let failed: Vec<_> = statuses
        .iter()
        .filter(|s| !matches!(s, 200 | 201))
        .collect();
    assert!(failed.is_empty(), "{failed:?}\n{}", server.logs());
    let logs = server.wait_for_log("lost a named prepared statement");
    let warnings = logs
        .lines()
        .filter(|line| line.contains("lost a named prepared statement"))
        .collect::<Vec<_>>();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("WARN"), "{logs}");
    assert!(warnings[0].contains("--db-statements unnamed"), "{logs}");
}

#[tokio::test]
async fn serve_reads_from_a_replica_and_from_the_primary_once_it_stops() {
    let primary = PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let database = primary.fresh_database_name().await;
    let dir = temp_dir();
    let (status, _, stderr) = run(
        dir.path(),
        &["db", "init", "--database-url", &primary.url(&database)],
    );
    assert!(status.success(), "{stderr}");
    let replica = primary.start_replica().unwrap_or_else(|e| panic!("{e}"));
    let server = Served::start(
        dir.path(),
        &[
            "--database-url",
            &primary.url(&database),
            "--database-read-url",
            &replica.url(&database),
            "--api-token",
            "r3plica",
        ],
    );
    let client = reqwest::Client::new();
    let create = async |name: &str| -> String {
        let response = client
            .post(server.url("/users"))
            .bearer_auth("r3plica")
            .json(&serde_json::json!({ "username": name }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status().as_u16(), 201);
        let user: Value = response.json().await.unwrap_or_else(|e| panic!("{e}"));
        server.url(&format!("/users/{}", user["id"]))
    };
    // A write on the primary becomes visible to reads.
    let first = create("first").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_json(&first).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the replica never showed the write"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // With the replica's replay paused, reads miss a new user: the replica serves them.
    let replica_admin = peregrine_testkit::connect(&replica.url("postgres")).await;
    replica_admin
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = create("second").await;
    assert_eq!(get_json(&second).await.0, 404);
    // The replica stops: the primary answers every read.
    replica.stop().unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..20 {
        assert_eq!(get_json(&second).await.0, 200, "{}", server.logs());
        let (status, users) = get_json(&server.url("/users/")).await;
        assert_eq!((status, users.as_array().map(Vec::len)), (200, Some(2)));
    }
}

#[tokio::test]
async fn access_log_is_off_by_default_and_one_json_line_per_request_with_the_flag() {
    let dir = temp_dir();
    let server = Served::start(
        dir.path(),
        &["--seed", "3", "--access-log", "--log-format", "json"],
    );
    let response = reqwest::Client::new()
        .get(server.url("/users/2?private=query-text"))
        .header("x-request-id", "trace-77")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "trace-77");
    let logs = server.wait_for_log("trace-77");
    let lines: Vec<Value> = logs
        .lines()
        .filter(|l| l.contains("trace-77"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{logs}");
    let line = &lines[0];
    assert_eq!(line["message"], "answered", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["route"], "/users/{id}", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert!(
        line["duration_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{line}"
    );
    assert_eq!(line["span"]["request_id"], "trace-77", "{line}");
    assert!(!logs.contains("query-text"), "{logs}");
    // A plain read on a new connection (the connection front's, not hyper's): the same line.
    let plain = reqwest::Client::new()
        .get(server.url("/users/3"))
        .header("x-request-id", "trace-78")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    let logs = server.wait_for_log("trace-78");
    let line: Value = logs
        .lines()
        .find(|l| l.contains("trace-78"))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap_or_default();
    assert_eq!(line["route"], "/users/{id}", "{line}");
    assert_eq!(line["span"]["request_id"], "trace-78", "{line}");
    assert_eq!(line["spans"][0]["name"], "request", "{line}");

    let mut quiet = Served::start(dir.path(), &[]);
    let (status, _) = get_json(&quiet.url("/users/1")).await;
    assert_eq!(status, 200);
    quiet.signal("TERM");
    assert!(quiet.wait(Duration::from_secs(10)).success());
    let logs = quiet.logs();
    assert!(!logs.contains("answered"), "{logs}");
}
