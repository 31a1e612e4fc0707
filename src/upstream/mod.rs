//! Upstream registries: the HTTP client that fetches what is not cached yet,
//! and (`target`) the one that pushes replicated repositories to another registry.
//! Depends only on `oci`; rate limits, retries, deadlines, auth and the
//! circuit breaker live here.

pub mod breaker;
pub mod client;
pub mod deadline;
pub mod error;
pub mod peers;
pub mod response;
pub mod stats;
pub mod target;
pub mod token;

use std::sync::Arc;

pub use client::{Upstream, UpstreamError, UpstreamManifest, UpstreamSettings};
pub use deadline::Deadline;
pub use target::{Deleted, Target, TargetSettings};

/// All configured upstreams, in configuration order (routing's indices).
pub struct Upstreams(Vec<Arc<Upstream>>);

impl Upstreams {
    /// Builds a client per upstream.
    pub fn new(settings: Vec<UpstreamSettings>) -> Result<Upstreams, UpstreamError> {
        Ok(Upstreams(
            settings
                .into_iter()
                .map(|s| Upstream::new(s).map(Arc::new))
                .collect::<Result<_, _>>()?,
        ))
    }

    /// The upstream at routing index `i`.
    pub fn get(&self, i: usize) -> Option<&Arc<Upstream>> {
        self.0.get(i)
    }

    /// Every upstream.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.0.iter()
    }
}
