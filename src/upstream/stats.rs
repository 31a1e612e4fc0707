//! What `/metrics` reports about each upstream's calls: one counter per
//! outcome, kept here as plain atomics (the upstream layer depends only on
//! `oci`), read by the scrape. The outcomes are a fixed set, so the series an
//! upstream can have are bounded whatever its answers.

use std::sync::atomic::{AtomicU64, Ordering};

use super::UpstreamError;

/// Outcome labels of a call, in counter order: `ok`, `not_found` (an answer,
/// not an error), then the error kinds.
pub const OUTCOMES: [&str; 7] = [
    "ok",
    "not_found",
    "denied",
    "rate_limited",
    "unavailable",
    "circuit_open",
    "invalid",
];

/// Outcomes that are errors (every one after `not_found`).
pub const FIRST_ERROR: usize = 2;

/// Calls made to one upstream, by outcome (after retries: one per call a
/// request or worker made, however many attempts it took).
#[derive(Debug, Default)]
pub struct CallStats([AtomicU64; OUTCOMES.len()]);

impl CallStats {
    /// Counts one finished call.
    pub(super) fn record<T>(&self, result: &Result<T, UpstreamError>) {
        let i = match result {
            Ok(_) => 0,
            Err(UpstreamError::NotFound(_)) => 1,
            Err(UpstreamError::Denied(_)) => 2,
            Err(UpstreamError::TooManyRequests { .. }) => 3,
            Err(UpstreamError::Unavailable(_)) => 4,
            Err(UpstreamError::CircuitOpen(_)) => 5,
            Err(UpstreamError::Invalid(_)) => 6,
        };
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Calls so far, by outcome in [`OUTCOMES`] order.
    pub fn snapshot(&self) -> [u64; OUTCOMES.len()] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_has_its_counter() {
        let s = CallStats::default();
        s.record::<()>(&Ok(()));
        s.record::<()>(&Err(UpstreamError::NotFound("x".into())));
        s.record::<()>(&Err(UpstreamError::Unavailable("502".into())));
        s.record::<()>(&Err(UpstreamError::Unavailable("503".into())));
        assert_eq!(s.snapshot(), [1, 1, 0, 0, 2, 0, 0]);
    }
}
