//! The exit codes of every `peregrine` subcommand, one convention as Taurus's (the table in
//! docs/exit-codes.md): 0 ok, 1 an error (a usage error too), 2 interrupted, 3 a check
//! failed. Every subcommand takes its codes from here.

use std::process::ExitCode;

/// The work was done: the test ran and no criterion failed, the server stopped cleanly, the
/// health check answered 2xx…
pub const OK: i32 = 0;
/// An error: a usage error (unknown flag, bad value), a bad config, an unreachable target,
/// an unwritable report, a server that dropped requests on shutdown, a failed health check.
pub const TOOL_ERROR: i32 = 1;
/// Ctrl-C or SIGTERM stopped the work early (`load`, `demo`); what was measured is partial.
pub const INTERRUPTED: i32 = 2;
/// A check failed: a pass/fail criterion, a `report compare` limit, a `report merge`
/// criterion on the merged figures.
pub const CRITERIA_FAILED: i32 = 3;

/// `code` as the process's exit code (an out-of-range code is an error, 1).
pub fn process(code: i32) -> ExitCode {
    u8::try_from(code).map_or(ExitCode::FAILURE, ExitCode::from)
}
