//! A real S3 protocol server for the S3-backend tests: moto's standalone server
//! (`pip install 'moto[server]'`, run as `python3 -m moto.server`) as a child
//! process on a free loopback port, with buckets made on demand and an
//! `object_store` client built the way wharf builds its own.
//!
//! What moto 5.2.1 honours (checked with real requests, `tests/s3_server.rs`):
//! `If-None-Match: *` on PUT and on CompleteMultipartUpload (412 when the key
//! exists; object_store sends it on the latter only in copy-if-not-exists),
//! `If-Match` on PUT (412 on a stale ETag, 404 on a missing key), ranged
//! GET, multipart upload (parts under 5 MiB but the last are refused with
//! `EntityTooSmall` at completion), DeleteObjects, ListObjectsV2 with prefix,
//! delimiter and continuation tokens, HEAD, CopyObject, presigned GET URLs.
//! UploadPartCopy (so `copy_if_not_exists` in object_store's `Multipart` mode).
//! What it does not: it never checks a signature (any secret, a tampered or an
//! expired presigned URL all pass; only a request with no credentials at all is
//! refused), `If-None-Match` on CopyObject is ignored, and everything lives in
//! the server's memory (gone when it stops; big benchmarks cost RAM).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut, S3CopyIfNotExists};
use object_store::path::Path as Key;
use object_store::signer::{Method, Signer as _};
use object_store::{ObjectStoreExt as _, PutPayload};
use wharf::config::Config;

/// The moto release CI installs (`.ci/run`); the notes above are about it.
pub const MOTO_VERSION: &str = "5.2.1";

/// How long the server may take to answer after it is spawned (it takes about
/// one second here).
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Whether the S3 server may be used: `python3` with moto's server. Missing:
/// skip loudly, or fail under `WHARF_REQUIRE_INTEROP=1`.
pub fn have_s3_server() -> bool {
    if !super::have_tool("python3") {
        return false;
    }
    let found = Command::new("python3")
        .args(["-c", "import moto.server, flask, flask_cors"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("WHARF_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!(
                "moto's S3 server is required (WHARF_REQUIRE_INTEROP=1): pip install 'moto[server]=={MOTO_VERSION}'"
            );
        }
        eprintln!(
            "\n!!! SKIPPED: python3 cannot import `moto.server` (pip install 'moto[server]'); this S3 test did not run !!!\n"
        );
    }
    found
}

/// A server started under `dir/s3` with `bucket` made, or None when moto is
/// not installed (see [`have_s3_server`]): how every multi-node and backend
/// test begins, so that each does not start and fill its server its own way.
pub fn server(dir: &Path, bucket: &str) -> Option<S3Server> {
    if !have_s3_server() {
        return None;
    }
    std::fs::create_dir_all(dir.join("s3")).unwrap();
    let s3 = S3Server::start(&dir.join("s3"));
    s3.bucket(bucket);
    Some(s3)
}

/// A wharf configuration on `root` whose storage is `bucket` on `s3`: the
/// `sections` (routing, `[gc]`, `[auth]`…) first, then `[storage]` with the
/// server's [`S3Server::storage_lines`] and `s3_extra` lines in its
/// `[storage.s3]` table. The tests differ only in those lines, so the
/// `[storage]` plumbing is written once.
pub fn config(s3: &S3Server, bucket: &str, root: &Path, sections: &str, s3_extra: &str) -> Config {
    let text = format!(
        "{sections}\n[storage]\nroot = {:?}\n{}{s3_extra}\n",
        root.display().to_string(),
        s3.storage_lines(bucket),
    );
    Config::parse(&text, Path::new("node.toml")).expect("a node configuration parses")
}

/// A node on `root` sharing `bucket`, gc only on demand, with a default
/// upstream `hub` (so routing has a choice to make) or hosted only: the node
/// the multi-node tests and their attacks both start.
pub fn node_config(s3: &S3Server, bucket: &str, root: &Path, hub: Option<&str>) -> Config {
    let routing = match hub {
        Some(url) => {
            format!("[[upstream]]\nname = \"docker.io\"\nurl = \"{url}\"\ndefault = true\n")
        }
        None => "[hosted]\nonly = true\n".to_owned(),
    };
    config(
        s3,
        bucket,
        root,
        &format!("{routing}\n[gc]\ninterval = \"0\"\n"),
        "",
    )
}

/// The key wharf keeps blob `d` (`sha256:<hex>`) under in its bucket, for
/// tests that plant or look for a blob's object.
pub fn blob_key(d: &str) -> String {
    format!("blobs/sha256/{}", d.trim_start_matches("sha256:"))
}

/// Installs ring as the process's rustls provider, which object_store's reqwest
/// 0.13 client (built without one) needs; a second call is harmless.
pub fn install_crypto() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

/// A running S3 server, killed on drop.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT` (path-style buckets under it).
    pub endpoint: String,
    /// Access key id clients sign with.
    pub access_key: String,
    /// Secret access key clients sign with.
    pub secret_key: String,
    /// Region clients sign for.
    pub region: String,
    /// The server's stdout and stderr (one line per request), for failures.
    pub log: PathBuf,
    /// A file holding `secret_key`, for `secret_access_key_file`.
    pub secret_file: PathBuf,
}

impl S3Server {
    /// Starts the server on a free 127.0.0.1 port with its log in `dir`, and
    /// returns once it answers HTTP. Call [`have_s3_server`] first.
    pub fn start(dir: &Path) -> S3Server {
        let log = dir.join("s3-server.log");
        let out = std::fs::File::create(&log).expect("create the S3 server's log");
        let err = out.try_clone().expect("clone the log handle");
        let secret_file = dir.join("s3-secret");
        let secret_key = "wharf-test-secret".to_owned();
        std::fs::write(&secret_file, &secret_key).expect("write the S3 secret file");
        let child = Command::new("python3")
            // Port 0: the kernel picks one and werkzeug logs the URL it bound.
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .current_dir(dir)
            // No credentials or endpoints of the host's leak into the server.
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_ENDPOINT_URL")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn python3 -m moto.server");
        let mut server = S3Server {
            child,
            endpoint: String::new(),
            access_key: "wharf-test".to_owned(),
            secret_key,
            region: "us-east-1".to_owned(),
            log,
            secret_file,
        };
        let deadline = Instant::now() + START_DEADLINE;
        let endpoint = loop {
            let text = std::fs::read_to_string(&server.log).unwrap_or_default();
            if let Some(url) = text
                .split_whitespace()
                .find(|w| w.starts_with("http://127.0.0.1:"))
            {
                break url.trim_end_matches('/').to_owned();
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the S3 server exited with {status}:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "the S3 server did not announce its port; see {}",
                server.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        server.endpoint = endpoint;
        while !server.answers() {
            assert!(
                Instant::now() < deadline,
                "the S3 server did not answer; see {}",
                server.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Whether the server answers an HTTP request with a status line.
    fn answers(&self) -> bool {
        let Some(addr) = self.endpoint.strip_prefix("http://") else {
            return false;
        };
        let Ok(mut s) = TcpStream::connect(addr) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        if s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut head = [0u8; 12];
        s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
    }

    /// Creates bucket `name` (3–63 lowercase letters, digits, dots, hyphens),
    /// with a request signed by `object_store`'s presigner. Usable from sync
    /// and async tests alike (the request runs on a thread of its own).
    pub fn bucket(&self, name: &str) {
        let store = self.store(name);
        let status = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the bucket request");
                rt.block_on(async {
                    // An empty key signs the bucket's own URL: PUT on it is CreateBucket.
                    let url = store
                        .signed_url(
                            Method::PUT,
                            &object_store::path::Path::from(""),
                            Duration::from_secs(60),
                        )
                        .await
                        .expect("presign CreateBucket");
                    let r = reqwest::Client::new()
                        .put(url.as_str())
                        .header("content-length", "0")
                        .send()
                        .await
                        .expect("CreateBucket request");
                    let status = r.status().as_u16();
                    (status, r.text().await.unwrap_or_default())
                })
            })
            .join()
            .expect("bucket thread")
        });
        assert_eq!(status.0, 200, "CreateBucket {name}: {}", status.1);
    }

    /// The client builder wharf would use for `bucket` on this server: static
    /// credentials (never the host's `AWS_*`), path-style, plain HTTP,
    /// conditional PUTs with `If-Match`/`If-None-Match`, and `copy_if_not_exists`
    /// as a one-part UploadPartCopy completed with `If-None-Match: *` (object_store
    /// completes its own multipart uploads unconditionally, so this copy is how a
    /// large object lands conditionally: multipart to a staging key, then copy).
    pub fn builder(&self, bucket: &str) -> AmazonS3Builder {
        install_crypto();
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name(bucket)
            .with_region(&self.region)
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
    }

    /// An `object_store` client for `bucket` (see [`S3Server::builder`]).
    pub fn store(&self, bucket: &str) -> AmazonS3 {
        self.builder(bucket).build().expect("build the S3 client")
    }

    /// Writes `body` at `key` in `bucket` (unconditionally): how tests plant
    /// records, leases and objects behind wharf's back.
    pub async fn put_object(&self, bucket: &str, key: &str, body: impl Into<PutPayload>) {
        self.store(bucket)
            .put(&Key::from(key), body.into())
            .await
            .unwrap();
    }

    /// The size of the object at `key` in `bucket`, None when there is none
    /// (any other error fails the test): what tests check the bucket with.
    pub async fn object_size(&self, bucket: &str, key: &str) -> Option<u64> {
        match self.store(bucket).head(&Key::from(key)).await {
            Ok(m) => Some(m.size),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("head {key}: {e}"),
        }
    }

    /// Whether `bucket` holds an object at `key` (see [`S3Server::object_size`]).
    pub async fn exists(&self, bucket: &str, key: &str) -> bool {
        self.object_size(bucket, key).await.is_some()
    }

    /// Requests the server logged for `bucket` so far (one access line each):
    /// what the benchmarks report as a case's S3 requests.
    pub fn requests(&self, bucket: &str) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let (slash, query) = (format!(" /{bucket}/"), format!(" /{bucket}?"));
        log.lines()
            .filter(|l| l.contains(&slash) || l.contains(&query))
            .count()
    }

    /// `[storage]` lines for a wharf on `bucket` (what `WharfProcess::spawn_storage`
    /// takes): `backend = "s3"` and a `[storage.s3]` table with the secret in a file.
    pub fn storage_lines(&self, bucket: &str) -> String {
        format!(
            "backend = \"s3\"\n[storage.s3]\nbucket = {bucket:?}\nendpoint = {:?}\nregion = {:?}\naccess_key_id = {:?}\nsecret_access_key_file = {:?}\n",
            self.endpoint,
            self.region,
            self.access_key,
            self.secret_file.display().to_string()
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
