//! Fill leases: which node downloads a blob none of the nodes sharing the
//! bucket has yet, so N nodes that miss it at once fetch it from the
//! upstream about once (DESIGN's "Multi-node (S3)").
//!
//! A lease is the object `fills/<hex>` holding `{node, expires_unix}`,
//! taken with a conditional create (`If-None-Match: *`) or, once expired,
//! taken over with an `If-Match` replace of the expired version, so exactly
//! one node wins each race. Its holder renews it (`If-Match` its own
//! version) while the download runs and deletes it when done, stored or
//! failed; a holder that dies stops renewing, and the lease expires. The
//! shared gc sweep removes leases that lapsed longer than the grace ago
//! ([`Bucket::remove_lapsed_fill_leases`]), so a node killed mid-download
//! leaves nothing behind for good.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::Bucket;
use crate::oci::Digest;
use crate::store::StoreError;

/// How long a lease holds without renewal: a node that dies while filling
/// delays the others by at most this.
pub const FILL_LEASE_TTL: Duration = Duration::from_secs(60);

/// A lease object is a node id and a time: never more than this.
const MAX_LEASE_BYTES: u64 = 4096;

/// At most this many fill leases are read by one sweep, so a bucket
/// holding a flood of them (planted) cannot make a sweep endless; the rest
/// wait for the next sweep.
pub const MAX_LEASES_PER_SWEEP: u64 = 10_000;

/// The lease object's body.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseBody {
    node: String,
    expires_unix: u64,
}

/// Who holds a fill lease, as read from the bucket.
#[derive(Debug, Clone)]
pub struct LeaseHolder {
    /// The holding node's id.
    pub node: String,
    /// When the lease lapses unless renewed (seconds since the epoch).
    pub expires_unix: u64,
}

impl LeaseHolder {
    /// Whether the lease has lapsed (its holder stopped renewing it).
    pub fn expired(&self) -> bool {
        crate::store::unix_now() >= self.expires_unix
    }
}

/// What an attempt to take a fill lease found.
#[derive(Debug)]
pub enum Acquired {
    /// This node holds the lease now: it downloads.
    Held(FillLease),
    /// Another download holds it (on another node, or this one under
    /// another repository name): wait for its object.
    Busy(LeaseHolder),
}

/// A fill lease this node holds.
#[derive(Debug)]
pub struct FillLease {
    bucket: Arc<Bucket>,
    rel: String,
    ttl: Duration,
    /// The version this node last wrote: renewals and the release name it.
    etag: Option<String>,
}

fn lease_key(digest: &Digest) -> String {
    format!("fills/{}", digest.hex())
}

fn body(node: &str, ttl: Duration) -> Bytes {
    let b = LeaseBody {
        node: node.to_owned(),
        expires_unix: crate::store::unix_now().saturating_add(ttl.as_secs().max(1)),
    };
    // A struct of a string and a number always serializes.
    Bytes::from(serde_json::to_vec(&b).unwrap_or_default())
}

impl Bucket {
    /// Who holds the fill lease of `digest`, if anyone. A lease that cannot
    /// be read as one counts as expired (anyone may take it over).
    pub async fn fill_lease_holder(
        &self,
        digest: &Digest,
    ) -> Result<Option<(LeaseHolder, Option<String>)>, StoreError> {
        let Some(small) = self.get_small(&lease_key(digest), MAX_LEASE_BYTES).await? else {
            return Ok(None);
        };
        let holder = match serde_json::from_slice::<LeaseBody>(&small.bytes) {
            // An expiry further out than a holder ever writes (a clock far
            // ahead, or planted) is cut back, so no miss waits on it long.
            Ok(b) => LeaseHolder {
                node: b.node,
                expires_unix: super::lease_deadline(b.expires_unix, small.modified, FILL_LEASE_TTL),
            },
            Err(_) => LeaseHolder {
                node: "(unreadable lease)".into(),
                expires_unix: 0,
            },
        };
        Ok(Some((holder, small.etag)))
    }

    /// Tries to take the fill lease of `digest` for `ttl`: creates it when
    /// absent, takes it over when expired, else says who holds it.
    pub async fn acquire_fill_lease(
        self: &Arc<Self>,
        digest: &Digest,
        ttl: Duration,
    ) -> Result<Acquired, StoreError> {
        let rel = lease_key(digest);
        // Each round loses only to another node's write in between; a few
        // rounds settle any race.
        for _ in 0..4 {
            if let Some(etag) = self
                .create_versioned(&rel, body(self.node_id(), ttl))
                .await?
            {
                return Ok(Acquired::Held(self.held(rel, ttl, Some(etag))));
            }
            let Some((holder, etag)) = self.fill_lease_holder(digest).await? else {
                continue; // Released in between: create again.
            };
            if !holder.expired() {
                return Ok(Acquired::Busy(holder));
            }
            let Some(old) = etag else {
                // No version to name: the takeover cannot be conditional.
                return Ok(Acquired::Busy(holder));
            };
            tracing::info!(digest = %digest, node = %holder.node, "taking over an expired fill lease");
            if let Some(etag) = self
                .replace_versioned(&rel, &old, body(self.node_id(), ttl))
                .await?
            {
                return Ok(Acquired::Held(self.held(rel, ttl, Some(etag))));
            }
        }
        Ok(Acquired::Busy(LeaseHolder {
            node: "(contended)".into(),
            expires_unix: crate::store::unix_now().saturating_add(1),
        }))
    }

    /// Removes the fill leases that lapsed before `before_unix`: their
    /// holder died mid-download. A lease that is not one counts as lapsed
    /// when it was written. A waiting node may take a lapsed lease over
    /// (an `If-Match` rewrite) at any moment, so each lease is first taken
    /// by this node with an `If-Match` of the version read, which leaves it
    /// live for [`FILL_LEASE_TTL`] (no other node takes it over meanwhile),
    /// and deleted right after; a lease rewritten since it was read stays.
    /// `gc` (the gc lease this sweep holds) is kept up while the leases
    /// are read. At most [`MAX_LEASES_PER_SWEEP`] are read; how many went
    /// (would go, dry).
    pub async fn remove_lapsed_fill_leases(
        &self,
        before_unix: u64,
        dry_run: bool,
        gc: &mut super::lease::Lease,
    ) -> Result<u64, StoreError> {
        let mut listing = self.objects().list(Some(&self.key("fills")));
        let (mut read, mut removed) = (0u64, 0u64);
        while let Some(item) = listing.next().await {
            let meta = item.map_err(|e| super::failed("list", e))?;
            let Some(rel) = self.rel(&meta.location).map(str::to_owned) else {
                continue;
            };
            read += 1;
            if read > MAX_LEASES_PER_SWEEP {
                break;
            }
            gc.keep().await?;
            let Some(small) = self.get_small(&rel, MAX_LEASE_BYTES).await.ok().flatten() else {
                continue; // released meanwhile, or too large to be a lease
            };
            let lapses = match serde_json::from_slice::<LeaseBody>(&small.bytes) {
                Ok(b) => super::lease_deadline(b.expires_unix, small.modified, FILL_LEASE_TTL),
                Err(_) => u64::try_from(small.modified).unwrap_or(0),
            };
            if lapses >= before_unix {
                continue;
            }
            if dry_run {
                removed += 1;
                continue;
            }
            let Some(etag) = small.etag else {
                continue; // no version to name: it cannot be taken safely
            };
            let claim = body(self.node_id(), FILL_LEASE_TTL);
            if self.replace_versioned(&rel, &etag, claim).await?.is_some() {
                self.delete(&rel).await?;
                removed += 1;
            }
        }
        if removed > 0 && !dry_run {
            tracing::info!(
                removed,
                "gc: removed fill leases left by nodes that died mid-download"
            );
        }
        Ok(removed)
    }

    fn held(self: &Arc<Self>, rel: String, ttl: Duration, etag: Option<String>) -> FillLease {
        FillLease {
            bucket: self.clone(),
            rel,
            ttl,
            etag,
        }
    }
}

impl FillLease {
    /// How often the holder renews: three times per TTL, so one slow
    /// renewal does not lose the lease.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// Pushes the expiry a TTL ahead (`If-Match` the version this node
    /// wrote): false when the lease was lost (taken over after it lapsed).
    pub async fn renew(&mut self) -> Result<bool, StoreError> {
        let Some(etag) = self.etag.clone() else {
            return Ok(false);
        };
        let next = body(self.bucket.node_id(), self.ttl);
        match self
            .bucket
            .replace_versioned(&self.rel, &etag, next)
            .await?
        {
            Some(e) => {
                self.etag = Some(e);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Deletes the lease if it is still this node's (a lease another node
    /// took over stays theirs), so waiting nodes go on at once.
    pub async fn release(self) -> Result<(), StoreError> {
        let Some(current) = self.bucket.get_small(&self.rel, MAX_LEASE_BYTES).await? else {
            return Ok(());
        };
        if current.etag.is_some() && current.etag == self.etag {
            self.bucket.delete(&self.rel).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn node(objects: &Arc<InMemory>, id: &str) -> Arc<Bucket> {
        Arc::new(Bucket::new(objects.clone(), "p/", id))
    }

    fn digest() -> Digest {
        crate::oci::Digest::of_bytes(b"a blob")
    }

    #[tokio::test]
    async fn one_node_holds_a_lease_and_the_others_see_who() {
        let objects = Arc::new(InMemory::new());
        let (a, b) = (node(&objects, "a"), node(&objects, "b"));
        let Acquired::Held(mut lease) = a
            .acquire_fill_lease(&digest(), FILL_LEASE_TTL)
            .await
            .unwrap()
        else {
            panic!("the first node takes the lease");
        };
        match b
            .acquire_fill_lease(&digest(), FILL_LEASE_TTL)
            .await
            .unwrap()
        {
            Acquired::Busy(h) => {
                assert_eq!(h.node, "a");
                assert!(!h.expired());
            }
            Acquired::Held(_) => panic!("a held lease is not taken twice"),
        }
        assert!(lease.renew().await.unwrap(), "the holder renews");
        assert!(
            lease.renew().await.unwrap(),
            "again, naming its new version"
        );
        lease.release().await.unwrap();
        assert!(b.fill_lease_holder(&digest()).await.unwrap().is_none());
        assert!(matches!(
            b.acquire_fill_lease(&digest(), FILL_LEASE_TTL)
                .await
                .unwrap(),
            Acquired::Held(_)
        ));
    }

    #[tokio::test]
    async fn a_lapsed_lease_is_taken_over_and_its_old_holder_cannot_renew_or_release_it() {
        let objects = Arc::new(InMemory::new());
        let (a, b) = (node(&objects, "a"), node(&objects, "b"));
        // A TTL of zero lapses at once (the expiry is at least a second on,
        // so wait for the clock to pass it).
        let Acquired::Held(mut old) = a
            .acquire_fill_lease(&digest(), Duration::ZERO)
            .await
            .unwrap()
        else {
            panic!("the first node takes the lease");
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut new = loop {
            match b
                .acquire_fill_lease(&digest(), FILL_LEASE_TTL)
                .await
                .unwrap()
            {
                Acquired::Held(l) => break l,
                Acquired::Busy(_) => {
                    assert!(std::time::Instant::now() < deadline, "the lease lapses");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        assert!(!old.renew().await.unwrap(), "the old holder lost it");
        old.release().await.unwrap();
        let (h, _) = a.fill_lease_holder(&digest()).await.unwrap().unwrap();
        assert_eq!(h.node, "b", "the old holder's release left the new lease");
        assert!(new.renew().await.unwrap());
        new.release().await.unwrap();
        assert!(a.fill_lease_holder(&digest()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_unreadable_lease_counts_as_lapsed() {
        let objects = Arc::new(InMemory::new());
        let a = node(&objects, "a");
        a.put(&lease_key(&digest()), Bytes::from_static(b"not json"))
            .await
            .unwrap();
        assert!(matches!(
            a.acquire_fill_lease(&digest(), FILL_LEASE_TTL)
                .await
                .unwrap(),
            Acquired::Held(_)
        ));
    }
}
