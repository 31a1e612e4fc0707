//! `wharf backup DEST [--copy]`: an online, consistent copy of the running
//! daemon's data directory, written by the daemon (DEST is a path on its
//! host), with a progress bar on a terminal and a summary after.

use std::path::Path;

use serde_json::json;

use super::client::{CliError, Client};
use super::format::{size_of, text};
use super::progress::post_with_progress;

/// Runs one backup into `dest` and prints what it wrote. A relative `dest` is
/// taken from the current directory (right when the daemon runs on this host).
pub(super) fn backup(c: &Client, dest: &Path, copy: bool) -> Result<(), CliError> {
    let dest = if dest.is_absolute() {
        dest.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| CliError::Api(format!("cannot resolve {}: {e}", dest.display())))?
            .join(dest)
    };
    let body = json!({ "dest": dest, "copy": copy });
    let v = post_with_progress(c, "backup", "backup", "backup", &body)?;
    if c.json {
        c.print_json(&v);
        return Ok(());
    }
    println!(
        "backup written to {}: {} blobs ({}), {} hard-linked, {} copied; {} index rows; {} ms",
        text(&v["dest"]),
        text(&v["blobs"]),
        size_of(&v["bytes"]),
        text(&v["linked"]),
        text(&v["copied"]),
        text(&v["index_rows"]),
        text(&v["ms"]),
    );
    println!(
        "restore: run `wharf serve` with [storage] root = {:?}",
        text(&v["dest"])
    );
    Ok(())
}
