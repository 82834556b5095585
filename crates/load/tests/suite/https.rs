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

/// A self-signed certificate for `names`, CA:TRUE as `openssl req -x509` makes one, valid
/// from `not_before` to `not_after` (years): (certificate PEM, key PEM).
#[expect(
    clippy::unwrap_used,
    reason = "a test helper, outside the tests clippy.toml covers"
)]
fn self_signed(names: &[&str], not_before: i32, not_after: i32) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    params.not_before = rcgen::date_time_ymd(not_before, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The first error message of a run against `server` with `ca` (if any) as the CA file.
#[expect(
    clippy::unwrap_used,
    reason = "a test helper, outside the tests clippy.toml covers"
)]
async fn first_error(server: &TinyServer, url: &str, ca: Option<&str>) -> (Report, String) {
    let dir = tempfile::tempdir().unwrap();
    let extra = if ca.is_some() {
        "modules:\n  peregrine:\n    ca-cert: ca.pem\n"
    } else {
        ""
    };
    let plan = plan_in(dir.path(), &config(url, 1, 2, true, extra), ca);
    let report = run(&plan).await;
    let message = report
        .errors
        .first()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    assert!(server.connections() > 0 || report.problem.is_some());
    (report, message)
}

/// No internal name of rustls or webpki (`CaUsedAsEndEntity`, `UnknownIssuer`,
/// `NotValidForNameContext`…) reaches the user.
fn in_words(message: &str) {
    for name in [
        "CaUsedAsEndEntity",
        "UnknownIssuer",
        "NotValidForName",
        "Expired",
        "InvalidCertificate",
        "Other(",
    ] {
        assert!(!message.contains(name), "{name} in {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_ca_certificate_given_as_the_ca_is_trusted_as_curl_cacert_trusts_it() {
    let (cert, key) = self_signed(&["localhost", "127.0.0.1"], 2020, 4000);
    let server =
        TinyServer::start_tls_with(Behavior::default(), [127, 0, 0, 1].into(), &cert, &key).await;
    let (report, message) = first_error(&server, &server.url("/"), Some(&cert)).await;
    assert_eq!(report.overall.failures, 0, "{message}");
    assert_eq!(report.overall.samples, 2);
    assert_eq!(server.received(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_self_signed_certificate_still_has_its_host_name_and_dates_checked() {
    // Only for `localhost`: reached as 127.0.0.1, the name does not match.
    let (cert, key) = self_signed(&["localhost"], 2020, 4000);
    let server =
        TinyServer::start_tls_with(Behavior::default(), [127, 0, 0, 1].into(), &cert, &key).await;
    let (report, message) = first_error(&server, &server.url("/"), Some(&cert)).await;
    assert_eq!(report.overall.failures, 2, "{message}");
    assert!(
        message.contains("it is for localhost, not 127.0.0.1")
            && message.contains("connect by a name the certificate lists")
            && !message.contains("--ca-cert"),
        "{message}"
    );
    in_words(&message);
    assert_eq!(server.received(), 0);

    let (cert, key) = self_signed(&["127.0.0.1"], 2001, 2002);
    let expired =
        TinyServer::start_tls_with(Behavior::default(), [127, 0, 0, 1].into(), &cert, &key).await;
    let (report, message) = first_error(&expired, &expired.url("/"), Some(&cert)).await;
    assert_eq!(report.overall.failures, 2, "{message}");
    assert!(
        message.contains("it expired at 2002-01-01") && !message.contains("--ca-cert"),
        "{message}"
    );
    in_words(&message);
    assert_eq!(expired.received(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_explained_in_words_and_a_given_ca_is_not_suggested_again() {
    let (cert, key) = self_signed(&["127.0.0.1"], 2020, 4000);
    let server =
        TinyServer::start_tls_with(Behavior::default(), [127, 0, 0, 1].into(), &cert, &key).await;
    // Nothing given: the hint is --ca-cert (or --insecure).
    let (_, message) = first_error(&server, &server.url("/"), None).await;
    assert!(
        message.contains("is not trusted")
            && message.contains("trust it with --ca-cert FILE")
            && message.contains("--insecure"),
        "{message}"
    );
    in_words(&message);
    // Another certificate given: the file is named as not holding it, --ca-cert is not
    // suggested again.
    let (other, _) = self_signed(&["127.0.0.1"], 2020, 4000);
    let (report, message) = first_error(&server, &server.url("/"), Some(&other)).await;
    assert_eq!(report.overall.failures, 2);
    assert!(
        message.contains("ca.pem")
            && message
                .contains("holds neither the CA that signed it nor the server's own certificate")
            && !message.contains("--ca-cert")
            && message.contains("--insecure"),
        "{message}"
    );
    in_words(&message);
}

/// An https URL decided at run time (a CSV column) gets its TLS session from the run's
/// setup, made when the first one is sent, with the config's CA and SNI for its host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_url_from_a_csv_column_is_verified_with_the_configs_ca() {
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
    let plain = TinyServer::start(Behavior::default()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("urls.csv"),
        format!(
            "url\nhttps://localhost:{port}/secure\n{}\n",
            plain.url("/plain")
        ),
    )
    .unwrap();
    let yaml = "execution:\n- iterations: 4\n  scenario:\n    data-sources: [urls.csv]\n    requests: ['${url}']\nmodules:\n  peregrine:\n    ca-cert: ca.pem\n";
    let plan = plan_in(dir.path(), yaml, server.ca_pem());
    let report = run(&plan).await;
    assert_eq!(report.overall.failures, 0, "{:?}", report.errors);
    assert_eq!((server.received(), plain.received()), (2, 2));
    assert!(
        server.server_names().iter().all(|n| n == "localhost") && !server.server_names().is_empty(),
        "{:?}",
        server.server_names()
    );
}
