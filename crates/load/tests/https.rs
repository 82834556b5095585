//! HTTPS end to end against a rustls server on 127.0.0.1 whose certificate a CA made for
//! the test signed: trusted through the config's CA option, refused without it with an
//! error naming the options, accepted with verification off, and connections reused.

use std::path::Path;

use peregrine_load::{Plan, Report, read_plan};
use peregrine_testkit::{Behavior, TinyServer};

/// A plan for `yaml`, written beside a `ca.pem` holding `ca` (when given).
#[expect(
    clippy::unwrap_used,
    reason = "a test helper, outside the tests clippy.toml covers"
)]
fn plan_in(dir: &Path, yaml: &str, ca: Option<&str>) -> Plan {
    if let Some(ca) = ca {
        std::fs::write(dir.join("ca.pem"), ca).unwrap();
    }
    let file = dir.join("test.yml");
    std::fs::write(&file, yaml).unwrap();
    read_plan(&[file], &[]).unwrap()
}

fn config(url: &str, users: u32, iterations: u32, keepalive: bool, extra: &str) -> String {
    format!(
        "execution:\n- concurrency: {users}\n  iterations: {iterations}\n  scenario:\n    keepalive: {keepalive}\n    requests: ['{url}']\n{extra}"
    )
}

async fn run(plan: &Plan) -> Report {
    peregrine_load::run(plan, std::future::pending(), |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_trusted_in_the_config_verifies_and_keepalive_reuses_the_tls_connection() {
    let server = TinyServer::start_tls(Behavior::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // A relative path is found beside the config.
    let yaml = config(
        &server.url("/users/"),
        2,
        25,
        true,
        "modules:\n  peregrine:\n    ca-cert: ca.pem\n",
    );
    let plan = plan_in(dir.path(), &yaml, server.ca_pem());
    let report = run(&plan).await;
    assert_eq!(report.overall.failures, 0, "{:?}", report.errors);
    assert_eq!(report.overall.samples, 50);
    assert_eq!(server.received(), 50);
    // One connection (one handshake) per virtual user.
    assert_eq!(server.connections(), 2);
    assert!(report.overall.avg_tls > 0.0, "{:?}", report.overall);
    assert!(report.overall.avg_ct >= report.overall.avg_tls);
    assert!(report.json().contains("\"avg_tls\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_ca_the_certificate_is_refused_with_an_error_naming_the_options() {
    let server = TinyServer::start_tls(Behavior::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_in(dir.path(), &config(&server.url("/"), 1, 2, true, ""), None);
    let report = run(&plan).await;
    assert_eq!(report.overall.failures, report.overall.samples);
    assert_eq!(server.received(), 0);
    let message = report
        .errors
        .first()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("is not trusted")
            && message.contains("--ca-cert")
            && message.contains("--insecure"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skips_verification_with_one_warning_and_new_connections_shake_hands_each_time() {
    let server = TinyServer::start_tls(Behavior::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan_in(dir.path(), &config(&server.url("/"), 1, 5, false, ""), None);
    plan.skip_verification();
    plan.skip_verification();
    let warned = plan
        .warnings
        .iter()
        .filter(|w| w.contains("verification is OFF"))
        .count();
    assert_eq!(warned, 1, "{:?}", plan.warnings);
    let report = run(&plan).await;
    assert_eq!(report.overall.failures, 0, "{:?}", report.errors);
    assert_eq!(server.received(), 5);
    // keepalive: false: a new connection, and a handshake, for every request.
    assert_eq!(server.connections(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_ca_file_stops_the_run_before_it_starts() {
    let server = TinyServer::start_tls(Behavior::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(
        &server.url("/"),
        1,
        1,
        true,
        "modules:\n  peregrine:\n    ca-cert: missing.pem\n",
    );
    let plan = plan_in(dir.path(), &yaml, None);
    let report = run(&plan).await;
    let problem = report.problem.clone().unwrap_or_default();
    assert!(
        problem.contains("missing.pem") && problem.contains("CA certificate file"),
        "{problem}"
    );
    assert_eq!(server.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_name_is_sent_as_sni_and_checked_against_the_certificate() {
    // Listen where `localhost` resolves first, as the engine connects there.
    let ip = tokio::net::lookup_host(("localhost", 0))
        .await
        .ok()
        .and_then(|mut addresses| addresses.next())
        .map(|address| address.ip())
        .unwrap();
    let server = TinyServer::start_tls_on(Behavior::default(), ip).await;
    let port = server
        .url("")
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("https://localhost:{port}");
    let yaml = config(
        &url,
        1,
        2,
        true,
        "modules:\n  peregrine:\n    ca-cert: ca.pem\n",
    );
    let plan = plan_in(dir.path(), &yaml, server.ca_pem());
    let report = run(&plan).await;
    assert_eq!(report.overall.failures, 0, "{:?}", report.errors);
    assert_eq!(server.server_names(), ["localhost"]);
}
