//! Content fetched ahead of clients (the sync worker), through the very path
//! client pulls take: [`Proxy::blob`] and its one download per digest, so a
//! client pulling the same blob meanwhile joins that download and the
//! upstream sends it once. Waits until the blob is stored, not merely sent,
//! but never for ever: a download that brings less than
//! [`PREFETCH_MIN_BYTES`] in a [`PREFETCH_WINDOW`] (an upstream dripping a
//! byte at a time stays under every read timeout) is given up by the
//! prefetch, so a sync pass always ends. The download itself goes on for
//! whoever else reads it.

use std::net::IpAddr;
use std::time::Duration;

use super::inflight::{DlState, DownloadError};
use super::{BlobBody, CacheResult, Proxy, ProxyError};
use crate::oci::{Digest, RepoName};
use crate::upstream::UpstreamError;

/// The window over which a prefetched download must make progress.
pub const PREFETCH_WINDOW: Duration = Duration::from_secs(30);
/// Bytes a prefetched download must bring per [`PREFETCH_WINDOW`] (about
/// 2 KiB/s: any real link does better, a drip does not).
pub const PREFETCH_MIN_BYTES: u64 = 64 << 10;

/// Bytes received so far, while the download is still asking or receiving
/// (`None` once every byte is in: storing it is local work, not the upstream's).
fn receiving(state: &DlState) -> Option<u64> {
    match state {
        DlState::Connecting => Some(0),
        DlState::Streaming { received, .. } => Some(*received),
        _ => None,
    }
}

impl Proxy {
    /// Makes sure blob `digest` of the mirrored `local` is stored, starting
    /// (or joining) its download as `client`. Returns the bytes that crossed
    /// the network for it (0 when it was cached already). Fails when the
    /// download falls under the floor (`PREFETCH_MIN_BYTES` per
    /// `PREFETCH_WINDOW`).
    pub async fn prefetch_blob(
        &self,
        upstream: usize,
        local: &RepoName,
        remote: &RepoName,
        digest: &Digest,
        client: IpAddr,
    ) -> Result<u64, ProxyError> {
        let blob = self.blob(upstream, local, remote, digest, client).await?;
        if let BlobBody::Streaming(dl) = &blob.body {
            let mut rx = dl.watch();
            // Where the current window started: when, and at how many bytes.
            let mut window = (tokio::time::Instant::now(), 0u64);
            loop {
                let state = rx.borrow_and_update().clone();
                match &state {
                    DlState::Done { .. } => break,
                    DlState::Failed(e) => return Err(e.clone().into()),
                    _ => {}
                }
                let received = receiving(&state);
                if let Some(r) = received {
                    if window.0.elapsed() >= PREFETCH_WINDOW {
                        let brought = r.saturating_sub(window.1);
                        if brought < PREFETCH_MIN_BYTES {
                            return Err(UpstreamError::Unavailable(format!(
                                "the upstream is too slow: {brought} bytes of blob {digest} in the last {} s (the floor is {} KiB per {} s); given up",
                                PREFETCH_WINDOW.as_secs(),
                                PREFETCH_MIN_BYTES >> 10,
                                PREFETCH_WINDOW.as_secs()
                            ))
                            .into());
                        }
                        window = (tokio::time::Instant::now(), r);
                    }
                }
                let changed = match received {
                    Some(_) => {
                        let until = window.0 + PREFETCH_WINDOW;
                        match tokio::time::timeout_at(until, rx.changed()).await {
                            Ok(c) => c,
                            // The window is over: judged at the top.
                            Err(_) => continue,
                        }
                    }
                    None => rx.changed().await,
                };
                if changed.is_err() {
                    let last = rx.borrow().clone();
                    match last {
                        DlState::Done { .. } => break,
                        DlState::Failed(e) => return Err(e.into()),
                        _ => {
                            let e =
                                DownloadError::Corrupt("download ended without a result".into());
                            return Err(e.into());
                        }
                    }
                }
            }
        }
        Ok(match blob.cache {
            CacheResult::Miss | CacheResult::Peer => blob.size,
            CacheResult::Hit | CacheResult::Stale => 0,
        })
    }
}
