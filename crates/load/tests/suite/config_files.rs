//! Reading configs as Taurus users write them: misspelt keys told from Taurus keys
//! Peregrine lacks and from unknown ones (a misspelling inside a check is an error),
//! several YAML documents, included configs, and executions Peregrine cannot run skipped
//! while the others run.

use std::path::{Path, PathBuf};

use peregrine_load::{Plan, Rejected, read_plan};

const REQUEST: &str = "http://127.0.0.1:1/";

#[expect(
    clippy::unwrap_used,
    reason = "a test helper, outside the tests clippy.toml covers"
)]
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

#[expect(
    clippy::unwrap_used,
    reason = "a test helper, outside the tests clippy.toml covers"
)]
fn read(yaml: &str) -> Result<Plan, Rejected> {
    let dir = tempfile::tempdir().unwrap();
    read_plan(&[write(dir.path(), "c.yml", yaml)], &[])
}

fn warnings(yaml: &str) -> Vec<String> {
    match read(yaml) {
        Ok(plan) => plan.warnings,
        Err(rejected) => panic!("{rejected}: {:?}", rejected.warnings),
    }
}

fn error(yaml: &str) -> String {
    match read(yaml) {
        Ok(plan) => panic!("accepted, with warnings {:?}", plan.warnings),
        Err(rejected) => rejected.to_string(),
    }
}

fn request_with(extra: &str) -> String {
    format!(
        "execution:\n- iterations: 1\n  scenario: s\nscenarios:\n  s:\n    requests:\n    - url: {REQUEST}\n{extra}"
    )
}

#[test]
fn a_misspelt_key_inside_a_check_is_an_error_that_suggests_the_key() {
    let cases = [
        (
            "      assert:\n      - contains: [ok]\n        subjct: body\n",
            "scenarios.s.requests.0.assert.0.subjct",
            "`subject`",
        ),
        (
            "      assert:\n      - contains: [ok]\n        nto: true\n",
            "assert.0.nto",
            "`not`",
        ),
        (
            "      assert-jsonpath:\n      - jsonpath: $.id\n        expected-valeu: 1\n",
            "assert-jsonpath.0.expected-valeu",
            "`expected-value`",
        ),
    ];
    for (extra, path, suggestion) in cases {
        let err = error(&request_with(extra));
        assert!(
            err.contains(path) && err.contains(&format!("did you mean {suggestion}?")),
            "{err}"
        );
    }
    let passfail = error(&format!(
        "{}reporting:\n- module: passfail\n  critera: ['avg-rt>1s']\n",
        request_with("")
    ));
    assert!(
        passfail.contains("reporting.0.critera") && passfail.contains("did you mean `criteria`?"),
        "{passfail}"
    );
    let criterion = error(&format!(
        "{}reporting:\n- module: passfail\n  criteria:\n  - subject: avg-rt\n    condtion: '>'\n    threshold: 1s\n",
        request_with("")
    ));
    assert!(
        criterion.contains("reporting.0.criteria.0.condtion")
            && criterion.contains("did you mean `condition`?"),
        "{criterion}"
    );
}

#[test]
fn elsewhere_typos_taurus_only_keys_and_unknown_keys_get_one_warning_each() {
    let yaml = format!(
        "{}      upload-files: []\n      hedaers: {{a: b}}\n    retrieve-resources: true\nservices: []\nreportng: []\nmy-own-key: 1\nsettings:\n  artifacts-dir: x\n  check-interval: 1\nmodules:\n  jmeter:\n    properties:\n      https.socket.protocols: TLSv1.2\n",
        request_with("")
    );
    let warned = warnings(&yaml);
    let expect = [
        (
            "scenarios.s.requests.0.upload-files: ",
            "a Taurus key Peregrine does not implement",
        ),
        (
            "scenarios.s.requests.0.hedaers: ",
            "did you mean `headers`?",
        ),
        (
            "scenarios.s.retrieve-resources: ",
            "a Taurus key Peregrine does not implement",
        ),
        ("services: ", "a Taurus key Peregrine does not implement"),
        ("reportng: ", "did you mean `reporting`?"),
        ("my-own-key: ", "unknown key (not a Taurus key)"),
        (
            "settings.artifacts-dir: ",
            "a Taurus key Peregrine does not implement",
        ),
        (
            "modules.jmeter.properties.https.socket.protocols: ",
            "--ca-cert",
        ),
    ];
    for (path, note) in expect {
        let found: Vec<_> = warned.iter().filter(|w| w.starts_with(path)).collect();
        assert_eq!(found.len(), 1, "{path}: {warned:#?}");
        assert!(found[0].contains(note), "{found:?}");
    }
    // Taurus engine settings mean nothing here and are not worth a word.
    assert!(
        !warned.iter().any(|w| w.contains("check-interval")),
        "{warned:?}"
    );
}

#[test]
fn documents_of_one_file_and_included_configs_merge_as_in_taurus() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "main.yml",
        &format!(
            "execution:\n  concurrency: 1\n  iterations: 1\n  scenario: s\nscenarios:\n  s:\n    requests: ['{REQUEST}a']\n---\nexecution:\n- concurrency: 2\n  iterations: 1\n  scenario: s\nincluded-configs: [more.yml]\n"
        ),
    );
    // Included last, over the main file: its scalar wins, its list items append, and
    // naming the main file again ends the cycle.
    write(
        dir.path(),
        "more.yml",
        &format!(
            "scenarios:\n  s:\n    timeout: 7s\n    requests: ['{REQUEST}b']\nincluded-configs: [main.yml, https://example.invalid/x.yml]\n"
        ),
    );
    let plan = read_plan(&[main], &[]).unwrap();
    let users: Vec<u32> = plan.executions.iter().map(|e| e.concurrency).collect();
    assert_eq!(users, [1, 2]);
    let scenario = &plan.executions[0].scenario;
    assert_eq!(scenario.requests.len(), 2);
    assert_eq!(scenario.requests[0].timeout.as_secs(), 7);
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.starts_with("included-configs.2: ") && w.contains("does not download")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn executions_peregrine_cannot_run_are_skipped_with_one_warning_each() {
    let yaml = format!(
        "settings:\n  default-executor: selenium\nmodules:\n  heavy:\n    class: bzt.modules.jmeter.JMeterExecutor\nexecution:\n- executor: heavy\n  iterations: 1\n  scenario: api\n- executor: locust\n  scenario: {{script: locustfile.py}}\n- scenario: api\n- executor: gatling\n  scenario: BasicSimulation.scala\n- executor: gatling\n  iterations: 1\n  scenario: api\nscenarios:\n  api:\n    requests: ['{REQUEST}']\n"
    );
    let plan =
        read(&yaml.replace("    requests:", "    store-cache: true\n    requests:")).unwrap();
    assert_eq!(plan.executions.len(), 2);
    // Two executions run the scenario; its key is warned about once.
    let store_cache = plan
        .warnings
        .iter()
        .filter(|w| w.contains("store-cache"))
        .count();
    assert_eq!(store_cache, 1, "{:?}", plan.warnings);
    let about = |index: usize| {
        plan.warnings
            .iter()
            .filter(|w| w.starts_with(&format!("execution.{index}")))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(about(0).is_empty(), "{:?}", plan.warnings);
    let expected = [
        (1, "locustfile.py"),
        (2, "\"selenium\""),
        (3, "BasicSimulation.scala"),
        (4, "Peregrine's own engine runs"),
    ];
    for (index, note) in expected {
        let warned = about(index);
        assert!(warned.len() == 1 && warned[0].contains(note), "{warned:?}");
    }
    let none = error("execution:\n- executor: selenium\n  scenario: {script: t.py}\n");
    assert!(
        none.contains("no execution Peregrine can run") && none.contains("execution.0"),
        "{none}"
    );
}

#[test]
fn body_wins_over_body_file_with_a_warning_as_in_taurus() {
    let plan = read(&request_with(
        "      method: POST\n      body: inline\n      body-file: missing.json\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("body-file") && w.contains("Taurus sends body")),
        "{:?}",
        plan.warnings
    );
    assert_eq!(&plan.executions[0].scenario.requests[0].body[..], b"inline");
}
