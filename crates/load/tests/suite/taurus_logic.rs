//! Taurus variables, extractors, data sources and logic blocks end to end against a real
//! login app on 127.0.0.1: what the server received proves what the users sent. Over 600
//! lines: each config is written inline beside the assertions on what it sent.

use std::path::Path;

use peregrine_load::stats::Summary;
use peregrine_load::{Plan, Report, read_plan};
use peregrine_testkit::{LoginApp, Recorded};

/// Writes `yaml` (and `files`) into a temp dir and reads the config from there.
#[expect(clippy::unwrap_used, reason = "a test helper")]
fn plan_in_dir(yaml: &str, files: &[(&str, &str)]) -> Plan {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let file = dir.path().join("test.yml");
    std::fs::write(&file, yaml).unwrap();
    // Read from another directory: data-source paths are relative to the config file.
    let plan = read_plan(&[file], &[]).unwrap_or_else(|e| panic!("{e} {:?}", e.warnings));
    drop(dir);
    plan
}

async fn run(plan: &Plan) -> Report {
    peregrine_load::run(plan, std::future::pending(), |_| {}).await
}

fn targets(recorded: &[Recorded]) -> Vec<String> {
    recorded.iter().map(|r| r.target.clone()).collect()
}

/// The statistics of one label.
fn summary(report: &Report, label: &str) -> Summary {
    report
        .labels
        .iter()
        .find(|l| l.label == label)
        .map(|l| l.summary.clone())
        .unwrap_or_else(|| panic!("no samples labelled {label}"))
}

fn failures(report: &Report) -> u64 {
    report.overall.failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flow_with_csv_users_extracts_a_token_and_sends_it() {
    let app = LoginApp::start().await;
    let yaml = format!(
        r#"
settings:
  env:
    BASE: {base}
modules:
  jmeter:
    properties: {{host: {host}}}
execution:
- concurrency: 1
  iterations: ${{__P(passes,4)}}
  scenario: login
scenarios:
  login:
    default-address: ${{BASE}}
    data-sources:
    - path: users.csv
    requests:
    - url: /login
      method: POST
      headers: {{Content-Type: application/json}}
      body: '{{"username":"${{user}}","password":"${{password}}"}}'
      extract-jsonpath:
        token: $.token
        name: {{jsonpath: "user.name", default: none}}
    - url: http://${{__P(host,nowhere.invalid)}}:${{__P(port,{port})}}/me?who=${{name}}&n=${{__threadNum}}
      label: me
      headers:
        Authorization: Bearer ${{token}}
"#,
        base = app.base(),
        host = "127.0.0.1",
        port = app.base().rsplit(':').next().unwrap_or_default(),
    );
    let plan = plan_in_dir(
        &yaml,
        &[(
            "users.csv",
            "user,password\nalice,secret\nbob,secret\ncarol,wrong\n",
        )],
    );
    let report = run(&plan).await;
    let recorded = app.recorded();
    assert_eq!(
        report.overall.samples,
        recorded.len() as u64,
        "{:?}",
        report.errors
    );
    let me: Vec<&Recorded> = recorded
        .iter()
        .filter(|r| r.target.starts_with("/me"))
        .collect();
    let auth: Vec<Option<&str>> = me.iter().map(|r| r.authorization.as_deref()).collect();
    // carol's password is wrong: her login fails, the token becomes NOT_FOUND, /me refuses.
    assert_eq!(
        auth,
        [
            Some("Bearer tok-alice"),
            Some("Bearer tok-bob"),
            Some("Bearer NOT_FOUND"),
            Some("Bearer tok-alice"),
        ]
    );
    assert_eq!(me[0].target, "/me?who=alice&n=1");
    assert_eq!(me[2].target, "/me?who=none&n=1");
    assert_eq!(failures(&report), 2, "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logic_blocks_run_as_taurus_runs_them() {
    let app = LoginApp::start().await;
    let yaml = format!(
        r#"
execution:
- concurrency: 1
  iterations: 2
  scenario: main
scenarios:
  shared:
    default-address: {base}
    headers: {{Authorization: own}}
    requests:
    - /included
  main:
    default-address: {base}
    headers: {{Authorization: top}}
    variables:
      engine: google
    requests:
    - once:
      - /once
    - set-variables:
        step: one
    - if: '"${{engine}}" == "google"'
      then:
      - /then-${{step}}
      else:
      - /else
    - if: ${{undefined}} == 1
      then: [/never]
      else: [/never-either]
    - loop: 2
      do:
      - /loop-${{__counter(TRUE)}}
    - url: /items
      extract-jsonpath:
        ids: {{jsonpath: "$..id", match-no: -1}}
    - foreach: id in ids
      do:
      - /item/${{id}}
    - set-variables:
        go: "true"
    - while: ${{go}}
      do:
      - /while
      - set-variables:
          go: "false"
    - transaction: checkout
      do:
      - /cart
      - /pay
    - include-scenario: shared
    - action: continue
    - /after-continue
"#,
        base = app.base()
    );
    let plan = plan_in_dir(&yaml, &[]);
    let report = run(&plan).await;
    let received = app.recorded();
    let included = received.iter().find(|r| r.target == "/included");
    // Only the top scenario's headers apply, to included requests too (as in Taurus).
    assert_eq!(
        included.and_then(|r| r.authorization.as_deref()),
        Some("top")
    );
    let recorded = targets(&received);
    let one_pass = |first: bool| {
        let mut pass: Vec<String> = Vec::new();
        if first {
            pass.push("/once".into());
        }
        pass.push("/then-one".into());
        let base = if first { 0 } else { 2 };
        pass.push(format!("/loop-{}", base + 1));
        pass.push(format!("/loop-{}", base + 2));
        pass.extend(
            [
                "/items",
                "/item/1",
                "/item/2",
                "/item/3",
                "/while",
                "/cart",
                "/pay",
                "/included",
            ]
            .map(String::from),
        );
        pass
    };
    let mut expected = one_pass(true);
    expected.extend(one_pass(false));
    assert_eq!(recorded, expected);
    let checkout = summary(&report, "checkout");
    assert_eq!(checkout.samples, 2);
    // Request samples equal what the server received; the transaction adds its own.
    assert_eq!(report.overall.samples, recorded.len() as u64 + 2);
    assert_eq!(failures(&report), 0, "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_pause_actions_and_regexp_extractors() {
    let app = LoginApp::start().await;
    let yaml = format!(
        r#"
execution:
- concurrency: 2
  iterations: 3
  scenario:
    default-address: {base}
    requests:
    - url: /items
      extract-regexp:
        second: {{regexp: '"id":(\d+)', match-no: 2}}
        code: {{regexp: '(\d+)', subject: http-code}}
        type: {{regexp: 'content-type: (\S+)', subject: headers}}
      extract-boundary:
        first: {{left: '"id":', right: '}}'}}
    - /got-${{second}}-${{first}}-${{code}}-${{type}}
    - action: pause
      pause-duration: 10ms
    - action: stop
    - /never
"#,
        base = app.base()
    );
    let plan = plan_in_dir(&yaml, &[]);
    let report = run(&plan).await;
    let recorded = targets(&app.recorded());
    assert_eq!(
        recorded
            .iter()
            .filter(|t| *t == "/got-2-1-200-application/json")
            .count(),
        2,
        "{recorded:?}"
    );
    assert_eq!(
        recorded.len(),
        4,
        "each user stops after its first pass: {recorded:?}"
    );
    assert_eq!(report.overall.samples, 4);
}

#[test]
fn undefined_variables_warn_once_and_a_bad_xpath_is_a_config_error() {
    let plan = plan_in_dir(
        "execution:\n- iterations: 1\n  scenario:\n    requests:\n    - url: http://127.0.0.1:9/a/${nobody}\n      headers: {X: '${nobody}'}\n      extract-xpath:\n        v: {xpath: //a}\n",
        &[],
    );
    let warnings = plan.warnings.join("\n");
    assert_eq!(warnings.matches("${nobody}").count(), 1, "{warnings}");
    assert!(!warnings.contains("extract-xpath"), "{warnings}");
    let bad = peregrine_load::plan_from_str(
        "bad.yml",
        "execution:\n- iterations: 1\n  scenario:\n    requests:\n    - url: http://127.0.0.1:9/\n      extract-xpath:\n        v: {xpath: '//a[@'}\n",
        &[],
    );
    let error = bad.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.contains("extract-xpath.v") && error.contains("invalid XPath"),
        "{error}"
    );
}

#[test]
fn data_source_paths_are_relative_to_the_config() {
    let missing = read_plan(&[Path::new("/nonexistent/dir/test.yml").to_path_buf()], &[]);
    assert!(missing.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_else_reevaluates_and_while_last_stops_after_a_failure() {
    let app = LoginApp::start().await;
    let yaml = format!(
        r#"
execution:
- concurrency: 1
  iterations: 1
  scenario:
    default-address: {base}
    variables:
      flag: "yes"
    requests:
    - if: '"${{flag}}" == "yes"'
      then:
      - /then
      - set-variables:
          flag: "no"
      else:
      - /else-too
    - if: google == google
      then: [/unquoted]
    - loop: 2
      do:
      - once: [/once-per-loop-entry]
      - /body
    - while: LAST
      do:
      - url: /me
        label: me
"#,
        base = app.base()
    );
    let plan = plan_in_dir(&yaml, &[]);
    run(&plan).await;
    let recorded = targets(&app.recorded());
    // The then-branch flips the flag, so JMeter's second If (`!(cond)`) runs the else too;
    // an unquoted string is a JavaScript error: false; `while: LAST` stops after /me fails.
    assert_eq!(
        recorded,
        [
            "/then",
            "/else-too",
            "/once-per-loop-entry",
            "/body",
            "/body",
            "/me"
        ]
    );
}

/// Mean and standard deviation of the gaps between requests the app received on `path`.
fn gaps_ms(recorded: &[Recorded], path: &str) -> (f64, f64) {
    let times: Vec<_> = recorded
        .iter()
        .filter(|r| r.target == path)
        .map(|r| r.at)
        .collect();
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0)
        .collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let variance = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    (mean, variance.sqrt())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn think_time_distributions_have_their_mean_and_spread() {
    let app = LoginApp::start().await;
    let execution = |path: &str, think: &str, iterations: u32| {
        format!(
            "- concurrency: 1\n  iterations: {iterations}\n  scenario:\n    think-time: {think}\n    requests: ['{}{path}']\n",
            app.base()
        )
    };
    let yaml = format!(
        "execution:\n{}{}{}",
        execution("/uniform", "uniform(60ms, 30ms)", 50),
        execution("/gaussian", "gaussian(60ms, 20ms)", 50),
        execution("/poisson", "poisson(110ms, 10ms)", 40),
    );
    let plan = plan_in_dir(&yaml, &[]);
    let report = run(&plan).await;
    assert_eq!(report.overall.samples, 140);
    let recorded = app.recorded();
    // Expected sd: uniform 30/sqrt(3) = 17.3 ms, gaussian 20 ms, poisson sqrt(100) = 10 ms
    // (a Poisson's spread is the square root of its mean, so it needs a longer mean to
    // stand out of timer jitter); the gap adds the request and timer lateness (about 1 ms,
    // more on a loaded machine).
    // A sample mean of n gaps strays by sd/sqrt(n): allow 4 of those, plus lateness.
    for (path, mean_ms, sd, gaps) in [
        ("/uniform", 60.0, 17.3, 49.0),
        ("/gaussian", 60.0, 20.0, 49.0),
        ("/poisson", 110.0, 10.0, 39.0),
    ] {
        let (mean, spread) = gaps_ms(&recorded, path);
        let stray = 4.0 * sd / f64::sqrt(gaps);
        assert!(
            (mean_ms - stray..mean_ms + stray + 5.0).contains(&mean),
            "{path}: mean {mean:.1} ms"
        );
        assert!(
            (sd * 0.6..sd * 1.5).contains(&spread),
            "{path}: sd {spread:.1} ms, expected about {sd}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_keep_their_cookies_and_follow_redirects_as_one_sample() {
    // A plain list of requests (the fast path), then the same as a program.
    cookies_and_redirects_as_one_sample("").await;
    cookies_and_redirects_as_one_sample("?user=${__threadNum}").await;
}

async fn cookies_and_redirects_as_one_sample(query: &str) {
    let app = LoginApp::start().await;
    let yaml = format!(
        r#"
execution:
- concurrency: 2
  iterations: 2
  scenario:
    default-address: {base}
    requests:
    - url: /session/check
      label: before
    - /session/start
    - url: /session/check
      label: after
    - url: /redirect/3{query}
      label: chain
    - url: /redirect/1
      label: not-followed
      follow-redirects: false
"#,
        base = app.base()
    );
    let plan = plan_in_dir(&yaml, &[]);
    assert_eq!(
        plan.executions[0].scenario.program.is_some(),
        !query.is_empty()
    );
    let report = run(&plan).await;
    let recorded = app.recorded();
    let label = |name: &str| summary(&report, name);
    // A user's first check has no cookie; its second (next iteration) still has it.
    assert_eq!(label("before").failures, 2, "{:?}", report.errors);
    assert_eq!(label("after").failures, 0, "{:?}", report.errors);
    assert_eq!(label("chain").samples, 4);
    assert_eq!(label("chain").failures, 0);
    assert_eq!(label("not-followed").samples, 4);
    let hops = recorded
        .iter()
        .filter(|r| r.target.starts_with("/redirect/"))
        .count();
    // 4 × (3 hops + the landing) + 4 unfollowed: server hits exceed samples, as in Taurus.
    assert_eq!(hops, 20);
    assert!(
        recorded
            .iter()
            .filter(|r| r.target == "/redirect/0")
            .all(|r| r.cookie.as_deref() == Some("sid=abc"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_caps_a_scenario_with_blocks_too() {
    let app = LoginApp::start().await;
    let yaml = format!(
        "execution:\n- concurrency: 4\n  hold-for: 1s\n  throughput: 20\n  scenario:\n    default-address: {}\n    requests:\n    - loop: 2\n      do: [/capped]\n",
        app.base()
    );
    let report = run(&plan_in_dir(&yaml, &[])).await;
    let sent = app.recorded().len() as u64;
    assert_eq!(report.overall.samples, sent);
    assert!((15..=25).contains(&sent), "{sent} requests in 1 s at 20/s");
}

/// One user passing once through `requests` (YAML list items) against the app.
fn one_user_once(app: &LoginApp, requests: &str) -> String {
    format!(
        "execution:\n- concurrency: 1\n  iterations: 1\n  scenario:\n    default-address: {}\n    requests:\n{requests}",
        app.base()
    )
}

/// Runs `yaml` (which must read without warnings) and returns the body the app received
/// at `target`.
async fn body_sent_to(app: &LoginApp, yaml: &str, target: &str) -> Option<String> {
    let plan = plan_in_dir(yaml, &[]);
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    run(&plan).await;
    app.recorded()
        .into_iter()
        .find(|r| r.target == target)
        .map(|r| r.body)
}

/// How long after `started` each request reached the app.
fn arrivals_after(app: &LoginApp, started: std::time::Instant) -> Vec<std::time::Duration> {
    app.recorded()
        .iter()
        .map(|r| r.at.saturating_duration_since(started))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn think_time_delays_the_request_it_belongs_to_on_both_paths() {
    let app = LoginApp::start().await;
    let ms = std::time::Duration::from_millis;
    // One request: the plain fast path. The first request waits too (timers precede samplers).
    let plain = plan_in_dir(
        &format!(
            "execution:\n- concurrency: 1\n  iterations: 2\n  scenario:\n    think-time: 300ms\n    requests: ['{}/plain']\n",
            app.base()
        ),
        &[],
    );
    let started = std::time::Instant::now();
    let report = run(&plain).await;
    assert_eq!(report.overall.samples, 2);
    let at = arrivals_after(&app, started);
    assert!(at[0] >= ms(300) && at[1] - at[0] >= ms(300), "{at:?}");
    // A program (two requests, a variable): scenario-level and per-request think-times.
    let app = LoginApp::start().await;
    let program = plan_in_dir(
        &format!(
            r#"
execution:
- concurrency: 1
  iterations: 1
  scenario:
    think-time: 300ms
    variables: {{page: a}}
    requests:
    - {base}/${{page}}
    - url: {base}/b
      think-time: 100ms
    - url: {base}/c
      think-time: 0s
"#,
            base = app.base()
        ),
        &[],
    );
    let started = std::time::Instant::now();
    let report = run(&program).await;
    assert_eq!(report.overall.samples, 3);
    let at = arrivals_after(&app, started);
    assert!(at[0] >= ms(300), "{at:?}");
    // After-request pauses would give gaps of 300 ms and 100 ms here.
    assert!(
        at[1] - at[0] >= ms(100) && at[1] - at[0] < ms(250),
        "{at:?}"
    );
    assert!(at[2] - at[1] < ms(80), "{at:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_request_scenario_keeps_cookies_and_follows_redirects_by_default() {
    let app = LoginApp::start().await;
    let yaml = format!(
        r#"
execution:
- concurrency: 1
  iterations: 2
  scenario: {{requests: ['{base}/session/start']}}
- concurrency: 1
  iterations: 1
  scenario: {{requests: ['{base}/redirect/2']}}
"#,
        base = app.base()
    );
    let plan = plan_in_dir(&yaml, &[]);
    assert!(plan.executions.iter().all(|e| e.scenario.program.is_none()));
    let report = run(&plan).await;
    let recorded = app.recorded();
    let starts: Vec<_> = recorded
        .iter()
        .filter(|r| r.target == "/session/start")
        .map(|r| r.cookie.clone())
        .collect();
    // Taurus's store-cookie defaults to true: the second pass sends the first's cookie.
    assert_eq!(starts, [None, Some("sid=abc".to_owned())]);
    // follow-redirects defaults to true: three hits, one successful sample.
    assert_eq!(
        recorded
            .iter()
            .filter(|r| r.target.starts_with("/redirect/"))
            .count(),
        3
    );
    assert_eq!(report.overall.samples, 3);
    assert_eq!(report.overall.failures, 0, "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_model_runs_a_whole_scenario_program_at_the_arrival_rate() {
    let app = LoginApp::start().await;
    let yaml = format!(
        r#"
execution:
- arrival-rate: 30
  concurrency: 4
  hold-for: 1s
  scenario: flow
scenarios:
  flow:
    default-address: {base}
    data-sources: [users.csv]
    variables: {{greeting: hi}}
    requests:
    - url: /login
      method: POST
      body: '{{"username":"${{user}}","password":"secret"}}'
      extract-jsonpath: {{token: $.token}}
    - if: '"${{token}}" != "NOT_FOUND"'
      then:
      - url: /me?say=${{greeting}}
        headers:
          Authorization: Bearer ${{token}}
"#,
        base = app.base()
    );
    let plan = plan_in_dir(&yaml, &[("users.csv", "user\nalice\nbob\n")]);
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    let report = run(&plan).await;
    let recorded = app.recorded();
    // Each request takes one arrival: 30 per second, for one second.
    assert!((25..=31).contains(&recorded.len()), "{}", recorded.len());
    assert_eq!(report.overall.samples, recorded.len() as u64);
    assert_eq!(report.overall.failures, 0, "{:?}", report.errors);
    let me: Vec<&Recorded> = recorded
        .iter()
        .filter(|r| r.target.starts_with("/me"))
        .collect();
    assert!(me.len() >= 10, "{}", me.len());
    assert!(me.iter().all(|r| r.target == "/me?say=hi"
        && matches!(
            r.authorization.as_deref(),
            Some("Bearer tok-alice" | "Bearer tok-bob")
        )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn css_selectors_extract_attributes_and_text_for_the_next_request() {
    let app = LoginApp::start().await;
    let yaml = one_user_once(
        &app,
        r#"
    - url: /page
      extract-css-jquery:
        csrf: {expression: 'input[name=csrf]', attribute: value}
        heading: h1
        links: {expression: a.item, attribute: href, match-no: -1}
        second: {expression: a.item, match-no: 2}
        missing: {expression: 'div.none', default: nothing}
        absent: {expression: 'input[name=qty]', attribute: value, match-no: 1}
    - url: /buy
      method: POST
      body: 'csrf=${csrf}&h=${heading}&n=${links_matchNr}&l2=${links_2}&s=${second}&m=${missing}&a=[${absent}]'
"#,
    );
    assert_eq!(
        body_sent_to(&app, &yaml, "/buy").await.as_deref(),
        Some("csrf=c-42&h=Welcome back&n=2&l2=/items/2&s=Two&m=nothing&a=[]")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_env_values_are_what_env_functions_read_at_run_time() {
    let app = LoginApp::start().await;
    let yaml = format!(
        r#"
settings:
  env:
    TOKEN: t-${{SUFFIX}}
    SUFFIX: 7
    GONE: null
execution:
- concurrency: 1
  iterations: 1
  scenario:
    requests:
    - {base}/env?t=${{__env(TOKEN)}}&g=${{__env(GONE,,gone)}}&u=${{__env(PEREGRINE_SURELY_UNSET,,unset)}}
"#,
        base = app.base()
    );
    let plan = plan_in_dir(&yaml, &[]);
    run(&plan).await;
    // Taurus exports settings.env to JMeter's environment; `null` removes a variable.
    assert_eq!(targets(&app.recorded()), ["/env?t=t-7&g=gone&u=unset"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xpath_extracts_from_xml_and_from_html_with_the_tolerant_parser() {
    let app = LoginApp::start().await;
    let yaml = one_user_once(
        &app,
        r#"
    - url: /catalog.xml
      extract-xpath:
        books: {xpath: count(//book)}
        second: {xpath: '//book[2]/@id', match-no: 1}
        titles: {xpath: //book/title}
    - url: /page
      extract-xpath:
        shop: {xpath: /html/head/title, use-tolerant-parser: true}
        csrf:
          xpath: //input[@name='csrf']/@value
          use-tolerant-parser: true
          default: NO_CSRF
        links: {xpath: "//a[@class='item']/@href", use-tolerant-parser: true}
        strict: {xpath: //title, default: not-xml}
    - url: /done
      method: POST
      body: 'b=${books}&s=${second}&t=${titles},${titles_2},${titles_matchNr}&shop=${shop}&c=${csrf}&l=${links},${links_2}&x=${strict}'
"#,
    );
    // match-no -1 (the default) sets the variable to the first match as well as v_1..v_N;
    // the HTML page is not well-formed XML, so the strict parser leaves the default.
    assert_eq!(
        body_sent_to(&app, &yaml, "/done").await.as_deref(),
        Some("b=2&s=b2&t=Rust,Go,2&shop=Shop&c=c-42&l=/items/1,/items/2&x=not-xml")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flat_mapping_body_is_posted_as_a_form_unless_the_content_type_is_json() {
    let app = LoginApp::start().await;
    let yaml = one_user_once(
        &app,
        r#"
    - url: /page
      extract-regexp: {tok: 'value="(c-\d+)"'}
    - url: /form
      method: POST
      body: {user: a b&c, remember: true, n: 3, token: '${tok}'}
    - url: /json
      method: POST
      headers: {Content-Type: application/json}
      body: {user: a b, remember: true}
"#,
    );
    // Taurus sends a flat mapping as form parameters (booleans as Python writes them).
    assert_eq!(
        body_sent_to(&app, &yaml, "/form").await.as_deref(),
        Some("user=a+b%26c&remember=True&n=3&token=c-42")
    );
    assert_eq!(
        app.recorded()
            .iter()
            .find(|r| r.target == "/json")
            .map(|r| r.body.clone())
            .as_deref(),
        Some(r#"{"user":"a b","remember":true}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_from_a_csv_row_choose_their_server_per_request() {
    let (a, b) = (LoginApp::start().await, LoginApp::start().await);
    let port = |app: &LoginApp| app.base().rsplit(':').next().unwrap_or_default().to_owned();
    let csv = format!(
        "url,port,page\n{}/first,{},/p1?n=1\n{}/second,{},/p2\n",
        a.base(),
        port(&b),
        b.base(),
        port(&a)
    );
    let plan = plan_in_dir(
        "execution:\n- iterations: 2\n  scenario:\n    data-sources: [urls.csv]\n    requests:\n    - ${url}\n    - url: http://127.0.0.1:${port}${page}\n      label: page\n    - url: ${nothing}/x\n      label: no-scheme\n",
        &[("urls.csv", &csv)],
    );
    let report = run(&plan).await;
    assert_eq!(targets(&a.recorded()), ["/first", "/p2"]);
    assert_eq!(targets(&b.recorded()), ["/p1?n=1", "/second"]);
    assert_eq!(summary(&report, "page").failures, 0, "{:?}", report.errors);
    // A URL that renders without a scheme is a failed sample, not a panic or a stop.
    assert_eq!(summary(&report, "no-scheme").failures, 2);
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.label == "no-scheme" && e.message.contains("http:// or https://")),
        "{:?}",
        report.errors
    );
    assert_eq!(failures(&report), 2, "{:?}", report.errors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_from_an_extractor_sends_the_next_request_to_another_server() {
    let b = LoginApp::start().await;
    let body: &'static str = Box::leak(
        format!(
            r#"{{"next":"{}/found?x=1","host":"{}"}}"#,
            b.base(),
            b.base()
        )
        .into_boxed_str(),
    );
    let a = peregrine_testkit::TinyServer::start(peregrine_testkit::Behavior {
        body,
        ..Default::default()
    })
    .await;
    let plan = plan_in_dir(
        &format!(
            "execution:\n- iterations: 3\n  scenario:\n    default-address: {}\n    requests:\n    - url: /start\n      extract-jsonpath:\n        next: $.next\n        host: $.host\n    - url: ${{next}}\n      label: next\n    - url: ${{host}}/items\n      label: items\n    - url: /again\n      label: again\n",
            a.url("")
        ),
        &[],
    );
    let report = run(&plan).await;
    assert_eq!(failures(&report), 0, "{:?}", report.errors);
    // The default address stays the fixed one; the extracted URLs go to the other server.
    assert_eq!(a.received(), 6);
    assert_eq!(
        targets(&b.recorded()),
        [
            "/found?x=1",
            "/items",
            "/found?x=1",
            "/items",
            "/found?x=1",
            "/items"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn included_scenarios_inherit_the_address_variables_and_headers_of_the_includer() {
    let (a, b) = (LoginApp::start().await, LoginApp::start().await);
    let yaml = format!(
        r#"
execution:
- iterations: 2
  scenario: main
scenarios:
  part:
    variables: {{who: ignored}}
    headers: {{Authorization: ignored}}
    data-sources: [ids.csv]
    requests:
    - /part?who=${{who}}
    - url: /item/${{id}}
      label: item
  elsewhere:
    default-address: {b}
    requests: [/b]
  main:
    default-address: {a}
    headers: {{Authorization: top}}
    variables: {{who: alice}}
    requests:
    - include-scenario: part
    - include-scenario: elsewhere
"#,
        a = a.base(),
        b = b.base()
    );
    let plan = plan_in_dir(&yaml, &[("ids.csv", "id\n7\n8\n")]);
    let report = run(&plan).await;
    assert_eq!(failures(&report), 0, "{:?}", report.errors);
    let received = a.recorded();
    // `- /part` is relative to the includer's address; the includer's variables apply,
    // and its headers; the included scenario's data source gives a row per iteration.
    assert_eq!(
        targets(&received),
        ["/part?who=alice", "/item/7", "/part?who=alice", "/item/8"]
    );
    assert!(
        received
            .iter()
            .all(|r| r.authorization.as_deref() == Some("top")),
        "{received:?}"
    );
    // An included scenario with its own address keeps it.
    assert_eq!(targets(&b.recorded()), ["/b", "/b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jayway_jsonpaths_extract_and_assert_on_a_real_response() {
    let app = LoginApp::start().await;
    let yaml = format!(
        r#"
execution:
- iterations: 1
  scenario:
    default-address: {base}
    requests:
    - url: /items
      extract-jsonpath:
        first: $.[0].id
        count: $.length()
        last: $[(@.length-1)].id
        big: {{jsonpath: "$[?(@.id > 1)].id", match-no: 1}}
        sum: $..id.sum()
        none: {{jsonpath: "$[?(@.id in [7, 8])].id", default: nothing}}
      assert-jsonpath:
      - jsonpath: $.[-1].id
        expected-value: "3"
      - jsonpath: $.length()
        expected-value: "3"
    - /next?f=${{first}}&c=${{count}}&l=${{last}}&b=${{big}}&s=${{sum}}&n=${{none}}
"#,
        base = app.base()
    );
    let plan = plan_in_dir(&yaml, &[]);
    let report = run(&plan).await;
    assert_eq!(failures(&report), 0, "{:?}", report.errors);
    assert_eq!(
        targets(&app.recorded()),
        ["/items", "/next?f=1&c=3&l=3&b=2&s=6.0&n=nothing"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xpath_assertions_pass_and_fail_the_samples_they_should() {
    let app = LoginApp::start().await;
    let yaml = format!(
        r#"
execution:
- iterations: 2
  scenario:
    default-address: {base}
    requests:
    - url: /catalog.xml
      label: holds
      assert-xpath:
      - //book[@id='b2']/title
      - xpath: count(//book) = 2
      - xpath: //magazine
        invert: true
    - url: /catalog.xml
      label: missing
      assert-xpath: ['//magazine']
    - url: /page
      label: html
      assert-xpath:
      - xpath: //input[@name='csrf']
        use-tolerant-parser: true
    - url: /page
      label: not-xml
      assert-xpath: ['//title']
"#,
        base = app.base()
    );
    let plan = plan_in_dir(&yaml, &[]);
    let report = run(&plan).await;
    assert_eq!(summary(&report, "holds").failures, 0, "{:?}", report.errors);
    assert_eq!(summary(&report, "html").failures, 0, "{:?}", report.errors);
    assert_eq!(summary(&report, "missing").failures, 2);
    // An HTML page is not well-formed XML: without the tolerant parser the check fails.
    assert_eq!(summary(&report, "not-xml").failures, 2);
    let messages: Vec<&str> = report.errors.iter().map(|e| e.message.as_str()).collect();
    assert!(
        messages.contains(&"assertion failed: //magazine matched nothing")
            && messages.contains(&"assertion failed: //title: the response is not well-formed XML"),
        "{messages:?}"
    );
    let bad = peregrine_load::plan_from_str(
        "bad.yml",
        "execution:\n- iterations: 1\n  scenario:\n    requests:\n    - url: http://127.0.0.1:9/\n      assert-xpath: ['//a[@']\n",
        &[],
    );
    let error = bad.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.contains("assert-xpath.0") && error.contains("invalid XPath"),
        "{error}"
    );
}
