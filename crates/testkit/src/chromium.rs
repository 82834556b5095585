//! Real headless Chromium for the tests of browser-facing pages (the HTML reports, the live
//! dashboard): started with the flags this machine's closed network needs (no background
//! networking, no component updates, no sync, no QUIC), in a fresh profile, stopped after a
//! minute at most.

use std::path::Path;
use std::process::{Command, Output};

/// The browser's names, in the order they are tried.
const BROWSERS: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

/// Runs headless Chromium on `page` (a URL or `file://` path) with `args` (`--dump-dom`,
/// `--screenshot=…`, `--virtual-time-budget=…`), its profile in a temp dir under `dir`.
///
/// Panics with how to install it when no Chromium is found: a test that needs it fails.
pub fn run(dir: &Path, page: &str, args: &[&str]) -> Output {
    let browser = BROWSERS
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| {
            panic!("headless Chromium is needed: apt-get install chromium (.ci/run does)")
        });
    let profile = tempfile::tempdir_in(dir).unwrap_or_else(|e| panic!("a Chromium profile: {e}"));
    Command::new("timeout")
        .args(["60", browser, "--headless", "--no-sandbox", "--disable-gpu"])
        .args(["--disable-quic", "--no-first-run", "--disable-sync"])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(page)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {browser}: {e}"))
}

/// The DOM of the file `page` once Chromium has run its scripts for up to 3 s.
pub fn dom(page: &Path) -> String {
    let dir = page.parent().unwrap_or(Path::new("."));
    let output = run(
        dir,
        &format!("file://{}", page.display()),
        &["--virtual-time-budget=3000", "--dump-dom"],
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
