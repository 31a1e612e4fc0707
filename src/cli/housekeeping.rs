//! `wharf gc [--dry-run]` and `wharf verify`: long passes run by the daemon's
//! workers, with a progress bar on a terminal.

use serde_json::{Value, json};

use super::client::{CliError, Client};
use super::format::{Table, short_digest, size, size_of, text};
use super::progress::post_with_progress;

/// One collection now; prints what went (or would go) and how many bytes.
pub(super) fn gc(c: &Client, dry_run: bool) -> Result<(), CliError> {
    let label = if dry_run { "gc (dry run)" } else { "gc" };
    let v = post_with_progress(c, "gc", label, "gc", &json!({ "dry_run": dry_run }))?;
    if c.json {
        c.print_json(&v);
        return Ok(());
    }
    let removed: Vec<&Value> = v["removed"].as_array().into_iter().flatten().collect();
    if !removed.is_empty() {
        let mut t = Table::new(&["DIGEST", ">SIZE"]);
        for r in &removed {
            t.row(vec![text(&r["digest"]), size_of(&r["size"])]);
        }
        t.print();
    }
    let n = v["swept_blobs"].as_u64().unwrap_or(removed.len() as u64);
    let bytes = size(v["swept_bytes"].as_u64().unwrap_or(0));
    let verb = if v["dry_run"] == true || dry_run {
        "would remove"
    } else {
        "removed"
    };
    println!(
        "gc {verb} {n} blobs ({bytes}); marked {}, kept {} younger than the grace period and {} in use; mark {} ms, sweep {} ms",
        text(&v["marked_blobs"]),
        text(&v["kept_young"]),
        text(&v["kept_in_use"]),
        text(&v["mark_ms"]),
        text(&v["sweep_ms"]),
    );
    Ok(())
}

/// Re-hashes every blob; prints each corrupt one with what it breaks. A
/// corrupt blob found is a failure (exit 1) once printed.
pub(super) fn verify(c: &Client) -> Result<(), CliError> {
    let v = post_with_progress(c, "verify", "verify", "verify", &json!({}))?;
    let corrupt: Vec<&Value> = v["corrupt"].as_array().into_iter().flatten().collect();
    if c.json {
        c.print_json(&v);
    } else {
        if !corrupt.is_empty() {
            let mut t = Table::new(&["DIGEST", ">SIZE", "ORIGIN", "ACTION", "BREAKS"]);
            for b in &corrupt {
                let names = |k: &str| -> Vec<String> {
                    b[k].as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                };
                let mut breaks = names("tags");
                if breaks.is_empty() {
                    breaks = names("repositories");
                }
                t.row(vec![
                    short_digest(&text(&b["digest"])),
                    size_of(&b["size"]),
                    text(&b["origin"]),
                    text(&b["action"]),
                    if breaks.is_empty() {
                        "-".into()
                    } else {
                        breaks.join(", ")
                    },
                ]);
            }
            t.print();
        }
        println!(
            "checked {} blobs ({}): {} corrupt",
            text(&v["checked_blobs"]),
            size_of(&v["checked_bytes"]),
            corrupt.len()
        );
    }
    if corrupt.is_empty() {
        Ok(())
    } else {
        Err(CliError::Api(format!(
            "{} corrupt blobs found and quarantined",
            corrupt.len()
        )))
    }
}
