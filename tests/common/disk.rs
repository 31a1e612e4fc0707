//! What a data directory holds on disk, for tests that compare it with the index.

use std::path::{Path, PathBuf};

/// Every regular file under `dir`, recursively (none when it is missing).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.map(Result::unwrap) {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Where the content file of `digest` (`sha256:…`) lives under `root`.
pub fn blob_path(root: &Path, digest: &str) -> PathBuf {
    let hex = &digest["sha256:".len()..];
    root.join("blobs/sha256").join(&hex[..2]).join(hex)
}

/// (files, bytes) of content under `root/blobs`.
pub fn content_on_disk(root: &Path) -> (u64, u64) {
    let files = files_under(&root.join("blobs"));
    let bytes = files
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    (files.len() as u64, bytes)
}

/// Bytes of the largest file directly under `dir` (0 when it is empty or
/// missing): how tests see an upload fully staged in `tmp/` before they kill
/// the node that is committing it.
pub fn largest_staged(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}
