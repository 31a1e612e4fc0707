//! What one import pass did: counts for the summary `wharf import` prints,
//! the corrupt or missing blobs with the images they break, and everything
//! else left out with its reason.

use std::collections::BTreeMap;

use serde::Serialize;

use super::tree::Skipped;

/// Longest list of skipped items kept in a report (a hostile tree must not
/// make an answer of unbounded size); the rest are counted.
pub const MAX_LISTED: usize = 1000;

/// What was found in wharf already (a second run finds everything here).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlreadyThere {
    /// Blobs stored already (linked into the repository if they were not).
    pub blobs: u64,
    /// Manifests the repository had.
    pub manifests: u64,
    /// Tags naming the same digest already.
    pub tags: u64,
}

/// A blob that could not be imported (missing, corrupt, unreadable).
#[derive(Debug, Clone, Serialize)]
pub struct BadBlob {
    /// Its digest.
    pub digest: String,
    /// What is wrong with it.
    pub reason: String,
    /// The images (`repo:tag`) skipped because they need it.
    pub breaks: Vec<String>,
}

/// The report of one import pass.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// The `docker/registry/v2` directory read.
    pub root: String,
    /// Whether hard links were asked for.
    pub link: bool,
    /// Repositories with at least one tag imported or already there.
    pub repositories: u64,
    /// Tags written now.
    pub tags: u64,
    /// Manifests written now (index children included).
    pub manifests: u64,
    /// Blobs copied in now.
    pub blobs_copied: u64,
    /// Blobs hard-linked in now.
    pub blobs_linked: u64,
    /// Bytes of the blobs brought in now (copied or linked).
    pub bytes: u64,
    /// What was there already.
    pub already_there: AlreadyThere,
    /// Manifest revisions no tag reaches (deleted tags, untagged pushes):
    /// not imported, as `registry:2`'s own gc with `--delete-untagged` would drop them.
    pub untagged_left: u64,
    /// Blobs not imported, with the images they break.
    pub bad_blobs: Vec<BadBlob>,
    /// Everything else left out (invalid names, schema 1, symlinks, bad
    /// link files, images needing a bad blob), at most [`MAX_LISTED`].
    pub skipped: Vec<Skipped>,
    /// Skipped items beyond [`MAX_LISTED`], counted only.
    pub skipped_more: u64,
}

impl ImportReport {
    /// Notes something left out.
    pub fn skip(&mut self, s: Skipped) {
        if self.skipped.len() < MAX_LISTED {
            self.skipped.push(s);
        } else {
            self.skipped_more += 1;
        }
    }

    /// Fills [`ImportReport::bad_blobs`] from what the pass found.
    pub fn set_bad(&mut self, bad: BTreeMap<String, (String, Vec<String>)>) {
        self.bad_blobs = bad
            .into_iter()
            .take(MAX_LISTED)
            .map(|(digest, (reason, mut breaks))| {
                breaks.sort();
                breaks.dedup();
                BadBlob {
                    digest,
                    reason,
                    breaks,
                }
            })
            .collect();
    }
}
