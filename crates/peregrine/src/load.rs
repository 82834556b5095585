//! `peregrine load`: builds a plan from config files or the quick URL form, runs it with its
//! live views (terminal, dashboard, /metrics), prints Taurus-style final stats and writes the reports.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use peregrine_load::live::{Console, Live, Options};
use peregrine_load::report::final_stats_of;
use peregrine_load::shard::Shard;
use peregrine_load::{Plan, QuickTest, exit_code};

use crate::cli::LoadArgs;
use crate::out::note;

/// Hold-for of the quick form when neither it nor --iterations is given.
const QUICK_HOLD_FOR: Duration = Duration::from_secs(10);
/// Virtual users of the quick closed-model form when -c is not given.
const QUICK_USERS: u32 = 10;

/// Runs `peregrine load`; the exit code follows Taurus (0, 1, 2 interrupted, 3 criteria).
pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let mut plan = match plan(&args) {
        Ok(plan) => plan,
        Err(rejected) => {
            for warning in &rejected.warnings {
                note!("warning: {warning}");
            }
            return Err(rejected.error);
        }
    };
    plan.set_shard(shard(&args)?);
    if !plan.shard().is_whole() {
        note!("running shard {} of the plan", plan.shard());
    }
    plan.tls.ca_certs.extend(args.ca_cert.iter().cloned());
    if args.graceful_stop.is_some() {
        plan.graceful_stop = args.graceful_stop;
    }
    if args.insecure {
        plan.skip_verification();
    }
    for warning in &plan.warnings {
        note!("warning: {warning}");
    }
    if args.capacity.find_capacity {
        return crate::capacity::run(&plan, &args).await;
    }
    let mut live = start_live(&plan, &args).await?;
    let late = match args.start_at {
        Some(at) => match wait_until(at).await? {
            Waited::Interrupted => {
                note!("interrupted before the start time: nothing was sent");
                return Ok(exit_code::process(exit_code::INTERRUPTED));
            }
            Waited::Late(late) => Some(late),
            Waited::OnTime => None,
        },
        None => None,
    };
    let interrupt = interrupted();
    let mut totals = None;
    let mut report = peregrine_load::run_watched(
        &plan,
        interrupt,
        |progress| live.update(progress),
        |at_end| totals = Some(at_end),
    )
    .await;
    report.late_start_seconds = late.map(|l| l.as_secs_f64());
    live.end(totals.unwrap_or_default(), &report).await;
    // The files first: a closed stdout (`| head -0`) must not cost the report.
    let mut written = report.write_configured(&plan)?;
    if let Some(dir) = &args.report {
        written.extend(report.write_dir(dir)?);
    }
    crate::out::stdout(&final_stats_of(&report, plan.outputs.final_stats));
    if let Some(rate) = &report.rate
        && rate.below_target
    {
        note!(
            "warning: achieved {:.1} req/s is under 95% of the requested {:.1} req/s: the target or this machine could not keep up",
            rate.achieved,
            rate.requested
        );
    }
    if report.cancelled_in_flight > 0 {
        note!(
            "warning: {} requests still in flight at the stop were cancelled unmeasured (see --graceful-stop)",
            report.cancelled_in_flight
        );
    }
    for path in written {
        note!("wrote {}", path.display());
    }
    live.close(interrupted()).await;
    let code = report.exit_code();
    if code == exit_code::INTERRUPTED {
        note!("interrupted: the results above are partial");
    }
    if let Some(problem) = &report.problem {
        note!("error: the run was stopped: {problem}");
    }
    Ok(exit_code::process(code))
}

/// A plain line every 10 s when stdout is not a terminal (a CI log).
const LOG_LINE_EVERY: Duration = Duration::from_secs(10);

/// The live views the flags ask for: the console's (`--quiet`, `--progress`, or by whether
/// stdout is a terminal) and the dashboard, bound before the run so a busy port fails early.
async fn start_live(plan: &Plan, args: &LoadArgs) -> anyhow::Result<Live> {
    let console = if args.quiet {
        Console::Off
    } else if args.progress {
        Console::Lines(Duration::from_secs(1))
    } else if std::io::stdout().is_terminal()
        && std::env::var("TERM").map_or(true, |term| term != "dumb")
    {
        Console::View
    } else {
        Console::Lines(LOG_LINE_EVERY)
    };
    let options = Options {
        console,
        dashboard: args.dashboard,
        keep: args.dashboard_keep,
    };
    let live = Live::start(plan, &options).await.map_err(|err| {
        anyhow::anyhow!(
            "--dashboard {}: cannot listen: {err}",
            args.dashboard.map(|a| a.to_string()).unwrap_or_default()
        )
    })?;
    if let Some(address) = live.dashboard_address() {
        if !address.ip().is_loopback() {
            eprintln!(
                "warning: the dashboard listens on {address}, reachable from other machines: it shows the targets' URLs and figures to anyone who can connect"
            );
        }
        eprintln!("dashboard: http://{address}/ (metrics: http://{address}/metrics)");
    }
    Ok(live)
}

/// The slice of the plan to run: --shard (or PEREGRINE_SHARD), or --shard-from-job-index
/// with the index from a Kubernetes Indexed Job's JOB_COMPLETION_INDEX.
fn shard(args: &LoadArgs) -> anyhow::Result<Shard> {
    if let Some(count) = args.shard_from_job_index {
        let index = std::env::var("JOB_COMPLETION_INDEX").map_err(|_| {
            anyhow::anyhow!("--shard-from-job-index: JOB_COMPLETION_INDEX is not set (it is on a Kubernetes Indexed Job)")
        })?;
        let index: u32 = index.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "--shard-from-job-index: JOB_COMPLETION_INDEX {index:?} is not a whole number"
            )
        })?;
        return Shard::new(index, count)
            .map_err(|err| anyhow::anyhow!("--shard-from-job-index: {err}"));
    }
    Ok(args.shard.unwrap_or(Shard::WHOLE))
}

/// Longest wait --start-at accepts.
const MAX_START_WAIT: Duration = Duration::from_secs(24 * 3600);
/// Lateness under this is on time: process start-up and timer granularity.
const LATE_AFTER: Duration = Duration::from_millis(100);

/// How waiting for --start-at ended.
enum Waited {
    OnTime,
    Late(Duration),
    Interrupted,
}

/// Waits until `at` (wall clock); says so when it has already passed.
async fn wait_until(at: std::time::SystemTime) -> anyhow::Result<Waited> {
    let now = std::time::SystemTime::now();
    match at.duration_since(now) {
        Ok(wait) if wait > MAX_START_WAIT => Err(anyhow::anyhow!(
            "--start-at is {} s away: give a time within 24 h",
            wait.as_secs()
        )),
        Ok(wait) => {
            note!("waiting {:.1} s for the start time", wait.as_secs_f64());
            tokio::select! {
                () = tokio::time::sleep(wait) => Ok(Waited::OnTime),
                () = interrupted() => Ok(Waited::Interrupted),
            }
        }
        Err(past) if past.duration() > LATE_AFTER => {
            note!(
                "warning: started {:.3} s after --start-at: this shard is late (marked in its report)",
                past.duration().as_secs_f64()
            );
            Ok(Waited::Late(past.duration()))
        }
        Err(_) => Ok(Waited::OnTime),
    }
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM: Taurus treats both as an interruption.
pub(crate) async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The plan, or why there is none (with the warnings gathered before the error).
struct PlanFailure {
    error: anyhow::Error,
    warnings: Vec<String>,
}

impl<E: Into<anyhow::Error>> From<E> for PlanFailure {
    fn from(error: E) -> Self {
        Self {
            error: error.into(),
            warnings: Vec::new(),
        }
    }
}

fn plan(args: &LoadArgs) -> Result<Plan, PlanFailure> {
    let is_url = |t: &String| t.starts_with("http://") || t.starts_with("https://");
    let quick_flags = args.concurrency.is_some()
        || args.ramp_up.is_some()
        || args.hold_for.is_some()
        || args.iterations.is_some()
        || args.rate.is_some()
        || args.throughput.is_some()
        || !args.headers.is_empty()
        || args.body.is_some()
        || args.no_keepalive;
    if !args.targets.iter().any(is_url) {
        if quick_flags {
            Err(anyhow::anyhow!(
                "-c, --ramp-up, --hold-for, --rate and the other quick flags only apply to a URL; with config files use -o, e.g. -o execution.0.concurrency=50"
            ))?;
        }
        if let Some(target) = args
            .targets
            .iter()
            .find(|t| looks_like_url_without_scheme(t))
        {
            Err(anyhow::anyhow!(
                "cannot read {target}: no such file; to load-test a URL, give its scheme: http://{target}"
            ))?;
        }
        let files: Vec<PathBuf> = args.targets.iter().map(PathBuf::from).collect();
        return peregrine_load::read_plan(&files, &args.overrides).map_err(|rejected| {
            PlanFailure {
                error: rejected.error.into(),
                warnings: rejected.warnings,
            }
        });
    }
    let [url] = args.targets.as_slice() else {
        return Err(anyhow::anyhow!("give either one URL or config files, not both").into());
    };
    if !args.overrides.is_empty() {
        Err(anyhow::anyhow!(
            "-o applies to config files; for a URL use the quick flags (-c, --hold-for, …)"
        ))?;
    }
    let ramp_up = args.ramp_up.unwrap_or_default();
    let mut hold_for = args.hold_for.unwrap_or_default();
    if hold_for.is_zero() && ramp_up.is_zero() && args.iterations.is_none() {
        hold_for = QUICK_HOLD_FOR;
    }
    let timeout = args.timeout;
    let test = QuickTest {
        url: url.clone(),
        concurrency: args
            .concurrency
            .or((args.rate.is_none()).then_some(QUICK_USERS)),
        ramp_up,
        hold_for,
        iterations: args.iterations,
        timeout,
        rate: args.rate,
        throughput: args.throughput,
        headers: args.headers.clone(),
        method: args.method.clone(),
        body: args.body.clone(),
        keepalive: !args.no_keepalive,
    };
    Ok(peregrine_load::from_quick(&test)?)
}

/// A target that is no file and reads like `host:port/path` or `host/path`.
fn looks_like_url_without_scheme(target: &str) -> bool {
    let config_file = [".yml", ".yaml", ".json"]
        .iter()
        .any(|ext| target.to_ascii_lowercase().ends_with(ext));
    !config_file && !target.contains("://") && !std::path::Path::new(target).exists() && {
        let host = target.split('/').next().unwrap_or_default();
        host.contains(':') || host.contains('.') || host == "localhost"
    }
}
