//! A corpus of Taurus configs written as they are found in the wild (the docs' examples and
//! CI jobs: login and token correlation, CSV users, included scenarios, transactions, logic
//! blocks, several executions, HTTPS, ...), in `tests/corpus/`. Each runs unchanged against
//! local servers (only `localhost:8080`/`:8443` are pointed at them), with 1 user for about
//! 1 s as `-o` overrides would make it, and must end with exit code 0 having sent requests.

use std::path::Path;
use std::time::Duration;

use peregrine_load::{Report, read_plan};
use peregrine_testkit::{Behavior, LoginApp, TinyServer};

/// The servers a corpus config talks to.
struct Servers {
    app: LoginApp,
    tls: TinyServer,
}

/// Runs `tests/corpus/{name}` and returns its report, with what the servers saw.
#[expect(clippy::unwrap_used, reason = "a test helper")]
async fn run_corpus(name: &str) -> (Report, Servers, Vec<String>) {
    let servers = Servers {
        app: LoginApp::start().await,
        tls: TinyServer::start_tls(Behavior::default()).await,
    };
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let dir = tempfile::tempdir().unwrap();
    for data in ["users.csv", "order.json"] {
        std::fs::copy(corpus.join(data), dir.path().join(data)).unwrap();
    }
    std::fs::write(dir.path().join("ca.pem"), servers.tls.ca_pem().unwrap()).unwrap();
    let text = std::fs::read_to_string(corpus.join(name)).unwrap();
    let tls_base = servers.tls.url("");
    let text = text
        .replace("http://localhost:8080", &servers.app.base())
        .replace(
            "localhost:8080",
            servers.app.base().trim_start_matches("http://"),
        )
        .replace("https://localhost:8443", tls_base.trim_end_matches('/'));
    let file = dir.path().join(name);
    std::fs::write(&file, text).unwrap();
    // As `-o` on the command line: a path from the current directory.
    let ca = dir.path().join("ca.pem");
    let overrides = [format!("modules.peregrine.ca-cert={}", ca.display())];
    let mut plan =
        read_plan(&[file], &overrides).unwrap_or_else(|e| panic!("{name}: {e} {:?}", e.warnings));
    for execution in &mut plan.executions {
        execution.concurrency = 1;
        execution.ramp_up = Duration::ZERO;
        execution.steps = None;
        execution.hold_for = Duration::from_secs(1);
    }
    // Every variable these configs use is defined (extractors, CSV, functions' own).
    assert!(
        !plan
            .warnings
            .iter()
            .any(|w| w.contains("no variable defines it")),
        "{name}: {:?}",
        plan.warnings
    );
    let report = peregrine_load::run(&plan, std::future::pending(), |_| {}).await;
    assert_eq!(
        report.exit_code(),
        0,
        "{name}: {:?} {:?} {:?}",
        report.errors,
        report.ending,
        report.problem
    );
    assert!(report.overall.samples > 0, "{name}: nothing sent");
    (report, servers, plan.warnings)
}

/// The paths (without query) the app received, deduplicated in order.
fn paths(servers: &Servers) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for recorded in servers.app.recorded() {
        let path = recorded.target.split('?').next().unwrap_or("").to_owned();
        if !seen.contains(&path) {
            seen.push(path);
        }
    }
    seen
}

/// Asserts every one of `expected` was requested and nothing failed.
fn sent_all_without_failures(name: &str, report: &Report, servers: &Servers, expected: &[&str]) {
    let seen = paths(servers);
    for path in expected {
        assert!(
            seen.iter().any(|p| p == path),
            "{name}: {path} never sent: {seen:?}"
        );
    }
    assert_eq!(report.overall.failures, 0, "{name}: {:?}", report.errors);
}

macro_rules! corpus {
    ($test:ident, $file:literal, $expected:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let (report, servers, _) = run_corpus($file).await;
            sent_all_without_failures($file, &report, &servers, &$expected);
        }
    };
}

corpus!(quick_test, "01-quick-test.yml", ["/"]);
corpus!(login_token, "02-login-token.yml", ["/login", "/me"]);
corpus!(csv_users, "03-csv-users.yml", ["/login", "/me"]);
corpus!(
    include_scenario,
    "04-include-scenario.yml",
    ["/login", "/items", "/me"]
);
corpus!(
    transactions,
    "05-transactions.yml",
    [
        "/",
        "/items",
        "/cart",
        "/checkout",
        "/orders",
        "/orders/latest"
    ]
);
corpus!(
    logic_blocks,
    "06-logic-blocks.yml",
    ["/items", "/items/1", "/items/3", "/details", "/quick"]
);
corpus!(
    cookies_redirects,
    "11-cookies-redirects.yml",
    ["/session/start", "/session/check", "/redirect/0"]
);
corpus!(
    html_correlation,
    "12-html-correlation.yml",
    ["/page", "/items/1", "/buy"]
);
corpus!(
    think_times_body_file,
    "13-think-times-body-file.yml",
    ["/catalogue", "/orders"]
);
corpus!(
    passfail_services,
    "15-passfail-services.yml",
    ["/health", "/items"]
);
corpus!(
    multi_document,
    "16-multi-document.yml",
    ["/first", "/second"]
);
corpus!(
    settings_env_properties,
    "09-settings-env-properties.yml",
    ["/api/v2/search"]
);
corpus!(throughput_steps, "10-throughput-steps.yml", ["/catalogue"]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_executions_skip_the_ones_peregrine_cannot_run() {
    let name = "07-multiple-executions.yml";
    let (report, servers, warnings) = run_corpus(name).await;
    sent_all_without_failures(name, &report, &servers, &["/api/v1/products", "/health"]);
    for skipped in ["execution.1", "execution.2"] {
        assert!(
            warnings.iter().any(|w| w.starts_with(skipped)),
            "{warnings:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_servers_ca() {
    let (report, servers, _) = run_corpus("08-https.yml").await;
    assert_eq!(report.overall.failures, 0, "{:?}", report.errors);
    assert_eq!(servers.tls.received(), report.overall.samples);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_store_their_results_in_the_variables_they_name() {
    let name = "14-functions-actions.yml";
    let (report, servers, _) = run_corpus(name).await;
    sent_all_without_failures(
        name,
        &report,
        &servers,
        &["/setup", "/orders", "/search", "/echo"],
    );
    let recorded = servers.app.recorded();
    let echoes: Vec<&str> = recorded
        .iter()
        .filter_map(|r| r.target.strip_prefix("/echo?rnd="))
        .collect();
    assert!(!echoes.is_empty());
    for echo in echoes {
        let (rnd, choice) = echo.split_once("&choice=").unwrap_or_default();
        assert!(
            rnd.parse::<u32>().is_ok_and(|n| (1..=100).contains(&n)),
            "{echo}"
        );
        assert!(["a", "b", "c"].contains(&choice), "{echo}");
    }
}
