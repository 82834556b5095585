//! Test support for Peregrine: private PostgreSQL clusters that tests start and stop
//! themselves (initdb into a temp dir, a free port, the socket in that dir), and fresh
//! databases in them. A dev-dependency only.

mod postgres;

pub use postgres::{PgCluster, connect};
