//! The dashboard's charts, drawn on the server as inline SVG strings: the page
//! needs no JavaScript, and its strict CSP (no inline style or script) allows
//! them. Pure functions of their numbers: no I/O, no clock.
//!
//! Every chart is sized by `viewBox` only, so it scales from a phone to a wide
//! screen; it carries `role="img"`, an `aria-label` and a `<title>`; every text
//! it shows is escaped; it has no script, no style attribute and no external
//! reference. Colours are presentation attributes and every part has a class,
//! so the page's stylesheet can restyle them; text uses `currentColor`.
//! An empty series draws the axes and says "no data yet" rather than failing.

use std::fmt::Write as _;

mod gauge;
mod units;

pub use gauge::storage_gauge;
use units::{Scale, bytes_f64, format_value, number};
pub use units::{Unit, escape, format_bytes, format_percent};

/// Chart width in viewBox units.
const W: f64 = 600.0;
/// Time chart height in viewBox units.
const H: f64 = 220.0;
/// Plot area of the time charts.
const LEFT: f64 = 64.0;
const RIGHT: f64 = 588.0;
const TOP: f64 = 28.0;
const BASE: f64 = 184.0;

const LINE_COLOUR: &str = "#2b7bb9";
const SERIES_COLOURS: [&str; 2] = ["#2e8b57", "#d9822b"];
const PART_COLOURS: [&str; 4] = ["#2b7bb9", "#7b5ea7", "#2e8b57", "#8c8c8c"];
const BUDGET_COLOUR: &str = "#c0392b";

/// The time axis and the name of a chart: bucket `i` covers
/// `start + i * step .. start + (i + 1) * step` (Unix seconds), the last
/// bucket ends "now".
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// What the chart shows: its `<title>` and `aria-label`.
    pub title: &'a str,
    /// Unix seconds the first bucket starts at.
    pub start: u64,
    /// Bucket length in seconds.
    pub step: u64,
}

/// A coordinate, one decimal.
fn c(v: f64) -> String {
    format!("{v:.1}")
}

/// `HH:MM UTC` of Unix seconds.
fn clock(unix: u64) -> String {
    format!("{:02}:{:02} UTC", (unix / 3600) % 24, (unix / 60) % 60)
}

/// The opening tag, `<title>` and `<desc>` of a chart.
fn open(out: &mut String, kind: &str, height: f64, title: &str, desc: &str) {
    let title = escape(title);
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" role="img" aria-label="{title}" class="chart chart-{kind}" font-family="sans-serif" font-size="12"><title>{title}</title><desc>{}</desc>"#,
        number(W, 0),
        number(height, 0),
        escape(desc),
    );
}

/// The x centre of bucket `i` of `n`.
fn slot_x(i: usize, n: usize) -> f64 {
    LEFT + (RIGHT - LEFT) * (i as f64 + 0.5) / n.max(1) as f64
}

/// Gridlines with y labels, the baseline, and relative time labels.
fn axes(out: &mut String, scale: &Scale, frame: &Frame<'_>, n: usize) {
    out.push_str(r#"<g class="grid" stroke="currentColor" stroke-opacity="0.15">"#);
    for k in 1..=4 {
        let y = scale.y(scale.top * f64::from(k) / 4.0);
        let _ = write!(
            out,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}"/>"#,
            c(LEFT),
            c(y),
            c(RIGHT),
            c(y)
        );
    }
    out.push_str("</g>");
    out.push_str(r#"<g class="y-labels" fill="currentColor" text-anchor="end">"#);
    for k in 0..=4 {
        let v = scale.top * f64::from(k) / 4.0;
        let _ = write!(
            out,
            r#"<text x="{}" y="{}">{}</text>"#,
            c(LEFT - 6.0),
            c(scale.y(v) + 4.0),
            escape(&format_value(scale.unit, v))
        );
    }
    out.push_str("</g>");
    let _ = write!(
        out,
        r#"<line class="baseline" x1="{}" y1="{}" x2="{}" y2="{}" stroke="currentColor" stroke-opacity="0.5"/>"#,
        c(LEFT),
        c(BASE),
        c(RIGHT),
        c(BASE)
    );
    let span = frame.step.saturating_mul(n as u64);
    out.push_str(r#"<g class="x-labels" fill="currentColor" text-anchor="middle">"#);
    for k in 0..=4u64 {
        let ago = span / 4 * (4 - k) + if k == 0 { span % 4 } else { 0 };
        let label = if k == 4 {
            "now".to_owned()
        } else if span == 0 {
            continue;
        } else if span >= 2 * 3600 {
            format!("−{}h", number(ago as f64 / 3600.0, 1))
        } else {
            format!("−{}m", number(ago as f64 / 60.0, 1))
        };
        let anchor = match k {
            0 => r#" text-anchor="start""#,
            4 => r#" text-anchor="end""#,
            _ => "",
        };
        let x = LEFT + (RIGHT - LEFT) * k as f64 / 4.0;
        let _ = write!(
            out,
            r#"<text x="{}" y="{}"{anchor}>{}</text>"#,
            c(x),
            c(BASE + 18.0),
            escape(&label)
        );
    }
    out.push_str("</g>");
}

/// The centred message of a chart with nothing to draw.
fn empty_note(out: &mut String, text: &str) {
    let _ = write!(
        out,
        r#"<text class="empty" x="{}" y="{}" text-anchor="middle" fill="currentColor" fill-opacity="0.7" font-size="16">{}</text>"#,
        c((LEFT + RIGHT) / 2.0),
        c((TOP + BASE) / 2.0),
        escape(text)
    );
}

/// A line chart with the area under it, one value per bucket of `frame`
/// (`None`: nothing known, a gap in the line). Each point has a tooltip with
/// its time and value.
pub fn line_chart(frame: &Frame<'_>, unit: Unit, values: &[Option<f64>]) -> String {
    let known: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let max = known.iter().copied().fold(0.0, f64::max);
    let scale = Scale::new(unit, max);
    let desc = match known.last() {
        None => "no data yet".to_owned(),
        Some(last) => format!(
            "{} of {} intervals with data; latest {}, highest {}",
            known.len(),
            values.len(),
            format_value(unit, *last),
            format_value(unit, max)
        ),
    };
    let mut out = String::new();
    open(&mut out, "line", H, frame.title, &desc);
    axes(&mut out, &scale, frame, values.len());
    // Contiguous runs of known values: an area and a line each.
    let n = values.len();
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut run: Vec<(f64, f64)> = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v.filter(|v| v.is_finite()) {
            Some(v) => run.push((slot_x(i, n), scale.y(v))),
            None if !run.is_empty() => runs.push(std::mem::take(&mut run)),
            None => {}
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    for run in &runs {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            continue;
        };
        let line: Vec<String> = run
            .iter()
            .map(|(x, y)| format!("{},{}", c(*x), c(*y)))
            .collect();
        if run.len() > 1 {
            let _ = write!(
                out,
                r#"<path class="area" d="M{},{} L{} L{},{} Z" fill="{LINE_COLOUR}" fill-opacity="0.15" stroke="none"/>"#,
                c(first.0),
                c(BASE),
                line.join(" L"),
                c(last.0),
                c(BASE)
            );
            let _ = write!(
                out,
                r#"<path class="line" d="M{}" fill="none" stroke="{LINE_COLOUR}" stroke-width="2" stroke-linejoin="round"/>"#,
                line.join(" L")
            );
        }
    }
    out.push_str(&format!(r#"<g class="points" fill="{LINE_COLOUR}">"#));
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            let t = frame
                .start
                .saturating_add(frame.step.saturating_mul(i as u64));
            let _ = write!(
                out,
                r#"<circle cx="{}" cy="{}" r="2.5"><title>{}: {}</title></circle>"#,
                c(slot_x(i, n)),
                c(scale.y(v)),
                escape(&clock(t)),
                escape(&format_value(unit, v))
            );
        }
    }
    out.push_str("</g>");
    if known.is_empty() {
        empty_note(&mut out, "no data yet");
    }
    out.push_str("</svg>");
    out
}

/// Stacked bars of two byte series per bucket of `frame` (the first at the
/// bottom), with a legend: bytes served locally against bytes fetched from
/// upstreams. The series may differ in length; a missing value is 0.
pub fn stacked_bars(frame: &Frame<'_>, series: [(&str, &[u64]); 2]) -> String {
    let [(a_name, a), (b_name, b)] = series;
    let n = a.len().max(b.len());
    let at = |s: &[u64], i: usize| s.get(i).copied().unwrap_or(0) as f64;
    let max = (0..n).map(|i| at(a, i) + at(b, i)).fold(0.0, f64::max);
    let total = |s: &[u64]| s.iter().map(|v| *v as f64).sum::<f64>();
    let scale = Scale::new(Unit::Bytes, max);
    let desc = if n == 0 {
        "no data yet".to_owned()
    } else {
        format!(
            "{} intervals; {} {} and {} {} in all",
            n,
            a_name,
            bytes_f64(total(a)),
            b_name,
            bytes_f64(total(b))
        )
    };
    let mut out = String::new();
    open(&mut out, "bars", H, frame.title, &desc);
    axes(&mut out, &scale, frame, n);
    out.push_str(r#"<g class="legend" fill="currentColor">"#);
    for (k, name) in [a_name, b_name].iter().enumerate() {
        let x = LEFT + 170.0 * k as f64;
        let _ = write!(
            out,
            r#"<rect class="series-{k}" x="{}" y="8" width="10" height="10" fill="{}"/><text x="{}" y="17">{}</text>"#,
            c(x),
            SERIES_COLOURS[k],
            c(x + 14.0),
            escape(name)
        );
    }
    out.push_str("</g>");
    let width = (RIGHT - LEFT) / n.max(1) as f64;
    let bar = (width * 0.7).max(0.5);
    out.push_str(r#"<g class="bars">"#);
    for i in 0..n {
        let (va, vb) = (at(a, i), at(b, i));
        if va + vb <= 0.0 {
            continue;
        }
        let t = frame
            .start
            .saturating_add(frame.step.saturating_mul(i as u64));
        let x = slot_x(i, n) - bar / 2.0;
        let _ = write!(
            out,
            "<g><title>{}: {} {}, {} {}</title>",
            escape(&clock(t)),
            escape(a_name),
            escape(&bytes_f64(va)),
            escape(b_name),
            escape(&bytes_f64(vb))
        );
        let (ya, yab) = (scale.y(va), scale.y(va + vb));
        for (k, (y0, y1)) in [(BASE, ya), (ya, yab)].into_iter().enumerate() {
            if y0 - y1 > 0.0 {
                let _ = write!(
                    out,
                    r#"<rect class="series-{k}" x="{}" y="{}" width="{}" height="{}" fill="{}"/>"#,
                    c(x),
                    c(y1),
                    c(bar),
                    c(y0 - y1),
                    SERIES_COLOURS[k]
                );
            }
        }
        out.push_str("</g>");
    }
    out.push_str("</g>");
    if n == 0 {
        empty_note(&mut out, "no data yet");
    } else if max <= 0.0 {
        empty_note(&mut out, "no traffic yet");
    }
    out.push_str("</svg>");
    out
}

/// The dashboard's four history charts.
#[derive(Debug, Clone)]
pub struct HistoryCharts {
    /// Cache hit ratio per minute over the last hour.
    pub hit_ratio_hour: String,
    /// Cache hit ratio per hour over the last day.
    pub hit_ratio_day: String,
    /// Bytes served locally against fetched from upstreams, per minute.
    pub bytes_hour: String,
    /// The same per hour over the last day.
    pub bytes_day: String,
}

/// Draws `history` (from [`crate::metrics::Metrics::history_now`]) as the
/// dashboard's charts.
pub fn history_charts(history: &crate::metrics::history::Snapshot) -> HistoryCharts {
    let frame = |title, s: &crate::metrics::history::Series| Frame {
        title,
        start: s.start(),
        step: s.step,
    };
    let bytes = |title, s| {
        stacked_bars(
            &frame(title, s),
            [
                ("served locally", &s.values(|c| c.served_local)),
                ("fetched from upstreams", &s.values(|c| c.fetched_upstream)),
            ],
        )
    };
    HistoryCharts {
        hit_ratio_hour: line_chart(
            &frame("Cache hit ratio, last hour (per minute)", &history.hour),
            Unit::Ratio,
            &history.hour.hit_ratios(),
        ),
        hit_ratio_day: line_chart(
            &frame("Cache hit ratio, last day (per hour)", &history.day),
            Unit::Ratio,
            &history.day.hit_ratios(),
        ),
        bytes_hour: bytes(
            "Bytes served locally and fetched from upstreams, last hour (per minute)",
            &history.hour,
        ),
        bytes_day: bytes(
            "Bytes served locally and fetched from upstreams, last day (per hour)",
            &history.day,
        ),
    }
}

#[cfg(test)]
mod tests;
