//! The storage gauge: stored bytes by origin, and the cached share against
//! `max_cache_size`.

use std::fmt::Write as _;

use super::units::{escape, format_bytes, format_percent};
use super::{BUDGET_COLOUR, PART_COLOURS, c, open};

/// Gauge height in viewBox units.
const GAUGE_H: f64 = 100.0;
const GAUGE_LEFT: f64 = 8.0;
const GAUGE_RIGHT: f64 = 592.0;

/// Storage by origin against the cache budget: a bar of stored bytes stacked
/// by origin (`parts`, in order), and under it a meter of the first part (the
/// one `budget` limits: `max_cache_size` counts mirrored content only, never
/// pushed) against `budget`, whose end is the budget line. `budget` 0 is
/// unlimited: no meter, no line, and the text says so.
pub fn storage_gauge(title: &str, parts: &[(&str, u64)], budget: u64) -> String {
    let total: f64 = parts.iter().map(|(_, b)| *b as f64).sum();
    let used = parts.first().map_or(0, |(_, b)| *b);
    let budget_text = if budget == 0 {
        "cache budget: unlimited".to_owned()
    } else {
        format!(
            "cache budget: {} of {} used ({})",
            format_bytes(used),
            format_bytes(budget),
            format_percent(used as f64 / budget as f64)
        )
    };
    let legend: Vec<String> = parts
        .iter()
        .map(|(name, b)| format!("{name} {}", format_bytes(*b)))
        .collect();
    let desc = format!("{}; {budget_text}", legend.join(", "));
    let mut out = String::new();
    open(&mut out, "gauge", GAUGE_H, title, &desc);
    // x of `v` on a bar whose full width is `full`.
    let x = |v: f64, full: f64| {
        if full > 0.0 {
            GAUGE_LEFT + (GAUGE_RIGHT - GAUGE_LEFT) * (v / full).clamp(0.0, 1.0)
        } else {
            GAUGE_LEFT
        }
    };
    out.push_str(r#"<g class="legend" fill="currentColor">"#);
    for (k, label) in legend.iter().enumerate() {
        let lx = GAUGE_LEFT + 150.0 * k as f64;
        let _ = write!(
            out,
            r#"<rect class="part-{k}" x="{}" y="8" width="10" height="10" fill="{}"/><text x="{}" y="17">{}</text>"#,
            c(lx),
            PART_COLOURS[k % PART_COLOURS.len()],
            c(lx + 14.0),
            escape(label)
        );
    }
    out.push_str("</g>");
    let track = |out: &mut String, class: &str, y: f64, h: f64| {
        let _ = write!(
            out,
            r#"<rect class="{class}" x="{}" y="{}" width="{}" height="{}" fill="currentColor" fill-opacity="0.08"/>"#,
            c(GAUGE_LEFT),
            c(y),
            c(GAUGE_RIGHT - GAUGE_LEFT),
            c(h)
        );
    };
    track(&mut out, "track", 26.0, 24.0);
    let mut acc = 0.0;
    for (k, label) in legend.iter().enumerate() {
        let b = parts.get(k).map_or(0.0, |(_, b)| *b as f64);
        let (x0, x1) = (x(acc, total), x(acc + b, total));
        acc += b;
        if x1 - x0 > 0.0 {
            let _ = write!(
                out,
                r#"<rect class="part-{k}" x="{}" y="26" width="{}" height="24" fill="{}"><title>{}</title></rect>"#,
                c(x0),
                c(x1 - x0),
                PART_COLOURS[k % PART_COLOURS.len()],
                escape(label)
            );
        }
    }
    if total <= 0.0 {
        let _ = write!(
            out,
            r#"<text class="empty" x="{}" y="42" text-anchor="middle" fill="currentColor" fill-opacity="0.7">nothing stored yet</text>"#,
            c((GAUGE_LEFT + GAUGE_RIGHT) / 2.0)
        );
    }
    if budget > 0 {
        // Eviction lags a few seconds: a cache over budget shows the line inside.
        let full = (used as f64).max(budget as f64);
        track(&mut out, "budget-track", 60.0, 10.0);
        let w = x(used as f64, full) - GAUGE_LEFT;
        if w > 0.0 {
            let _ = write!(
                out,
                r#"<rect class="budget-used" x="{}" y="60" width="{}" height="10" fill="{}"><title>{}</title></rect>"#,
                c(GAUGE_LEFT),
                c(w),
                PART_COLOURS[0],
                escape(&budget_text)
            );
        }
        let bx = x(budget as f64, full);
        let _ = write!(
            out,
            r#"<line class="budget" x1="{}" y1="56" x2="{}" y2="74" stroke="{BUDGET_COLOUR}" stroke-width="2"><title>{}</title></line>"#,
            c(bx),
            c(bx),
            escape(&format!("max_cache_size {}", format_bytes(budget)))
        );
    }
    let _ = write!(
        out,
        r#"<text class="budget-text" x="{}" y="90" fill="currentColor">{}</text>"#,
        c(GAUGE_LEFT),
        escape(&budget_text)
    );
    out.push_str("</svg>");
    out
}
