//! `peregrine serve` started as a user starts it: the Quickstart, its flags and settings
//! checked by name, secrets kept out of logs, a read-only database, worker threads, logs.
#![allow(
    clippy::unwrap_used,
    reason = "helpers of a test binary: a failed step should fail the test"
)]

use std::time::{Duration, Instant};

use crate::harness::{Served, free_port, get_json, metric, metrics_text, run, run_env, temp_dir};
use peregrine_testkit::PgCluster;
use serde_json::Value;

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
