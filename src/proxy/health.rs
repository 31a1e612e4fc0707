//! Each upstream's health as the engine sees it right now (circuit breaker,
//! Docker Hub's pull allowance): what the web page's dashboard shows beside
//! the same values `/metrics` exports.

use super::Proxy;

/// One upstream's state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpstreamHealth {
    /// The name clients write (`docker.io`).
    pub name: String,
    /// Whether the circuit breaker is skipping it (it failed repeatedly).
    pub skipped: bool,
    /// Pulls left in Docker Hub's window (`ratelimit-remaining` of its last
    /// answer); `None` until an upstream sends one.
    pub pulls_remaining: Option<i64>,
}

impl Proxy {
    /// Every configured upstream's health, in configuration order.
    pub fn upstream_health(&self) -> Vec<UpstreamHealth> {
        self.upstreams
            .iter()
            .map(|up| UpstreamHealth {
                name: up.name.clone(),
                skipped: up.is_skipped(),
                pulls_remaining: up.ratelimit_remaining(),
            })
            .collect()
    }
}
