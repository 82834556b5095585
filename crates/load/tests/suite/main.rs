//! The load generator's integration tests against real servers on 127.0.0.1, one binary with a
//! module per subject so the crate links its tests once. (`many_labels` is a binary of its own:
//! its throughput decides how many labels it reaches, so under `cargo test` nothing may run
//! beside it.)

mod capacity;
mod config_files;
mod hostile;
mod https;
mod jmx;
mod limits;
mod load;
mod taurus_corpus;
mod taurus_logic;
