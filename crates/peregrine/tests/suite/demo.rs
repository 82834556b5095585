//! `peregrine demo`: the tutorial's story measured, on SQLite and PostgreSQL, and interrupted.
#![allow(
    clippy::unwrap_used,
    reason = "helpers of a test binary: a failed step should fail the test"
)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{BINARY, run, run_async, temp_dir};
use peregrine_testkit::PgCluster;

#[test]
fn demo_tells_the_tutorials_story_with_measurements_and_reports() {
    let dir = temp_dir();
    let (status, stdout, stderr) = run(
        dir.path(),
        &[
            "demo",
            "--ramp-up",
            "500ms",
            "--hold-for",
            "1s",
            "--dir",
            "out",
            "--capacity-for",
            "6s",
        ],
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    for step in [
        "[1/8] schema: table orguser in a new SQLite file",
        "[2/8] 20 users",
        "[3/8] load: GET /users/ at 100 users",
        "[5/8] capacity: the highest rate of GET /users/ within p99<100ms, errors<1% with 1 worker(s)",
        "[8/8] capacity: the highest rate of GET /users/ within p99<100ms, errors<1%",
    ] {
        assert!(stdout.contains(step), "{step}\n{stdout}");
    }
    assert!(stdout.contains("users workers   samples  errors       avg       p99  throughput  tutorial (Falcon + gunicorn)"), "{stdout}");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("users workers"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    let shape: Vec<(&str, String)> = rows.iter().map(|r| (r[0], r[1].to_owned())).collect();
    assert_eq!(
        shape,
        [
            ("100", "1".to_owned()),
            ("500", "1".to_owned()),
            ("100", cores.to_string()),
            ("500", cores.to_string())
        ],
        "{stdout}"
    );
    for row in &rows {
        assert!(
            row[2].parse::<u64>().is_ok_and(|n| n > 0),
            "samples: {row:?}"
        );
        assert_eq!(
            row[3], "0.00%",
            "no errors on the embedded default: {row:?}"
        );
    }
    assert!(
        stdout.contains("~40 % errors (1 gunicorn worker)"),
        "the tutorial's figures stand beside: {stdout}"
    );
    let capacities: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Capacity within p99<100ms, errors<1%"))
        .filter(|l| l.contains(" worker(s): Capacity") || l.contains(" worker(s): No capacity"))
        .collect();
    assert_eq!(capacities.len(), 2, "1 worker and all cores: {stdout}");
    for line in &capacities {
        // 6 s is too short to bracket the API: the answer is a lower bound or a capacity,
        // or, on a machine busy with other tests, that even the lowest step broke; each
        // names its figures.
        assert!(
            line.contains("Capacity: at least ")
                || line.contains(" req/s (p99<100ms, errors<1%): held at ")
                || line.contains("No capacity: even the lowest step, "),
            "{line}"
        );
    }
    assert!(
        stdout.contains("tutorial: ~1000 req/s (1 gunicorn worker"),
        "the tutorial's ~1000 req/s stands beside: {stdout}"
    );
    for users in [100, 500] {
        for workers in [1, cores] {
            let html = dir.path().join(format!(
                "out/report-{users}-users-{workers}-workers/report.html"
            ));
            assert!(html.is_file(), "{}", html.display());
            assert!(
                stdout.contains(
                    &html
                        .display()
                        .to_string()
                        .replace(&format!("{}/", dir.path().display()), "")
                ),
                "{stdout}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_on_postgres_uses_a_fresh_database_and_leaves_existing_rows_alone() {
    let url = PgCluster::shared().fresh_database().await;
    let client = peregrine_testkit::connect(&url).await;
    client
        .batch_execute("CREATE TABLE orguser (id SERIAL PRIMARY KEY, username VARCHAR(255) NOT NULL UNIQUE); INSERT INTO orguser (username) VALUES ('keep-me');")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = temp_dir();
    let (status, stdout, stderr) = run_async(
        dir.path(),
        &[
            "demo",
            "--database-url",
            &url,
            "--ramp-up",
            "200ms",
            "--hold-for",
            "500ms",
            "--dir",
            "out",
            "--capacity-for",
            "0s",
        ],
    )
    .await;
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("a fresh PostgreSQL database, postgres://postgres@127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("PgTune's recommendations for this host")
            && stdout.contains("\nshared_buffers = "),
        "{stdout}"
    );
    let rows = client
        .query("SELECT username FROM orguser", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 1, "the user's own rows are untouched");
    let demo_databases = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'peregrine_demo_%'",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        demo_databases.is_empty(),
        "the demo database is dropped at the end"
    );
}

#[test]
fn demo_interrupted_prints_the_partial_table_and_exits_2() {
    let dir = temp_dir();
    let mut child = Command::new(BINARY)
        .args([
            "demo",
            "--ramp-up",
            "1s",
            "--hold-for",
            "30s",
            "--dir",
            "out",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the first load run has started, as the demo announces it.
    let mut stdout_lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    for line in stdout_lines.by_ref() {
        let line = line.unwrap();
        stdout.push_str(&line);
        stdout.push('\n');
        if line.starts_with("[3/") {
            break;
        }
    }
    assert!(
        stdout.contains("[3/"),
        "the demo never started a load run: {stdout}"
    );
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(status.is_ok_and(|s| s.success()));
    let started = Instant::now();
    for line in stdout_lines {
        stdout.push_str(&line.unwrap());
        stdout.push('\n');
    }
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    let rows = stdout
        .lines()
        .skip_while(|l| !l.starts_with("users workers"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .count();
    assert_eq!(rows, 1, "one partial run: {stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
}
