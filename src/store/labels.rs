//! The origin label of content rows. DESIGN: a blob or manifest linked into a
//! hosted repository is `pushed`, whatever route brought it (a cross-repository
//! mount from a mirrored repository, a manifest push of bytes already cached);
//! only content reachable from nothing but mirrored repositories is `cached`,
//! the only label eviction may act on.

use std::collections::HashSet;

use redb::ReadableTable;

use super::meta::{BlobRecord, Origin, RepoRecord, decode, encode};
use super::{StoreError, tables};

/// Whether `repo` is hosted (its row says pushed).
fn is_hosted(txn: &redb::WriteTransaction, repo: &str) -> Result<bool, StoreError> {
    match txn.open_table(tables::REPOS)?.get(repo)? {
        Some(v) => Ok(decode::<RepoRecord>(v.value())?.origin == Origin::Pushed),
        None => Ok(false),
    }
}

/// Relabels the content row of `digest` as pushed. Returns the bytes that
/// stopped counting as cached (None: nothing changed).
fn relabel(txn: &redb::WriteTransaction, digest: &str) -> Result<Option<u64>, StoreError> {
    let mut blobs = txn.open_table(tables::BLOBS)?;
    let rec = blobs
        .get(digest)?
        .map(|v| decode::<BlobRecord>(v.value()))
        .transpose()?;
    match rec {
        Some(mut rec) if rec.origin != Origin::Pushed => {
            rec.origin = Origin::Pushed;
            blobs.insert(digest, encode(&rec)?.as_slice())?;
            Ok(Some(rec.size))
        }
        _ => Ok(None),
    }
}

/// Called wherever content gets linked into `repo` (blob links, mounts,
/// manifest rows), after the repository row exists: content in a hosted
/// repository is labelled pushed. Returns the change of cached bytes (zero or
/// negative), for the store's running total.
pub(super) fn label_linked(
    txn: &redb::WriteTransaction,
    repo: &str,
    digest: &str,
) -> Result<i64, StoreError> {
    if is_hosted(txn, repo)? {
        if let Some(size) = relabel(txn, digest)? {
            return Ok(-(size as i64));
        }
    }
    Ok(0)
}

/// Start-up repair for indexes written before every route labelled content
/// correctly: everything linked into a hosted repository becomes pushed.
/// Returns how many rows changed.
pub(super) fn relabel_hosted(txn: &redb::WriteTransaction) -> Result<usize, StoreError> {
    let mut hosted = HashSet::new();
    for item in txn.open_table(tables::REPOS)?.iter()? {
        let (k, v) = item?;
        if decode::<RepoRecord>(v.value())?.origin == Origin::Pushed {
            hosted.insert(k.value().to_owned());
        }
    }
    let mut linked = HashSet::new();
    for item in txn.open_table(tables::REPO_BLOBS)?.iter()? {
        let (k, _) = item?;
        let (r, d) = k.value();
        if hosted.contains(r) {
            linked.insert(d.to_owned());
        }
    }
    for item in txn.open_table(tables::MANIFESTS)?.iter()? {
        let (k, _) = item?;
        let (r, d) = k.value();
        if hosted.contains(r) {
            linked.insert(d.to_owned());
        }
    }
    let mut changed = 0;
    for d in &linked {
        if relabel(txn, d)?.is_some() {
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Meta;

    fn put_json<T: serde::Serialize>(
        txn: &redb::WriteTransaction,
        def: redb::TableDefinition<'_, &str, &[u8]>,
        k: &str,
        v: &T,
    ) -> Result<(), StoreError> {
        txn.open_table(def)?.insert(k, encode(v)?.as_slice())?;
        Ok(())
    }

    fn origin_of(txn: &redb::ReadTransaction, d: &str) -> Origin {
        let t = txn.open_table(tables::BLOBS).unwrap();
        let v = t.get(d).unwrap().unwrap();
        decode::<BlobRecord>(v.value()).unwrap().origin
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn start_up_relabels_only_what_hosted_repositories_link() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&dir.path().join("index.redb")).unwrap();
        let changed = meta
            .write(|txn| {
                let repo = |origin| RepoRecord {
                    origin,
                    upstream: None,
                };
                put_json(txn, tables::REPOS, "team/app", &repo(Origin::Pushed))?;
                put_json(txn, tables::REPOS, "library/base", &repo(Origin::Cached))?;
                let cached = BlobRecord {
                    size: 1,
                    created: 0,
                    origin: Origin::Cached,
                    pinned: false,
                };
                for d in ["mounted", "manifest", "mirror-only"] {
                    put_json(txn, tables::BLOBS, d, &cached)?;
                }
                let mut links = txn.open_table(tables::REPO_BLOBS)?;
                links.insert(("library/base", "mounted"), ())?;
                links.insert(("team/app", "mounted"), ())?;
                links.insert(("library/base", "mirror-only"), ())?;
                txn.open_table(tables::MANIFESTS)?
                    .insert(("team/app", "manifest"), b"{}".as_slice())?;
                drop(links);
                relabel_hosted(txn)
            })
            .await
            .unwrap();
        assert_eq!(changed, 2);
        let origins = meta
            .read(|txn| {
                Ok([
                    origin_of(txn, "mounted"),
                    origin_of(txn, "manifest"),
                    origin_of(txn, "mirror-only"),
                ])
            })
            .await
            .unwrap();
        assert_eq!(origins, [Origin::Pushed, Origin::Pushed, Origin::Cached]);
        meta.close();
    }
}
