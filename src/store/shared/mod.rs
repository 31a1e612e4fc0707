//! The bucket several nodes share (`[storage] backend = "s3"`): the source of
//! truth each node's redb indexes (DESIGN's "Multi-node (S3)").
//!
//! Blobs live under `blobs/sha256/` (`content/s3.rs`). This module holds
//! what the nodes tell each other through small objects next to them:
//! hosted records (`records.rs`: `hosted/<name>`, `repos/<name>/tags/<tag>`,
//! `repos/<name>/manifests/<digest>`, `repos/<name>/layers/<digest>`) and
//! fill leases (`fill_lease.rs`: `fills/<hex>`, which node downloads a blob
//! they all miss).
//! Every key is under the configured prefix; [`Bucket`] adds it.

pub mod fill_lease;
pub mod records;

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
        Ok(self.create_tagged(rel, bytes).await?.is_some())
    }

    /// [`Bucket::create`] that also returns the version written: `None`
    /// when the object existed, else `Some` of its ETag (if the server sent
    /// one), for a later `If-Match`.
    pub async fn create_tagged(
        &self,
        rel: &str,
        bytes: Bytes,
    ) -> Result<Option<Option<String>>, StoreError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .objects
            .put_opts(&self.key(rel), PutPayload::from(bytes), opts)
            .await
        {
            Ok(r) => Ok(Some(r.e_tag)),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(None),
            Err(e) => Err(failed("create", e)),
        }
    }

    /// Replaces an object only if it is still at `etag` (`If-Match`):
    /// whether this call replaced it (false: someone else wrote first, or
    /// it is gone).
    pub async fn replace(&self, rel: &str, etag: &str, bytes: Bytes) -> Result<bool, StoreError> {
        Ok(self.replace_tagged(rel, etag, bytes).await?.is_some())
    }

    /// [`Bucket::replace`] that also returns the version written: `None`
    /// when the object was elsewhere or gone, else `Some` of its new ETag.
    pub async fn replace_tagged(
        &self,
        rel: &str,
        etag: &str,
        bytes: Bytes,
    ) -> Result<Option<Option<String>>, StoreError> {
        let opts = PutOptions {
            mode: PutMode::Update(object_store::UpdateVersion {
                e_tag: Some(etag.to_owned()),
                version: None,
            }),
            ..Default::default()
        };
        match self
            .objects
            .put_opts(&self.key(rel), PutPayload::from(bytes), opts)
            .await
        {
            Ok(r) => Ok(Some(r.e_tag)),
            Err(object_store::Error::Precondition { .. })
            | Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed("conditional write", e)),
        }
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
