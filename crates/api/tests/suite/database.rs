//! The database side of a real server, through HTTP: `/metrics`' PostgreSQL figures
//! (queries, pipeline depth, failures by kind, reconnects) after known traffic and faults,
//! and `--db-statements auto` behind a PgBouncer in transaction mode that the detection at
//! connect time cannot see. A real private PostgreSQL and a real PgBouncer on 127.0.0.1
//! and a Unix socket. The tests take turns: the figures are the process's.
#![allow(
    clippy::unwrap_used,
    reason = "helpers of a test binary: a failed step should fail the test"
)]

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peregrine_api::{ApiSettings, Limits};
use peregrine_store::{DatabaseUrl, StatementMode, UserStore, Username};
use peregrine_testkit::{PgBouncer, PgCluster};
use reqwest::StatusCode;
use serde_json::json;

const TOKEN: &str = "database-token";

/// The figures are counted per process: one test at a time.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A server in this process on a free port; stopped when dropped.
struct Running {
    base: String,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    /// Serves `url` with 2 shared connections, statements sent as `mode` says.
    async fn start(url: &str, mode: StatementMode) -> Self {
        let url: DatabaseUrl = url.parse().unwrap();
        let store = UserStore::open(&url, 2)
            .unwrap()
            .with_timeout(Duration::from_secs(2))
            .with_statements(mode);
        let settings = ApiSettings {
            api_token: Some(TOKEN.into()),
            ..ApiSettings::default()
        };
        let app = peregrine_api::app(Arc::new(store), settings);
        let (address, stop) = common::serve(app, Limits::default());
        Self {
            base: format!("http://{address}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            _stop: stop,
        }
    }

    /// Sends `count` GETs of `path` at once; their statuses.
    async fn burst(&self, count: usize, path: &str) -> Vec<StatusCode> {
        let url = format!("{}{path}", self.base);
        let sends = (0..count).map(|_| self.client.get(&url).send());
        futures_util::future::join_all(sends)
            .await
            .into_iter()
            .map(|response| response.unwrap().status())
            .collect()
    }

    async fn create(&self, name: &str) -> StatusCode {
        self.client
            .post(format!("{}/users", self.base))
            .bearer_auth(TOKEN)
            .json(&json!({ "username": name }))
            .send()
            .await
            .unwrap()
            .status()
    }

    /// The database figures of `/metrics`.
    async fn figures(&self) -> Figures {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Figures(
            text.lines()
                .filter(|line| line.starts_with("peregrine_db_"))
                .filter_map(|line| line.rsplit_once(' '))
                .map(|(series, value)| (series.to_owned(), value.parse().unwrap()))
                .collect(),
        )
    }
}

/// Samples of the `peregrine_db_*` families, by series.
struct Figures(HashMap<String, f64>);

impl Figures {
    fn get(&self, series: &str) -> f64 {
        *self
            .0
            .get(series)
            .unwrap_or_else(|| panic!("no {series} in {:?}", self.0))
    }

    fn failures(&self, kind: &str) -> f64 {
        self.get(&format!("peregrine_db_failures_total{{kind=\"{kind}\"}}"))
    }

    /// The pipeline-depth histogram's buckets, cumulative and ending at the count.
    fn depth_buckets(&self) -> Vec<(String, f64)> {
        let bounds = ["1", "2", "4", "8", "16", "32", "64", "+Inf"];
        let buckets: Vec<(String, f64)> = bounds
            .iter()
            .map(|le| {
                let series = format!("peregrine_db_pipeline_depth_bucket{{le=\"{le}\"}}");
                ((*le).to_owned(), self.get(&series))
            })
            .collect();
        assert!(
            buckets.windows(2).all(|pair| pair[0].1 <= pair[1].1),
            "cumulative: {buckets:?}"
        );
        assert_eq!(
            buckets.last().map(|b| b.1),
            Some(self.get("peregrine_db_pipeline_depth_count"))
        );
        buckets
    }
}

/// A database of its own in the shared cluster, migrated, with `users` users; its name.
async fn database(users: usize) -> String {
    let cluster = PgCluster::shared();
    let name = cluster.fresh_database_name().await;
    let url: DatabaseUrl = cluster.url(&name).parse().unwrap();
    let store = UserStore::open(&url, 1).unwrap();
    store.migrate().await.unwrap();
    for n in 0..users {
        let username = Username::parse(format!("user-{n}")).unwrap();
        store.create(&username).await.unwrap();
    }
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_database_queries_pipeline_depth_failures_and_reconnects() {
    let _turn = TURN.lock().await;
    let cluster = PgCluster::shared();
    let name = database(3).await;
    let app = Running::start(&cluster.url(&name), StatementMode::Auto).await;
    let before = app.figures().await;

    // Concurrent reads share 2 connections: queries pipeline on them. Bursts until one
    // found another in flight (at once on an idle machine; a loaded one may serialise some).
    let mut sent = 0.0;
    let mut deepest = 0.0;
    for _ in 0..20 {
        let statuses = app.burst(40, "/users/1").await;
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "{statuses:?}"
        );
        sent += 40.0;
        let now = app.figures().await;
        let buckets = now.depth_buckets();
        deepest = now.get("peregrine_db_pipeline_depth_count") - buckets[0].1;
        if deepest > before.get("peregrine_db_pipeline_depth_count") - before.depth_buckets()[0].1 {
            break;
        }
    }
    let after = app.figures().await;
    let queries =
        after.get("peregrine_db_queries_total") - before.get("peregrine_db_queries_total");
    assert_eq!(queries, sent, "one query per GET /users/1");
    let observed = after.get("peregrine_db_pipeline_depth_count")
        - before.get("peregrine_db_pipeline_depth_count");
    assert_eq!(observed, queries, "each query's depth observed once");
    assert!(
        deepest > 0.0,
        "no query ever found another in flight on its connection"
    );
    let depth_sum = after.get("peregrine_db_pipeline_depth_sum")
        - before.get("peregrine_db_pipeline_depth_sum");
    assert!(
        depth_sum > observed,
        "depths sum {depth_sum} over {observed} queries"
    );
    assert_eq!(after.get("peregrine_db_queries_in_flight"), 0.0);

    // A taken name: PostgreSQL answers a unique violation (409 to the client).
    assert_eq!(app.create("user-0").await, StatusCode::CONFLICT);
    let conflict = app.figures().await;
    assert_eq!(conflict.failures("server") - after.failures("server"), 1.0);

    // PostgreSQL ends every session of the database: the server reconnects by itself.
    let admin = cluster.admin().await;
    let ended = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .unwrap();
    assert!(ended.get::<_, i64>(0) >= 1, "no session to end");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let statuses = app.burst(4, "/users/1").await;
        assert!(
            statuses
                .iter()
                .all(|s| *s == StatusCode::OK || *s == StatusCode::SERVICE_UNAVAILABLE),
            "{statuses:?}"
        );
        if statuses.iter().all(|s| *s == StatusCode::OK) {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {statuses:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = app.figures().await;
    assert!(
        recovered.get("peregrine_db_reconnects_total")
            - conflict.get("peregrine_db_reconnects_total")
            >= 1.0,
        "a reconnect after the sessions ended"
    );
    assert_eq!(recovered.failures("timeout"), before.failures("timeout"));
}

/// PgBouncer beside PostgreSQL on a Unix socket under PostgreSQL's port number, told to
/// ignore `options`: the connect-time detection sees no pooler, so `auto` starts with
/// named statements, which PgBouncer's transaction mode loses. The first lost statement
/// switches the store to unnamed ones and the query is sent again: no request fails.
/// With `prepared` the same traffic fails, so the situation is real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_statements_behind_an_unseen_pooler_switch_to_unnamed_without_a_failed_request() {
    let _turn = TURN.lock().await;
    let cluster = PgCluster::shared();
    let name = database(20).await;
    let bouncer = PgBouncer::start_on_socket(
        cluster,
        2,
        // Round robin (not PgBouncer's default LIFO) hands consecutive transactions to
        // different server connections, so that a named statement is lost every run, not
        // only when the load happens to spread them.
        "ignore_startup_parameters = extra_float_digits, options\nserver_round_robin = 1",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Both server connections open first: round robin then alternates between them even
    // when the machine is too busy for the bursts' requests to overlap.
    bouncer.open_server_connections(&name, 2).await;

    let prepared = Running::start(&bouncer.url(&name), StatementMode::Prepared).await;
    let mut failed = 0;
    for _ in 0..10 {
        let statuses = prepared.burst(10, "/users/3").await;
        failed += statuses.iter().filter(|s| !s.is_success()).count();
    }
    assert!(
        failed > 0,
        "named statements survived PgBouncer: no pooler in between?"
    );

    let app = Running::start(&bouncer.url(&name), StatementMode::Auto).await;
    let before = app.figures().await;
    for round in 0..10 {
        let statuses = app.burst(10, &format!("/users/{}", round + 1)).await;
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "round {round}: {statuses:?}\n{}",
            bouncer.log()
        );
        assert_eq!(
            app.create(&format!("new-{round}")).await,
            StatusCode::CREATED
        );
    }
    let after = app.figures().await;
    assert!(
        after.failures("server") > before.failures("server"),
        "auto should have met a lost named statement (else this test proves nothing)"
    );
}
