//! The periodic comparison of both sides: every tag of every hosted
//! repository a rule covers is looked up on the target (one HEAD each) and
//! queued where it differs; with `delete = true`, tags only the target has
//! are queued for deletion. A target that was down, or a rule added after
//! the pushes, catches up this way.

use crate::oci::RepoName;
use crate::store::{QueueOp, Store};

use super::TargetRule;
use super::copy::CopyError;

/// Most tags read from the target for one repository.
const MAX_TARGET_TAGS: usize = 100_000;

/// What a reconcile found.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Reconciled {
    /// Hosted repositories compared.
    pub repos: u64,
    /// Tags compared.
    pub tags: u64,
    /// Items queued because the sides differ.
    pub queued: u64,
}

/// Compares every repository `rule` covers and queues the differences.
pub(super) async fn reconcile(store: &Store, rule: &TargetRule) -> Result<Reconciled, CopyError> {
    let mut repos: Vec<String> = store
        .pushed_repos()
        .into_iter()
        .filter(|r| rule.repos.is_match(r))
        .collect();
    repos.sort();
    let mut out = Reconciled::default();
    for name in repos {
        let Ok(repo) = name.parse::<RepoName>() else {
            continue;
        };
        let local = store.tag_digests(&repo).await?;
        let mut differ = Vec::new();
        for (tag, digest) in &local {
            out.tags += 1;
            let there = rule.target.manifest_digest(repo.as_str(), tag).await?;
            if there.map(|d| d.to_string()).as_deref() != Some(digest.as_str()) {
                differ.push((name.clone(), tag.clone(), QueueOp::Copy, None));
            }
        }
        if rule.deletes {
            let remote = rule.target.tags(repo.as_str(), MAX_TARGET_TAGS).await?;
            for tag in remote {
                if !local.iter().any(|(t, _)| *t == tag) {
                    differ.push((name.clone(), tag, QueueOp::Delete, None));
                }
            }
        }
        out.repos += 1;
        out.queued += store.replication_enqueue(&rule.url, differ).await? as u64;
    }
    Ok(out)
}
