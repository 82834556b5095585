//! How `peregrine serve` stops: SIGTERM fails readiness at once, serves through the grace
//! period, finishes requests in flight, and says in its exit code what it dropped.
#![allow(
    clippy::unwrap_used,
    reason = "helpers of a test binary: a failed step should fail the test"
)]

use std::time::{Duration, Instant};

use crate::harness::{Served, get_json_owned, temp_dir};
use peregrine_testkit::PgCluster;

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
