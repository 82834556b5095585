//! Inline SVG charts for `report.html`: lines over time and a histogram's bars, with axes
//! ticked in round steps (1, 2 or 5 × 10^n) and numbers grouped in thousands. This file
//! computes the geometry; the markup is in the askama templates under `templates/report/chart/`.
//!
//! The grouping ([`thousands`], [`format_number`]) is hand-written: it groups the whole part
//! of a number with the decimals its axis step needs, which indicatif's `HumanCount` (whole
//! numbers) and `HumanFloatCount` (its own decimals) do not do, and this crate would
//! otherwise not depend on a progress-bar crate.

use std::fmt;

use askama::Template;
use askama::filters::HtmlSafe;

use crate::report::describe::{HistogramBin, nice_step};

/// A chart's size and margins, shared by every chart of the report (the capacity section's
/// too), in SVG user units.
pub(crate) const WIDTH: f64 = 860.0;
pub(crate) const HEIGHT: f64 = 240.0;
pub(crate) const LEFT: f64 = 72.0;
pub(crate) const RIGHT: f64 = 16.0;
pub(crate) const TOP: f64 = 12.0;
pub(crate) const BOTTOM: f64 = 36.0;

/// The same, as the templates draw with them: the whole chart's size and the plot area's
/// edges.
pub(crate) struct Frame {
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
}

/// [`Frame`] of every chart.
pub(crate) const FRAME: Frame = Frame {
    width: WIDTH,
    height: HEIGHT,
    left: LEFT,
    right: WIDTH - RIGHT,
    top: TOP,
    bottom: HEIGHT - BOTTOM,
};

/// Ticks wanted on an axis, about.
const Y_TICKS: f64 = 5.0;
const X_TICKS: f64 = 8.0;

/// Colours for series, in order (a series past the tenth reuses them).
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// One line: a value per second, `None` where there is nothing to draw (no samples).
pub struct Line {
    /// Shown in the legend.
    pub name: String,
    /// Stroke colour.
    pub color: &'static str,
    /// `(second, value)`; the value is drawn at the middle of its second.
    pub points: Vec<(u64, Option<f64>)>,
}

/// A figure of lines over time: the `report/chart/lines.html` template.
#[derive(Template)]
#[template(path = "report/chart/lines.html")]
pub struct LineChart {
    id: String,
    title: String,
    grid: Grid,
    marks: Vec<Mark>,
    legend: Vec<LegendItem>,
}

/// One unbroken run of a line's points: a dot when it is a single point.
struct Mark {
    name: String,
    color: &'static str,
    shape: Shape,
}

enum Shape {
    Dot(Px, Px),
    Path(Vec<Point>),
}

struct LegendItem {
    name: String,
    color: &'static str,
}

/// The figure of `lines` over `seconds` seconds, values in `unit`.
pub fn lines(id: &str, title: &str, unit: &str, seconds: u64, lines: &[Line]) -> LineChart {
    let top_value = lines
        .iter()
        .flat_map(|l| l.points.iter().filter_map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let y_axis = Axis::new(top_value, Y_TICKS);
    // Whole seconds: a tick between two points would mark no measurement.
    let x_axis = Axis::new(seconds.max(1) as f64, X_TICKS).at_least(1.0);
    let plot = Plot {
        x: x_axis,
        y: y_axis,
    };
    let marks = lines
        .iter()
        .flat_map(|line| {
            line.points
                .split(|p| p.1.is_none())
                .filter_map(|segment| mark(&plot, line, segment))
                .collect::<Vec<_>>()
        })
        .collect();
    LineChart {
        id: id.to_owned(),
        title: title.to_owned(),
        grid: plot.grid(unit, " s"),
        marks,
        legend: lines
            .iter()
            .map(|l| LegendItem {
                name: l.name.clone(),
                color: l.color,
            })
            .collect(),
    }
}

/// The mark of one segment of `line` (points without a gap), none for an empty one.
fn mark(plot: &Plot, line: &Line, segment: &[(u64, Option<f64>)]) -> Option<Mark> {
    let points: Vec<Point> = segment
        .iter()
        .filter_map(|&(s, v)| Some(Point(plot.px(s as f64 + 0.5), plot.py(v?))))
        .collect();
    let shape = match points.as_slice() {
        [] => return None,
        [Point(x, y)] => Shape::Dot(Px(*x), Px(*y)),
        _ => Shape::Path(points),
    };
    Some(Mark {
        name: line.name.clone(),
        color: line.color,
        shape,
    })
}

/// The histogram of response times: the `report/chart/histogram.html` template.
#[derive(Template)]
#[template(path = "report/chart/histogram.html")]
pub struct HistogramChart {
    id: String,
    title: String,
    grid: Grid,
    bars: Vec<Bar>,
    /// The note on the last, wider bin.
    tail: Option<TailNote>,
}

/// Where the note on the slowest bin goes, and the bin's bounds in ms.
struct TailNote {
    x: Px,
    y: Px,
    from: String,
    to: String,
}

struct Bar {
    x: Px,
    y: Px,
    width: Px,
    height: Px,
    color: &'static str,
    from: String,
    to: String,
    count: String,
}

/// The histogram of response times: even bars, and the last (slowest) bin set apart when it
/// is wider than the others. None without samples.
pub fn histogram(id: &str, title: &str, bins: &[HistogramBin]) -> Option<HistogramChart> {
    let first = bins.first()?;
    let width_ms = (first.to_seconds - first.from_seconds) * 1000.0;
    let start_ms = first.from_seconds * 1000.0;
    // The slowest bin is drawn as one more slot, marked, when it is wider than the rest.
    let tail = bins
        .last()
        .filter(|b| (b.to_seconds - b.from_seconds) * 1000.0 > width_ms * 1.001 && bins.len() > 1);
    let even = if tail.is_some() {
        bins.len() - 1
    } else {
        bins.len()
    };
    let end_ms = start_ms + bins.len() as f64 * width_ms;
    let plot = Plot {
        x: Axis::span(start_ms, end_ms, X_TICKS),
        y: Axis::new(
            bins.iter().map(|b| b.count).max().unwrap_or(0) as f64,
            Y_TICKS,
        ),
    };
    let bound = |seconds: f64| format_number(seconds * 1000.0, width_ms / 10.0);
    let bars = bins
        .iter()
        .enumerate()
        .map(|(i, bin)| {
            let x0 = plot.px(start_ms + i as f64 * width_ms);
            let x1 = plot.px(start_ms + (i + 1) as f64 * width_ms);
            let y = plot.py(bin.count as f64);
            Bar {
                x: Px(x0),
                y: Px(y),
                width: Px((x1 - x0 - 1.0).max(0.5)),
                height: Px((plot.py(0.0) - y).max(0.0)),
                color: if i >= even { SLOWEST } else { PALETTE[0] },
                from: bound(bin.from_seconds),
                to: bound(bin.to_seconds),
                count: thousands(bin.count),
            }
        })
        .collect();
    Some(HistogramChart {
        id: id.to_owned(),
        title: title.to_owned(),
        grid: plot.grid("", " ms"),
        bars,
        tail: tail.map(|t| TailNote {
            x: Px(WIDTH - RIGHT - 4.0),
            y: Px(TOP + 12.0),
            from: bound(t.from_seconds),
            to: bound(t.to_seconds),
        }),
    })
}

/// The colour of the slowest, wider bin.
const SLOWEST: &str = "#d62728";

/// A chart's grid: horizontal lines with their values, and the x axis's ticks.
#[derive(Template)]
#[template(path = "report/chart/grid.html")]
struct Grid {
    y_ticks: Vec<Tick>,
    x_ticks: Vec<Tick>,
}

/// A grid line or tick from `(x1, y1)` to `(x2, y2)`, its text at `(tx, ty)`.
struct Tick {
    x1: Px,
    y1: Px,
    x2: Px,
    y2: Px,
    tx: Px,
    ty: Px,
    text: String,
}

// The charts are templates whose own fields are escaped: they go into the page as they are.
impl HtmlSafe for LineChart {}
impl HtmlSafe for HistogramChart {}
impl HtmlSafe for Grid {}

/// An SVG coordinate, written to one decimal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Px(pub f64);

impl fmt::Display for Px {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}", self.0)
    }
}

impl HtmlSafe for Px {}

/// A point of a polyline, as its `points` attribute lists them: `x,y`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Point(pub f64, pub f64);

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1},{:.1}", self.0, self.1)
    }
}

impl HtmlSafe for Point {}

/// An axis from `low` to a round top, ticked every `step`.
struct Axis {
    low: f64,
    high: f64,
    step: f64,
}

impl Axis {
    /// From 0 to the first round tick at or above `max`.
    fn new(max: f64, ticks: f64) -> Self {
        let step = nice_step(max / ticks);
        let high = ((max / step).ceil() * step).max(step);
        Self {
            low: 0.0,
            high,
            step,
        }
    }

    /// The same axis with a step of at least `step`.
    fn at_least(self, step: f64) -> Self {
        if self.step >= step {
            return self;
        }
        Self {
            high: (self.high / step).ceil() * step,
            step,
            ..self
        }
    }

    /// From `low` to `high` exactly, ticked at the round multiples in between.
    fn span(low: f64, high: f64, ticks: f64) -> Self {
        Self {
            low,
            high: high.max(low + f64::EPSILON),
            step: nice_step((high - low) / ticks),
        }
    }

    fn ticks(&self) -> impl Iterator<Item = f64> + '_ {
        let first = (self.low / self.step - 1e-9).ceil() as i64;
        let last = (self.high / self.step + 1e-9).floor() as i64;
        (first..=last).map(|i| i as f64 * self.step)
    }

    fn fraction(&self, value: f64) -> f64 {
        (value - self.low) / (self.high - self.low)
    }
}

struct Plot {
    x: Axis,
    y: Axis,
}

impl Plot {
    fn px(&self, value: f64) -> f64 {
        LEFT + self.x.fraction(value) * (WIDTH - LEFT - RIGHT)
    }

    fn py(&self, value: f64) -> f64 {
        TOP + (1.0 - self.y.fraction(value)) * (HEIGHT - TOP - BOTTOM)
    }

    /// Horizontal grid lines with their values, and the x axis's ticks.
    fn grid(&self, y_unit: &str, x_unit: &str) -> Grid {
        let text = |value: f64, axis: &Axis, unit: &str| {
            format!("{}{unit}", format_number(value, axis.step))
        };
        let y_ticks = self
            .y
            .ticks()
            .map(|value| {
                let y = self.py(value);
                Tick {
                    x1: Px(LEFT),
                    y1: Px(y),
                    x2: Px(WIDTH - RIGHT),
                    y2: Px(y),
                    tx: Px(LEFT - 6.0),
                    ty: Px(y + 4.0),
                    text: text(value, &self.y, y_unit),
                }
            })
            .collect();
        let baseline = self.py(self.y.low);
        let x_ticks = self
            .x
            .ticks()
            .map(|value| {
                let x = self.px(value);
                Tick {
                    x1: Px(x),
                    y1: Px(baseline),
                    x2: Px(x),
                    y2: Px(baseline + 4.0),
                    tx: Px(x),
                    ty: Px(HEIGHT - 14.0),
                    text: text(value, &self.x, x_unit),
                }
            })
            .collect();
        Grid { y_ticks, x_ticks }
    }
}

/// `value` with as many decimals as `step` needs, and its whole part grouped in thousands.
pub fn format_number(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 || step <= 0.0 {
        0
    } else {
        (-step.log10().floor()).clamp(0.0, 9.0) as usize
    };
    let text = format!("{:.*}", decimals, value.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let sign = if value < 0.0 && text.chars().any(|c| ('1'..='9').contains(&c)) {
        "-"
    } else {
        ""
    };
    let grouped = group(whole);
    if fraction.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{fraction}")
    }
}

/// A count with thousands separators: `1,234,567`. Hand-written (ten lines, shared with
/// [`format_number`]'s grouping): indicatif's `HumanCount` does the same but lives in the
/// binary, and this crate would take a progress-bar crate for it.
pub fn thousands(count: u64) -> String {
    group(&count.to_string())
}

fn group(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_group_thousands_and_follow_the_step() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(format_number(12_500.0, 2500.0), "12,500");
        assert_eq!(format_number(0.25, 0.05), "0.25");
        assert_eq!(format_number(1234.5, 0.5), "1,234.5");
    }

    #[test]
    fn axes_tick_in_round_steps() {
        let ticks: Vec<f64> = Axis::new(1234.0, 5.0).ticks().collect();
        assert_eq!(ticks, [0.0, 500.0, 1000.0, 1500.0]);
        let ticks: Vec<f64> = Axis::new(0.0, 5.0).ticks().collect();
        assert_eq!(ticks, [0.0, 1.0]);
        let ticks: Vec<f64> = Axis::new(4.0, 8.0).at_least(1.0).ticks().collect();
        assert_eq!(ticks, [0.0, 1.0, 2.0, 3.0, 4.0]);
        let ticks: Vec<f64> = Axis::span(2.1, 3.05, 8.0).ticks().collect();
        assert_eq!(ticks.len(), 5, "{ticks:?}");
    }
}
