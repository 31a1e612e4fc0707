//! Collection of a bucket several nodes share: this node's live set, and the
//! sweep that deletes blob objects no node needs (DESIGN's "Multi-node
//! (S3)").
//!
//! No node deletes a blob object on its own index's say-so (`S3Backend`
//! never deletes): local gc and eviction drop rows only. Objects go here,
//! on the one node holding the `gc-lease` (`shared/lease.rs`), as part of
//! its gc pass:
//!
//! 1. it writes a new `mark` into the lease and notes the bucket's clock
//!    then (`M`, the lease's Last-Modified); it publishes its own set;
//! 2. every node polls the lease, sees the mark and republishes its set
//!    (`shared/live.rs`): the commits in flight and the digests in use
//!    first, then every `blobs` row, so a commit ending in between is in
//!    one or the other. The sweeper waits, bounded, until every published
//!    set answers the mark; a node that does not (dead, cut off) keeps its
//!    older set counted, so its content stays;
//! 3. it reads every set into one set of raw digests, adds every digest a
//!    hosted manifest record names (`repos/<name>/manifests/<digest>`: the
//!    manifest and the blobs, children and subject its bytes reference);
//! 4. it lists `blobs/sha256/` (only gc lists the bucket; start-up never
//!    does) and deletes, in bulk, objects in no set, named by no record,
//!    and last modified before `M - grace`;
//! 5. it removes the fill leases (`fills/<hex>`) that lapsed before
//!    `M - grace`: left by nodes that died mid-download.
//!
//! Why that is safe: an object modified before `M` existed before any node
//! saw the mark, so a node answering the mark either has its row (in its
//! set), or has its commit in flight (in its set too: a commit holds its
//! digest from before the upload until its rows are written), or has no
//! use for it. An object written after `M` is never a candidate.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use redb::ReadableTable;
use serde::Serialize;

use super::shared::lease::{self, Lease, Taken};
use super::shared::live::{self, Raw, SetWriter};
use super::shared::{Bucket, failed};
use super::{Store, StoreError, tables};
use crate::oci::ManifestView;
use crate::oci::manifest::MAX_MANIFEST_BYTES;

/// Objects per bulk delete (S3's DeleteObjects takes at most 1000).
const DELETE_BATCH: usize = 1000;
/// How often the sweeper looks at the other nodes' sets while it waits.
const WAIT_STEP: Duration = Duration::from_millis(500);
/// Deleted digests listed by name in a report; the counts cover all.
const REPORT_LIST: usize = 1000;

/// What the bucket sweep did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BucketSweep {
    /// Another node holds the gc lease: this node did not sweep the bucket.
    pub held_by: Option<String>,
    /// Nodes whose live set answered this sweep's mark.
    pub nodes_answered: u64,
    /// Nodes whose set did not answer in time; their older sets were
    /// counted, so their content stays.
    pub nodes_stale: Vec<String>,
    /// Blob objects listed.
    pub listed: u64,
    /// Objects some live set or manifest record names.
    pub kept_live: u64,
    /// Unnamed objects modified within the grace (or after the mark).
    pub kept_young: u64,
    /// Objects deleted (would be, dry).
    pub deleted_objects: u64,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// The first deleted digests, with sizes.
    pub deleted: Vec<(String, u64)>,
    /// Fill leases (`fills/<hex>`) removed (would be, dry): left by nodes
    /// that died mid-download, lapsed longer than the grace ago.
    pub fill_leases_removed: u64,
}

impl Store {
    /// Publishes this node's live set to the shared bucket, answering
    /// `mark` (`None`: no sweep asked); nothing on files. Returns how many
    /// digests it named.
    pub async fn publish_live_set(&self, mark: Option<u64>) -> Result<usize, StoreError> {
        let Some(records) = self.records() else {
            return Ok(0);
        };
        let bucket = records.bucket().clone();
        // Commits in flight and uses first, rows after: a commit finishing
        // in between is in the rows.
        let mut early: Vec<String> = self
            .commits
            .digests()
            .iter()
            .map(|d| d.to_string())
            .collect();
        early.extend(self.in_use.digests());
        let node = bucket.node_id().to_owned();
        let set = self
            .meta
            .read(move |txn| {
                let mut set = SetWriter::new(&node, mark.unwrap_or(0));
                for d in &early {
                    set.push(d);
                }
                for item in txn.open_table(tables::BLOBS)?.iter()? {
                    set.push(item?.0.value());
                }
                Ok(set)
            })
            .await?;
        let n = set.len();
        live::publish(&bucket, set).await?;
        tracing::debug!(digests = n, ?mark, "live set published to the bucket");
        Ok(n)
    }

    /// The shared bucket's sweep (see the module doc), waiting at most
    /// `wait` for the other nodes' sets. Does nothing on files; when another
    /// node holds the lease, says so and does nothing.
    pub async fn sweep_bucket(
        &self,
        grace: Duration,
        dry_run: bool,
        wait: Duration,
    ) -> Result<BucketSweep, StoreError> {
        let Some(records) = self.records() else {
            return Ok(BucketSweep::default());
        };
        let bucket = records.bucket().clone();
        let mut lease = match lease::take(&bucket).await? {
            Taken::Ours(l) => l,
            Taken::Held { node, expires_unix } => {
                tracing::info!(holder = %node, expires_unix, "gc: another node holds the gc lease; this node does not sweep the bucket");
                return Ok(BucketSweep {
                    held_by: Some(node),
                    ..Default::default()
                });
            }
        };
        let result = self
            .sweep_holding(&bucket, &mut lease, grace, dry_run, wait)
            .await;
        lease.release().await;
        result
    }

    async fn sweep_holding(
        &self,
        bucket: &Arc<Bucket>,
        lease: &mut Lease,
        grace: Duration,
        dry_run: bool,
        wait: Duration,
    ) -> Result<BucketSweep, StoreError> {
        let mut out = BucketSweep::default();
        let (mark, marked_at) = lease.mark().await?;
        self.publish_live_set(Some(mark)).await?;
        // Wait for every published set to answer the mark.
        let deadline = Instant::now() + wait;
        let sets = loop {
            let sets = live::marks(bucket).await?;
            if sets.iter().all(|(_, m)| *m == mark) || Instant::now() >= deadline {
                break sets;
            }
            lease.keep().await?;
            tokio::time::sleep(WAIT_STEP).await;
        };
        let mut live_set: HashSet<Raw> = HashSet::new();
        for (node, m) in &sets {
            if *m == mark {
                out.nodes_answered += 1;
            } else {
                tracing::warn!(node = %node, "gc: a node did not publish its live set for this sweep; its older set is kept counted");
                out.nodes_stale.push(node.clone());
            }
            live::read_into(bucket, node, &mut live_set).await?;
            lease.keep().await?;
        }
        self.mark_manifest_records(bucket, lease, &mut live_set)
            .await?;
        let cutoff = marked_at - grace.as_millis() as i64;
        let mut candidates: Vec<(String, u64)> = Vec::new();
        let mut listing = bucket.objects().list(Some(&bucket.key("blobs/sha256")));
        while let Some(item) = listing.next().await {
            let meta = item.map_err(|e| failed("list", e))?;
            let Some(name) = meta.location.filename() else {
                continue;
            };
            let Some(raw) = live::raw_of(name) else {
                continue;
            };
            out.listed += 1;
            if live_set.contains(&raw) {
                out.kept_live += 1;
            } else if meta.last_modified.timestamp_millis() >= cutoff {
                out.kept_young += 1;
            } else if let Some(rel) = bucket.rel(&meta.location) {
                candidates.push((rel.to_owned(), meta.size));
            }
            if out.listed % 1000 == 0 {
                lease.keep().await?;
            }
        }
        drop(live_set);
        for batch in candidates.chunks(DELETE_BATCH) {
            let deleted = if dry_run {
                batch.len() as u64
            } else {
                // Still ours right before anything goes.
                lease.renew().await?;
                bucket
                    .delete_many(batch.iter().map(|(r, _)| r.clone()).collect())
                    .await?
            };
            out.deleted_objects += deleted;
            for (rel, size) in batch {
                out.deleted_bytes += size;
                if out.deleted.len() < REPORT_LIST {
                    let hex = rel.rsplit('/').next().unwrap_or(rel);
                    out.deleted.push((format!("sha256:{hex}"), *size));
                }
            }
        }
        // Leases of fills whose node died lapsed at least `grace` before the
        // mark (bucket clock): nothing waits on them any more.
        lease.keep().await?;
        let before = u64::try_from(cutoff.div_euclid(1000)).unwrap_or(0);
        out.fill_leases_removed = bucket
            .remove_lapsed_fill_leases(before, dry_run, lease)
            .await?;
        if out.deleted_objects > 0 {
            tracing::info!(
                objects = out.deleted_objects,
                bytes = out.deleted_bytes,
                dry_run,
                "gc: swept the shared bucket"
            );
        }
        Ok(out)
    }

    /// Adds to `live` every digest a hosted manifest record names: the
    /// manifest itself and what its bytes reference. A record that cannot
    /// be read or parsed stops the sweep (what it names is unknown).
    async fn mark_manifest_records(
        &self,
        bucket: &Arc<Bucket>,
        lease: &mut Lease,
        live: &mut HashSet<Raw>,
    ) -> Result<(), StoreError> {
        let mut listing = bucket.objects().list(Some(&bucket.key("repos")));
        let mut records = Vec::new();
        while let Some(item) = listing.next().await {
            let meta = item.map_err(|e| failed("list", e))?;
            let Some(rel) = bucket.rel(&meta.location) else {
                continue;
            };
            let Some((_, digest)) = rel.rsplit_once("/manifests/") else {
                continue;
            };
            let Some(raw) = live::raw_of(digest) else {
                continue;
            };
            live.insert(raw);
            records.push(rel.to_owned());
        }
        for rel in records {
            lease.keep().await?;
            let Some(small) = bucket.get_small(&rel, MAX_MANIFEST_BYTES as u64).await? else {
                continue; // deleted meanwhile
            };
            let bytes = small.bytes;
            let view = tokio::task::spawn_blocking(move || ManifestView::parse(&bytes, ""))
                .await?
                .map_err(|e| {
                    StoreError::Corrupt(format!(
                        "manifest record {rel} does not parse ({e}); the bucket sweep stopped, as what it names is unknown"
                    ))
                })?;
            for d in view
                .blobs
                .iter()
                .chain(&view.children)
                .chain(view.subject.as_ref())
            {
                if let Some(raw) = live::raw_of(&d.digest.to_string()) {
                    live.insert(raw);
                }
            }
        }
        Ok(())
    }
}
