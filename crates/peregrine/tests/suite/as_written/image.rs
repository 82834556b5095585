//! The container image, built without Docker (CI has no engine): the build context assembled
//! exactly as `docker build` would (the Dockerfile's COPY sources less `.dockerignore`), the
//! build stage's RUN run in it, then the binary started as the final stage's ENTRYPOINT, CMD
//! and ENV say, and checked with its own HEALTHCHECK.

use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobMatcher};

use super::support::{
    Must, Shell, ShellSpec, free_port, quick_release_env, repo_root, wait_for_port,
};

/// One instruction of the Dockerfile: its keyword (upper case) and the rest of the line.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

/// The Dockerfile's instructions: continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (pending.is_empty() && trimmed.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head.trim_end());
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let line = std::mem::take(&mut pending);
                let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
                out.push(Instruction {
                    keyword: keyword.to_uppercase(),
                    args: args.trim().into(),
                });
            }
        }
    }
    out
}

/// `.dockerignore` as Docker reads it: patterns anchored at the context's root, `*` within
/// one path element, `**` across them, `!` re-includes, the last matching line wins, and a
/// pattern that matches a directory matches everything under it.
struct DockerIgnore {
    rules: Vec<(bool, GlobMatcher)>,
}

impl DockerIgnore {
    fn parse(text: &str) -> DockerIgnore {
        let mut rules = Vec::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (include, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pattern = pattern
                .trim_start_matches("./")
                .trim_start_matches('/')
                .trim_end_matches('/');
            let glob = globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map(|glob: Glob| glob.compile_matcher())
                .unwrap_or_else(|err| panic!(".dockerignore: {line:?}: {err}"));
            rules.push((include, glob));
        }
        DockerIgnore { rules }
    }

    /// Whether the file at `relative` (to the context's root) is left out.
    fn excludes(&self, relative: &Path) -> bool {
        let ancestors: Vec<&Path> = relative
            .ancestors()
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        let mut excluded = false;
        for (include, glob) in &self.rules {
            if ancestors.iter().any(|path| glob.is_match(path)) {
                excluded = !include;
            }
        }
        excluded
    }
}

/// Copies `from` (a file or a directory of the repository) to `to`, less what is ignored.
fn copy_filtered(root: &Path, from: &Path, to: &Path, ignore: &DockerIgnore) -> usize {
    let relative = from.strip_prefix(root).must("a path in the repository");
    if ignore.excludes(relative) {
        return 0;
    }
    if from.is_dir() {
        std::fs::create_dir_all(to).must("a directory");
        let mut copied = 0;
        for entry in std::fs::read_dir(from).must("a directory") {
            let entry = entry.must("an entry");
            copied += copy_filtered(root, &entry.path(), &to.join(entry.file_name()), ignore);
        }
        copied
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).must("a directory");
        }
        std::fs::copy(from, to).must("a copy");
        1
    }
}

/// The build context as `docker build` would send it, then the build stage's COPYs into a
/// directory standing for its WORKDIR.
fn assemble(root: &Path, stage: &[Instruction], workdir: &Path) -> Vec<String> {
    let ignore = DockerIgnore::parse(
        &std::fs::read_to_string(root.join(".dockerignore")).unwrap_or_default(),
    );
    let mut copied = Vec::new();
    for copy in stage.iter().filter(|i| i.keyword == "COPY") {
        assert!(
            !copy.args.starts_with("--from"),
            "the build stage copies only from the context"
        );
        let parts: Vec<&str> = copy.args.split_whitespace().collect();
        let (dest, sources) = parts.split_last().must("COPY has a destination");
        for source in sources {
            let from = root.join(source);
            assert!(
                from.exists(),
                "Dockerfile: COPY {source}: no such file in the context"
            );
            let to = if dest.ends_with('/') || sources.len() > 1 || *dest == "." {
                workdir
                    .join(dest)
                    .join(Path::new(source).file_name().must("a name"))
            } else {
                workdir.join(dest)
            };
            let n = copy_filtered(root, &from, &to, &ignore);
            assert!(
                n > 0,
                "Dockerfile: COPY {source}: .dockerignore leaves nothing of it"
            );
            copied.push(source.to_string());
        }
    }
    copied
}

/// The exec form (`["a", "b"]`) or the shell form of CMD, ENTRYPOINT and HEALTHCHECK CMD.
fn argv(args: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(args) {
        Ok(list) => list,
        Err(_) => vec!["sh".into(), "-c".into(), args.into()],
    }
}

#[test]
fn dockerignore_reads_as_docker_reads_it() {
    let ignore = DockerIgnore::parse("target/\n*.db\nbench/\n!bench/minimal\n**/*.rs.bk\n");
    assert!(ignore.excludes(Path::new("target/release/x")));
    assert!(ignore.excludes(Path::new("bench/list.sh")));
    assert!(!ignore.excludes(Path::new("bench/minimal/src/main.rs")));
    assert!(ignore.excludes(Path::new("peregrine.db")));
    assert!(
        !ignore.excludes(Path::new("crates/x/peregrine.db")),
        "anchored at the root"
    );
    assert!(ignore.excludes(Path::new("crates/x/a.rs.bk")));
    assert!(!ignore.excludes(Path::new("Cargo.toml")));
}

#[test]
fn the_images_build_context_builds_and_the_image_runs_its_health_check() {
    let root = repo_root();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).must("Dockerfile");
    let all = instructions(&dockerfile);
    let stages: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, i)| i.keyword == "FROM")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let build = &all[stages[0]..stages[1]];
    let runtime = &all[stages[1]..];

    // The Rust of the build image must be new enough for every crate the binary builds.
    let image_rust = rust_image_version(&build[0].args);
    let newest = newest_rust_version_needed(&root);
    assert!(
        newest.0 <= image_rust,
        "Dockerfile: {} has Rust {image_rust:?}, but {} needs {:?}",
        build[0].args,
        newest.1,
        newest.0
    );

    let context = tempfile::tempdir().must("a temporary directory");
    let workdir = context.path().join("src");
    std::fs::create_dir_all(&workdir).must("src/");
    let copied = assemble(&root, build, &workdir);
    assert!(
        copied.iter().any(|s| s.starts_with("crates")),
        "the crates are copied: {copied:?}"
    );

    // The build stage's RUN, in the context: its install destination is a directory of the
    // test's, and target/ the shared quick release build (see support::quick_release_env).
    let target = PathBuf::from(&quick_release_env()[0].1);
    std::fs::create_dir_all(&target).must("the shared target directory");
    std::os::unix::fs::symlink(&target, workdir.join("target")).must("target/ link");
    let bin = context.path().join("usr-local-bin");
    std::fs::create_dir_all(&bin).must("bin/");
    let logs = context.path().join("logs");
    std::fs::create_dir_all(&logs).must("logs/");
    let env = quick_release_env();
    for (n, run) in build.iter().filter(|i| i.keyword == "RUN").enumerate() {
        let script = run
            .args
            .replace("/usr/local/bin/", &format!("{}/", bin.display()));
        let name = format!("run{n}");
        let spec = ShellSpec {
            script: &script,
            dir: &workdir,
            env: &env,
            logs: &logs,
            name: &name,
        };
        let mut shell = Shell::start(&spec);
        let status = shell.wait(Duration::from_secs(1800));
        assert!(
            status.is_some_and(|s| s.success()),
            "Dockerfile: RUN {}\n{}",
            run.args,
            shell.tails()
        );
    }

    // The runtime stage: the binary it copies, started as ENTRYPOINT + CMD with its ENV (the
    // address moved to a free port on 127.0.0.1), then its HEALTHCHECK.
    let copy = runtime
        .iter()
        .find(|i| i.keyword == "COPY" && i.args.starts_with("--from=build"))
        .must("the runtime stage copies the binary from the build stage");
    let parts: Vec<&str> = copy.args.split_whitespace().collect();
    let installed = bin.join(Path::new(parts[1]).file_name().must("a file name"));
    assert!(
        installed.exists(),
        "the build stage installed no {}",
        parts[1]
    );
    let port = free_port();
    let mut env: Vec<(String, String)> = Vec::new();
    for i in runtime.iter().filter(|i| i.keyword == "ENV") {
        for pair in i.args.split_whitespace() {
            let (key, value) = pair.split_once('=').must("ENV KEY=VALUE");
            env.push((
                key.into(),
                value
                    .replace(":8000", &format!(":{port}"))
                    .replace("0.0.0.0", "127.0.0.1"),
            ));
        }
    }
    env.push((
        "PATH".into(),
        format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    ));
    let entrypoint = runtime
        .iter()
        .find(|i| i.keyword == "ENTRYPOINT")
        .must("ENTRYPOINT");
    let cmd = runtime.iter().find(|i| i.keyword == "CMD").must("CMD");
    let mut words = argv(&entrypoint.args);
    words.extend(argv(&cmd.args));
    let data = context.path().join("data");
    std::fs::create_dir_all(&data).must("data/");
    let script = words.join(" ");
    let spec = ShellSpec {
        script: &script,
        dir: &data,
        env: &env,
        logs: &logs,
        name: "image",
    };
    let mut server = Shell::start(&spec);
    assert!(
        wait_for_port(port, &mut server, Duration::from_secs(60)),
        "the image's command did not serve\n{}",
        server.tails()
    );
    let health = runtime
        .iter()
        .find(|i| i.keyword == "HEALTHCHECK")
        .must("HEALTHCHECK");
    let check = health
        .args
        .split_once("CMD")
        .must("HEALTHCHECK … CMD")
        .1
        .trim();
    let script = argv(check).join(" ");
    let spec = ShellSpec {
        script: &script,
        dir: &data,
        env: &env,
        logs: &logs,
        name: "health",
    };
    let mut probe = Shell::start(&spec);
    let status = probe.wait(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "HEALTHCHECK failed\n{}",
        probe.tails()
    );
    server.kill();
}

/// `rust:1.89-slim-bookworm` → (1, 89).
fn rust_image_version(from: &str) -> (u64, u64) {
    let image = from.split_whitespace().next().must("FROM image");
    let tag = image
        .strip_prefix("rust:")
        .must("the build stage is a rust image");
    let version = tag.split('-').next().must("a version");
    let mut numbers = version
        .split('.')
        .map(|n| n.parse::<u64>().must("a number"));
    (numbers.next().must("major"), numbers.next().must("minor"))
}

/// The highest `rust-version` among the packages `cargo build -p peregrine` compiles.
fn newest_rust_version_needed(root: &Path) -> ((u64, u64), String) {
    let output =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["metadata", "--format-version", "1", "--locked"])
            .current_dir(root)
            .output()
            .must("cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).must("metadata JSON");
    let packages = metadata["packages"].as_array().must("packages");
    let nodes = metadata["resolve"]["nodes"].as_array().must("resolve");
    let start = packages
        .iter()
        .find(|p| p["name"] == "peregrine")
        .must("peregrine")["id"]
        .clone();
    let mut seen = vec![start.clone()];
    let mut queue = vec![start];
    while let Some(id) = queue.pop() {
        let node = nodes.iter().find(|n| n["id"] == id).must("a node");
        for dep in node["deps"].as_array().into_iter().flatten() {
            let normal = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            if normal && !seen.contains(&dep["pkg"]) {
                seen.push(dep["pkg"].clone());
                queue.push(dep["pkg"].clone());
            }
        }
    }
    let mut newest = ((0, 0), String::new());
    for package in packages.iter().filter(|p| seen.contains(&p["id"])) {
        if let Some(version) = package["rust_version"].as_str() {
            let mut parts = version.split('.').map(|n| n.parse::<u64>().unwrap_or(0));
            let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
            if v > newest.0 {
                newest = (v, format!("{} {}", package["name"], package["version"]));
            }
        }
    }
    newest
}
