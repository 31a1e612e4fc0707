//! Why a call to an upstream (or peer) failed: one error type for the whole
//! upstream layer, which the HTTP layer maps to OCI errors in one place.

/// Why an upstream call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream does not have it (404).
    #[error("{0} is not known upstream")]
    NotFound(String),
    /// The upstream refused our credentials or scope.
    #[error("the upstream registry denied access: {0}")]
    Denied(String),
    /// The upstream's rate limit (429).
    #[error("the upstream registry's rate limit is reached")]
    TooManyRequests {
        /// Seconds it asked to wait.
        retry_after: Option<u64>,
    },
    /// Connect error, timeout or 5xx.
    #[error("the upstream registry is unavailable: {0}")]
    Unavailable(String),
    /// Skipped: too many recent failures.
    #[error("the upstream registry failed repeatedly; next try in {0}s")]
    CircuitOpen(u64),
    /// A response that makes no sense (bad digest header, oversized manifest).
    #[error("the upstream registry sent an invalid response: {0}")]
    Invalid(String),
}

impl UpstreamError {
    pub(super) fn retryable(&self) -> bool {
        matches!(
            self,
            UpstreamError::Unavailable(_) | UpstreamError::TooManyRequests { .. }
        )
    }

    /// Failures that count against the circuit breaker (the upstream is sick,
    /// not merely saying no).
    pub(super) fn is_outage(&self) -> bool {
        matches!(
            self,
            UpstreamError::Unavailable(_) | UpstreamError::TooManyRequests { .. }
        )
    }
}
