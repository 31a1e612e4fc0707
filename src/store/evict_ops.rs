//! Eviction: cached (mirrored) content, least recently touched first, until
//! the cached bytes are under the low watermark of `[storage] max_cache_size`.
//!
//! Never evicted: pushed content (a digest linked into any hosted repository
//! is labelled pushed), the closure of any pin, a digest in use (an open
//! reader, a download in flight). Evicting a manifest removes its manifest
//! rows, their `manifest_refs` rows and the mirrored tags pointing at it;
//! evicting a blob removes its `blobs` row and its links. The choice is made
//! on a read snapshot; each write job checks its victims again (still cached,
//! not pinned now, not in use, not named or touched since the snapshot) and
//! removes their rows, listing them in `sweeping`; the files go after the
//! commit (`sweep.rs`). Evicted content comes back through the normal miss
//! path on the next pull.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use redb::ReadableTable;

use super::access::last_touch;
use super::closure::{RefTables, keep_unknown, pinned};
use super::meta::{BlobRecord, Origin, decode};
use super::pacer::Pacer;
use super::sweep::{remove_blob_rows, remove_manifest_only, remove_tags_naming};
use super::{Store, StoreError, tables};

/// Victims per write job.
const EVICT_BATCH: usize = 512;

/// What one eviction pass did.
#[derive(Debug, Clone, Default)]
pub struct EvictOutcome {
    /// Content files evicted (blobs and manifests).
    pub evicted_blobs: u64,
    /// Their bytes.
    pub evicted_bytes: u64,
    /// Cached bytes when the pass started.
    pub cached_bytes_before: u64,
    /// Cached bytes when it ended.
    pub cached_bytes_after: u64,
    /// The budget (`max_cache_size`; 0: unlimited, nothing done).
    pub budget: u64,
    /// Cached digests passed over because a pin protects them.
    pub skipped_pinned: u64,
    /// Cached digests passed over because they are being read or downloaded.
    pub skipped_in_use: u64,
}

/// One cached digest chosen at the snapshot.
struct Victim {
    digest: String,
    /// Its last touch at the snapshot (a later one means someone read it).
    last: u64,
    /// Repositories linking it.
    links: Vec<String>,
    /// Repositories holding it as a manifest.
    manifests: Vec<String>,
}

/// What the pins protect from eviction: their closures, and everything
/// linked in a repository where a pinned closure meets a manifest whose
/// references cannot be known.
fn protected<M, R>(
    pins: &impl ReadableTable<&'static str, &'static [u8]>,
    tags: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    links: &impl ReadableTable<(&'static str, &'static str), ()>,
    manifests: &M,
    refs: &R,
) -> Result<HashSet<String>, StoreError>
where
    M: ReadableTable<(&'static str, &'static str), &'static [u8]>,
    R: ReadableTable<(&'static str, &'static str), &'static [u8]>,
{
    let t = RefTables { manifests, refs };
    let mut unknown = HashSet::new();
    let mut out = pinned(pins, tags, &t, &mut unknown)?;
    keep_unknown(links, manifests, &unknown, &mut out)?;
    Ok(out)
}

impl Store {
    /// One eviction pass down to `low_watermark` × budget, when the cached
    /// bytes are over the budget; see the module doc.
    pub async fn evict(&self, low_watermark: f64) -> Result<EvictOutcome, StoreError> {
        let budget = self.cache_budget();
        let mut out = EvictOutcome {
            budget,
            cached_bytes_before: self.cached_bytes(),
            ..EvictOutcome::default()
        };
        if budget == 0 {
            out.cached_bytes_after = out.cached_bytes_before;
            return Ok(out);
        }
        self.finish_sweeps().await?;
        let watch = Arc::new(self.watch_changes().await?);
        let target = (budget as f64 * low_watermark.clamp(0.0, 1.0)) as u64;
        let mem = self.access.snapshot();
        let in_use = self.in_use.clone();
        let (cached, victims, skipped_pinned, skipped_in_use) = self
            .meta
            .read(move |txn| {
                let manifests = txn.open_table(tables::MANIFESTS)?;
                let refs = txn.open_table(tables::MANIFEST_REFS)?;
                let pins = protected(
                    &txn.open_table(tables::PINS)?,
                    &txn.open_table(tables::TAGS)?,
                    &txn.open_table(tables::REPO_BLOBS)?,
                    &manifests,
                    &refs,
                )?;
                let access = txn.open_table(tables::ACCESS)?;
                let mut total = 0u64;
                let mut lru = Vec::new();
                let mut pace = Pacer::new();
                for item in txn.open_table(tables::BLOBS)?.iter()? {
                    pace.tick();
                    let (k, v) = item?;
                    let rec: BlobRecord = decode(v.value())?;
                    if rec.origin != Origin::Cached {
                        continue;
                    }
                    total += rec.size;
                    let d = k.value();
                    let flushed = access.get(d)?.map(|v| v.value()).unwrap_or(0);
                    let last = rec
                        .created
                        .max(flushed)
                        .max(mem.get(d).copied().unwrap_or(0));
                    lru.push((last, d.to_owned(), rec.size));
                }
                if total <= budget {
                    return Ok((total, Vec::new(), 0, 0));
                }
                lru.sort();
                let (mut pinned_n, mut used_n) = (0u64, 0u64);
                let mut left = total;
                let mut chosen: HashMap<String, u64> = HashMap::new();
                for (last, d, size) in lru {
                    if left <= target {
                        break;
                    }
                    if pins.contains(&d) {
                        pinned_n += 1;
                        continue;
                    }
                    if in_use.contains(&d) {
                        used_n += 1;
                        continue;
                    }
                    left -= size;
                    chosen.insert(d, last);
                }
                let wanted: HashSet<String> = chosen.keys().cloned().collect();
                let mut links =
                    super::sweep::links_of(&txn.open_table(tables::REPO_BLOBS)?, &wanted)?;
                let mut holders: HashMap<String, Vec<String>> = HashMap::new();
                for item in manifests.iter()? {
                    pace.tick();
                    let (k, _) = item?;
                    let (r, d) = k.value();
                    if wanted.contains(d) {
                        holders.entry(d.to_owned()).or_default().push(r.to_owned());
                    }
                }
                let mut victims: Vec<Victim> = chosen
                    .into_iter()
                    .map(|(digest, last)| Victim {
                        links: links.remove(&digest).unwrap_or_default(),
                        manifests: holders.remove(&digest).unwrap_or_default(),
                        digest,
                        last,
                    })
                    .collect();
                victims.sort_by_key(|v| v.last);
                Ok((total, victims, pinned_n, used_n))
            })
            .await?;
        out.cached_bytes_before = cached;
        out.skipped_pinned = skipped_pinned;
        out.skipped_in_use = skipped_in_use;
        let mut removed_files = Vec::new();
        let mut batches: Vec<Vec<Victim>> = Vec::new();
        let mut rest = victims;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(EVICT_BATCH));
            batches.push(std::mem::replace(&mut rest, tail));
        }
        for batch in batches {
            let batch = Arc::new(batch);
            let (w, b) = (watch.clone(), batch.clone());
            let in_use = self.in_use.clone();
            let touches = self.access_handle();
            let (gone, pinned_n, used_n) = self
                .meta
                .write(move |txn| {
                    let (mut gone, mut pinned_n, mut used_n) = (Vec::new(), 0u64, 0u64);
                    // Tags of evicted manifests go at the end, one scan per repository.
                    let mut untag: HashMap<String, HashSet<String>> = HashMap::new();
                    let pins = protected(
                        &txn.open_table(tables::PINS)?,
                        &txn.open_table(tables::TAGS)?,
                        &txn.open_table(tables::REPO_BLOBS)?,
                        &txn.open_table(tables::MANIFESTS)?,
                        &txn.open_table(tables::MANIFEST_REFS)?,
                    )?;
                    for v in b.iter() {
                        let origin = match txn.open_table(tables::BLOBS)?.get(v.digest.as_str())? {
                            Some(r) => decode::<BlobRecord>(r.value())?.origin,
                            None => continue,
                        };
                        if origin != Origin::Cached || w.contains(&v.digest) {
                            continue;
                        }
                        let touched =
                            last_touch(&touches, &txn.open_table(tables::ACCESS)?, &v.digest)?
                                .unwrap_or(0);
                        if touched > v.last {
                            continue;
                        }
                        if pins.contains(&v.digest) {
                            pinned_n += 1;
                            continue;
                        }
                        if in_use.contains(&v.digest) {
                            used_n += 1;
                            continue;
                        }
                        for r in &v.manifests {
                            if remove_manifest_only(txn, r, &v.digest)? {
                                untag.entry(r.clone()).or_default().insert(v.digest.clone());
                            }
                        }
                        if let Some(r) = remove_blob_rows(txn, &v.digest, &v.links)? {
                            gone.push(r);
                        }
                    }
                    for (repo, digests) in &untag {
                        remove_tags_naming(txn, repo, digests)?;
                    }
                    Ok((gone, pinned_n, used_n))
                })
                .await?;
            out.skipped_pinned += pinned_n;
            out.skipped_in_use += used_n;
            let bytes: u64 = gone.iter().map(|r| r.size).sum();
            self.cache_delta(-(bytes as i64));
            out.evicted_blobs += gone.len() as u64;
            out.evicted_bytes += bytes;
            removed_files.extend(gone.into_iter().map(|r| r.digest));
        }
        if !removed_files.is_empty() {
            tracing::info!(
                blobs = removed_files.len(),
                bytes = out.evicted_bytes,
                "evict: rows removed, removing files"
            );
        }
        self.remove_swept_files(removed_files).await?;
        out.cached_bytes_after = self.cached_bytes();
        Ok(out)
    }
}
