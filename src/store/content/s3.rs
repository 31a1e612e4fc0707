//! Content in an S3-compatible bucket (`[storage] backend = "s3"`), on
//! `object_store`: `<prefix>blobs/sha256/<hex>`, one object per digest.
//!
//! New bytes are staged and verified in the local `tmp/` as for files (so
//! followers of a download stream the staged file while it fills); a staged
//! blob is then uploaded once: small ones in one PUT with `If-None-Match: *`
//! (conditional create), large ones in parts of [`PART_SIZE`] or more, read
//! from the staged file one part at a time with at most [`PARTS_IN_FLIGHT`]
//! parts uploading. Reads stream a ranged GET and keep it open while the
//! reader goes on sequentially, so a response costs one request, not one per
//! chunk. Objects are named by their digest and written only after their
//! bytes verified, so a second node writing the same digest writes the same
//! bytes: a PUT that finds the object there is a success.
//!
//! Start-up never lists the bucket ([`BlobBackend::scans_at_start`] is
//! false): it checks the bucket answers, and that is all. Several nodes may
//! share one bucket and prefix, so this backend never deletes a blob on a
//! node's own say-so ([`S3Backend::remove_many`]); only the shared sweep
//! does.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::path::Path as Key;
use object_store::signer::Signer as _;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt as _, PutMode, PutMultipartOptions,
    PutOptions, PutPayload,
};
use tokio::sync::Mutex;

use super::{
    Adopted, BackupDir, BlobBackend, BlobReader, BoxFuture, Exported, Hashed, Pace, Pending,
    ReadAt, Scan, Staged, Stray,
};
use crate::oci::{Digest, DigestHasher};
use crate::store::StoreError;

/// Blobs up to this size go in one PUT; larger ones in parts of this size
/// (or more, for blobs past 10,000 parts of it).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one blob uploading at once: a publish holds at most this many
/// parts in memory.
pub const PARTS_IN_FLIGHT: usize = 2;
/// Blobs uploading to the bucket at once, node-wide: each holds up to
/// [`PARTS_IN_FLIGHT`] parts (or one small blob) in memory, so this bounds
/// that memory at 16 × 16 MiB however many pushes and fills finish at once.
pub const PUBLISHES_AT_ONCE: usize = 16;
/// Bucket reads a node opens at once (HEADs, and GETs until their answer
/// starts; a started stream holds nothing): a pull storm queues here instead
/// of opening thousands of connections to the bucket server at once, which a
/// small one (MinIO on one host) refuses. Streams already open are not
/// limited, so a slow client never holds others up.
pub const OPENS_AT_ONCE: usize = 64;
/// How often a commit that found its object already in the bucket checks
/// whether a shared gc sweep still runs, and how long it waits at most.
const SWEEP_POLL: Duration = Duration::from_millis(500);
const SWEEP_WAIT_LIMIT: Duration = Duration::from_secs(300);
/// Retries of one bucket request, and how long they may take in all: a
/// bucket outage fails requests in seconds instead of holding clients for
/// object_store's default three minutes.
const RETRIES: usize = 3;
const RETRY_BUDGET: Duration = Duration::from_secs(30);
/// The most parts S3 takes in one multipart upload.
const MAX_PARTS: u64 = 10_000;

/// Where the bucket is and how to reach it (from `[storage.s3]`).
#[derive(Clone, Default)]
pub struct S3Settings {
    /// The bucket.
    pub bucket: String,
    /// The S3 API's URL (MinIO, Ceph RGW, Garage); `None`: AWS for `region`.
    pub endpoint: Option<String>,
    /// The region (signing needs one even off AWS).
    pub region: Option<String>,
    /// Key prefix inside the bucket (`""`, or ending in `/`).
    pub prefix: String,
    /// Access key; `None`: the `AWS_*` environment (or the instance's role).
    pub access_key_id: Option<String>,
    /// Secret key, read from `secret_access_key_file`.
    pub secret_access_key: Option<String>,
    /// This node's identity (kept in the data directory): several nodes
    /// share one bucket and prefix, each under its own id.
    pub node_id: String,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// Blobs in a bucket; see the module doc.
#[derive(Clone)]
pub struct S3Backend {
    s3: Arc<AmazonS3>,
    settings: Arc<S3Settings>,
    publishing: Arc<tokio::sync::Semaphore>,
    /// Reads being opened (a HEAD, or a GET until its answer starts).
    opening: Arc<tokio::sync::Semaphore>,
    /// The same bucket and prefix as the records and leases other nodes
    /// share see it.
    bucket: Arc<crate::store::shared::Bucket>,
}

/// An object store failure as a store error (the HTTP layers render storage
/// I/O errors once, whatever the backend).
fn failed(what: &str, e: object_store::Error) -> StoreError {
    StoreError::Io(Arc::new(std::io::Error::other(format!("s3 {what}: {e}"))))
}

/// The endpoint the environment names when `[storage.s3]` has none:
/// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), as the
/// AWS CLI ranks them. Checked as `endpoint` is and never quoted: credentials
/// in it would reach logs, and every presigned URL (`redirect = true`) would
/// hand them to clients.
fn env_endpoint(b: &AmazonS3Builder) -> Result<Option<String>, StoreError> {
    let (var, endpoint) = match (
        b.get_config_value(&AmazonS3ConfigKey::S3Endpoint),
        b.get_config_value(&AmazonS3ConfigKey::Endpoint),
    ) {
        (Some(e), _) => ("AWS_ENDPOINT_URL_S3", e),
        (None, Some(e)) => ("AWS_ENDPOINT_URL", e),
        (None, None) => return Ok(None),
    };
    let wrong = if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        "must start with http:// or https://"
    } else if crate::config::has_userinfo(&endpoint) {
        "must not carry credentials (they would show in logs and presigned URLs); use \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    } else if endpoint.contains('?') || endpoint.contains('#') {
        "is the service's URL, without a query"
    } else {
        return Ok(Some(endpoint));
    };
    Err(StoreError::Io(Arc::new(std::io::Error::other(format!(
        "[storage.s3] has no endpoint, and the one {var} names {wrong}"
    )))))
}

impl S3Backend {
    /// A client for `settings`; `AWS_*` variables fill what the settings
    /// leave out. Nothing is sent until [`BlobBackend::prepare`].
    pub fn new(settings: S3Settings) -> Result<S3Backend, StoreError> {
        // object_store's HTTP client signs and talks TLS with the process's
        // rustls provider: ring, as the server's TLS does.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(object_store::RetryConfig {
                max_retries: RETRIES,
                retry_timeout: RETRY_BUDGET,
                ..Default::default()
            });
        if let Some(endpoint) = &settings.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        } else if let Some(endpoint) = env_endpoint(&b)? {
            // AWS_ENDPOINT_URL=http://minio.lan:9000, as the AWS CLI takes
            // it: plain HTTP because the URL says so.
            b = b
                .with_endpoint(&endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        // object_store ranks AWS_ENDPOINT_URL_S3 above any endpoint it is
        // given, even the configuration's: it is the one chosen above.
        if let Some(e) = b.get_config_value(&AmazonS3ConfigKey::Endpoint) {
            b = b.with_config(AmazonS3ConfigKey::S3Endpoint, e);
        }
        if let Some(region) = &settings.region {
            b = b.with_region(region);
        }
        if let Some(id) = &settings.access_key_id {
            b = b.with_access_key_id(id);
        }
        if let Some(secret) = &settings.secret_access_key {
            b = b.with_secret_access_key(secret);
        }
        let s3 = Arc::new(b.build().map_err(|e| failed("configuration", e))?);
        let bucket = Arc::new(crate::store::shared::Bucket::new(
            s3.clone(),
            &settings.prefix,
            &settings.node_id,
        ));
        Ok(S3Backend {
            s3,
            bucket,
            settings: Arc::new(settings),
            publishing: Arc::new(tokio::sync::Semaphore::new(PUBLISHES_AT_ONCE)),
            opening: Arc::new(tokio::sync::Semaphore::new(OPENS_AT_ONCE)),
        })
    }

    /// The bucket as the nodes sharing it see it, for the records, leases
    /// and live sets kept beside the blobs.
    pub fn bucket(&self) -> Arc<crate::store::shared::Bucket> {
        self.bucket.clone()
    }

    /// A commit that found its object in the bucket already (an old upload,
    /// maybe of content every node has since deleted) while a shared sweep
    /// runs: that sweep may have read this node's live set before the
    /// commit began and may delete the object, old enough and named by no
    /// set it read. So the commit waits for the sweep to end (it is in this
    /// node's live sets from now on: in commit, then in the index), then
    /// makes sure the object is there, uploading it again from the staged
    /// file if the sweep took it. A sweep that starts later sees the digest
    /// in this node's set.
    async fn outlast_sweep(
        &self,
        path: &Path,
        size: u64,
        digest: &Digest,
    ) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + SWEEP_WAIT_LIMIT;
        let mut waited = false;
        while crate::store::shared::lease::sweep_running(&self.bucket).await? {
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Io(Arc::new(std::io::Error::other(format!(
                    "{digest} is in the bucket, but a gc sweep has been running for {}s; try again later",
                    SWEEP_WAIT_LIMIT.as_secs()
                )))));
            }
            waited = true;
            tokio::time::sleep(SWEEP_POLL).await;
        }
        if waited && self.head(digest).await? != Some(size) {
            tracing::info!(digest = %digest, "a gc sweep took an object this commit found; uploading it again");
            if self.upload(path, size, digest).await? {
                // Someone else uploaded it meanwhile: same digest, same bytes.
                tracing::debug!(digest = %digest, "uploaded again by another node meanwhile");
            }
        }
        Ok(())
    }

    /// The object of `digest`.
    fn key(&self, digest: &Digest) -> Key {
        Key::from(format!(
            "{}blobs/sha256/{}",
            self.settings.prefix,
            digest.hex()
        ))
    }

    /// A presigned GET of `digest`'s object valid for `ttl`: what a blob GET
    /// answers with when `redirect = true`.
    async fn presign(&self, digest: &Digest, ttl: Duration) -> Result<String, StoreError> {
        let url = self
            .s3
            .signed_url(http::Method::GET, &self.key(digest), ttl)
            .await
            .map_err(|e| failed("presign", e))?;
        Ok(url.to_string())
    }

    /// The size of `digest`'s object; `None` when it is not there.
    async fn head(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        let _opening = self.opening.acquire().await;
        match self.s3.head(&self.key(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed("head", e)),
        }
    }

    /// The object's bytes from `at` on, as a stream of chunks.
    async fn stream_from(
        &self,
        digest: &Digest,
        at: u64,
    ) -> Result<Option<BoxStream<'static, object_store::Result<Bytes>>>, StoreError> {
        let opts = GetOptions {
            range: (at > 0).then_some(GetRange::Offset(at)),
            ..Default::default()
        };
        let _opening = self.opening.acquire().await;
        match self.s3.get_opts(&self.key(digest), opts).await {
            Ok(r) => Ok(Some(r.into_stream())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(failed("get", e)),
        }
    }

    /// Uploads the staged file at `path` (`size` bytes) as `digest`'s object;
    /// whether the object was there already (then nothing was written).
    async fn upload(&self, path: &Path, size: u64, digest: &Digest) -> Result<bool, StoreError> {
        let key = self.key(digest);
        if size <= PART_SIZE as u64 {
            let p = path.to_owned();
            let bytes = tokio::task::spawn_blocking(move || std::fs::read(p)).await??;
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            return match self.s3.put_opts(&key, PutPayload::from(bytes), opts).await {
                Ok(_) => Ok(false),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(true),
                Err(e) => Err(failed("put", e)),
            };
        }
        // Another node may have uploaded it already: same digest, same bytes.
        if self.head(digest).await? == Some(size) {
            return Ok(true);
        }
        let part = (PART_SIZE as u64).max(size.div_ceil(MAX_PARTS)) as usize;
        let mut upload = self
            .s3
            .put_multipart_opts(&key, PutMultipartOptions::default())
            .await
            .map_err(|e| failed("multipart start", e))?;
        let result = async {
            let mut file = Some(std::fs::File::open(path)?);
            let mut in_flight = futures_util::stream::FuturesOrdered::new();
            let mut sent = 0u64;
            while sent < size {
                let len = part.min((size - sent) as usize);
                let f = file.take().ok_or_else(|| {
                    StoreError::Io(Arc::new(std::io::Error::other("staged file lost")))
                })?;
                let (f, buf) = tokio::task::spawn_blocking(move || {
                    let mut f = f;
                    let mut buf = vec![0u8; len];
                    f.read_exact(&mut buf)?;
                    Ok::<_, std::io::Error>((f, buf))
                })
                .await??;
                file = Some(f);
                sent += len as u64;
                in_flight.push_back(upload.put_part(PutPayload::from(buf)));
                while in_flight.len() >= PARTS_IN_FLIGHT {
                    if let Some(r) = in_flight.next().await {
                        r.map_err(|e| failed("part upload", e))?;
                    }
                }
            }
            while let Some(r) = in_flight.next().await {
                r.map_err(|e| failed("part upload", e))?;
            }
            Ok::<_, StoreError>(())
        }
        .await;
        match result {
            Ok(()) => {
                upload
                    .complete()
                    .await
                    .map_err(|e| failed("multipart complete", e))?;
                Ok(false)
            }
            Err(e) => {
                if let Err(abort) = upload.abort().await {
                    tracing::warn!(digest = %digest, error = %abort, "s3: a failed multipart upload could not be aborted; the bucket's lifecycle rule must clean it");
                }
                Err(e)
            }
        }
    }
}

/// Sequential reads of one object over one streaming GET: a read at the
/// position the last one ended continues the stream; any other position
/// opens a new ranged GET.
struct ObjectAt {
    backend: S3Backend,
    digest: Digest,
    cursor: Arc<Mutex<Option<Cursor>>>,
}

/// An open GET and where it stands.
struct Cursor {
    at: u64,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    /// Bytes received past the last read.
    spare: Bytes,
}

impl ReadAt for ObjectAt {
    fn read_at(&self, at: u64, len: usize) -> Pending {
        let (backend, digest, cursor) = (
            self.backend.clone(),
            self.digest.clone(),
            self.cursor.clone(),
        );
        Pending::spawn(async move {
            let mut guard = cursor.lock().await;
            if guard.as_ref().is_none_or(|c| c.at != at) {
                let stream = backend
                    .stream_from(&digest, at)
                    .await
                    .map_err(std::io::Error::other)?
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!("{digest} is gone from the bucket"),
                        )
                    })?;
                *guard = Some(Cursor {
                    at,
                    stream,
                    spare: Bytes::new(),
                });
            }
            let Some(c) = guard.as_mut() else {
                return Err(std::io::Error::other("no cursor"));
            };
            let mut out = bytes::BytesMut::with_capacity(len);
            while out.len() < len {
                if c.spare.is_empty() {
                    match c.stream.next().await {
                        Some(Ok(b)) => c.spare = b,
                        Some(Err(e)) => {
                            *guard = None;
                            return Err(std::io::Error::other(format!("s3 read: {e}")));
                        }
                        None => {
                            *guard = None;
                            return Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                }
                let take = (len - out.len()).min(c.spare.len());
                out.extend_from_slice(&c.spare.split_to(take));
            }
            c.at += len as u64;
            Ok(out.freeze())
        })
    }
}

impl BlobBackend for S3Backend {
    fn prepare(&self, _create: bool) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            // One listing request of at most one page: the bucket exists and
            // these credentials may read it. Never a walk of the bucket.
            let prefix = Key::from(format!("{}blobs/", self.settings.prefix));
            if let Some(Err(e)) = self.s3.list(Some(&prefix)).next().await {
                return Err(failed(
                    &format!("bucket {} does not answer", self.location()),
                    e,
                ));
            }
            Ok(true)
        })
    }

    fn scans_at_start(&self) -> bool {
        false
    }

    fn scan(&self) -> BoxFuture<'_, Result<Scan, StoreError>> {
        Box::pin(async { Ok(Scan::default()) })
    }

    fn set_aside(
        &self,
        orphans: Vec<Digest>,
        strays: Vec<Stray>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let _ = (orphans, strays);
        Box::pin(async { Ok(()) })
    }

    fn location(&self) -> String {
        format!("s3://{}/{}", self.settings.bucket, self.settings.prefix)
    }

    fn publish<'a>(
        &'a self,
        staged: &'a Staged,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let _slot = self
                .publishing
                .acquire()
                .await
                .map_err(|_| StoreError::Closed)?;
            let path: PathBuf = staged.path().to_owned();
            let p = path.clone();
            let size = tokio::task::spawn_blocking(move || std::fs::metadata(p))
                .await??
                .len();
            if self.upload(&path, size, digest).await? {
                self.outlast_sweep(&path, size, digest).await?;
            }
            Ok(())
        })
    }

    fn open<'a>(
        &'a self,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<BlobReader>, StoreError>> {
        // The GET from the start is the existence check too: a whole read
        // (most reads) costs one request, not a HEAD and then a GET; a read
        // elsewhere (a range) reopens at its offset.
        Box::pin(async move {
            let Some(stream) = self.stream_from(digest, 0).await? else {
                return Ok(None);
            };
            let cursor = Cursor {
                at: 0,
                stream,
                spare: Bytes::new(),
            };
            Ok(Some(BlobReader::new(ObjectAt {
                backend: self.clone(),
                digest: digest.clone(),
                cursor: Arc::new(Mutex::new(Some(cursor))),
            })))
        })
    }

    /// Never deletes: see [`S3Backend::remove_many`].
    fn remove<'a>(&'a self, _digest: &'a Digest) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    /// Never deletes. Several nodes share the bucket, and each node's passes
    /// (gc, eviction, a failed push's discard, start-up's unfinished
    /// removals) decide from its own index alone: an object this node no
    /// longer names may be one another node serves. They drop this node's
    /// rows only; the objects go in the shared sweep
    /// (`store/bucket_gc.rs`), run by the node holding the `gc-lease`
    /// against every node's published live set, the one deleter of blobs.
    fn remove_many(&self, _digests: Vec<Digest>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    fn hash<'a>(
        &'a self,
        digest: &'a Digest,
        pace: &'a mut Pace,
    ) -> BoxFuture<'a, Result<Hashed, StoreError>> {
        Box::pin(async move {
            let mut stream = self
                .stream_from(digest, 0)
                .await?
                .ok_or_else(|| StoreError::BlobUnknown(digest.clone()))?;
            let mut hasher = DigestHasher::new();
            let mut size = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| failed("read", e))?;
                size += chunk.len() as u64;
                // Hashing a chunk is short (≤ one network read) work.
                hasher.update(&chunk);
                pace.wait(chunk.len() as u64).await;
            }
            Ok(Hashed {
                digest: hasher.finish(),
                size,
            })
        })
    }

    fn quarantine<'a>(
        &'a self,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        Box::pin(async move {
            if self.head(digest).await?.is_none() {
                return Ok(None);
            }
            let to = Key::from(format!(
                "{}quarantine/sha256/{}.{}",
                self.settings.prefix,
                digest.hex(),
                crate::store::unix_now()
            ));
            self.s3
                .copy(&self.key(digest), &to)
                .await
                .map_err(|e| failed("copy to quarantine", e))?;
            // Bytes that do not hash to their name are nobody's content: this
            // is the one deletion outside the shared sweep.
            match self.s3.delete(&self.key(digest)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(failed("delete after quarantine", e)),
            }
            Ok(Some(format!("s3://{}/{to}", self.settings.bucket)))
        })
    }

    fn size_on_disk<'a>(
        &'a self,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Option<u64>, StoreError>> {
        Box::pin(self.head(digest))
    }

    fn export<'a>(
        &'a self,
        digest: &'a Digest,
        to: &'a Arc<BackupDir>,
    ) -> BoxFuture<'a, Result<Exported, StoreError>> {
        Box::pin(async move {
            let mut stream = self
                .stream_from(digest, 0)
                .await?
                .ok_or_else(|| StoreError::BlobUnknown(digest.clone()))?;
            let mut sink = to.copy_sink(digest).await?;
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => sink = sink.write(c).await?,
                    Err(e) => {
                        sink.discard().await;
                        return Err(failed("read", e));
                    }
                }
            }
            sink.finish(digest).await
        })
    }

    fn presigned_get<'a>(
        &'a self,
        digest: &'a Digest,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        Box::pin(async move { self.presign(digest, ttl).await.map(Some) })
    }

    fn adopt_link<'a>(
        &'a self,
        source: &'a Path,
        digest: &'a Digest,
    ) -> BoxFuture<'a, Result<Adopted, StoreError>> {
        let _ = (source, digest);
        Box::pin(async { Ok(Adopted::NotLinked) })
    }
}
