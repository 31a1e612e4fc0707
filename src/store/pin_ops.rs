//! Pins: a pinned image (its whole closure: index, platform manifests,
//! configs, layers) is never evicted nor collected, nor deleted: deleting a
//! pinned tag, a manifest in a pinned closure or unlinking a blob of one is
//! refused with [`StoreError::Pinned`] (unpin first). A pin names a local
//! repository and a tag or digest; a tag is resolved when pinned, and the pin
//! protects that digest and whatever the tag points at later. Callers pass
//! local names (the admin API resolves what clients write first).

use std::collections::HashSet;

use redb::ReadableTable;
use serde::Serialize;

use super::closure::RefTables;
use super::meta::{PinRecord, TagRecord, decode, encode};
use super::{Store, StoreError, tables, unix_now};
use crate::oci::{Digest, Reference, RepoName};

/// One pin, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Pin {
    /// `<repo>:<tag>` or `<repo>@<digest>`.
    pub reference: String,
    /// The local repository.
    pub repo: String,
    /// The manifest pinned (for a tag pin: what the tag pointed at when pinned).
    pub digest: String,
    /// The tag, for a tag pin.
    pub tag: Option<String>,
    /// Unix seconds.
    pub created: u64,
}

/// The pin key of `reference` in `repo`.
fn key(repo: &RepoName, reference: &Reference) -> String {
    match reference {
        Reference::Tag(t) => format!("{repo}:{t}"),
        Reference::Digest(d) => format!("{repo}@{d}"),
    }
}

/// Refuses a deletion in `repo` that would break a pinned image: the tag
/// `tag` when it is pinned itself, and `digest` (a manifest or blob) when the
/// closure of a pin of `repo` holds it. A closure with references that cannot
/// be known holds everything in its repository. Runs inside the deleting
/// write job, so a pin added meanwhile is seen.
pub(super) fn refuse_if_pinned(
    txn: &redb::WriteTransaction,
    repo: &str,
    tag: Option<&str>,
    digest: Option<&str>,
) -> Result<(), StoreError> {
    let pins = txn.open_table(tables::PINS)?;
    if let Some(t) = tag {
        let k = format!("{repo}:{t}");
        if pins.get(k.as_str())?.is_some() {
            return Err(StoreError::Pinned {
                what: format!("tag {k}"),
                pin: k,
            });
        }
    }
    let Some(digest) = digest else {
        return Ok(());
    };
    let tags = txn.open_table(tables::TAGS)?;
    let manifests = txn.open_table(tables::MANIFESTS)?;
    let refs = txn.open_table(tables::MANIFEST_REFS)?;
    let t = RefTables {
        manifests: &manifests,
        refs: &refs,
    };
    for item in pins.iter()? {
        let (k, v) = item?;
        let pin: PinRecord = decode(v.value())?;
        if pin.repo != repo {
            continue;
        }
        let (mut closure, mut unknown) = (HashSet::new(), HashSet::new());
        t.close_over(&pin.repo, &pin.digest, &mut closure, &mut unknown)?;
        if let Some(tag) = &pin.tag {
            if let Some(now) = tags.get((pin.repo.as_str(), tag.as_str()))? {
                let now: TagRecord = decode(now.value())?;
                t.close_over(&pin.repo, &now.digest, &mut closure, &mut unknown)?;
            }
        }
        if closure.contains(digest) || !unknown.is_empty() {
            return Err(StoreError::Pinned {
                what: format!("{repo}@{digest}"),
                pin: k.value().to_owned(),
            });
        }
    }
    Ok(())
}

impl Store {
    /// Pins `reference` in `repo` and returns the digest it protects. A
    /// reference with no manifest here (a mirrored image not pulled yet) is
    /// [`StoreError::ManifestUnknown`]. Pinning again refreshes the pin.
    pub async fn pin(&self, repo: &RepoName, reference: &Reference) -> Result<Digest, StoreError> {
        let (r, k, reference) = (repo.to_string(), key(repo, reference), reference.clone());
        let d = self
            .meta
            .write(move |txn| {
                let unknown = || StoreError::ManifestUnknown(reference.to_string());
                let (digest, tag) = match &reference {
                    Reference::Digest(d) => (d.to_string(), None),
                    Reference::Tag(t) => {
                        let rec = txn
                            .open_table(tables::TAGS)?
                            .get((r.as_str(), t.as_str()))?
                            .map(|v| decode::<TagRecord>(v.value()))
                            .transpose()?
                            .ok_or_else(unknown)?;
                        (rec.digest, Some(t.to_string()))
                    }
                };
                if txn
                    .open_table(tables::MANIFESTS)?
                    .get((r.as_str(), digest.as_str()))?
                    .is_none()
                {
                    return Err(unknown());
                }
                let rec = encode(&PinRecord {
                    repo: r.clone(),
                    digest: digest.clone(),
                    tag,
                    created: unix_now(),
                })?;
                txn.open_table(tables::PINS)?
                    .insert(k.as_str(), rec.as_slice())?;
                Ok(digest)
            })
            .await?;
        d.parse()
            .map_err(|_| StoreError::Corrupt(format!("bad digest {d:?} in index")))
    }

    /// Removes the pin of `reference` in `repo`; false when there was none.
    pub async fn unpin(&self, repo: &RepoName, reference: &Reference) -> Result<bool, StoreError> {
        let k = key(repo, reference);
        self.meta
            .write(move |txn| Ok(txn.open_table(tables::PINS)?.remove(k.as_str())?.is_some()))
            .await
    }

    /// Every pin, in key order.
    pub async fn pins(&self) -> Result<Vec<Pin>, StoreError> {
        self.meta
            .read(|txn| {
                let mut out = Vec::new();
                for item in txn.open_table(tables::PINS)?.iter()? {
                    let (k, v) = item?;
                    let rec: PinRecord = decode(v.value())?;
                    out.push(Pin {
                        reference: k.value().to_owned(),
                        repo: rec.repo,
                        digest: rec.digest,
                        tag: rec.tag,
                        created: rec.created,
                    });
                }
                Ok(out)
            })
            .await
    }
}
