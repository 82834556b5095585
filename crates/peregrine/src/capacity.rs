//! `peregrine load TARGET --find-capacity`: runs the capacity search on the plan `load`
//! built, prints a line per step and the answer, and writes the report of the step at the
//! capacity with the search attached.

use std::process::ExitCode;

use peregrine_load::Plan;
use peregrine_load::capacity::{self, Options, Slo, Step};
use tokio::sync::watch;

use crate::cli::LoadArgs;

/// The search's options from the command line.
pub fn options(args: &LoadArgs) -> Options {
    let flags = &args.capacity;
    Options {
        slo: (!flags.slo.is_empty()).then(|| Slo {
            terms: flags.slo.clone(),
        }),
        tolerance: flags.capacity_tolerance,
        start_rate: flags.start_rate,
        warm_up: flags.warm_up,
        step: flags.step_duration,
        max_duration: flags.max_duration,
        connections: args.concurrency,
    }
}

/// Runs the search; exit 0 with a capacity, 3 when even the lowest step broke, 1 when the
/// generator was the limit or a step could not run, 2 when interrupted.
pub async fn run(plan: &Plan, args: &LoadArgs) -> anyhow::Result<ExitCode> {
    let options = options(args);
    if options.warm_up + options.step > options.max_duration {
        anyhow::bail!(
            "--max-duration {} leaves no time for one step (--warm-up {} + --step-duration {})",
            humantime::format_duration(options.max_duration),
            humantime::format_duration(options.warm_up),
            humantime::format_duration(options.step)
        );
    }
    println!(
        "Capacity search: steps of {} (+{} warm-up) from {} req/s, doubling then bisecting to {}%, at most {}",
        humantime::format_duration(options.step),
        humantime::format_duration(options.warm_up),
        capacity::rate_text(options.start_rate),
        options.tolerance * 100.0,
        humantime::format_duration(options.max_duration),
    );
    let mut number = 0;
    let search = capacity::find(plan, &options, interrupt_flag(), |step: &Step| {
        number += 1;
        println!("step {number:>2}  {}", step.line());
    })
    .await;
    let answer = &search.capacity;
    println!("{}", answer.answer());
    println!("({} steps in {:.0} s)", answer.steps.len(), answer.seconds);
    if let (Some(dir), Some(report)) = (&args.report, &search.report) {
        for path in report.write_dir(dir)? {
            eprintln!("wrote {}", path.display());
        }
    }
    let code = answer.exit_code();
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// A flag set on Ctrl-C or SIGTERM, as `load` treats both.
fn interrupt_flag() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        crate::load::interrupted().await;
        let _ = tx.send(true);
    });
    rx
}
