//! `peregrine demo`: the tutorial's story, measured here. The API runs in-process on a free
//! port with 1 worker, then with all cores; the tutorial's load test runs at 100 and 500
//! users against each; the results are set beside the tutorial's published figures. Then
//! it answers the tutorial's real question, how many requests per second each setup takes
//! within p99 < 100 ms, with the capacity search.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use peregrine_api::{ApiSettings, Limits, ServeConfig};
use peregrine_load::capacity::{self, Capacity, Slo};
use peregrine_load::report::progress_line;
use peregrine_load::{Report, exit_code};
use peregrine_store::{DatabaseUrl, PostgresAdmin, Serving, StoreHub};
use tokio::sync::{oneshot, watch};

use crate::cli::DemoArgs;
use crate::out::{note, say};
use crate::{db, tune};

/// The tutorial's Taurus config, run as it is with its placeholder URL overridden.
const TUTORIAL_CONFIG: &str = include_str!("../../../examples/bzt-config.yml");
/// Users the tutorial seeds.
const SEED_USERS: u64 = 20;
/// The tutorial's two load levels.
const USER_LEVELS: [u32; 2] = [100, 500];
const SHORT_RAMP_UP: Duration = Duration::from_secs(5);
const SHORT_HOLD_FOR: Duration = Duration::from_secs(10);
const FULL_RAMP_UP: Duration = Duration::from_secs(60);
const FULL_HOLD_FOR: Duration = Duration::from_secs(150);
/// Database connections of each worker of the demo's API: `serve`'s default for the URL's
/// kind of database, so that the demo measures what `serve` runs.
fn demo_connections(url: &DatabaseUrl) -> usize {
    crate::cli::default_pool_size(url)
}

/// The SLO the demo's capacity search holds each setup to.
const DEMO_SLO: [&str; 2] = ["p99<100ms", "errors<1%"];
/// The capacity search's first rate: under the tutorial's ~1000 req/s, so the answer is
/// bracketed from below.
const DEMO_START_RATE: f64 = 400.0;
/// Short steps: the demo's search is a first answer, `load --find-capacity` the careful one.
const DEMO_WARM_UP: Duration = Duration::from_millis(500);
const DEMO_STEP: Duration = Duration::from_millis(1500);
const DEMO_TOLERANCE: f64 = 0.10;

/// The capacity search's answer for one setup.
struct CapacityRow {
    workers: usize,
    capacity: Capacity,
}

/// What the story measured.
#[derive(Default)]
struct Measured {
    rows: Vec<Row>,
    capacities: Vec<CapacityRow>,
}

/// One measured run: a row of the final table.
struct Row {
    users: u32,
    workers: usize,
    report: Report,
    html: PathBuf,
}

/// Runs the demo; exit code 2 when interrupted (with the partial table).
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let (ramp_up, hold_for) = if args.full {
        (FULL_RAMP_UP, FULL_HOLD_FOR)
    } else {
        (
            args.ramp_up.unwrap_or(SHORT_RAMP_UP),
            args.hold_for.unwrap_or(SHORT_HOLD_FOR),
        )
    };
    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir.clone()
        }
        None => tempfile::Builder::new()
            .prefix("peregrine-demo-")
            .tempdir()?
            .keep(),
    };
    let interrupted = watch_ctrl_c();
    let database = Database::prepare(args.database_url.as_deref(), &dir).await?;
    let budget = args.capacity_for;
    let durations = (ramp_up, hold_for, budget);
    let result = tell_the_story(&database, &dir, durations, interrupted.clone()).await;
    database.clean_up().await;
    let Measured { rows, capacities } = result?;
    print_table(&rows);
    print_capacities(&capacities);
    if let Some(url) = &args.database_url {
        say!("\nPgTune's recommendations for this host (peregrine tune --detect):\n");
        match tune::detected_conf_text(Some(url)).await {
            Ok(text) => say!("{text}"),
            Err(err) => say!("(cannot compute them: {err:#})"),
        }
    }
    say!("\nHTML reports:");
    for row in &rows {
        say!(
            "  {} users, {} worker(s): {}",
            row.users,
            row.workers,
            row.html.display()
        );
    }
    if *interrupted.borrow() {
        note!("interrupted: the table above is partial");
        return Ok(exit_code::process(exit_code::INTERRUPTED));
    }
    Ok(exit_code::process(exit_code::OK))
}

/// `durations`: each load run's ramp-up and hold, and each capacity search's budget (zero:
/// no search).
async fn tell_the_story(
    database: &Database,
    dir: &Path,
    durations: (Duration, Duration, Duration),
    interrupted: watch::Receiver<bool>,
) -> anyhow::Result<Measured> {
    let (ramp_up, hold_for, budget) = durations;
    let searches = if budget.is_zero() { 0 } else { 2 };
    let steps = 2 + 2 * USER_LEVELS.len() + searches;
    let mut step = 0;
    let mut announce = |text: String| {
        step += 1;
        say!("[{step}/{steps}] {text}");
    };
    announce(format!("schema: table orguser in {}", database.description));
    let store = db::open_url(
        &database.url,
        demo_connections(&database.url),
        Duration::from_secs(10),
    )
    .await?;
    announce(format!("{SEED_USERS} users, named like the tutorial's"));
    let existing = store.count().await?;
    if existing < SEED_USERS {
        db::add_users(&store, SEED_USERS - existing).await?;
    }
    drop(store);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut measured = Measured::default();
    for workers in [1, cores] {
        let server = InProcessServer::start(&database.url, workers).await?;
        for users in USER_LEVELS {
            if *interrupted.borrow() {
                return Ok(measured);
            }
            announce(format!(
                "load: GET /users/ at {users} users (ramp-up {}, hold {}), API on http://{} with {workers} worker(s)",
                humantime::format_duration(ramp_up),
                humantime::format_duration(hold_for),
                server.address
            ));
            let report = load(
                server.address,
                users,
                ramp_up,
                hold_for,
                interrupted.clone(),
            )
            .await?;
            let reports = dir.join(format!("report-{users}-users-{workers}-workers"));
            report.write_dir(&reports)?;
            measured.rows.push(Row {
                users,
                workers,
                report,
                html: reports.join("report.html"),
            });
        }
        if searches > 0 && !*interrupted.borrow() {
            announce(format!(
                "capacity: the highest rate of GET /users/ within {} with {workers} worker(s), steps of {} (at most {})",
                DEMO_SLO.join(", "),
                humantime::format_duration(DEMO_STEP),
                humantime::format_duration(budget)
            ));
            let capacity = find_capacity(server.address, budget, interrupted.clone()).await?;
            if capacity.outcome != capacity::Outcome::Interrupted {
                measured.capacities.push(CapacityRow { workers, capacity });
            }
        }
        server.stop().await;
    }
    Ok(measured)
}

/// The capacity search on the tutorial's request, within `budget`.
async fn find_capacity(
    address: SocketAddr,
    budget: Duration,
    interrupted: watch::Receiver<bool>,
) -> anyhow::Result<Capacity> {
    let overrides = [format!(
        "execution.0.scenario.requests.0.url=http://{address}/users/"
    )];
    let plan =
        peregrine_load::plan_from_str("examples/bzt-config.yml", TUTORIAL_CONFIG, &overrides)?;
    let terms = DEMO_SLO
        .iter()
        .map(|t| capacity::slo::parse(t).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let options = capacity::Options {
        slo: Some(Slo { terms }),
        tolerance: DEMO_TOLERANCE,
        start_rate: DEMO_START_RATE,
        warm_up: DEMO_WARM_UP,
        step: DEMO_STEP,
        max_duration: budget,
        connections: None,
    };
    let search = capacity::find(&plan, &options, interrupted, |step| {
        println!("      {}", step.line());
    })
    .await;
    Ok(search.capacity)
}

/// The capacity of each setup beside the tutorial's figure.
fn print_capacities(capacities: &[CapacityRow]) {
    if capacities.is_empty() {
        return;
    }
    println!(
        "\nCapacity within {} (GET /users/, open model, latency from when each request was due):\n",
        DEMO_SLO.join(", ")
    );
    for row in capacities {
        let tutorial = if row.workers == 1 {
            "tutorial: ~1000 req/s (1 gunicorn worker, 100 users, ~100 ms avg)"
        } else {
            "tutorial: ~1500 req/s (20 gunicorn workers, 500 users, 270 ms avg, some errors)"
        };
        println!(
            "{:>2} worker(s): {}  ({} steps in {:.0} s)\n              {tutorial}",
            row.workers,
            row.capacity.answer(),
            row.capacity.steps.len(),
            row.capacity.seconds
        );
    }
}

async fn load(
    address: SocketAddr,
    users: u32,
    ramp_up: Duration,
    hold_for: Duration,
    mut interrupted: watch::Receiver<bool>,
) -> anyhow::Result<Report> {
    let overrides = [
        format!("execution.0.scenario.requests.0.url=http://{address}/users/"),
        format!("execution.0.concurrency={users}"),
        format!("execution.0.ramp-up={}ms", ramp_up.as_millis()),
        format!("execution.0.hold-for={}ms", hold_for.as_millis()),
    ];
    let plan =
        peregrine_load::plan_from_str("examples/bzt-config.yml", TUTORIAL_CONFIG, &overrides)?;
    let stop = async move {
        let _ = interrupted.wait_for(|stop| *stop).await;
    };
    let show = std::io::IsTerminal::is_terminal(&std::io::stderr());
    Ok(peregrine_load::run(&plan, stop, |progress| {
        if show {
            note!("{}", progress_line(progress));
        }
    })
    .await)
}

/// Where the demo's rows live, and how to remove them afterwards.
struct Database {
    url: DatabaseUrl,
    description: String,
    /// PostgreSQL: the server (at the user's database) and the demo database to drop.
    created: Option<(PostgresAdmin, String)>,
}

impl Database {
    async fn prepare(url: Option<&str>, dir: &Path) -> anyhow::Result<Self> {
        let Some(url) = url else {
            let path = dir.join("demo.db");
            return Ok(Self {
                description: format!("a new SQLite file, {}", path.display()),
                url: DatabaseUrl::Sqlite(path),
                created: None,
            });
        };
        let given: DatabaseUrl = url.parse().context("--database-url")?;
        let DatabaseUrl::Postgres(config) = &given else {
            bail!("--database-url: the demo takes a postgres:// URL (without one it uses SQLite)");
        };
        let name = format!("peregrine_demo_{}", std::process::id());
        let server = PostgresAdmin::new((**config).clone());
        server.create_database(&name).await.with_context(|| {
            format!("cannot create the demo database {name} on {given}: the demo never touches existing rows, so it needs CREATE DATABASE")
        })?;
        let url = given.with_database(&name).context("a PostgreSQL URL")?;
        Ok(Self {
            description: format!(
                "a fresh PostgreSQL database, {url} (dropped at the end; existing databases are not touched)"
            ),
            url,
            created: Some((server, name)),
        })
    }

    async fn clean_up(&self) {
        if let Some((server, name)) = &self.created
            && let Err(err) = server.drop_database(name).await
        {
            note!("warning: cannot drop the demo database {name}: {err}");
        }
    }
}

/// The API on `workers` threads through the same entry point as `peregrine serve`
/// ([`peregrine_api::bind`]): thread-per-core, each worker with its own connections.
struct InProcessServer {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    finished: oneshot::Receiver<()>,
}

impl InProcessServer {
    async fn start(url: &DatabaseUrl, workers: usize) -> anyhow::Result<Self> {
        let (ready_tx, ready) = oneshot::channel::<anyhow::Result<SocketAddr>>();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (finished_tx, finished) = oneshot::channel::<()>();
        let url = url.clone();
        // The first worker runs on a single-threaded runtime of its own, as in `serve`.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("peregrine-demo-api".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // The hub makes each worker's store, as in `serve`.
                    let hub = StoreHub::new(
                        url.clone(),
                        Serving::new(demo_connections(&url), peregrine_store::DEFAULT_DB_TIMEOUT),
                    );
                    if let Err(err) = hub.open().and_then(|store| hub.first_worker(store)) {
                        let _ = ready_tx.send(Err(err.into()));
                        return;
                    }
                    let config = ServeConfig {
                        bind: ([127, 0, 0, 1], 0).into(),
                        workers,
                        limits: Limits::default(),
                        shutdown_grace: Duration::ZERO,
                        shutdown_timeout: Duration::from_secs(5),
                        metrics_bind: None,
                        access_log: false,
                    };
                    let bound = match peregrine_api::bind(config)
                        .map_err(anyhow::Error::from)
                        .and_then(|b| {
                            let address = b.local_addr()?;
                            Ok((b, address))
                        }) {
                        Ok(bound) => bound,
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                            return;
                        }
                    };
                    let (bound, address) = bound;
                    let _ = ready_tx.send(Ok(address));
                    let make_app = |worker| {
                        Ok(peregrine_api::app(
                            hub.worker_store(worker)?,
                            ApiSettings::default(),
                        ))
                    };
                    let shutdown = async {
                        let _ = stop_rx.await;
                    };
                    if let Err(err) = bound.serve(make_app, shutdown).await {
                        note!("warning: the demo API failed: {err}");
                    }
                    let _ = finished_tx.send(());
                });
            })?;
        let address = tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .context("the demo API did not start within 30 s")?
            .context("the demo API thread stopped")??;
        Ok(Self {
            address,
            stop,
            finished,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.finished).await;
    }
}

/// A flag set on the first Ctrl-C.
fn watch_ctrl_c() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(true);
        }
    });
    rx
}

/// The tutorial's published figures for a row, when it published any.
fn tutorial_figures(users: u32, workers: usize) -> &'static str {
    match (users, workers) {
        (100, 1) => "0 % errors, ~100 ms avg, ~1000 req/s (1 gunicorn worker)",
        (500, 1) => "~40 % errors (1 gunicorn worker)",
        (500, _) => "some errors, 270 ms avg, ~1500 req/s (20 gunicorn workers)",
        _ => "-",
    }
}

fn print_table(rows: &[Row]) {
    say!("\nResults (GET /users/, 20 users in the table, timeout 3 s):\n");
    say!(
        "{:>5} {:>7} {:>9} {:>7} {:>9} {:>9} {:>11}  tutorial (Falcon + gunicorn)",
        "users",
        "workers",
        "samples",
        "errors",
        "avg",
        "p99",
        "throughput"
    );
    for row in rows {
        let o = &row.report.overall;
        let p99 = o.percentile(99.0).unwrap_or(0.0);
        say!(
            "{:>5} {:>7} {:>9} {:>6.2}% {:>6.1} ms {:>6.1} ms {:>7.0} r/s  {}",
            row.users,
            row.workers,
            o.samples,
            o.failure_percent,
            o.avg_rt * 1000.0,
            p99 * 1000.0,
            o.throughput,
            tutorial_figures(row.users, row.workers)
        );
    }
}
