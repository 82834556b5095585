//! The live view on a terminal, redrawn in place once a second (a block of lines under the
//! cursor, not a full-screen takeover, so the final stats follow it as usual), and the
//! plain line printed periodically when the output is a log rather than a terminal.
//! Like Taurus's console reporter: progress against the schedule, load, throughput,
//! current latency, errors, criteria and the busiest labels, at a glance.

use std::fmt::Write as _;
use std::io::Write as _;

use super::board::{Board, LabelRow, Now, Point, RECENT_SECONDS};
use crate::duration::format_clock;
use crate::totals::CriterionStatus;

/// Seconds of history the sparklines show.
const SPARK_SECONDS: usize = 40;
/// Labels listed under the figures.
const TOP_LABELS: usize = 5;
/// Widest frame drawn, whatever the terminal.
const MAX_WIDTH: usize = 110;

/// The lines of the live view for a terminal `width` columns wide.
pub fn frame(board: &Board, width: usize) -> Vec<String> {
    let snapshot = board.snapshot();
    let Some(now) = snapshot.now() else {
        return vec!["peregrine load: starting…".to_owned()];
    };
    let history: Vec<&Point> = snapshot.history().iter().collect();
    let width = width.clamp(40, MAX_WIDTH);
    let mut lines = vec![
        schedule_line(now, &board.meta().shard, width),
        load_line(now),
        latency_line(now),
        spark_line(&history, width),
        errors_line(now),
    ];
    if !now.criteria.is_empty() {
        lines.push(criteria_line(now));
    }
    lines.extend(label_lines(&now.labels, width));
    lines
        .into_iter()
        .map(|line| console::truncate_str(&line, width.saturating_sub(1), "…").into_owned())
        .collect()
}

/// `▕██████░░░░▏ 0:00:42 / 0:03:30, 2:48 left`: progress against the schedule.
fn schedule_line(now: &Now, shard: &str, width: usize) -> String {
    let elapsed = std::time::Duration::from_secs_f64(now.elapsed.max(0.0));
    let mut line = String::from("peregrine load ");
    if now.planned > 0.0 {
        let bar_width = (width / 4).clamp(10, 30);
        let done = ((now.elapsed / now.planned).clamp(0.0, 1.0) * bar_width as f64) as usize;
        let left = std::time::Duration::from_secs_f64((now.planned - now.elapsed).max(0.0));
        let _ = write!(
            line,
            "▕{}{}▏ {} / {}, {} left",
            "█".repeat(done),
            "░".repeat(bar_width - done),
            format_clock(elapsed),
            format_clock(std::time::Duration::from_secs_f64(now.planned)),
            format_clock(left)
        );
    } else {
        let _ = write!(
            line,
            "{} (until the iterations are done)",
            format_clock(elapsed)
        );
    }
    if shard != "0/1" {
        let _ = write!(line, "  shard {shard}");
    }
    line
}

/// Users, offered and achieved rate, counts since the start.
fn load_line(now: &Now) -> String {
    let mut line = format!("users {}", now.point.users);
    if let Some(offered) = now.point.offered {
        let _ = write!(line, " | offered {offered:.0}/s");
    }
    let failed = if now.requests > 0 {
        now.failures as f64 * 100.0 / now.requests as f64
    } else {
        0.0
    };
    let _ = write!(
        line,
        " | {} req/s | requests {} | failed {} ({failed:.2}%)",
        now.point.rps, now.requests, now.failures
    );
    line
}

fn latency_line(now: &Now) -> String {
    format!(
        "latency (last {RECENT_SECONDS} s): p50 {} | p90 {} | p99 {}",
        time(now.recent.p50),
        time(now.recent.p90),
        time(now.recent.p99)
    )
}

/// Sparklines of req/s and p99 over the last seconds.
fn spark_line(history: &[&Point], width: usize) -> String {
    let seconds = SPARK_SECONDS.min((width.saturating_sub(24)) / 2).max(5);
    let from = history.len().saturating_sub(seconds);
    let recent = &history[from..];
    let rps: Vec<f64> = recent.iter().map(|p| p.rps as f64).collect();
    let p99: Vec<f64> = recent.iter().map(|p| p.p99.unwrap_or(0.0)).collect();
    format!(
        "req/s {:<seconds$} p99 {}",
        sparkline(&rps),
        sparkline(&p99)
    )
}

/// One block character per value, scaled from zero to the largest.
pub fn sparkline(values: &[f64]) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let top = values.iter().copied().fold(0.0, f64::max);
    values
        .iter()
        .map(|v| {
            if top <= 0.0 {
                BLOCKS[0]
            } else {
                BLOCKS[((v / top) * 7.0).round().clamp(0.0, 7.0) as usize]
            }
        })
        .collect()
}

fn errors_line(now: &Now) -> String {
    if now.errors.is_empty() {
        return "errors: none".to_owned();
    }
    let kinds: Vec<String> = now
        .errors
        .iter()
        .map(|(kind, count)| format!("{kind} {count}"))
        .collect();
    format!(
        "errors: {} ({} in the last second)",
        kinds.join(", "),
        now.point.errors
    )
}

fn criteria_line(now: &Now) -> String {
    let states: Vec<String> = now
        .criteria
        .iter()
        .map(|c| {
            let status = match c.status {
                CriterionStatus::Watching => "ok so far".to_owned(),
                CriterionStatus::AtEnd => "checked at the end".to_owned(),
                CriterionStatus::Passed => "passed".to_owned(),
                CriterionStatus::Triggered | CriterionStatus::Failed => {
                    let word = if c.status == CriterionStatus::Failed {
                        "FAILED"
                    } else {
                        "triggered"
                    };
                    match c.at_second {
                        Some(at) => format!("{word} at {at}s"),
                        None => word.to_owned(),
                    }
                }
            };
            format!("{}: {status}", c.criterion)
        })
        .collect();
    format!("criteria: {}", states.join(" | "))
}

/// Columns the label table takes besides the label's.
const FIGURE_COLUMNS: usize = 59;

fn label_lines(rows: &[LabelRow], width: usize) -> Vec<String> {
    if rows.is_empty() {
        return Vec::new();
    }
    let name_width = rows
        .iter()
        .take(TOP_LABELS)
        .map(|r| console::measure_text_width(&r.label))
        .max()
        .unwrap_or(5)
        .clamp(5, 30)
        .min(width.saturating_sub(FIGURE_COLUMNS).max(5));
    let mut lines = vec![format!(
        "{:<name_width$} {:>7} {:>10} {:>8} {:>9} {:>9} {:>9}",
        "label", "req/s", "requests", "failed", "p50", "p90", "p99"
    )];
    for row in rows.iter().take(TOP_LABELS) {
        let name = console::truncate_str(&row.label, name_width, "…");
        lines.push(format!(
            "{:<name_width$} {:>7} {:>10} {:>8} {:>9} {:>9} {:>9}",
            console::pad_str(&name, name_width, console::Alignment::Left, None),
            row.rps,
            row.requests,
            row.failures,
            time(row.p50),
            time(row.p90),
            time(row.p99)
        ));
    }
    if rows.len() > TOP_LABELS {
        lines.push(format!("… and {} more labels", rows.len() - TOP_LABELS));
    }
    lines
}

/// A time in seconds as ms (or s above 10 s), `-` when unknown.
fn time(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".to_owned(),
        Some(s) if s >= 10.0 => format!("{s:.1} s"),
        Some(s) => {
            let ms = s * 1000.0;
            let decimals = if ms >= 100.0 {
                0
            } else if ms >= 10.0 {
                1
            } else {
                2
            };
            format!("{ms:.decimals$} ms")
        }
    }
}

/// The plain line for logs: `[   12s/210s] users 100 | 1234 req/s | p50 … p99 … | errors …`.
pub fn plain_line(board: &Board) -> Option<String> {
    let snapshot = board.snapshot();
    let now = snapshot.now()?;
    let total = if now.planned > 0.0 {
        format!("/{}s", now.planned as u64)
    } else {
        String::new()
    };
    let mut line = format!(
        "[{:>5}s{total}] users {} | {} req/s",
        now.elapsed as u64, now.point.users, now.point.rps
    );
    if let Some(offered) = now.point.offered {
        let _ = write!(line, " (offered {offered:.0})");
    }
    let _ = write!(
        line,
        " | p50 {} p90 {} p99 {} (last {RECENT_SECONDS} s) | requests {} | errors {}",
        time(now.recent.p50),
        time(now.recent.p90),
        time(now.recent.p99),
        now.requests,
        now.failures
    );
    if !now.errors.is_empty() {
        let kinds: Vec<String> = now.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = write!(line, " ({})", kinds.join(", "));
    }
    Some(line)
}

/// Draws frames on stdout in place of the previous one.
pub struct Drawer {
    drawn: usize,
}

impl Drawer {
    /// A drawer that has drawn nothing yet.
    pub fn new() -> Self {
        Self { drawn: 0 }
    }

    /// Replaces the previous frame with `lines`.
    pub fn draw(&mut self, lines: &[String]) {
        let mut out = self.erase_codes();
        for line in lines {
            out.push_str(line);
            out.push_str("\x1b[K\n");
        }
        self.drawn = lines.len();
        write_out(&out);
    }

    /// Erases the last frame, leaving the cursor where it started.
    pub fn clear(&mut self) {
        let out = self.erase_codes();
        self.drawn = 0;
        write_out(&out);
    }

    /// Moves to the first line of the last frame and clears to the end of the screen.
    fn erase_codes(&self) -> String {
        if self.drawn == 0 {
            String::new()
        } else {
            format!("\x1b[{}F\x1b[J", self.drawn)
        }
    }
}

impl Default for Drawer {
    fn default() -> Self {
        Self::new()
    }
}

fn write_out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    // A terminal that went away only loses the view; the run and its reports go on.
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// The terminal's width in columns (80 when it cannot be told).
pub fn terminal_width() -> usize {
    console::Term::stdout()
        .size_checked()
        .map_or(80, |(_, columns)| usize::from(columns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_to_the_largest_value() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0, 4.0]), "▁▃▅█");
        assert_eq!(sparkline(&[0.0, 0.0]), "▁▁");
    }

    #[test]
    fn times_read_in_ms_or_s() {
        assert_eq!(time(Some(0.00123)), "1.23 ms");
        assert_eq!(time(Some(0.25)), "250 ms");
        assert_eq!(time(Some(12.0)), "12.0 s");
        assert_eq!(time(None), "-");
    }
}
