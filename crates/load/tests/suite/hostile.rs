//! Hostile configs and conditions: what must hold whatever the user types, each against a
//! real HTTP server (or a closed port) on 127.0.0.1.

use std::time::{Duration, Instant};

use peregrine_load::{Ending, Plan, Report, exit_code, plan_from_str, read_plan};
use peregrine_testkit::{Behavior, TinyServer};

fn error_of(yaml: &str) -> String {
    plan_from_str("hostile.yml", yaml, &[])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[expect(
    clippy::unwrap_used,
    reason = "a test helper, outside the tests clippy.toml covers"
)]
fn plan(yaml: &str) -> Plan {
    plan_from_str("hostile.yml", yaml, &[]).unwrap()
}

/// Reads `yaml` as a config and runs it to its end.
async fn run_yaml(yaml: &str) -> Report {
    peregrine_load::run(&plan(yaml), std::future::pending(), |_| {}).await
}

#[test]
fn extreme_numbers_are_rejected_with_their_key_path() {
    let execution = |extra: &str| {
        format!(
            "execution:\n- hold-for: 1s\n  {extra}\n  scenario:\n    requests: ['http://127.0.0.1:1/']\n"
        )
    };
    for (extra, expected) in [
        (
            "throughput: 1e-20",
            "execution.0.throughput: must be a rate from 0.001",
        ),
        ("throughput: -5", "execution.0.throughput: must be a rate"),
        (
            "arrival-rate: 0",
            "execution.0.arrival-rate: must be a rate",
        ),
        (
            "concurrency: 4294967295",
            "execution.0.concurrency: must be a whole number from 1 to 100000",
        ),
        (
            "ramp-up: 100000000000s",
            "execution.0.ramp-up: \"100000000000s\" is longer than",
        ),
    ] {
        let err = error_of(&execution(extra));
        assert!(err.contains(expected), "{extra}: {err}");
    }
    let think = error_of(
        "execution:\n- hold-for: 1s\n  scenario:\n    think-time: 1e300s\n    requests: ['http://127.0.0.1:1/']\n",
    );
    assert!(
        think.starts_with("scenarios") || think.contains("think-time"),
        "{think}"
    );
}

#[test]
fn warnings_come_with_a_validation_error_and_settings_is_warned() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yml");
    std::fs::write(
        &file,
        "settings: {artifacts-dir: x}\nexecution:\n- concurency: 3\n  scenario: missing\n",
    )
    .unwrap();
    let rejected = read_plan(&[file], &[]).err().unwrap();
    assert!(
        rejected.error.to_string().contains("no scenario named"),
        "{rejected}"
    );
    assert!(
        rejected
            .warnings
            .iter()
            .any(|w| w.starts_with("settings.artifacts-dir: a Taurus key")),
        "{:?}",
        rejected.warnings
    );
    assert!(
        rejected
            .warnings
            .iter()
            .any(|w| w.starts_with("execution.0.concurency: ")
                && w.contains("did you mean `concurrency`?")),
        "{:?}",
        rejected.warnings
    );
}

#[test]
fn an_undefined_variable_is_warned_once_per_name() {
    let plan = plan(
        "execution:\n- iterations: 1\n  scenario:\n    variables: {id: 7}\n    requests: ['http://127.0.0.1:1/${id}/${who}', 'http://127.0.0.1:1/${who}']\n",
    );
    let warned: Vec<_> = plan
        .warnings
        .iter()
        .filter(|w| w.contains("${who}"))
        .collect();
    assert_eq!(warned.len(), 1, "{:?}", plan.warnings);
    assert!(!plan.warnings.iter().any(|w| w.contains("${id}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_think_time_in_progress_ends_at_the_deadline() {
    let server = TinyServer::start(Behavior::default()).await;
    let started = Instant::now();
    let report = run_yaml(&format!(
        "execution:\n- concurrency: 2\n  hold-for: 1s\n  scenario:\n    think-time: 1m\n    requests: ['{}']\n",
        server.url("/")
    )).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The think-time comes before each request (a JMeter timer), so none was sent.
    assert_eq!(report.overall.samples, 0);
    assert_eq!(report.ending, Ending::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_an_assertion_reads_is_capped() {
    let server = TinyServer::start(Behavior::default()).await;
    let report = run_yaml(&format!(
        "execution:\n- iterations: 1\n  scenario:\n    assert-body-limit: 8\n    requests:\n    - url: '{}'\n      assert: ['username']\n",
        server.url("/")
    )).await;
    assert_eq!(report.overall.failures, 1);
    assert!(
        report.errors[0]
            .message
            .contains("over the 8 bytes an assertion may read (assert-body-limit)"),
        "{:?}",
        report.errors
    );
    let bad = error_of(
        "execution:\n- iterations: 1\n  scenario:\n    assert-body-limit: 0\n    requests: ['http://127.0.0.1:1/']\n",
    );
    assert!(bad.contains("assert-body-limit: must be a size"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connect_failing_in_the_first_seconds_stops_the_run_with_exit_1() {
    let port = peregrine_testkit::free_port().unwrap();
    let started = Instant::now();
    let report = run_yaml(&format!(
        "execution:\n- concurrency: 4\n  hold-for: 30s\n  scenario:\n    requests: ['http://127.0.0.1:{port}/']\n"
    )).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.ending, Ending::Aborted);
    assert_eq!(report.exit_code(), exit_code::TOOL_ERROR);
    let problem = report.problem.unwrap_or_default();
    assert!(
        problem.contains("failed to connect") && problem.contains("refused"),
        "{problem}"
    );
}

/// With no queueing (a fast local route at a rate far below what it serves), the open
/// model's corrected latency counts from the due time and the service time from the send:
/// they must agree to within tens of microseconds, or the timer's lag is charged to the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_model_sends_on_time() {
    let server = TinyServer::start(Behavior::default()).await;
    let report = run_yaml(&format!(
        "execution:\n- arrival-rate: 200\n  concurrency: 4\n  hold-for: 2s\n  scenario:\n    requests: ['{}']\n",
        server.url("/")
    )).await;
    let corrected = report.overall.percentile(50.0).unwrap_or(f64::NAN);
    let service = report.overall.service_percentile(50.0).unwrap_or(f64::NAN);
    let gap = corrected - service;
    eprintln!(
        "open model at 200/s: corrected p50 is {:.1} µs above service p50",
        gap * 1e6
    );
    assert!(report.overall.samples >= 350, "{}", report.overall.samples);
    // Quiet, the two agree within about 20 µs; the bound leaves room for a busy 2-core
    // machine's scheduling delays while still failing the millisecond lag of a plain timer.
    assert!(
        (-0.000_020..0.000_100).contains(&gap),
        "corrected p50 {corrected:.6} s, service p50 {service:.6} s: {:.0} µs apart",
        gap * 1e6
    );
}
