//! The storage lifecycle workers together (access-time flush, evict, gc,
//! verify, backup, import), built from the configuration in one call so the composition root
//! adds them with a few lines, and handed as one value to whatever runs their
//! passes on demand (the admin API, tests).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::access::AccessFlush;
use super::backup::Backup;
use super::evict::Evict;
use super::gc::Gc;
use super::import::Import;
use super::verify::Verify;
use super::{Handle, Registry};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;

/// Below this `[gc] grace`, pushes in progress are at risk (a warning at start).
const MIN_SAFE_GRACE: Duration = Duration::from_secs(60);

/// Handles of the lifecycle workers.
#[derive(Clone)]
pub struct Lifecycle {
    /// Flushes last-read times.
    pub access: Handle<AccessFlush>,
    /// Keeps the cache under its budget.
    pub evict: Handle<Evict>,
    /// Collects unreferenced blobs.
    pub gc: Handle<Gc>,
    /// Re-hashes content, on demand.
    pub verify: Handle<Verify>,
    /// Online backups, on demand with a destination.
    pub backup: Handle<Backup>,
    /// Imports a `registry:2` storage root, on demand (`wharf import`).
    pub import: Handle<Import>,
    store: Arc<Store>,
    /// How often this node republishes its live set unasked (shared bucket).
    live_every: Duration,
}

impl Lifecycle {
    /// Builds the workers from `[storage]` and `[gc]`, and gives the store its
    /// cache budget. `[gc] interval = "0"` runs gc only on demand.
    pub fn new(config: &Config, store: Arc<Store>, metrics: Arc<Metrics>) -> Lifecycle {
        let budget = config.storage.max_cache_size.0;
        store.set_cache_budget(budget);
        metrics
            .cache_budget_bytes
            .set(i64::try_from(budget).unwrap_or(i64::MAX));
        metrics
            .cache_bytes
            .set(i64::try_from(store.cached_bytes()).unwrap_or(i64::MAX));
        let interval = Some(config.gc.interval.0).filter(|d| *d > Duration::ZERO);
        if config.gc.grace.0 < MIN_SAFE_GRACE {
            tracing::warn!(
                grace = ?config.gc.grace.0,
                "[gc] grace is shorter than a minute: a push whose manifest arrives later than that after its layers can fail with MANIFEST_BLOB_UNKNOWN when a collection runs in between"
            );
        }
        Lifecycle {
            access: Handle::new(AccessFlush::new(store.clone()), metrics.clone()),
            evict: Handle::new(
                Evict::new(store.clone(), metrics.clone(), config.storage.low_watermark),
                metrics.clone(),
            ),
            gc: Handle::new(
                Gc::new(store.clone(), metrics.clone(), config.gc.grace.0, interval),
                metrics.clone(),
            ),
            verify: Handle::new(Verify::new(store.clone(), metrics.clone()), metrics.clone()),
            backup: Handle::new(Backup::new(store.clone()), metrics.clone()),
            import: Handle::new(Import::new(store.clone(), config.route_rules()), metrics),
            store,
            live_every: super::live_set::period(config.gc.grace.0, interval),
        }
    }

    /// The store they work on (for pins, usage and the like beside a pass).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Lists the workers in status reports.
    pub fn register(&self, registry: &mut Registry) {
        registry.add(self.access.control.clone());
        registry.add(self.evict.control.clone());
        registry.add(self.gc.control.clone());
        registry.add(self.verify.control.clone());
        registry.add(self.backup.control.clone());
        registry.add(self.import.control.clone());
    }

    /// Spawns every loop, the task that kicks eviction when a write takes
    /// the cache past its budget, and on a shared bucket the one keeping this
    /// node's live set current. All end at shutdown.
    pub fn spawn(&self, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let store = self.store.clone();
        let evict = self.evict.control.clone();
        let mut rx = shutdown.clone();
        let forward = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = store.cache_over_budget().notified() => evict.kick(),
                    _ = crate::shutdown::until_shutdown(&mut rx) => return,
                }
            }
        });
        let mut tasks = vec![
            self.access.spawn(shutdown.clone()),
            self.evict.spawn(shutdown.clone()),
            self.gc.spawn(shutdown.clone()),
            self.verify.spawn(shutdown.clone()),
            self.backup.spawn(shutdown.clone()),
            forward,
        ];
        if self.store.is_shared() {
            tasks.push(tokio::spawn(super::live_set::run(
                self.store.clone(),
                self.live_every,
                shutdown,
            )));
        }
        tasks
    }
}
