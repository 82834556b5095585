//! The binary's tests, run as a user runs it, one test binary with a module per subject so
//! the crate links its tests once: what the repository's pages say (`as_written`), the
//! subcommands (`cli`), hostile input (`hostile_inputs`), the live view (`live`), `load` and
//! its capacity search (`load_cli`), sharded runs (`shards`), how runs stop (`stops`) and a
//! served topology behind HAProxy (`topology`).

mod as_written;
mod cli;
mod hostile_inputs;
mod live;
mod load_cli;
mod shards;
mod stops;
mod topology;
