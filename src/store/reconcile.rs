//! Start-up repair: after a crash the index and the files may disagree in two
//! ways, both fixed here before the first request is served.

use std::collections::HashSet;

use redb::ReadableTable;

use super::meta::{ManifestRecord, TagRecord, decode};
use super::{Store, StoreError, tables};
use crate::oci::Digest;

/// Removes every row that names `gone` digests (their files are lost).
fn drop_rows(txn: &redb::WriteTransaction, gone: &HashSet<String>) -> Result<(), StoreError> {
    let mut blobs = txn.open_table(tables::BLOBS)?;
    for d in gone {
        blobs.remove(d.as_str())?;
    }
    let mut links = txn.open_table(tables::REPO_BLOBS)?;
    let doomed: Vec<(String, String)> = links
        .iter()?
        .filter_map(|i| i.ok())
        .map(|(k, _)| {
            let (r, d) = k.value();
            (r.to_owned(), d.to_owned())
        })
        .filter(|(_, d)| gone.contains(d))
        .collect();
    for (r, d) in doomed {
        links.remove((r.as_str(), d.as_str()))?;
    }
    let mut manifests = txn.open_table(tables::MANIFESTS)?;
    let mut doomed = Vec::new();
    for item in manifests.iter()? {
        let (k, v) = item?;
        let (r, d) = k.value();
        if gone.contains(d) {
            doomed.push((
                r.to_owned(),
                d.to_owned(),
                decode::<ManifestRecord>(v.value())?.subject,
            ));
        }
    }
    let mut referrers = txn.open_table(tables::REFERRERS)?;
    for (r, d, subject) in &doomed {
        manifests.remove((r.as_str(), d.as_str()))?;
        if let Some(s) = subject {
            referrers.remove((r.as_str(), s.as_str(), d.as_str()))?;
        }
    }
    let mut tags = txn.open_table(tables::TAGS)?;
    let mut doomed = Vec::new();
    for item in tags.iter()? {
        let (k, v) = item?;
        if gone.contains(&decode::<TagRecord>(v.value())?.digest) {
            let (r, t) = k.value();
            doomed.push((r.to_owned(), t.to_owned()));
        }
    }
    for (r, t) in doomed {
        tags.remove((r.as_str(), t.as_str()))?;
    }
    Ok(())
}

impl Store {
    /// Files without rows are removed (nothing references them); rows without
    /// files are removed with everything that points at them; upload rows go
    /// because `tmp/` was emptied; content linked into hosted repositories is
    /// labelled pushed (indexes written before every route did so).
    pub(super) async fn reconcile(&self) -> Result<(), StoreError> {
        let files = self.files.clone();
        let on_disk: HashSet<String> = tokio::task::spawn_blocking(move || files.list())
            .await??
            .iter()
            .map(Digest::to_string)
            .collect();
        let indexed: HashSet<String> = self
            .meta
            .read(|txn| {
                let t = txn.open_table(tables::BLOBS)?;
                let mut out = HashSet::new();
                for item in t.iter()? {
                    out.insert(item?.0.value().to_owned());
                }
                Ok(out)
            })
            .await?;
        let orphans: Vec<Digest> = on_disk
            .difference(&indexed)
            .filter_map(|d| d.parse().ok())
            .collect();
        let gone: HashSet<String> = indexed.difference(&on_disk).cloned().collect();
        if !gone.is_empty() {
            tracing::warn!(
                count = gone.len(),
                "index rows whose files are missing removed"
            );
        }
        let relabelled = self
            .meta
            .write(move |txn| {
                drop_rows(txn, &gone)?;
                let mut uploads = txn.open_table(tables::UPLOADS)?;
                let ids: Vec<String> = uploads
                    .iter()?
                    .filter_map(|i| i.ok())
                    .map(|(k, _)| k.value().to_owned())
                    .collect();
                for id in ids {
                    uploads.remove(id.as_str())?;
                }
                drop(uploads);
                super::labels::relabel_hosted(txn)
            })
            .await?;
        if relabelled > 0 {
            tracing::info!(
                count = relabelled,
                "content linked into hosted repositories relabelled as pushed"
            );
        }
        if !orphans.is_empty() {
            tracing::info!(
                count = orphans.len(),
                "content files without index rows removed"
            );
            let files = self.files.clone();
            tokio::task::spawn_blocking(move || {
                for d in &orphans {
                    files.remove(d)?;
                }
                Ok::<(), StoreError>(())
            })
            .await??;
        }
        Ok(())
    }
}
