//! The deadline of the calls pipelined on a PostgreSQL connection, kept by the connection's
//! watchdog rather than a timer per call: against a real server that hangs (SIGSTOP: its
//! sockets stay open, nothing answers), every call on the hung connection fails at the
//! deadline, not before and not much after, and the connection is replaced.

use std::time::{Duration, Instant};

use peregrine_store::{DbFailure, StoreError, UserId, UserStore, Username};
use peregrine_testkit::PgCluster;

/// Calls sent together on the one read connection while the server hangs.
const PIPELINED: usize = 8;

fn open(url: &str, timeout: Duration) -> UserStore {
    let url = url.parse().unwrap_or_else(|e| panic!("{e}"));
    UserStore::open(&url, 1)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_timeout(timeout)
}

/// The calls of `store` (and of its hub, which is its own) that got no answer in time.
fn timeouts(store: &UserStore) -> u64 {
    store.counters().totals().failures[DbFailure::Timeout as usize]
}

fn reconnects(store: &UserStore) -> u64 {
    store.counters().totals().reconnects
}

/// Runs `call`, returning its result and how long it took.
async fn timed<T>(call: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let result = call.await;
    (result, started.elapsed())
}

#[tokio::test]
async fn calls_pipelined_on_a_hung_connection_fail_at_the_deadline_and_the_next_reconnects() {
    let cluster = PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let timeout = Duration::from_millis(800);
    // The calls' deadline (the server's own statement timeout), and the watchdog's tick:
    // an eighth of it, at most 50 ms.
    let deadline = timeout;
    let tick = (deadline / 8).min(Duration::from_millis(50));
    let store = open(&cluster.url(&cluster.fresh_database_name().await), timeout);
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    let user = store
        .create(&Username::parse("patient").unwrap_or_else(|e| panic!("{e}")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The read connection and the write connection are open: the server hangs mid-query.
    store.get(user.id).await.unwrap_or_else(|e| panic!("{e}"));
    let (timeouts_before, reconnects_before) = (timeouts(&store), reconnects(&store));

    cluster.freeze().unwrap_or_else(|e| panic!("{e}"));
    let reads = (0..PIPELINED).map(|_| timed(store.get(user.id)));
    let other = Username::parse("other").unwrap_or_else(|e| panic!("{e}"));
    let calls = async {
        tokio::join!(
            futures_util::future::join_all(reads),
            timed(store.create(&other))
        )
    };
    let Ok((reads, write)) = tokio::time::timeout(deadline * 4, calls).await else {
        panic!("calls on the hung server waited past four deadlines");
    };
    let pipelined = reads
        .into_iter()
        .map(|(result, took)| (result.map(drop), took));
    let every = pipelined.chain(std::iter::once((write.0.map(drop), write.1)));
    for (result, took) in every {
        match result {
            Err(StoreError::Unavailable { reason, .. }) => {
                assert!(reason.contains("no answer within the deadline"), "{reason}");
            }
            other => panic!("a call on the hung server answered {other:?}"),
        }
        // Not before the deadline (a tick's scheduling aside), at most a tick after it
        // (with room for a loaded machine).
        assert!(took >= deadline - tick / 2, "gave up after {took:?}");
        assert!(
            took < deadline + tick + Duration::from_millis(500),
            "gave up after {took:?}"
        );
    }
    assert_eq!(timeouts(&store) - timeouts_before, PIPELINED as u64 + 1);

    cluster.thaw().unwrap_or_else(|e| panic!("{e}"));
    let read = store.get(user.id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read.username, user.username);
    assert!(reconnects(&store) > reconnects_before);
}

#[tokio::test]
async fn the_watchdogs_end_with_the_store() {
    let runtime = tokio::runtime::Handle::current();
    let tasks = || runtime.metrics().num_alive_tasks();
    let idle = tasks();
    let url = PgCluster::shared().fresh_database().await;
    let store = open(&url, Duration::from_secs(5));
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    let id = UserId::parse("1").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(store.get(id).await, Err(StoreError::NotFound)));
    store.count().await.unwrap_or_else(|e| panic!("{e}"));
    // One read connection (its socket's task and its watchdog) at least.
    assert!(tasks() >= idle + 2, "{} tasks, {idle} before", tasks());

    drop(store);
    let ended_by = Instant::now() + Duration::from_secs(5);
    while tasks() > idle {
        assert!(
            Instant::now() < ended_by,
            "{} tasks left, {idle} before",
            tasks()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
