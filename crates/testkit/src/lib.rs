//! Test support for Peregrine: private PostgreSQL clusters that tests start and stop
//! themselves (a copy of one initdb template in a temp dir, a free port, the socket in that dir; optionally with
//! TLS and a CA made for it), fresh databases
//! in them, streaming replicas of them, PgBouncer in front of them, HAProxy in front of HTTP
//! servers, tiny HTTP servers for the load generator's tests, servers of known capacity for
//! its capacity search, headless Chromium for the pages ([`chromium`]); and the module rule
//! every crate's test checks (no module imports one that imports it back:
//! [`module_cycles`]). A dev-dependency only.

mod app;
mod busy;
pub mod chromium;
mod haproxy;
mod http;
pub mod module_cycles;
mod pgbouncer;
mod postgres;
pub mod quiet;
mod tls;

pub use app::{LoginApp, Recorded};
pub use busy::BusyServer;
pub use haproxy::HaProxy;
pub use http::{Behavior, TinyServer};
pub use pgbouncer::PgBouncer;
pub use postgres::{PgCluster, TLS_PASSWORD, TLS_USER, connect, free_port, wait_for_a_lock_waiter};
