//! How `peregrine load` ends against targets that never answer: on time after its schedule
//! (plus the graceful stop), within 2 s of SIGINT or SIGTERM, and always with its report
//! written, even when stdout is closed. Real binary, real signals, real sockets on 127.0.0.1.

use crate::harness::BINARY;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A server on 127.0.0.1 that accepts every connection and never answers (nor closes it).
/// Its thread lives as long as the test process.
fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("address: {e}"))
        .port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => held.push(stream),
                Err(_) => break,
            }
        }
    });
    format!("http://127.0.0.1:{port}/")
}

fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(BINARY)
        .arg("load")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BINARY}: {e}"))
}

/// Runs `peregrine load ARGS` in `dir` to its end: its output and how long it took.
fn run(dir: &Path, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = spawn(dir, args)
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait: {e}"));
    (out, started.elapsed())
}

fn report_json(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("r/report.json"))
        .unwrap_or_else(|e| panic!("no r/report.json: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("report.json: {e}"))
}

/// The issue's case: 4 users, a 10 s hold and the default 30 s timeout against a target that
/// never answers; the signal 1 s in. Before the fix the run waited out the timeout (29 s).
#[test]
fn a_signal_ends_a_run_against_a_silent_target_within_2_s_with_its_report() {
    let url = silent_server();
    for signal in ["-INT", "-TERM"] {
        let dir = tempfile::tempdir().unwrap();
        let child = spawn(
            dir.path(),
            &[&url, "-c", "4", "--hold-for", "10s", "--report", "r"],
        );
        std::thread::sleep(Duration::from_secs(1));
        let signalled = Instant::now();
        let killed = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        assert!(killed.is_ok_and(|s| s.success()), "{signal}");
        let out = child.wait_with_output().unwrap();
        let took = signalled.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "{signal}: exited {took:?} after it"
        );
        assert_eq!(out.status.code(), Some(2), "{signal}");
        let report = report_json(dir.path());
        assert_eq!(report["ending"], "interrupted", "{signal}");
        // The 4 requests waiting on the silent target were given up, and say so.
        assert_eq!(report["cancelled_in_flight"], 4, "{signal}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("4 requests still in flight"), "{stderr}");
    }
}

/// The open model sends no backlog after its schedule: at 1000/s for 2 s with a 1 s
/// timeout, the run ends by 2 s + 1 s (before the fix it ran for a minute).
#[test]
fn the_open_model_stops_at_its_schedule_against_a_silent_target() {
    let url = silent_server();
    let dir = tempfile::tempdir().unwrap();
    let (out, took) = run(
        dir.path(),
        &[
            &url,
            "--rate",
            "1000",
            "-c",
            "50",
            "--hold-for",
            "2s",
            "--timeout",
            "1s",
            "--report",
            "r",
        ],
    );
    // Schedule plus one timeout, plus start-up and report writing on a loaded machine.
    assert!(took < Duration::from_millis(4500), "took {took:?}");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = report_json(dir.path());
    let samples = report["overall"]["samples"].as_u64().unwrap_or(0);
    let failures = report["overall"]["failures"].as_u64().unwrap_or(0);
    assert!(samples > 0 && samples == failures, "{samples} {failures}");
    assert_eq!(report["rate"]["below_target"], true);
}

/// Closed model: requests in flight when the schedule ends get the graceful stop (by
/// default the request timeout), then are cancelled unmeasured and counted.
#[test]
fn a_closed_model_run_ends_within_its_graceful_stop() {
    let url = silent_server();
    let dir = tempfile::tempdir().unwrap();
    let (out, took) = run(
        dir.path(),
        &[
            &url,
            "-c",
            "2",
            "--hold-for",
            "1s",
            "--graceful-stop",
            "500ms",
            "--report",
            "r",
        ],
    );
    // 1 s + 0.5 s, not the 30 s default timeout.
    assert!(took < Duration::from_millis(3500), "took {took:?}");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = report_json(dir.path());
    assert_eq!(report["cancelled_in_flight"], 2);
    assert_eq!(report["overall"]["samples"], 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Cancelled in flight at the stop (not measured): 2"),
        "{stdout}"
    );
    // Without --graceful-stop the in-flight requests run to their timeout and are measured.
    let dir = tempfile::tempdir().unwrap();
    let (out, took) = run(
        dir.path(),
        &[
            &url,
            "-c",
            "2",
            "--hold-for",
            "1s",
            "--timeout",
            "1500ms",
            "--report",
            "r",
        ],
    );
    assert!(took < Duration::from_millis(4000), "took {took:?}");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = report_json(dir.path());
    assert_eq!(report["cancelled_in_flight"], 0);
    assert_eq!(report["overall"]["samples"], 2);
    assert_eq!(
        report["errors"][0]["kind"], "timeout",
        "{}",
        report["errors"]
    );
}

/// `peregrine load URL --report r | head -0`: stdout is closed before the stats are
/// printed; the run must still write its report and exit with its own code, not panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_loses_nothing_but_the_printed_stats() {
    let server = peregrine_testkit::TinyServer::start(peregrine_testkit::Behavior::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn(
        dir.path(),
        &[
            &server.url("/"),
            "-c",
            "2",
            "--hold-for",
            "1s",
            "--report",
            "r",
        ],
    );
    // Close the reading end at once, as `head -0` does.
    drop(child.stdout.take());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let report = report_json(dir.path());
    assert!(report["overall"]["samples"].as_u64().unwrap_or(0) > 0);
    assert!(dir.path().join("r/report.html").is_file());
}
