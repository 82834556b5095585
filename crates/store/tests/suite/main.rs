//! The store's integration tests on real SQLite files and a real PostgreSQL, one binary with a
//! module per subject so the crate links its tests once.

mod connect;
mod contract;
mod deadline;
mod footprint;
mod topology;
