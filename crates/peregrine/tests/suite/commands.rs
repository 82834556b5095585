//! What every subcommand shares (usage errors exit 1), `load` on the tutorial's config and its
//! exit codes, `health`, and schemathesis against the OpenAPI document on both backends.
#![allow(
    clippy::unwrap_used,
    reason = "helpers of a test binary: a failed step should fail the test"
)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Served, free_port, run, run_async, run_env, temp_dir};
use peregrine_testkit::PgCluster;
use serde_json::Value;

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
