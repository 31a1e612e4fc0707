//! `wharf import DIR [--link]`: imports a `registry:2` storage root into the
//! running daemon (which reads DIR itself: it must be on the daemon's
//! machine), with a progress bar on a terminal, then a summary; every blob
//! left out is printed with the images it breaks, and every other item left
//! out with its reason. Anything left out makes the exit status 1 once printed.

use std::path::Path;

use serde_json::{Value, json};

use super::client::{CliError, Client};
use super::format::{size_of, text};
use super::progress::post_with_progress;

/// Runs the import and prints what it did.
pub(super) fn import(c: &Client, dir: &Path, link: bool) -> Result<(), CliError> {
    // The daemon resolves the path, not this shell: make it absolute here.
    let dir =
        std::path::absolute(dir).map_err(|e| CliError::Api(format!("{}: {e}", dir.display())))?;
    let body = json!({ "dir": dir.display().to_string(), "link": link });
    let v = post_with_progress(c, "import", "import", "import", &body)?;
    let bad: Vec<&Value> = v["bad_blobs"].as_array().into_iter().flatten().collect();
    let skipped: Vec<&Value> = v["skipped"].as_array().into_iter().flatten().collect();
    let more = v["skipped_more"].as_u64().unwrap_or(0);
    if c.json {
        c.print_json(&v);
    } else {
        for b in &bad {
            println!(
                "not imported: blob {} ({})",
                text(&b["digest"]),
                text(&b["reason"])
            );
            let breaks: Vec<&str> = b["breaks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let breaks = if breaks.is_empty() {
                "-".to_owned()
            } else {
                breaks.join(", ")
            };
            println!("  breaks images: {breaks}");
        }
        for s in &skipped {
            println!("skipped {}: {}", text(&s["what"]), text(&s["reason"]));
        }
        if more > 0 {
            println!("... and {more} more skipped");
        }
        let a = &v["already_there"];
        println!(
            "imported from {}: {} repositories, {} tags, {} manifests, {} blobs copied + {} linked ({})",
            text(&v["root"]),
            text(&v["repositories"]),
            text(&v["tags"]),
            text(&v["manifests"]),
            text(&v["blobs_copied"]),
            text(&v["blobs_linked"]),
            size_of(&v["bytes"]),
        );
        println!(
            "already there: {} blobs, {} manifests, {} tags; untagged revisions left out: {}; skipped: {} (bad blobs: {})",
            text(&a["blobs"]),
            text(&a["manifests"]),
            text(&a["tags"]),
            text(&v["untagged_left"]),
            skipped.len() as u64 + more,
            bad.len(),
        );
    }
    if bad.is_empty() && skipped.is_empty() {
        Ok(())
    } else {
        Err(CliError::Api(format!(
            "{} item{} not imported (listed above)",
            skipped.len() as u64 + more,
            if skipped.len() as u64 + more == 1 {
                ""
            } else {
                "s"
            }
        )))
    }
}
