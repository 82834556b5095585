//! JMeter test plans (JMX, as JMeter 5 saves them) run end to end against a real app on
//! 127.0.0.1: what the server received proves what the plan sent, the report what was
//! counted. Fixtures are in tests/jmx/. Over 600 lines: JMeter's XML is verbose, and the
//! small plans are written inline beside the assertions on what they send.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use peregrine_load::{Plan, Report, read_plan};
use peregrine_testkit::{LoginApp, Recorded};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/jmx")
        .join(name)
}

/// The plan of `files` with the app's port as the JMeter property `port`.
fn plan_for(files: &[PathBuf], app: &LoginApp) -> Plan {
    let port = app.base().rsplit(':').next().unwrap_or_default().to_owned();
    let overrides = [format!("modules.jmeter.properties.port={port}")];
    read_plan(files, &overrides).unwrap_or_else(|e| panic!("{e} {:?}", e.warnings))
}

/// Writes `text` as `name` in a temp dir, with the fixtures' CSV beside it.
#[expect(clippy::unwrap_used, reason = "a test helper")]
fn written(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("users.csv"), dir.path().join("users.csv")).unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, text).unwrap();
    (dir, file)
}

async fn run(plan: &Plan) -> Report {
    peregrine_load::run(plan, std::future::pending(), |_| {}).await
}

fn targets(recorded: &[Recorded]) -> Vec<String> {
    recorded.iter().map(|r| r.target.clone()).collect()
}

fn count(report: &Report, label: &str) -> u64 {
    report
        .labels
        .iter()
        .find(|l| l.label == label)
        .map_or(0, |l| l.summary.samples)
}

/// A minimal JMeter 5 plan around `body` (the thread group's tree), with `loops` passes of
/// one thread.
fn plan_text(group: &str, body: &str) -> String {
    plan_of_groups(&[(group.to_owned(), body.to_owned())], false)
}

fn thread_group(threads: u32, loops: i64) -> String {
    format!(
        r#"<ThreadGroup guiclass="ThreadGroupGui" testclass="ThreadGroup" testname="Thread Group">
        <stringProp name="ThreadGroup.on_sample_error">continue</stringProp>
        <elementProp name="ThreadGroup.main_controller" elementType="LoopController" guiclass="LoopControlPanel" testclass="LoopController" testname="Loop Controller">
          <boolProp name="LoopController.continue_forever">false</boolProp>
          <stringProp name="LoopController.loops">{loops}</stringProp>
        </elementProp>
        <stringProp name="ThreadGroup.num_threads">{threads}</stringProp>
        <stringProp name="ThreadGroup.ramp_time">0</stringProp>
        <boolProp name="ThreadGroup.scheduler">false</boolProp>
        <stringProp name="ThreadGroup.duration"></stringProp>
        <stringProp name="ThreadGroup.delay"></stringProp>
      </ThreadGroup>"#
    )
}

fn sampler(name: &str, method: &str, path: &str, children: &str) -> String {
    format!(
        r#"<HTTPSamplerProxy guiclass="HttpTestSampleGui" testclass="HTTPSamplerProxy" testname="{name}" enabled="true">
          <elementProp name="HTTPsampler.Arguments" elementType="Arguments" guiclass="HTTPArgumentsPanel" testclass="Arguments" testname="User Defined Variables" enabled="true">
            <collectionProp name="Arguments.arguments"/>
          </elementProp>
          <stringProp name="HTTPSampler.path">{path}</stringProp>
          <stringProp name="HTTPSampler.method">{method}</stringProp>
          <boolProp name="HTTPSampler.follow_redirects">true</boolProp>
          <boolProp name="HTTPSampler.use_keepalive">true</boolProp>
        </HTTPSamplerProxy>
        <hashTree>{children}</hashTree>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_plan_sends_csv_users_extracts_tokens_and_asserts() {
    let app = LoginApp::start().await;
    let plan = plan_for(&[fixture("login.jmx")], &app);
    assert_eq!(plan.executions.len(), 1);
    assert_eq!(plan.executions[0].concurrency, 2);
    assert_eq!(plan.executions[0].iterations, Some(2));
    // The listeners are ignored silently; the disabled request is not read at all.
    assert!(
        plan.warnings
            .iter()
            .all(|w| !w.contains("View Results") && !w.contains("Disabled")),
        "{:?}",
        plan.warnings
    );
    let report = run(&plan).await;
    let recorded = app.recorded();
    let logins: Vec<&Recorded> = recorded.iter().filter(|r| r.target == "/login").collect();
    assert_eq!(logins.len(), 4, "{:?}", targets(&recorded));
    let mut users: Vec<String> = logins
        .iter()
        .map(|r| r.body.split('"').nth(3).unwrap_or_default().to_owned())
        .collect();
    users.sort();
    assert_eq!(users, ["alice", "alice", "bob", "bob"]);
    let profiles: Vec<&Recorded> = recorded
        .iter()
        .filter(|r| r.target.starts_with("/me"))
        .collect();
    assert_eq!(profiles.len(), 4);
    assert!(
        profiles
            .iter()
            .all(|r| r.target == "/me?fields=name%20and%20id"
                || r.target == "/me?fields=name+and+id"),
        "{:?}",
        targets(&recorded)
    );
    assert!(
        profiles.iter().all(|r| r
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer tok-"))),
        "{profiles:?}"
    );
    assert!(recorded.iter().all(|r| r.target != "/never"));
    assert_eq!(count(&report, "Login"), 4);
    assert_eq!(count(&report, "Profile"), 4);
    assert_eq!(report.overall.failures, 0, "{:?}", report.errors);
}

#[test]
fn a_non_http_sampler_stops_the_run_naming_its_path_in_the_plan() {
    let jdbc = r#"<JDBCSampler guiclass="TestBeanGUI" testclass="JDBCSampler" testname="Read orders">
          <stringProp name="dataSource">db</stringProp>
          <stringProp name="query">select 1</stringProp>
        </JDBCSampler>
        <hashTree/>"#;
    let (_dir, file) = written(
        "db.jmx",
        &plan_text(
            &thread_group(1, 1),
            &format!("{}{jdbc}", sampler("Home", "GET", "/", "")),
        ),
    );
    let error = read_plan(&[file], &[]).map(|_| ()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("db.jmx: Test Plan > Thread Group > Read orders")
            && message.contains("JDBCSampler is not an HTTP sampler"),
        "{message}"
    );
}

#[test]
fn unknown_elements_are_warned_about_by_path_and_skipped() {
    let body = format!(
        r#"<JSR223PreProcessor guiclass="TestBeanGUI" testclass="JSR223PreProcessor" testname="Sign request">
          <stringProp name="scriptLanguage">groovy</stringProp>
          <stringProp name="script">vars.put("x", "1")</stringProp>
        </JSR223PreProcessor>
        <hashTree/>
        <DNSCacheManager guiclass="DNSCachePanel" testclass="DNSCacheManager" testname="DNS Cache Manager">
          <collectionProp name="DNSCacheManager.servers"/>
          <boolProp name="DNSCacheManager.clearEachIteration">false</boolProp>
        </DNSCacheManager>
        <hashTree/>
        {}"#,
        sampler("Home", "GET", "/", "")
    );
    let (_dir, file) = written("warn.jmx", &plan_text(&thread_group(1, 1), &body));
    let plan = read_plan(&[file], &[]).unwrap_or_else(|e| panic!("{e}"));
    let about = |path: &str| plan.warnings.iter().any(|w| w.contains(path));
    assert!(
        about(
            "warn.jmx: Test Plan > Thread Group > Sign request: JSR223PreProcessor is not supported"
        ),
        "{:?}",
        plan.warnings
    );
    assert!(
        about("Thread Group > DNS Cache Manager: custom DNS"),
        "{:?}",
        plan.warnings
    );
    assert_eq!(plan.executions[0].scenario.requests.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_csv_file_is_logged_and_its_variables_are_eof() {
    let app = LoginApp::start().await;
    let csv = r#"<CSVDataSet guiclass="TestBeanGUI" testclass="CSVDataSet" testname="Missing data">
          <stringProp name="filename">no-such-file.csv</stringProp>
          <stringProp name="variableNames">user,pass</stringProp>
          <stringProp name="delimiter">,</stringProp>
          <boolProp name="recycle">true</boolProp>
        </CSVDataSet>
        <hashTree/>"#;
    let body = format!("{csv}{}", sampler("Lookup", "GET", "/lookup/${user}", ""));
    let (_dir, file) = written("csv.jmx", &plan_text(&thread_group(1, 2), &body));
    let plan = plan_for(&[file], &app);
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("Thread Group > Missing data") && w.contains("<EOF>")),
        "{:?}",
        plan.warnings
    );
    let report = run(&plan).await;
    assert_eq!(
        targets(&app.recorded()),
        ["/lookup/%3CEOF%3E", "/lookup/%3CEOF%3E"]
    );
    assert_eq!(count(&report, "Lookup"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_run_as_jmeter_runs_them() {
    let app = LoginApp::start().await;
    let body = format!(
        r#"<OnceOnlyController guiclass="OnceOnlyControllerGui" testclass="OnceOnlyController" testname="Once"/>
        <hashTree>{once}</hashTree>
        <LoopController guiclass="LoopControlPanel" testclass="LoopController" testname="Three times">
          <boolProp name="LoopController.continue_forever">true</boolProp>
          <stringProp name="LoopController.loops">3</stringProp>
        </LoopController>
        <hashTree>{looped}</hashTree>
        <IfController guiclass="IfControllerPanel" testclass="IfController" testname="Only when three">
          <stringProp name="IfController.condition">${{__jexl3("${{count}}" == "3")}}</stringProp>
          <boolProp name="IfController.evaluateAll">false</boolProp>
          <boolProp name="IfController.useExpression">true</boolProp>
        </IfController>
        <hashTree>{if_true}</hashTree>
        <IfController guiclass="IfControllerPanel" testclass="IfController" testname="Never">
          <stringProp name="IfController.condition">"${{count}}" == "4"</stringProp>
          <boolProp name="IfController.useExpression">false</boolProp>
        </IfController>
        <hashTree>{if_false}</hashTree>
        <TransactionController guiclass="TransactionControllerGui" testclass="TransactionController" testname="Checkout">
          <boolProp name="TransactionController.includeTimers">false</boolProp>
          <boolProp name="TransactionController.parent">false</boolProp>
        </TransactionController>
        <hashTree>{items}</hashTree>
        <ForeachController guiclass="ForeachControlPanel" testclass="ForeachController" testname="Each id">
          <stringProp name="ForeachController.inputVal">id</stringProp>
          <stringProp name="ForeachController.returnVal">one</stringProp>
          <boolProp name="ForeachController.useSeparator">true</boolProp>
        </ForeachController>
        <hashTree>{each}</hashTree>
        <GenericController guiclass="LogicControllerGui" testclass="GenericController" testname="Disabled block" enabled="false"/>
        <hashTree>{never}</hashTree>
        <ModuleController guiclass="ModuleControllerGui" testclass="ModuleController" testname="Reuse">
          <collectionProp name="ModuleController.node_path">
            <stringProp name="764597751">Test Plan</stringProp>
            <stringProp name="764597751">Test Plan</stringProp>
            <stringProp name="-1">Shared steps</stringProp>
          </collectionProp>
        </ModuleController>
        <hashTree/>"#,
        once = sampler("First", "GET", "/first", ""),
        looped = sampler("Looped", "GET", "/loop/${__counter(TRUE,count)}", ""),
        if_true = sampler("Three", "GET", "/three", ""),
        if_false = sampler("Four", "GET", "/four", ""),
        items = sampler(
            "Items",
            "GET",
            "/items",
            r#"<JSONPostProcessor guiclass="JSONPostProcessorGui" testclass="JSONPostProcessor" testname="Ids">
            <stringProp name="JSONPostProcessor.referenceNames">id</stringProp>
            <stringProp name="JSONPostProcessor.jsonPathExprs">$[*].id</stringProp>
            <stringProp name="JSONPostProcessor.match_numbers">-1</stringProp>
          </JSONPostProcessor>
          <hashTree/>"#
        ),
        each = sampler("Item", "GET", "/item/${one}", ""),
        never = sampler("Never", "GET", "/never", ""),
    );
    let fragment = format!(
        r#"<TestFragmentController guiclass="TestFragmentControllerGui" testclass="TestFragmentController" testname="Shared steps"/>
      <hashTree>{}</hashTree>
      {}"#,
        sampler("Shared", "GET", "/shared", ""),
        thread_group(1, 2)
    );
    let text = plan_text(&fragment, &body);
    let (_dir, file) = written("controllers.jmx", &text);
    let plan = plan_for(&[file], &app);
    assert_eq!(plan.executions.len(), 1, "the fragment is no thread group");
    let report = run(&plan).await;
    let sent = targets(&app.recorded());
    let first_pass = [
        "/first", "/loop/1", "/loop/2", "/loop/3", "/three", "/items", "/item/1", "/item/2",
        "/item/3", "/shared",
    ];
    assert_eq!(&sent[..first_pass.len()], first_pass, "{sent:?}");
    // The second pass: no Once Only request, the counter goes on (so no "three").
    assert_eq!(
        &sent[first_pass.len()..],
        [
            "/loop/4", "/loop/5", "/loop/6", "/items", "/item/1", "/item/2", "/item/3", "/shared"
        ],
        "{sent:?}"
    );
    assert_eq!(count(&report, "Checkout"), 2);
    assert_eq!(count(&report, "Never"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_timer_is_cut_at_the_scheduled_end() {
    let app = LoginApp::start().await;
    let group = r#"<ThreadGroup guiclass="ThreadGroupGui" testclass="ThreadGroup" testname="Timed">
        <elementProp name="ThreadGroup.main_controller" elementType="LoopController" guiclass="LoopControlPanel" testclass="LoopController" testname="Loop Controller">
          <boolProp name="LoopController.continue_forever">false</boolProp>
          <intProp name="LoopController.loops">-1</intProp>
        </elementProp>
        <stringProp name="ThreadGroup.num_threads">1</stringProp>
        <stringProp name="ThreadGroup.ramp_time">0</stringProp>
        <boolProp name="ThreadGroup.scheduler">true</boolProp>
        <stringProp name="ThreadGroup.duration">1</stringProp>
        <stringProp name="ThreadGroup.delay"></stringProp>
      </ThreadGroup>"#;
    let body = format!(
        r#"{}
        <ConstantTimer guiclass="ConstantTimerGui" testclass="ConstantTimer" testname="Think">
          <stringProp name="ConstantTimer.delay">20000</stringProp>
        </ConstantTimer>
        <hashTree/>"#,
        sampler("Slow", "GET", "/slow", "")
    );
    let (_dir, file) = written("timer.jmx", &plan_text(group, &body));
    let plan = plan_for(&[file], &app);
    let execution = &plan.executions[0];
    assert_eq!(execution.hold_for, Duration::from_secs(1));
    assert_eq!(execution.iterations, None);
    assert_eq!(
        execution.scenario.requests[0].think_time,
        Duration::from_secs(20)
    );
    let started = Instant::now();
    let report = run(&plan).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The timer runs before the sampler: the pause is cut before anything is sent.
    assert_eq!(count(&report, "Slow"), 0);
    assert!(app.recorded().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_basic_auth_form_posts_and_timers_are_sent() {
    let app = LoginApp::start().await;
    let upload = r#"<HTTPSamplerProxy guiclass="HttpTestSampleGui" testclass="HTTPSamplerProxy" testname="Upload">
          <elementProp name="HTTPsampler.Files" elementType="HTTPFileArgs">
            <collectionProp name="HTTPFileArgs.files">
              <elementProp name="users.csv" elementType="HTTPFileArg">
                <stringProp name="File.path">users.csv</stringProp>
                <stringProp name="File.paramname">data</stringProp>
                <stringProp name="File.mimetype">text/csv</stringProp>
              </elementProp>
            </collectionProp>
          </elementProp>
          <elementProp name="HTTPsampler.Arguments" elementType="Arguments">
            <collectionProp name="Arguments.arguments">
              <elementProp name="kind" elementType="HTTPArgument">
                <stringProp name="Argument.name">kind</stringProp>
                <stringProp name="Argument.value">users</stringProp>
              </elementProp>
            </collectionProp>
          </elementProp>
          <stringProp name="HTTPSampler.path">/upload</stringProp>
          <stringProp name="HTTPSampler.method">POST</stringProp>
          <boolProp name="HTTPSampler.DO_MULTIPART_POST">true</boolProp>
        </HTTPSamplerProxy>
        <hashTree/>"#;
    let form = r#"<HTTPSampler guiclass="HttpTestSampleGui" testclass="HTTPSampler" testname="Old form">
          <elementProp name="HTTPsampler.Arguments" elementType="Arguments">
            <collectionProp name="Arguments.arguments">
              <elementProp name="q" elementType="HTTPArgument">
                <boolProp name="HTTPArgument.always_encode">true</boolProp>
                <stringProp name="Argument.name">q</stringProp>
                <stringProp name="Argument.value">a&amp;b c</stringProp>
              </elementProp>
              <elementProp name="n" elementType="HTTPArgument">
                <stringProp name="Argument.name">n</stringProp>
                <stringProp name="Argument.value">${__threadNum}</stringProp>
              </elementProp>
            </collectionProp>
          </elementProp>
          <stringProp name="HTTPSampler.path">/form</stringProp>
          <stringProp name="HTTPSampler.method">POST</stringProp>
        </HTTPSampler>
        <hashTree/>"#;
    let body = format!(
        r#"<AuthManager guiclass="AuthPanel" testclass="AuthManager" testname="HTTP Authorization Manager">
          <collectionProp name="AuthManager.auth_list">
            <elementProp name="" elementType="Authorization">
              <stringProp name="Authorization.url">http://127.0.0.1</stringProp>
              <stringProp name="Authorization.username">user</stringProp>
              <stringProp name="Authorization.password">pass</stringProp>
              <stringProp name="Authorization.mechanism">BASIC</stringProp>
            </elementProp>
          </collectionProp>
        </AuthManager>
        <hashTree/>
        <UniformRandomTimer guiclass="UniformRandomTimerGui" testclass="UniformRandomTimer" testname="Think">
          <stringProp name="ConstantTimer.delay">100</stringProp>
          <stringProp name="RandomTimer.range">100</stringProp>
        </UniformRandomTimer>
        <hashTree/>
        {upload}{form}"#
    );
    let (_dir, file) = written("forms.jmx", &plan_text(&thread_group(1, 1), &body));
    let plan = plan_for(&[file], &app);
    let started = Instant::now();
    let report = run(&plan).await;
    // Two pauses of 100-200 ms each.
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    let recorded = app.recorded();
    assert_eq!(targets(&recorded), ["/upload", "/form"]);
    assert!(
        recorded
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Basic dXNlcjpwYXNz")),
        "{recorded:?}"
    );
    let upload = &recorded[0].body;
    assert!(
        upload.contains("name=\"kind\"\r\n\r\nusers\r\n")
            && upload.contains("name=\"data\"; filename=\"users.csv\"\r\nContent-Type: text/csv\r\n\r\nuser\nalice\nbob\n"),
        "{upload}"
    );
    // Encoded as Java's URLEncoder does (a space is `+`).
    assert_eq!(recorded[1].body, "q=a%26b+c&n=1");
    assert_eq!(report.overall.failures, 0, "{:?}", report.errors);
}

#[test]
fn hostile_and_broken_files_are_refused_naming_the_file() {
    let entity = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<jmeterTestPlan version="1.2"><hashTree><TestPlan testname="&lol2;"/><hashTree/></hashTree></jmeterTestPlan>"#;
    for (name, text, expected) in [
        ("entity.jmx", entity, "DTD"),
        (
            "broken.jmx",
            "<jmeterTestPlan><hashTree>",
            "not a readable JMX",
        ),
        ("other.jmx", "<project/>", "not a JMeter test plan"),
        (
            "empty.jmx",
            &plan_text(&thread_group(1, 1), ""),
            "nothing to run",
        ),
    ] {
        let (_dir, file) = written(name, text);
        let message = read_plan(&[file], &[]).map(|_| ()).unwrap_err().to_string();
        assert!(
            message.contains(name) && message.contains(expected),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jmx_plan_and_its_yaml_equivalent_compile_to_the_same_plan() {
    let app = LoginApp::start().await;
    let from_jmx = plan_for(&[fixture("shop.jmx")], &app);
    let from_yaml = plan_for(&[fixture("shop.yml")], &app);
    assert_eq!(from_jmx.labels, ["Items", "Item", "Page"]);
    assert_eq!(from_jmx.labels, from_yaml.labels);
    assert_eq!(
        format!("{:?}", from_jmx.executions),
        format!("{:?}", from_yaml.executions)
    );
    // And so they send the same requests.
    run(&from_jmx).await;
    let jmx_sent = targets(&app.recorded());
    assert_eq!(jmx_sent.len(), 18, "{jmx_sent:?}");
    assert!(
        jmx_sent
            .iter()
            .all(|t| ["/items", "/items/1", "/page"].contains(&t.as_str()))
    );
    run(&from_yaml).await;
    let all = targets(&app.recorded());
    let mut yaml_sent = all[jmx_sent.len()..].to_vec();
    let mut jmx_sorted = jmx_sent.clone();
    yaml_sent.sort();
    jmx_sorted.sort();
    assert_eq!(jmx_sorted, yaml_sent);
}

/// Two thread groups of 3 and 1 threads, and a setUp group of 1.
fn two_groups() -> String {
    let url = |path: &str| format!("http://127.0.0.1:${{__P(port,80)}}/{path}");
    plan_of_groups(
        &[
            (
                group_of("SetupThreadGroup", "Prepare", 1, 1),
                sampler("Prepare", "GET", &url("prepare"), ""),
            ),
            (
                group_of("ThreadGroup", "Browsers", 3, 1),
                sampler("Browse", "GET", &url("browse"), ""),
            ),
            (
                group_of("ThreadGroup", "Buyers", 1, 1),
                sampler("Buy", "GET", &url("buy"), ""),
            ),
        ],
        false,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taurus_execution_spreads_its_load_over_the_plans_thread_groups() {
    let app = LoginApp::start().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("groups.jmx"), two_groups()).unwrap_or_else(|e| panic!("{e}"));
    let yaml = dir.path().join("test.yml");
    std::fs::write(
        &yaml,
        "execution:\n- concurrency: 10\n  hold-for: 1s\n  throughput: 40\n  scenario: groups\nscenarios:\n  groups:\n    script: groups.jmx\n    variables: {extra: 1}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let plan = plan_for(&[yaml], &app);
    let names: Vec<&str> = plan
        .executions
        .iter()
        .map(|e| e.scenario.name.as_str())
        .collect();
    assert_eq!(names, ["Prepare", "Browsers", "Buyers"]);
    let users: Vec<u32> = plan.executions.iter().map(|e| e.concurrency).collect();
    // 10 over 3 + 1 threads: 7.5 rounds to 8 and 2.5 to 2 (Python's rounding, as Taurus);
    // the setUp group keeps its own.
    assert_eq!(users, [1, 8, 2]);
    for execution in &plan.executions[1..] {
        assert_eq!(execution.hold_for, Duration::from_secs(1));
        assert_eq!(execution.ramp_up, Duration::ZERO);
        assert_eq!(execution.iterations, None);
    }
    assert_eq!(plan.executions[0].iterations, Some(1));
    let rates: Vec<Option<f64>> = plan.executions.iter().map(|e| e.throughput).collect();
    assert_eq!(rates, [None, Some(30.0), Some(10.0)]);
    let report = run(&plan).await;
    assert_eq!(count(&report, "Prepare"), 1);
    // Capped at 40/s over one second (a little over for the first second's burst).
    let sent = count(&report, "Browse") + count(&report, "Buy");
    assert!((20..=60).contains(&sent), "{sent}");
    assert!(count(&report, "Buy") > 0);

    // Without an execution's settings, each group runs as the plan says.
    let own = plan_for(&[dir.path().join("groups.jmx")], &app);
    let users: Vec<u32> = own.executions.iter().map(|e| e.concurrency).collect();
    assert_eq!(users, [1, 3, 1]);
    assert!(own.executions.iter().all(|e| e.iterations == Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_with_a_ramp_up_end_when_the_loops_are_done() {
    let app = LoginApp::start().await;
    let group = thread_group(2, 2).replace(
        "<stringProp name=\"ThreadGroup.ramp_time\">0</stringProp>",
        "<stringProp name=\"ThreadGroup.ramp_time\">1</stringProp>",
    );
    let body = sampler("Next", "GET", "/n/${__V(prefix_${__threadNum})}", "");
    let body = format!(
        r#"<Arguments guiclass="ArgumentsPanel" testclass="Arguments" testname="Names">
          <collectionProp name="Arguments.arguments">
            <elementProp name="prefix_1" elementType="Argument">
              <stringProp name="Argument.name">prefix_1</stringProp>
              <stringProp name="Argument.value">one</stringProp>
            </elementProp>
            <elementProp name="prefix_2" elementType="Argument">
              <stringProp name="Argument.name">prefix_2</stringProp>
              <stringProp name="Argument.value">two</stringProp>
            </elementProp>
          </collectionProp>
        </Arguments>
        <hashTree/>{body}"#
    );
    let (_dir, file) = written("ramp.jmx", &plan_text(&group, &body));
    let plan = plan_for(&[file], &app);
    let started = Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(20), run(&plan))
        .await
        .unwrap_or_else(|_| panic!("the run did not end with its loops"));
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(count(&report, "Next"), 4);
    let mut sent = targets(&app.recorded());
    sent.sort();
    assert_eq!(sent, ["/n/one", "/n/one", "/n/two", "/n/two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleave_random_and_runtime_controllers_pick_their_children() {
    let app = LoginApp::start().await;
    let body = format!(
        r#"<InterleaveControl guiclass="InterleaveControlGui" testclass="InterleaveControl" testname="Take turns">
          <intProp name="InterleaveControl.style">1</intProp>
          <boolProp name="InterleaveControl.accrossThreads">false</boolProp>
        </InterleaveControl>
        <hashTree>{a}{b}{c}</hashTree>
        <RandomController guiclass="RandomControlGui" testclass="RandomController" testname="One of">
          <intProp name="InterleaveControl.style">1</intProp>
        </RandomController>
        <hashTree>{x}{y}</hashTree>
        <RuntimeController guiclass="RunTimeGui" testclass="RuntimeController" testname="For a moment">
          <stringProp name="RuntimeController.seconds">0.3</stringProp>
        </RuntimeController>
        <hashTree>{tick}
          <ConstantTimer guiclass="ConstantTimerGui" testclass="ConstantTimer" testname="Wait">
            <stringProp name="ConstantTimer.delay">100</stringProp>
          </ConstantTimer>
          <hashTree/>
        </hashTree>"#,
        a = sampler("A", "GET", "/a", ""),
        b = sampler("B", "GET", "/b", ""),
        c = sampler("C", "GET", "/c", ""),
        x = sampler("X", "GET", "/x", ""),
        y = sampler("Y", "GET", "/y", ""),
        tick = sampler("Tick", "GET", "/tick", ""),
    );
    let (_dir, file) = written("pick.jmx", &plan_text(&thread_group(1, 4), &body));
    let plan = plan_for(&[file], &app);
    assert!(
        plan.warnings.iter().all(|w| !w.contains("not supported")),
        "{:?}",
        plan.warnings
    );
    let report = run(&plan).await;
    let sent = targets(&app.recorded());
    let turns: Vec<&str> = sent
        .iter()
        .map(String::as_str)
        .filter(|t| ["/a", "/b", "/c"].contains(t))
        .collect();
    assert_eq!(turns, ["/a", "/b", "/c", "/a"], "{sent:?}");
    assert_eq!(count(&report, "X") + count(&report, "Y"), 4);
    // 0.3 s of 100 ms pauses before each tick: about three per pass.
    let ticks = count(&report, "Tick");
    assert!((4 * 2..=4 * 4).contains(&ticks), "{ticks}");
}

#[test]
fn the_plugin_thread_groups_taurus_writes_are_read() {
    let groups = r#"<com.blazemeter.jmeter.threads.concurrency.ConcurrencyThreadGroup guiclass="com.blazemeter.jmeter.threads.concurrency.ConcurrencyThreadGroupGui" testclass="com.blazemeter.jmeter.threads.concurrency.ConcurrencyThreadGroup" testname="Concurrency">
        <elementProp name="ThreadGroup.main_controller" elementType="com.blazemeter.jmeter.control.VirtualUserController"/>
        <stringProp name="ThreadGroup.on_sample_error">continue</stringProp>
        <stringProp name="TargetLevel">6</stringProp>
        <stringProp name="RampUp">1</stringProp>
        <stringProp name="Steps">3</stringProp>
        <stringProp name="Hold">2</stringProp>
        <stringProp name="LogFilename"></stringProp>
        <stringProp name="Iterations"></stringProp>
        <stringProp name="Unit">M</stringProp>
      </com.blazemeter.jmeter.threads.concurrency.ConcurrencyThreadGroup>
      <hashTree>SAMPLER</hashTree>
      <kg.apc.jmeter.threads.UltimateThreadGroup guiclass="kg.apc.jmeter.threads.UltimateThreadGroupGui" testclass="kg.apc.jmeter.threads.UltimateThreadGroup" testname="Ultimate">
        <collectionProp name="ultimatethreadgroupdata">
          <collectionProp name="1400">
            <stringProp name="1567">4</stringProp>
            <stringProp name="0">0</stringProp>
            <stringProp name="1568">10</stringProp>
            <stringProp name="1569">30</stringProp>
            <stringProp name="1570">5</stringProp>
          </collectionProp>
        </collectionProp>
        <elementProp name="ThreadGroup.main_controller" elementType="LoopController" guiclass="LoopControlPanel" testclass="LoopController" testname="Loop Controller">
          <boolProp name="LoopController.continue_forever">false</boolProp>
          <intProp name="LoopController.loops">-1</intProp>
        </elementProp>
        <stringProp name="ThreadGroup.on_sample_error">continue</stringProp>
      </kg.apc.jmeter.threads.UltimateThreadGroup>
      <hashTree>SAMPLER</hashTree>
      <kg.apc.jmeter.threads.SteppingThreadGroup guiclass="kg.apc.jmeter.threads.SteppingThreadGroupGui" testclass="kg.apc.jmeter.threads.SteppingThreadGroup" testname="Stepping">
        <stringProp name="ThreadGroup.num_threads">10</stringProp>
        <stringProp name="Threads initial delay">0</stringProp>
        <stringProp name="Start users count">5</stringProp>
        <stringProp name="Start users count burst">0</stringProp>
        <stringProp name="Start users period">4</stringProp>
        <stringProp name="Stop users count">5</stringProp>
        <stringProp name="Stop users period">1</stringProp>
        <stringProp name="flighttime">20</stringProp>
        <stringProp name="rampUp">1</stringProp>
      </kg.apc.jmeter.threads.SteppingThreadGroup>
      <hashTree>SAMPLER</hashTree>"#
        .replace("SAMPLER", &sampler("Home", "GET", "/", ""));
    // plan_text's trailing tree follows the Stepping group's own: an empty extra tree.
    let text = plan_text(&groups, "");
    let (_dir, file) = written("plugins.jmx", &text);
    let plan = read_plan(&[file], &[]).unwrap_or_else(|e| panic!("{e} {:?}", e.warnings));
    let loads: Vec<(u32, u64, u64, Option<u32>)> = plan
        .executions
        .iter()
        .map(|e| {
            (
                e.concurrency,
                e.ramp_up.as_secs(),
                e.hold_for.as_secs(),
                e.steps,
            )
        })
        .collect();
    assert_eq!(
        loads,
        [
            (6, 60, 120, Some(3)),
            (4, 10, 30, None),
            (10, 8, 16, Some(2))
        ]
    );
    assert!(plan.executions.iter().all(|e| e.iterations.is_none()));
}

#[test]
fn errors_found_in_generated_requests_name_the_jmx_element() {
    let body = sampler("Bad method", "GE T", "/", "");
    let (dir, file) = written("bad.jmx", &plan_text(&thread_group(1, 1), &body));
    let message = read_plan(&[file], &[]).map(|_| ()).unwrap_err().to_string();
    assert!(
        message.contains("bad.jmx: Test Plan > Thread Group > Bad method (method)")
            && message.contains("invalid HTTP method"),
        "{message}"
    );
    // A config naming a plan that is not there stops, naming the execution.
    let yaml = dir.path().join("test.yml");
    std::fs::write(&yaml, "execution:\n- scenario: {script: missing.jmx}\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let message = read_plan(&[yaml], &[]).map(|_| ()).unwrap_err().to_string();
    assert!(
        message.contains("execution.0.scenario") && message.contains("\"missing.jmx\" not found"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_and_size_assertions_fail_the_samples_they_should() {
    let app = LoginApp::start().await;
    let size = |op: u32, bytes: u32| {
        format!(
            r#"<SizeAssertion guiclass="SizeAssertionGui" testclass="SizeAssertion" testname="Size">
            <stringProp name="Assertion.test_field">SizeAssertion.response_data</stringProp>
            <stringProp name="SizeAssertion.size">{bytes}</stringProp>
            <intProp name="SizeAssertion.operator">{op}</intProp>
          </SizeAssertion>
          <hashTree/>"#
        )
    };
    let duration = r#"<DurationAssertion guiclass="DurationAssertionGui" testclass="DurationAssertion" testname="Fast enough">
            <stringProp name="DurationAssertion.duration">60000</stringProp>
          </DurationAssertion>
          <hashTree/>"#;
    // /items answers `[{"id":1},{"id":2},{"id":3}]`: 28 bytes.
    let body = [
        sampler(
            "Exact",
            "GET",
            "/items",
            &format!("{}{duration}", size(1, 28)),
        ),
        sampler("Too small", "GET", "/items", &size(4, 5)),
        sampler("Big enough", "GET", "/items", &size(5, 28)),
    ]
    .concat();
    let (_dir, file) = written("sizes.jmx", &plan_text(&thread_group(1, 1), &body));
    let plan = plan_for(&[file], &app);
    assert_eq!(
        plan.executions[0].scenario.requests[0].max_duration,
        Some(Duration::from_secs(60))
    );
    let report = run(&plan).await;
    let failures = |label: &str| {
        report
            .labels
            .iter()
            .find(|l| l.label == label)
            .map_or(u64::MAX, |l| l.summary.failures)
    };
    assert_eq!(failures("Exact"), 0, "{:?}", report.errors);
    assert_eq!(failures("Too small"), 1, "{:?}", report.errors);
    assert_eq!(failures("Big enough"), 0, "{:?}", report.errors);
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.message.contains("the body is 28 bytes, expected < 5")),
        "{:?}",
        report.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_url_from_a_csv_column_goes_to_the_server_it_names() {
    let (app, other) = (LoginApp::start().await, LoginApp::start().await);
    let csv = r#"<CSVDataSet guiclass="TestBeanGUI" testclass="CSVDataSet" testname="URLs">
          <stringProp name="filename">urls.csv</stringProp>
          <stringProp name="variableNames">url</stringProp>
          <stringProp name="delimiter">,</stringProp>
          <boolProp name="recycle">true</boolProp>
        </CSVDataSet>
        <hashTree/>"#;
    // A path holding a whole URL replaces the defaults' server, as in JMeter.
    let body = format!("{csv}{}", sampler("Visit", "GET", "${url}", ""));
    let (dir, file) = written("urls.jmx", &plan_text(&thread_group(1, 3), &body));
    let rows = format!(
        "{}/one\n{}/two?q=a b\n{}/three\n",
        app.base(),
        other.base(),
        other.base()
    );
    std::fs::write(dir.path().join("urls.csv"), rows).unwrap_or_else(|e| panic!("{e}"));
    let plan = plan_for(&[file], &app);
    let report = run(&plan).await;
    assert_eq!(report.overall.failures, 0, "{:?}", report.errors);
    assert_eq!(targets(&app.recorded()), ["/one"]);
    assert_eq!(targets(&other.recorded()), ["/two?q=a%20b", "/three"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xpath_assertions_check_the_response() {
    let app = LoginApp::start().await;
    let assertion = |name: &str, class: &str, xpath: &str, negate: bool, tolerant: bool| {
        format!(
            r#"<{class} guiclass="XPathAssertionGui" testclass="{class}" testname="{name}">
            <stringProp name="XPath.xpath">{xpath}</stringProp>
            <boolProp name="XPath.negate">{negate}</boolProp>
            <boolProp name="XPath.tolerant">{tolerant}</boolProp>
          </{class}>
          <hashTree/>"#
        )
    };
    let body = [
        sampler(
            "Catalog",
            "GET",
            "/catalog.xml",
            &assertion(
                "Has Go",
                "XPathAssertion",
                "//book[title='Go']",
                false,
                false,
            ),
        ),
        sampler(
            "No magazine",
            "GET",
            "/catalog.xml",
            &assertion("None", "XPath2Assertion", "//magazine", true, false),
        ),
        sampler(
            "Wrong",
            "GET",
            "/catalog.xml",
            &assertion("Missing", "XPath2Assertion", "//magazine", false, false),
        ),
        sampler(
            "Page",
            "GET",
            "/page",
            &assertion(
                "Form",
                "XPathAssertion",
                "//form[@action='/buy']",
                false,
                true,
            ),
        ),
    ]
    .concat();
    let (_dir, file) = written("xpath.jmx", &plan_text(&thread_group(1, 2), &body));
    let plan = plan_for(&[file], &app);
    assert!(
        !plan.warnings.iter().any(|w| w.contains("XPath")),
        "{:?}",
        plan.warnings
    );
    let report = run(&plan).await;
    let failed = |label: &str| {
        report
            .labels
            .iter()
            .find(|l| l.label == label)
            .map_or(u64::MAX, |l| l.summary.failures)
    };
    assert_eq!(
        (
            failed("Catalog"),
            failed("No magazine"),
            failed("Wrong"),
            failed("Page")
        ),
        (0, 0, 2, 0),
        "{:?}",
        report.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_and_random_order_controllers_choose_as_jmeter_does() {
    let app = LoginApp::start().await;
    let body = format!(
        r#"<CSVDataSet guiclass="TestBeanGUI" testclass="CSVDataSet" testname="Switch values">
          <stringProp name="filename">switch.csv</stringProp>
          <stringProp name="variableNames">pick</stringProp>
          <stringProp name="delimiter">,</stringProp>
          <boolProp name="recycle">true</boolProp>
        </CSVDataSet>
        <hashTree/>
        <SwitchController guiclass="SwitchControllerGui" testclass="SwitchController" testname="Switch">
          <stringProp name="SwitchController.value">${{pick}}</stringProp>
        </SwitchController>
        <hashTree>{a}{b}{named}{default}</hashTree>
        <RandomOrderController guiclass="RandomOrderControllerGui" testclass="RandomOrderController" testname="Shuffle"/>
        <hashTree>{p}{q}{r}</hashTree>"#,
        a = sampler("A", "GET", "/a", ""),
        b = sampler("B", "GET", "/b", ""),
        named = sampler("Named", "GET", "/named", ""),
        default = sampler("Default", "GET", "/default", ""),
        p = sampler("P", "GET", "/p", ""),
        q = sampler("Q", "GET", "/q", ""),
        r = sampler("R", "GET", "/r", ""),
    );
    let (dir, file) = written("switch.jmx", &plan_text(&thread_group(1, 10), &body));
    // An index, a name, an index out of range (the first), no such name (`default`), 0.
    std::fs::write(dir.path().join("switch.csv"), "1\nNamed\n7\nnomatch\n0\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let plan = plan_for(&[file], &app);
    assert!(
        plan.warnings.iter().all(|w| !w.contains("not supported")),
        "{:?}",
        plan.warnings
    );
    run(&plan).await;
    let sent = targets(&app.recorded());
    let switched: Vec<&str> = sent
        .iter()
        .map(String::as_str)
        .filter(|t| ["/a", "/b", "/named", "/default"].contains(t))
        .collect();
    let pass = ["/b", "/named", "/a", "/default", "/a"];
    assert_eq!(switched, [pass, pass].concat(), "{sent:?}");
    let shuffled: Vec<&str> = sent
        .iter()
        .map(String::as_str)
        .filter(|t| ["/p", "/q", "/r"].contains(t))
        .collect();
    assert_eq!(shuffled.len(), 30, "{sent:?}");
    let passes: Vec<Vec<&str>> = shuffled.chunks(3).map(<[&str]>::to_vec).collect();
    for order in &passes {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            ["/p", "/q", "/r"],
            "each pass runs every child once"
        );
    }
    // Ten passes in one order would be a chance of one in 10 million.
    assert!(passes.iter().any(|o| *o != passes[0]), "{passes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_controllers_run_their_share_of_the_passes() {
    let app = LoginApp::start().await;
    let controller = |name: &str, style: u8, per_thread: bool, total: u32, percent: f64| {
        format!(
            r#"<ThroughputController guiclass="ThroughputControllerGui" testclass="ThroughputController" testname="{name}">
          <intProp name="ThroughputController.style">{style}</intProp>
          <boolProp name="ThroughputController.perThread">{per_thread}</boolProp>
          <intProp name="ThroughputController.maxThroughput">{total}</intProp>
          <FloatProperty>
            <name>ThroughputController.percentThroughput</name>
            <value>{percent}</value>
            <savedValue>0.0</savedValue>
          </FloatProperty>
        </ThroughputController>"#
        )
    };
    let body = format!(
        "{}<hashTree>{}</hashTree>{}<hashTree>{}</hashTree>{}<hashTree>{}</hashTree>",
        controller("Half", 1, true, 1, 50.0),
        sampler("Half", "GET", "/half", ""),
        controller("Three in all", 0, false, 3, 0.0),
        sampler("Three", "GET", "/three", ""),
        controller("Two each", 0, true, 2, 0.0),
        sampler("Two", "GET", "/two", ""),
    );
    // Two threads of 10 passes each.
    let (_dir, file) = written("throughput.jmx", &plan_text(&thread_group(2, 10), &body));
    let plan = plan_for(&[file], &app);
    assert!(
        plan.warnings.iter().all(|w| !w.contains("not supported")),
        "{:?}",
        plan.warnings
    );
    let report = run(&plan).await;
    // 50 % per thread: 5 of each thread's 10; 3 in all across the threads; 2 per thread.
    assert_eq!(
        (
            count(&report, "Half"),
            count(&report, "Three"),
            count(&report, "Two")
        ),
        (10, 3, 4)
    );
}

/// A thread group of `class` named `name`: `threads` threads, `loops` passes.
fn group_of(class: &str, name: &str, threads: u32, loops: i64) -> String {
    thread_group(threads, loops)
        .replace("testname=\"Thread Group\"", &format!("testname=\"{name}\""))
        .replace("<ThreadGroup ", &format!("<{class} "))
        .replace("</ThreadGroup>", &format!("</{class}>"))
}

/// A plan of `groups` (each a thread group and its tree), the groups run one after another
/// when `consecutive`.
fn plan_of_groups(groups: &[(String, String)], consecutive: bool) -> String {
    let trees: String = groups
        .iter()
        .map(|(group, tree)| format!("{group}\n<hashTree>{tree}</hashTree>\n"))
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<jmeterTestPlan version="1.2" properties="5.0" jmeter="5.6.3">
  <hashTree>
    <TestPlan guiclass="TestPlanGui" testclass="TestPlan" testname="Test Plan">
      <boolProp name="TestPlan.serialize_threadgroups">{consecutive}</boolProp>
      <elementProp name="TestPlan.user_defined_variables" elementType="Arguments" guiclass="ArgumentsPanel" testclass="Arguments" testname="User Defined Variables">
        <collectionProp name="Arguments.arguments"/>
      </elementProp>
    </TestPlan>
    <hashTree>
      <ConfigTestElement guiclass="HttpDefaultsGui" testclass="ConfigTestElement" testname="HTTP Request Defaults">
        <stringProp name="HTTPSampler.domain">127.0.0.1</stringProp>
        <stringProp name="HTTPSampler.port">${{__P(port,80)}}</stringProp>
      </ConfigTestElement>
      <hashTree/>
      {trees}
    </hashTree>
  </hashTree>
</jmeterTestPlan>"#
    )
}

/// A sampler of `path` followed by a pause of `pause_ms`.
fn paused(path: &str, pause_ms: u32) -> String {
    sampler(
        path,
        "GET",
        path,
        &format!(
            r#"<ConstantTimer guiclass="ConstantTimerGui" testclass="ConstantTimer" testname="Pause">
              <stringProp name="ConstantTimer.delay">{pause_ms}</stringProp>
            </ConstantTimer>
            <hashTree/>"#
        ),
    )
}

/// Where each path first and last arrived in the recorded order.
fn span(sent: &[String], path: &str) -> (usize, usize) {
    let first = sent.iter().position(|t| t == path);
    let last = sent.iter().rposition(|t| t == path);
    match (first, last) {
        (Some(first), Some(last)) => (first, last),
        _ => panic!("{path} was never sent: {sent:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_groups_run_before_the_others_and_teardown_groups_after() {
    let app = LoginApp::start().await;
    // Pauses make the groups overlap if they ran side by side: the setUp group's two
    // requests are 300 ms apart, the main group's passes 100 ms.
    let text = plan_of_groups(
        &[
            (
                group_of("PostThreadGroup", "Clean up", 1, 1),
                paused("/teardown", 0),
            ),
            (group_of("ThreadGroup", "Users", 2, 3), paused("/main", 100)),
            (
                group_of("SetupThreadGroup", "Prepare", 1, 2),
                paused("/setup", 300),
            ),
        ],
        false,
    );
    let (_dir, file) = written("phases.jmx", &text);
    let plan = plan_for(&[file], &app);
    assert!(
        !plan.warnings.iter().any(|w| w.contains("setUp")),
        "{:?}",
        plan.warnings
    );
    let report = run(&plan).await;
    assert_eq!(count(&report, "/setup"), 2);
    assert_eq!(count(&report, "/main"), 6);
    assert_eq!(count(&report, "/teardown"), 1);
    let sent = targets(&app.recorded());
    let (setup, main, teardown) = (
        span(&sent, "/setup"),
        span(&sent, "/main"),
        span(&sent, "/teardown"),
    );
    assert!(setup.1 < main.0, "setUp before the main group: {sent:?}");
    assert!(main.1 < teardown.0, "tearDown after it: {sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_thread_groups_consecutively_runs_each_group_after_the_one_before() {
    let app = LoginApp::start().await;
    let groups = [
        (
            group_of("ThreadGroup", "First", 2, 3),
            paused("/first", 100),
        ),
        (
            group_of("ThreadGroup", "Second", 1, 2),
            paused("/second", 0),
        ),
    ];
    let (_dir, file) = written("consecutive.jmx", &plan_of_groups(&groups, true));
    let report = run(&plan_for(&[file], &app)).await;
    assert_eq!(count(&report, "/first"), 6);
    assert_eq!(count(&report, "/second"), 2);
    let sent = targets(&app.recorded());
    assert!(
        span(&sent, "/first").1 < span(&sent, "/second").0,
        "{sent:?}"
    );

    // Side by side (the default), the second group's requests go while the first pauses.
    let app = LoginApp::start().await;
    let (_dir, file) = written("side.jmx", &plan_of_groups(&groups, false));
    run(&plan_for(&[file], &app)).await;
    let sent = targets(&app.recorded());
    assert!(
        span(&sent, "/second").0 < span(&sent, "/first").1,
        "{sent:?}"
    );
}
