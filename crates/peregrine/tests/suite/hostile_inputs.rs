//! `peregrine load` and `peregrine report` given hostile inputs through the real binary:
//! corrupt or foreign reports, a machine out of file descriptors, huge arguments. Each is a
//! clear error (exit 1) or a counted error of its own kind, never a panic.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::BINARY;
use peregrine_testkit::{Behavior, TinyServer};
use serde_json::Value;

fn peregrine(dir: &Path, args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BINARY}: {e}"))
}

fn read_json(file: &Path) -> Value {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"))
}

/// A copy of report directory `from` as `to`, its report.json changed by `edit`.
fn tampered(dir: &Path, to: &str, edit: impl FnOnce(&mut Value)) {
    let mut json = read_json(&dir.join("r/report.json"));
    edit(&mut json);
    std::fs::create_dir_all(dir.join(to)).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join(to).join("report.json"), json.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_merge_and_compare_refuse_counts_and_versions_they_cannot_trust() {
    let server = TinyServer::start(Behavior::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let out = peregrine(
        path,
        &[
            "load",
            &server.url("/"),
            "-c",
            "1",
            "--iterations",
            "3",
            "--report",
            "r",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The untouched report merges and compares.
    let merged = peregrine(path, &["report", "merge", "r", "--out", "m"]);
    assert_eq!(merged.status.code(), Some(0), "{}", stderr(&merged));
    let same = peregrine(path, &["report", "compare", "r", "m"]);
    assert_eq!(same.status.code(), Some(0), "{}", stderr(&same));
    tampered(path, "negative", |j| j["overall"]["samples"] = (-5).into());
    tampered(path, "huge", |j| j["overall"]["samples"] = 1e300.into());
    tampered(path, "labels", |j| j["labels"][0]["samples"] = 2.into());
    tampered(path, "failures", |j| j["overall"]["failures"] = 4.into());
    tampered(path, "old", |j| {
        j["schema"] = "peregrine-load-report/1".into()
    });
    for (shard, expected) in [
        (
            "negative",
            "negative/report.json: overall.samples is -5, not a whole number",
        ),
        (
            "huge",
            "huge/report.json: overall.samples is 1e+300, not a whole number",
        ),
        (
            "labels",
            "labels/report.json: the labels' samples add up to 2, not overall.samples (3)",
        ),
        (
            "failures",
            "failures/report.json: overall.failures (4) is more than its samples (3)",
        ),
        (
            "old",
            "old/report.json: a \"peregrine-load-report/1\" report, not a peregrine-load-report/2 one",
        ),
    ] {
        let out = peregrine(path, &["report", "merge", shard, "--out", "x"]);
        assert_eq!(out.status.code(), Some(1), "{shard}");
        assert!(stderr(&out).contains(expected), "{shard}: {}", stderr(&out));
    }
    let out = peregrine(path, &["report", "compare", "r", "old"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "old/report.json: a \"peregrine-load-report/1\" report; this peregrine compares peregrine-load-report/2 reports"
        ),
        "{}",
        stderr(&out)
    );
    // Reports past the size limits are refused before they are read (sparse files: the
    // size is all that matters).
    for (dir, size) in [("big", 300 << 20), ("big-shard", 65 << 20)] {
        std::fs::create_dir_all(path.join(dir)).unwrap();
        let file = std::fs::File::create(path.join(dir).join("report.json")).unwrap();
        file.set_len(size).unwrap();
    }
    let out = peregrine(path, &["report", "compare", "r", "big"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("big/report.json: is over 268435456 bytes"),
        "{}",
        stderr(&out)
    );
    let out = peregrine(path, &["report", "merge", "big-shard", "--out", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("big-shard/report.json: cannot read: is over 67108864 bytes"),
        "{}",
        stderr(&out)
    );
    // A usage error is exit 1 as for `load`: 2 means interrupted.
    let out = peregrine(path, &["report", "compare", "r"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

/// With 30 open files allowed and 60 users, connections fail for want of descriptors: an
/// error of its own kind that says what to do, not an "uncategorized error".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_is_its_own_error_kind() {
    let server = TinyServer::start(Behavior {
        delay: std::time::Duration::from_millis(200),
        ..Behavior::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "ulimit -n 30 && exec {BINARY} load {} -c 60 --hold-for 1s --report r",
        server.url("/")
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let report = read_json(&dir.path().join("r/report.json"));
    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    let resources: Vec<&Value> = errors.iter().filter(|e| e["kind"] == "resources").collect();
    assert!(!resources.is_empty(), "{errors:?}");
    assert!(
        resources[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("too many open files")),
        "{resources:?}"
    );
    assert!(report["overall"]["samples"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn huge_arguments_are_quoted_short_and_durations_in_their_own_units() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:1/{}", "a".repeat(100_000));
    let out = peregrine(dir.path(), &["load", &url, "--iterations", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.len() < 5000, "{} bytes on stderr", err.len());
    assert!(err.contains("bytes left out"), "{err}");
    let out = peregrine(
        dir.path(),
        &["load", "http://127.0.0.1:1/", "--ramp-up", "400d"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("\"400d\" is longer than"),
        "{}",
        stderr(&out)
    );
}
