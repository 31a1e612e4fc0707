//! Index schema migrations, run once at start-up after reconciliation.
//!
//! Version 1 added `manifest_refs`, `access`, `pins`, `sweeping` and `schema`.
//! The new tables are created empty by [`super::Meta::open`]; what an index
//! written before them lacks is `manifest_refs` for the manifests it already
//! holds, which gc marks from. The migration reads every such manifest's
//! content through the content seam and fills the rows in bounded batches:
//! one read transaction to list a batch (index rows only), the reads and
//! parses outside any transaction, one write job per batch. A manifest whose
//! content is missing or unparsable gets a row too, marked unknown: gc and
//! the pins then keep everything linked in its repository (the safe answer),
//! and nothing ever has to read content inside a transaction.
//!
//! Guarantee: after start-up every manifest row has a `manifest_refs` row.
//! The fill also runs whenever the two tables' lengths differ (an older
//! wharf wrote manifests after the version was recorded), which costs two
//! O(1) length reads on a normal start: every path that removes a manifest
//! row removes its references row in the same transaction, so equal lengths
//! mean every manifest has its row. A crash part-way is harmless: the
//! batches are idempotent and the version is written last.

use std::ops::Bound;
use std::time::Instant;

use redb::{ReadableTable, ReadableTableMetadata};

use super::meta::{ManifestRecord, RefsRecord, decode, encode};
use super::{Content, Meta, StoreError, tables};
use crate::oci::{Digest, ManifestView, manifest::MAX_MANIFEST_BYTES};

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

/// One manifest without a references row, as listed for a batch.
struct Missing {
    repo: String,
    digest: String,
    media_type: String,
    size: u64,
}

/// The references of a stored manifest, read through the content seam and
/// parsed off the runtime; [`RefsRecord::unknown`] when its content is
/// missing, too large or unparsable (logged).
async fn refs_of_content(files: &Content, m: &Missing) -> Result<RefsRecord, StoreError> {
    let Ok(digest) = m.digest.parse::<Digest>() else {
        return Ok(RefsRecord::unknown());
    };
    let bytes = match files.read_small(&digest, m.size, MAX_MANIFEST_BYTES).await {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(RefsRecord::unknown()),
        Err(e) => {
            tracing::warn!(digest = %m.digest, error = %e, "migration: manifest content unreadable");
            return Ok(RefsRecord::unknown());
        }
    };
    let media_type = m.media_type.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        ManifestView::parse(&bytes, &media_type).map(|v| RefsRecord::of(&v))
    })
    .await?;
    Ok(parsed.unwrap_or_else(|_| RefsRecord::unknown()))
}

/// A `manifests` key: (repository, digest).
type Key = (String, String);

/// Lists up to [`BATCH`] manifests after `after` that have no references
/// row, and the last key looked at (None: the table ended).
fn list_missing(
    txn: &redb::ReadTransaction,
    after: Option<&Key>,
) -> Result<(Vec<Missing>, Option<Key>), StoreError> {
    let manifests = txn.open_table(tables::MANIFESTS)?;
    let refs = txn.open_table(tables::MANIFEST_REFS)?;
    let lower = match after {
        Some((r, d)) => Bound::Excluded((r.as_str(), d.as_str())),
        None => Bound::Unbounded,
    };
    let mut out = Vec::new();
    let mut last = None;
    for item in manifests.range::<(&str, &str)>((lower, Bound::Unbounded))? {
        let (k, v) = item?;
        let (r, d) = k.value();
        last = Some((r.to_owned(), d.to_owned()));
        if refs.get((r, d))?.is_some() {
            continue;
        }
        let rec: ManifestRecord = decode(v.value())?;
        out.push(Missing {
            repo: r.to_owned(),
            digest: d.to_owned(),
            media_type: rec.media_type,
            size: rec.size,
        });
        if out.len() == BATCH {
            break;
        }
    }
    Ok((out, last))
}

/// Brings the index to [`SCHEMA_VERSION`] and makes sure every manifest has
/// its references row; logs what it did.
pub(super) async fn migrate(meta: &Meta, files: &Content) -> Result<(), StoreError> {
    let (from, complete) = meta
        .read(|txn| {
            let manifests = txn.open_table(tables::MANIFESTS)?.len()?;
            let refs = txn.open_table(tables::MANIFEST_REFS)?.len()?;
            Ok((version(txn)?, manifests == refs))
        })
        .await?;
    if from >= SCHEMA_VERSION && complete {
        return Ok(());
    }
    let started = Instant::now();
    let (mut filled, mut unknown) = (0usize, 0usize);
    let mut after: Option<Key> = None;
    loop {
        let from_key = after.clone();
        let (batch, last) = meta
            .read(move |txn| list_missing(txn, from_key.as_ref()))
            .await?;
        let mut rows = Vec::with_capacity(batch.len());
        for m in batch {
            let refs = refs_of_content(files, &m).await?;
            if refs.unknown {
                unknown += 1;
                tracing::warn!(repo = %m.repo, digest = %m.digest, "migration: manifest content missing or unparsable; its references stay unknown (gc and pins keep every blob of its repository)");
            }
            rows.push((m.repo, m.digest, encode(&refs)?));
        }
        filled += rows.len();
        if !rows.is_empty() {
            meta.write(move |txn| {
                let manifests = txn.open_table(tables::MANIFESTS)?;
                let mut refs = txn.open_table(tables::MANIFEST_REFS)?;
                for (r, d, v) in &rows {
                    // A manifest deleted since the read keeps no references;
                    // one written since has its own row already.
                    let key = (r.as_str(), d.as_str());
                    if manifests.get(key)?.is_some() && refs.get(key)?.is_none() {
                        refs.insert(key, v.as_slice())?;
                    }
                }
                Ok(())
            })
            .await?;
        }
        match last {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    if from < SCHEMA_VERSION {
        meta.write(|txn| {
            txn.open_table(tables::SCHEMA)?
                .insert("version", SCHEMA_VERSION)?;
            Ok(())
        })
        .await?;
    }
    if filled == 0 {
        tracing::debug!(from, to = SCHEMA_VERSION, "index schema recorded");
        return Ok(());
    }
    tracing::info!(
        from,
        to = SCHEMA_VERSION,
        references_filled = filled,
        unknown,
        ms = started.elapsed().as_millis() as u64,
        "index migrated: every manifest has its references"
    );
    Ok(())
}
