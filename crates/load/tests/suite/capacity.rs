//! The capacity search end to end against servers whose capacity is known by construction
//! (N workers each busy a fixed time: capacity N / time): the answer lands within the
//! tolerance of the truth, a stricter SLO finds less, a starved generator is reported as the
//! limit rather than taken for the service's, and the report shows the search in Chromium.
//! Steps are short (about a second) so each search takes seconds; the tests take turns, as
//! a measurement needs the machine's cores to itself.

use std::time::Duration;

use peregrine_load::capacity::{self, Options, Outcome, Slo, Verdict};
use peregrine_load::{Plan, QuickTest, from_quick};
use peregrine_testkit::BusyServer;
use tokio::sync::watch;

/// Held by each test while it measures: two searches at once would each see the other's
/// load on this machine's cores.
static MACHINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn quick_plan(url: &str) -> Plan {
    from_quick(&QuickTest {
        url: url.to_owned(),
        concurrency: None,
        ramp_up: Duration::ZERO,
        hold_for: Duration::from_secs(1),
        iterations: None,
        timeout: Duration::from_secs(5),
        rate: Some(1.0),
        throughput: None,
        headers: Vec::new(),
        method: "GET".into(),
        body: None,
        keepalive: true,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn slo(terms: &[&str]) -> Slo {
    Slo {
        terms: terms
            .iter()
            .map(|t| capacity::slo::parse(t).unwrap_or_else(|e| panic!("{e}")))
            .collect(),
    }
}

/// Short steps: half a second of warm-up, a second and a half measured.
fn short(slo: Slo, start_rate: f64) -> Options {
    Options {
        slo: Some(slo),
        tolerance: 0.05,
        start_rate,
        warm_up: Duration::from_millis(500),
        step: Duration::from_millis(1500),
        max_duration: Duration::from_secs(60),
        connections: None,
    }
}

async fn search(plan: &Plan, options: &Options) -> capacity::Search {
    // The sender lives as long as the search: nothing interrupts it.
    let (_keep, interrupted) = watch::channel(false);
    capacity::find(plan, options, interrupted, |step| {
        eprintln!("{}", step.line())
    })
    .await
}

/// The held rate is near `truth`: at most twice the tolerance below it (the bracket's width
/// plus a loaded machine's slowdown), at most twice above it (an overload of a few percent
/// takes longer than these short steps to build a queue past the bound).
fn assert_near(found: &capacity::Capacity, truth: f64) {
    assert_eq!(found.outcome, Outcome::Found, "{}", found.answer());
    let rate = found.rate.unwrap_or(0.0);
    assert!(
        rate >= truth * 0.9 && rate <= truth * 1.1,
        "capacity {rate} req/s, truth {truth} req/s: {}",
        found.answer()
    );
    let [held, broke] = found.bracket;
    let (held, broke) = (held.unwrap_or(0.0), broke.unwrap_or(0.0));
    assert!(broke <= held * 1.05 + 1e-9, "bracket {held}..{broke}");
    assert!(
        found
            .steps
            .windows(2)
            .all(|w| w[1].offered <= 2.0 * held.max(w[0].offered)),
        "a step offered more than twice the last rate that held"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_capacity_of_a_200_per_second_server_within_the_tolerance() {
    let _machine = MACHINE.lock().await;
    let server = BusyServer::start(10, Duration::from_millis(50)).await;
    let plan = quick_plan(&server.url("/"));
    let found = search(&plan, &short(slo(&["p99<200ms", "errors<1%"]), 60.0)).await;
    assert_near(&found.capacity, 200.0);
    let report = found.report.unwrap_or_else(|| panic!("no report"));
    let attached = report
        .capacity
        .as_ref()
        .unwrap_or_else(|| panic!("no capacity"));
    assert_eq!(attached.rate, found.capacity.rate);
    let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
    let capacity = &json["capacity"];
    assert_eq!(
        capacity["slo"],
        serde_json::json!(["p99<200ms", "errors<1%"])
    );
    assert!(capacity["rate"].as_f64().is_some(), "{capacity}");
    assert_eq!(capacity["bracket"].as_array().map(Vec::len), Some(2));
    let steps = capacity["steps"].as_array().unwrap();
    assert_eq!(steps.len(), found.capacity.steps.len());
    for key in [
        "offered",
        "achieved",
        "p50",
        "p99",
        "error_percent",
        "verdict",
    ] {
        assert!(steps[0].get(key).is_some(), "{key} in {}", steps[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_capacity_of_an_800_per_second_server_within_the_tolerance() {
    let _machine = MACHINE.lock().await;
    let server = BusyServer::start(40, Duration::from_millis(50)).await;
    let plan = quick_plan(&server.url("/"));
    let found = search(&plan, &short(slo(&["p99<200ms", "errors<1%"]), 240.0)).await;
    assert_near(&found.capacity, 800.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stricter_slo_finds_a_lower_capacity() {
    let _machine = MACHINE.lock().await;
    // Exponential busy times: latency rises well before the 400 req/s capacity.
    let server = BusyServer::start_exponential(8, Duration::from_millis(20)).await;
    let plan = quick_plan(&server.url("/"));
    // A comparison needs no fine bracket: 15 % keeps the two searches short.
    let coarse = |terms: &[&str]| Options {
        tolerance: 0.15,
        ..short(slo(terms), 100.0)
    };
    let loose = search(&plan, &coarse(&["p99<400ms"])).await.capacity;
    let strict = search(&plan, &coarse(&["p99<150ms"])).await.capacity;
    let (loose_rate, strict_rate) = (loose.rate.unwrap_or(0.0), strict.rate.unwrap_or(0.0));
    assert!(
        strict_rate > 0.0 && strict_rate < loose_rate,
        "strict {} / loose {}",
        strict.answer(),
        loose.answer()
    );
    // A 400 ms bound in steps of 2 s only sees overloads of about 20 % and more.
    assert!(loose_rate <= 400.0 * 1.3, "{}", loose.answer());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_generator_is_reported_as_the_limit_not_as_a_capacity() {
    let _machine = MACHINE.lock().await;
    // 800 req/s of capacity, but 1 connection of 20 ms requests carries only 50 req/s.
    let server = BusyServer::start(16, Duration::from_millis(20)).await;
    let plan = quick_plan(&server.url("/"));
    let options = Options {
        connections: Some(1),
        ..short(slo(&["p99<100ms", "errors<1%"]), 20.0)
    };
    let found = search(&plan, &options).await.capacity;
    assert_eq!(found.outcome, Outcome::GeneratorLimit, "{}", found.answer());
    assert_eq!(found.rate, None);
    assert_eq!(found.exit_code(), 1);
    let last = found.steps.last().unwrap_or_else(|| panic!("no steps"));
    assert_eq!(last.verdict, Verdict::GeneratorLimit);
    let reason = last.reason.as_deref().unwrap_or_default();
    // The one connection is the limit; on a machine busy with other work its CPU may fall
    // behind the schedule first, which is the generator's limit too, and said so.
    assert!(
        reason.contains("all 1 connections were busy")
            || reason.contains("this machine fell behind the schedule"),
        "{reason}"
    );
    assert!(
        found
            .answer()
            .starts_with("No capacity: the load generator could not offer the rate")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_first_step_breaks_early_and_there_is_no_capacity() {
    let _machine = MACHINE.lock().await;
    let server = BusyServer::start(10, Duration::from_millis(50)).await;
    let plan = quick_plan(&server.url("/"));
    let options = Options {
        warm_up: Duration::ZERO,
        step: Duration::from_secs(6),
        ..short(slo(&["p99<200ms"]), 400.0)
    };
    let found = search(&plan, &options).await.capacity;
    assert_eq!(
        found.outcome,
        Outcome::LowestStepBroke,
        "{}",
        found.answer()
    );
    assert_eq!(found.exit_code(), 3);
    let step = &found.steps[0];
    assert!(step.stopped_early, "{}", step.line());
    assert!(
        step.seconds < 4.0,
        "twice the capacity ran {} s of 6",
        step.seconds
    );
    assert!(
        found.seconds < 9.0,
        "a break and its repeat, both early: {}",
        found.seconds
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_keeps_to_its_time_budget() {
    let _machine = MACHINE.lock().await;
    let server = BusyServer::start(40, Duration::from_millis(50)).await;
    let plan = quick_plan(&server.url("/"));
    let options = Options {
        max_duration: Duration::from_secs(5),
        // 300 samples a step: a p99 from fewer is decided by one slow request.
        ..short(slo(&["p99<200ms"]), 200.0)
    };
    let started = std::time::Instant::now();
    let found = search(&plan, &options).await.capacity;
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(found.outcome, Outcome::NotReached, "{}", found.answer());
    assert!(
        found.answer().starts_with("Capacity: at least "),
        "{}",
        found.answer()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_charts_the_steps_with_the_slo_and_the_capacity_in_chromium() {
    let _machine = MACHINE.lock().await;
    let server = BusyServer::start(10, Duration::from_millis(50)).await;
    let plan = quick_plan(&server.url("/"));
    let options = Options {
        tolerance: 0.25,
        ..short(slo(&["p99<200ms", "errors<1%"]), 100.0)
    };
    let found = search(&plan, &options).await;
    let rate = found
        .capacity
        .rate
        .unwrap_or_else(|| panic!("{}", found.capacity.answer()));
    let report = found.report.unwrap_or_else(|| panic!("no report"));
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
        "the 5 charts of a one-label run and the 2 of the search must render: {}",
        dom.find("data-charts-rendered")
            .map_or("none", |at| &dom[at..(at + 30).min(dom.len())])
    );
    let from = dom
        .find("id=\"capacity\"")
        .unwrap_or_else(|| panic!("no capacity section"));
    let section = &dom[from..dom[from..]
        .find("</table>")
        .map_or(dom.len(), |to| from + to)];
    assert!(
        section.contains(&format!(
            "Capacity: {} req/s (p99&lt;200ms, errors&lt;1%)",
            capacity::rate_text(rate)
        )),
        "{section}"
    );
    for expected in [
        "data-chart=\"capacity-latency\"",
        "data-chart=\"capacity-errors\"",
        "data-slo=\"p99&lt;200ms\"",
        "data-slo=\"errors&lt;1%\"",
        "class=\"capacity\"",
        "data-series=\"p99\"",
        "data-verdict=\"held\"",
        "data-verdict=\"broke\"",
    ] {
        assert!(section.contains(expected), "{expected} not in {section}");
    }
}
