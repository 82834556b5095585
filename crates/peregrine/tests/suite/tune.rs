//! `peregrine tune`: PgTune's configuration for a host, clamped where PostgreSQL would refuse
//! it (and PostgreSQL started with it), its flags and files.
#![allow(
    clippy::unwrap_used,
    reason = "helpers of a test binary: a failed step should fail the test"
)]

use std::path::Path;
use std::process::Command;

use crate::harness::{free_port, run, temp_dir};
use peregrine_testkit::PgCluster;
use serde_json::Value;

/// PgTune's 64kB of maintenance_work_mem for 1 MB of RAM is under PostgreSQL's 1MB
/// minimum: the output clamps it and says so, and a real PostgreSQL starts with the whole
/// configuration (and refuses PgTune's own value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_clamps_what_postgresql_would_refuse_and_postgresql_starts_with_it() {
    let dir = temp_dir();
    let (status, stdout, stderr) = run(
        dir.path(),
        &["tune", "--memory", "1MB", "--db-version", "15"],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains(
            "# maintenance_work_mem: PgTune's 64kB is below PostgreSQL's minimum; clamped to 1MB\nmaintenance_work_mem = 1MB\n"
        ),
        "{stdout}"
    );
    // Values PostgreSQL accepts stay PgTune's.
    assert!(stdout.contains("\nshared_buffers = 256kB\n"), "{stdout}");
    assert_eq!(stdout.matches("clamped").count(), 1, "{stdout}");
    let cluster = tokio::task::spawn_blocking(move || PgCluster::start_configured(&stdout))
        .await
        .unwrap()
        .unwrap_or_else(|err| panic!("PostgreSQL refused the tuned settings: {err}"));
    let client = cluster.admin().await;
    let shown: String = client
        .query_one("SHOW maintenance_work_mem", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown, "1MB");
    let refused =
        tokio::task::spawn_blocking(|| PgCluster::start_configured("maintenance_work_mem = 64kB"))
            .await
            .unwrap();
    let err = refused.err().unwrap_or_default();
    assert!(err.contains("maintenance_work_mem"), "{err}");

    // Far past the other end: values over PostgreSQL's maximum are clamped, in JSON too.
    let (status, stdout, stderr) = run(
        dir.path(),
        &[
            "tune",
            "--memory",
            "999999GB",
            "--connections",
            "999999",
            "--format",
            "json",
        ],
    );
    assert!(status.success(), "{stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    let clamped: Vec<&str> = json["clamped"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        clamped,
        ["shared_buffers", "effective_cache_size", "max_connections"],
        "{stdout}"
    );
    assert_eq!(
        json["clamped"][2]["message"],
        "max_connections: PgTune's 999999 is above PostgreSQL's maximum; clamped to 262121"
    );
}

#[test]
fn tune_prints_pgtunes_configuration_for_the_given_host() {
    let dir = temp_dir();
    let args = [
        "tune",
        "--db-version",
        "13",
        "--os",
        "linux",
        "--db-type",
        "dw",
        "--memory",
        "3GB",
    ];
    let (status, stdout, stderr) = run(
        dir.path(),
        &[
            &args[..],
            &["--cpus", "1", "--connections", "50", "--storage", "hdd"],
        ]
        .concat(),
    );
    assert!(status.success(), "{stderr}");
    let expected = "# DB Version: 13\n# OS Type: linux\n# DB Type: dw\n# Total Memory (RAM): 3 GB\n\
        # CPUs num: 1\n# Connections num: 50\n# Data Storage: hdd\n\nmax_connections = 50\n\
        shared_buffers = 768MB\neffective_cache_size = 2304MB\nmaintenance_work_mem = 384MB\n";
    assert!(stdout.starts_with(expected), "{stdout}");
    assert!(stdout.ends_with("max_wal_size = 16GB\n"), "{stdout}");
}

#[tokio::test]
async fn tune_detect_reads_this_host_and_explicit_flags_win() {
    let dir = temp_dir();
    let (status, stdout, stderr) = run(dir.path(), &["tune", "--detect", "--format", "json"]);
    assert!(status.success(), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    assert_eq!(report["input"]["cpu_num"], cpus);
    assert_eq!(report["input"]["os_type"], "linux");
    assert_eq!(report["input"]["total_memory"]["unit"], "GB");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let gb = report["input"]["total_memory"]["amount"]
        .as_f64()
        .unwrap_or(0.0);
    assert!((gb - kb / 1048576.0).abs() <= 0.5, "{gb} GB vs {kb} kB");
    // The installed PostgreSQL's major version, as `postgres --version` reports it.
    let installed = peregrine_installed_major();
    assert_eq!(report["input"]["db_version"], installed);
    assert_eq!(report["settings"][0]["name"], "max_connections");
    assert!(
        report["conf_text"]
            .as_str()
            .is_some_and(|t| t.contains("# CPUs num:"))
    );

    // Explicit flags win over detection; the version can come from a live server.
    let url = PgCluster::shared().fresh_database().await;
    let (status, stdout, stderr) = run(
        dir.path(),
        &[
            "tune",
            "--detect",
            "--database-url",
            &url,
            "--cpus",
            "64",
            "--memory",
            "1TB",
            "--format",
            "json",
        ],
    );
    assert!(status.success(), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["input"]["cpu_num"], 64);
    assert_eq!(report["input"]["total_memory"]["amount"], 1);
    assert_eq!(report["input"]["total_memory"]["unit"], "TB");
    assert_eq!(report["input"]["db_version"], installed);
    assert!(report["warnings"].as_array().is_some_and(|w| {
        w.iter()
            .any(|l| l == "this tool not being optimal for very high memory systems")
    }));
}

/// The major version of the PostgreSQL the tests run, from its own `postgres --version`.
fn peregrine_installed_major() -> u64 {
    let bindir = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let out = Command::new(format!("{bindir}/postgres"))
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split(')')
        .nth(1)
        .and_then(|v| v.trim().split('.').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{text}"))
}

#[test]
fn tune_writes_a_file_and_says_how_to_load_it() {
    let dir = temp_dir();
    let (status, stdout, stderr) = run(
        dir.path(),
        &["tune", "--memory", "8GB", "--write", "peregrine.conf"],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("include_if_exists = 'peregrine.conf'"),
        "{stdout}"
    );
    let written = std::fs::read_to_string(dir.path().join("peregrine.conf")).unwrap_or_default();
    assert!(
        written.contains("# DB Version: 18\n") && written.contains("\nshared_buffers = 2GB\n"),
        "{written}"
    );
    let (status, stdout, _) = run(
        dir.path(),
        &[
            "tune",
            "--memory",
            "8GB",
            "--format",
            "alter-system",
            "--write",
            "tune.sql",
        ],
    );
    assert!(status.success());
    assert!(stdout.contains("psql -f tune.sql"), "{stdout}");
    let sql = std::fs::read_to_string(dir.path().join("tune.sql")).unwrap_or_default();
    assert!(
        sql.contains("\nALTER SYSTEM SET shared_buffers = '2GB';\n"),
        "{sql}"
    );
    let (status, _, stderr) = run(
        dir.path(),
        &[
            "tune",
            "--memory",
            "8GB",
            "--write",
            "/nonexistent-dir/x.conf",
        ],
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("cannot write /nonexistent-dir/x.conf"),
        "{stderr}"
    );
}

#[test]
fn tune_rejects_what_pgtune_rejects_naming_the_flag() {
    let dir = temp_dir();
    for (args, expected) in [
        (
            &["tune", "--memory", "8GB", "--connections", "19"][..],
            "--connections: invalid connection count 19: allowed 20 to 999999",
        ),
        (
            &["tune", "--memory", "8GB", "--db-version", "9"][..],
            "--db-version: unsupported PostgreSQL version 9; allowed: 10 to 18",
        ),
        (
            &["tune", "--memory", "8GB", "--cpus", "0"][..],
            "--cpus: invalid CPU count 0",
        ),
        (&["tune"][..], "--memory is required"),
        (&["tune", "--memory", "0GB"][..], "--memory"),
        (
            &["tune", "--memory", "8GB", "--db-type", "warehouse"][..],
            "allowed: web, oltp, dw, desktop, mixed",
        ),
        (
            &["tune", "--memory", "8GB", "--storage", "tape"][..],
            "allowed: ssd, hdd, san, nvme",
        ),
        (
            &["tune", "--memory", "8GB", "--os", "bsd"][..],
            "allowed: linux, windows, mac",
        ),
        (
            &["tune", "--memory", "8GB", "--data-size", "huge"][..],
            "--data-size",
        ),
    ] {
        let (status, _, stderr) = run(dir.path(), args);
        assert!(!status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// Runs `peregrine tune ARGS --format json`, which must succeed: (the report, stderr).
fn tune_json(dir: &Path, args: &[&str]) -> (Value, String) {
    let args = [&["tune"][..], args, &["--format", "json"]].concat();
    let (status, stdout, stderr) = run(dir, &args);
    assert!(status.success(), "{args:?}: {stderr}");
    (
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")),
        stderr,
    )
}

#[test]
fn tune_detect_with_an_unreachable_database_uses_the_installed_version_and_says_so() {
    let dir = temp_dir();
    let url = format!("postgres://orguser:s3cret@127.0.0.1:{}/orgdb", free_port());
    let (report, stderr) = tune_json(dir.path(), &["--detect", "--database-url", &url]);
    let installed = peregrine_installed_major();
    assert_eq!(report["input"]["db_version"], installed, "{stderr}");
    assert!(
        stderr.contains("cannot ask the database at postgres://orguser:***@127.0.0.1:")
            && stderr.contains("using the version of the PostgreSQL installed here"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
    // Settings only PostgreSQL 18 knows would stop an older server from starting.
    let conf = report["conf_text"].as_str().unwrap();
    assert_eq!(conf.contains("io_method"), installed >= 18, "{conf}");
}

#[test]
fn tune_write_keeps_an_existing_file_unless_forced() {
    let dir = temp_dir();
    let path = dir.path().join("peregrine.conf");
    std::fs::write(&path, "# edited by hand\n").unwrap();
    let (status, _, stderr) = run(
        dir.path(),
        &["tune", "--memory", "8GB", "--write", "peregrine.conf"],
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("--write: peregrine.conf already exists; add --force to overwrite it"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "# edited by hand\n"
    );
    let (status, _, stderr) = run(
        dir.path(),
        &[
            "tune",
            "--memory",
            "8GB",
            "--write",
            "peregrine.conf",
            "--force",
        ],
    );
    assert!(status.success(), "{stderr}");
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("\nshared_buffers = 2GB\n")
    );
    let (status, _, stderr) = run(dir.path(), &["tune", "--memory", "8GB", "--force"]);
    assert!(!status.success());
    assert!(stderr.contains("--write"), "{stderr}");
}

#[test]
fn tune_memory_takes_pgtunes_forms_and_says_what_it_takes() {
    let dir = temp_dir();
    let conf = |memory: &str| {
        let (status, stdout, stderr) = run(dir.path(), &["tune", "--memory", memory]);
        assert!(status.success(), "{memory}: {stderr}");
        stdout
    };
    assert_eq!(conf("16G"), conf("16GB"));
    assert_eq!(conf("16g"), conf("16 GB"));
    let fraction = conf("1.5GB");
    assert!(
        fraction.contains("# Total Memory (RAM): 1536 MB\n"),
        "{fraction}"
    );
    assert!(
        fraction.contains("\nshared_buffers = 384MB\n"),
        "{fraction}"
    );
    for bad in ["1.3GB", "16GiB", "1.5MB", "1.5.0GB", ".5GB"] {
        let (status, _, stderr) = run(dir.path(), &["tune", "--memory", bad]);
        assert!(!status.success(), "{bad}");
        assert!(
            stderr.contains("--memory")
                && stderr.contains("a unit MB, GB or TB (or M, G, T; none means GB)")
                && stderr.contains("1.5GB is 1536 MB"),
            "{bad}: {stderr}"
        );
    }
}

#[test]
fn tune_json_warnings_are_one_sentence_each() {
    let dir = temp_dir();
    let (report, _) = tune_json(dir.path(), &["--memory", "1TB", "--db-version", "15"]);
    assert_eq!(
        report["warnings"],
        serde_json::json!([
            "this tool not being optimal for very high memory systems",
            "wal_compression = lz4 requires PostgreSQL to be compiled with --with-lz4"
        ])
    );
}
