//! The scale-out topology of docs/scaling.md, on 127.0.0.1, through failures (what
//! `bench/topology.sh` shows at length, kept short enough for CI):
//!
//!   HAProxy (health-checking `/readyz`) -> 3 x `peregrine serve`
//!     writes and readiness -> PgBouncer (transaction mode) -> PostgreSQL primary
//!     reads                -> a streaming replica (`--database-read-url`), else the primary
//!
//! Under a steady `peregrine load` at a fixed rate through HAProxy: one instance is
//! SIGTERMed and started again, the replica is stopped, the primary is restarted. Each step
//! waits on a condition (an exit, a health check, an answer), not on a fixed sleep. The
//! load's per-second report must show failures only while the primary was away, all of
//! them 503, and the instances must recover without being restarted.
#![allow(
    clippy::unwrap_used,
    reason = "helpers of a test binary: a failed step should fail the test"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::BINARY;
use peregrine_testkit::{HaProxy, PgBouncer, PgCluster, free_port};
use serde_json::Value;

/// Requests per second of the steady load.
const RATE: u32 = 40;
/// HAProxy's health-check interval.
const CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// Longest wait for any one condition (a loaded 2-core CI machine is slow, not stuck).
const WAIT: Duration = Duration::from_secs(30);

/// One `peregrine serve` instance of the topology.
struct Instance {
    port: u16,
    child: Child,
    log: PathBuf,
}

impl Instance {
    /// Starts instance `n` on `port` through `database` (PgBouncer), reading from `replica`,
    /// and waits until `/readyz` answers 200.
    fn start(dir: &Path, n: usize, port: u16, database: &str, replica: &str) -> Self {
        let log = dir.join(format!("api{n}.log"));
        let child = Command::new(BINARY)
            .args(["serve", "--workers", "1", "--bind"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--database-url", database, "--database-read-url", replica])
            .args(["--db-timeout", "2s", "--shutdown-grace", "1s"])
            .args(["--shutdown-timeout", "5s"])
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BINARY}: {e}"));
        let mut instance = Self { port, child, log };
        instance.wait_until_ready();
        instance
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        while status(self.port, "/readyz") != Some(200) {
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!(
                    "instance on :{} exited ({exit}):\n{}",
                    self.port,
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "instance on :{} is not ready:\n{}",
                self.port,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for the exit: it must be clean (nothing dropped).
    fn terminate(&mut self) {
        signal(&self.child, "TERM");
        let exit = wait_for_exit(&mut self.child);
        assert!(
            exit.success(),
            "exit {exit} after SIGTERM:\n{}",
            self.logs()
        );
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_topology_loses_no_request_to_a_restart_or_a_lost_replica_and_answers_503_while_the_primary_is_away()
 {
    let dir = tempfile::tempdir().unwrap();
    let primary = PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let replica = primary.start_replica().unwrap_or_else(|e| panic!("{e}"));
    // After a failed server login PgBouncer turns clients away for server_login_retry
    // (15 s by default): longer than the primary's restart.
    let bouncer =
        PgBouncer::start(&primary, 10, "server_login_retry = 1").unwrap_or_else(|e| panic!("{e}"));
    cli(&["db", "init", "--database-url", &primary.url("postgres")]);
    cli(&[
        "db",
        "seed",
        "--users",
        "20",
        "--database-url",
        &primary.url("postgres"),
    ]);

    let database = bouncer.url("postgres");
    let read = replica.url("postgres");
    let ports: Vec<u16> = (0..3).map(|_| free_port().unwrap()).collect();
    let mut instances: Vec<Instance> = ports
        .iter()
        .enumerate()
        .map(|(n, port)| Instance::start(dir.path(), n, *port, &database, &read))
        .collect();
    let haproxy =
        HaProxy::start(&ports, "/readyz", CHECK_INTERVAL).unwrap_or_else(|e| panic!("{e}"));
    haproxy
        .wait_until_up(3, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    // The replica has the seeded rows once a read through the whole chain finds one.
    wait_until(
        || status(haproxy.port(), "/users/7") == Some(200),
        "GET /users/7",
    );

    let report = dir.path().join("report");
    let mut load = Command::new(BINARY)
        .arg("load")
        .arg(haproxy.url("/users/7"))
        .args([
            "--rate",
            &RATE.to_string(),
            "-c",
            "16",
            "--hold-for",
            "300s",
        ])
        .args(["--timeout", "5s", "--report"])
        .arg(&report)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("load.log")).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let traffic = Traffic(&haproxy);
    traffic.wait_for(2 * RATE);

    // SIGTERM one instance (readiness fails, HAProxy stops sending, it drains) and start
    // it again: no request may fail.
    instances[0].terminate();
    traffic.wait_for(RATE);
    instances[0] = Instance::start(dir.path(), 0, ports[0], &database, &read);
    haproxy
        .wait_until_up(3, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    traffic.wait_for(RATE);

    // Stop the replica: reads move to the primary, no request may fail.
    replica.stop().unwrap_or_else(|e| panic!("{e}"));
    traffic.wait_for(2 * RATE);

    // Restart the primary: failures allowed from here until it answers again.
    let outage_began = started.elapsed();
    primary.stop().unwrap_or_else(|e| panic!("{e}"));
    primary.start_again().unwrap_or_else(|e| panic!("{e}"));
    wait_until(
        || status(haproxy.port(), "/users/7") == Some(200),
        "recovery",
    );
    let recovered = started.elapsed();
    // Every instance comes back on its own, none restarted.
    haproxy
        .wait_until_up(3, WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    for instance in &mut instances {
        assert!(
            instance.child.try_wait().unwrap().is_none(),
            "an instance exited"
        );
    }
    traffic.wait_for(3 * RATE);

    signal(&load, "INT");
    wait_for_exit(&mut load);
    let text = std::fs::read_to_string(report.join("report.json"))
        .unwrap_or_else(|e| panic!("no report ({e}):\n{}", read_log(dir.path(), "load.log")));
    let seconds = per_second(&serde_json::from_str(&text).unwrap());
    check(&seconds, outage_began, recovered);
}

/// One second of the load's timeline: requests, failures and answers by status.
struct Second {
    at: u64,
    requests: u64,
    failures: u64,
    codes: Vec<(String, u64)>,
}

/// Failures only inside the outage (widened by a second each side: the load's clock starts
/// a little after the test's, and a request sent just before the recovery may be answered
/// after it), all of them 503; and the load was steady before the outage.
fn check(seconds: &[Second], outage_began: Duration, recovered: Duration) {
    let window = outage_began.as_secs().saturating_sub(1)..=recovered.as_secs() + 1;
    let table: String = seconds
        .iter()
        .map(|s| {
            format!(
                "{:>3} {:>4} {:>4} {:?}\n",
                s.at, s.requests, s.failures, s.codes
            )
        })
        .collect();
    let context =
        format!("outage {outage_began:?}..{recovered:?}; second, requests, failures:\n{table}");
    for second in seconds {
        assert!(
            second.failures == 0 || window.contains(&second.at),
            "a request failed outside the outage, in second {}; {context}",
            second.at
        );
        for (code, count) in &second.codes {
            assert!(
                code == "200" || code == "503",
                "{count} answered {code} in second {}; {context}",
                second.at
            );
        }
        let answered_503 = second
            .codes
            .iter()
            .find(|(code, _)| code == "503")
            .map_or(0, |(_, count)| *count);
        assert_eq!(
            second.failures, answered_503,
            "every failure must be a 503 in second {}; {context}",
            second.at
        );
    }
    let before = seconds
        .iter()
        .filter(|s| s.at >= 1 && s.at + 1 < outage_began.as_secs());
    let mut steady = 0;
    for second in before {
        assert!(
            second.requests >= u64::from(RATE / 4),
            "the load was not steady in second {}; {context}",
            second.at
        );
        steady += 1;
    }
    assert!(steady >= 3, "too short a run before the outage; {context}");
}

/// The timeline of a report.json.
fn per_second(report: &Value) -> Vec<Second> {
    let timeline = report["timeline"].as_array().cloned().unwrap_or_default();
    assert!(!timeline.is_empty(), "the report has no timeline: {report}");
    timeline
        .iter()
        .map(|second| {
            let overall = &second["overall"];
            let codes = overall["codes"].as_object().cloned().unwrap_or_default();
            Second {
                at: second["second"].as_u64().unwrap_or(0),
                requests: overall["hits"].as_u64().unwrap_or(0),
                failures: overall["failures"].as_u64().unwrap_or(0),
                codes: codes
                    .into_iter()
                    .map(|(code, n)| (code, n.as_u64().unwrap_or(0)))
                    .collect(),
            }
        })
        .collect()
}

/// Requests HAProxy has taken: waiting for a number of them is waiting for the load to
/// run on through a step, however slow the machine.
struct Traffic<'a>(&'a HaProxy);

impl Traffic<'_> {
    fn wait_for(&self, more: u32) {
        let from = self.0.requests().unwrap_or_else(|e| panic!("{e}"));
        wait_until(
            || self.0.requests().is_ok_and(|n| n >= from + u64::from(more)),
            "load through HAProxy",
        );
    }
}

/// Polls `condition` until it holds; fails the test after [`WAIT`].
fn wait_until(condition: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The status of `GET path` on 127.0.0.1:`port`, or `None` without an answer in 2 s.
fn status(port: u16, path: &str) -> Option<u16> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Runs `peregrine ARGS` to completion; it must succeed.
fn cli(args: &[&str]) {
    let out = Command::new(BINARY)
        .args(args)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "peregrine {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -{name} failed");
}

/// Waits, for at most [`WAIT`], until `child` exits.
fn wait_for_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            return exit;
        }
        assert!(Instant::now() < deadline, "a process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}
