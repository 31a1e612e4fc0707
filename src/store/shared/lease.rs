//! The `gc-lease` object: which node may delete shared objects now.
//!
//! Nodes sharing a bucket each decide from their own index; only the sweep
//! (`store/bucket_gc.rs`) deletes blobs, and only on the node holding this
//! lease, so two sweeps never race each other. The lease is JSON
//! `{node, expires_unix, mark}`: taken with a conditional create
//! (`If-None-Match: *`), an expired one taken over with `If-Match` on its
//! ETag, renewed with `If-Match` while sweeping, and deleted at the end only
//! if it is still this node's. `mark` is how a sweep asks every node to
//! publish its live set now: nodes poll this object (one small GET every few
//! seconds) and republish when they see a mark they have not answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Bucket;
use crate::store::{StoreError, unix_now};

/// The lease's key under the prefix.
pub const LEASE: &str = "gc-lease";
/// How long a lease lives without renewal: a holder killed mid-sweep blocks
/// other sweeps at most this long.
pub const LEASE_TTL: Duration = Duration::from_secs(120);
/// A lease is never larger than this (a node id and two numbers).
const MAX_LEASE: u64 = 4096;

/// What the lease object holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseBody {
    /// The holder's node id.
    pub node: String,
    /// When it expires unless renewed (the holder's clock, seconds).
    pub expires_unix: u64,
    /// The latest sweep's request for fresh live sets (a token, unique per
    /// request); `None` until the holder asks.
    #[serde(default)]
    pub mark: Option<u64>,
}

/// The lease, held by this node.
#[derive(Debug)]
pub struct Lease {
    bucket: Arc<Bucket>,
    etag: String,
    body: LeaseBody,
    renewed: Instant,
}

/// What an attempt to take the lease found.
#[derive(Debug)]
pub enum Taken {
    /// This node holds it now.
    Ours(Lease),
    /// Another node holds it, unexpired.
    Held {
        /// The holder.
        node: String,
        /// When its lease expires (its clock, seconds).
        expires_unix: u64,
    },
}

fn lost(why: &str) -> StoreError {
    StoreError::Io(Arc::new(std::io::Error::other(format!(
        "gc lease lost: {why}; the sweep stopped"
    ))))
}

fn encode(body: &LeaseBody) -> Result<Bytes, StoreError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| StoreError::Io(Arc::new(std::io::Error::other(e.to_string()))))
}

/// Reads the lease as it is now (its body and ETag); `None` when nobody
/// holds it. A body that does not parse counts as expired; an expiry further
/// out than an honest holder writes is cut back (`lease_deadline`).
async fn read(bucket: &Bucket) -> Result<Option<(LeaseBody, Option<String>)>, StoreError> {
    let Some(small) = bucket.get_small(LEASE, MAX_LEASE).await? else {
        return Ok(None);
    };
    let mut body: LeaseBody = serde_json::from_slice(&small.bytes).unwrap_or(LeaseBody {
        node: String::new(),
        expires_unix: 0,
        mark: None,
    });
    body.expires_unix = super::lease_deadline(body.expires_unix, small.modified, LEASE_TTL);
    Ok(Some((body, small.etag)))
}

/// Whether a node holds the lease now (a sweep may be deleting).
pub async fn sweep_running(bucket: &Bucket) -> Result<bool, StoreError> {
    Ok(read(bucket)
        .await?
        .is_some_and(|(b, _)| b.expires_unix > unix_now()))
}

/// The mark of the current lease, if any: what a node polls to learn that a
/// sweep wants its live set now.
pub async fn current_mark(bucket: &Bucket) -> Result<Option<u64>, StoreError> {
    Ok(read(bucket).await?.and_then(|(b, _)| b.mark))
}

/// Takes the lease for this node when it is free, expired, or a leftover of
/// this same node (a restart after a kill).
pub async fn take(bucket: &Arc<Bucket>) -> Result<Taken, StoreError> {
    let me = bucket.node_id().to_owned();
    let body = LeaseBody {
        node: me.clone(),
        expires_unix: unix_now() + LEASE_TTL.as_secs(),
        mark: None,
    };
    // Twice: a lease released between our create and our read is free again.
    for _ in 0..2 {
        if let Some(etag) = bucket.create_versioned(LEASE, encode(&body)?).await? {
            return Ok(Taken::Ours(Lease::new(bucket, etag, body)));
        }
        let Some((held, etag)) = read(bucket).await? else {
            continue;
        };
        if held.node != me && held.expires_unix > unix_now() {
            return Ok(Taken::Held {
                node: held.node,
                expires_unix: held.expires_unix,
            });
        }
        let Some(etag) = etag else {
            return Err(lost("the bucket gives the lease no ETag"));
        };
        if !held.node.is_empty() && held.node != me {
            tracing::info!(holder = %held.node, "gc: taking over an expired gc lease");
        }
        return match bucket
            .replace_versioned(LEASE, &etag, encode(&body)?)
            .await?
        {
            Some(etag) => Ok(Taken::Ours(Lease::new(bucket, etag, body))),
            // Someone else took it over first: theirs now.
            None => match read(bucket).await? {
                Some((b, _)) => Ok(Taken::Held {
                    node: b.node,
                    expires_unix: b.expires_unix,
                }),
                None => Err(lost("it changed hands while being taken over")),
            },
        };
    }
    Err(lost("it kept changing hands while being taken"))
}

impl Lease {
    fn new(bucket: &Arc<Bucket>, etag: String, body: LeaseBody) -> Lease {
        Lease {
            bucket: bucket.clone(),
            etag,
            body,
            renewed: Instant::now(),
        }
    }

    /// Writes the lease again (new expiry, current mark) if it is still
    /// ours; an error when another node took it.
    async fn write(&mut self) -> Result<(), StoreError> {
        self.body.expires_unix = unix_now() + LEASE_TTL.as_secs();
        match self
            .bucket
            .replace_versioned(LEASE, &self.etag, encode(&self.body)?)
            .await?
        {
            Some(etag) => {
                self.etag = etag;
                self.renewed = Instant::now();
                Ok(())
            }
            None => Err(lost("another node replaced it")),
        }
    }

    /// Renews the lease when a quarter of its life has passed (cheap to
    /// call often while sweeping); an error when it is no longer ours.
    pub async fn keep(&mut self) -> Result<(), StoreError> {
        if self.renewed.elapsed() >= LEASE_TTL / 4 {
            self.write().await?;
        }
        Ok(())
    }

    /// Renews the lease now; an error when it is no longer ours (checked
    /// right before deleting anything).
    pub async fn renew(&mut self) -> Result<(), StoreError> {
        self.write().await
    }

    /// Asks every node for a fresh live set: writes a new mark. Returns the
    /// mark and the bucket's clock when it was written (the lease's
    /// LastModified as a listing gives it, in milliseconds, the precision
    /// blob listings have too): any object modified before that existed
    /// before a node saw the mark.
    pub async fn mark(&mut self) -> Result<(u64, i64), StoreError> {
        let token = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let token = token.max(self.body.mark.map_or(0, |m| m + 1));
        self.body.mark = Some(token);
        self.write().await?;
        // The objects right under the prefix: the lease and little else.
        let key = self.bucket.key(LEASE);
        let top = self
            .bucket
            .objects()
            .list_with_delimiter(Some(&self.bucket.key("")))
            .await
            .map_err(|e| super::failed("list", e))?;
        top.objects
            .iter()
            .find(|m| m.location == key)
            .map(|m| (token, m.last_modified.timestamp_millis()))
            .ok_or_else(|| lost("it vanished after the mark"))
    }

    /// The node holding it (this one).
    pub fn node(&self) -> &str {
        &self.body.node
    }

    /// Deletes the lease if it is still ours (it is checked and renewed
    /// first, so it cannot have expired into another node's hands between
    /// the check and the delete).
    pub async fn release(mut self) {
        if let Err(e) = self.write().await {
            tracing::warn!(error = %e, "gc: lease not released");
            return;
        }
        if let Err(e) = self.bucket.delete(LEASE).await {
            tracing::warn!(error = %e, "gc: lease not released; it expires by itself");
        }
    }
}
