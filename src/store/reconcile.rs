//! Start-up repair: after a crash the index and the files may disagree in two
//! ways, both settled here before the first request is served.
//!
//! A crash between a file's rename and its index write leaves a file without a
//! row (an orphan); it is moved to `lost+found/`, never deleted. A row without
//! a file cannot come from a crash (a file is in place before its row is
//! written, and a row goes before its file): a few such rows are dropped and
//! logged, but content missing in bulk means
//! the files are somewhere else (an unmounted volume, a wrong symlink, an index
//! restored from elsewhere), and start-up stops without changing anything. No
//! single decision here destroys both a row and a file.

use std::collections::HashSet;
use std::path::Path;

use redb::ReadableTable;

use super::content::lost_found;
use super::meta::{ManifestRecord, TagRecord, decode};
use super::{Content, Meta, StoreError, tables};
use crate::oci::Digest;

/// Missing files tolerated (their rows dropped) however small the store is.
const MISSING_FLOOR: usize = 10;

/// Whether `missing` of `indexed` blobs without files is a mass mismatch that
/// must stop start-up: all of them, or more than max(10, 10 %).
pub(super) fn is_mass_loss(missing: usize, indexed: usize) -> bool {
    missing > 0 && (missing == indexed || missing > MISSING_FLOOR.max(indexed / 10))
}

/// The text of [`StoreError::ContentMissing`]: what is missing, how much, where,
/// what to check and what to do if the content really is gone.
pub(super) fn content_missing_message(
    blobs: &str,
    index: &Path,
    missing: Option<usize>,
    indexed: usize,
) -> String {
    let what = if let Some(missing) = missing {
        format!(
            "{missing} of the {indexed} blobs named by the index {} have no file under {blobs}",
            index.display(),
        )
    } else {
        format!(
            "the index {} names {indexed} blobs but {blobs} does not exist",
            index.display(),
        )
    };
    let root = index.parent().unwrap_or(Path::new("."));
    format!(
        "{what}. Refusing to start, and nothing was changed. Check that the storage \
         volume is mounted, that any symlink on that path points where it should, and \
         that index.redb belongs to this data directory (not one restored from another \
         machine or an older backup). If the content really is lost, move index.redb \
         aside and start again: wharf then starts with an empty index and moves the \
         files still under blobs/ to {} (pushed images must be pushed again).",
        lost_found::dir(root).display()
    )
}

/// Removes every row that names `gone` digests (their files are lost).
fn drop_rows(txn: &redb::WriteTransaction, gone: &HashSet<String>) -> Result<(), StoreError> {
    let mut blobs = txn.open_table(tables::BLOBS)?;
    let mut access = txn.open_table(tables::ACCESS)?;
    for d in gone {
        blobs.remove(d.as_str())?;
        access.remove(d.as_str())?;
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
    let mut refs = txn.open_table(tables::MANIFEST_REFS)?;
    for (r, d, subject) in &doomed {
        manifests.remove((r.as_str(), d.as_str()))?;
        refs.remove((r.as_str(), d.as_str()))?;
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

/// Settles the index against the files; see the module doc. Upload rows go
/// because `tmp/` was emptied.
pub(super) async fn reconcile(meta: &Meta, files: &Content, root: &Path) -> Result<(), StoreError> {
    let indexed: HashSet<String> = meta
        .read(|txn| {
            let t = txn.open_table(tables::BLOBS)?;
            let mut out = HashSet::new();
            for item in t.iter()? {
                out.insert(item?.0.value().to_owned());
            }
            Ok(out)
        })
        .await?;
    let content_missing = |missing: Option<usize>| StoreError::ContentMissing {
        blobs: files.location(),
        index: root.join("index.redb"),
        missing,
        indexed: indexed.len(),
    };
    let present = files.prepare(indexed.is_empty()).await?;
    if !present {
        return Err(content_missing(None));
    }
    let gone = if files.scans_at_start() {
        settle_content(files, &indexed, &content_missing).await?
    } else {
        HashSet::new()
    };
    for d in &gone {
        tracing::warn!(digest = %d, "index row dropped: its content file is missing");
    }
    let relabelled = meta
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
    Ok(())
}

/// Walks the content against the index: sets aside content without rows and
/// returns the rows whose content is missing (refusing a mass loss).
async fn settle_content(
    files: &Content,
    indexed: &HashSet<String>,
    content_missing: &impl Fn(Option<usize>) -> StoreError,
) -> Result<HashSet<String>, StoreError> {
    let scan = files.scan().await?;
    let on_disk: HashSet<String> = scan.content.iter().map(Digest::to_string).collect();
    let gone: HashSet<String> = indexed.difference(&on_disk).cloned().collect();
    if is_mass_loss(gone.len(), indexed.len()) {
        return Err(content_missing(Some(gone.len())));
    }
    let orphans: Vec<Digest> = scan
        .content
        .iter()
        .filter(|d| !indexed.contains(&d.to_string()))
        .cloned()
        .collect();
    files.set_aside(orphans, scan.strays).await?;
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::is_mass_loss;

    #[test]
    fn mass_loss_rule() {
        assert!(!is_mass_loss(0, 0));
        assert!(!is_mass_loss(0, 1000));
        assert!(is_mass_loss(1, 1), "all of them");
        assert!(is_mass_loss(3, 3), "all of them");
        assert!(!is_mass_loss(10, 50), "a few");
        assert!(is_mass_loss(11, 50));
        assert!(!is_mass_loss(100, 1000), "10 % exactly");
        assert!(is_mass_loss(101, 1000));
    }
}
