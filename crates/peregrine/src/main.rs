//! The `peregrine` binary: parses the command line, sets up logging and the runtime, and
//! hands each subcommand to its function. All the work lives in the library crates.

mod capacity;
mod cli;
mod db;
mod demo;
mod health;
mod load;
mod out;
mod report;
mod serve;
mod telemetry;
mod tune;

use std::process::ExitCode;

use clap::Parser;
use peregrine_load::exit_code;

use crate::cli::{Cli, Command, DbCommand};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    // Commands that print their own results log only warnings unless RUST_LOG says otherwise.
    let default_level = match cli.command {
        Command::Serve(_) | Command::Db { .. } => "info",
        Command::Load(_)
        | Command::Report { .. }
        | Command::Demo(_)
        | Command::Tune(_)
        | Command::Health(_) => "warn",
    };
    telemetry::init(cli.log_format, default_level);
    for warning in cli::secrets_in_flags(std::env::args().skip(1)) {
        tracing::warn!("{warning}");
    }
    raise_open_file_limit();
    // `serve` runs one single-threaded runtime per worker thread, this one included; the
    // load generator starts threads of its own too.
    let single_threaded = matches!(cli.command, Command::Serve(_));
    let runtime = match build_runtime(single_threaded) {
        Ok(runtime) => runtime,
        Err(err) => return fail(&err),
    };
    let result = runtime.block_on(async {
        let done = match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Db { command } => match command {
                DbCommand::Init(args) => db::init(args).await,
                DbCommand::Seed(args) => db::seed(args).await,
            },
            Command::Tune(args) => tune::run(args).await,
            Command::Health(args) => health::run(args).await,
            Command::Load(args) => return load::run(args).await,
            Command::Report { command } => return report::run(command),
            Command::Demo(args) => return demo::run(args).await,
        };
        done.map(|()| exit_code::process(exit_code::OK))
    });
    result.unwrap_or_else(|err| fail(&err))
}

/// Raises the soft limit on open files to the hard one: every connection the server accepts
/// or the load generator opens is a file, and the usual soft limit of 1024 is far below
/// what either is built for.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(err) => tracing::warn!(error = %err, "cannot raise the open file limit"),
    }
}

fn build_runtime(single_threaded: bool) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = if single_threaded {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    Ok(builder.enable_all().build()?)
}

/// Prints a command-line error (or the help or version asked for). A usage error exits 1
/// in every subcommand (clap's own code is 2, which means "interrupted" here, as in Taurus).
fn usage_error(err: &clap::Error) -> ExitCode {
    let _ = err.print();
    if err.use_stderr() {
        exit_code::process(exit_code::TOOL_ERROR)
    } else {
        exit_code::process(exit_code::OK)
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    out::note!("error: {err:#}");
    exit_code::process(exit_code::TOOL_ERROR)
}
