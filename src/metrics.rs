//! Prometheus metrics: what operators graph and alert on. The per-request
//! series are reached through handles resolved once (`handles.rs`).

pub mod catalog;
mod handles;
pub mod history;
pub mod replication;
pub mod storage;
pub mod summary;
pub mod sync;
pub mod upstream;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// Labels of per-request series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method: one of the methods the API uses, or `other` (a label never
    /// takes a value the client chose).
    pub method: &'static str,
    /// Route name (`manifest`, `blob`, ...).
    pub route: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// The metric label of a request method: the methods the API serves by name,
/// everything else (extension methods of any length) as `other`.
pub fn method_label(m: &http::Method) -> &'static str {
    use http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Labels of per-route series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route name.
    pub route: &'static str,
}

/// Labels of cache lookups.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// manifest or blob.
    pub kind: &'static str,
    /// HIT, MISS, PEER or STALE.
    pub result: &'static str,
}

/// Labels of bytes served by where they came from.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `local` (the store), `peer` (a LAN peer's download in flight) or
    /// `upstream` (an upstream's download in flight).
    pub source: &'static str,
}

/// Sources of served bytes, in `served_bytes` order.
pub const SOURCES: [&str; 3] = ["local", "peer", "upstream"];

/// Labels of per-upstream series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// Upstream name.
    pub upstream: String,
}

/// Labels of authorization refusals.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// unauthenticated, insufficient_scope, forbidden or rate_limited.
    pub reason: &'static str,
}

/// Labels of worker passes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    /// The worker's name (`gc`, `evict`, ...).
    pub worker: &'static str,
    /// ok or error.
    pub result: &'static str,
}

/// All metrics, registered once.
pub struct Metrics {
    registry: catalog::Catalog,
    requests: Family<RequestLabels, Counter>,
    response_bytes: Family<RouteLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    /// Bytes received in blob uploads.
    pub upload_bytes: Counter,
    /// Upload sessions currently open.
    pub uploads_open: Gauge,
    /// Abandoned upload sessions removed.
    pub uploads_expired: Counter,
    /// Requests refused by authorization, by reason.
    pub auth_refusals: Family<RefusalLabels, Counter>,
    /// Tokens issued by `/token`.
    pub tokens_issued: Counter,
    /// bcrypt password verifications run (what logins cost).
    pub password_checks: Counter,
    /// Blob downloads in flight.
    pub downloads_in_flight: Gauge,
    upstream_skipped: Family<UpstreamLabels, Gauge>,
    cache: Family<CacheLabels, Counter>,
    upstream_bytes: Family<UpstreamLabels, Counter>,
    /// `upstream_bytes` summed over upstreams (a family cannot be summed
    /// without its lock), for [`Metrics::history_totals`].
    upstream_bytes_sum: std::sync::atomic::AtomicU64,
    upstream_ratelimit: Family<UpstreamLabels, Gauge>,
    download_failures: Family<UpstreamLabels, Counter>,
    worker_runs: Family<WorkerLabels, Counter>,
    /// Bytes of cached (mirrored) content.
    pub cache_bytes: Gauge,
    /// `[storage] max_cache_size` (0: unlimited).
    pub cache_budget_bytes: Gauge,
    /// Bytes evicted from the cache.
    pub evicted_bytes: Counter,
    /// Content files evicted from the cache.
    pub evicted_blobs: Counter,
    /// Content files removed by gc.
    pub gc_swept_blobs: Counter,
    /// Bytes removed by gc.
    pub gc_swept_bytes: Counter,
    /// Corrupt content files verify found and quarantined.
    pub verify_corrupt: Counter,
    /// Blob bytes answered with `sendfile` from the page cache (plain-TCP
    /// HTTP/1); the rest of `http_response_bytes` for blobs was copied.
    pub blob_zero_copy_bytes: Counter,
    /// Log lines dropped because stderr did not keep up (synced from
    /// [`crate::logging::dropped_lines`] when scraped).
    log_lines_dropped: Counter,
    /// The drop count already added to `log_lines_dropped`.
    log_lines_synced: std::sync::atomic::AtomicU64,
    /// Manifest and blob body bytes served, by source ([`SOURCES`] order).
    served_bytes: [Counter; SOURCES.len()],
    /// Per-request series resolved once.
    handles: handles::Handles,
    /// Per-upstream calls and peer traffic.
    pub upstreams: upstream::UpstreamMetrics,
    /// Stored content and its filesystem.
    pub storage: storage::StorageMetrics,
    /// The replicate worker's series.
    pub replication: replication::ReplicationMetrics,
    /// The sync worker's series.
    pub sync: sync::SyncMetrics,
    /// The last hour and day of cache results and served bytes, for the web
    /// page (fed by [`history::sampler`]; empty at process start).
    pub history: history::History,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every series.
    pub fn new() -> Metrics {
        let mut registry = catalog::Catalog::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by route and status",
            requests.clone(),
        );
        let response_bytes = Family::<RouteLabels, Counter>::default();
        registry.register(
            "http_response_bytes",
            "Response body bytes sent, by route",
            response_bytes.clone(),
        );
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 4.0, 10))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to produce response headers, by route",
            duration.clone(),
        );
        let upload_bytes = Counter::default();
        registry.register(
            "upload_bytes",
            "Blob bytes received from pushes",
            upload_bytes.clone(),
        );
        let uploads_open = Gauge::default();
        registry.register(
            "uploads_open",
            "Upload sessions currently open",
            uploads_open.clone(),
        );
        let uploads_expired = Counter::default();
        registry.register(
            "uploads_expired",
            "Abandoned upload sessions removed",
            uploads_expired.clone(),
        );
        let auth_refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "auth_refusals",
            "Requests refused by authorization, by reason",
            auth_refusals.clone(),
        );
        let tokens_issued = Counter::default();
        registry.register(
            "tokens_issued",
            "Bearer tokens issued by /token",
            tokens_issued.clone(),
        );
        let password_checks = Counter::default();
        registry.register(
            "password_checks",
            "bcrypt password verifications run (failed and successful logins not served from the credential cache)",
            password_checks.clone(),
        );
        let downloads_in_flight = Gauge::default();
        registry.register(
            "downloads_in_flight",
            "Blob downloads from upstreams or peers in progress",
            downloads_in_flight.clone(),
        );
        let upstream_skipped = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "upstream_skipped",
            "1 while the circuit breaker skips the upstream after repeated failures",
            upstream_skipped.clone(),
        );
        let cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_requests",
            "Proxied manifest and blob requests by cache result",
            cache.clone(),
        );
        let upstream_bytes = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_blob_bytes",
            "Blob bytes downloaded from each upstream",
            upstream_bytes.clone(),
        );
        let upstream_ratelimit = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "upstream_ratelimit_remaining",
            "Pulls left in the upstream's window (Docker Hub's ratelimit-remaining)",
            upstream_ratelimit.clone(),
        );
        let download_failures = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_download_failures",
            "Blob downloads that failed (errors, short or corrupt bytes); nothing was kept",
            download_failures.clone(),
        );
        let worker_runs = Family::<WorkerLabels, Counter>::default();
        registry.register(
            "worker_runs",
            "Background worker passes, by worker and result",
            worker_runs.clone(),
        );
        let cache_bytes = Gauge::default();
        registry.register(
            "cache_bytes",
            "Bytes of cached (mirrored) content, the share max_cache_size limits",
            cache_bytes.clone(),
        );
        let cache_budget_bytes = Gauge::default();
        registry.register(
            "cache_budget_bytes",
            "The cache budget, [storage] max_cache_size (0: unlimited)",
            cache_budget_bytes.clone(),
        );
        let evicted_bytes = Counter::default();
        registry.register(
            "evicted_bytes",
            "Bytes of cached content evicted to stay under the budget",
            evicted_bytes.clone(),
        );
        let evicted_blobs = Counter::default();
        registry.register(
            "evicted_blobs",
            "Cached content files (blobs and manifests) evicted",
            evicted_blobs.clone(),
        );
        let gc_swept_blobs = Counter::default();
        registry.register(
            "gc_swept_blobs",
            "Unreferenced content files removed by garbage collection",
            gc_swept_blobs.clone(),
        );
        let gc_swept_bytes = Counter::default();
        registry.register(
            "gc_swept_bytes",
            "Bytes removed by garbage collection",
            gc_swept_bytes.clone(),
        );
        let verify_corrupt = Counter::default();
        registry.register(
            "verify_corrupt",
            "Corrupt content files found by verify and quarantined",
            verify_corrupt.clone(),
        );
        let blob_zero_copy_bytes = Counter::default();
        registry.register(
            "blob_zero_copy_bytes",
            "Blob bytes answered with sendfile straight from the page cache (plain-TCP HTTP/1)",
            blob_zero_copy_bytes.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stderr did not keep up (the log buffer was full)",
            log_lines_dropped.clone(),
        );
        let served = Family::<SourceLabels, Counter>::default();
        registry.register(
            "served_bytes",
            "Manifest and blob body bytes served to clients, by where they came from (local, peer, upstream)",
            served.clone(),
        );
        let served_bytes =
            SOURCES.map(|source| served.get_or_create(&SourceLabels { source }).clone());
        let upstreams = upstream::UpstreamMetrics::register(&mut registry);
        let storage = storage::StorageMetrics::register(&mut registry);
        let sync = sync::SyncMetrics::register(&mut registry);
        let started = Gauge::<i64>::default();
        started.set(i64::try_from(crate::store::unix_now()).unwrap_or(0));
        registry.register(
            "start_time_seconds",
            "Unix time the process started",
            started,
        );
        let replication = replication::ReplicationMetrics::register(&mut registry);
        Metrics {
            registry,
            requests,
            response_bytes,
            duration,
            upload_bytes,
            uploads_open,
            uploads_expired,
            auth_refusals,
            tokens_issued,
            password_checks,
            downloads_in_flight,
            upstream_skipped,
            cache,
            upstream_bytes,
            upstream_bytes_sum: Default::default(),
            upstream_ratelimit,
            download_failures,
            worker_runs,
            cache_bytes,
            cache_budget_bytes,
            evicted_bytes,
            evicted_blobs,
            gc_swept_blobs,
            gc_swept_bytes,
            verify_corrupt,
            blob_zero_copy_bytes,
            log_lines_dropped,
            log_lines_synced: Default::default(),
            served_bytes,
            handles: Default::default(),
            upstreams,
            storage,
            replication,
            sync,
            history: history::History::default(),
        }
    }

    /// The current totals of the counters [`history`] follows: atomics read,
    /// no lock taken.
    pub fn history_totals(&self) -> history::Counts {
        let cache = |result: &str| -> u64 {
            let Some(r) = handles::index_of(&handles::CACHE_RESULTS, result) else {
                return 0;
            };
            self.handles
                .cache
                .iter()
                .filter_map(|by_result| by_result[r].get())
                .map(Counter::get)
                .fold(0, u64::saturating_add)
        };
        let served = |source: &str| {
            SOURCES
                .iter()
                .position(|s| *s == source)
                .map_or(0, |i| self.served_bytes[i].get())
        };
        history::Counts {
            hit: cache("HIT"),
            stale: cache("STALE"),
            peer: cache("PEER"),
            miss: cache("MISS"),
            served_local: served("local"),
            served_peer: served("peer"),
            served_upstream: served("upstream"),
            fetched_upstream: self
                .upstream_bytes_sum
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Records the counters' current totals into [`Metrics::history`].
    pub fn sample_history(&self) {
        self.history.record(self.history_totals());
    }

    /// The history up to this second (samples first): what the dashboard
    /// draws.
    pub fn history_now(&self) -> history::Snapshot {
        self.sample_history();
        self.history.snapshot()
    }

    /// Counts one worker pass.
    pub fn observe_worker_run(&self, worker: &'static str, result: &'static str) {
        self.worker_runs
            .get_or_create(&WorkerLabels { worker, result })
            .inc();
    }

    /// Records one finished request.
    pub fn observe_request(
        &self,
        method: &http::Method,
        route: &'static str,
        status: u16,
        bytes: u64,
        elapsed: Duration,
    ) {
        let method = method_label(method);
        let slot = handles::index_of(&handles::ROUTES, route).map(|r| &self.handles.routes[r]);
        let requests = || {
            self.requests
                .get_or_create(&RequestLabels {
                    method,
                    route,
                    status,
                })
                .clone()
        };
        let per_route = || {
            (
                self.response_bytes
                    .get_or_create(&RouteLabels { route })
                    .clone(),
                self.duration.get_or_create(&RouteLabels { route }).clone(),
            )
        };
        let Some(slot) = slot else {
            requests().inc();
            let (b, d) = per_route();
            b.inc_by(bytes);
            d.observe(elapsed.as_secs_f64());
            return;
        };
        match (
            handles::index_of(&handles::METHODS, method),
            handles::STATUSES.iter().position(|s| *s == status),
        ) {
            (Some(m), Some(s)) => slot.requests[m][s].get_or_init(requests).inc(),
            _ => requests().inc(),
        };
        let (b, d) = slot.bytes_and_duration.get_or_init(per_route);
        b.inc_by(bytes);
        d.observe(elapsed.as_secs_f64());
    }

    /// Counts `n` manifest or blob body bytes served from `source` (one of
    /// [`SOURCES`]; anything else counts as `local`).
    pub fn observe_served(&self, source: &str, n: u64) {
        let i = SOURCES.iter().position(|s| *s == source).unwrap_or(0);
        self.served_bytes[i].inc_by(n);
    }

    /// Counts one proxied lookup.
    pub fn observe_cache(&self, kind: &'static str, result: &'static str) {
        let labels = || {
            self.cache
                .get_or_create(&CacheLabels { kind, result })
                .clone()
        };
        match (
            handles::index_of(&handles::CACHE_KINDS, kind),
            handles::index_of(&handles::CACHE_RESULTS, result),
        ) {
            (Some(k), Some(r)) => self.handles.cache[k][r].get_or_init(labels).inc(),
            _ => labels().inc(),
        };
    }

    /// Counts blob bytes received from an upstream.
    pub fn observe_upstream_bytes(&self, upstream: &str, n: u64) {
        self.upstream_bytes_sum
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        self.upstream_bytes
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .inc_by(n);
    }

    /// Records whether the circuit breaker skips `upstream`.
    pub fn set_upstream_skipped(&self, upstream: &str, skipped: bool) {
        self.upstream_skipped
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .set(i64::from(skipped));
    }

    /// Records the upstream's remaining pull allowance.
    pub fn set_upstream_ratelimit(&self, upstream: &str, remaining: i64) {
        self.upstream_ratelimit
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .set(remaining);
    }

    /// Counts a failed blob download.
    pub fn observe_download_failure(&self, upstream: &str) {
        self.download_failures
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .inc();
    }

    /// Every registered family, name and type, whether or not it has a
    /// series yet (what README's table is checked against).
    pub fn families(&self) -> &[(String, &'static str)] {
        self.registry.families()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let dropped = crate::logging::dropped_lines();
        let synced = self
            .log_lines_synced
            .fetch_max(dropped, std::sync::atomic::Ordering::Relaxed);
        self.log_lines_dropped
            .inc_by(dropped.saturating_sub(synced));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, self.registry.registry()).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(m: &Metrics, prefix: &str) -> Vec<String> {
        m.render()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn history_follows_the_cache_and_byte_counters() {
        let m = Metrics::new();
        m.observe_cache("manifest", "HIT");
        m.observe_cache("blob", "HIT");
        m.observe_cache("blob", "STALE");
        m.observe_cache("blob", "MISS");
        m.observe_cache("blob", "PEER");
        m.observe_served("local", 700);
        m.observe_served("upstream", 300);
        m.observe_upstream_bytes("docker.io", 200);
        m.observe_upstream_bytes("ghcr.io", 100);
        let t = m.history_totals();
        assert_eq!((t.hit, t.stale, t.miss, t.peer), (2, 1, 1, 1));
        assert_eq!((t.served_local, t.served_upstream), (700, 300));
        assert_eq!(t.fetched_upstream, 300);
        let now = m.history_now();
        assert_eq!(now.hour.total(), t);
        assert_eq!(now.day.total().hit_ratio(), Some(0.6));
    }

    #[test]
    fn pre_resolved_and_looked_up_series_count_alike() {
        let m = Metrics::new();
        let ms = Duration::from_millis(1);
        for _ in 0..3 {
            m.observe_request(&http::Method::GET, "manifest", 200, 10, ms);
        }
        m.observe_request(&http::Method::GET, "manifest", 418, 5, ms);
        m.observe_request(&http::Method::GET, "elsewhere", 200, 1, ms);
        let requests = series(&m, "wharf_http_requests_total");
        for want in [
            "wharf_http_requests_total{method=\"GET\",route=\"manifest\",status=\"200\"} 3",
            "wharf_http_requests_total{method=\"GET\",route=\"manifest\",status=\"418\"} 1",
            "wharf_http_requests_total{method=\"GET\",route=\"elsewhere\",status=\"200\"} 1",
        ] {
            assert!(requests.iter().any(|l| l == want), "{want} in {requests:?}");
        }
        assert_eq!(requests.len(), 3, "series appear once used: {requests:?}");
        assert!(
            series(&m, "wharf_http_response_bytes_total")
                .contains(&"wharf_http_response_bytes_total{route=\"manifest\"} 35".to_owned())
        );
        assert!(
            series(&m, "wharf_http_request_duration_seconds_count").contains(
                &"wharf_http_request_duration_seconds_count{route=\"manifest\"} 4".to_owned()
            )
        );
        m.observe_cache("manifest", "HIT");
        m.observe_cache("manifest", "HIT");
        m.observe_cache("odd", "HIT");
        let cache = series(&m, "wharf_cache_requests_total");
        assert!(cache.contains(
            &"wharf_cache_requests_total{kind=\"manifest\",result=\"HIT\"} 2".to_owned()
        ));
        assert!(
            cache.contains(&"wharf_cache_requests_total{kind=\"odd\",result=\"HIT\"} 1".to_owned())
        );
    }
}
