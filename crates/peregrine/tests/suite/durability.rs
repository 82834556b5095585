//! SQLite's durability as served: `synchronous = FULL` by default, and writes acknowledged
//! together (group commit) survive `kill -9`.
#![allow(
    clippy::unwrap_used,
    reason = "helpers of a test binary: a failed step should fail the test"
)]

use std::process::Command;
use std::time::Duration;

use crate::harness::{BINARY, Served, get_json, run, temp_dir};
use peregrine_testkit::PgCluster;
use serde_json::Value;

/// SQLite commits are durable unless `--sqlite-synchronous normal` (or its variable) says
/// otherwise; the server says which at start, as SQLite reads the setting back.
#[tokio::test]
async fn sqlite_durability_is_full_by_default_and_the_flag_relaxes_it() {
    let dir = temp_dir();
    let server = Served::start(dir.path(), &[]);
    server.wait_for_log("synchronous=FULL");
    drop(server);
    let relaxed = Served::start(dir.path(), &["--sqlite-synchronous", "normal"]);
    let logs = relaxed.wait_for_log("synchronous=NORMAL");
    assert!(logs.contains("power loss"), "{logs}");
    assert!(!logs.contains("synchronous=FULL"), "{logs}");
    drop(relaxed);
    let mut command = Command::new(BINARY);
    command
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("PEREGRINE_SQLITE_SYNCHRONOUS", "normal");
    let from_env = Served::spawn(command, dir.path(), "info");
    from_env.wait_for_log("synchronous=NORMAL");
    drop(from_env);

    let (status, _, stderr) = run(dir.path(), &["serve", "--sqlite-synchronous", "off"]);
    assert!(!status.success());
    assert!(stderr.contains("--sqlite-synchronous"), "{stderr}");
    let postgres = PgCluster::shared().fresh_database().await;
    let (status, _, stderr) = run(
        dir.path(),
        &[
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            &postgres,
            "--sqlite-synchronous",
            "normal",
        ],
    );
    assert!(!status.success());
    assert!(stderr.contains("SQLite only"), "{stderr}");
}

/// Every write acknowledged by `serve` on SQLite is in the file, even when writes were
/// committed together and the process is then killed with SIGKILL: 40 concurrent POSTs of
/// 20 names give one 201 per name, and a new server on the file lists exactly those.
#[tokio::test]
async fn sqlite_writes_acknowledged_together_survive_kill_9() {
    let dir = temp_dir();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "kill-token-1234\n").unwrap();
    let args = ["--api-token-file", token_file.to_str().unwrap()];
    let mut server = Served::start(dir.path(), &args);
    let client = reqwest::Client::new();
    let posts: Vec<_> = (0..40)
        .map(|i| {
            let post = client
                .post(server.url("/users"))
                .bearer_auth("kill-token-1234")
                .json(&serde_json::json!({ "username": format!("durable-{}", i % 20) }))
                .send();
            tokio::spawn(post)
        })
        .collect();
    let mut acknowledged = std::collections::BTreeSet::new();
    for post in posts {
        let response = post.await.unwrap().unwrap();
        match response.status().as_u16() {
            201 => {
                let user: Value = response.json().await.unwrap();
                let name = user["username"].as_str().unwrap_or_default().to_owned();
                assert!(acknowledged.insert(name), "two 201s for one name");
            }
            409 => {}
            other => panic!("POST answered {other}"),
        }
    }
    assert_eq!(acknowledged.len(), 20);
    server.signal("KILL");
    server.wait(Duration::from_secs(10));
    drop(server);

    let again = Served::start(dir.path(), &args);
    let (status, users) = get_json(&again.url("/users?limit=100")).await;
    assert_eq!(status, 200);
    let listed: std::collections::BTreeSet<String> = users
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|user| user["username"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(listed, acknowledged);
}
