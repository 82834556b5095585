//! `peregrine load` through its command line: signals and messages about what was typed.
//! Over 600 lines: each test drives the real binary and reads what it printed and wrote.

use crate::harness::BINARY;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Taurus treats SIGTERM as Ctrl-C: both stop the run with partial results and exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_and_sigterm_interrupt_with_partial_results_and_exit_2() {
    let server = peregrine_testkit::TinyServer::start(peregrine_testkit::Behavior::default()).await;
    for signal in ["-INT", "-TERM"] {
        let dir = tempfile::tempdir().unwrap();
        let received_before = server.received();
        let child = Command::new(BINARY)
            .args([
                "load",
                &server.url("/"),
                "-c",
                "2",
                "--hold-for",
                "60s",
                "--report",
                "partial",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the server has seen requests, so the results cannot be empty.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while server.received() < received_before + 10 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let killed = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        assert!(killed.is_ok_and(|s| s.success()));
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{signal}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("Samples count: ") && !stdout.contains("Samples count: 0,"),
            "{signal}: {stdout}"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("interrupted"),
            "{signal}"
        );
        assert!(dir.path().join("partial/report.json").is_file(), "{signal}");
    }
}

#[test]
fn a_url_without_a_scheme_gets_a_suggestion_and_typed_urls_are_named_as_arguments() {
    let run = |args: &[&str]| {
        let out = Command::new(BINARY).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["load", "127.0.0.1:8000/users/"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("give its scheme: http://127.0.0.1:8000/users/"),
        "{stderr}"
    );
    let (code, stderr) = run(&["load", "https://:8000/users/"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("the URL argument:") && !stderr.contains("execution.0"),
        "{stderr}"
    );
    let (code, stderr) = run(&["load", "http://127.0.0.1:1/", "--rate", "NaN"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("--rate") && stderr.contains("must be a rate"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_stops_the_run_early_with_a_clear_error() {
    let port = peregrine_testkit::free_port().unwrap();
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BINARY)
            .args([
                "load",
                &format!("http://127.0.0.1:{port}/"),
                "--hold-for",
                "60s",
            ])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("every request in the first 3 s failed to connect"),
        "{stderr}"
    );
}

/// An https URL: refused without its CA (the message names the options), verified with
/// `--ca-cert`, accepted with `--insecure` after one loud warning; the TLS handshake time
/// is shown beside the connect time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_are_verified_trusted_with_ca_cert_or_accepted_with_insecure() {
    let server =
        peregrine_testkit::TinyServer::start_tls(peregrine_testkit::Behavior::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem().unwrap_or_default()).unwrap();
    let url = server.url("/");
    let load = move |extra: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(BINARY)
                .args(["load", &url, "-c", "1", "--iterations", "3"])
                .args(extra)
                .output()
        })
    };
    let refused = load(Vec::new()).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&refused.stdout);
    assert!(
        text.contains("is not trusted") && text.contains("--ca-cert FILE"),
        "{text}"
    );
    let trusted = load(vec!["--ca-cert".into(), ca.display().to_string()])
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&trusted.stdout);
    assert_eq!(trusted.status.code(), Some(0), "{text}");
    assert!(
        text.contains("Samples count: 3, 0.00% failures") && text.contains("(of which tls "),
        "{text}"
    );
    let insecure = load(vec!["--insecure".into()]).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&insecure.stderr);
    assert_eq!(insecure.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("verification is OFF").count(), 1, "{stderr}");
    assert_eq!(server.received(), 6);
}

/// `openssl req -x509` as a newcomer runs it makes a CA:TRUE certificate: given with
/// --ca-cert, a server presenting exactly it is trusted (as curl --cacert trusts it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_trusts_a_default_openssl_self_signed_certificate_given_with_ca_cert() {
    let dir = tempfile::tempdir().unwrap();
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    // Listen where `localhost` resolves first, as the load generator connects there.
    let ip = tokio::net::lookup_host(("localhost", 0))
        .await
        .unwrap()
        .next()
        .unwrap()
        .ip();
    let server = peregrine_testkit::TinyServer::start_tls_with(
        peregrine_testkit::Behavior::default(),
        ip,
        &read("cert.pem"),
        &read("key.pem"),
    )
    .await;
    let port = server.url("").rsplit(':').next().unwrap().to_owned();
    let url = format!("https://localhost:{port}/");
    let load = |extra: &[&str]| {
        let mut args = vec!["load", url.as_str(), "-c", "1", "--iterations", "3"];
        args.extend_from_slice(extra);
        Command::new(BINARY)
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = load(&["--ca-cert", "cert.pem"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("Samples count: 3, 0.00% failures"),
        "{stdout}"
    );
    assert_eq!(server.received(), 3);
    // Without it: refused, in words, with --ca-cert as the hint.
    let out = load(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("is not trusted") && stdout.contains("trust it with --ca-cert FILE"),
        "{stdout}"
    );
    assert!(!stdout.contains("CaUsedAsEndEntity") && !stdout.contains("UnknownIssuer"));
    assert_eq!(server.received(), 3);
}

/// A target whose TCP connects never complete (its listen backlog full, further SYNs
/// dropped): the run gives up after the first seconds with exit 1 and says why, well within
/// its 10 s schedule (and not after the 30 s request timeout).
#[test]
fn a_target_that_never_completes_a_connect_stops_the_run_early_with_exit_1() {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let any_port: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    listener.bind(&any_port.into()).unwrap();
    listener.listen(0).unwrap();
    let address = listener.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue with connections that are never accepted.
    let mut fillers = Vec::new();
    while fillers.len() < 64 {
        match std::net::TcpStream::connect_timeout(&address, Duration::from_millis(300)) {
            Ok(stream) => fillers.push(stream),
            Err(_) => break,
        }
    }
    assert!(fillers.len() < 64, "the listen backlog never filled");
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(BINARY)
        .args([
            "load",
            &format!("http://{address}/"),
            "-c",
            "2",
            "--hold-for",
            "10s",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no connection to {address} was established in the first 3 s"
        )),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(8), "took {took:?}");
    drop(fillers);
}

/// final-stats' switches are honoured, not warned about and ignored: percentiles and the
/// label table off, failed labels on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_stats_switches_choose_what_the_console_prints() {
    let good = peregrine_testkit::TinyServer::start(peregrine_testkit::Behavior::default()).await;
    let bad = peregrine_testkit::TinyServer::start(peregrine_testkit::Behavior {
        status: 500,
        ..peregrine_testkit::Behavior::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "execution:\n- concurrency: 1\n  iterations: 3\n  scenario:\n    requests:\n    - label: good\n      url: {}\n    - label: bad\n      url: {}\nreporting:\n- module: final-stats\n  percentiles: false\n  summary-labels: false\n  failed-labels: true\n  test-duration: true\n",
        good.url("/"),
        bad.url("/")
    );
    std::fs::write(dir.path().join("load.yml"), config).unwrap();
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            Command::new(BINARY)
                .args(["load", "load.yml"])
                .current_dir(dir)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains("not implemented"), "{stderr}");
    assert!(
        stdout.contains("Test duration: ") && stdout.contains("Samples count: 6, 50.00% failures"),
        "{stdout}"
    );
    assert!(stdout.contains("3 failed samples: bad\n"), "{stdout}");
    for hidden in [
        "Average times",
        "Percentiles:",
        "Request label stats:",
        "failed samples: good",
    ] {
        assert!(!stdout.contains(hidden), "{hidden}: {stdout}");
    }
}

/// The average times share the total's decimals, down to a microsecond: one connect over
/// hundreds of reused requests reads 0.000000 or so, not `0.00000000311`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn average_times_print_with_the_same_decimals_down_to_a_microsecond() {
    let server = peregrine_testkit::TinyServer::start(peregrine_testkit::Behavior::default()).await;
    let url = server.url("/");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BINARY)
            .args(["load", &url, "-c", "1", "--iterations", "400"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(server.connections(), 1);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Average times: "))
        .unwrap_or_default();
    let decimals: Vec<usize> = line
        .split([',', ' '])
        .filter(|w| w.parse::<f64>().is_ok())
        .map(|w| w.split('.').nth(1).map_or(0, str::len))
        .collect();
    assert_eq!(decimals.len(), 3, "{line}");
    assert!(
        decimals
            .iter()
            .all(|&d| d == decimals[0] && (3..=6).contains(&d)),
        "{line}"
    );
}

/// `peregrine load plan.jmx` runs a JMeter plan as `jmeter -n -t plan.jmx` would (its own
/// thread group, JMeter properties from `-o modules.jmeter.properties.NAME=…`), and a plan
/// with a non-HTTP sampler stops with exit 1 naming the element by its path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jmeter_plan_runs_from_the_command_line() {
    let server = peregrine_testkit::TinyServer::start(peregrine_testkit::Behavior::default()).await;
    let port = server
        .url("/")
        .split(':')
        .nth(2)
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let plan = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/users.jmx");
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            Command::new(BINARY)
                .arg("load")
                .arg(&plan)
                .args([
                    "-o",
                    &format!("modules.jmeter.properties.port={port}"),
                    "-o",
                    "modules.jmeter.properties.duration=1",
                    "--report",
                    "out",
                ])
                .current_dir(dir)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/report.json")).unwrap())
            .unwrap();
    let listed = report["labels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["label"] == "List users")
        .map(|l| l["samples"].as_u64().unwrap_or(0))
        .unwrap_or(0);
    assert!(
        listed > 0 && server.received() >= listed,
        "{listed} {}",
        server.received()
    );

    let jdbc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/users.jmx"),
    )
    .unwrap()
    .replace(
        "<HTTPSamplerProxy guiclass=\"HttpTestSampleGui\" testclass=\"HTTPSamplerProxy\" testname=\"Get user\"",
        "<JDBCSampler guiclass=\"TestBeanGUI\" testclass=\"JDBCSampler\" testname=\"Get user\"",
    )
    .replace("</HTTPSamplerProxy>\n          <hashTree>\n            <ResponseAssertion", "</JDBCSampler>\n          <hashTree>\n            <ResponseAssertion");
    std::fs::write(dir.path().join("db.jmx"), jdbc).unwrap();
    let out = Command::new(BINARY)
        .args(["load", "db.jmx"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("db.jmx: Users API > Readers > When there is a user > Get user")
            && stderr.contains("JDBCSampler is not an HTTP sampler"),
        "{stderr}"
    );
}

/// Held by each capacity search test while it measures: two at once would each see the
/// other's load on this machine's cores.
static MACHINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `peregrine load ARGS` in `dir` without blocking the test's runtime (the server of
/// known capacity runs on it).
async fn load_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(BINARY)
            .arg("load")
            .args(&args)
            .current_dir(dir)
            .output()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|e| panic!("cannot run peregrine: {e}"))
}

/// Short steps: the whole search takes seconds. A step of 1.5 s only sees an overload that
/// pushes the queue past the bound within it (here about 10 %), so the answers are checked
/// to ±15 % of the truth; the accuracy itself is tested in peregrine-load's tests/suite/capacity.rs.
const SHORT_STEPS: [&str; 6] = [
    "--step-duration",
    "1s",
    "--warm-up",
    "500ms",
    "--max-duration",
    "40s",
];

/// The capacity of a server of 10 workers busy 50 ms each (200 req/s by construction), found
/// through the CLI: a line per step, the answer with its bracket, exit 0, and report.json
/// carrying the search.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_capacity_answers_with_the_bracket_and_writes_the_search_to_the_report() {
    let _machine = MACHINE.lock().await;
    let server = peregrine_testkit::BusyServer::start(10, Duration::from_millis(50)).await;
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/");
    let mut args = vec![
        url.as_str(),
        "--find-capacity",
        "--slo",
        "p99<200ms",
        "--slo",
        "errors<1%",
        "--start-rate",
        "60",
        "--report",
        "out",
    ];
    args.extend(SHORT_STEPS);
    let out = load_in(dir.path(), &args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("step  1  offered      60.0 req/s  achieved "),
        "{stdout}"
    );
    let answer = stdout
        .lines()
        .find(|l| l.starts_with("Capacity: "))
        .unwrap_or_else(|| panic!("no answer: {stdout}"));
    let rate: f64 = answer
        .trim_start_matches("Capacity: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{answer}"));
    assert!((170.0..=230.0).contains(&rate), "{answer}");
    assert!(
        answer.contains(" req/s (p99<200ms, errors<1%): held at ")
            && answer.contains(", broke at "),
        "{answer}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/report.json")).unwrap())
            .unwrap();
    let capacity = &report["capacity"];
    assert_eq!(capacity["outcome"], "found");
    assert_eq!(
        capacity["slo"],
        serde_json::json!(["p99<200ms", "errors<1%"])
    );
    let reported = capacity["rate"].as_f64().unwrap_or(0.0);
    assert!((reported - rate).abs() <= 1.0, "{reported} vs {answer}");
    let steps = capacity["steps"].as_array().map_or(0, Vec::len);
    assert_eq!(
        steps,
        stdout.lines().filter(|l| l.starts_with("step ")).count()
    );
}

/// A config's pass/fail criteria are the SLO when no --slo is given: its scenario is offered
/// at each rate, and a rate holds when no criterion fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_capacity_on_a_config_holds_each_step_to_its_criteria() {
    let _machine = MACHINE.lock().await;
    let server = peregrine_testkit::BusyServer::start(10, Duration::from_millis(50)).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("slo.yml"),
        format!(
            "execution:\n- concurrency: 3\n  hold-for: 1m\n  scenario:\n    requests:\n    - url: {}\n      label: busy\nreporting:\n- module: passfail\n  criteria:\n  - p99>200ms, continue as failed\n  - fail>1%, continue as failed\n",
            server.url("/")
        ),
    )
    .unwrap();
    let mut args = vec!["slo.yml", "--find-capacity", "--start-rate", "60"];
    args.extend(SHORT_STEPS);
    let out = load_in(dir.path(), &args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let answer = stdout
        .lines()
        .find(|l| l.starts_with("Capacity: "))
        .unwrap_or_else(|| panic!("no answer: {stdout}"));
    assert!(
        answer.contains("(not p99>200ms, not fail>1%)"),
        "the criteria are the SLO: {answer}"
    );
    let rate: f64 = answer
        .trim_start_matches("Capacity: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{answer}"));
    assert!((170.0..=230.0).contains(&rate), "{answer}");
    assert!(
        stdout.contains("broke: Failed: p99>200ms"),
        "a broken step names the criterion: {stdout}"
    );
}

/// Exit codes: 3 when even the lowest step breaks the SLO, 1 when the generator (1
/// connection) cannot offer the rate, 1 when the target refuses connections, 1 for a
/// malformed SLO or flags that do not go together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_capacity_exits_3_when_the_lowest_step_breaks_and_1_at_the_generators_limit() {
    let _machine = MACHINE.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let slow = peregrine_testkit::BusyServer::start(4, Duration::from_millis(20)).await;
    let url = slow.url("/");
    let mut args = vec![url.as_str(), "--find-capacity", "--slo", "p99<10ms"];
    args.extend(SHORT_STEPS);
    let out = load_in(dir.path(), &args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("No capacity: even the lowest step, 50.0 req/s, broke the SLO (p99<10ms)"),
        "{stdout}"
    );

    let fast = peregrine_testkit::BusyServer::start(16, Duration::from_millis(20)).await;
    let url = fast.url("/");
    let mut args = vec![
        url.as_str(),
        "--find-capacity",
        "-c",
        "1",
        "--start-rate",
        "20",
    ];
    args.extend(SHORT_STEPS);
    let out = load_in(dir.path(), &args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("generator limit: all 1 connections were busy")
            && stdout.contains("No capacity: the load generator could not offer the rate"),
        "{stdout}"
    );
    assert!(!stdout.contains("Capacity: "), "{stdout}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{closed}/");
    let mut args = vec![url.as_str(), "--find-capacity"];
    args.extend(SHORT_STEPS);
    let out = load_in(dir.path(), &args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("No capacity: every request failed to connect"),
        "an unreachable target is an error, not a capacity: {stdout}"
    );

    let url = fast.url("/");
    for (args, expected) in [
        (
            vec![url.as_str(), "--find-capacity", "--slo", "p99>10ms"],
            "expected a subject under a bound",
        ),
        (vec![url.as_str(), "--slo", "p99<10ms"], "--find-capacity"),
        (
            vec![url.as_str(), "--find-capacity", "--rate", "10"],
            "cannot be used with",
        ),
        (
            vec![
                url.as_str(),
                "--find-capacity",
                "--capacity-tolerance",
                "0%",
            ],
            "above 0%",
        ),
        (
            vec![url.as_str(), "--find-capacity", "--max-duration", "3s"],
            "leaves no time for one step",
        ),
    ] {
        let out = load_in(dir.path(), &args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// Data-source paths resolve as Taurus resolves them: `~/` in the home directory, the path
/// as written from the working directory first, then beside the config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_sources_are_found_in_the_working_directory_then_beside_the_config() {
    let app = peregrine_testkit::LoginApp::start().await;
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let conf = work.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(work.path().join("ids.csv"), "id\nfrom-cwd\n").unwrap();
    std::fs::write(conf.join("ids.csv"), "id\nfrom-conf\n").unwrap();
    std::fs::write(conf.join("other.csv"), "o\nbeside\n").unwrap();
    std::fs::write(home.path().join("h.csv"), "h\nat-home\n").unwrap();
    std::fs::write(
        conf.join("test.yml"),
        format!(
            "execution:\n- iterations: 1\n  scenario:\n    data-sources: [ids.csv, other.csv, '~/h.csv']\n    requests: ['{}/x?id=${{id}}&o=${{o}}&h=${{h}}']\n",
            app.base()
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking({
        let (work, home) = (work.path().to_owned(), home.path().to_owned());
        move || {
            Command::new(BINARY)
                .args(["load", "conf/test.yml"])
                .current_dir(work)
                .env("HOME", home)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let targets: Vec<String> = app.recorded().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/x?id=from-cwd&o=beside&h=at-home"]);
}
