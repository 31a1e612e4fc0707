//! Keeps chosen upstream images warm (`[[sync]]`, `wharf sync [--now]`). A
//! pass runs the rules that are due (each rule's last run is kept in the
//! `sync_state` table, so a restart does not run them all again), or all of
//! them on demand. Per rule: list the upstream's tags, keep those the globs
//! match, and bring each up to date a few at a time (`tag.rs`): one HEAD for
//! an unchanged tag whose content is all here; for one that moved, its
//! manifests and blobs fetched through the same path and downloads as client
//! pulls. Synced content is cached content: it counts against the budget
//! and is evicted like any pull.

mod report;
mod tag;
mod tags;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use globset::GlobSet;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use report::{RuleReport, RuleStatus, SyncReport};
pub use tag::SYNC_CLIENT;
pub use tags::{MAX_MATCHED, next_query};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::metrics::sync::RulePass;
use crate::oci::platform::PlatformSpec;
use crate::oci::{RepoName, Tag};
use crate::proxy::Proxy;
use crate::store::{Store, SyncState, unix_now};
use crate::upstream::Upstreams;
use tag::{Ctx, Outcome};

/// Tags of one rule brought up to date at once.
pub const TAG_PARALLEL: usize = 4;
/// Blob downloads sync runs at once at most (fewer when `max_downloads` is
/// small): client pulls always keep slots of their own.
pub const DOWNLOAD_SHARE: usize = 4;

/// One `[[sync]]` rule, resolved against the routing rules.
pub struct SyncRule {
    /// Stable key (image and tags): where its state is filed.
    pub key: String,
    /// The image as configured.
    pub image: String,
    /// Upstream index.
    pub upstream: usize,
    /// The local (mirrored) name.
    pub local: RepoName,
    /// The name at the upstream.
    pub remote: RepoName,
    /// The tag globs as configured.
    pub patterns: Vec<String>,
    /// The tag globs.
    pub globs: GlobSet,
    /// Platforms kept of an index (empty: all).
    pub platforms: Vec<PlatformSpec>,
    /// How often the rule runs.
    pub every: Duration,
    /// Under this many pulls left upstream, the rule stops fetching.
    pub ratelimit_floor: u64,
}

impl SyncRule {
    /// Every `[[sync]]` rule of a validated configuration.
    pub fn from_config(config: &Config) -> Result<Vec<SyncRule>, String> {
        config
            .sync
            .iter()
            .map(|s| {
                let m = config.sync_mirror(s)?;
                Ok(SyncRule {
                    key: s.key(),
                    image: s.image.clone(),
                    upstream: m.upstream,
                    local: m.local,
                    remote: m.remote,
                    patterns: s.tags.clone(),
                    globs: s.tag_matcher()?,
                    platforms: s.platform_specs()?,
                    every: s.every.0,
                    ratelimit_floor: s.ratelimit_floor,
                })
            })
            .collect()
    }
}

/// The sync worker.
pub struct Sync {
    rules: Vec<Arc<SyncRule>>,
    proxy: Arc<Proxy>,
    store: Arc<Store>,
    upstreams: Arc<Upstreams>,
    metrics: Arc<Metrics>,
    downloads: Arc<Semaphore>,
    /// Whether the state of rules no longer configured was dropped (once
    /// per process: rules change only with a restart).
    pruned: AtomicBool,
}

impl Sync {
    /// Sync of `rules`; at most `download_share` blob downloads at once.
    pub fn new(
        rules: Vec<SyncRule>,
        proxy: Arc<Proxy>,
        store: Arc<Store>,
        upstreams: Arc<Upstreams>,
        metrics: Arc<Metrics>,
        download_share: usize,
    ) -> Sync {
        Sync {
            rules: rules.into_iter().map(Arc::new).collect(),
            proxy,
            store,
            upstreams,
            metrics,
            downloads: Arc::new(Semaphore::new(download_share.max(1))),
            pruned: AtomicBool::new(false),
        }
    }

    /// Sync's share of `max_downloads`: [`DOWNLOAD_SHARE`], or half of a
    /// smaller limit (at least one).
    pub fn download_share(max_downloads: usize, per_client: usize) -> usize {
        DOWNLOAD_SHARE.min(max_downloads / 2).min(per_client).max(1)
    }

    /// One pass: the rules that are due, or all of them when `all`. Fails
    /// when a rule's tag list failed (the others still ran).
    pub async fn pass(&self, all: bool) -> Result<SyncReport, super::WorkerError> {
        if !self.pruned.swap(true, Ordering::AcqRel) {
            let keep = self.rules.iter().map(|r| r.key.clone()).collect();
            let gone = self.store.retain_sync_states(keep).await?;
            if gone > 0 {
                tracing::info!(
                    rules = gone,
                    "sync: dropped the state of rules no longer configured"
                );
            }
        }
        let mut report = SyncReport::default();
        let mut failures = Vec::new();
        let now = unix_now();
        for rule in &self.rules {
            let state = self.store.sync_state(&rule.key).await?;
            let due = state
                .as_ref()
                .is_none_or(|s| now + 1 >= s.last_run.saturating_add(rule.every.as_secs()));
            if !(all || due) {
                report.not_due += 1;
                continue;
            }
            let r = self.run_rule(rule, state.unwrap_or_default()).await?;
            if let Some(f) = &r.failed {
                failures.push(format!("{}: {f}", rule.image));
            }
            report.rules.push(r);
        }
        if failures.is_empty() {
            Ok(report)
        } else {
            Err(super::WorkerError::Upstream(format!(
                "sync: the tag list failed for {}",
                failures.join("; ")
            )))
        }
    }

    /// Every configured rule with its persisted last pass.
    pub async fn rules(&self) -> Result<Vec<RuleStatus>, super::WorkerError> {
        let mut out = Vec::new();
        for rule in &self.rules {
            let state = self.store.sync_state(&rule.key).await?;
            out.push(RuleStatus {
                image: rule.image.clone(),
                local: rule.local.to_string(),
                tags: rule.patterns.clone(),
                platforms: rule.platforms.iter().map(ToString::to_string).collect(),
                every_seconds: rule.every.as_secs(),
                last_run: state.as_ref().map(|s| s.last_run),
                next_run: state
                    .as_ref()
                    .map(|s| s.last_run.saturating_add(rule.every.as_secs())),
                last: state.map(|s| s.summary).filter(|v| !v.is_null()),
            });
        }
        Ok(out)
    }

    /// One rule's pass, recorded in its state and the metrics.
    async fn run_rule(
        &self,
        rule: &Arc<SyncRule>,
        mut state: SyncState,
    ) -> Result<RuleReport, super::WorkerError> {
        let started = Instant::now();
        let started_at = unix_now();
        let mut report = RuleReport {
            image: rule.image.clone(),
            tags: rule.patterns.clone(),
            last_run: started_at,
            next_run: started_at.saturating_add(rule.every.as_secs()),
            ..RuleReport::default()
        };
        let ctx = Arc::new(Ctx {
            rule: rule.clone(),
            proxy: self.proxy.clone(),
            store: self.store.clone(),
            upstreams: self.upstreams.clone(),
            downloads: self.downloads.clone(),
            paused: AtomicBool::new(false),
            paused_at: std::sync::Mutex::new(None),
        });
        let mut checked = 0;
        match tags::list(&self.proxy, rule.upstream, &rule.remote, &rule.globs).await {
            Err(e) => {
                tracing::warn!(image = %rule.image, error = %e, "sync: the upstream's tag list failed");
                report.failed = Some(e.to_string());
            }
            Ok(listed) => {
                report.tags_seen = listed.seen;
                report.matched = listed.matched.len() as u64;
                report.truncated = listed.truncated;
                if listed.invalid > 0 {
                    tracing::warn!(image = %rule.image, names = listed.invalid, "sync: the upstream's tag list holds names that are not tags; ignored");
                }
                // The tags as listed now: one gone upstream is gone from `seen`.
                state.seen.clear();
                if listed.truncated {
                    tracing::warn!(image = %rule.image, kept = MAX_MATCHED, "sync: more tags match than a pass takes; the rest wait");
                }
                checked = self
                    .run_tags(&ctx, listed.matched, &mut report, &mut state)
                    .await;
            }
        }
        if ctx.paused.load(Ordering::Acquire) {
            let at = ctx.paused_at.lock().ok().and_then(|p| *p).unwrap_or(0);
            report.paused = Some(format!(
                "the upstream had {at} pulls left, under ratelimit_floor = {}: fetches paused until the next pass",
                rule.ratelimit_floor
            ));
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        self.metrics.sync.observe(
            &rule.image,
            RulePass {
                checked,
                fetched: report.fetched,
                bytes: report.bytes_fetched,
                errors: report.errors,
                paused: report.paused.is_some(),
                failed: report.failed.is_some(),
            },
        );
        if report.fetched > 0 || report.errors > 0 || report.failed.is_some() {
            tracing::info!(
                image = %rule.image,
                matched = report.matched,
                unchanged = report.unchanged,
                fetched = report.fetched,
                bytes = report.bytes_fetched,
                errors = report.errors,
                "sync rule pass"
            );
        }
        state.last_run = started_at;
        state.summary = serde_json::to_value(&report).unwrap_or_default();
        self.store.put_sync_state(&rule.key, state).await?;
        Ok(report)
    }

    /// Brings `matched` tags up to date, [`TAG_PARALLEL`] at a time; returns
    /// how many were checked upstream.
    async fn run_tags(
        &self,
        ctx: &Arc<Ctx>,
        matched: Vec<String>,
        report: &mut RuleReport,
        state: &mut SyncState,
    ) -> u64 {
        let mut checked = 0;
        let mut todo = matched.into_iter();
        let mut set = JoinSet::new();
        loop {
            while set.len() < TAG_PARALLEL {
                let Some(t) = todo.next() else { break };
                let ctx = ctx.clone();
                set.spawn(async move {
                    let result = match t.parse::<Tag>() {
                        Ok(tag) => ctx.sync(&tag).await.map_err(|e| e.to_string()),
                        Err(e) => Err(format!("not a tag: {e}")),
                    };
                    (t, result)
                });
            }
            let Some(done) = set.join_next().await else {
                break;
            };
            let (t, result) = match done {
                Ok(r) => r,
                Err(e) => {
                    report.error("?", format!("the tag's task failed: {e}"));
                    continue;
                }
            };
            checked += 1;
            match result {
                Ok(Outcome::Unchanged) => report.unchanged += 1,
                Ok(Outcome::Fetched(n)) => {
                    report.fetched += 1;
                    report.bytes_fetched += n;
                }
                Ok(Outcome::Skipped) => report.skipped += 1,
                Err(e) => {
                    tracing::warn!(image = %ctx.rule.image, tag = %t, error = %e, "sync: a tag failed");
                    report.error(&t, e);
                }
            }
            if let Ok(tag) = t.parse::<Tag>() {
                if let Ok(Some(c)) = self.store.cached_tag(&ctx.rule.local, &tag).await {
                    state.seen.insert(t, c.digest.to_string());
                }
            }
        }
        checked
    }
}

impl super::Worker for Sync {
    type Report = SyncReport;

    fn name(&self) -> &'static str {
        "sync"
    }

    /// The shortest `every` of the rules (none: no loop).
    fn interval(&self) -> Option<Duration> {
        self.rules.iter().map(|r| r.every).min()
    }

    async fn run_once(&self) -> Result<SyncReport, super::WorkerError> {
        self.pass(false).await
    }
}
