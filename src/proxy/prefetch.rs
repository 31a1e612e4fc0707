//! Content fetched ahead of clients (the sync worker), through the very path
//! client pulls take: [`Proxy::blob`] and its one download per digest, so a
//! client pulling the same blob meanwhile joins that download and the
//! upstream sends it once. Waits until the blob is stored, not merely sent.

use std::net::IpAddr;

use super::inflight::{DlState, DownloadError};
use super::{BlobBody, CacheResult, Proxy, ProxyError};
use crate::oci::{Digest, RepoName};

impl Proxy {
    /// Makes sure blob `digest` of the mirrored `local` is stored, starting
    /// (or joining) its download as `client`. Returns the bytes that crossed
    /// the network for it (0 when it was cached already).
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
            loop {
                let state = rx.borrow_and_update().clone();
                match state {
                    DlState::Done { .. } => break,
                    DlState::Failed(e) => return Err(e.into()),
                    _ => {}
                }
                if rx.changed().await.is_err() {
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
