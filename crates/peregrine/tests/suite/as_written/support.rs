//! What the three rooms share: the repository's root, running a shell command with a
//! deadline in a process group of its own, and the one release build of `cargo` commands.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The workspace root (this crate is `crates/peregrine`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|err| panic!("the repository root cannot be resolved: {err}"))
}

/// The directory the `peregrine` binary under test lives in, for PATH.
pub fn peregrine_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_peregrine"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("CARGO_BIN_EXE_peregrine has no directory"))
}

/// The environment the `cargo` commands of the docs and of the Dockerfile get on top of the
/// command as printed: their own target directory, shared by all of them so the dependencies
/// are built once, and a release profile without optimisation or LTO. The command is the same;
/// the build takes a few minutes instead of seven, and what it proves (cargo finds the binary,
/// the workspace loads, `--locked` holds, the program runs) does not depend on optimisation.
pub fn quick_release_env() -> Vec<(String, String)> {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("as-written-release");
    vec![
        ("CARGO_TARGET_DIR".into(), target.display().to_string()),
        ("CARGO_PROFILE_RELEASE_OPT_LEVEL".into(), "0".into()),
        ("CARGO_PROFILE_RELEASE_LTO".into(), "false".into()),
        ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS".into(), "256".into()),
        ("CARGO_PROFILE_RELEASE_DEBUG".into(), "false".into()),
    ]
}

/// A shell command started with `bash -c` in a process group of its own, its output in files
/// (a background child may keep a pipe open forever; a file never blocks it).
pub struct Shell {
    child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// How to start a [`Shell`].
pub struct ShellSpec<'a> {
    pub script: &'a str,
    pub dir: &'a Path,
    pub env: &'a [(String, String)],
    pub logs: &'a Path,
    pub name: &'a str,
}

impl Shell {
    pub fn start(spec: &ShellSpec<'_>) -> Shell {
        use std::os::unix::process::CommandExt;
        let stdout = spec.logs.join(format!("{}.out", spec.name));
        let stderr = spec.logs.join(format!("{}.err", spec.name));
        let out = std::fs::File::create(&stdout).unwrap_or_else(|err| panic!("{stdout:?}: {err}"));
        let err = std::fs::File::create(&stderr).unwrap_or_else(|e| panic!("{stderr:?}: {e}"));
        let mut command = Command::new("bash");
        command
            .args(["-o", "pipefail", "-c", spec.script])
            .current_dir(spec.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // What cargo sets for this test must not leak into the commands (a nested cargo would
        // read CARGO_TARGET_DIR-like settings meant for this build), nor how CI builds the
        // tests (.ci/run lints while it builds: RUSTC_WORKSPACE_WRAPPER, RUSTFLAGS).
        for (key, _) in std::env::vars() {
            let from_cargo = key.starts_with("CARGO_") && key != "CARGO_HOME";
            let from_ci = key.starts_with("RUSTC_") || key.starts_with("RUSTFLAGS");
            if from_cargo
                || from_ci
                || key.starts_with("PEREGRINE_")
                || key.starts_with("DATABASE_URL")
            {
                command.env_remove(&key);
            }
        }
        for (key, value) in spec.env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("bash cannot start: {err}"));
        Shell {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits until the command ends, at most `limit`; past it the group is killed and `None`
    /// is returned.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    self.kill();
                    return None;
                }
            }
        }
    }

    /// How the command ended, if it has.
    pub fn ended(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Whether the command is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM to the whole group, then SIGKILL after 5 s.
    pub fn kill(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.running() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }

    /// The tail of both outputs, for a failure message.
    pub fn tails(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        if self.running() {
            self.kill();
        }
    }
}

/// The last 4,000 characters of a file.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(4000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    text[start..].to_string()
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("no free port: {err}"))
}

/// Waits until something accepts connections on 127.0.0.1:`port`, or the shell ends.
pub fn wait_for_port(port: u16, shell: &mut Shell, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        if !shell.running() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// `expect` for the helpers of these tests (clippy allows it only inside `#[test]`
/// functions): panics with what was being done and why it failed.
pub trait Must<T> {
    fn must(self, what: &str) -> T;
}

impl<T, E: std::fmt::Display> Must<T> for Result<T, E> {
    fn must(self, what: &str) -> T {
        self.unwrap_or_else(|err| panic!("{what}: {err}"))
    }
}

impl<T> Must<T> for Option<T> {
    fn must(self, what: &str) -> T {
        self.unwrap_or_else(|| panic!("{what}: missing"))
    }
}
