//! Every command block of README.md and docs/*.md, run as printed.
//!
//! Blocks are found with pulldown-cmark. `sh` blocks run command by command, in order, in a
//! temporary directory holding a copy of `examples/`, with the `peregrine` under test first on
//! the PATH and a `peregrine serve` (SQLite, 20 users, token `s3cret`) listening where the
//! docs say, 127.0.0.1:8000, which the test replaces by a free port in every command (and the
//! live dashboard's 127.0.0.1:5665 by another). A command
//! ending in `&` runs in the background until the page is done. What a command needs beyond
//! that is named in [`specs`], and only there: flags added to shorten a run, a directory, an
//! environment, an expected exit code or output. A block that cannot run here is preceded by
//! `<!-- not run: REASON -->`. `console` blocks are checked output for output by trycmd.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

use super::support::{
    Must, Shell, ShellSpec, free_port, peregrine_dir, quick_release_env, repo_root,
};

/// A fenced code block of a page.
#[derive(Debug)]
struct Block {
    line: usize,
    lang: String,
    code: String,
    not_run: Option<String>,
}

/// The fenced code blocks of a markdown text, with the `<!-- not run: … -->` marks before them.
fn blocks(text: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut pending_mark: Option<String> = None;
    let mut current: Option<Block> = None;
    for (event, range) in Parser::new_ext(text, Options::all()).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                let line = text[..range.start].matches('\n').count() + 1;
                let lang = info.split_whitespace().next().unwrap_or("").to_string();
                current = Some(Block {
                    line,
                    lang,
                    code: String::new(),
                    not_run: pending_mark.take(),
                });
            }
            Event::Text(chunk) if current.is_some() => {
                if let Some(block) = current.as_mut() {
                    block.code.push_str(&chunk);
                }
            }
            Event::End(TagEnd::CodeBlock) => found.extend(current.take()),
            Event::Html(html) => {
                if let Some(reason) = html.trim().strip_prefix("<!-- not run:") {
                    let reason = reason.trim_end_matches("-->").trim();
                    assert!(!reason.is_empty(), "a `not run` mark must say why: {html}");
                    pending_mark = Some(reason.to_string());
                }
            }
            Event::Start(Tag::HtmlBlock) | Event::End(TagEnd::HtmlBlock) => {}
            Event::Start(_) => pending_mark = None,
            _ => {}
        }
    }
    found
}

/// The commands of a shell block: continuation lines joined, comment lines dropped.
fn commands(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in code.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head.trim_end());
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                out.push(std::mem::take(&mut pending));
            }
        }
    }
    if !pending.trim().is_empty() {
        out.push(pending);
    }
    out
}

/// A command without its trailing `# comment` (a `#` after white space, outside quotes).
fn without_comment(command: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut previous = ' ';
    for (at, c) in command.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && previous.is_whitespace() => {
                return command[..at].trim_end();
            }
            _ => {}
        }
        previous = c;
    }
    command.trim_end()
}

/// Where a command runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dir {
    /// The page's temporary directory.
    Sandbox,
    /// The repository's root (the `cargo` commands).
    Repo,
}

/// What a command needs beyond being run as printed, named here and only here.
#[derive(Debug)]
struct Spec {
    file: &'static str,
    command: &'static str,
    /// Appended to the command (before its comment): `{port}` and `{dir}` are replaced.
    add: &'static str,
    dir: Dir,
    /// A server: started in the background, the page goes on once it accepts on the port.
    server: bool,
    /// Added to the environment; `{dir}` is replaced.
    env: Vec<(&'static str, &'static str)>,
    /// The `cargo` commands' quick release build (see [`quick_release_env`]).
    quick_release: bool,
    /// The exit codes that are right (0 unless said).
    exits: &'static [i32],
    stdout_has: &'static str,
    timeout: Duration,
}

fn spec(file: &'static str, command: &'static str) -> Spec {
    Spec {
        file,
        command,
        add: "",
        dir: Dir::Sandbox,
        server: false,
        env: Vec::new(),
        quick_release: false,
        exits: &[0],
        stdout_has: "",
        timeout: Duration::from_secs(120),
    }
}

impl Spec {
    fn add(mut self, flags: &'static str) -> Self {
        self.add = flags;
        self
    }
    fn cargo(mut self) -> Self {
        self.dir = Dir::Repo;
        self.quick_release = true;
        // The first build of the dependencies, on 2 busy cores.
        self.timeout = Duration::from_secs(1800);
        self
    }
    fn server(mut self) -> Self {
        self.server = true;
        self
    }
    fn stdout_has(mut self, text: &'static str) -> Self {
        self.stdout_has = text;
        self
    }
    fn exits(mut self, codes: &'static [i32]) -> Self {
        self.exits = codes;
        self
    }
}

/// Every command that needs more than being run as printed.
fn specs() -> Vec<Spec> {
    vec![
        // The Quickstart's server: on the test's port, its database in the page's directory
        // rather than in the repository.
        spec("README.md", "cargo run --release -- serve --seed 20")
            .cargo()
            .server()
            .add("--bind 127.0.0.1:{port} --database-url sqlite://{dir}/peregrine.db"),
        spec("README.md", "curl localhost:8000/users/").stdout_has("\"username\""),
        spec("README.md", "cargo install --path crates/peregrine --locked")
            .cargo()
            .add("--root {dir}/cargo-root"),
        spec("README.md", "curl -s localhost:8000/users/7").stdout_has("{\"id\":7,"),
        spec(
            "README.md",
            "peregrine load examples/bzt-config.yml -o execution.0.scenario.requests.0.url=http://127.0.0.1:8000/users/",
        )
        .add("-o execution.0.ramp-up=1s -o execution.0.hold-for=2s")
        .stdout_has("Samples count"),
        spec("README.md", "peregrine demo").add("--ramp-up 1s --hold-for 1s --capacity-for 4s"),
        spec("README.md", "peregrine health --url http://127.0.0.1:8000/healthz"),
        // Either verdict is right: two short runs on a busy machine may differ beyond their
        // noise. A crash or a usage error is not.
        spec("README.md", "peregrine report compare out after --max-p99-regression 20%")
            .exits(&[0, 3])
            .stdout_has("p99"),
        spec("docs/demo.md", "cargo run --release -- demo").cargo().add("--ramp-up 1s --hold-for 1s --capacity-for 4s"),
        spec(
            "docs/load.md",
            "peregrine load examples/bzt-config.yml -o execution.0.scenario.requests.0.url=http://127.0.0.1:8000/users/",
        )
        .add("-o execution.0.ramp-up=1s -o execution.0.hold-for=2s"),
        spec("docs/load.md", "peregrine report compare baseline merged --max-p99-regression 50%")
            .exits(&[0, 3])
            .stdout_has("p99"),
        spec("docs/serve.md", "curl -i 'localhost:8000/users?limit=2'").stdout_has("rel=\"next\""),
        spec(
            "docs/serve.md",
            "curl -i -X POST localhost:8000/users -H 'Authorization: Bearer s3cret' -H 'Content-Type: application/json' -d '{\"username\": \"alice\"}'",
        )
        .stdout_has("201 Created"),
        spec(
            "docs/serve.md",
            "curl -i -X PUT localhost:8000/users/21 -H 'Authorization: Bearer s3cret' -H 'Content-Type: application/json' -d '{\"username\": \"alicia\"}'",
        )
        .stdout_has("\"alicia\""),
        spec("docs/exit-codes.md", "peregrine health --url http://127.0.0.1:8000/healthz; echo \"exit $?\"")
            .stdout_has("exit 0"),
        spec("docs/exit-codes.md", "peregrine tune --memory 8GB --no-such-flag; echo \"exit $?\"")
            .stdout_has("exit 1"),
        // JMeter properties carry the port without a colon: the test's port is added as a
        // later override.
        spec(
            "docs/jmeter.md",
            "peregrine load examples/users.jmx -o modules.jmeter.properties.port=8000 -o execution.0.hold-for=2s",
        )
        .add("-o modules.jmeter.properties.port={port}")
        .stdout_has("Samples count"),
        spec("docs/jmeter.md", "peregrine load examples/users-jmx.yml -o modules.jmeter.properties.port=8000")
            .add("-o modules.jmeter.properties.port={port}")
            .stdout_has("Samples count"),
        // A search's answer depends on this machine: a capacity (0), the lowest step broken
        // (3) or the generator's own limit (1) are each a right answer; each prints its steps.
        spec(
            "docs/capacity.md",
            "peregrine load http://127.0.0.1:8000/users/ --find-capacity --slo 'p99<100ms' --slo 'errors<1%' --start-rate 200 --step-duration 1s --warm-up 500ms --max-duration 6s",
        )
        .exits(&[0, 1, 3])
        .stdout_has("req/s"),
        spec(
            "docs/capacity.md",
            "peregrine load examples/capacity.yml --find-capacity --start-rate 200 --step-duration 1s --warm-up 500ms --max-duration 6s -o execution.0.scenario.requests.0.url=http://127.0.0.1:8000/users/",
        )
        .exits(&[0, 1, 3])
        .stdout_has("req/s"),
        spec(
            "docs/capacity.md",
            "peregrine load http://127.0.0.1:8000/users/ --find-capacity --start-rate 200 --step-duration 1s --warm-up 500ms --max-duration 6s --report capacity-report",
        )
        .exits(&[0, 1, 3])
        .stdout_has("req/s"),
        spec(
            "docs/live.md",
            "peregrine load http://127.0.0.1:8000/users/ -c 4 --hold-for 2s -q --dashboard 127.0.0.1:5665 --dashboard-keep 3s & sleep 3.5; curl -s http://127.0.0.1:5665/metrics | grep '^peregrine_load_requests_total'; wait",
        )
        .stdout_has("peregrine_load_requests_total"),
        spec("docs/limits.md", "peregrine report compare base new").exits(&[0, 3]).stdout_has("p99"),
        spec("docs/serve.md", "curl -i -X DELETE localhost:8000/users/21 -H 'Authorization: Bearer s3cret'")
            .stdout_has("204 No Content"),
    ]
}

/// Replaces the placeholders of a spec's additions.
fn fill(text: &str, port: u16, dir: &Path) -> String {
    text.replace("{port}", &port.to_string())
        .replace("{dir}", &dir.display().to_string())
}

/// Runs every shell block of one page and checks every spec of it was used.
fn run_page(file: &str) {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join(file)).must(file);
    let sandbox = tempfile::tempdir().must("a temporary directory");
    let dir = sandbox.path().to_path_buf();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).must("logs directory");
    let port = free_port();
    // The live dashboard's address in the docs, moved to a free port too.
    let dashboard_port = free_port();
    copy_dir(&root.join("examples"), &dir.join("examples"), port);
    let path = format!(
        "{}:{}",
        peregrine_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let base_env = vec![("PATH".to_string(), path)];
    let specs: Vec<Spec> = specs()
        .into_iter()
        .filter(|spec| spec.file == file)
        .collect();
    let mut used = vec![false; specs.len()];
    let mut background: Vec<Shell> = Vec::new();
    let mut jobs: Vec<(String, Shell)> = Vec::new();

    // The page's server, unless the page starts its own (the README's Quickstart does).
    if !specs.iter().any(|spec| spec.server) {
        let script = format!(
            "peregrine serve --bind 127.0.0.1:{port} --seed 20 --database-url sqlite://{}/serve.db",
            dir.display()
        );
        let mut env = base_env.clone();
        env.push(("PEREGRINE_API_TOKEN".into(), "s3cret".into()));
        let spec = ShellSpec {
            script: &script,
            dir: &dir,
            env: &env,
            logs: &logs,
            name: "server",
        };
        let mut server = Shell::start(&spec);
        assert!(
            super::support::wait_for_port(port, &mut server, Duration::from_secs(60)),
            "{file}: the page's server did not start\n{}",
            server.tails()
        );
        background.push(server);
    }

    let mut ran = 0;
    for block in blocks(&text) {
        if !matches!(block.lang.as_str(), "sh" | "bash" | "shell") || block.not_run.is_some() {
            continue;
        }
        for (n, command) in commands(&block.code).into_iter().enumerate() {
            let printed = without_comment(&command);
            if printed == "wait" {
                // As the shell's `wait`: the page's `&` jobs end, each successfully.
                for (job, mut shell) in jobs.drain(..) {
                    let status = shell.wait(Duration::from_secs(120));
                    assert!(
                        status.is_some_and(|s| s.success()),
                        "{file}: `{job}` failed\n{}",
                        shell.tails()
                    );
                }
                continue;
            }
            let found = specs.iter().position(|spec| spec.command == printed);
            if let Some(at) = found {
                used[at] = true;
            }
            let spec = found.map(|at| &specs[at]);
            let (script, in_background) = match printed.strip_suffix('&') {
                Some(head) => (head.trim_end().to_string(), true),
                None => (printed.to_string(), false),
            };
            let mut script = script
                .replace(":8000", &format!(":{port}"))
                .replace(":5665", &format!(":{dashboard_port}"));
            let mut env = base_env.clone();
            let mut workdir = dir.clone();
            if let Some(spec) = spec {
                if !spec.add.is_empty() {
                    script = format!("{script} {}", fill(spec.add, port, &dir));
                }
                for (key, value) in &spec.env {
                    env.push(((*key).into(), fill(value, port, &dir)));
                }
                if spec.quick_release {
                    env.extend(quick_release_env());
                }
                if spec.dir == Dir::Repo {
                    workdir = root.clone();
                }
            }
            let name = format!("line{}-{n}", block.line);
            let shell_spec = ShellSpec {
                script: &script,
                dir: &workdir,
                env: &env,
                logs: &logs,
                name: &name,
            };
            let mut shell = Shell::start(&shell_spec);
            ran += 1;
            let where_ = format!("{file}:{} `{printed}` (run as `{script}`)", block.line);
            if spec.is_some_and(|spec| spec.server) {
                let limit = spec.map_or(Duration::from_secs(60), |spec| spec.timeout);
                assert!(
                    super::support::wait_for_port(port, &mut shell, limit),
                    "{where_}: the server did not start\n{}",
                    shell.tails()
                );
                background.push(shell);
                continue;
            }
            if in_background {
                jobs.push((printed.to_string(), shell));
                continue;
            }
            let limit = spec.map_or(Duration::from_secs(120), |spec| spec.timeout);
            let status = shell.wait(limit);
            let expected = spec.map_or(&[0][..], |spec| spec.exits);
            match status {
                None => panic!("{where_}: still running after {limit:?}\n{}", shell.tails()),
                Some(status) => assert!(
                    status.code().is_some_and(|code| expected.contains(&code)),
                    "{where_}: exit status {status}, expected one of {expected:?}\n{}",
                    shell.tails()
                ),
            }
            let wanted = spec.map_or("", |spec| spec.stdout_has);
            let stdout = std::fs::read_to_string(&shell.stdout).unwrap_or_default();
            assert!(
                stdout.contains(wanted),
                "{where_}: stdout lacks {wanted:?}\n{}",
                shell.tails()
            );
        }
    }
    // A background job may run until the page is done, but not fail before.
    for (job, mut shell) in jobs {
        if let Some(status) = shell.ended() {
            assert!(
                status.success(),
                "{file}: `{job}` failed in the background\n{}",
                shell.tails()
            );
        }
        shell.kill();
    }
    for mut shell in background {
        shell.kill();
    }
    let unused: Vec<_> = specs
        .iter()
        .zip(&used)
        .filter(|(_, used)| !**used)
        .map(|(s, _)| s.command)
        .collect();
    assert!(
        unused.is_empty(),
        "{file}: specs for commands the page no longer prints: {unused:?}"
    );
    assert!(ran > 0, "{file} is tested but runs no command");
}

/// Copies a directory tree (the examples are small), with the docs' 127.0.0.1:8000 moved to the
/// page's port in the text files.
fn copy_dir(from: &Path, to: &Path, port: u16) {
    std::fs::create_dir_all(to).must("a directory");
    for entry in std::fs::read_dir(from).must("examples/") {
        let entry = entry.must("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().must("a file type").is_dir() {
            copy_dir(&entry.path(), &target, port);
        } else {
            let bytes = std::fs::read(entry.path()).must("an example");
            match String::from_utf8(bytes) {
                Ok(text) => std::fs::write(&target, text.replace(":8000", &format!(":{port}"))),
                Err(err) => std::fs::write(&target, err.into_bytes()),
            }
            .must("a copy");
        }
    }
}

/// The pages whose commands are tested: README.md and every page under docs/.
fn pages() -> Vec<String> {
    let mut pages = vec!["README.md".to_string()];
    let docs = repo_root().join("docs");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&docs)
        .must("docs/")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    names.sort();
    pages.extend(names.iter().filter_map(|path| {
        path.file_name()
            .map(|name| format!("docs/{}", name.to_string_lossy()))
    }));
    pages
}

macro_rules! page_tests {
    ($($test:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                run_page($file);
            }
        )*

        #[test]
        fn every_page_with_commands_has_a_test() {
            let tested = [$($file),*];
            for page in pages() {
                let text = std::fs::read_to_string(repo_root().join(&page)).must("a page");
                let runnable = blocks(&text)
                    .iter()
                    .any(|b| matches!(b.lang.as_str(), "sh" | "bash" | "shell") && b.not_run.is_none());
                assert!(
                    !runnable || tested.contains(&page.as_str()),
                    "{page} has commands but no test: add it to page_tests! in {}",
                    file!()
                );
            }
        }
    };
}

page_tests! {
    readme_commands_work_as_printed => "README.md",
    demo_page_commands_work_as_printed => "docs/demo.md",
    load_page_commands_work_as_printed => "docs/load.md",
    serve_page_commands_work_as_printed => "docs/serve.md",
    tune_page_commands_work_as_printed => "docs/tune.md",
    exit_codes_page_commands_work_as_printed => "docs/exit-codes.md",
    limits_page_commands_work_as_printed => "docs/limits.md",
    jmeter_page_commands_work_as_printed => "docs/jmeter.md",
    live_page_commands_work_as_printed => "docs/live.md",
    capacity_page_commands_work_as_printed => "docs/capacity.md",
}

#[test]
fn shell_blocks_are_sh_or_marked_and_commands_parse() {
    // The parser itself: a mark applies to the next block only, continuations join, comments go.
    let page = "<!-- not run: needs a cluster -->\n```sh\nkubectl apply -f x\n```\n\n```sh\n# c\nperegrine a \\\n  --b 1   # says\n```\n";
    let found = blocks(page);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].not_run.as_deref(), Some("needs a cluster"));
    assert_eq!(found[1].not_run, None);
    assert_eq!(
        commands(&found[1].code),
        vec!["peregrine a --b 1   # says".to_string()]
    );
    assert_eq!(without_comment("curl 'a#b' # c"), "curl 'a#b'");
}

#[test]
fn console_blocks_print_what_the_docs_show() {
    let root = repo_root();
    let cases = trycmd::TestCases::new();
    cases.register_bin("peregrine", PathBuf::from(env!("CARGO_BIN_EXE_peregrine")));
    for page in pages() {
        let text = std::fs::read_to_string(root.join(&page)).must("a page");
        if blocks(&text).iter().any(|block| block.lang == "console") {
            cases.case(root.join(&page));
        }
    }
}
