//! `peregrine report merge|compare`: the shards of one plan as one report, and two runs
//! side by side.

use std::path::Path;
use std::process::ExitCode;

use peregrine_load::exit_code;
use peregrine_load::report::compare::{CompareInput, Thresholds, compare};
use peregrine_load::report::final_stats_of;
use peregrine_load::report::merge::{evaluate_criteria, merge_dirs};

use crate::cli::{CompareArgs, MergeArgs, ReportCommand};
use crate::out::note;

/// Runs `peregrine report …`.
pub fn run(command: ReportCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReportCommand::Merge(args) => merge(&args),
        ReportCommand::Compare(args) => compare_dirs(&args),
    }
}

fn merge(args: &MergeArgs) -> anyhow::Result<ExitCode> {
    let mut merged = merge_dirs(&args.shards)?;
    let mut failed = false;
    let mut plan = None;
    if let Some(first) = args.config.first() {
        let config = peregrine_load::read_plan(&args.config, &args.overrides)?;
        // The verdicts are printed once, with the final stats below.
        let outcomes = evaluate_criteria(&mut merged, &config, first)?;
        failed = outcomes.iter().any(|o| o.failed);
        plan = Some(config);
    }
    let report = merged;
    let parts = plan
        .as_ref()
        .map(|plan| plan.outputs.final_stats)
        .unwrap_or_default();
    crate::out::stdout(&final_stats_of(&report, parts));
    // The outputs the config's reporting section asks for (dump-csv, dump-xml, junit-xml),
    // as `peregrine load` writes them.
    let mut written = match &plan {
        Some(plan) => report.write_configured(plan)?,
        None => Vec::new(),
    };
    written.extend(report.write_dir(&args.out)?);
    for path in written {
        note!("wrote {}", path.display());
    }
    if failed {
        return Ok(exit_code::process(exit_code::CRITERIA_FAILED));
    }
    Ok(exit_code::process(exit_code::OK))
}

fn read_report(dir: &Path) -> anyhow::Result<CompareInput> {
    CompareInput::read(&dir.join("report.json")).map_err(anyhow::Error::msg)
}

fn compare_dirs(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let (base, new) = (read_report(&args.base)?, read_report(&args.new)?);
    let fraction = |p: Option<f64>| p.map(|p| p / 100.0);
    let limits = Thresholds {
        noise_relative: args.noise / 100.0,
        noise_micros: args.noise_floor.as_secs_f64() * 1e6,
        max_regression: [
            fraction(args.max_p50_regression),
            fraction(args.max_p90_regression),
            fraction(args.max_p99_regression),
        ],
        max_error_rate_increase: args.max_error_rate_increase,
    };
    let comparison = compare(&base, &new, &limits).map_err(anyhow::Error::msg)?;
    crate::out::stdout(&comparison.text);
    if comparison.failures.is_empty() {
        return Ok(exit_code::process(exit_code::OK));
    }
    for failure in &comparison.failures {
        note!("regression: {failure}");
    }
    Ok(exit_code::process(exit_code::CRITERIA_FAILED))
}
