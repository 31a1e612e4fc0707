//! A cache fill across nodes sharing one bucket: a node that misses a blob
//! looks in the bucket first (another node may have stored it), and only
//! then takes the blob's fill lease and downloads. A node that finds the
//! lease held waits for the holder's object instead of fetching the same
//! bytes from the upstream again, so N nodes that miss a blob at once cost
//! the upstream about one download. One download entry per node and digest
//! (`inflight`) does the waiting, so a node waits once per digest, not once
//! per client; its readers see the download `Connecting` meanwhile.

use std::time::Duration;

use tokio::time::Instant;

use crate::oci::{Digest, RepoName};
use crate::store::shared::fill_lease::{Acquired, FILL_LEASE_TTL, FillLease};
use crate::store::{Origin, Store, StoreError};

/// The longest a node waits for another node's fill while that node keeps
/// renewing its lease; then it downloads itself. A holder that stops
/// renewing (killed, cut off) loses the lease within [`FILL_LEASE_TTL`],
/// and a waiting node takes it over well before this.
pub const FILL_WAIT_MAX: Duration = Duration::from_secs(600);
/// The first wait between two looks at the bucket; doubled up to
/// [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two looks.
const POLL_MAX: Duration = Duration::from_secs(1);

/// What a node that misses a blob does.
pub(super) enum Fill {
    /// Another node stored it: recorded here now, with this size.
    Adopted(u64),
    /// Download it, holding the blob's fill lease when the bucket gave one
    /// (none: not shared, or the lease could not be used).
    Download(Option<FillLease>),
}

/// Decides who fills `digest`: adopted from the bucket, or downloaded here
/// (with the lease), after waiting for another node's fill if one is
/// running. A bucket that fails on the lease does not stop the download;
/// one that fails on the blob itself is the error.
pub(super) async fn claim(
    store: &Store,
    repo: &RepoName,
    digest: &Digest,
) -> Result<Fill, StoreError> {
    let Some(bucket) = store.records().map(|r| r.bucket().clone()) else {
        return Ok(Fill::Download(None));
    };
    let give_up = Instant::now() + FILL_WAIT_MAX;
    let mut delay = POLL_FIRST;
    let mut take = true;
    let mut waited_for: Option<String> = None;
    loop {
        if let Some(size) = store
            .adopt_from_bucket(repo, digest, Origin::Cached)
            .await?
        {
            if let Some(node) = waited_for {
                tracing::debug!(%digest, %node, "another node's fill arrived in the bucket");
            }
            return Ok(Fill::Adopted(size));
        }
        if take {
            match bucket.acquire_fill_lease(digest, FILL_LEASE_TTL).await {
                Ok(Acquired::Held(lease)) => {
                    // The holder before may have stored the blob and let go
                    // between the look above and this take.
                    if let Some(size) = store
                        .adopt_from_bucket(repo, digest, Origin::Cached)
                        .await?
                    {
                        release(lease, digest).await;
                        return Ok(Fill::Adopted(size));
                    }
                    return Ok(Fill::Download(Some(lease)));
                }
                Ok(Acquired::Busy(holder)) => {
                    if waited_for.as_deref() != Some(holder.node.as_str()) {
                        tracing::debug!(%digest, node = %holder.node, "another node is filling this blob; waiting for its object");
                        waited_for = Some(holder.node);
                    }
                }
                Err(e) => {
                    tracing::warn!(%digest, error = %e, "the fill lease could not be taken; downloading without it");
                    return Ok(Fill::Download(None));
                }
            }
        }
        if Instant::now() >= give_up {
            tracing::warn!(%digest, node = ?waited_for, "another node's fill took too long; downloading here too");
            return Ok(Fill::Download(None));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(POLL_MAX);
        // Free (released, failed) or lapsed (its holder stopped renewing):
        // try to take it after the next look for the object.
        take = match bucket.fill_lease_holder(digest).await {
            Ok(None) => true,
            Ok(Some((holder, _))) => holder.expired(),
            Err(e) => {
                tracing::warn!(%digest, error = %e, "the fill lease could not be read; downloading without it");
                return Ok(Fill::Download(None));
            }
        };
    }
}

/// Keeps `lease` renewed for as long as it is polled (beside the download
/// it covers); never returns. A lost lease (it lapsed and another node took
/// it over) is logged and no longer renewed: the download goes on.
pub(super) async fn keep_renewed(lease: &mut FillLease, digest: &Digest) {
    loop {
        tokio::time::sleep(lease.renew_every()).await;
        match lease.renew().await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(%digest, "the fill lease was lost (taken over after it lapsed)");
                break;
            }
            Err(e) => tracing::warn!(%digest, error = %e, "the fill lease could not be renewed"),
        }
    }
    std::future::pending::<()>().await;
}

/// Lets go of `lease` (the download ended), so waiting nodes go on at once.
pub(super) async fn release(lease: FillLease, digest: &Digest) {
    if let Err(e) = lease.release().await {
        tracing::warn!(%digest, error = %e, "the fill lease could not be released; it lapses on its own");
    }
}
