//! The limits that keep memory bounded by the work a config describes, and the rules that
//! make a run repeatable: each against real files and real servers on 127.0.0.1.

use std::path::Path;
use std::time::{Duration, Instant};

use peregrine_load::{Ending, Plan, Report, exit_code, plan_from_str};
use peregrine_testkit::{Behavior, LoginApp, TinyServer};

fn error_of(yaml: &str) -> String {
    plan_from_str("limits.yml", yaml, &[])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[expect(
    clippy::unwrap_used,
    reason = "a test helper, outside the tests clippy.toml covers"
)]
fn plan(yaml: &str) -> Plan {
    plan_from_str("limits.yml", yaml, &[]).unwrap()
}

async fn run(plan: &Plan) -> Report {
    peregrine_load::run(plan, std::future::pending(), |_| {}).await
}

/// Issue item 1: 30 scenarios, each including the next twice, would be 2^30 requests.
#[test]
fn nested_includes_that_multiply_are_an_error_naming_the_key() {
    let mut yaml = String::from("execution:\n- iterations: 1\n  scenario: s0\nscenarios:\n");
    for level in 0..30 {
        let next = level + 1;
        yaml.push_str(&format!(
            "  s{level}:\n    requests:\n    - include-scenario: s{next}\n    - include-scenario: s{next}\n"
        ));
    }
    yaml.push_str("  s30:\n    requests: ['http://127.0.0.1:1/']\n");
    let started = Instant::now();
    let err = error_of(&yaml);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.starts_with("scenarios.s0.requests.0.include-scenario: "),
        "{err}"
    );
    assert!(
        err.contains("scenario \"s0\" expands to over 250000 requests and blocks")
            && err.contains("include-scenario"),
        "{err}"
    );
    // The same shape six levels deep is fine: 2^6 requests.
    let small = yaml.replace("include-scenario: s6", "{url: 'http://127.0.0.1:1/'}");
    assert_eq!(plan(&small).executions[0].scenario.requests.len(), 64);
}

/// Issue item 8: the chain once resolved to `end`, `${D}` or `${C}` by the map's order.
/// Every run (each reading builds new maps with new random order) sends the same request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_env_chains_send_the_same_request_on_every_run() {
    let app = LoginApp::start().await;
    let yaml = format!(
        "settings:\n  env: {{A: '${{B}}', B: '${{C}}', C: '${{D}}', D: end}}\nexecution:\n- iterations: 1\n  scenario:\n    requests: ['{}/chain?a=${{A}}']\n",
        app.base()
    );
    for _ in 0..10 {
        let report = run(&plan(&yaml)).await;
        assert_eq!(report.overall.samples, 1);
    }
    let targets: Vec<String> = app.recorded().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, vec!["/chain?a=end".to_owned(); 10]);
}

/// Issue item 6: `x: ${x}${x}` doubles every pass; at 1 MiB the run stops, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variable_that_doubles_stops_the_run_naming_it() {
    let server = TinyServer::start(Behavior::default()).await;
    let started = Instant::now();
    let report = run(&plan(&format!(
        "execution:\n- concurrency: 2\n  hold-for: 20s\n  scenario:\n    variables: {{x: ab}}\n    requests:\n    - set-variables: {{x: '${{x}}${{x}}'}}\n    - '{}'\n",
        server.url("/")
    )))
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.ending, Ending::Aborted);
    assert_eq!(report.exit_code(), exit_code::TOOL_ERROR);
    let problem = report.problem.unwrap_or_default();
    assert!(
        problem.contains("set-variables: x grew past 1048576 bytes"),
        "{problem}"
    );
    // 2 bytes doubled 19 times is 1 MiB: about 19 requests per user were sent first.
    assert!(
        (10..=60).contains(&report.overall.samples),
        "{}",
        report.overall.samples
    );
}

/// Issue item 5: a CSV value with a DEL byte in a header, and a 70,000-byte value in a
/// URL, were sent as the raw template and counted as successes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_be_rendered_is_a_render_error_and_never_sent() {
    let app = LoginApp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("users.csv");
    let big = "x".repeat(70_000);
    std::fs::write(&csv, format!("name,big\na\u{7f}b,{big}\n")).unwrap();
    let report = run(&plan(&format!(
        "execution:\n- iterations: 3\n  scenario:\n    data-sources: ['{csv}']\n    requests:\n    - url: '{base}/u?u=${{big}}'\n      label: long-url\n    - url: '{base}/h'\n      label: bad-header\n      headers: {{x-user: '${{name}}'}}\n    - url: '{base}/fine'\n      label: fine\n",
        csv = csv.display(),
        base = app.base()
    )))
    .await;
    let targets: Vec<String> = app.recorded().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        vec!["/fine".to_owned(); 3],
        "only the renderable one is sent"
    );
    assert_eq!(report.overall.samples, 9);
    assert_eq!(report.overall.failures, 6);
    let render: Vec<_> = report
        .errors
        .iter()
        .filter(|e| e.kind == peregrine_load::stats::ErrorKind::Render)
        .map(|e| (e.label.as_str(), e.message.as_str(), e.count))
        .collect();
    assert_eq!(
        render,
        [
            (
                "bad-header",
                "header x-user: the rendered value is not a valid header value (a control character or line break)",
                3
            ),
            ("long-url", "the rendered URL is over 65534 bytes", 3),
        ]
    );
}

/// Issue item 6: `/dev/zero`, a FIFO, a huge file and a huge CSV field are each a quick
/// error naming the file or key, not gigabytes of memory or a hang.
#[test]
fn files_a_config_names_are_read_within_limits() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let zero = peregrine_load::read_plan(&[Path::new("/dev/zero").to_path_buf()], &[])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        zero,
        "cannot read /dev/zero: is not a regular file or a pipe"
    );
    let huge = dir.path().join("huge.yml");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(1 << 30).unwrap();
    let err = peregrine_load::read_plan(std::slice::from_ref(&huge), &[])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("huge.yml: is over 67108864 bytes"), "{err}");
    let body = |path: &str| {
        error_of(&format!(
            "execution:\n- iterations: 1\n  scenario:\n    requests:\n    - url: 'http://127.0.0.1:1/'\n      method: POST\n      body-file: '{path}'\n"
        ))
    };
    let err = body("/dev/zero");
    assert!(
        err.starts_with("execution.0.scenario.requests.0.body-file: cannot read /dev/zero: is not a regular file"),
        "{err}"
    );
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()));
    let err = body(&fifo.display().to_string());
    assert!(err.contains("is not a regular file"), "{err}");
    let csv = dir.path().join("wide.csv");
    std::fs::write(&csv, format!("name\nshort\n{}\n", "y".repeat(2 << 20))).unwrap();
    let err = error_of(&format!(
        "execution:\n- iterations: 1\n  scenario:\n    data-sources: ['{}']\n    requests: ['http://127.0.0.1:1/${{name}}']\n",
        csv.display()
    ));
    assert!(
        err.contains("wide.csv line 3 field 1: over 1048576 bytes, the most a variable holds"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Issue item 9: extracting from and asserting on a large JSON body is the generator's
/// work: it is reported apart (`avg_check`) and stays out of the response time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_spent_checking_a_response_is_reported_apart_from_its_response_time() {
    let items: Vec<String> = (0..20_000)
        .map(|i| format!("{{\"id\":{i},\"name\":\"user-{i}\",\"tags\":[\"a\",\"b\"]}}"))
        .collect();
    let body: &'static str = Box::leak(format!("[{}]", items.join(",")).into_boxed_str());
    let server = TinyServer::start(Behavior {
        body,
        ..Behavior::default()
    })
    .await;
    let yaml = |checks: &str| {
        format!(
            "execution:\n- iterations: 3\n  scenario:\n    requests:\n    - url: '{}'\n      assert-body-limit: 64MB\n{checks}",
            server.url("/")
        )
    };
    let checked = run(&plan(&yaml(
        "      extract-jsonpath: {ids: {jsonpath: '$..id'}}\n      assert-jsonpath: [{jsonpath: '$[0].id', expected-value: 0}]\n",
    )))
    .await;
    let plain = run(&plan(&yaml(""))).await;
    assert_eq!(checked.overall.failures, 0, "{:?}", checked.errors);
    let (rt, check) = (checked.overall.avg_rt, checked.overall.avg_check);
    eprintln!(
        "{} KB body: response {:.1} ms with checks ({:.1} ms without), checks {:.1} ms",
        body.len() / 1024,
        rt * 1e3,
        plain.overall.avg_rt * 1e3,
        check * 1e3
    );
    assert!(check > 0.0 && plain.overall.avg_check == 0.0);
    // Parsing several MB of JSON twice takes longer than reading it from a local socket:
    // were it inside the response time, the checked run's would exceed its check time.
    assert!(rt < check, "response {rt} s, checks {check} s");
    assert!(
        peregrine_load::report::final_stats(&checked).contains("Assertions and extractors: "),
        "{}",
        peregrine_load::report::final_stats(&checked)
    );
}

/// Issue item 10: the `url` + `label` form of 100,000 requests hit the YAML parser's node
/// budget at about 49,000.
#[test]
fn a_hundred_thousand_labelled_requests_are_read() {
    use std::fmt::Write as _;
    let mut yaml = String::from("execution:\n- iterations: 1\n  scenario:\n    requests:\n");
    for i in 0..100_000 {
        let _ = writeln!(
            yaml,
            "    - {{url: 'http://127.0.0.1:1/users/{i}', label: 'user {i}'}}"
        );
    }
    let plan = plan(&yaml);
    assert_eq!(plan.labels.len(), 100_000);
    assert_eq!(plan.labels[99_999], "user 99999");
}
