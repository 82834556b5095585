//! The store contract: every behaviour the API relies on, run against a real SQLite file and
//! a real private PostgreSQL cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use peregrine_store::{DatabaseUrl, Page, StoreError, UserId, UserStore, Username};
use peregrine_testkit::PgCluster;

/// A migrated store and whatever must outlive it.
struct Fixture {
    store: UserStore,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    Fixture {
        store: open(&url).await,
        _dir: Some(dir),
    }
}

async fn postgres() -> Fixture {
    let url = PgCluster::shared().fresh_database().await;
    Fixture {
        store: open(&url).await,
        _dir: None,
    }
}

async fn open(url: &str) -> UserStore {
    let url: DatabaseUrl = url.parse().unwrap_or_else(|e| panic!("{e}"));
    let store = UserStore::open(&url, 2).unwrap_or_else(|e| panic!("{e}"));
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    store
}

fn name(text: &str) -> Username {
    Username::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn id(n: i32) -> UserId {
    UserId::parse(&n.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

fn no_progress() -> peregrine_store::Progress {
    Arc::new(|_| {})
}

/// Runs each contract test against both backends.
macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(super::sqlite().await.store).await })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { super::$test(super::postgres().await.store).await })*
        }
    };
}

contract!(
    migrate_is_idempotent,
    create_then_get_returns_the_user,
    get_unknown_id_is_not_found,
    create_with_a_taken_name_is_conflict,
    list_is_ordered_by_id_and_pages_by_keyset,
    rename_changes_the_name_and_reports_conflicts_and_absence,
    delete_removes_the_user_once,
    deleted_ids_are_not_reused,
    seed_adds_exactly_n_tutorial_style_users,
    concurrent_creates_of_one_name_yield_exactly_one_user,
    ping_and_count_answer,
);

async fn migrate_is_idempotent(store: UserStore) {
    // The fixture has migrated once already.
    let again = store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.applied, 0);
    assert_eq!(again.version, 1);
}

async fn create_then_get_returns_the_user(store: UserStore) {
    let created = store
        .create(&name("e60202a4"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created.username.as_str(), "e60202a4");
    let fetched = store
        .get(created.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fetched, created);
}

async fn get_unknown_id_is_not_found(store: UserStore) {
    assert!(matches!(
        store.get(id(12345)).await,
        Err(StoreError::NotFound)
    ));
}

async fn create_with_a_taken_name_is_conflict(store: UserStore) {
    store
        .create(&name("taken"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        store.create(&name("taken")).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.count().await.ok(), Some(1));
}

async fn list_is_ordered_by_id_and_pages_by_keyset(store: UserStore) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let user = store.create(&name(&format!("user{i}"))).await;
        ids.push(user.unwrap_or_else(|e| panic!("{e}")).id);
    }
    let all = store
        .list(Page {
            after: None,
            limit: 100,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.iter().map(|u| u.id).collect::<Vec<_>>(), ids);
    let first = store
        .list(Page {
            after: None,
            limit: 3,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.iter().map(|u| u.id).collect::<Vec<_>>(), ids[..3]);
    let next = store
        .list(Page {
            after: Some(ids[2]),
            limit: 3,
        })
        .await;
    let next = next.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(next.iter().map(|u| u.id).collect::<Vec<_>>(), ids[3..6]);
    let last = store
        .list(Page {
            after: Some(ids[6]),
            limit: 3,
        })
        .await;
    assert_eq!(last.map(|v| v.len()).ok(), Some(0));
}

async fn rename_changes_the_name_and_reports_conflicts_and_absence(store: UserStore) {
    let alice = store
        .create(&name("alice"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .create(&name("bob"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let renamed = store
        .rename(alice.id, &name("carol"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(renamed.username.as_str(), "carol");
    let fetched = store.get(alice.id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fetched.username.as_str(), "carol");
    assert!(matches!(
        store.rename(alice.id, &name("bob")).await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        store.rename(id(999), &name("dave")).await,
        Err(StoreError::NotFound)
    ));
    // Renaming to its own name is not a conflict.
    assert!(store.rename(alice.id, &name("carol")).await.is_ok());
}

async fn delete_removes_the_user_once(store: UserStore) {
    let user = store
        .create(&name("gone"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .delete(user.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        store.get(user.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete(user.id).await,
        Err(StoreError::NotFound)
    ));
}

async fn deleted_ids_are_not_reused(store: UserStore) {
    let first = store
        .create(&name("one"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .delete(first.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = store
        .create(&name("two"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(second.id > first.id);
}

async fn seed_adds_exactly_n_tutorial_style_users(store: UserStore) {
    store
        .create(&name("existing"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let reported = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&reported);
    let progress: peregrine_store::Progress = Arc::new(move |n| {
        counter.fetch_add(n, Ordering::Relaxed);
    });
    let added = store
        .seed(120_000, progress)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(added, 120_000);
    assert_eq!(reported.load(Ordering::Relaxed), 120_000);
    assert_eq!(store.count().await.ok(), Some(120_001));
    let page = store
        .list(Page {
            after: None,
            limit: 50,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for user in page.iter().skip(1) {
        let text = user.username.as_str();
        assert!(
            text.len() == 8 && text.bytes().all(|b| b.is_ascii_hexdigit()),
            "{text}"
        );
    }
    assert_eq!(store.seed(0, no_progress()).await.ok(), Some(0));
}

async fn concurrent_creates_of_one_name_yield_exactly_one_user(store: UserStore) {
    let store = Arc::new(store);
    let attempts = (0..64).map(|_| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.create(&name("contended")).await })
    });
    let mut created = 0;
    let mut conflicts = 0;
    for attempt in attempts {
        match attempt.await.unwrap_or_else(|e| panic!("{e}")) {
            Ok(_) => created += 1,
            Err(StoreError::Conflict) => conflicts += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!((created, conflicts), (1, 63));
    assert_eq!(store.count().await.ok(), Some(1));
}

async fn ping_and_count_answer(store: UserStore) {
    store.ping().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.count().await.ok(), Some(0));
}

/// A database the tutorial's peewee app created is served as it is.
#[tokio::test]
async fn postgres_serves_a_table_that_peewee_created() {
    let url = PgCluster::shared().fresh_database().await;
    let client = peregrine_testkit::connect(&url).await;
    client
        .batch_execute(
            r#"CREATE TABLE IF NOT EXISTS "orguser" ("id" SERIAL NOT NULL PRIMARY KEY, "username" VARCHAR(255) NOT NULL);
               CREATE UNIQUE INDEX IF NOT EXISTS "orguser_username" ON "orguser" ("username");
               INSERT INTO orguser (username) VALUES ('e60202a4'), ('0c3d5f1b');"#,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let store = open(&url).await;
    let users = store
        .list(Page {
            after: None,
            limit: 10,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<_> = users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["e60202a4", "0c3d5f1b"]);
    assert!(matches!(
        store.create(&name("e60202a4")).await,
        Err(StoreError::Conflict)
    ));
    let indexes = client
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'orguser'",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        indexes.len(),
        2,
        "migrations must not add a second unique index"
    );
}

/// Unreachable PostgreSQL is `Unavailable` quickly, never a hang.
#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    let port = peregrine_testkit::free_port().unwrap_or_else(|e| panic!("{e}"));
    let url: DatabaseUrl = format!("postgres://nobody:pw@127.0.0.1:{port}/none")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let store = UserStore::open(&url, 1).unwrap_or_else(|e| panic!("{e}"));
    let started = std::time::Instant::now();
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable { .. })
    ));
    let waited = store
        .wait_until_ready(std::time::Duration::from_millis(300))
        .await;
    assert!(matches!(waited, Err(StoreError::Unavailable { .. })));
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

/// A path in a directory that does not exist is a clear configuration error.
#[test]
fn sqlite_in_a_missing_directory_is_a_clear_error() {
    let url: DatabaseUrl = "sqlite:///nonexistent-dir/x/peregrine.db"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    match UserStore::open(&url, 1) {
        Err(StoreError::Config(message)) => {
            assert!(
                message.contains("/nonexistent-dir/x/peregrine.db"),
                "{message}"
            )
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("opening must fail"),
    }
}

/// SQLite commits are durable by default (synchronous = FULL, read back from the writer
/// connection), and `normal` relaxes them; PostgreSQL has no such setting here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_are_full_synchronous_unless_relaxed() {
    use peregrine_store::Synchronous;
    let fixture = sqlite().await;
    let store = &fixture.store;
    assert_eq!(
        store.sqlite_synchronous().await.ok(),
        Some(Some(Synchronous::Full))
    );
    let relaxed = store.set_sqlite_synchronous(Synchronous::Normal).await;
    assert_eq!(relaxed.ok(), Some(Some(Synchronous::Normal)));
    assert_eq!(
        store.sqlite_synchronous().await.ok(),
        Some(Some(Synchronous::Normal))
    );
    // Writes still work under either setting.
    assert!(store.create(&name("after-relaxing")).await.is_ok());
    let back = store.set_sqlite_synchronous(Synchronous::Full).await;
    assert_eq!(back.ok(), Some(Some(Synchronous::Full)));
    assert!(store.create(&name("after-restoring")).await.is_ok());
    assert_eq!(store.count().await.ok(), Some(2));
    assert_eq!("NORMAL".parse::<Synchronous>(), Ok(Synchronous::Normal));
    assert!("off".parse::<Synchronous>().is_err());

    let postgres = postgres().await;
    assert_eq!(postgres.store.sqlite_synchronous().await.ok(), Some(None));
}

/// What a call answered, in a word: enough to compare many answers at once.
fn verdict<T>(result: Result<T, StoreError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(StoreError::Conflict) => "conflict",
        Err(StoreError::NotFound) => "not found",
        Err(other) => panic!("unexpected error: {other}"),
    }
}

type Call<'a> = std::pin::Pin<Box<dyn Future<Output = &'static str> + Send + 'a>>;

/// SQLite writes queued together share one commit, each in its own savepoint: every write
/// gets its own answer (a conflict or an absence undoes only that write, and a later write
/// sees an earlier one of its batch), and what was acknowledged is in the file, as another
/// connection opened afterwards reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writes_queued_together_commit_together_each_with_its_own_answer() {
    let fixture = sqlite().await;
    let store = &fixture.store;
    let created = |text: &'static str| async move {
        store
            .create(&name(text))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .id
    };
    let (doomed, renamed) = (created("doomed").await, created("renamed-from").await);
    created("taken").await;
    let missing = id(999_999);

    // The writer thread is held inside a seeding until every write below is queued, so
    // they all reach it together and it takes them as one batch.
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let gate = std::sync::Mutex::new((started_tx, go_rx));
    let progress: peregrine_store::Progress = Arc::new(move |_| {
        let gate = gate.lock().unwrap_or_else(|e| panic!("{e}"));
        let _ = gate.0.send(());
        let _ = gate.1.recv_timeout(std::time::Duration::from_secs(10));
    });
    let mut seeding = Box::pin(store.seed(1, progress));
    std::future::poll_fn(|cx| {
        assert!(
            seeding.as_mut().poll(cx).is_pending(),
            "seeding answered early"
        );
        std::task::Poll::Ready(())
    })
    .await;
    tokio::task::spawn_blocking(move || {
        started_rx.recv_timeout(std::time::Duration::from_secs(10))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|e| panic!("seeding did not start: {e}"));

    let fresh: Vec<String> = (0..20).map(|i| format!("fresh-{i}")).collect();
    let dups: Vec<String> = (0..10).map(|i| format!("dup-{i}")).collect();
    let mut calls: Vec<(String, &'static str, Call<'_>)> = Vec::new();
    let mut create = |text: &str, expected| {
        let username = name(text);
        let call: Call<'_> = Box::pin(async move { verdict(store.create(&username).await) });
        calls.push((format!("create {text}"), expected, call));
    };
    for text in &fresh {
        create(text, "ok");
    }
    for text in &dups {
        create(text, "ok");
        create(text, "conflict");
    }
    for _ in 0..5 {
        create("taken", "conflict");
    }
    let others: [(&str, &'static str, Call<'_>); 6] = [
        (
            "rename to taken",
            "conflict",
            Box::pin(async move { verdict(store.rename(renamed, &name("taken")).await) }),
        ),
        (
            "rename",
            "ok",
            Box::pin(async move { verdict(store.rename(renamed, &name("renamed-to")).await) }),
        ),
        (
            "delete",
            "ok",
            Box::pin(async move { verdict(store.delete(doomed).await) }),
        ),
        (
            "delete again",
            "not found",
            Box::pin(async move { verdict(store.delete(doomed).await) }),
        ),
        (
            "delete missing",
            "not found",
            Box::pin(async move { verdict(store.delete(missing).await) }),
        ),
        (
            "rename missing",
            "not found",
            Box::pin(async move { verdict(store.rename(missing, &name("never")).await) }),
        ),
    ];
    calls.extend(others.map(|(what, expected, call)| (what.to_owned(), expected, call)));
    // One poll queues each write (in this order) and finds it unanswered: the writer is held.
    std::future::poll_fn(|cx| {
        for (what, _, call) in &mut calls {
            assert!(call.as_mut().poll(cx).is_pending(), "{what} answered early");
        }
        std::task::Poll::Ready(())
    })
    .await;
    go_tx.send(()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seeding.await.ok(), Some(1));
    for (what, expected, call) in calls {
        assert_eq!(call.await, expected, "{what}");
    }

    // Another connection to the file sees exactly the acknowledged writes.
    let url = format!("sqlite://{}", store_path(&fixture).display());
    let other = open(&url).await;
    let names: std::collections::BTreeSet<String> = other
        .list(Page {
            after: None,
            limit: 100,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|user| user.username.as_str().to_owned())
        .collect();
    let mut expected: std::collections::BTreeSet<String> = fresh.into_iter().chain(dups).collect();
    expected.extend(["taken".to_owned(), "renamed-to".to_owned()]);
    assert_eq!(names.len(), expected.len() + 1, "{names:?}"); // + the seeded user
    assert!(names.is_superset(&expected), "{names:?}");
    assert!(!names.contains("doomed") && !names.contains("renamed-from"));
}

fn store_path(fixture: &Fixture) -> std::path::PathBuf {
    let dir = fixture
        ._dir
        .as_ref()
        .unwrap_or_else(|| panic!("not SQLite"));
    dir.path().join("test.db")
}

/// A hub gives each PostgreSQL worker but the first a store (and connections) of its own
/// and counts the queries of all of them, apart from any other hub's; on SQLite every
/// worker shares the first store.
#[tokio::test]
async fn a_hub_makes_each_workers_store_and_counts_them_all() {
    use peregrine_store::{Serving, StoreHub};
    let serving = Serving::new(1, std::time::Duration::from_secs(5));
    let text = PgCluster::shared().fresh_database().await;
    let url: DatabaseUrl = text.parse().unwrap_or_else(|e| panic!("{e}"));
    let hub = StoreHub::new(url, serving.clone());
    assert!(
        hub.worker_store(0).is_err(),
        "no worker store before the first"
    );
    let opened = hub.open().unwrap_or_else(|e| panic!("{e}"));
    opened.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    let first = hub.first_worker(opened).unwrap_or_else(|e| panic!("{e}"));
    let worker = |n| hub.worker_store(n).unwrap_or_else(|e| panic!("{e}"));
    let second = worker(1);
    assert!(Arc::ptr_eq(&worker(0), &first));
    assert!(!Arc::ptr_eq(&second, &first));
    assert!(Arc::ptr_eq(&second.counters(), &hub.counters()));
    for store in [&first, &second] {
        assert_eq!(store.count().await.unwrap_or_else(|e| panic!("{e}")), 0);
    }
    assert_eq!(hub.counters().totals().queries, 2);
    assert_eq!(hub.counters().totals().queries_in_flight, 0);
    // A store of its own counts apart.
    let alone = open(&text).await;
    alone.count().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hub.counters().totals().queries, 2);

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sqlite: DatabaseUrl = format!("sqlite://{}", dir.path().join("hub.db").display())
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let hub = StoreHub::new(sqlite, serving);
    let first = hub
        .open()
        .and_then(|store| hub.first_worker(store))
        .unwrap_or_else(|e| panic!("{e}"));
    let third = hub.worker_store(2).unwrap_or_else(|e| panic!("{e}"));
    assert!(Arc::ptr_eq(&third, &first));
}
