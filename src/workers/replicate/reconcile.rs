//! The periodic comparison of both sides: every tag of every hosted
//! repository a rule covers is looked up on the target (one HEAD each) and
//! queued where it differs; with `delete = true`, tags only the target has
//! are queued for deletion. A target that was down, or a rule added after
//! the pushes, catches up this way.
//!
//! A target that is down ends the comparison (nothing else would get
//! through either); a repository the target answers badly for (a garbage or
//! oversized tag list, a refusal) is skipped and reported, so it cannot keep
//! every other repository, and the queue, waiting.

use crate::oci::RepoName;
use crate::store::{QueueOp, Store};

use super::TargetRule;
use super::copy::CopyError;

/// Most tags read from the target for one repository.
const MAX_TARGET_TAGS: usize = 100_000;

/// What a reconcile found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Reconciled {
    /// Hosted repositories compared.
    pub repos: u64,
    /// Tags compared.
    pub tags: u64,
    /// Items queued because the sides differ.
    pub queued: u64,
    /// Repositories that could not be compared in full, each with why.
    pub skipped: Vec<String>,
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
        let (differ, failed) = compare(store, rule, &repo, &mut out).await;
        out.repos += 1;
        out.queued += store.replication_enqueue(&rule.url, differ).await? as u64;
        if let Some(e) = failed {
            let e = e.refine(rule).await;
            if e.is_outage() {
                return Err(e);
            }
            tracing::warn!(target = %rule.url, repo = %name, error = %e, "could not compare this repository with the target; skipped");
            out.skipped.push(format!("{name}: {e}"));
        }
    }
    Ok(out)
}

/// What differs for one repository, as far as it could be read, and the
/// error that cut the comparison short, if one did.
async fn compare(
    store: &Store,
    rule: &TargetRule,
    repo: &RepoName,
    out: &mut Reconciled,
) -> (
    Vec<(String, String, QueueOp, Option<String>)>,
    Option<CopyError>,
) {
    let name = repo.to_string();
    let mut differ = Vec::new();
    let local = match store.tag_digests(repo).await {
        Ok(l) => l,
        Err(e) => return (differ, Some(e.into())),
    };
    for (tag, digest) in &local {
        out.tags += 1;
        match rule.target.manifest_digest(repo.as_str(), tag).await {
            Ok(there)
                if there.as_ref().map(|d| d.to_string()).as_deref() == Some(digest.as_str()) => {}
            Ok(_) => differ.push((name.clone(), tag.clone(), QueueOp::Copy, None)),
            Err(e) => return (differ, Some(e.into())),
        }
    }
    if rule.deletes {
        match rule.target.tags(repo.as_str(), MAX_TARGET_TAGS).await {
            Ok(remote) => {
                for tag in remote {
                    if !local.iter().any(|(t, _)| *t == tag) {
                        differ.push((name.clone(), tag, QueueOp::Delete, None));
                    }
                }
            }
            Err(e) => return (differ, Some(e.into())),
        }
    }
    (differ, None)
}
