//! A config of 100,000 distinct requests (each its own label) runs in bounded memory. Its
//! own test binary, so the process's peak memory is this test's alone.

use std::fmt::Write as _;

use peregrine_testkit::{Behavior, TinyServer};

/// Peak resident memory of this process so far, in MiB (Linux).
fn peak_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_distinct_requests_run_in_bounded_memory() {
    let server = TinyServer::start(Behavior::default()).await;
    let base = server.url("");
    let mut yaml =
        String::from("execution:\n- concurrency: 8\n  hold-for: 3s\n  scenario:\n    requests:\n");
    for i in 0..100_000 {
        let _ = writeln!(yaml, "    - '{base}/users/{i}'");
    }
    let plan = peregrine_load::plan_from_str("many.yml", &yaml, &[]).unwrap();
    drop(yaml);
    assert_eq!(plan.labels.len(), 100_000);
    let report = peregrine_load::run(&plan, std::future::pending(), |_| {}).await;
    assert!(report.overall.samples > 1000, "{}", report.overall.samples);
    assert!(report.duration_seconds < 4.5, "{}", report.duration_seconds);
    let used = report
        .labels
        .iter()
        .filter(|l| l.summary.samples > 0)
        .count();
    assert!(used > 1000, "{used} labels had samples");
    let peak = peak_mib().unwrap();
    // Before: about 0.5 MiB per label, 2.8 GiB at 5,000 labels; this many never finished.
    assert!(peak < 600, "peak memory {peak} MiB");
    eprintln!(
        "peak memory with 100,000 labels: {peak} MiB; {} samples over {used} labels",
        report.overall.samples
    );
}
