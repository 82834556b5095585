//! The Kubernetes manifests under deploy/, cross-checked: every in-cluster URL names a
//! Service port that exists; every environment variable a container sets is one the binary
//! reads for the subcommand it runs; one formula for the database connections, stated alike in
//! the manifests' comments and docs/scaling.md, and its figure in the HPA's comment right.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::support::{Must, repo_root};

/// The one statement of the connection arithmetic, word for word wherever it is given.
const FORMULA: &str = "instances × workers × (db-pool-size + 2)";

/// Every manifest: its path and its parsed document.
fn manifests() -> Vec<(PathBuf, String, Value)> {
    let mut files = Vec::new();
    collect_yaml(&repo_root().join("deploy/kubernetes"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).must("a manifest");
            let value: Value = serde_saphyr::from_str(&text)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            (path, text, value)
        })
        .collect()
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).must("deploy/kubernetes") {
        let path = entry.must("an entry").path();
        if path.is_dir() {
            collect_yaml(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Service name → its ports.
fn services(all: &[(PathBuf, String, Value)]) -> BTreeMap<String, Vec<u64>> {
    all.iter()
        .filter(|(_, _, doc)| doc["kind"] == "Service")
        .map(|(_, _, doc)| {
            let name = doc["metadata"]["name"].as_str().must("a name").to_string();
            let ports = doc["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["port"].as_u64())
                .collect();
            (name, ports)
        })
        .collect()
}

/// The containers of a workload (Deployment, Job, …), if it is one.
fn containers(doc: &Value) -> Vec<&Value> {
    doc["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect()
}

#[test]
fn every_in_cluster_url_names_a_service_port_that_exists() {
    let all = manifests();
    let services = services(&all);
    assert!(!services.is_empty(), "deploy/kubernetes has a Service");
    let url = regex::Regex::new(r"https?://([a-z0-9-]+)((?:\.[a-z0-9-]+)*?)(?::(\d+))?(?:/|\s|$)")
        .must("regex");
    let mut checked = 0;
    for (path, text, _) in &all {
        for found in url.captures_iter(text) {
            let host = &found[1];
            let rest = found.get(2).map_or("", |m| m.as_str());
            let in_cluster = rest.is_empty()
                || rest.ends_with(".svc")
                || rest.ends_with(".svc.cluster.local")
                || rest.split('.').count() == 2;
            if !in_cluster || !services.contains_key(host) && !rest.contains(".svc") {
                continue;
            }
            let ports = services.get(host).unwrap_or_else(|| {
                panic!(
                    "{}: {} names no Service of deploy/kubernetes",
                    path.display(),
                    &found[0]
                )
            });
            let default = if found[0].starts_with("https") {
                443
            } else {
                80
            };
            let port = found
                .get(3)
                .map_or(default, |p| p.as_str().parse().must("a port"));
            assert!(
                ports.contains(&port),
                "{}: {} uses port {port}, but Service {host} exposes {ports:?}",
                path.display(),
                found[0].trim_end()
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "the load Job's config targets the Service");
}

#[test]
fn every_environment_variable_a_manifest_sets_is_read_by_the_binary() {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).must("Dockerfile");
    let default_command = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .and_then(|cmd| serde_json::from_str::<Vec<String>>(cmd).ok())
        .and_then(|cmd| cmd.first().cloned())
        .must("the Dockerfile's CMD names a subcommand");
    let mut checked = 0;
    for (path, _, doc) in manifests() {
        for container in containers(&doc) {
            if !container["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("peregrine"))
            {
                continue;
            }
            let subcommand = container["args"][0]
                .as_str()
                .map_or(default_command.clone(), str::to_string);
            let read = variables_read(&subcommand);
            for var in container["env"].as_array().into_iter().flatten() {
                let name = var["name"].as_str().must("an env name");
                assert!(
                    read.iter().any(|r| r == name),
                    "{}: sets {name}, which `peregrine {subcommand}` does not read (it reads {read:?})",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 5, "the Deployment and the Jobs set variables");
}

/// The variables `peregrine SUBCOMMAND` reads: those its `--help` names (`[env: NAME=]`),
/// the log filter, and those its help text names as read from the environment.
fn variables_read(subcommand: &str) -> Vec<String> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_peregrine"))
        .args([subcommand, "--help"])
        .output()
        .must("peregrine --help");
    let help = String::from_utf8_lossy(&output.stdout);
    let env = regex::Regex::new(r"\[env: ([A-Z0-9_]+)[=\]]").must("regex");
    let mut read: Vec<String> = env.captures_iter(&help).map(|c| c[1].to_string()).collect();
    read.push("RUST_LOG".into());
    // Declared for Kubernetes' $(VAR) expansion in args, or read as documented in --help.
    if help.contains("JOB_COMPLETION_INDEX") {
        read.push("JOB_COMPLETION_INDEX".into());
    }
    read
}

#[test]
fn one_connection_formula_in_the_manifests_and_the_docs_and_its_figure_is_right() {
    let root = repo_root();
    for file in [
        "deploy/kubernetes/deployment.yaml",
        "deploy/kubernetes/hpa.yaml",
        "docs/scaling.md",
    ] {
        let text = std::fs::read_to_string(root.join(file)).must(file);
        assert!(
            text.contains(FORMULA),
            "{file} states the connection formula as `{FORMULA}`"
        );
    }
    let all = manifests();
    let deployment = all
        .iter()
        .find(|(_, _, d)| d["kind"] == "Deployment")
        .must("a Deployment");
    let hpa = all
        .iter()
        .find(|(_, _, d)| d["kind"] == "HorizontalPodAutoscaler")
        .must("an HPA");
    let env = &containers(&deployment.2)[0]["env"];
    let setting = |name: &str, default: u64| {
        env.as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == name)
            .map_or(default, |v| {
                v["value"].as_str().must("a value").parse().must("a number")
            })
    };
    let workers = setting("PEREGRINE_WORKERS", 0);
    assert!(
        workers > 0,
        "the Deployment sets PEREGRINE_WORKERS (the default is the node's CPUs)"
    );
    let pool = setting("PEREGRINE_DB_POOL_SIZE", 1);
    let max = hpa.2["spec"]["maxReplicas"].as_u64().must("maxReplicas");
    let figure = format!(
        "{max} × {workers} × ({pool} + 2) = {}",
        max * workers * (pool + 2)
    );
    assert!(
        hpa.1.contains(&figure),
        "hpa.yaml's comment gives `{figure}` at maxReplicas"
    );
}
