//! `wharf du`: bytes and blob counts, total, pushed and cached (by upstream),
//! against `max_cache_size`.

use serde_json::Value;

use super::client::{CliError, Client};
use super::format::{Table, size, size_of, text};

/// Prints disk usage.
pub(super) fn du(c: &Client) -> Result<(), CliError> {
    let v = c.get("usage")?;
    if c.json {
        c.print_json(&v);
        return Ok(());
    }
    let mut t = Table::new(&["", ">BLOBS", ">SIZE"]);
    t.row(vec![
        "total".into(),
        text(&v["blobs"]),
        size_of(&v["bytes"]),
    ]);
    t.row(vec![
        "pushed".into(),
        text(&v["pushed_blobs"]),
        size_of(&v["pushed_bytes"]),
    ]);
    t.row(vec![
        "cached".into(),
        text(&v["cached_blobs"]),
        size_of(&v["cached_bytes"]),
    ]);
    if let Some(by) = v["cached_by_upstream"].as_object() {
        for (upstream, bytes) in by {
            t.row(vec![format!("  {upstream}"), String::new(), size_of(bytes)]);
        }
    }
    t.print();
    println!("{}", budget(&v));
    Ok(())
}

/// The cache budget line.
fn budget(v: &Value) -> String {
    let max = v["max_cache_size"].as_u64().unwrap_or(0);
    if max == 0 {
        return "cache budget: unlimited (max_cache_size = 0)".into();
    }
    let cached = v["cached_bytes"].as_u64().unwrap_or(0);
    let low = v["low_watermark"].as_f64().unwrap_or(0.9);
    format!(
        "cache budget: {} of {} ({:.1}%); eviction goes down to {:.0}%",
        size(cached),
        size(max),
        cached as f64 * 100.0 / max as f64,
        low * 100.0
    )
}
