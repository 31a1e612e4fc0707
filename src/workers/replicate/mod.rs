//! Replication (`[[replicate]]`, `wharf replicate`): hosted repositories
//! copied to other registries.
//!
//! Pushes and deletions are queued durably by the store in the transaction
//! that records them (`store/replication_ops.rs`), and the push kicks this
//! worker; it never waits for a target. A pass, per target: compare both
//! sides when the rule's `every` has passed (`reconcile.rs`), then work
//! through the queue oldest first (`copy.rs`). Items of one repository go in
//! order, one at a time; repositories go side by side. A failed item holds
//! back the later items of its repository until it succeeds; a target that
//! is down (or says 429) stops the pass for that target, and the worker
//! tries again with backoff (honouring `Retry-After`). Nothing leaves the
//! queue before the target has it, so a kill at any point only repeats work.

mod copy;
mod mounts;
mod reconcile;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::metrics::Metrics;
use crate::oci::RepoName;
use crate::store::{QueueItem, QueueOp, Store, unix_now};
use crate::upstream::target::Target;
pub use copy::PassCounts;
use copy::{Copier, CopyError};
use mounts::Mounts;
pub use reconcile::Reconciled;

/// Items read from the queue at a time.
const BATCH: usize = 1000;
/// Repositories copied side by side, per target.
const PARALLEL_REPOS: usize = 4;
/// Failed attempts after which an item the target keeps refusing (not an
/// outage) is dropped and logged, so it does not hold its repository back
/// for ever.
pub const MAX_ATTEMPTS: u32 = 10;
/// Shortest wait before trying a target again after an outage.
const MIN_RETRY: Duration = Duration::from_secs(1);

/// One `[[replicate]]` rule with its target client and state.
pub struct TargetRule {
    /// The target's URL (the rule's identity in the queue).
    pub url: String,
    /// The client.
    pub target: Target,
    /// The repository globs, as configured (for status).
    pub patterns: Vec<String>,
    repos: globset::GlobSet,
    every: Duration,
    deletes: bool,
    state: Mutex<TargetState>,
    mounts: Mounts,
}

/// What `wharf replicate` shows for one target between passes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetState {
    /// Unix seconds of the last item the target took.
    pub last_success: Option<u64>,
    /// The last failure, said in words.
    pub last_error: Option<String>,
    /// Unix seconds of that failure.
    pub last_error_at: Option<u64>,
    /// Unix seconds before which the target is left alone (after an outage
    /// or a 429's `Retry-After`).
    pub retry_at: Option<u64>,
    /// Unix seconds of the last comparison of both sides.
    pub last_reconcile: Option<u64>,
    /// Items done since start.
    pub items_done: u64,
    /// Failed attempts since start.
    pub items_failed: u64,
    #[serde(skip)]
    retry_until: Option<Instant>,
    #[serde(skip)]
    outages: u32,
    #[serde(skip)]
    reconciled_at: Option<Instant>,
    /// A comparison is owed (the queue overflowed) until one succeeds, even
    /// if the target is waiting out a backoff when the overflow is noticed.
    #[serde(skip)]
    compare_owed: bool,
}

/// One target's line in `wharf replicate`.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    /// The target's URL.
    pub target: String,
    /// The repository globs.
    pub repos: Vec<String>,
    /// Whether deletions follow.
    pub delete: bool,
    /// Seconds between comparisons of both sides.
    pub every_secs: u64,
    /// Items waiting.
    pub queued: u64,
    /// The rest of its state.
    #[serde(flatten)]
    pub state: TargetState,
}

/// What one pass did to one target.
#[derive(Debug, Default, Serialize)]
pub struct TargetPass {
    /// The target's URL.
    pub target: String,
    /// The comparison of both sides, when one ran.
    pub reconciled: Option<Reconciled>,
    /// What was copied, deleted and sent.
    #[serde(flatten)]
    pub counts: PassCounts,
    /// Items still queued after the pass.
    pub left: u64,
    /// Why the pass stopped early, if it did.
    pub error: Option<String>,
}

/// What one pass did.
#[derive(Debug, Default, Serialize)]
pub struct ReplicateReport {
    /// One entry per target.
    pub targets: Vec<TargetPass>,
}

/// The replicate worker.
pub struct Replicate {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    rules: Vec<Arc<TargetRule>>,
}

/// A rule as the composition root hands it over.
pub struct RuleSpec {
    /// The target client.
    pub target: Target,
    /// Repository globs.
    pub patterns: Vec<String>,
    /// How often both sides are compared.
    pub every: Duration,
    /// Whether deletions follow.
    pub deletes: bool,
}

/// Compiles `patterns` (checked when the configuration loaded).
pub fn glob_set(patterns: &[String]) -> Result<globset::GlobSet, globset::Error> {
    let mut b = globset::GlobSetBuilder::new();
    for p in patterns {
        b.add(globset::Glob::new(p)?);
    }
    b.build()
}

impl Replicate {
    /// The worker over `specs`.
    pub fn new(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        specs: Vec<RuleSpec>,
    ) -> Result<Replicate, globset::Error> {
        let mut rules = Vec::new();
        for s in specs {
            let url = s.target.url().to_owned();
            rules.push(Arc::new(TargetRule {
                url,
                repos: glob_set(&s.patterns)?,
                patterns: s.patterns,
                target: s.target,
                every: s.every,
                deletes: s.deletes,
                state: Mutex::new(TargetState::default()),
                mounts: Mounts::default(),
            }));
        }
        Ok(Replicate {
            store,
            metrics,
            rules,
        })
    }

    /// Tells the store which repositories to queue pushes and deletions of,
    /// and to call `kick` when it did (the worker's kick).
    pub fn attach(&self, kick: impl Fn() + Send + Sync + 'static) {
        let rules = self
            .rules
            .iter()
            .map(|r| crate::store::ReplicaRule {
                target: r.url.clone(),
                repos: r.repos.clone(),
                deletes: r.deletes,
            })
            .collect();
        self.store.set_replication(rules, kick);
    }

    /// Drops queued items of targets no rule names any more (a rule taken out
    /// of the configuration); run once at start.
    pub async fn forget_removed_targets(&self) {
        let keep = self.rules.iter().map(|r| r.url.clone()).collect();
        match self.store.replication_forget_targets(keep).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                items = n,
                "dropped replication items of targets no [[replicate]] rule names any more"
            ),
            Err(e) => tracing::warn!(error = %e, "could not clean the replication queue"),
        }
    }

    /// Each target's state and queue length.
    pub async fn status(&self) -> Result<Vec<TargetStatus>, crate::store::StoreError> {
        let queued = self.store.replication_queued().await?;
        Ok(self
            .rules
            .iter()
            .map(|r| TargetStatus {
                target: r.url.clone(),
                repos: r.patterns.clone(),
                delete: r.deletes,
                every_secs: r.every.as_secs(),
                queued: queued.get(&r.url).copied().unwrap_or(0),
                state: r.state.lock().map(|s| s.clone()).unwrap_or_default(),
            })
            .collect())
    }

    /// One pass: every target, both sides compared when due (`force`: now).
    /// A target that failed says so in its entry; the pass itself fails only
    /// when the local index does.
    pub async fn pass(&self, force_reconcile: bool) -> Result<ReplicateReport, super::WorkerError> {
        if self.store.take_replication_overflow() {
            for rule in &self.rules {
                if let Ok(mut s) = rule.state.lock() {
                    s.compare_owed = true;
                }
            }
        }
        let mut report = ReplicateReport::default();
        for rule in &self.rules {
            let p = self.pass_target(rule, force_reconcile).await;
            self.metrics.replication.set_queued(&rule.url, p.left);
            self.metrics
                .replication
                .sent(&rule.url, p.counts.bytes_sent.load(Ordering::Relaxed));
            report.targets.push(p);
        }
        Ok(report)
    }

    async fn pass_target(&self, rule: &Arc<TargetRule>, force_reconcile: bool) -> TargetPass {
        let mut p = TargetPass {
            target: rule.url.clone(),
            ..TargetPass::default()
        };
        let (waiting, reconcile_due) = match rule.state.lock() {
            Ok(s) => (
                s.retry_until.filter(|t| *t > Instant::now()),
                force_reconcile
                    || s.compare_owed
                    || s.reconciled_at.is_none_or(|t| t.elapsed() >= rule.every),
            ),
            Err(_) => (None, true),
        };
        if let Some(until) = waiting {
            p.error = Some(format!(
                "waiting {}s more before trying the target again",
                until.saturating_duration_since(Instant::now()).as_secs() + 1
            ));
            p.left = self.left(rule).await;
            return p;
        }
        if reconcile_due {
            match reconcile::reconcile(&self.store, rule).await {
                Ok(r) => {
                    if let Ok(mut s) = rule.state.lock() {
                        s.reconciled_at = Some(Instant::now());
                        s.compare_owed = false;
                        s.last_reconcile = Some(unix_now());
                        if !r.skipped.is_empty() {
                            s.last_error = Some(format!(
                                "comparing both sides, skipped {}",
                                r.skipped.join("; ")
                            ));
                            s.last_error_at = Some(unix_now());
                        }
                    }
                    p.reconciled = Some(r);
                }
                Err(e) => {
                    self.failed(rule, &e);
                    p.error = Some(format!("comparing both sides: {e}"));
                    p.left = self.left(rule).await;
                    return p;
                }
            }
        }
        if let Err(e) = self.drain(rule, &p.counts).await {
            p.error = Some(e);
        }
        p.left = self.left(rule).await;
        p
    }

    async fn left(&self, rule: &TargetRule) -> u64 {
        self.store
            .replication_queued()
            .await
            .ok()
            .and_then(|q| q.get(&rule.url).copied())
            .unwrap_or(0)
    }

    /// Works through `rule`'s queue until it is empty, every repository left
    /// is held back by a failed item, or the target is down.
    async fn drain(&self, rule: &Arc<TargetRule>, counts: &PassCounts) -> Result<(), String> {
        let mut after = 0u64;
        let mut blocked: HashSet<String> = HashSet::new();
        loop {
            let batch = self
                .store
                .replication_items(&rule.url, after, BATCH)
                .await
                .map_err(|e| e.to_string())?;
            let Some((last, _)) = batch.last() else {
                break;
            };
            after = *last;
            let mut by_repo: Vec<(String, Vec<(u64, QueueItem)>)> = Vec::new();
            for (seq, item) in batch {
                if blocked.contains(&item.repo) {
                    continue;
                }
                match by_repo.iter_mut().find(|(r, _)| *r == item.repo) {
                    Some((_, items)) => items.push((seq, item)),
                    None => by_repo.push((item.repo.clone(), vec![(seq, item)])),
                }
            }
            let outcome = self.run_repos(rule, by_repo, counts).await;
            blocked.extend(outcome.blocked);
            if let Some(e) = outcome.outage {
                return Err(e);
            }
        }
        if blocked.is_empty() {
            Ok(())
        } else {
            let mut b: Vec<_> = blocked.into_iter().collect();
            b.sort();
            Err(format!(
                "items of {} wait behind a failed one: {}",
                b.join(", "),
                rule.state
                    .lock()
                    .ok()
                    .and_then(|s| s.last_error.clone())
                    .unwrap_or_default()
            ))
        }
    }

    /// Runs each repository's items in order, [`PARALLEL_REPOS`] repositories
    /// at a time.
    async fn run_repos(
        &self,
        rule: &Arc<TargetRule>,
        repos: Vec<(String, Vec<(u64, QueueItem)>)>,
        counts: &PassCounts,
    ) -> RunOutcome {
        let mut out = RunOutcome::default();
        let mut repos = repos.into_iter();
        let counts_shared = Arc::new(PassCounts::default());
        let mut set = tokio::task::JoinSet::new();
        loop {
            while set.len() < PARALLEL_REPOS && out.outage.is_none() {
                let Some((repo, items)) = repos.next() else {
                    break;
                };
                let (store, rule, metrics, c) = (
                    self.store.clone(),
                    rule.clone(),
                    self.metrics.clone(),
                    counts_shared.clone(),
                );
                set.spawn(async move {
                    let copier = Copier {
                        store,
                        rule,
                        counts: c,
                    };
                    let r = run_repo(&copier, &metrics, &items).await;
                    (repo, r)
                });
            }
            let Some(joined) = set.join_next().await else {
                break;
            };
            match joined {
                Ok((_, RepoResult::Done)) => {}
                Ok((repo, RepoResult::Blocked)) => {
                    out.blocked.push(repo);
                }
                Ok((repo, RepoResult::Outage(e))) => {
                    out.blocked.push(repo);
                    out.outage.get_or_insert(e);
                }
                Err(e) => {
                    out.outage
                        .get_or_insert(format!("a replication task stopped: {e}"));
                }
            }
        }
        counts.merge(&counts_shared);
        out
    }

    /// Records a failure of the target as a whole.
    fn failed(&self, rule: &TargetRule, e: &CopyError) {
        note_failure(rule, e);
    }
}

#[derive(Default)]
struct RunOutcome {
    blocked: Vec<String>,
    outage: Option<String>,
}

enum RepoResult {
    Done,
    /// An item failed; the repository's later items wait.
    Blocked,
    /// The target is down: stop sending it anything.
    Outage(String),
}

/// Keeps the last of several items for one reference: an item makes the
/// target hold the reference as it is here *now* (or removes it), so only
/// the last one counts; the others are done with it.
fn collapse(items: &[(u64, QueueItem)]) -> Vec<(Vec<u64>, &QueueItem)> {
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, (_, it)) in items.iter().enumerate() {
        last.insert(it.reference.as_str(), i);
    }
    let mut out: Vec<(Vec<u64>, &QueueItem)> = Vec::new();
    let mut folded: HashMap<&str, Vec<u64>> = HashMap::new();
    for (i, (seq, it)) in items.iter().enumerate() {
        let seqs = folded.entry(it.reference.as_str()).or_default();
        seqs.push(*seq);
        if last.get(it.reference.as_str()) == Some(&i) {
            out.push((std::mem::take(seqs), it));
        }
    }
    out
}

async fn run_repo(copier: &Copier, metrics: &Metrics, items: &[(u64, QueueItem)]) -> RepoResult {
    let (store, rule, counts) = (&copier.store, &copier.rule, &copier.counts);
    for (seqs, item) in collapse(items) {
        let result = match item.repo.parse::<RepoName>() {
            Err(e) => Err(CopyError::Permanent(format!(
                "queued repository {:?}: {e}",
                item.repo
            ))),
            Ok(repo) => match item.op {
                QueueOp::Copy => copier.copy(&repo, &item.reference).await,
                QueueOp::Delete => {
                    copier
                        .delete(&repo, &item.reference, item.digest.as_deref())
                        .await
                }
            },
        };
        let n = seqs.len() as u64;
        match result {
            Ok(()) => {
                if let Err(e) = store.replication_done(seqs).await {
                    return RepoResult::Outage(format!("local index: {e}"));
                }
                metrics.replication.items(&rule.url, "done", n);
                if let Ok(mut s) = rule.state.lock() {
                    s.last_success = Some(unix_now());
                    s.items_done += n;
                    s.outages = 0;
                }
            }
            Err(e) => {
                let e = e.refine(rule).await;
                note_failure(rule, &e);
                let give_up = matches!(e, CopyError::Permanent(_))
                    || (!e.is_outage() && item.attempts + 1 >= MAX_ATTEMPTS);
                if give_up {
                    tracing::error!(target = %rule.url, repo = %item.repo, reference = %item.reference, op = ?item.op, attempts = item.attempts + 1, error = %e, "replication item dropped: the target refuses it");
                    counts.dropped.fetch_add(1, Ordering::Relaxed);
                    metrics.replication.items(&rule.url, "dropped", n);
                    if let Err(e) = store.replication_done(seqs).await {
                        return RepoResult::Outage(format!("local index: {e}"));
                    }
                    continue;
                }
                tracing::warn!(target = %rule.url, repo = %item.repo, reference = %item.reference, op = ?item.op, error = %e, "replication item failed; it is tried again");
                counts.failed.fetch_add(1, Ordering::Relaxed);
                metrics.replication.items(&rule.url, "failed", 1);
                let _ = store.replication_failed(seqs, e.to_string()).await;
                return if e.is_outage() {
                    RepoResult::Outage(e.to_string())
                } else {
                    RepoResult::Blocked
                };
            }
        }
    }
    RepoResult::Done
}

/// Records `e` in the target's state; an outage also sets when to try again
/// (the target's `Retry-After`, or 1 s, 2 s, 4 s … up to 5 minutes).
fn note_failure(rule: &TargetRule, e: &CopyError) {
    let Ok(mut s) = rule.state.lock() else {
        return;
    };
    s.last_error = Some(e.to_string());
    s.last_error_at = Some(unix_now());
    s.items_failed += 1;
    if e.is_outage() {
        s.outages = s.outages.saturating_add(1);
        let backoff = MIN_RETRY
            .saturating_mul(1u32 << s.outages.saturating_sub(1).min(8))
            .min(Duration::from_secs(300));
        let wait = e.retry_after().map(Duration::from_secs).unwrap_or(backoff);
        s.retry_until = Some(Instant::now() + wait);
        s.retry_at = Some(unix_now() + wait.as_secs());
    }
}

impl PassCounts {
    fn merge(&self, other: &PassCounts) {
        for (a, b) in [
            (&self.copied, &other.copied),
            (&self.deleted, &other.deleted),
            (&self.blobs_sent, &other.blobs_sent),
            (&self.blobs_mounted, &other.blobs_mounted),
            (&self.blobs_present, &other.blobs_present),
            (&self.bytes_sent, &other.bytes_sent),
            (&self.failed, &other.failed),
            (&self.dropped, &other.dropped),
        ] {
            a.fetch_add(b.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

impl super::Worker for Replicate {
    type Report = ReplicateReport;

    fn name(&self) -> &'static str {
        "replicate"
    }

    /// Wakes at least every 30 s so that a target's retry time, and each
    /// rule's comparison period, are met without a push to kick it.
    fn interval(&self) -> Option<Duration> {
        self.rules
            .iter()
            .map(|r| r.every)
            .min()
            .map(|e| e.min(Duration::from_secs(30)))
    }

    /// A pass in which a target failed counts as failed, so the loop tries
    /// again with backoff rather than waiting for the interval.
    async fn run_once(&self) -> Result<ReplicateReport, super::WorkerError> {
        let report = self.pass(false).await?;
        let failing: Vec<String> = report
            .targets
            .iter()
            .filter_map(|t| t.error.as_ref().map(|e| format!("{}: {e}", t.target)))
            .collect();
        if failing.is_empty() {
            Ok(report)
        } else {
            Err(super::WorkerError::Other(failing.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(reference: &str, op: QueueOp) -> QueueItem {
        QueueItem {
            target: "http://t".into(),
            repo: "team/app".into(),
            reference: reference.into(),
            op,
            digest: None,
            attempts: 0,
            last_error: None,
            enqueued: 0,
        }
    }

    #[test]
    fn items_for_one_reference_fold_into_the_last_in_its_place() {
        let items = vec![
            (1, item("v1", QueueOp::Copy)),
            (2, item("v2", QueueOp::Copy)),
            (3, item("v1", QueueOp::Delete)),
            (4, item("v3", QueueOp::Copy)),
            (5, item("v1", QueueOp::Copy)),
        ];
        let folded = collapse(&items);
        let got: Vec<(Vec<u64>, &str, QueueOp)> = folded
            .iter()
            .map(|(s, it)| (s.clone(), it.reference.as_str(), it.op))
            .collect();
        assert_eq!(
            got,
            vec![
                (vec![2], "v2", QueueOp::Copy),
                (vec![4], "v3", QueueOp::Copy),
                (vec![1, 3, 5], "v1", QueueOp::Copy),
            ]
        );
    }
}
