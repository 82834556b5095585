//! `peregrine serve` on a PostgreSQL that fails or sits behind something: outages warned
//! once, readiness that does not flap, PgBouncer in transaction mode, read replicas.
#![allow(
    clippy::unwrap_used,
    reason = "helpers of a test binary: a failed step should fail the test"
)]

use std::time::{Duration, Instant};

use crate::harness::{Served, get_json, run, temp_dir};
use peregrine_testkit::PgCluster;
use serde_json::Value;

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
