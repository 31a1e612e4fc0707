//! Online garbage collection: mark on a read snapshot, sweep in write jobs
//! that check every candidate again, files after the commit.
//!
//! Live (marked): every manifest row's digest (an untagged manifest is live
//! until deleted) and everything its `manifest_refs` name, recursively; the
//! pins' closures; every blob linked into a repository holding a manifest
//! whose references cannot be known; digests in use (readers, downloads).
//! Upload sessions have no digest until they finish (and `tmp/` is never
//! touched). Links in `repo_blobs` are not marks: a blob pushed and never
//! named by a manifest is garbage once older than the grace.
//!
//! A blob is swept when nothing marks it and its last touch (or creation) is
//! at least `grace` old. Pushes racing the pass are safe: a manifest PUT, an
//! upload or a mount touches its digests before its write job, and notes them
//! inside it (`changes.rs`); the sweep's write job runs on the same single
//! writer thread and skips any candidate touched within the grace or noted
//! since the mark; a manifest PUT's own write job checks that every blob it
//! names still has a `blobs` row, so it fails (MANIFEST_BLOB_UNKNOWN) rather
//! than commit naming swept content.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::ReadableTable;

use super::access::last_touch;
use super::closure::{RefTables, keep_unknown, pinned};
use super::meta::{BlobRecord, Origin, decode};
use super::pacer::Pacer;
use super::sweep::remove_blob_rows;
use super::{Store, StoreError, tables, unix_now};

/// Candidates per sweep write job (each job holds the writer briefly).
const SWEEP_BATCH: usize = 512;

/// What one collection did (or, dry, would do).
#[derive(Debug, Clone, Default)]
pub struct GcOutcome {
    /// Content rows something marks.
    pub marked_blobs: u64,
    /// Digests removed (or that would be) with their sizes.
    pub swept: Vec<(String, u64)>,
    /// Unmarked but touched or created within the grace.
    pub kept_young: u64,
    /// Unmarked but in use by a reader or a download.
    pub kept_in_use: u64,
    /// Time spent marking.
    pub mark: Duration,
    /// Time spent sweeping (rows and files).
    pub sweep: Duration,
}

impl GcOutcome {
    /// Bytes of the swept digests.
    pub fn swept_bytes(&self) -> u64 {
        self.swept.iter().map(|(_, s)| *s).sum()
    }
}

/// One unmarked, old digest and the repositories linking it at the mark.
struct Candidate {
    digest: String,
    size: u64,
    links: Vec<String>,
}

/// Whether `last` (unix seconds) is at least `grace` before `now`.
pub(super) fn is_old(now: u64, last: u64, grace: Duration) -> bool {
    now.saturating_sub(last) >= grace.as_secs()
}

impl Store {
    /// One collection: see the module doc. `dry_run` reports what would go
    /// and changes nothing.
    pub async fn collect_garbage(
        &self,
        grace: Duration,
        dry_run: bool,
    ) -> Result<GcOutcome, StoreError> {
        if !dry_run {
            self.finish_sweeps().await?;
        }
        let watch = self.watch_changes().await?;
        let started = Instant::now();
        let mem = self.access.snapshot();
        let in_use = self.in_use.clone();
        let (marked_blobs, candidates, mut kept_young, mut kept_in_use) = self
            .meta
            .read(move |txn| {
                let manifests = txn.open_table(tables::MANIFESTS)?;
                let refs = txn.open_table(tables::MANIFEST_REFS)?;
                let t = RefTables {
                    manifests: &manifests,
                    refs: &refs,
                };
                let mut live = HashSet::new();
                let mut unknown = HashSet::new();
                let mut pace = Pacer::new();
                for item in manifests.iter()? {
                    pace.tick();
                    let (k, _) = item?;
                    let (r, d) = k.value();
                    live.insert(d.to_owned());
                    match t.refs_of(r, d)? {
                        Some(Some(rec)) => {
                            live.extend(rec.blobs);
                            live.extend(rec.manifests);
                        }
                        _ => {
                            unknown.insert(r.to_owned());
                        }
                    }
                }
                live.extend(pinned(
                    &txn.open_table(tables::PINS)?,
                    &txn.open_table(tables::TAGS)?,
                    &t,
                    &mut unknown,
                )?);
                let links = txn.open_table(tables::REPO_BLOBS)?;
                if !unknown.is_empty() {
                    tracing::warn!(repos = ?unknown, "gc keeps every blob of repositories holding a manifest whose references cannot be read");
                    keep_unknown(&links, &manifests, &unknown, &mut live)?;
                }
                let access = txn.open_table(tables::ACCESS)?;
                let now = unix_now();
                let (mut marked, mut young, mut used) = (0u64, 0u64, 0u64);
                let mut candidates = HashMap::new();
                for item in txn.open_table(tables::BLOBS)?.iter()? {
                    pace.tick();
                    let (k, v) = item?;
                    let d = k.value();
                    if live.contains(d) {
                        marked += 1;
                        continue;
                    }
                    let rec: BlobRecord = decode(v.value())?;
                    let flushed = access.get(d)?.map(|v| v.value()).unwrap_or(0);
                    let last = rec
                        .created
                        .max(flushed)
                        .max(mem.get(d).copied().unwrap_or(0));
                    if !is_old(now, last, grace) {
                        young += 1;
                    } else if in_use.contains(d) {
                        used += 1;
                    } else {
                        candidates.insert(d.to_owned(), rec.size);
                    }
                }
                let wanted: HashSet<String> = candidates.keys().cloned().collect();
                let mut linked = super::sweep::links_of(&links, &wanted)?;
                let mut out: Vec<Candidate> = candidates
                    .into_iter()
                    .map(|(digest, size)| Candidate {
                        links: linked.remove(&digest).unwrap_or_default(),
                        digest,
                        size,
                    })
                    .collect();
                out.sort_by(|a, b| a.digest.cmp(&b.digest));
                Ok((marked, out, young, used))
            })
            .await?;
        let mark = started.elapsed();
        let started = Instant::now();
        let mut swept = Vec::new();
        if dry_run {
            swept = candidates.into_iter().map(|c| (c.digest, c.size)).collect();
        } else {
            let watch = Arc::new(watch);
            let mut removed_files = Vec::new();
            let mut delta = 0i64;
            let mut batches: Vec<Vec<Candidate>> = Vec::new();
            let mut rest = candidates;
            while !rest.is_empty() {
                let tail = rest.split_off(rest.len().min(SWEEP_BATCH));
                batches.push(std::mem::replace(&mut rest, tail));
            }
            for batch in batches {
                let batch = Arc::new(batch);
                let (w, b) = (watch.clone(), batch.clone());
                let store_in_use = self.in_use.clone();
                let touches = self.access_handle();
                let (gone, young, used) = self
                    .meta
                    .write(move |txn| {
                        let now = unix_now();
                        let (mut gone, mut young, mut used) = (Vec::new(), 0u64, 0u64);
                        for c in b.iter() {
                            let created =
                                match txn.open_table(tables::BLOBS)?.get(c.digest.as_str())? {
                                    Some(v) => decode::<BlobRecord>(v.value())?.created,
                                    None => continue,
                                };
                            let touched =
                                last_touch(&touches, &txn.open_table(tables::ACCESS)?, &c.digest)?
                                    .unwrap_or(0);
                            if w.contains(&c.digest) || !is_old(now, created.max(touched), grace) {
                                young += 1;
                                continue;
                            }
                            if store_in_use.contains(&c.digest) {
                                used += 1;
                                continue;
                            }
                            if let Some(r) = remove_blob_rows(txn, &c.digest, &c.links)? {
                                gone.push(r);
                            }
                        }
                        Ok((gone, young, used))
                    })
                    .await?;
                kept_young += young;
                kept_in_use += used;
                for r in gone {
                    if r.origin == Origin::Cached {
                        delta -= r.size as i64;
                    }
                    removed_files.push(r.digest.clone());
                    swept.push((r.digest, r.size));
                }
            }
            self.cache_delta(delta);
            if !removed_files.is_empty() {
                tracing::info!(
                    blobs = removed_files.len(),
                    "gc: rows removed, removing files"
                );
            }
            self.remove_swept_files(removed_files).await?;
        }
        Ok(GcOutcome {
            marked_blobs,
            swept,
            kept_young,
            kept_in_use,
            mark,
            sweep: started.elapsed(),
        })
    }
}
