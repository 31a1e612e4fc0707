//! Pre-resolved series for the per-request metrics. A `Family` lookup hashes
//! the label set and takes a lock on every call; at tens of thousands of
//! requests a second that is a measurable share of a cached manifest GET. The
//! label values a request can have are few and known (route names, method
//! labels, common statuses, cache results), so each series is looked up in
//! its family once, the first time it is used, and its handle kept here;
//! anything else (an unusual status) takes the family lookup as before.
//! Series still appear in `/metrics` only once used, with the same names and
//! labels.

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

/// Route names the HTTP layer reports (`Route::name`, `admin`, `unmatched`).
pub(super) const ROUTES: [&str; 14] = [
    "base",
    "catalog",
    "manifest",
    "blob",
    "upload_start",
    "upload",
    "tags",
    "referrers",
    "healthz",
    "readyz",
    "metrics",
    "token",
    "admin",
    "unmatched",
];

/// Method labels (`method_label`).
pub(super) const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];

/// Statuses the API answers with often enough to keep a handle for.
pub(super) const STATUSES: [u16; 20] = [
    200, 201, 202, 204, 206, 301, 307, 400, 401, 403, 404, 405, 406, 409, 413, 416, 429, 500, 502,
    503,
];

/// Cache lookup kinds (`observe_cache`).
pub(super) const CACHE_KINDS: [&str; 2] = ["manifest", "blob"];
/// Cache results (`observe_cache`).
pub(super) const CACHE_RESULTS: [&str; 4] = ["HIT", "MISS", "PEER", "STALE"];

/// The index of `v` in `list`.
pub(super) fn index_of<T: PartialEq + ?Sized>(list: &[&T], v: &T) -> Option<usize> {
    list.iter().position(|x| *x == v)
}

/// One route's series.
pub(super) struct RouteHandles {
    /// `http_response_bytes{route}` and `http_request_duration_seconds{route}`.
    pub(super) bytes_and_duration: OnceLock<(Counter, Histogram)>,
    /// `http_requests{method,route,status}` by method, then status.
    pub(super) requests: [[OnceLock<Counter>; STATUSES.len()]; METHODS.len()],
}

/// Every pre-resolved handle.
pub(super) struct Handles {
    /// By route index.
    pub(super) routes: [RouteHandles; ROUTES.len()],
    /// `cache_requests{kind,result}` by kind, then result.
    pub(super) cache: [[OnceLock<Counter>; CACHE_RESULTS.len()]; CACHE_KINDS.len()],
}

impl Default for Handles {
    fn default() -> Self {
        Handles {
            routes: std::array::from_fn(|_| RouteHandles {
                bytes_and_duration: OnceLock::new(),
                requests: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
            }),
            cache: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
        }
    }
}
