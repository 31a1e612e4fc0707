//! `wharf gc [--dry-run]` and `wharf verify`: long passes run by the daemon's
//! workers, with a progress bar on a terminal.

use serde_json::{Value, json};

use super::client::{CliError, Client};
use super::format::{Table, size, size_of, text};
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
    let n = v["swept_blobs"].as_u64().unwrap_or(removed.len() as u64);
    if !removed.is_empty() {
        let mut t = Table::new(&["DIGEST", ">SIZE"]);
        for r in &removed {
            t.row(vec![text(&r["digest"]), size_of(&r["size"])]);
        }
        t.print();
        if n > removed.len() as u64 {
            println!("... and {} more", n - removed.len() as u64);
        }
    }
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
    print_bucket(&v["bucket"], dry_run || v["dry_run"] == true);
    Ok(())
}

/// The shared bucket's part of a collection (nothing on files): whether this
/// node swept the bucket or another node holds the gc lease.
fn print_bucket(b: &Value, dry_run: bool) {
    if b.is_null() {
        return;
    }
    if let Some(holder) = b["held_by"].as_str() {
        println!(
            "bucket not swept by this node: node {holder} holds the gc lease (it sweeps the shared bucket); this node's index was collected"
        );
        return;
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    let stale: Vec<&str> = b["nodes_stale"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    println!(
        "bucket sweep {verb} {} objects ({}) of {} listed; kept {} named by a live set or manifest record, {} younger than the grace; {} nodes answered{}",
        text(&b["deleted_objects"]),
        size(b["deleted_bytes"].as_u64().unwrap_or(0)),
        text(&b["listed"]),
        text(&b["kept_live"]),
        text(&b["kept_young"]),
        text(&b["nodes_answered"]),
        if stale.is_empty() {
            String::new()
        } else {
            format!(
                ", {} did not (their older live sets were kept): {}",
                stale.len(),
                stale.join(", ")
            )
        },
    );
    let leases = b["fill_leases_removed"].as_u64().unwrap_or(0);
    if leases > 0 {
        let verb = if dry_run { "would remove" } else { "removed" };
        println!("bucket sweep {verb} {leases} fill leases left by nodes that died mid-download");
    }
}

/// Re-hashes every blob; prints each corrupt one with what it breaks. A
/// corrupt blob found is a failure (exit 1) once printed.
pub(super) fn verify(c: &Client) -> Result<(), CliError> {
    let v = post_with_progress(c, "verify", "verify", "verify", &json!({}))?;
    let corrupt: Vec<&Value> = v["corrupt"].as_array().into_iter().flatten().collect();
    if c.json {
        c.print_json(&v);
    } else {
        for b in &corrupt {
            print_corrupt(b);
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
            "{} corrupt blob{} found and quarantined",
            corrupt.len(),
            if corrupt.len() == 1 { "" } else { "s" }
        )))
    }
}

/// One corrupt blob: its digest, what it breaks (tags, and repositories that
/// link it), and what was done about it.
fn print_corrupt(b: &Value) {
    let names = |k: &str| -> String {
        let v: Vec<&str> = b[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if v.is_empty() {
            "-".into()
        } else {
            v.join(", ")
        }
    };
    println!(
        "corrupt {} ({}, {})",
        text(&b["digest"]),
        text(&b["origin"]),
        size_of(&b["size"])
    );
    println!("  breaks tags:   {}", names("tags"));
    println!("  repositories:  {}", names("repositories"));
    println!("  {}", text(&b["action"]));
}
