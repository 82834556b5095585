//! Connecting as libpq does, against real private clusters: one with TLS (a CA made by the
//! test, a certificate for `localhost`, TCP clients admitted only over TLS with a password)
//! and one without. Each sslmode connects or refuses as libpq would, and every refusal
//! says why, at once, without the password.

use std::path::Path;
use std::time::{Duration, Instant};

use peregrine_store::{DatabaseUrl, PgOptions, StoreError, UserStore};
use peregrine_testkit::{PgCluster, TLS_PASSWORD, TLS_USER};

/// How long [`connect`] waits for a server that refuses connections.
const WAIT: Duration = Duration::from_secs(60);

/// Opens `url` and waits (at most [`WAIT`]) for it to accept a connection.
async fn connect(url: &str) -> Result<(), StoreError> {
    let url = DatabaseUrl::parse(url, &PgOptions::default())?;
    let store = UserStore::open(&url, 1)?;
    store.wait_until_ready(WAIT).await
}

/// The TLS cluster's URL for database `db` on `host` with `query`, as the
/// password-authenticated user.
fn tls_url(db: &str, host: &str, query: &str) -> String {
    let cluster = PgCluster::shared_tls();
    format!(
        "postgres://{TLS_USER}:{TLS_PASSWORD}@{host}:{}/{db}?{query}",
        cluster.port()
    )
}

fn path(file: &Path) -> String {
    file.display().to_string()
}

/// Connecting must fail at once (no waiting) with a message holding every one of `parts`.
async fn refused(url: &str, parts: &[&str]) {
    let started = Instant::now();
    let err = match connect(url).await {
        Ok(()) => panic!("{url} connected"),
        Err(err) => err,
    };
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::Config(_)),
        "waiting cannot fix this, so it is not 'unavailable': {text}"
    );
    // Far less than WAIT, with room for a loaded machine.
    assert!(started.elapsed() < WAIT / 2, "took {:?}", started.elapsed());
    for part in parts {
        assert!(text.contains(part), "{url}: {text:?} lacks {part:?}");
    }
    assert!(!text.contains(TLS_PASSWORD), "{text}");
}

#[tokio::test]
async fn each_sslmode_connects_or_refuses_a_tls_server_as_libpq_does() {
    let cluster = PgCluster::shared_tls();
    let ca = path(&cluster.ca_file());
    let other_ca = path(&cluster.other_ca_file());
    let db = cluster.fresh_database_name().await;
    // The server admits TCP clients only over TLS, so every success below is encrypted.
    for query in [
        "sslmode=prefer".to_owned(),
        String::new(),
        "sslmode=require".to_owned(),
        format!("sslmode=require&sslrootcert={ca}"),
        format!("sslmode=verify-ca&sslrootcert={ca}"),
    ] {
        let url = tls_url(&db, "127.0.0.1", &query);
        connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
    }
    let url = tls_url(
        &db,
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    connect(&url)
        .await
        .unwrap_or_else(|e| panic!("verify-full: {e}"));
    // SCRAM over TLS with channel binding (SCRAM-SHA-256-PLUS), which managed servers may demand.
    let url = tls_url(&db, "localhost", "sslmode=require&channel_binding=require");
    connect(&url)
        .await
        .unwrap_or_else(|e| panic!("channel_binding=require: {e}"));

    refused(
        &tls_url(&db, "127.0.0.1", "sslmode=disable"),
        &["TLS required", "use sslmode=require or stronger"],
    )
    .await;
    // The certificate is for localhost, not 127.0.0.1: only verify-full checks the name.
    refused(
        &tls_url(
            &db,
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        &["not valid for host 127.0.0.1:", "verify-ca"],
    )
    .await;
    for mode in ["require", "verify-ca", "verify-full"] {
        let query = format!("sslmode={mode}&sslrootcert={other_ca}");
        refused(
            &tls_url(&db, "localhost", &query),
            &["not signed by a CA in sslrootcert=", "other-ca.crt"],
        )
        .await;
    }
    // The system's roots do not include the test's own CA (or there are none here).
    refused(
        &tls_url(&db, "localhost", "sslrootcert=system"),
        &["system"],
    )
    .await;
    let no_root = tls_url(&db, "localhost", "sslmode=verify-ca");
    if !Path::new(&format!(
        "{}/.postgresql/root.crt",
        std::env::var("HOME").unwrap_or_default()
    ))
    .exists()
    {
        refused(&no_root, &["sslmode=verify-ca needs the CA", "sslrootcert"]).await;
    }
}

#[tokio::test]
async fn a_server_without_tls_is_refused_by_require_and_used_by_prefer() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database_name().await;
    let base = format!("postgres://postgres@127.0.0.1:{}/{db}", cluster.port());
    connect(&format!("{base}?sslmode=prefer"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    connect(&format!("{base}?sslmode=disable"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for mode in ["require", "verify-full"] {
        let ca = path(&PgCluster::shared_tls().ca_file());
        refused(
            &format!("{base}?sslmode={mode}&sslrootcert={ca}"),
            &[
                "TLS required but the server at 127.0.0.1:",
                "does not offer it",
            ],
        )
        .await;
    }
    // libpq never uses TLS over a Unix socket, whatever sslmode says.
    let socket = format!(
        "postgresql://postgres@/{db}?host={}&port={}&sslmode=require",
        cluster.socket_dir().display(),
        cluster.port()
    );
    connect(&socket).await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn wrong_passwords_and_missing_databases_fail_at_once_with_the_cause() {
    let cluster = PgCluster::shared_tls();
    let wrong = format!(
        "postgres://{TLS_USER}:not-the-password@127.0.0.1:{}/postgres?sslmode=require",
        cluster.port()
    );
    refused(
        &wrong,
        &["authentication failed", "check the user name and password"],
    )
    .await;
    let missing = format!(
        "postgres://{TLS_USER}:{TLS_PASSWORD}@127.0.0.1:{}/no_such_db?sslmode=require",
        cluster.port()
    );
    refused(
        &missing,
        &["\"no_such_db\" does not exist", "createdb no_such_db"],
    )
    .await;
}

#[tokio::test]
async fn a_refused_port_is_retried_until_the_wait_ends_and_named() {
    let port = peregrine_testkit::free_port().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("postgres://app:{TLS_PASSWORD}@127.0.0.1:{port}/app");
    let started = Instant::now();
    let url = DatabaseUrl::parse(&url, &PgOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let store = UserStore::open(&url, 1).unwrap_or_else(|e| panic!("{e}"));
    let err = store
        .wait_until_ready(Duration::from_millis(800))
        .await
        .err();
    let text = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(
        matches!(err, Some(StoreError::Unavailable { .. })),
        "{text}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "it should have retried"
    );
    assert!(
        text.contains(&format!("connection refused by 127.0.0.1:{port}"))
            && text.contains("still failing after"),
        "{text}"
    );
    assert!(!text.contains(TLS_PASSWORD), "{text}");
}

#[tokio::test]
async fn a_server_that_accepts_but_never_answers_fails_the_probe_at_its_deadline() {
    // A listener whose backlog takes the TCP connection and which never says a word: a hung
    // host. Without a deadline of its own the probe would wait forever.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = silent.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let url = DatabaseUrl::parse(&url, &PgOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let store = UserStore::open(&url, 1)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let waited = tokio::time::timeout(
        Duration::from_secs(20),
        store.wait_until_ready(Duration::from_millis(600)),
    )
    .await;
    let err = match waited {
        Ok(result) => result.err(),
        Err(_) => panic!("the probe of a silent server hung"),
    };
    let text = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(
        matches!(err, Some(StoreError::Unavailable { .. })),
        "{text}"
    );
    assert!(text.contains("no answer within the deadline"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

#[tokio::test]
async fn a_missing_sslrootcert_file_is_refused_when_the_store_opens_naming_it() {
    // Parsing reads no file; opening the store sets TLS up, before any connection.
    let url = "postgres://u@127.0.0.1:1/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem";
    assert!(DatabaseUrl::parse(url, &PgOptions::default()).is_ok());
    refused(
        url,
        &[
            "cannot read sslrootcert file /nonexistent/ca.pem",
            "sslrootcert from the database URL",
        ],
    )
    .await;
}
