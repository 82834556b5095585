//! PgTune's PostgreSQL configuration recommendations as pure functions: validate a
//! [`TuneInput`], [`recommend`] settings, render PgTune's exact texts (with any value
//! PostgreSQL would refuse clamped into its range, and said). No I/O; the CLI
//! gathers the inputs (flags or `--detect`) and prints.

mod input;
mod limits;
mod recommend;
mod render;

pub use input::{
    DataSize, DbType, InputError, MAX_COUNT, MAX_MEMORY_AMOUNT, MIN_CONNECTIONS, Memory,
    MemoryUnit, Os, Storage, TuneInput, VERSIONS,
};
pub use limits::Clamp;
pub use recommend::{Recommendation, Setting, Value, recommend};
