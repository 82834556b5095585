//! The PostgreSQL store behind the infrastructure production puts in front of it, all real
//! and on 127.0.0.1: PgBouncer (Debian's package) in transaction pooling mode, with fewer
//! server connections than the store opens, and a streaming replica made by
//! `pg_basebackup -R` that serves reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use peregrine_store::{
    DatabaseUrl, Page, PgConfig, PgOptions, Serving, StatementMode, StoreError, StoreHub,
    UserStore, Username,
};
use peregrine_testkit::{PgBouncer, PgCluster};

/// Concurrent clients of the mixed workload, and operations each.
const CLIENTS: usize = 8;
const OPERATIONS: usize = 40;

fn config(url: &str) -> PgConfig {
    match DatabaseUrl::parse(url, &PgOptions::default()) {
        Ok(DatabaseUrl::Postgres(config)) => *config,
        other => panic!("{url} is not a PostgreSQL URL: {other:?}"),
    }
}

fn open(url: &str, mode: StatementMode) -> UserStore {
    let url = DatabaseUrl::parse(url, &PgOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    UserStore::open(&url, 2)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_timeout(Duration::from_secs(5))
        .with_statements(mode)
}

fn name(text: String) -> Username {
    Username::parse(text.clone()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Reads, creates, renames and deletes from [`CLIENTS`] tasks over two stores (as two
/// server threads would), all through `url`: every call must succeed.
async fn mixed_workload(url: &str, mode: StatementMode) {
    let stores = [Arc::new(open(url, mode)), Arc::new(open(url, mode))];
    stores[0].migrate().await.unwrap_or_else(|e| panic!("{e}"));
    let tasks = (0..CLIENTS).map(|client| {
        let store = Arc::clone(&stores[client % 2]);
        tokio::spawn(async move {
            for op in 0..OPERATIONS {
                let user = store
                    .create(&name(format!("c{client}o{op}")))
                    .await
                    .map_err(|e| format!("create: {e}"))?;
                let read = store.get(user.id).await.map_err(|e| format!("get: {e}"))?;
                assert_eq!(read.username, user.username);
                store
                    .list(Page {
                        after: None,
                        limit: 50,
                    })
                    .await
                    .map_err(|e| format!("list: {e}"))?;
                store
                    .rename(user.id, &name(format!("r{client}o{op}")))
                    .await
                    .map_err(|e| format!("rename: {e}"))?;
                if op % 2 == 0 {
                    store
                        .delete(user.id)
                        .await
                        .map_err(|e| format!("delete: {e}"))?;
                }
            }
            Ok::<(), String>(())
        })
    });
    for task in tasks.collect::<Vec<_>>() {
        let outcome = task.await.unwrap_or_else(|e| panic!("{e}"));
        if let Err(err) = outcome {
            panic!("{mode:?} behind PgBouncer: {err}");
        }
    }
    let expected = (CLIENTS * OPERATIONS / 2) as u64;
    assert_eq!(stores[1].count().await.ok(), Some(expected));
}

#[tokio::test]
async fn unnamed_statements_serve_every_call_behind_pgbouncer_in_transaction_mode() {
    let cluster = PgCluster::shared();
    let database = cluster.fresh_database_name().await;
    // Two server connections for six client connections: consecutive transactions of a
    // client meet different server connections, where a named statement would be missing.
    let bouncer = PgBouncer::start(cluster, 2, "").unwrap_or_else(|e| panic!("{e}"));
    mixed_workload(&bouncer.url(&database), StatementMode::Unnamed).await;
}

#[tokio::test]
async fn auto_detects_pgbouncer_even_when_it_lets_options_through() {
    let cluster = PgCluster::shared();
    let database = cluster.fresh_database_name().await;
    // Told to ignore `options`, PgBouncer accepts the connection: its port gives it away.
    let bouncer = PgBouncer::start(
        cluster,
        2,
        "ignore_startup_parameters = extra_float_digits, options",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    mixed_workload(&bouncer.url(&database), StatementMode::Auto).await;
}

#[tokio::test]
async fn auto_detects_pgbouncer_that_refuses_options() {
    let cluster = PgCluster::shared();
    let database = cluster.fresh_database_name().await;
    let bouncer = PgBouncer::start(cluster, 2, "").unwrap_or_else(|e| panic!("{e}"));
    mixed_workload(&bouncer.url(&database), StatementMode::Auto).await;
}

/// Waits until `probe` holds, at most 10 s.
async fn eventually(what: &str, probe: impl AsyncFn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !probe().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reads_go_to_the_replica_and_to_the_primary_when_it_stops() {
    let primary = PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let database = primary.fresh_database_name().await;
    let url = DatabaseUrl::parse(&primary.url(&database), &PgOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    // The stores of one hub, as a server's workers have: what one writes steers where the
    // others read.
    let hub = StoreHub::new(url, Serving::new(2, Duration::from_secs(5)));
    let store = hub.open().unwrap_or_else(|e| panic!("{e}"));
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    let replica = primary.start_replica().unwrap_or_else(|e| panic!("{e}"));
    let replicas = [config(&replica.url(&database))];
    let store = store
        .with_replicas(&replicas, 1, Duration::ZERO)
        .unwrap_or_else(|e| panic!("{e}"));

    // A write on the primary becomes visible to reads, served by the replica.
    let first = store
        .create(&name("first".into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the replica shows the write", async || {
        store.get(first.id).await.is_ok()
    })
    .await;

    // With the replica's replay paused, a new user is on the primary only: reads miss it,
    // so they are the replica's.
    let replica_admin = peregrine_testkit::connect(&replica.url("postgres")).await;
    replica_admin
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = store
        .create(&name("second".into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        store.get(second.id).await,
        Err(StoreError::NotFound)
    ));

    // A store of the hub that reads from the primary right after the hub's writes sees it.
    let sticky = hub
        .open()
        .unwrap_or_else(|e| panic!("{e}"))
        .with_replicas(&replicas, 1, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        sticky.get(second.id).await.ok().map(|u| u.username),
        Some(second.username.clone())
    );
    // A store of another hub (its own) has seen no write: it reads from the replica.
    let elsewhere = open(&primary.url(&database), StatementMode::Auto)
        .with_replicas(&replicas, 1, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        elsewhere.get(second.id).await,
        Err(StoreError::NotFound)
    ));

    replica_admin
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("the replica catches up", async || {
        store.get(second.id).await.is_ok()
    })
    .await;

    // The replica stops: every read is answered by the primary.
    replica.stop().unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..20 {
        let page = Page {
            after: None,
            limit: 10,
        };
        let users = store.list(page).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(users.len(), 2);
        store.get(first.id).await.unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A read whose replica and primary both hang keeps the call's deadline: the fallback to
/// the primary gets what is left of it, not a deadline of its own.
#[tokio::test]
async fn a_read_falling_back_from_a_hung_replica_keeps_the_calls_deadline() {
    let primary = PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let database = primary.fresh_database_name().await;
    let url = DatabaseUrl::parse(&primary.url(&database), &PgOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let timeout = Duration::from_secs(2);
    let store = UserStore::open(&url, 1)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_timeout(timeout);
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    let replica = primary.start_replica().unwrap_or_else(|e| panic!("{e}"));
    let store = store
        .with_replicas(&[config(&replica.url(&database))], 1, Duration::ZERO)
        .unwrap_or_else(|e| panic!("{e}"));
    let id = peregrine_store::UserId::parse("1").unwrap_or_else(|e| panic!("{e}"));
    // Connections open first (the replica's, the primary's): the frozen servers then hang
    // mid-query, as a lost host does.
    let _ = store.get(id).await;
    let _ = store.count().await;

    replica.freeze().unwrap_or_else(|e| panic!("{e}"));
    primary.freeze().unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let answer = store.get(id).await;
    let took = started.elapsed();
    primary.thaw().unwrap_or_else(|e| panic!("{e}"));
    replica.thaw().unwrap_or_else(|e| panic!("{e}"));

    assert!(
        matches!(answer, Err(StoreError::Unavailable { .. })),
        "{answer:?}"
    );
    // The deadline is the timeout and a quarter; half the timeout more is the old overrun.
    assert!(took < timeout + timeout / 2, "the read took {took:?}");
}
