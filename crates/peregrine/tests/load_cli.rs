//! `peregrine load` through its command line: signals and messages about what was typed.

use std::process::{Command, Stdio};
use std::time::Duration;

const BINARY: &str = env!("CARGO_BIN_EXE_peregrine");

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
