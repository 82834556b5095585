//! Watching `peregrine load` while it runs, end to end through the binary: the terminal view
//! through a real pseudo-terminal (`script(1)`), plain lines in a log, the dashboard page in
//! real headless Chromium, and `/metrics` against the final report.
#![allow(
    clippy::unwrap_used,
    reason = "helpers of a test binary: a failed step should fail the test"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::harness::BINARY;
use peregrine_testkit::{Behavior, TinyServer};
use serde_json::Value;

/// A `peregrine load` running in the background, its stderr collected.
struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
    dashboard: mpsc::Receiver<String>,
}

impl Running {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(BINARY)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (found, dashboard) = mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap());
        let collected = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("dashboard: http://") {
                    let address = rest.split('/').next().unwrap_or_default().to_owned();
                    let _ = found.send(address);
                }
                collected.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Self {
            child,
            stderr,
            dashboard,
        }
    }

    /// The dashboard's `IP:PORT`, as printed on stderr.
    fn dashboard(&self) -> String {
        self.dashboard
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no dashboard address: {}", self.stderr()))
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the exit, at most `limit`; its code and stdout.
    fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stdout = String::new();
                let _ = std::io::Read::read_to_string(
                    &mut self.child.stdout.take().unwrap(),
                    &mut stdout,
                );
                return (status.code(), stdout);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("still running after {limit:?}: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The value of attribute `name` on the page's `<body>`.
fn body_attribute(dom: &str, name: &str) -> Option<String> {
    let body = &dom[dom.find("<body")?..];
    let body = &body[..body.find('>')?];
    let from = body.find(&format!("{name}=\""))? + name.len() + 2;
    Some(body[from..from + body[from..].find('"')?].to_owned())
}

/// The dashboard in real headless Chromium during a run: the page loads, draws its four
/// charts, shows the counts rising event after event and, at the end, the verdict with a
/// link to the report; a connection left open on the event stream does not keep the process
/// alive after the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_page_draws_live_charts_in_chromium_and_shows_the_verdict() {
    let server = TinyServer::start(Behavior::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/users/");
    let run = Running::start(
        dir.path(),
        &[
            "load",
            &url,
            "-c",
            "2",
            "--hold-for",
            "8s",
            "-q",
            "--dashboard",
            "127.0.0.1:0",
        ],
    );
    let address = run.dashboard();
    // A client that opens the event stream and never reads from it.
    let mut idle = std::net::TcpStream::connect(&address).unwrap();
    std::io::Write::write_all(
        &mut idle,
        b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
    )
    .unwrap();
    let page = format!("http://{address}/");
    let dir_path = dir.path().to_path_buf();
    // Chromium's virtual time waits for the event stream, which ends with the verdict.
    let output = tokio::task::spawn_blocking(move || {
        peregrine_testkit::chromium::run(
            &dir_path,
            &page,
            &["--virtual-time-budget=30000", "--dump-dom"],
        )
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    let (code, stdout) = run.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{stdout}");
    let attribute = |name: &str| body_attribute(&dom, name).unwrap_or_default();
    assert_eq!(
        attribute("data-charts-drawn"),
        "4",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(attribute("data-state"), "ended", "{dom}");
    assert_eq!(attribute("data-verdict"), "passed");
    let seen: Vec<u64> = attribute("data-seen")
        .split(',')
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        seen.len() >= 3 && seen.windows(2).all(|w| w[0] <= w[1]) && seen[0] < seen[seen.len() - 1],
        "the counts rise event after event: {seen:?}"
    );
    let report: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Samples count: "))
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    assert_eq!(
        seen.last().copied(),
        Some(report),
        "the page ends on the report's count"
    );
    assert!(dom.contains("id=\"report-link\"") && dom.contains("href=\"/report.html\""));
    assert!(dom.contains("The run has ended: passed (exit code 0)"));
    for chart in ["rps", "latency", "errors", "users"] {
        assert!(dom.contains(&format!("data-chart=\"{chart}\"")), "{chart}");
    }
    let lines_drawn = dom.matches("data-segments=\"").count();
    assert_eq!(lines_drawn, 4);
    assert!(
        !dom.contains("data-segments=\"0\" data-points=\"0\""),
        "every chart has points"
    );
    drop(idle);
}

/// A config with a label that always succeeds and one that always fails (HTTP 503), and a
/// criterion watched each second.
fn two_label_config(dir: &Path, ok: &str, bad: &str) -> String {
    let config = format!(
        "execution:\n- concurrency: 2\n  hold-for: 4s\n  scenario: mixed\nscenarios:\n  mixed:\n    requests:\n    - url: {ok}\n      label: ok\n    - url: {bad}\n      label: bad\nreporting:\n- module: passfail\n  criteria: ['avg-rt>30s for 2s, continue as failed']\n"
    );
    std::fs::write(dir.join("mixed.yml"), config).unwrap();
    "mixed.yml".to_owned()
}

/// The value of the sample `series` (name and labels as written) in a /metrics text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `/metrics` rises during the run and, once it has ended, counts exactly what the final
/// report counts: requests per label, errors per label and kind, the histogram's count;
/// the report is served too, and Ctrl-C ends `--dashboard-keep`'s wait at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_the_final_report_counts() {
    let ok = TinyServer::start(Behavior::default()).await;
    let bad = TinyServer::start(Behavior {
        status: 503,
        ..Behavior::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = two_label_config(dir.path(), &ok.url("/"), &bad.url("/"));
    let run = Running::start(
        dir.path(),
        &[
            "load",
            &config,
            "--quiet",
            "--dashboard",
            "127.0.0.1:0",
            "--dashboard-keep",
            "60s",
            "--report",
            "out",
        ],
    );
    let address = run.dashboard();
    let client = reqwest::Client::new();
    let get = |path: &str| {
        let request = client
            .get(format!("http://{address}{path}"))
            .timeout(Duration::from_secs(5));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            (status, content_type, response.text().await.unwrap())
        }
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, content_type, during) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let during_ok = sample(&during, "peregrine_load_requests_total{label=\"ok\"}").unwrap();
    assert!(during_ok > 0.0, "{during}");
    assert_eq!(sample(&during, "peregrine_load_finished"), Some(0.0));
    assert_eq!(sample(&during, "peregrine_load_active_users"), Some(2.0));
    let (status, _, _) = get("/report.html").await;
    assert_eq!(status, 404, "no report before the end");
    // The run ends after 4 s; the dashboard stays up for --dashboard-keep.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !run.stderr().contains("still serving") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, _, metrics) = get("/metrics").await;
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/report.json")).unwrap())
            .unwrap();
    assert_eq!(sample(&metrics, "peregrine_load_finished"), Some(1.0));
    for label in report["labels"].as_array().unwrap() {
        let name = label["label"].as_str().unwrap();
        let samples = label["samples"].as_f64().unwrap();
        assert!(samples > during_ok / 2.0);
        assert_eq!(
            sample(
                &metrics,
                &format!("peregrine_load_requests_total{{label=\"{name}\"}}")
            ),
            Some(samples),
            "{name}: {metrics}"
        );
        assert_eq!(
            sample(
                &metrics,
                &format!("peregrine_load_response_time_seconds_count{{label=\"{name}\"}}")
            ),
            Some(samples)
        );
        assert_eq!(
            sample(
                &metrics,
                &format!(
                    "peregrine_load_response_time_seconds_bucket{{label=\"{name}\",le=\"+Inf\"}}"
                )
            ),
            Some(samples)
        );
        let failures = label["failures"].as_f64().unwrap();
        let errors = sample(
            &metrics,
            &format!("peregrine_load_errors_total{{label=\"{name}\",kind=\"http\"}}"),
        );
        assert_eq!(errors.unwrap_or(0.0), failures, "{name}");
    }
    assert!(
        sample(
            &metrics,
            "peregrine_load_errors_total{label=\"bad\",kind=\"http\"}"
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        sample(
            &metrics,
            "peregrine_load_criterion_failed{criterion=\"avg-rt>30s for 2s\"}"
        ),
        Some(0.0),
        "{metrics}"
    );
    let (status, _, html) = get("/report.html").await;
    assert_eq!(status, 200);
    assert!(html.contains("Peregrine load report"));
    // Ctrl-C ends the wait: the process exits well before the 60 s asked for.
    let pid = run.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (code, stdout) = run.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "the run itself completed: {stdout}");
}

/// Runs `command` under `script(1)`, which gives it a pseudo-terminal of 80 columns; its output.
fn through_a_terminal(dir: &Path, command: &str) -> String {
    let output = Command::new("timeout")
        .args(["60", "script", "-qfec", command, "/dev/null"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("script(1) (util-linux) is needed: {e}"));
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// On a terminal, the live view is redrawn in place each second (cursor up, clear, same
/// number of lines), carries the figures and sparklines, fits the width, and is erased
/// before the final stats; with --quiet nothing but the final stats is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_view_redraws_in_place_on_a_pseudo_terminal() {
    let server = TinyServer::start(Behavior::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = two_label_config(dir.path(), &server.url("/a"), &server.url("/b"));
    let dir_path = dir.path().to_path_buf();
    let command = format!("{BINARY} load {config} -o execution.0.hold-for=4s");
    let screen = tokio::task::spawn_blocking(move || through_a_terminal(&dir_path, &command))
        .await
        .unwrap();
    let frames: Vec<&str> = screen.split("\x1b[J").collect();
    assert!(frames.len() >= 4, "a redraw each second: {screen:?}");
    let frame = frames[frames.len() - 2];
    for expected in [
        "peregrine load ▕",
        "/ 0:00:04,",
        "users 2 | ",
        "req/s | requests ",
        "latency (last 5 s): p50 ",
        "errors: none",
        "criteria: avg-rt>30s for 2s: ok so far",
        "label ",
        "\r\nok ",
        "\r\nbad ",
    ] {
        assert!(frame.contains(expected), "{expected:?} not in {frame:?}");
    }
    let spark = frame.split("req/s ").nth(2).unwrap_or_default();
    assert!(
        spark.starts_with(['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█']),
        "a sparkline of req/s: {frame:?}"
    );
    let lines = frame.matches("\x1b[K").count();
    assert!(
        frame.ends_with(&format!("\x1b[{lines}F")),
        "the next frame starts where this one did: {frame:?}"
    );
    for line in frame.split("\r\n") {
        let visible = line.split("\x1b[").next().unwrap_or_default();
        assert!(visible.chars().count() < 80, "fits 80 columns: {line:?}");
    }
    let last = frames[frames.len() - 1];
    assert!(
        last.starts_with("Test duration: 0:00:04"),
        "erased before the stats: {last:?}"
    );

    let dir_path = dir.path().to_path_buf();
    let command = format!("{BINARY} load {config} -o execution.0.hold-for=2s --quiet");
    let quiet = tokio::task::spawn_blocking(move || through_a_terminal(&dir_path, &command))
        .await
        .unwrap();
    assert!(quiet.starts_with("Test duration: "), "{quiet:?}");
    assert!(!quiet.contains('\x1b'), "{quiet:?}");
}

/// Off a terminal (a CI log) there is no view: with --progress a plain line each second on
/// stderr with the current percentiles, by default none in a short run (one each 10 s), and
/// stdout holds the final stats only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_a_terminal_plain_lines_go_to_stderr() {
    let server = TinyServer::start(Behavior::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/");
    let run = |extra: &'static [&'static str]| {
        let mut command = Command::new(BINARY);
        command
            .args(["load", &url, "-c", "2", "--hold-for", "3s"])
            .args(extra)
            .current_dir(dir.path());
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };
    let output = run(&["--progress"]).await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        stdout.starts_with("Test duration: ") && !stdout.contains('\x1b'),
        "{stdout}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with('[')).collect();
    assert!(lines.len() >= 2, "{stderr}");
    assert!(
        lines[0].starts_with("[    1s/3s] users 2 | ") && lines[0].contains(" p99 "),
        "{stderr}"
    );
    assert!(lines[0].contains("(last 5 s) | requests "), "{stderr}");
    let output = run(&[]).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("req/s"), "no line before 10 s: {stderr}");
}

/// A dashboard address that is taken, or not IP:PORT, fails before any request is sent,
/// naming the flag; a non-loopback one is allowed and said so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_addresses_are_checked_before_the_run() {
    let server = TinyServer::start(Behavior::default()).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let url = server.url("/");
    let load = |dashboard: String| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(BINARY)
                .args(["load", &url, "-c", "1", "--hold-for", "1s", "-q"])
                .args(["--dashboard", &dashboard])
                .output()
                .unwrap()
        })
    };
    let output = load(taken.clone()).await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("--dashboard {taken}: cannot listen: ")),
        "{stderr}"
    );
    assert_eq!(server.received(), 0, "nothing was sent");
    let output = load("dashboard.example:80".into()).await.unwrap();
    assert!(!output.status.success(), "a usage error");
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not IP:PORT"));
    let output = load("0.0.0.0:0".into()).await.unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning: the dashboard listens on 0.0.0.0:")
            && stderr.contains("reachable from other machines"),
        "{stderr}"
    );
}
