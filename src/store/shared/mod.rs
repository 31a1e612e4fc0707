//! The bucket several nodes share (`[storage] backend = "s3"`): the source of
//! truth each node's redb indexes (DESIGN's "Multi-node (S3)").
//!
//! Blobs live under `blobs/sha256/` (`content/s3.rs`). This module holds
//! what the nodes tell each other through small objects next to them:
//! hosted records (`records.rs`: `hosted/<name>/_`, `repos/<name>/tags/<tag>`,
//! `repos/<name>/manifests/<digest>`, `repos/<name>/layers/<digest>`), the
//! `gc-lease` naming the one node that may delete shared objects
//! (`lease.rs`), each node's live set (`live.rs`, `nodes/<id>/live`), and
//! fill leases (`fill_lease.rs`: `fills/<hex>`, which node downloads a blob
//! they all miss), and the Bearer-token key every node signs with
//! (`token_key.rs`, `auth/token-key`).
//! Every key is under the configured prefix; [`Bucket`] adds it.

pub mod fill_lease;
pub mod lease;
pub mod live;
pub mod records;
pub mod token_key;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use object_store::path::Path as Key;
use object_store::{
    GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload,
};

use super::StoreError;

pub use records::Records;

/// One shared bucket (and prefix) as this node sees it.
pub struct Bucket {
    objects: Arc<dyn ObjectStore>,
    prefix: String,
    node_id: String,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("prefix", &self.prefix)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// How far a node's clock may run ahead of the bucket's before the leases it
/// writes are cut short (see [`lease_deadline`]).
pub const MAX_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

/// When a lease object really lapses: its stated expiry (`expires_unix`,
/// the writer's clock), but never later than `ttl` plus [`MAX_CLOCK_SKEW`]
/// after the bucket last saw it written (`modified`). A holder writes an
/// expiry at most `ttl` ahead and renews well before it, so a later one
/// comes from a clock far ahead or was planted; trusting it would block
/// every sweep (or fill) until then, years if need be.
pub fn lease_deadline(expires_unix: u64, modified: i64, ttl: std::time::Duration) -> u64 {
    let cap = u64::try_from(modified)
        .unwrap_or(0)
        .saturating_add(ttl.as_secs())
        .saturating_add(MAX_CLOCK_SKEW.as_secs());
    expires_unix.min(cap)
}

/// 64 hex digits as 32 bytes; `None` for anything else (what a live set's
/// digests and the token key are written as).
pub fn hex32(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    // Hex digits only: `from_str_radix` would take a sign too.
    if hex.len() != 64 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// An object store failure as a store error (rendered as storage I/O by
/// every API surface).
pub fn failed(what: &str, e: object_store::Error) -> StoreError {
    StoreError::Io(Arc::new(std::io::Error::other(format!("s3 {what}: {e}"))))
}

/// A small object as read: its bytes and the version a conditional write
/// names.
#[derive(Debug, Clone)]
pub struct Small {
    /// The body.
    pub bytes: Bytes,
    /// The object's ETag (for `If-Match`).
    pub etag: Option<String>,
    /// When it was last written (seconds since the epoch).
    pub modified: i64,
}

impl Bucket {
    /// `objects` with keys under `prefix` (`""` or ending in `/`), seen by
    /// the node `node_id`.
    pub fn new(objects: Arc<dyn ObjectStore>, prefix: &str, node_id: &str) -> Bucket {
        Bucket {
            objects,
            prefix: prefix.to_owned(),
            node_id: node_id.to_owned(),
        }
    }

    /// This node's identity (`root/node-id`).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The object store itself, for listings and streams.
    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    /// The full key of `rel` (a path below the prefix).
    pub fn key(&self, rel: &str) -> Key {
        Key::from(format!("{}{rel}", self.prefix))
    }

    /// `key` without the prefix, as listings return it.
    pub fn rel<'a>(&self, key: &'a Key) -> Option<&'a str> {
        key.as_ref().strip_prefix(self.prefix.as_str())
    }

    /// Reads an object of at most `max` bytes; `None` when absent. A larger
    /// object is an error (records are small by construction; a big one is
    /// not ours).
    pub async fn get_small(&self, rel: &str, max: u64) -> Result<Option<Small>, StoreError> {
        let key = self.key(rel);
        let got = match self.objects.get_opts(&key, GetOptions::default()).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(failed("read", e)),
        };
        if got.meta.size > max {
            return Err(StoreError::Corrupt(format!(
                "bucket object {key} is {} bytes, more than the {max} a record may hold",
                got.meta.size
            )));
        }
        let etag = got.meta.e_tag.clone();
        let modified = got.meta.last_modified.timestamp();
        let bytes = got.bytes().await.map_err(|e| failed("read", e))?;
        Ok(Some(Small {
            bytes,
            etag,
            modified,
        }))
    }

    /// The object's metadata; `None` when absent.
    pub async fn head(&self, rel: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match self.objects.head(&self.key(rel)).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed("head", e)),
        }
    }

    /// Writes (or overwrites) a small object.
    pub async fn put(&self, rel: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.objects
            .put(&self.key(rel), PutPayload::from(bytes))
            .await
            .map_err(|e| failed("write", e))?;
        Ok(())
    }

    /// Creates an object only if none exists (`If-None-Match: *`): whether
    /// this call created it.
    pub async fn create(&self, rel: &str, bytes: Bytes) -> Result<bool, StoreError> {
        Ok(self.put_if(rel, bytes, PutMode::Create).await?.is_some())
    }

    /// Replaces an object only if it is still at `etag` (`If-Match`):
    /// whether this call replaced it (false: someone else wrote first, or
    /// it is gone).
    pub async fn replace(&self, rel: &str, etag: &str, bytes: Bytes) -> Result<bool, StoreError> {
        Ok(self.put_if(rel, bytes, if_match(etag)).await?.is_some())
    }

    /// [`Bucket::create`], returning the new object's ETag (what a later
    /// `If-Match` names); `None` when the object exists already.
    pub async fn create_versioned(
        &self,
        rel: &str,
        bytes: Bytes,
    ) -> Result<Option<String>, StoreError> {
        match self.put_if(rel, bytes, PutMode::Create).await? {
            Some(etag) => etag_of(rel, etag).map(Some),
            None => Ok(None),
        }
    }

    /// [`Bucket::replace`], returning the new object's ETag; `None` when
    /// the object is no longer at `etag` (or is gone).
    pub async fn replace_versioned(
        &self,
        rel: &str,
        etag: &str,
        bytes: Bytes,
    ) -> Result<Option<String>, StoreError> {
        match self.put_if(rel, bytes, if_match(etag)).await? {
            Some(etag) => etag_of(rel, etag).map(Some),
            None => Ok(None),
        }
    }

    /// A conditional write: `Some` of the new ETag (if the server sent one)
    /// when it happened, `None` when the condition failed.
    async fn put_if(
        &self,
        rel: &str,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<Option<Option<String>>, StoreError> {
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match self
            .objects
            .put_opts(&self.key(rel), PutPayload::from(bytes), opts)
            .await
        {
            Ok(r) => Ok(Some(r.e_tag)),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. })
            | Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed("conditional write", e)),
        }
    }

    /// Deletes many objects in bulk requests (`DeleteObjects`); absent ones
    /// are no error. Returns how many were deleted; the first failure is
    /// returned after the others were tried.
    pub async fn delete_many(&self, rels: Vec<String>) -> Result<u64, StoreError> {
        let keys: Vec<object_store::Result<Key>> = rels.iter().map(|r| Ok(self.key(r))).collect();
        let mut results = self
            .objects
            .delete_stream(futures_util::stream::iter(keys).boxed());
        let (mut deleted, mut first) = (0u64, None);
        while let Some(r) = results.next().await {
            match r {
                Ok(_) => deleted += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "s3: an object could not be deleted");
                    first.get_or_insert(failed("delete", e));
                }
            }
        }
        first.map_or(Ok(deleted), Err)
    }

    /// Deletes an object; an absent one is no error.
    pub async fn delete(&self, rel: &str) -> Result<(), StoreError> {
        match self.objects.delete(&self.key(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(failed("delete", e)),
        }
    }

    /// The names of the objects directly under `dir` (which ends in `/`),
    /// sorted; objects deeper down are not listed.
    pub async fn list_names(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let key = self.key(dir.trim_end_matches('/'));
        let listed = self
            .objects
            .list_with_delimiter(Some(&key))
            .await
            .map_err(|e| failed("list", e))?;
        let mut names: Vec<String> = listed
            .objects
            .iter()
            .filter_map(|o| o.location.filename().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every object key below `dir` (recursively), without the prefix.
    pub async fn list_all(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let key = self.key(dir.trim_end_matches('/'));
        let mut stream = self.objects.list(Some(&key));
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let meta = item.map_err(|e| failed("list", e))?;
            if let Some(rel) = self.rel(&meta.location) {
                out.push(rel.to_owned());
            }
        }
        Ok(out)
    }
}

/// The ETag a conditional write answered; every S3 implementation wharf
/// supports returns one, and the lease cannot work without it.
/// The write mode of an `If-Match: etag` replace.
fn if_match(etag: &str) -> PutMode {
    PutMode::Update(object_store::UpdateVersion {
        e_tag: Some(etag.to_owned()),
        version: None,
    })
}

fn etag_of(rel: &str, etag: Option<String>) -> Result<String, StoreError> {
    etag.ok_or_else(|| {
        StoreError::Io(Arc::new(std::io::Error::other(format!(
            "s3: the bucket answered a write of {rel} without an ETag; conditional writes need one"
        ))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_lease_lapses_by_its_expiry_or_soon_after_its_last_write() {
        let ttl = Duration::from_secs(120);
        let written = 1_000_000i64;
        // An honest lease: its own expiry.
        assert_eq!(lease_deadline(1_000_120, written, ttl), 1_000_120);
        // A far-future one (a clock years ahead, or planted): cut back.
        let cap = 1_000_000 + 120 + MAX_CLOCK_SKEW.as_secs();
        assert_eq!(lease_deadline(u64::MAX, written, ttl), cap);
        assert_eq!(lease_deadline(4_000_000_000, written, ttl), cap);
        // A bucket clock before the epoch does not wrap.
        assert_eq!(
            lease_deadline(u64::MAX, -5, ttl),
            120 + MAX_CLOCK_SKEW.as_secs()
        );
    }
}
