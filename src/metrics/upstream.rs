//! Per-upstream call series and LAN peer traffic. The upstream layer counts
//! its calls in plain atomics ([`crate::upstream::stats::CallStats`]); the
//! scrape copies them here. Labels are upstream names and peer URLs from the
//! configuration and a fixed outcome set, never anything a client sent.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::upstream::stats::{FIRST_ERROR, OUTCOMES};

/// Labels of upstream calls by outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// Upstream name (configuration).
    pub upstream: String,
    /// One of [`OUTCOMES`].
    pub result: &'static str,
}

/// Labels of failed upstream calls by kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Upstream name (configuration).
    pub upstream: String,
    /// An error outcome of [`OUTCOMES`].
    pub kind: &'static str,
}

/// Labels of peer traffic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// The peer's URL (configuration).
    pub peer: String,
}

/// The series, registered once.
pub struct UpstreamMetrics {
    calls: Family<CallLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    peer_bytes: Family<PeerLabels, Counter>,
    /// Serializes [`UpstreamMetrics::sync_calls`]: two scrapes at once must
    /// not both add the same difference.
    sync: Mutex<()>,
}

/// Raises `c` to `total` (counters only go up; a smaller total is ignored).
fn raise_to(c: &Counter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

impl UpstreamMetrics {
    /// Registers the series in `registry`.
    pub(super) fn register(registry: &mut super::catalog::Catalog) -> UpstreamMetrics {
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "upstream_requests",
            "Calls to each upstream (after retries), by result: ok, not_found, or an error kind",
            calls.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failed calls to each upstream, by kind (denied, rate_limited, unavailable, circuit_open, invalid)",
            errors.clone(),
        );
        let peer_bytes = Family::<PeerLabels, Counter>::default();
        registry.register(
            "peer_blob_bytes",
            "Blob bytes downloaded from each LAN peer",
            peer_bytes.clone(),
        );
        UpstreamMetrics {
            calls,
            errors,
            peer_bytes,
            sync: Mutex::new(()),
        }
    }

    /// Copies one upstream's call counts (in [`OUTCOMES`] order). Every
    /// outcome's series exists from the first scrape, at 0 until it happens,
    /// so a rate over it is defined before the first failure.
    pub fn sync_calls(&self, upstream: &str, totals: &[u64; OUTCOMES.len()]) {
        let _held = self.sync.lock();
        for (i, (result, total)) in OUTCOMES.iter().zip(totals).enumerate() {
            let call = CallLabels {
                upstream: upstream.to_owned(),
                result,
            };
            raise_to(&self.calls.get_or_create(&call), *total);
            if i >= FIRST_ERROR {
                let error = ErrorLabels {
                    upstream: upstream.to_owned(),
                    kind: result,
                };
                raise_to(&self.errors.get_or_create(&error), *total);
            }
        }
    }

    /// Counts `n` blob bytes received from `peer`.
    pub fn peer_bytes(&self, peer: &str, n: u64) {
        if n > 0 {
            self.peer_bytes
                .get_or_create(&PeerLabels {
                    peer: peer.to_owned(),
                })
                .inc_by(n);
        }
    }
}
