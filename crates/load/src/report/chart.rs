//! Inline SVG charts for `report.html`: lines over time and a histogram's bars, with axes
//! ticked in round steps (1, 2 or 5 × 10^n) and numbers grouped in thousands.
//!
//! The grouping ([`thousands`], [`format_number`]) is hand-written: it groups the whole part
//! of a number with the decimals its axis step needs, which indicatif's `HumanCount` (whole
//! numbers) and `HumanFloatCount` (its own decimals) do not do, and this crate would
//! otherwise not depend on a progress-bar crate.

use std::fmt::Write as _;

use crate::markup::escape;
use crate::report::describe::{HistogramBin, nice_step};

/// A chart's size and margins, shared by every chart of the report (the capacity section's
/// too), in SVG user units.
pub(crate) const WIDTH: f64 = 860.0;
pub(crate) const HEIGHT: f64 = 240.0;
pub(crate) const LEFT: f64 = 72.0;
pub(crate) const RIGHT: f64 = 16.0;
pub(crate) const TOP: f64 = 12.0;
pub(crate) const BOTTOM: f64 = 36.0;

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

/// The figure of `lines` over `seconds` seconds, values in `unit`.
pub fn lines(id: &str, title: &str, unit: &str, seconds: u64, lines: &[Line]) -> String {
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
    let mut svg = open_figure(id, title);
    plot.grid(&mut svg, unit, " s");
    for line in lines {
        for segment in line.points.split(|p| p.1.is_none()) {
            let points: Vec<(f64, f64)> = segment
                .iter()
                .filter_map(|&(s, v)| Some((plot.px(s as f64 + 0.5), plot.py(v?))))
                .collect();
            draw_segment(&mut svg, line, &points);
        }
    }
    svg.push_str("</svg>\n");
    svg.push_str(&legend(lines));
    svg.push_str("</figure>\n");
    svg
}

fn draw_segment(svg: &mut String, line: &Line, points: &[(f64, f64)]) {
    if let [(x, y)] = points {
        let _ = writeln!(
            svg,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"{}\"><title>{}</title></circle>",
            line.color,
            escape(&line.name)
        );
    } else if !points.is_empty() {
        let text: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" points=\"{}\"><title>{}</title></polyline>",
            line.color,
            text.join(" "),
            escape(&line.name)
        );
    }
}

/// The histogram of response times: even bars, and the last (slowest) bin set apart when it
/// is wider than the others.
pub fn histogram(id: &str, title: &str, bins: &[HistogramBin]) -> String {
    let Some(first) = bins.first() else {
        return String::new();
    };
    let width_ms = (first.to_seconds - first.from_seconds) * 1000.0;
    let start_ms = first.from_seconds * 1000.0;
    // The slowest bin is drawn as one more slot, marked, when it is wider than the rest.
    let tail = bins
        .last()
        .filter(|b| (b.to_seconds - b.from_seconds) * 1000.0 > width_ms * 1.001 && bins.len() > 1);
    let even = if tail.is_some() {
        &bins[..bins.len() - 1]
    } else {
        bins
    };
    let slots = bins.len() as f64;
    let end_ms = start_ms + slots * width_ms;
    let plot = Plot {
        x: Axis::span(start_ms, end_ms, X_TICKS),
        y: Axis::new(
            bins.iter().map(|b| b.count).max().unwrap_or(0) as f64,
            Y_TICKS,
        ),
    };
    let mut svg = open_figure(id, title);
    plot.grid(&mut svg, "", " ms");
    for (i, bin) in bins.iter().enumerate() {
        let x0 = plot.px(start_ms + i as f64 * width_ms);
        let x1 = plot.px(start_ms + (i + 1) as f64 * width_ms);
        let y = plot.py(bin.count as f64);
        let slow = i >= even.len();
        let _ = writeln!(
            svg,
            "<rect class=\"bar\" x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} to {} ms: {} samples</title></rect>",
            (x1 - x0 - 1.0).max(0.5),
            (plot.py(0.0) - y).max(0.0),
            if slow { "#d62728" } else { PALETTE[0] },
            format_number(bin.from_seconds * 1000.0, width_ms / 10.0),
            format_number(bin.to_seconds * 1000.0, width_ms / 10.0),
            thousands(bin.count)
        );
    }
    if let Some(tail) = tail {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#b00\">last bar (red): the slowest, {} to {} ms</text>",
            WIDTH - RIGHT - 4.0,
            TOP + 12.0,
            format_number(tail.from_seconds * 1000.0, width_ms / 10.0),
            format_number(tail.to_seconds * 1000.0, width_ms / 10.0),
        );
    }
    svg.push_str("</svg></figure>\n");
    svg
}

fn open_figure(id: &str, title: &str) -> String {
    format!(
        "<figure><figcaption>{}</figcaption><svg class=\"chart\" data-chart=\"{}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">\n",
        escape(title),
        escape(id),
        escape(title)
    )
}

fn legend(lines: &[Line]) -> String {
    let items: String = lines
        .iter()
        .map(|l| {
            format!(
                "<span><i style=\"background:{}\"></i>{}</span>",
                l.color,
                escape(&l.name)
            )
        })
        .collect();
    format!("<div class=\"legend\">{items}</div>")
}

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
    fn grid(&self, svg: &mut String, y_unit: &str, x_unit: &str) {
        for value in self.y.ticks() {
            let y = self.py(value);
            let _ = writeln!(
                svg,
                "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e4e4e4\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#666\">{}{y_unit}</text>",
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                format_number(value, self.y.step),
            );
        }
        let baseline = self.py(self.y.low);
        for value in self.x.ticks() {
            let x = self.px(value);
            let _ = writeln!(
                svg,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{baseline:.1}\" y2=\"{:.1}\" stroke=\"#999\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#666\">{}{x_unit}</text>",
                baseline + 4.0,
                HEIGHT - 14.0,
                format_number(value, self.x.step),
            );
        }
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

/// A count with thousands separators: `1,234,567`.
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
