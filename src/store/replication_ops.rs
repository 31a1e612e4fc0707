//! The durable replication queue (`replication_queue`): what the replicate
//! worker still has to copy to (or delete from) each target.
//!
//! A push or a deletion of a hosted repository enqueues its items in the
//! same write transaction that records it, so an acknowledged push is in the
//! queue even if the process is killed a moment later, and the push itself
//! never waits for a target. Items leave the queue only once the target has
//! them (the worker calls [`Store::replication_done`]); a crash in between
//! only makes the worker do an item again, which the target takes as a no-op.
//!
//! The queue is bounded ([`MAX_QUEUE`]): past it, new items are not written
//! and the overflow is flagged instead, which makes the worker compare both
//! sides in full (its reconcile) and so catch up without the items.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use super::meta::{Origin, RepoRecord, TagRecord, decode, encode};
use super::{Store, StoreError, tables, unix_now};
use crate::oci::{Reference, RepoName};

/// Most items the queue holds, all targets together.
pub const MAX_QUEUE: u64 = 100_000;

/// What an item asks of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueOp {
    /// Make the target hold the reference as it is here now (blobs, child
    /// manifests, the manifest, then the tag).
    Copy,
    /// Remove the reference from the target.
    Delete,
}

/// One queued piece of replication work.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueItem {
    /// The target's URL (the rule's identity).
    pub target: String,
    /// The hosted repository.
    pub repo: String,
    /// A tag or a digest.
    pub reference: String,
    /// Copy or delete.
    pub op: QueueOp,
    /// For a deleted tag: the manifest it named here when it went.
    #[serde(default)]
    pub digest: Option<String>,
    /// Failed attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// The last failure, said in words.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Unix seconds when queued.
    pub enqueued: u64,
}

/// Which hosted repositories one replication rule copies, as the store needs
/// to know it to enqueue inside a push's own transaction.
pub struct ReplicaRule {
    /// The target's URL.
    pub target: String,
    /// The repository globs.
    pub repos: globset::GlobSet,
    /// Whether deletions follow.
    pub deletes: bool,
}

/// Called once items were queued (the worker's kick).
type OnQueued = Arc<dyn Fn() + Send + Sync>;

/// The rules and the overflow flag, shared with write jobs.
#[derive(Default)]
pub(super) struct ReplicaRules {
    rules: std::sync::RwLock<Arc<Vec<ReplicaRule>>>,
    overflowed: AtomicBool,
    /// Items were queued since the last [`ReplicaRules::kick_if_queued`].
    queued: AtomicBool,
    on_queued: std::sync::RwLock<Option<OnQueued>>,
}

/// A change of a hosted repository that may need replicating.
pub(super) struct Change {
    pub(super) repo: String,
    pub(super) reference: String,
    pub(super) op: QueueOp,
    pub(super) digest: Option<String>,
}

impl ReplicaRules {
    /// Tells the worker, if items were queued (after the transaction that
    /// queued them committed).
    pub(super) fn kick_if_queued(&self) {
        if self.queued.swap(false, Ordering::AcqRel) {
            if let Some(f) = self.on_queued.read().ok().and_then(|f| f.clone()) {
                f();
            }
        }
    }

    fn current(&self) -> Arc<Vec<ReplicaRule>> {
        self.rules
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|_| Arc::new(Vec::new()))
    }

    /// Queues `change` for every rule that covers its repository, inside the
    /// write transaction `txn` (nothing when the repository is not hosted).
    pub(super) fn enqueue(
        &self,
        txn: &redb::WriteTransaction,
        change: &Change,
    ) -> Result<(), StoreError> {
        let rules = self.current();
        if rules.is_empty() {
            return Ok(());
        }
        let hosted = match txn.open_table(tables::REPOS)?.get(change.repo.as_str())? {
            Some(v) => decode::<RepoRecord>(v.value())?.origin == Origin::Pushed,
            None => false,
        };
        if !hosted {
            return Ok(());
        }
        let mut queue = txn.open_table(tables::REPLICATION_QUEUE)?;
        for rule in rules.iter() {
            if !rule.repos.is_match(&change.repo) || (change.op == QueueOp::Delete && !rule.deletes)
            {
                continue;
            }
            if queue.len()? >= MAX_QUEUE {
                if !self.overflowed.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        max = MAX_QUEUE,
                        "the replication queue is full; new changes are left to the next full comparison of both sides"
                    );
                }
                return Ok(());
            }
            let seq = match queue.last()? {
                Some((k, _)) => k.value() + 1,
                None => 1,
            };
            let item = encode(&QueueItem {
                target: rule.target.clone(),
                repo: change.repo.clone(),
                reference: change.reference.clone(),
                op: change.op,
                digest: change.digest.clone(),
                attempts: 0,
                last_error: None,
                enqueued: unix_now(),
            })?;
            queue.insert(seq, item.as_slice())?;
            self.queued.store(true, Ordering::Release);
        }
        Ok(())
    }
}

impl Store {
    /// Sets the replication rules (once, at start): from then on pushes and
    /// deletions of the hosted repositories they cover are queued.
    /// `on_queued` is called after a push or deletion queued items.
    pub fn set_replication(
        &self,
        rules: Vec<ReplicaRule>,
        on_queued: impl Fn() + Send + Sync + 'static,
    ) {
        if let Ok(mut r) = self.replica.rules.write() {
            *r = Arc::new(rules);
        }
        if let Ok(mut f) = self.replica.on_queued.write() {
            *f = Some(Arc::new(on_queued));
        }
    }

    /// Whether the queue overflowed since the last call (then the worker
    /// compares both sides in full); clears the flag.
    pub fn take_replication_overflow(&self) -> bool {
        self.replica.overflowed.swap(false, Ordering::AcqRel)
    }

    /// Up to `limit` items for `target`, oldest first, after sequence `after`.
    pub async fn replication_items(
        &self,
        target: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, QueueItem)>, StoreError> {
        let target = target.to_owned();
        self.meta
            .read(move |txn| {
                let queue = txn.open_table(tables::REPLICATION_QUEUE)?;
                let mut out = Vec::new();
                for item in queue.range(after.saturating_add(1)..)? {
                    let (k, v) = item?;
                    let it: QueueItem = decode(v.value())?;
                    if it.target == target {
                        out.push((k.value(), it));
                        if out.len() == limit {
                            break;
                        }
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Items queued for each target (targets with none are absent).
    pub async fn replication_queued(
        &self,
    ) -> Result<std::collections::HashMap<String, u64>, StoreError> {
        self.meta
            .read(|txn| {
                let mut out = std::collections::HashMap::new();
                for item in txn.open_table(tables::REPLICATION_QUEUE)?.iter()? {
                    let (_, v) = item?;
                    let it: QueueItem = decode(v.value())?;
                    *out.entry(it.target).or_insert(0) += 1;
                }
                Ok(out)
            })
            .await
    }

    /// Removes the items `seqs`: the target has what they asked for.
    pub async fn replication_done(&self, seqs: Vec<u64>) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.meta
            .write(move |txn| {
                let mut queue = txn.open_table(tables::REPLICATION_QUEUE)?;
                for s in &seqs {
                    queue.remove(*s)?;
                }
                Ok(())
            })
            .await
    }

    /// Records a failed attempt at the items `seqs`.
    pub async fn replication_failed(
        &self,
        seqs: Vec<u64>,
        error: String,
    ) -> Result<(), StoreError> {
        self.meta
            .write(move |txn| {
                let mut queue = txn.open_table(tables::REPLICATION_QUEUE)?;
                for s in &seqs {
                    let Some(mut it) = queue
                        .get(*s)?
                        .map(|v| decode::<QueueItem>(v.value()))
                        .transpose()?
                    else {
                        continue;
                    };
                    it.attempts = it.attempts.saturating_add(1);
                    it.last_error = Some(error.chars().take(500).collect());
                    queue.insert(*s, encode(&it)?.as_slice())?;
                }
                Ok(())
            })
            .await
    }

    /// Queues `changes` of hosted repositories for the rules covering them
    /// (what a reconcile found different on a target).
    pub(crate) async fn replication_enqueue(
        &self,
        target: &str,
        items: Vec<(String, String, QueueOp, Option<String>)>,
    ) -> Result<usize, StoreError> {
        if items.is_empty() {
            return Ok(0);
        }
        let target = target.to_owned();
        let replica = self.replica.clone();
        self.meta
            .write(move |txn| {
                let mut queue = txn.open_table(tables::REPLICATION_QUEUE)?;
                let room = MAX_QUEUE.saturating_sub(queue.len()?) as usize;
                let mut seq = match queue.last()? {
                    Some((k, _)) => k.value(),
                    None => 0,
                };
                let mut queued = 0;
                for (repo, reference, op, digest) in items.iter().take(room) {
                    seq += 1;
                    let item = encode(&QueueItem {
                        target: target.clone(),
                        repo: repo.clone(),
                        reference: reference.clone(),
                        op: *op,
                        digest: digest.clone(),
                        attempts: 0,
                        last_error: None,
                        enqueued: unix_now(),
                    })?;
                    queue.insert(seq, item.as_slice())?;
                    queued += 1;
                }
                if queued < items.len() {
                    replica.overflowed.store(true, Ordering::Release);
                }
                Ok(queued)
            })
            .await
    }

    /// Removes the items of targets no rule names any more (a rule removed
    /// from the configuration); returns how many went.
    pub async fn replication_forget_targets(&self, keep: Vec<String>) -> Result<u64, StoreError> {
        self.meta
            .write(move |txn| {
                let mut queue = txn.open_table(tables::REPLICATION_QUEUE)?;
                let mut doomed = Vec::new();
                for item in queue.iter()? {
                    let (k, v) = item?;
                    let it: QueueItem = decode(v.value())?;
                    if !keep.contains(&it.target) {
                        doomed.push(k.value());
                    }
                }
                for s in &doomed {
                    queue.remove(*s)?;
                }
                Ok(doomed.len() as u64)
            })
            .await
    }

    /// Every tag of the hosted repository `repo` with the digest it names
    /// (what a reconcile compares with the target).
    pub async fn tag_digests(&self, repo: &RepoName) -> Result<Vec<(String, String)>, StoreError> {
        let r = repo.to_string();
        self.meta
            .read(move |txn| {
                let tags = txn.open_table(tables::TAGS)?;
                let mut out = Vec::new();
                for item in tags.range((r.as_str(), "")..)? {
                    let (k, v) = item?;
                    let (kr, kt) = k.value();
                    if kr != r {
                        break;
                    }
                    out.push((kt.to_owned(), decode::<TagRecord>(v.value())?.digest));
                }
                Ok(out)
            })
            .await
    }
}

/// The change a push of `reference` to `repo` makes.
pub(super) fn pushed(repo: &RepoName, reference: &Reference) -> Change {
    Change {
        repo: repo.to_string(),
        reference: reference.to_string(),
        op: QueueOp::Copy,
        digest: None,
    }
}
