//! The binary's tests, run as a user runs it, one test binary with a module per subject so
//! the crate links its tests once; `harness` runs and serves the binary for all of them.
//! What the repository's pages say (`as_written`); serving (`serve`, `shutdown`,
//! `durability`, `db`, `outages`, `floods`); `tune`, `demo`, and what every subcommand
//! shares (`commands`); hostile input (`hostile_inputs`), the live view (`live`), `load` and
//! its capacity search (`load_cli`), sharded runs (`shards`), how runs stop (`stops`) and a
//! served topology behind HAProxy (`topology`).

mod as_written;
mod commands;
mod db;
mod demo;
mod durability;
mod floods;
mod harness;
mod hostile_inputs;
mod live;
mod load_cli;
mod outages;
mod serve;
mod shards;
mod shutdown;
mod stops;
mod topology;
mod tune;
