//! What the sync worker keeps and asks of the index: each `[[sync]]` rule's
//! state (last run, last pass summary, the digests it saw; the `sync_state`
//! table, so a restart does not run every rule again at once), and which
//! parts of an image's closure are missing locally (one read transaction,
//! no content read), which is how a pass knows an unchanged tag needs
//! nothing more than its HEAD.

use std::collections::{BTreeMap, HashSet};

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::blob_ops::readable_size;
use super::meta::{RefsRecord, decode, encode};
use super::{Store, StoreError, tables};
use crate::oci::{Digest, RepoName};

/// Tags whose digests a rule's state remembers; past this, the rest are not kept.
pub const MAX_SEEN: usize = 1000;

/// One sync rule's persisted state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncState {
    /// Unix seconds when the rule's last pass started.
    pub last_run: u64,
    /// The last pass's summary, as the worker reports it.
    #[serde(default)]
    pub summary: serde_json::Value,
    /// Tag → digest, as the last pass saw them (at most `MAX_SEEN`).
    #[serde(default)]
    pub seen: BTreeMap<String, String>,
}

/// What an image's closure lacks locally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Missing {
    /// Manifests (the root, or an index's children) not stored in the repository.
    pub manifests: Vec<Digest>,
    /// Configs and layers not readable in the repository.
    pub blobs: Vec<Digest>,
}

impl Missing {
    /// Nothing is missing.
    pub fn is_empty(&self) -> bool {
        self.manifests.is_empty() && self.blobs.is_empty()
    }
}

fn parse_digest(d: &str) -> Result<Digest, StoreError> {
    d.parse()
        .map_err(|_| StoreError::Corrupt(format!("bad digest {d:?} in index")))
}

impl Store {
    /// The state of the sync rule `key`, if it ever ran.
    pub async fn sync_state(&self, key: &str) -> Result<Option<SyncState>, StoreError> {
        let key = key.to_owned();
        self.meta
            .read(
                move |txn| match txn.open_table(tables::SYNC_STATE)?.get(key.as_str())? {
                    Some(v) => Ok(Some(decode(v.value())?)),
                    None => Ok(None),
                },
            )
            .await
    }

    /// Records the state of the sync rule `key` (its `seen` cut to `MAX_SEEN`).
    pub async fn put_sync_state(&self, key: &str, mut state: SyncState) -> Result<(), StoreError> {
        if state.seen.len() > MAX_SEEN {
            state.seen = std::mem::take(&mut state.seen)
                .into_iter()
                .take(MAX_SEEN)
                .collect();
        }
        let key = key.to_owned();
        let rec = encode(&state)?;
        self.meta
            .write(move |txn| {
                txn.open_table(tables::SYNC_STATE)?
                    .insert(key.as_str(), rec.as_slice())?;
                Ok(())
            })
            .await
    }

    /// Forgets the state of every sync rule whose key is not in `keep` (a
    /// rule edited or removed from the configuration): returns how many went.
    /// Without it each edit would leave its old state behind for ever.
    pub async fn retain_sync_states(&self, keep: Vec<String>) -> Result<u64, StoreError> {
        let keep: HashSet<String> = keep.into_iter().collect();
        self.meta
            .write(move |txn| {
                let mut table = txn.open_table(tables::SYNC_STATE)?;
                let mut stale = Vec::new();
                for entry in table.iter()? {
                    let (k, _) = entry?;
                    if !keep.contains(k.value()) {
                        stale.push(k.value().to_owned());
                    }
                }
                for k in &stale {
                    table.remove(k.as_str())?;
                }
                Ok(stale.len() as u64)
            })
            .await
    }

    /// What the closure of manifest `root` in `repo` lacks: the root itself,
    /// the `children` of an index (`None`: every child it names), and the
    /// configs and layers of the root or of each child present. References
    /// that cannot be known count as present (nothing to fetch by name).
    pub async fn closure_missing(
        &self,
        repo: &RepoName,
        root: &Digest,
        children: Option<Vec<Digest>>,
    ) -> Result<Missing, StoreError> {
        let (r, root) = (repo.to_string(), root.to_string());
        self.meta
            .read(move |txn| {
                let manifests = txn.open_table(tables::MANIFESTS)?;
                let refs = txn.open_table(tables::MANIFEST_REFS)?;
                let refs_of = |d: &str| -> Result<Option<RefsRecord>, StoreError> {
                    if manifests.get((r.as_str(), d))?.is_none() {
                        return Ok(None);
                    }
                    Ok(match refs.get((r.as_str(), d))? {
                        Some(v) => Some(decode(v.value())?),
                        None => Some(RefsRecord::unknown()),
                    })
                };
                let mut out = Missing::default();
                let Some(top) = refs_of(&root)? else {
                    out.manifests.push(parse_digest(&root)?);
                    return Ok(out);
                };
                let mut blobs: Vec<String> = top.blobs.clone();
                let kids: Vec<String> = match children {
                    Some(c) => c.iter().map(Digest::to_string).collect(),
                    None => top.manifests.clone(),
                };
                for kid in &kids {
                    match refs_of(kid)? {
                        None => out.manifests.push(parse_digest(kid)?),
                        Some(rec) => blobs.extend(rec.blobs),
                    }
                }
                let mut seen = HashSet::new();
                for b in blobs {
                    if seen.insert(b.clone()) && readable_size(txn, &r, &b)?.is_none() {
                        out.blobs.push(parse_digest(&b)?);
                    }
                }
                Ok(out)
            })
            .await
    }
}
