//! Watching a run while it runs: a view on the terminal redrawn each second (or plain lines
//! in a log), a live web dashboard with server-sent events, and Prometheus metrics. All of it
//! is fed by the engine's per-second [`Progress`] (no work per request): the [`Board`] keeps
//! what the views show, each view reads it.

mod board;
mod dashboard;
pub mod metrics;
pub mod terminal;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use crate::totals::{
    BUCKETS_MICROS, CriterionState, CriterionStatus, KindCount, LabelTotals, Totals,
};
pub use board::{Board, End, LabelRow, Now, Point, kind_name, offered_rate};
pub use dashboard::Dashboard;

use crate::engine::Progress;
use crate::plan::Plan;
use crate::report::Report;

/// What the console shows while the run runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// Nothing.
    Off,
    /// The live view, redrawn in place on stdout (a terminal).
    View,
    /// A plain line on stderr every so often.
    Lines(Duration),
}

/// How a run is watched.
#[derive(Debug, Clone)]
pub struct Options {
    /// The console's part.
    pub console: Console,
    /// Serve the dashboard and `/metrics` here.
    pub dashboard: Option<SocketAddr>,
    /// Keep serving the dashboard this long after the run has ended.
    pub keep: Duration,
}

/// The live views of one run.
pub struct Live {
    board: Arc<Board>,
    console: Console,
    /// The second of the last plain line (0 at the start: the first comes one period in).
    last_line: u64,
    terminal: Option<std::thread::JoinHandle<()>>,
    dashboard: Option<Dashboard>,
    keep: Duration,
}

impl Live {
    /// Starts the views `options` ask for on `plan`; the dashboard's address must be free.
    pub async fn start(plan: &Plan, options: &Options) -> std::io::Result<Self> {
        let board = Arc::new(Board::new(plan));
        let dashboard = match options.dashboard {
            Some(address) => Some(Dashboard::start(Arc::clone(&board), address).await?),
            None => None,
        };
        let terminal =
            (options.console == Console::View).then(|| draw_terminal(Arc::clone(&board)));
        Ok(Self {
            board,
            console: options.console,
            last_line: 0,
            terminal,
            dashboard,
            keep: options.keep,
        })
    }

    /// Where the dashboard listens.
    pub fn dashboard_address(&self) -> Option<SocketAddr> {
        self.dashboard.as_ref().map(Dashboard::address)
    }

    /// The shared state the views read.
    pub fn board(&self) -> &Arc<Board> {
        &self.board
    }

    /// Takes in one second of the run (the engine's progress callback).
    pub fn update(&mut self, progress: &Progress) {
        self.board.update(progress);
        if let Console::Lines(every) = self.console {
            let second = progress.elapsed.as_secs();
            let due = second >= self.last_line + every.as_secs().max(1);
            if due && let Some(line) = terminal::plain_line(&self.board) {
                self.last_line = second;
                eprintln!("{line}");
            }
        }
    }

    /// The run has ended with `report` (`totals` are its final counts): the terminal view
    /// is erased, the dashboard shows the verdict and serves the report.
    pub async fn end(&mut self, totals: Totals, report: &Report) {
        self.board.finish(totals, report);
        if let Some(terminal) = self.terminal.take() {
            let _ = tokio::task::spawn_blocking(move || terminal.join()).await;
        }
    }

    /// Keeps the dashboard up for the time asked (or until `interrupt`), then closes it.
    pub async fn close(self, interrupt: impl Future<Output = ()>) {
        let Some(dashboard) = self.dashboard else {
            return;
        };
        if !self.keep.is_zero() {
            eprintln!(
                "dashboard: still serving http://{}/ for {} s (Ctrl-C to stop)",
                dashboard.address(),
                self.keep.as_secs()
            );
            tokio::select! {
                () = tokio::time::sleep(self.keep) => {}
                () = interrupt => {}
            }
        }
        dashboard.close().await;
    }
}

/// Redraws the terminal view on each change, from a thread of its own so that a slow
/// terminal never holds up the engine; erases it when the run has ended.
fn draw_terminal(board: Arc<Board>) -> std::thread::JoinHandle<()> {
    let runtime = tokio::runtime::Handle::current();
    let mut changes = board.subscribe();
    std::thread::spawn(move || {
        // Nothing is drawn before the first second, so that what is printed before the run
        // starts (the dashboard's address, warnings) stays above the view.
        let mut drawer = terminal::Drawer::new();
        while runtime.block_on(changes.changed()).is_ok() {
            if board.snapshot().end().is_some() {
                break;
            }
            drawer.draw(&terminal::frame(&board, terminal::terminal_width()));
        }
        drawer.clear();
    })
}
