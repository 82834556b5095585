//! `peregrine db init | seed` and serving on PostgreSQL: the URL forms users paste, TLS with
//! `verify-full`, connection failures named by cause, passwords never printed.
#![allow(
    clippy::unwrap_used,
    reason = "helpers of a test binary: a failed step should fail the test"
)]

use std::time::{Duration, Instant};

use crate::harness::{Served, get_json, run, run_async, run_env, temp_dir};
use peregrine_testkit::PgCluster;

#[tokio::test]
async fn db_init_is_idempotent_and_db_seed_adds_exactly_n_on_sqlite() {
    let dir = temp_dir();
    let url = "sqlite://seeded.db";
    for expected in [
        "applied 1 migration; database schema is now at version 1",
        "database schema is up to date; no migration to apply",
    ] {
        let (status, _, stderr) = run(dir.path(), &["db", "init", "--database-url", url]);
        assert!(status.success(), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
    let (status, stdout, stderr) = run(
        dir.path(),
        &["db", "seed", "--users", "1500", "--database-url", url],
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "added 1500 users; 1500 users in all");
    let (_, stdout, _) = run(
        dir.path(),
        &["db", "seed", "-n", "7", "--database-url", url],
    );
    assert_eq!(stdout.trim(), "added 7 users; 1507 users in all");
}

#[tokio::test]
async fn db_init_and_seed_work_on_postgres_and_never_print_the_password() {
    let url = PgCluster::shared().fresh_database().await;
    let url = url.replace("postgres@", "postgres:sekrit-pw@");
    let dir = temp_dir();
    let (status, _, stderr) = run(dir.path(), &["db", "init", "--database-url", &url]);
    assert!(status.success(), "{stderr}");
    let (status, stdout, stderr) = run(
        dir.path(),
        &["db", "seed", "--users", "3000", "--database-url", &url],
    );
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "added 3000 users; 3000 users in all");
    assert!(
        stderr.contains("postgres://postgres:***@127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains("sekrit-pw") && !stdout.contains("sekrit-pw"));
}

#[tokio::test]
async fn db_init_says_what_it_applied_and_a_second_start_logs_no_notice() {
    let dir = temp_dir();
    let url = PgCluster::shared().fresh_database().await;
    let args = ["db", "init", "--database-url", url.as_str()];
    let (status, _, first) = run_async(dir.path(), &args).await;
    assert!(status.success(), "{first}");
    assert!(
        first.contains("applied 1 migration; database schema is now at version 1"),
        "{first}"
    );
    let (status, _, second) = run_async(dir.path(), &args).await;
    assert!(status.success(), "{second}");
    assert!(
        second.contains("database schema is up to date; no migration to apply"),
        "{second}"
    );
    assert!(!second.contains("already exists"), "{second}");
    assert!(!second.contains("applied 1"), "{second}");
}

/// A database on the TLS cluster (owned by the password user) and the cluster's CA file.
async fn tls_database() -> (String, String) {
    let cluster = PgCluster::shared_tls();
    let name = cluster.fresh_database_name().await;
    (name, cluster.ca_file().display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_tls_with_verify_full_from_flags_uses_an_encrypted_connection() {
    use peregrine_testkit::{TLS_PASSWORD, TLS_USER};
    let cluster = PgCluster::shared_tls();
    let (db, ca) = tls_database().await;
    let url = format!(
        "postgresql://{TLS_USER}:{TLS_PASSWORD}@localhost:{}/{db}?application_name=peregrine-tls-e2e",
        cluster.port()
    );
    let dir = temp_dir();
    let server = Served::start(
        dir.path(),
        &[
            "--database-url",
            &url,
            "--db-sslmode",
            "verify-full",
            "--db-sslrootcert",
            &ca,
            "--seed",
            "3",
            "--workers",
            "1",
        ],
    );
    let (status, users) = get_json(&server.url("/users/")).await;
    assert_eq!(status, 200);
    assert_eq!(users.as_array().map(Vec::len), Some(3));
    let (status, _) = get_json(&server.url("/readyz")).await;
    assert_eq!(status, 200);
    let admin = cluster.admin().await;
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity JOIN pg_stat_ssl USING (pid) \
             WHERE application_name = 'peregrine-tls-e2e' AND ssl",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        row.get::<_, i64>(0) >= 1,
        "no TLS connection named by application_name"
    );
    let logs = server.logs();
    assert!(logs.contains("sslmode=verify-full"), "{logs}");
    assert!(!logs.contains(TLS_PASSWORD), "{logs}");
}

#[tokio::test]
async fn db_init_reads_the_url_forms_users_paste() {
    let cluster = PgCluster::shared_tls();
    let (db, ca) = tls_database().await;
    // A password full of URL delimiters, percent-encoded as libpq expects.
    let admin = cluster.admin().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE paste_{db} LOGIN PASSWORD 'p@ss:w/rd%20?'; ALTER DATABASE {db} OWNER TO paste_{db}"
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = cluster.port().to_string();
    let url = format!(
        "postgresql://paste_{db}:p%40ss%3Aw%2Frd%2520%3F@localhost:{port}/{db}?sslmode=verify-full&sslrootcert={ca}&connect_timeout=3&application_name=pasted"
    );
    let dir = temp_dir();

    // `options` reaches the server: in a read-only session, the first migration fails.
    let read_only = format!("{url}&options=-c%20default_transaction_read_only%3Don");
    let (status, _, stderr) = run_env(
        dir.path(),
        &["db", "init", "--database-url", &read_only],
        &[],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("read-only"), "{stderr}");

    let (status, _, stderr) = run_env(dir.path(), &["db", "init", "--database-url", &url], &[]);
    assert!(status.success(), "{stderr}");
    assert!(
        !stderr.contains("p@ss") && !stderr.contains("p%40ss"),
        "{stderr}"
    );

    // What the URL leaves out comes from libpq's environment variables.
    let (db, _) = tls_database().await;
    let (status, _, stderr) = run_env(
        dir.path(),
        &["db", "init", "--database-url", "postgres://"],
        &[
            ("PGHOST", "localhost"),
            ("PGPORT", &port),
            ("PGUSER", peregrine_testkit::TLS_USER),
            ("PGPASSWORD", peregrine_testkit::TLS_PASSWORD),
            ("PGDATABASE", &db),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", &ca),
        ],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "postgres://app:***@localhost:{port}/{db}?sslmode=verify-full"
        )),
        "{stderr}"
    );

    // libpq's keyword/value form, as some providers show it.
    let (db, _) = tls_database().await;
    let keywords = format!(
        "host=localhost port={port} dbname={db} user={} password='{}' sslmode=verify-full sslrootcert={ca}",
        peregrine_testkit::TLS_USER,
        peregrine_testkit::TLS_PASSWORD
    );
    let (status, _, stderr) = run_env(
        dir.path(),
        &["db", "init", "--database-url", &keywords],
        &[],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        !stderr.contains(peregrine_testkit::TLS_PASSWORD),
        "{stderr}"
    );

    // host= naming a Unix socket directory, as in libpq's documentation.
    let plain = PgCluster::shared();
    let socket_db = plain.fresh_database_name().await;
    let url = format!(
        "postgres://postgres@/{socket_db}?host={}&port={}",
        plain.socket_dir().display(),
        plain.port()
    );
    let (status, _, stderr) = run_env(dir.path(), &["db", "init", "--database-url", &url], &[]);
    assert!(status.success(), "{stderr}");
}

/// Each connection failure says what happened and what to do, at once when waiting cannot
/// help, and never shows the password.
#[tokio::test]
async fn connection_failures_name_the_cause_and_do_not_wait_when_waiting_cannot_help() {
    use peregrine_testkit::{TLS_PASSWORD, TLS_USER};
    let tls = PgCluster::shared_tls();
    let plain = PgCluster::shared();
    let (db, ca) = tls_database().await;
    let plain_db = plain.fresh_database_name().await;
    let (tls_port, plain_port) = (tls.port(), plain.port());
    let cases = [
        (
            format!("postgres://{TLS_USER}:wrong-pw-123@localhost:{tls_port}/{db}"),
            vec!["authentication failed", "check the user name and password"],
        ),
        (
            format!("postgres://{TLS_USER}:{TLS_PASSWORD}@localhost:{tls_port}/nodb_here"),
            vec![
                "database \"nodb_here\" does not exist",
                "createdb nodb_here",
            ],
        ),
        (
            format!(
                "postgres://{TLS_USER}:{TLS_PASSWORD}@localhost:{tls_port}/{db}?sslmode=disable"
            ),
            vec!["TLS required", "use sslmode=require or stronger"],
        ),
        (
            format!(
                "postgres://{TLS_USER}:{TLS_PASSWORD}@127.0.0.1:{tls_port}/{db}?sslmode=verify-full&sslrootcert={ca}"
            ),
            vec!["not valid for host 127.0.0.1", "or use sslmode=verify-ca"],
        ),
        (
            format!(
                "postgres://postgres:{TLS_PASSWORD}@127.0.0.1:{plain_port}/{plain_db}?sslmode=require"
            ),
            vec![
                "TLS required but the server at 127.0.0.1",
                "does not offer it",
                "sslmode=prefer",
            ],
        ),
        (
            format!("postgres://:{TLS_PASSWORD}@127.0.0.1:{plain_port}/{plain_db}"),
            vec!["names no user", "PGUSER"],
        ),
        (
            "peregrine.db".to_owned(),
            vec!["--database-url", "write sqlite://peregrine.db"],
        ),
    ];
    let dir = temp_dir();
    for (url, expected) in cases {
        let started = Instant::now();
        let (status, _, stderr) = run_env(
            dir.path(),
            &["serve", "--database-url", &url, "--db-wait", "60s"],
            &[],
        );
        assert_eq!(status.code(), Some(1), "{url}: {stderr}");
        // Far less than --db-wait, with room for a loaded machine (SCRAM's key derivation
        // is slow in a debug build).
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{url}: took {:?}",
            started.elapsed()
        );
        for part in expected {
            assert!(stderr.contains(part), "{url}: lacks {part:?}: {stderr}");
        }
        assert!(
            !stderr.contains("still failing") && !stderr.contains("waited"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("waiting") && !stderr.contains("not ready"),
            "{stderr}"
        );
        assert!(
            !stderr.contains(TLS_PASSWORD) && !stderr.contains("wrong-pw"),
            "{stderr}"
        );
    }
    let (status, _, stderr) = run_env(dir.path(), &["db", "init", "--db-sslmode", "require"], &[]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("apply to PostgreSQL only"), "{stderr}");
    assert!(!dir.path().join("peregrine.db").exists());
}

/// A host name with a label longer than DNS allows fails in the resolver itself, so this
/// sends no query off the machine.
#[test]
fn an_unresolvable_host_is_named_as_such() {
    let host = format!("{}.invalid", "x".repeat(70));
    let url = format!("postgres://app:hunter2@{host}:5432/app");
    let dir = temp_dir();
    let (status, _, stderr) = run_env(
        dir.path(),
        &["serve", "--database-url", &url, "--db-wait", "1s"],
        &[],
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("no such host") && stderr.contains(&host),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}
