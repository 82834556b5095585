//! The API's integration tests, one binary with a module per subject so the crate links its
//! tests once: the routes and their errors (`api`), each backend behind them (`database`),
//! failing and slow parts (`faults`), the connection front (`front`), operating a server
//! (`operating`). `common` serves an app in this process.

mod api;
mod common;
mod database;
mod faults;
mod front;
mod operating;
