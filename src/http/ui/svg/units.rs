//! Numbers as the charts show them: escaping, binary byte units,
//! percentages, and the y-axis scale that rounds a maximum up to a
//! readable top.

use super::{BASE, TOP};

/// What a time chart's values are, which sets its y-axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Shares in 0..=1, shown as 0–100 %.
    Ratio,
    /// Byte counts, shown in B, KiB, MiB, GiB, ...
    Bytes,
}

/// Escapes `s` for XML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && !matches!(c, '\n' | '\t') => {}
            c => out.push(c),
        }
    }
    out
}

const BYTE_UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// A number with at most `decimals` decimals, trailing zeros dropped.
pub(super) fn number(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// The binary unit index for `bytes` (0 = B, 1 = KiB, ...).
pub(super) fn byte_unit(bytes: f64) -> usize {
    let mut i = 0;
    let mut v = bytes;
    while v >= 1024.0 && i + 1 < BYTE_UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    i
}

pub(super) fn bytes_f64(bytes: f64) -> String {
    let i = byte_unit(bytes);
    let v = bytes / 1024f64.powi(i as i32);
    let decimals = if i == 0 || v >= 100.0 { 0 } else { 1 };
    format!("{} {}", number(v, decimals), BYTE_UNITS[i])
}

/// `bytes` in binary units: `0 B`, `512 B`, `1.5 KiB`, `200 GiB`, `16 EiB`.
pub fn format_bytes(bytes: u64) -> String {
    bytes_f64(bytes as f64)
}

/// A share in 0..=1 as a percentage: `0%`, `93.2%`, `100%`.
pub fn format_percent(ratio: f64) -> String {
    let r = if ratio.is_finite() {
        ratio.clamp(0.0, 1.0)
    } else {
        0.0
    };
    format!("{}%", number(r * 100.0, 1))
}

pub(super) fn format_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Ratio => format_percent(v),
        Unit::Bytes => bytes_f64(v),
    }
}

/// The y-axis: its top value and its four gridline steps.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scale {
    pub(super) unit: Unit,
    /// The value at the top of the plot (> 0).
    pub(super) top: f64,
}

impl Scale {
    /// The scale for values up to `max`: ratios 0–100 %; bytes up to a round
    /// number of a binary unit (four steps of 1, 2, 2.5 or 5 × 10ⁿ), so the
    /// largest value lands in the upper half, at the top when it is round.
    pub(super) fn new(unit: Unit, max: f64) -> Scale {
        let max = if max.is_finite() { max.max(0.0) } else { 0.0 };
        let top = match unit {
            Unit::Ratio => 1.0,
            Unit::Bytes => {
                let mut i = byte_unit(max);
                loop {
                    let base = 1024f64.powi(i as i32);
                    let mut step = nice_step(max / base / 4.0);
                    if i == 0 {
                        // No fractions of a byte on the axis.
                        step = step.max(1.0);
                    }
                    if 4.0 * step >= 1024.0 && i + 1 < BYTE_UNITS.len() {
                        i += 1;
                        continue;
                    }
                    break 4.0 * step * base;
                }
            }
        };
        Scale { unit, top }
    }

    /// The y coordinate of `v` (clamped into the plot).
    pub(super) fn y(&self, v: f64) -> f64 {
        let share = if v.is_finite() {
            (v / self.top).clamp(0.0, 1.0)
        } else {
            0.0
        };
        BASE - share * (BASE - TOP)
    }
}

/// The smallest of 1, 2, 2.5, 5 × 10ⁿ at least `raw` (1 for nothing).
pub(super) fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag)
}
