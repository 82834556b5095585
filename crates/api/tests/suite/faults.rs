//! The server under faults and hostile clients: a hung or locked database, a held SQLite
//! write lock, connection floods, huge or slow requests, malformed framing. Real servers on
//! 127.0.0.1, a real private PostgreSQL and real SQLite files. Over 600 lines: each fault is
//! made real (a stopped cluster, a held lock, a flood of sockets), which takes setting up.
#![allow(
    clippy::unwrap_used,
    reason = "helpers of a test binary: a failed step should fail the test"
)]

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use peregrine_api::{ApiSettings, Limits};
use peregrine_store::{DatabaseUrl, UserStore};
use peregrine_testkit::PgCluster;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "test-token-1234";

/// A server in this process on a free port; stopped when dropped.
struct Running {
    base: String,
    address: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(url: &str, db_timeout: Duration, limits: Limits) -> Running {
    let url: DatabaseUrl = url.parse().unwrap();
    let store = UserStore::open(&url, 2).unwrap();
    store.migrate().await.unwrap();
    let store = store.with_timeout(db_timeout);
    let settings = ApiSettings {
        api_token: Some(TOKEN.into()),
        ..ApiSettings::default()
    };
    let app = peregrine_api::app(Arc::new(store), settings);
    let (address, stop) = common::serve(app, limits);
    Running {
        base: format!("http://{address}"),
        address,
        _stop: stop,
    }
}

/// [`serve`] on a new SQLite file: the server, its directory and the file's path.
async fn serve_sqlite(
    db_timeout: Duration,
    limits: Limits,
) -> (Running, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db");
    let app = serve(&format!("sqlite://{}", path.display()), db_timeout, limits).await;
    (app, dir, path)
}

/// GET `path` of `app`.
async fn get(app: &Running, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn create(app: &Running, name: &str) -> Value {
    let response = client()
        .post(format!("{}/users", app.base))
        .bearer_auth(TOKEN)
        .json(&json!({ "username": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

/// Asserts a 503 problem with Retry-After.
async fn assert_unavailable(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
}

/// Waits until `probe` answers `want`, for at most `limit`.
async fn eventually(url: &str, want: StatusCode, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = client().get(url).send().await.map(|r| r.status());
        if got.as_ref().is_ok_and(|status| *status == want) {
            return;
        }
        assert!(Instant::now() < deadline, "{url}: still {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A hung PostgreSQL (SIGSTOP: sockets open, no answers) costs a request the deadline, not
/// the fault's length: 503 with Retry-After, /readyz 503, and recovery once it resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_database_is_503_within_the_deadline_and_readiness_fails() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let cluster = PgCluster::start().unwrap();
    let admin = peregrine_testkit::connect(&cluster.url("postgres")).await;
    admin.batch_execute("CREATE DATABASE hung").await.unwrap();
    drop(admin);
    let app = serve(
        &cluster.url("hung"),
        Duration::from_secs(1),
        Limits::default(),
    )
    .await;
    let id = create(&app, "patient").await["id"].clone();
    let user = format!("{}/users/{id}", app.base);
    assert_eq!(client().get(&user).send().await.unwrap().status(), 200);

    cluster.freeze().unwrap();
    for path in [format!("/users/{id}"), "/users/".into(), "/readyz".into()] {
        let started = Instant::now();
        let response = get(&app, &path).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(4), "{path} took {took:?}");
        assert_unavailable(response).await;
    }
    cluster.thaw().unwrap();
    // The suspect connection was replaced: the server recovers by itself.
    eventually(&user, StatusCode::OK, Duration::from_secs(15)).await;
    eventually(
        &format!("{}/readyz", app.base),
        StatusCode::OK,
        Duration::from_secs(5),
    )
    .await;
}

/// The case: with a 2 s deadline and a hung PostgreSQL, reads and a write get 503
/// by the deadline plus the documented margin (100 ms), not a quarter and a tick later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_database_is_503_by_the_deadline_plus_its_margin() {
    let _quiet = peregrine_testkit::quiet::measuring().await;
    let timeout = Duration::from_secs(2);
    let margin = peregrine_store::DEADLINE_MARGIN;
    let cluster = PgCluster::start().unwrap();
    let admin = peregrine_testkit::connect(&cluster.url("postgres")).await;
    admin.batch_execute("CREATE DATABASE hung").await.unwrap();
    drop(admin);
    let app = serve(&cluster.url("hung"), timeout, Limits::default()).await;
    let id = create(&app, "patient").await["id"].clone();
    assert_eq!(get(&app, &format!("/users/{id}")).await.status(), 200);

    cluster.freeze().unwrap();
    let timed = |request: reqwest::RequestBuilder| async move {
        let started = Instant::now();
        let response = request.send().await.unwrap();
        (response, started.elapsed())
    };
    let calls = [
        client().get(format!("{}/users/{id}", app.base)),
        client().get(format!("{}/users/", app.base)),
        client()
            .post(format!("{}/users", app.base))
            .bearer_auth(TOKEN)
            .json(&json!({"username": "while-hung"})),
    ];
    let answers = futures_util::future::join_all(calls.map(timed)).await;
    cluster.thaw().unwrap();
    let mut took = Vec::new();
    for (response, elapsed) in answers {
        assert_unavailable(response).await;
        took.push(elapsed);
    }
    for elapsed in &took {
        assert!(*elapsed >= timeout - Duration::from_millis(20), "{took:?}");
        // The margin, with room for a loaded test machine's scheduling (measured up to
        // 330 ms late at a load of 11 on 2 cores); the old bound (1.25 × the timeout and a
        // tick) was never under 2.5 s.
        assert!(
            *elapsed <= timeout + margin + Duration::from_millis(350),
            "{took:?}"
        );
    }
    let fastest = took.iter().min().copied().unwrap_or_default();
    assert!(fastest <= timeout + margin, "{took:?}");
}

/// A write waiting on a row lock holds up neither reads nor readiness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_do_not_queue_behind_a_write_waiting_on_a_lock() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let url = PgCluster::shared().fresh_database().await;
    let app = serve(&url, Duration::from_secs(10), Limits::default()).await;
    let locked = create(&app, "locked").await["id"].as_i64().unwrap();
    let other = create(&app, "other").await["id"].as_i64().unwrap();

    let mut locker = peregrine_testkit::connect(&url).await;
    let lock = locker.transaction().await.unwrap();
    lock.execute(
        "SELECT 1 FROM orguser WHERE id = $1 FOR UPDATE",
        &[&i32::try_from(locked).unwrap()],
    )
    .await
    .unwrap();
    let rename = tokio::spawn(
        client()
            .put(format!("{}/users/{locked}", app.base))
            .bearer_auth(TOKEN)
            .json(&json!({"username": "renamed"}))
            .send(),
    );
    // Wait until the write is really waiting for the lock.
    peregrine_testkit::wait_for_a_lock_waiter(&lock).await;
    for path in [
        format!("/users/{other}"),
        "/readyz".into(),
        "/users/".into(),
    ] {
        for _ in 0..4 {
            let started = Instant::now();
            let response = get(&app, &path).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            // Behind the write, a read would wait for as long as the lock is held: for ever
            // here. The bound is loose because the machine may be busy.
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{path} waited {:?} behind the locked write",
                started.elapsed()
            );
        }
    }
    assert!(!rename.is_finished(), "the write should still wait");
    lock.rollback().await.unwrap();
    assert_eq!(rename.await.unwrap().unwrap().status(), StatusCode::OK);
}

/// The case: with a row locked by another session, a PUT to it waits for the lock
/// (503 at the deadline), while a PUT to another row and a POST, sent after it to the same
/// store, whose one write connection it used, answer at once; once the lock is released
/// the PUT goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waiting_on_a_lock_holds_up_no_write_to_another_row() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let timeout = Duration::from_secs(3);
    let url = PgCluster::shared().fresh_database().await;
    let app = serve(&url, timeout, Limits::default()).await;
    let locked = create(&app, "locked").await["id"].as_i64().unwrap();
    let other = create(&app, "other").await["id"].as_i64().unwrap();
    let put = |id: i64, name: String| {
        client()
            .put(format!("{}/users/{id}", app.base))
            .bearer_auth(TOKEN)
            .json(&json!({ "username": name }))
            .send()
    };

    let mut locker = peregrine_testkit::connect(&url).await;
    let lock = locker.transaction().await.unwrap();
    lock.execute(
        "SELECT 1 FROM orguser WHERE id = $1 FOR UPDATE",
        &[&i32::try_from(locked).unwrap()],
    )
    .await
    .unwrap();
    let started = Instant::now();
    let stuck = tokio::spawn(put(locked, "renamed".into()));
    peregrine_testkit::wait_for_a_lock_waiter(&lock).await;
    for round in 0..3 {
        let sent = Instant::now();
        let (renamed, created) = tokio::join!(
            put(other, format!("other{round}")),
            client()
                .post(format!("{}/users", app.base))
                .bearer_auth(TOKEN)
                .json(&json!({ "username": format!("new{round}") }))
                .send()
        );
        assert_eq!(renamed.unwrap().status(), StatusCode::OK);
        assert_eq!(created.unwrap().status(), StatusCode::CREATED);
        // Behind the locked write they would wait for the deadline (3 s); the bound is
        // loose because the machine may be busy.
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "round {round}: {:?} behind the locked write",
            sent.elapsed()
        );
    }
    assert!(!stuck.is_finished(), "the locked write should still wait");
    assert_unavailable(stuck.await.unwrap().unwrap()).await;
    let waited = started.elapsed();
    assert!(waited >= timeout - Duration::from_millis(50), "{waited:?}");
    assert!(
        waited <= timeout + peregrine_store::DEADLINE_MARGIN + Duration::from_millis(500),
        "{waited:?}"
    );

    // Released, the row can be written again at once.
    let again = tokio::spawn(put(locked, "renamed".into()));
    peregrine_testkit::wait_for_a_lock_waiter(&lock).await;
    lock.rollback().await.unwrap();
    assert_eq!(again.await.unwrap().unwrap().status(), StatusCode::OK);
    let users: Value = get(&app, "/users/").await.json().await.unwrap();
    assert_eq!(users.as_array().map(Vec::len), Some(5), "{users}");
}

/// While another connection holds SQLite's write lock, a write gets 503 at the deadline,
/// not after the busy waits of every write queued before it; and the work is not done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_sqlite_write_lock_is_503_within_the_deadline() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let (app, _dir, path) = serve_sqlite(Duration::from_secs(1), Limits::default()).await;
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let writes = (0..3).map(|i| {
        client()
            .post(format!("{}/users", app.base))
            .bearer_auth(TOKEN)
            .json(&json!({ "username": format!("queued{i}") }))
            .send()
    });
    for response in futures_util::future::join_all(writes).await {
        assert_unavailable(response.unwrap()).await;
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "the writes took {took:?}");
    holder.execute_batch("ROLLBACK").unwrap();
    create(&app, "after").await;
    let users: Value = get(&app, "/users/").await.json().await.unwrap();
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{users}");
}

/// A flood of idle connections past the limit does not lock out a legitimate client: the
/// oldest idle connections are closed to make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_sheds_idle_connections_and_the_probe_is_served() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let limits = Limits {
        max_connections: 20,
        ..Limits::default()
    };
    let (app, _dir, _) = serve_sqlite(Duration::from_secs(5), limits).await;
    let mut flood = Vec::new();
    for _ in 0..60 {
        flood.push(TcpStream::connect(app.address).await.unwrap());
    }
    let started = Instant::now();
    let response = client()
        .get(format!("{}/healthz", app.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(2));
    // The oldest flood connections were closed by the server.
    let mut closed = 0;
    for stream in &mut flood[..10] {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut byte)).await;
        if matches!(read, Ok(Ok(0) | Err(_))) {
            closed += 1;
        }
    }
    assert_eq!(closed, 10);
}

/// Which of `streams` the server has closed: a read that ends or fails (an open one
/// waits, here for 200 ms).
async fn closed_ones(streams: &mut [TcpStream]) -> Vec<bool> {
    let mut closed = Vec::new();
    for stream in streams {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await;
        closed.push(matches!(read, Ok(Ok(0) | Err(_))));
    }
    closed
}

/// One client address opening more slow-body POSTs (with a valid token) and idle
/// connections than its share cannot lock others out: past its bodies' limit its
/// connection that has been sending longest is closed, past its connections' limit its
/// oldest idle one, and another address (127.0.0.2) is served throughout. Before these
/// limits the 60 slow POSTs took all 40 slots and the other address was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_with_slow_bodies_cannot_take_every_connection_slot() {
    let limits = Limits {
        max_connections: 40,
        max_client_connections: 10,
        max_client_bodies: 4,
        ..Limits::default()
    };
    let (app, _dir, _) = serve_sqlite(Duration::from_secs(5), limits).await;
    let head = format!(
        "POST /users HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    let mut slow = Vec::new();
    for _ in 0..60 {
        let mut stream = TcpStream::connect(app.address).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        slow.push(stream);
    }
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for i in 0..5 {
        let created = other
            .post(format!("{}/users", app.base))
            .bearer_auth(TOKEN)
            .json(&json!({ "username": format!("other{i}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let read = other.get(format!("{}/users/", app.base)).send().await;
        assert_eq!(read.unwrap().status(), StatusCode::OK);
    }
    // At most 4 bodies of the address are being received, and the first ones sent are
    // among those closed.
    let closed = closed_ones(&mut slow).await;
    let open: Vec<usize> = (0..slow.len()).filter(|&i| !closed[i]).collect();
    assert!(
        open.len() <= 4 && closed[..10].iter().all(|&c| c),
        "slow bodies still open: {open:?}"
    );
    // Idle connections of the address past its 10: its oldest are closed.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(app.address).await.unwrap());
    }
    let read = other.get(format!("{}/healthz", app.base)).send().await;
    assert_eq!(read.unwrap().status(), StatusCode::OK);
    let closed = closed_ones(&mut idle).await;
    assert!(
        closed[..10].iter().all(|&c| c) && closed[14..].iter().all(|&c| !c),
        "idle connections closed: {closed:?}"
    );
}

/// With every slot of the process taken by bodies being sent slowly (no idle connection to
/// close), a newcomer is served: the connection that has been sending its body longest is
/// closed for it, rather than the newcomer refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_process_closes_its_slowest_body_for_a_newcomer() {
    let limits = Limits {
        max_connections: 10,
        ..Limits::default()
    };
    let (app, _dir, _) = serve_sqlite(Duration::from_secs(5), limits).await;
    let head = format!(
        "POST /users HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    let mut slow = Vec::new();
    for _ in 0..10 {
        let mut stream = TcpStream::connect(app.address).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        slow.push(stream);
    }
    // Time for the server's one worker to take each head (then each connection is busy
    // receiving its body, not idle): microseconds each.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let read = other.get(format!("{}/healthz", app.base)).send().await;
    assert_eq!(read.unwrap().status(), StatusCode::OK);
    let closed = closed_ones(&mut slow).await;
    assert!(
        closed[0],
        "the oldest body was not the one closed: {closed:?}"
    );
    assert_eq!(closed.iter().filter(|&&c| c).count(), 1, "{closed:?}");
}

/// Sends raw bytes and returns the raw response (until the server closes or 5 s pass).
async fn raw(address: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    // The server may answer and close before all is written: that is its right.
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

fn status_of(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or_default()
}

/// Hostile framing gets a 4xx, with a problem+json body where the server writes the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_4xx_problems() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let (app, _dir, _) = serve_sqlite(Duration::from_secs(5), Limits::default()).await;
    let huge = format!(
        "GET /users/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let long_target = format!(
        "GET /users/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "1".repeat(100_000)
    );
    for (request, status) in [
        (huge.as_str(), "431"),
        (long_target.as_str(), "431"),
        ("GET /users/ HTTP/1.1\r\n\r\n", "400"),
        ("GET /users/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"),
        ("G@T /users/ HTTP/1.1\r\nHost: a\r\n\r\n", "400"),
        (
            "GET /users/ HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n",
            "400",
        ),
        (
            "POST /users HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            "400",
        ),
    ] {
        let response = raw(app.address, request.as_bytes()).await;
        assert_eq!(status_of(&response), status, "{request:?}: {response}");
        assert!(
            response.contains("application/problem+json"),
            "{request:?}: {response}"
        );
    }
    let ok = raw(
        app.address,
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&ok), "200", "{ok}");
    let ten = raw(app.address, b"GET /healthz HTTP/1.0\r\n\r\n").await;
    assert_eq!(status_of(&ten), "200", "{ten}");
}

/// A client that declares a body and never sends it gets 408 at the body deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_is_408() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let limits = Limits {
        body_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let (app, _dir, _) = serve_sqlite(Duration::from_secs(5), limits).await;
    let request = format!(
        "POST /users HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 16000\r\n\r\n{{\"user"
    );
    let started = Instant::now();
    let response = raw(app.address, request.as_bytes()).await;
    assert_eq!(status_of(&response), "408", "{response}");
    assert!(response.contains("application/problem+json"), "{response}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// Only a lost or refused connection, I/O or a timeout is 503; a value the server cannot
/// decode is its own fault (500), and on SQLite only a unique violation is 409: another
/// constraint (here a trigger's) is a 500 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_of_the_server_are_500_not_503_or_409() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let url = PgCluster::shared().fresh_database().await;
    let app = serve(&url, Duration::from_secs(5), Limits::default()).await;
    let id = create(&app, "wide").await["id"].clone();
    let admin = peregrine_testkit::connect(&url).await;
    admin
        .batch_execute("ALTER TABLE orguser ALTER COLUMN id TYPE bigint")
        .await
        .unwrap();
    // A server with new connections reads the widened column: an i64 where it wants i32.
    let app = serve(&url, Duration::from_secs(5), Limits::default()).await;
    let response = get(&app, &format!("/users/{id}")).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"], "internal server error");

    let (app, _dir, path) = serve_sqlite(Duration::from_secs(5), Limits::default()).await;
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER no_boom BEFORE INSERT ON orguser WHEN NEW.username = 'boom' \
             BEGIN SELECT RAISE(ABORT, 'no boom'); END",
        )
        .unwrap();
    let response = client()
        .post(format!("{}/users", app.base))
        .bearer_auth(TOKEN)
        .json(&json!({"username": "boom"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    create(&app, "fine").await;
}

/// An idle keep-alive connection (after a plain read or another request), one that never
/// sends a whole head, and one that sends nothing, are closed after the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed_after_the_idle_timeout() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let limits = Limits {
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let (app, _dir, _) = serve_sqlite(Duration::from_secs(5), limits).await;
    let mut idle = TcpStream::connect(app.address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut slow = TcpStream::connect(app.address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    // Kept by the front (a plain read), not by hyper.
    let mut plain = TcpStream::connect(app.address).await.unwrap();
    plain
        .write_all(b"GET /users/ HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let silent = TcpStream::connect(app.address).await.unwrap();
    let started = Instant::now();
    for stream in [&mut idle, &mut slow, &mut plain, &mut { silent }] {
        let mut received = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received));
        assert!(read.await.is_ok(), "the connection was left open");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "closed late: {took:?}");
}
