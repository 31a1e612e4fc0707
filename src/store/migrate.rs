//! Index schema migrations, run once at start-up after reconciliation.
//!
//! Version 1 added `manifest_refs`, `access`, `pins`, `sweeping` and `schema`.
//! The new tables are created empty by [`super::Meta::open`]; what an index
//! written before them lacks is `manifest_refs` for the manifests it already
//! holds, which gc marks from. The migration parses every stored manifest's
//! bytes and fills the rows in bounded batches (one read transaction and one
//! write job per batch, file reads on a blocking thread), then records the
//! version. A crash part-way is harmless: the batches are idempotent and the
//! version is written last.

use std::ops::Bound;
use std::time::Instant;

use redb::ReadableTable;

use super::meta::{ManifestRecord, RefsRecord, decode, encode};
use super::{Content, Meta, StoreError, tables};
use crate::oci::{Digest, ManifestView};

/// The schema this build writes.
pub const SCHEMA_VERSION: u64 = 1;

/// Manifests per batch.
const BATCH: usize = 256;

/// The schema version an index records (0: written before versions existed).
pub(super) fn version(txn: &redb::ReadTransaction) -> Result<u64, StoreError> {
    Ok(txn
        .open_table(tables::SCHEMA)?
        .get("version")?
        .map(|v| v.value())
        .unwrap_or(0))
}

/// The references of the manifest stored as `digest` with `media_type`, read
/// from its file (blocking). None when the file is missing or unparsable.
pub(super) fn refs_from_file(
    files: &Content,
    digest: &str,
    media_type: &str,
) -> Option<RefsRecord> {
    let d: Digest = digest.parse().ok()?;
    let bytes = std::fs::read(files.path(&d)).ok()?;
    let view = ManifestView::parse(&bytes, media_type).ok()?;
    Some(RefsRecord::of(&view))
}

/// Brings the index to [`SCHEMA_VERSION`]; logs what it did.
pub(super) async fn migrate(meta: &Meta, files: &Content) -> Result<(), StoreError> {
    let from = meta.read(version).await?;
    if from >= SCHEMA_VERSION {
        return Ok(());
    }
    let started = Instant::now();
    let (mut seen, mut filled, mut unreadable) = (0usize, 0usize, 0usize);
    let mut after: Option<(String, String)> = None;
    loop {
        let f = files.clone();
        let from_key = after.clone();
        let batch = meta
            .read(move |txn| {
                let manifests = txn.open_table(tables::MANIFESTS)?;
                let refs = txn.open_table(tables::MANIFEST_REFS)?;
                let lower = match &from_key {
                    Some((r, d)) => Bound::Excluded((r.as_str(), d.as_str())),
                    None => Bound::Unbounded,
                };
                let mut out = Vec::new();
                for item in manifests.range::<(&str, &str)>((lower, Bound::Unbounded))? {
                    let (k, v) = item?;
                    let (r, d) = k.value();
                    let key = (r.to_owned(), d.to_owned());
                    let found = if refs.get((r, d))?.is_some() {
                        None
                    } else {
                        let rec: ManifestRecord = decode(v.value())?;
                        Some(refs_from_file(&f, d, &rec.media_type))
                    };
                    out.push((key, found));
                    if out.len() == BATCH {
                        break;
                    }
                }
                Ok(out)
            })
            .await?;
        let Some((last, _)) = batch.last() else {
            break;
        };
        after = Some(last.clone());
        seen += batch.len();
        let mut rows = Vec::new();
        for ((r, d), found) in batch {
            match found {
                None => {}
                Some(Some(refs)) => rows.push((r, d, encode(&refs)?)),
                Some(None) => {
                    unreadable += 1;
                    tracing::warn!(repo = %r, digest = %d, "migration: manifest file missing or unparsable; its references stay unknown (gc keeps every blob of its repository)");
                }
            }
        }
        filled += rows.len();
        if !rows.is_empty() {
            meta.write(move |txn| {
                let manifests = txn.open_table(tables::MANIFESTS)?;
                let mut refs = txn.open_table(tables::MANIFEST_REFS)?;
                for (r, d, v) in &rows {
                    // A manifest deleted since the read keeps no references.
                    if manifests.get((r.as_str(), d.as_str()))?.is_some() {
                        refs.insert((r.as_str(), d.as_str()), v.as_slice())?;
                    }
                }
                Ok(())
            })
            .await?;
        }
    }
    meta.write(|txn| {
        txn.open_table(tables::SCHEMA)?
            .insert("version", SCHEMA_VERSION)?;
        Ok(())
    })
    .await?;
    if seen == 0 {
        tracing::debug!(from, to = SCHEMA_VERSION, "index schema recorded");
        return Ok(());
    }
    tracing::info!(
        from,
        to = SCHEMA_VERSION,
        manifests = seen,
        references_filled = filled,
        unreadable,
        ms = started.elapsed().as_millis() as u64,
        "index migrated"
    );
    Ok(())
}
