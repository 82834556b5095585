//! The load generator end to end against real HTTP servers on 127.0.0.1: timings, counts,
//! models, errors, criteria and every reporter's output. Over 600 lines: each reporter and
//! model is checked against a server of its own, the configs written inline.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use peregrine_load::QuickTest;
use peregrine_load::{ConfigError, Ending, LatencyKind, Plan, Report, exit_code, read_plan};
use peregrine_testkit::{Behavior, TinyServer};

/// Writes `yaml` to a temp file and reads it as a plan.
#[expect(
    clippy::unwrap_used,
    reason = "a test helper, outside the tests clippy.toml covers"
)]
fn plan_from(yaml: &str) -> Result<Plan, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("test.yml");
    std::fs::write(&file, yaml).unwrap();
    read_plan(&[file], &[]).map_err(|rejected| rejected.error)
}

#[expect(
    clippy::unwrap_used,
    reason = "a test helper, outside the tests clippy.toml covers"
)]
fn plan(yaml: &str) -> Plan {
    plan_from(yaml).unwrap()
}

async fn run(plan: Plan) -> Report {
    peregrine_load::run(&plan, std::future::pending(), |_| {}).await
}

fn percentile(report: &Report, level: f64) -> f64 {
    report.overall.percentile(level).unwrap_or(f64::NAN)
}

fn service_percentile(report: &Report, level: f64) -> f64 {
    report.overall.service_percentile(level).unwrap_or(f64::NAN)
}

fn quick(url: String) -> QuickTest {
    QuickTest {
        url,
        concurrency: Some(5),
        ramp_up: Duration::ZERO,
        hold_for: Duration::from_secs(2),
        iterations: None,
        timeout: Duration::from_secs(3),
        rate: None,
        throughput: None,
        headers: Vec::new(),
        method: "GET".into(),
        body: None,
        keepalive: true,
    }
}

/// Measures to 2 ms: runs while no other test of this module does (`quiet::measuring`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_50ms_server_gives_p50_between_50_and_52ms() {
    let _quiet = peregrine_testkit::quiet::measuring().await;
    let server = TinyServer::start(Behavior {
        delay: Duration::from_millis(50),
        ..Behavior::default()
    })
    .await;
    let report = run(peregrine_load::from_quick(&quick(server.url("/users/"))).unwrap()).await;
    let p50 = percentile(&report, 50.0);
    assert!((0.050..=0.052).contains(&p50), "p50 = {p50}");
    assert_eq!(report.overall.failures, 0);
    assert!(report.overall.samples >= 150, "{}", report.overall.samples);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_equal_the_requests_the_server_received() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior {
        delay: Duration::from_millis(2),
        ..Behavior::default()
    })
    .await;
    let report = run(plan(&format!(
        "execution:\n- concurrency: 8\n  ramp-up: 500ms\n  hold-for: 1500ms\n  scenario:\n    requests:\n    - {}\n    - url: {}\n      label: second\n",
        server.url("/a"),
        server.url("/b")
    )))
    .await;
    assert!(report.overall.samples > 100);
    assert_eq!(report.overall.samples, server.received());
    let per_label: u64 = report.labels.iter().map(|l| l.summary.samples).sum();
    assert_eq!(per_label, report.overall.samples);
    let seconds: u64 = report.timeline.iter().map(|s| s.overall.hits).sum();
    assert_eq!(
        seconds, report.overall.samples,
        "the timeline accounts for every sample"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterations_bound_the_passes_per_user() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior::default()).await;
    let report = run(plan(&format!(
        "execution:\n  concurrency: 3\n  iterations: 4\n  scenario:\n    requests: ['{}', '{}']\n",
        server.url("/x"),
        server.url("/y")
    )))
    .await;
    assert_eq!(report.overall.samples, 3 * 4 * 2);
    assert_eq!(server.received(), 24);
    assert_eq!(report.exit_code(), exit_code::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_up_then_hold_for_sets_users_and_duration() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior {
        delay: Duration::from_millis(5),
        ..Behavior::default()
    })
    .await;
    let started = Instant::now();
    let report = run(plan(&format!(
        "execution:\n- concurrency: 10\n  ramp-up: 2s\n  hold-for: 1s\n  scenario: s\nscenarios:\n  s:\n    requests: ['{}']\n",
        server.url("/")
    )))
    .await;
    let took = started.elapsed().as_secs_f64();
    assert!((2.9..3.6).contains(&took), "took {took}");
    let users: Vec<u64> = report.timeline.iter().map(|s| s.users).collect();
    // Users start every 200 ms; each second shows the users active in its middle.
    // (A user due within 100 ms of a sample may land either side of it on a busy machine.)
    assert!(
        (2..=4).contains(&users[0]) && (7..=9).contains(&users[1]),
        "{users:?}"
    );
    assert_eq!(users[2], 10, "{users:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_raise_users_in_stairs() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior {
        delay: Duration::from_millis(5),
        ..Behavior::default()
    })
    .await;
    let report = run(plan(&format!(
        "execution:\n- concurrency: 8\n  ramp-up: 2s\n  steps: 2\n  hold-for: 1s\n  scenario:\n    requests: ['{}']\n",
        server.url("/")
    )))
    .await;
    let users: Vec<u64> = report.timeline.iter().map(|s| s.users).collect();
    assert_eq!(users[0], 4, "{users:?}");
    assert_eq!(users[1], 8, "{users:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_caps_the_request_rate() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior::default()).await;
    let report = run(plan(&format!(
        "execution:\n- concurrency: 20\n  hold-for: 3s\n  throughput: 50\n  scenario:\n    requests: ['{}']\n",
        server.url("/")
    )))
    .await;
    let samples = report.overall.samples;
    assert!(
        (140..=160).contains(&samples),
        "{samples} samples for 50/s over 3 s"
    );
}

/// Open model: a 1 s stall shows in the corrected percentiles, not in the service times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_model_run_shows_a_stall_in_corrected_latency_only() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior {
        stall: Some((Duration::from_millis(1500), Duration::from_secs(1))),
        ..Behavior::default()
    })
    .await;
    let mut test = quick(server.url("/users/7"));
    test.rate = Some(400.0);
    test.concurrency = Some(10);
    test.hold_for = Duration::from_secs(4);
    let report = run(peregrine_load::from_quick(&test).unwrap()).await;
    assert_eq!(report.latency, LatencyKind::Corrected);
    let corrected_p90 = percentile(&report, 90.0);
    let service_p99 = service_percentile(&report, 99.0);
    assert!(corrected_p90 > 0.2, "corrected p90 = {corrected_p90}");
    assert!(service_p99 < 0.1, "uncorrected p99 = {service_p99}");
    assert!(percentile(&report, 100.0) > 0.9);
    let rate = report.rate.expect("open model reports its rate");
    assert!((rate.requested - 400.0).abs() < 1e-9);
    assert!(
        (350.0..=450.0).contains(&rate.achieved),
        "achieved {}",
        rate.achieved
    );
    assert_eq!(report.overall.samples, server.received());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_model_that_cannot_keep_up_says_so() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior {
        delay: Duration::from_millis(100),
        ..Behavior::default()
    })
    .await;
    let mut test = quick(server.url("/"));
    test.rate = Some(200.0);
    test.concurrency = Some(2);
    let report = run(peregrine_load::from_quick(&test).unwrap()).await;
    let rate = report.rate.expect("open model reports its rate");
    assert!(rate.below_target && rate.achieved < 30.0, "{rate:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_completes_with_connect_errors() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let port = peregrine_testkit::free_port().unwrap();
    let mut test = quick(format!("http://127.0.0.1:{port}/"));
    test.hold_for = Duration::from_secs(1);
    let started = Instant::now();
    let report = run(peregrine_load::from_quick(&test).unwrap()).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(report.overall.samples > 0);
    assert_eq!(report.overall.failures, report.overall.samples);
    assert!(
        report
            .errors
            .iter()
            .all(|e| e.message.contains("cannot connect")),
        "{:?}",
        report.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_statuses_and_assertions_are_errors_by_kind() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let slow = TinyServer::start(Behavior {
        delay: Duration::from_millis(400),
        ..Behavior::default()
    })
    .await;
    let missing = TinyServer::start(Behavior {
        status: 404,
        body: "{\"title\":\"Not Found\"}",
        ..Behavior::default()
    })
    .await;
    let ok = TinyServer::start(Behavior::default()).await;
    let report = run(plan(&format!(
        "execution:\n  concurrency: 2\n  iterations: 3\n  scenario:\n    requests:\n    - url: {}\n      label: slow\n      timeout: 100ms\n    - url: {}\n      label: missing\n    - url: {}\n      label: checked\n      assert:\n      - e60202a4\n      - contains: [nobody-here]\n        not: true\n    - url: {}\n      label: wrong\n      assert:\n      - contains: ['\"nope\"']\n        regexp: false\n",
        slow.url("/"), missing.url("/"), ok.url("/"), ok.url("/")
    )))
    .await;
    let label = |name: &str| {
        report
            .labels
            .iter()
            .find(|l| l.label == name)
            .map(|l| l.summary.clone())
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert_eq!(label("slow").failures, 6);
    assert_eq!(label("missing").failures, 6);
    assert_eq!(label("checked").failures, 0, "{:?}", report.errors);
    assert_eq!(label("wrong").failures, 6);
    let kinds: Vec<(String, String)> = report
        .errors
        .iter()
        .map(|e| (e.label.clone(), e.message.clone()))
        .collect();
    assert!(
        kinds.contains(&("missing".into(), "HTTP 404 Not Found".into())),
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|(l, m)| l == "slow" && m.starts_with("no response within")),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().any(|(l, m)| l == "wrong"
            && m == "assertion failed: body does not contain \"\\\"nope\\\"\""),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_criterion_with_a_timeframe_stops_the_test_with_exit_code_3() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior {
        delay: Duration::from_millis(30),
        ..Behavior::default()
    })
    .await;
    let started = Instant::now();
    let report = run(plan(&format!(
        "execution:\n- concurrency: 2\n  hold-for: 20s\n  scenario:\n    requests: [{{url: '{}', label: api}}]\nreporting:\n- module: passfail\n  criteria:\n  - avg-rt of api>10ms for 2s, stop as failed\n  - fail>50%\n",
        server.url("/")
    )))
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "stopped after {:?}",
        started.elapsed()
    );
    assert_eq!(report.ending, Ending::StoppedByCriterion);
    assert_eq!(report.exit_code(), exit_code::CRITERIA_FAILED);
    assert_eq!(
        report.criteria[0].verdict,
        "Failed: avg-rt of api>10ms for 2 sec"
    );
    assert!(report.criteria[0].failed);
    assert!(!report.criteria[1].triggered, "{:?}", report.criteria[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_criteria_and_continue_as_non_failed() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior {
        status: 500,
        ..Behavior::default()
    })
    .await;
    let report = run(plan(&format!(
        "execution:\n  concurrency: 1\n  iterations: 5\n  scenario:\n    requests: ['{}']\nreporting:\n- module: passfail\n  criteria:\n  - rc5??>=100%, continue as non-failed\n  - Too many: hits>100\n",
        server.url("/")
    )))
    .await;
    assert!(report.criteria[0].triggered && !report.criteria[0].failed);
    assert_eq!(report.criteria[0].verdict, "Notice: rc5??>=100%");
    assert!(!report.criteria[1].triggered);
    assert_eq!(report.criteria[1].message.as_deref(), Some("Too many"));
    assert_eq!(report.exit_code(), exit_code::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_stops_cleanly_with_partial_results() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior::default()).await;
    let mut test = quick(server.url("/"));
    test.hold_for = Duration::from_secs(30);
    let plan = peregrine_load::from_quick(&test).unwrap();
    let started = Instant::now();
    let report = peregrine_load::run(
        &plan,
        tokio::time::sleep(Duration::from_millis(1200)),
        |_| {},
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(report.ending, Ending::Interrupted);
    assert_eq!(report.exit_code(), exit_code::INTERRUPTED);
    assert!(report.overall.samples > 0);
    assert_eq!(report.overall.samples, server.received());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reporter_writes_what_it_promises() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior {
        delay: Duration::from_millis(1),
        ..Behavior::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let plan = plan(&format!(
        "execution:\n- concurrency: 2\n  hold-for: 2s\n  scenario:\n    requests: [{{url: '{}', label: api}}, {{url: '{}', label: 'a,b'}}]\nreporting:\n- module: final-stats\n  dump-xml: {}\n  dump-csv: {}\n- module: junit-xml\n  filename: {}\n  data-source: pass-fail\n- module: passfail\n  criteria: ['p99>5s']\n",
        server.url("/"),
        server.url("/q"),
        path("final.xml"),
        path("final.csv"),
        path("passfail.xml")
    ));
    let report = run(plan.clone()).await;
    let written = report.write_configured(&plan).unwrap();
    assert_eq!(written.len(), 3);
    let out = dir.path().join("out");
    let files = report.write_dir(&out).unwrap();
    assert_eq!(files.len(), 4);
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();

    let json: serde_json::Value = serde_json::from_str(&read(out.join("report.json"))).unwrap();
    assert_eq!(json["schema"], "peregrine-load-report/2");
    assert_eq!(json["overall"]["samples"], report.overall.samples);
    assert_eq!(json["labels"][0]["label"], "api");
    assert_eq!(
        json["overall"]["percentiles"].as_array().map(Vec::len),
        Some(7)
    );
    assert!(json["timeline"].as_array().is_some_and(|t| t.len() >= 2));

    let csv = read(out.join("timeline.csv"));
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("second,users,requests,errors,bytes,avg_rt,p50,p90,p99")
    );
    let total: u64 = lines
        .map(|l| {
            l.split(',')
                .nth(2)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(total, report.overall.samples);

    let junit = read(out.join("junit.xml"));
    assert!(
        junit.contains("<testsuite name=\"peregrine_sample_labels\"")
            && junit.contains("name=\"a,b\""),
        "{junit}"
    );
    let pass_fail = read(dir.path().join("passfail.xml"));
    assert!(
        pass_fail.contains("<testcase classname=\"peregrine.passfail\" name=\"p99&gt;5s\"/>"),
        "{pass_fail}"
    );

    let final_xml = read(dir.path().join("final.xml"));
    assert!(
        final_xml.starts_with("<?xml")
            && final_xml.contains("<Group label=\"api\">")
            && final_xml.contains("<Group label=\"\">")
    );
    assert!(
        final_xml.contains("<name>perc/95.0</name>") && final_xml.contains("<rc value="),
        "{final_xml}"
    );
    // Taurus's `concurrency` KPI: the 2 users, in every group (two labels and the total).
    assert_eq!(
        final_xml
            .matches("<concurrency value=\"2\">\n      <name>concurrency</name>\n      <value>2</value>\n    </concurrency>")
            .count(),
        3,
        "{final_xml}"
    );
    let final_csv = read(dir.path().join("final.csv"));
    let header = final_csv.lines().next().unwrap_or_default();
    assert!(header.starts_with("label,avg_ct,avg_lt,avg_rt,bytes,concurrency,fail,stdev_rt,succ,throughput,perc_0.0,perc_50.0"), "{header}");
    assert!(header.ends_with(",rc_200"), "{header}");
    assert_eq!(
        final_csv.lines().count(),
        4,
        "two labels and the total: {final_csv}"
    );
    assert!(final_csv.contains("\n\"a,b\","), "{final_csv}");

    let html = read(out.join("report.html"));
    assert!(html.contains("<svg class=\"chart\" data-chart=\"latency\""));
    // The page names its targets' URLs as text; it must not load anything from one.
    let loads = [
        "src=",
        "href=",
        "url(",
        "@import",
        "fetch(",
        "XMLHttpRequest",
    ];
    assert!(
        !loads.iter().any(|l| html.contains(l)),
        "the HTML report must load nothing"
    );
}

#[test]
fn config_errors_name_the_file_line_and_column_or_the_key_path() {
    let syntax = plan_from("execution:\n  - concurrency: 1\n   hold-for: [\n")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        syntax.contains("test.yml") && syntax.contains("line"),
        "{syntax}"
    );
    let cases = [
        (
            "execution:\n  concurrency: 1\n  hold-for: 2 minutes\n  scenario: {requests: ['http://127.0.0.1:1/']}\n",
            "execution.0.hold-for: invalid duration",
        ),
        (
            "execution:\n  concurrency: 1\n  scenario: {requests: ['ftp://x/']}\n",
            "execution.0.scenario.requests.0.url:",
        ),
        (
            "execution:\n  concurrency: 1\n  scenario: {requests: ['/relative']}\n",
            "no default-address",
        ),
        (
            "execution:\n  concurrency: 0\n  scenario: {requests: ['http://127.0.0.1:1/']}\n",
            "execution.0.concurrency: must be a whole number from 1 to 100000",
        ),
        (
            "execution:\n  scenario: missing\n",
            "execution.0.scenario: no scenario named \"missing\"",
        ),
        (
            "execution:\n  scenario: {requests: ['http://127.0.0.1:1/']}\nreporting:\n- module: passfail\n  criteria: ['avg-rt>fast']\n",
            "reporting.0.criteria.0: invalid duration",
        ),
        (
            "execution:\n  scenario: {requests: [{url: 'http://127.0.0.1:1/', label: api}]}\nreporting:\n- module: passfail\n  criteria: ['avg-rt of apj>1s']\n",
            "criterion names label \"apj\", which no request has (labels: api)",
        ),
        ("{}", "execution: no execution"),
    ];
    for (yaml, expected) in cases {
        let err = plan_from(yaml)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(expected), "{yaml}\n=> {err}");
    }
}

#[test]
fn unimplemented_keys_warn_by_path_and_the_run_goes_on() {
    let plan = plan(
        "execution:\n- executor: gatling\n  concurrency: 2\n  scenario:\n    store-cache: true\n    requests:\n    - url: http://127.0.0.1:1/\n      upload-files: []\nreporting:\n- blazemeter\n",
    );
    let warnings = plan.warnings.join("\n");
    for expected in [
        "execution.0.executor: executor \"gatling\" is not used",
        "execution.0.scenario.store-cache: a Taurus key Peregrine does not implement",
        "execution.0.scenario.requests.0.upload-files: a Taurus key Peregrine does not implement",
        "reporting.0: reporter \"blazemeter\" is not implemented",
    ] {
        assert!(warnings.contains(expected), "{warnings}");
    }
    assert_eq!(plan.executions[0].concurrency, 2);
}

#[test]
fn the_tutorials_config_runs_unchanged_with_an_override() {
    let tutorial = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/bzt-config.yml");
    let plan = read_plan(
        &[PathBuf::from(tutorial)],
        &["execution.0.scenario.requests.0.url=http://127.0.0.1:8000/users/".into()],
    )
    .unwrap();
    let execution = &plan.executions[0];
    assert_eq!(execution.concurrency, 100);
    assert_eq!(execution.ramp_up, Duration::from_secs(60));
    assert_eq!(execution.hold_for, Duration::from_secs(150));
    let request = &execution.scenario.requests[0];
    assert_eq!(
        (
            request.authority.as_str(),
            request.target.to_string().as_str()
        ),
        ("127.0.0.1:8000", "/users/")
    );
    assert_eq!(plan.labels, ["api"]);
    assert_eq!(request.timeout, Duration::from_secs(3));
}

#[test]
fn files_merge_as_taurus_merges_them() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.yml");
    let extra = dir.path().join("extra.json");
    std::fs::write(&base, "execution:\n- concurrency: 5\n  scenario: s\nscenarios:\n  s:\n    variables: {id: 7}\n    default-address: http://127.0.0.1:9\n    requests: ['/users/${id}']\n").unwrap();
    std::fs::write(&extra, r#"{"execution": [{"concurrency": 2, "hold-for": "1s", "scenario": "s"}], "scenarios": {"s": {"headers": {"X-Test": "yes"}}}}"#).unwrap();
    let plan = read_plan(&[base, extra], &[]).unwrap();
    assert_eq!(plan.executions.len(), 2, "lists concatenate");
    let request = &plan.executions[1].scenario.requests[0];
    assert_eq!(request.target.to_string(), "/users/7");
    assert_eq!(
        request.headers.get("x-test").and_then(|v| v.to_str().ok()),
        Some("yes")
    );
}

/// A fast local service: every average and percentile the console prints is non-zero, as
/// every measured time is (before, they read `0.000` and `0.0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_summary_shows_a_fast_service_with_non_zero_figures() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior::default()).await;
    let mut test = quick(server.url("/"));
    test.concurrency = Some(1);
    test.hold_for = Duration::ZERO;
    test.iterations = Some(200);
    let report = run(peregrine_load::from_quick(&test).unwrap()).await;
    assert!(
        report.overall.percentile(50.0).unwrap_or(0.0) < 0.001,
        "not fast enough to test"
    );
    let text = peregrine_load::report::final_stats(&report);
    let averages = text
        .lines()
        .find_map(|l| l.strip_prefix("Average times: total "))
        .unwrap_or_default();
    let total: f64 = averages
        .split(',')
        .next()
        .unwrap_or("")
        .parse()
        .unwrap_or(0.0);
    assert!(total > 0.0, "{text}");
    let percentiles: Vec<f64> = text
        .lines()
        .skip_while(|l| !l.starts_with("| Percentile"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('|').nth(2).and_then(|v| v.trim().parse().ok()))
        .collect();
    assert_eq!(percentiles.len(), 7, "{text}");
    assert!(percentiles.iter().all(|&p| p > 0.0), "{text}");
}

/// A 1.5 s run: its last second is half empty, so the charts leave it out (saying so) rather
/// than draw a drop in requests per second; the JSON and CSV keep it. Every request got a 503
/// and no criterion was set: the verdict is "passed, with errors", not a plain pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_leaves_the_partial_last_second_out_and_flags_errors() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior {
        delay: Duration::from_millis(5),
        status: 503,
        ..Behavior::default()
    })
    .await;
    let mut test = quick(server.url("/"));
    test.concurrency = Some(2);
    test.hold_for = Duration::from_millis(1500);
    let report = run(peregrine_load::from_quick(&test).unwrap()).await;
    assert_eq!(report.exit_code(), exit_code::OK);
    assert_eq!(report.timeline.len(), 2, "{:?}", report.timeline);
    let dir = tempfile::tempdir().unwrap();
    report.write_dir(dir.path()).unwrap();
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(
        html.contains("id=\"partial-second\""),
        "no note on the cut second"
    );
    let throughput = html
        .split("data-chart=\"throughput\"")
        .nth(1)
        .and_then(|rest| rest.split("</svg>").next())
        .unwrap_or_default();
    assert!(
        throughput.matches("<circle ").count() == 1 && !throughput.contains("<polyline"),
        "only the whole first second is drawn: {throughput}"
    );
    assert!(
        html.contains("data-verdict=\"passed\"") && html.contains("<b>Passed, with errors</b>"),
        "{html}"
    );
    assert!(html.contains("<td>503</td><td>"), "status codes: {html}");
    let json = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    assert!(json.contains("\"verdict\": \"passed\""), "{json}");
    let csv = std::fs::read_to_string(dir.path().join("timeline.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "the CSV keeps both seconds: {csv}");
}

/// With 12 labels the per-label charts draw the 10 with the most samples and say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_caps_its_per_label_charts_at_ten_and_says_so() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior::default()).await;
    let requests: String = (0..12)
        .map(|i| {
            format!(
                "    - url: {}\n      label: l{i}\n",
                server.url(&format!("/{i}"))
            )
        })
        .collect();
    let report = run(plan(&format!(
        "execution:\n  concurrency: 2\n  hold-for: 1500ms\n  scenario:\n    requests:\n{requests}"
    )))
    .await;
    let dir = tempfile::tempdir().unwrap();
    report.write_dir(dir.path()).unwrap();
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(
        html.contains("Showing the 10 labels with the most samples, of 12."),
        "{html}"
    );
    let p90 = html
        .split("data-chart=\"label-p90\"")
        .nth(1)
        .and_then(|rest| rest.split("</figure>").next())
        .unwrap_or_default();
    assert_eq!(p90.matches("<span><i ").count(), 10, "{p90}");
}

/// The HTML report opened in real headless Chromium: every chart is laid out with its lines
/// or bars, and the verdict of a run a criterion failed (exit 3), what was run, the status
/// codes and the latency histogram are on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_renders_its_charts_in_chromium() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior {
        delay: Duration::from_millis(2),
        ..Behavior::default()
    })
    .await;
    let report = run(plan(&format!(
        "execution:\n  concurrency: 5\n  ramp-up: 1s\n  hold-for: 2s\n  scenario:\n    requests:\n    - url: {}\n      label: list\n    - url: {}\n      label: one\nreporting:\n- module: passfail\n  criteria: ['avg-rt>1ms, continue as failed']\n",
        server.url("/users/"),
        server.url("/users/7"),
    )))
    .await;
    assert_eq!(report.exit_code(), exit_code::CRITERIA_FAILED);
    let dir = tempfile::tempdir().unwrap();
    report.write_dir(dir.path()).unwrap();
    let page = format!("file://{}", dir.path().join("report.html").display());
    let output = peregrine_testkit::chromium::run(
        dir.path(),
        &page,
        &["--virtual-time-budget=5000", "--dump-dom"],
    );
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains("data-charts-rendered=\"7\""),
        "4 charts over time, the histogram and 2 per label must render:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dom.contains("Peregrine load report"));
    let section = |id: &str| {
        let from = dom.find(&format!("id=\"{id}\"")).unwrap_or(dom.len());
        let to = dom[from..]
            .find("</dl>")
            .or_else(|| dom[from..].find("</table>"));
        dom[from..from + to.unwrap_or(dom.len() - from)].to_owned()
    };
    let banner = section("verdict");
    assert!(
        banner.contains("data-verdict=\"failed\"")
            && banner.contains("1 of 1 pass/fail criteria failed")
            && banner.contains("(exit code 3)"),
        "{banner}"
    );
    let run = section("run");
    for expected in [
        &format!("GET {}", server.url("/users/")),
        "closed model: 5 virtual users",
        "1 s ramp-up, 2 s hold",
        env!("CARGO_PKG_VERSION"),
    ] {
        assert!(run.contains(expected), "{expected:?} not in {run}");
    }
    let codes = section("status-codes");
    assert!(codes.contains("<td>200</td><td>"), "{codes}");
    assert!(dom.contains("data-chart=\"histogram\""));
    assert!(dom.contains("data-chart=\"label-p90\""));
}

/// Labels and URLs are the user's text: the page shows them as text, never as markup. A
/// label that is a script and one with quotes and tags, a URL with an apostrophe and an
/// ampersand: each comes out escaped in the tables, the chart legends and "What was run", and
/// Chromium finds no element the page did not write itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_escapes_labels_and_urls_as_text() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior::default()).await;
    let report = run(plan(&format!(
        "execution:\n  concurrency: 2\n  hold-for: 1500ms\n  scenario:\n    requests:\n    - url: \"{}\"\n      label: <script>alert(1)</script>\n    - url: {}\n      label: 'say \"hi\" & <b>bye</b>'\n",
        server.url("/it's?a=1&b=2"),
        server.url("/users/7"),
    )))
    .await;
    let dir = tempfile::tempdir().unwrap();
    report.write_dir(dir.path()).unwrap();
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    let script = "&#60;script&#62;alert(1)&#60;/script&#62;";
    let quoted = "say &#34;hi&#34; &#38; &#60;b&#62;bye&#60;/b&#62;";
    assert!(html.contains(&format!("<tr><td>{script}</td>")), "{html}");
    assert!(html.contains(&format!("<tr><td>{quoted}</td>")), "{html}");
    // Each per-label chart names both labels in its legend.
    for label in [script, quoted] {
        let legend = format!("</i>{label}</span>");
        assert_eq!(html.matches(&legend).count(), 2, "{legend} in {html}");
    }
    assert!(html.contains("/it&#39;s?a=1&#38;b=2"), "{html}");
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert!(
        !html.contains("<b>bye") && !html.contains("/it's"),
        "{html}"
    );

    let page = format!("file://{}", dir.path().join("report.html").display());
    let output = peregrine_testkit::chromium::run(
        dir.path(),
        &page,
        &["--virtual-time-budget=5000", "--dump-dom"],
    );
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains("data-charts-rendered=\"7\""),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(dom.matches("<script").count(), 1, "{dom}");
    assert!(!dom.contains("<b>bye"), "{dom}");
    assert!(
        dom.contains("<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>")
            && dom.contains("<td>say \"hi\" &amp; &lt;b&gt;bye&lt;/b&gt;</td>"),
        "{dom}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_keepalive_connection_per_user_or_one_per_request_without_keepalive() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior::default()).await;
    let yaml = |keepalive: bool| {
        format!(
            "execution:\n  concurrency: 4\n  iterations: 10\n  scenario:\n    keepalive: {keepalive}\n    requests: ['{}']\n",
            server.url("/")
        )
    };
    let report = run(plan(&yaml(true))).await;
    assert_eq!((report.overall.samples, report.overall.failures), (40, 0));
    assert_eq!(server.connections(), 4);
    let report = run(plan(&yaml(false))).await;
    assert_eq!((report.overall.samples, report.overall.failures), (40, 0));
    assert_eq!(server.connections(), 4 + 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_reconnect_when_the_server_closes_connections() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior {
        close_connections: true,
        ..Behavior::default()
    })
    .await;
    let report = run(plan(&format!(
        "execution:\n  concurrency: 3\n  iterations: 20\n  scenario:\n    requests: ['{}']\n",
        server.url("/")
    )))
    .await;
    assert_eq!(report.overall.failures, 0, "{:?}", report.errors);
    assert_eq!(report.overall.samples, 60);
    assert_eq!(server.received(), 60);
    assert_eq!(server.connections(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonpath_assertions_check_the_body() {
    let _quiet = peregrine_testkit::quiet::sharing().await;
    let server = TinyServer::start(Behavior::default()).await;
    let report = run(plan(&format!(
        "execution:\n  concurrency: 1\n  iterations: 2\n  scenario:\n    default-address: {}\n    requests:\n    - url: /ok\n      label: ok\n      assert-jsonpath:\n      - $[0].id\n      - jsonpath: $[0].username\n        expected-value: e6.*\n    - url: /missing\n      label: missing\n      assert-jsonpath: ['$[0].email']\n    - url: /wrong\n      label: wrong\n      assert-jsonpath:\n      - jsonpath: $[0].id\n        validate: true\n        expected-value: '2'\n    - url: /inverted\n      label: inverted\n      assert-jsonpath:\n      - jsonpath: $[0].id\n        invert: true\n",
        server.url("")
    )))
    .await;
    let errors = |label: &str| {
        report
            .errors
            .iter()
            .filter(|e| e.label == label)
            .map(|e| e.message.clone())
            .collect::<Vec<_>>()
    };
    assert!(errors("ok").is_empty(), "{:?}", errors("ok"));
    assert_eq!(
        errors("missing"),
        ["assertion failed: $[0].email not found"]
    );
    assert_eq!(
        errors("wrong"),
        ["assertion failed: $[0].id is 1, expected \"2\""]
    );
    assert_eq!(
        errors("inverted"),
        ["assertion failed: $[0].id matched, and invert is set"]
    );
}
