//! Test harness: real wharf servers on 127.0.0.1:0 (in-process or as the built
//! binary), HTTP helpers, image builders, and the gate for outside tools.
#![allow(dead_code)]

pub mod browser;
pub mod certs;
pub mod client;
pub mod containerd;
pub mod containers;
pub mod disk;
pub mod distribution_target;
pub mod dockerd;
pub mod faulty;
pub mod hostile;
pub mod image;
pub mod metrics;
pub mod nginx;
pub mod oras;
pub mod raw_http;
pub mod replica;
pub mod s3;
pub mod upstreams;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;
use wharf::config::Config;

/// sha256 digest string of bytes.
pub fn digest(b: &[u8]) -> String {
    let h = Sha256::digest(b);
    let hex: String = h.iter().map(|x| format!("{x:02x}")).collect();
    format!("sha256:{hex}")
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no rand crate.
pub fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// A wharf running inside the test process.
pub struct Wharf {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// Data directory (kept for restarts).
    pub root: PathBuf,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), wharf::app::AppError>>,
}

/// Unless a test configures upstreams, none is the default: unqualified names
/// are then hosted, and nothing reaches out of the machine.
const NO_DEFAULT_UPSTREAM: &str =
    "[[upstream]]\nname = \"docker.io\"\nurl = \"http://127.0.0.1:9\"\ndefault = false\n";

fn with_upstreams(extra: &str) -> String {
    if extra.contains("[[upstream]]") {
        extra.to_owned()
    } else {
        format!("{NO_DEFAULT_UPSTREAM}{extra}")
    }
}

/// With `WHARF_TEST_STORAGE=s3`, the `[storage]` lines that put the blobs of
/// the test wharf on `root` in a bucket of its own (the same bucket for the
/// same root, so restarts find their content) on one S3 server per test
/// process: the hosted and mirror suites run on the S3 backend as they are.
/// Empty otherwise.
pub fn test_storage_lines(root: &Path) -> String {
    use std::hash::{Hash, Hasher};
    if std::env::var("WHARF_TEST_STORAGE").as_deref() != Ok("s3") {
        return String::new();
    }
    static SERVER: std::sync::OnceLock<s3::S3Server> = std::sync::OnceLock::new();
    static MADE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let server = SERVER.get_or_init(|| {
        assert!(
            s3::have_s3_server(),
            "WHARF_TEST_STORAGE=s3 needs moto's server"
        );
        let dir = tempfile::tempdir().unwrap().keep();
        s3::S3Server::start(&dir)
    });
    let mut h = std::collections::hash_map::DefaultHasher::new();
    root.hash(&mut h);
    let bucket = format!("wharf-{:016x}", h.finish());
    let mut made = MADE.lock().unwrap();
    if !made.contains(&bucket) {
        server.bucket(&bucket);
        made.push(bucket.clone());
    }
    server.storage_lines(&bucket)
}

/// Parses extra TOML on top of defaults, pointing storage at `root` (and the
/// blobs at a bucket under `WHARF_TEST_STORAGE=s3`).
pub fn config(root: &Path, extra: &str) -> Config {
    config_storage(root, extra, &test_storage_lines(root))
}

/// [`config`] with blobs in files under `root` whatever `WHARF_TEST_STORAGE`
/// says (upstreams standing in for Docker Hub).
pub fn config_on_files(root: &Path, extra: &str) -> Config {
    config_storage(root, extra, "")
}

fn config_storage(root: &Path, extra: &str, storage_lines: &str) -> Config {
    let text = format!(
        "{}\n[storage]\nroot = {:?}\n{storage_lines}",
        with_upstreams(extra),
        root.display().to_string(),
    );
    Config::parse(&text, Path::new("test.toml")).expect("test config parses")
}

impl Wharf {
    /// Starts on a fresh data directory inside `dir`.
    pub async fn start(dir: &Path) -> Wharf {
        Wharf::start_with(dir, "").await
    }

    /// Starts with extra TOML (sections other than `[storage]`).
    pub async fn start_with(dir: &Path, extra: &str) -> Wharf {
        let root = dir.join("data");
        Wharf::start_config(config(&root, extra)).await
    }

    /// Starts with a full configuration and checks that `/v2/` answers 200.
    pub async fn start_config(cfg: Config) -> Wharf {
        let w = Wharf::start_config_unchecked(cfg).await;
        let r = http()
            .get(w.url("/v2/"))
            .send()
            .await
            .expect("wharf answers");
        assert_eq!(r.status(), 200);
        w
    }

    /// Starts with a full configuration; `/v2/` may demand credentials.
    pub async fn start_config_unchecked(cfg: Config) -> Wharf {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Wharf::start_on(cfg, listener).await
    }

    /// Starts again where a stopped wharf listened (an upstream coming back).
    pub async fn restart_at(cfg: Config, addr: SocketAddr) -> Wharf {
        let listener = TcpListener::bind(addr).await.expect("bind the old address");
        Wharf::start_on(cfg, listener).await
    }

    async fn start_on(cfg: Config, listener: TcpListener) -> Wharf {
        let w = Wharf::launch_on(cfg, listener);
        // The listener is bound before run() starts, so requests queue until the
        // store is open; one request proves it serves.
        let r = http()
            .get(w.url("/healthz"))
            .send()
            .await
            .expect("wharf answers");
        assert_eq!(r.status(), 200);
        w
    }

    /// Starts with a full configuration and hands back its storage lifecycle
    /// workers (gc, evict, verify passes on demand). Drop the handles before
    /// [`Wharf::stop`]: they hold the store, which closes only when free.
    pub async fn start_observed(cfg: Config) -> (Wharf, wharf::workers::lifecycle::Lifecycle) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let root = cfg.storage.root.clone();
        let (tx, rx) = watch::channel(false);
        let (ltx, lrx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(wharf::app::run_observed(cfg, listener, rx, ltx));
        let w = Wharf {
            base: format!("http://{addr}"),
            addr,
            root,
            shutdown: tx,
            task,
        };
        let lifecycle = lrx.await.expect("wharf started its workers");
        let r = http()
            .get(w.url("/v2/"))
            .send()
            .await
            .expect("wharf answers");
        assert_eq!(r.status(), 200);
        (w, lifecycle)
    }

    /// Starts without any check (HTTPS servers need a client that trusts them).
    pub async fn launch(cfg: Config) -> Wharf {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Wharf::launch_on(cfg, listener)
    }

    fn launch_on(cfg: Config, listener: TcpListener) -> Wharf {
        let addr = listener.local_addr().expect("addr");
        let root = cfg.storage.root.clone();
        let scheme = if cfg.server.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(wharf::app::run(cfg, listener, rx));
        Wharf {
            base: format!("{scheme}://{addr}"),
            addr,
            root,
            shutdown: tx,
            task,
        }
    }

    /// Absolute URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Graceful stop; returns once the index is closed.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.task.await.expect("join").expect("clean exit");
    }
}

/// An HTTP client that never pools (like dockerd and skopeo: one connection per request).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// `GET /token` for `scopes`, with Basic credentials when given.
pub async fn token_response(
    w: &Wharf,
    creds: Option<(&str, &str)>,
    scopes: &[&str],
) -> reqwest::Response {
    let mut q: Vec<(&str, &str)> = vec![("service", "wharf")];
    q.extend(scopes.iter().map(|s| ("scope", *s)));
    let mut r = http().get(w.url("/token")).query(&q);
    if let Some((u, p)) = creds {
        r = r.basic_auth(u, Some(p));
    }
    r.send().await.unwrap()
}

/// A token for `scopes` (the request must succeed).
pub async fn token(w: &Wharf, creds: Option<(&str, &str)>, scopes: &[&str]) -> String {
    let r = token_response(w, creds, scopes).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["expires_in"], 300);
    assert_eq!(v["token"], v["access_token"]);
    v["token"].as_str().unwrap().to_owned()
}

/// A wharf's whole `/metrics` text.
pub async fn metrics_text(w: &Wharf) -> String {
    http()
        .get(w.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The first error code of a spec error body.
pub async fn error_code(r: reqwest::Response) -> String {
    let v: serde_json::Value = r.json().await.expect("error body is JSON");
    v["errors"][0]["code"].as_str().unwrap_or("").to_owned()
}

/// Monolithic upload (POST then PUT); returns the digest.
pub async fn push_blob(w: &Wharf, repo: &str, data: &[u8]) -> String {
    let c = http();
    let d = digest(data);
    let r = c
        .post(w.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "upload start");
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(w.url(&format!("{loc}{sep}digest={d}")))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "upload finish: {}",
        r.text().await.unwrap_or_default()
    );
    d
}

/// PUTs a manifest; returns the response.
pub async fn put_manifest(
    w: &Wharf,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> reqwest::Response {
    http()
        .put(w.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

/// Pushes config + layers and an image manifest under `tag`; returns the manifest
/// bytes and digest.
pub async fn push_image(w: &Wharf, repo: &str, tag: &str, layers: &[Vec<u8>]) -> (Vec<u8>, String) {
    let img = image::Image::new(layers.to_vec());
    for (_, blob) in img.blobs() {
        push_blob(w, repo, blob).await;
    }
    let r = put_manifest(w, repo, tag, image::OCI_MANIFEST, &img.manifest).await;
    assert_eq!(r.status(), 201, "manifest push");
    let d = digest(&img.manifest);
    (img.manifest, d)
}

/// The wharf binary as a child process (for kill -9 and signal tests).
pub struct WharfProcess {
    /// The child.
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Lines the child wrote to stderr after start-up.
    pub log: std::sync::mpsc::Receiver<String>,
}

impl WharfProcess {
    /// Runs `wharf serve` with `config_text` (listen is forced to 127.0.0.1:0) and
    /// waits for the line announcing the bound address.
    pub fn spawn(dir: &Path, root: &Path, extra: &str) -> WharfProcess {
        WharfProcess::spawn_with(dir, root, "", extra)
    }

    /// [`WharfProcess::spawn`] with extra `[server]` lines (TLS, timeouts).
    pub fn spawn_with(dir: &Path, root: &Path, server_lines: &str, extra: &str) -> WharfProcess {
        WharfProcess::spawn_storage(dir, root, server_lines, "", extra)
    }

    /// [`WharfProcess::spawn_with`] with extra `[storage]` lines too
    /// (`max_cache_size`, ...).
    pub fn spawn_storage(
        dir: &Path,
        root: &Path,
        server_lines: &str,
        storage_lines: &str,
        extra: &str,
    ) -> WharfProcess {
        WharfProcess::spawn_env(dir, root, server_lines, storage_lines, extra, &[])
    }

    /// [`WharfProcess::spawn_storage`] with extra environment variables
    /// (systemd's `NOTIFY_SOCKET`, `WATCHDOG_USEC`).
    pub fn spawn_env(
        dir: &Path,
        root: &Path,
        server_lines: &str,
        storage_lines: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> WharfProcess {
        WharfProcess::try_spawn_env(dir, root, server_lines, storage_lines, extra, env)
            .unwrap_or_else(|log| panic!("wharf did not announce its address:\n{log}"))
    }

    /// [`WharfProcess::spawn_env`] for a start-up that may be refused: the
    /// lines the process wrote before it exited, if it never served.
    pub fn try_spawn_env(
        dir: &Path,
        root: &Path,
        server_lines: &str,
        storage_lines: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Result<WharfProcess, String> {
        let cfg = dir.join("wharf.toml");
        std::fs::write(
            &cfg,
            format!(
                "{}\n[server]\nlisten = \"127.0.0.1:0\"\ndrain_timeout = \"20s\"\n{server_lines}\n[storage]\nroot = {:?}\n{storage_lines}\n",
                with_upstreams(extra),
                root.display().to_string()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("WHARF_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wharf");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut before = String::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                return Err(before);
            };
            before.push_str(&line);
            before.push('\n');
            if line.contains("wharf serving") {
                let a = line
                    .split("addr=")
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .next()
                    .unwrap();
                let scheme = if line.contains("scheme=\"https\"") {
                    "https"
                } else {
                    "http"
                };
                break format!("{scheme}://{a}");
            }
        };
        Ok(WharfProcess {
            child,
            base: addr,
            log: rx,
        })
    }

    /// Absolute URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits for a log line containing `needle`: the process says when it did
    /// something, so tests wait on that instead of sleeping.
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .log
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Sends a signal (`-HUP`, `-TERM`) to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig}");
    }
}

impl Drop for WharfProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an outside tool may be used. Missing: skip loudly, or fail when
/// `WHARF_REQUIRE_INTEROP=1` (CI installs everything).
pub fn have_tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("WHARF_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("{name} is required (WHARF_REQUIRE_INTEROP=1) but not installed");
        }
        eprintln!("\n!!! SKIPPED: `{name}` is not installed; this interop test did not run !!!\n");
    }
    found
}

/// Status code of a bodiless request to `path`.
pub async fn status(w: &Wharf, method: reqwest::Method, path: &str) -> u16 {
    http()
        .request(method, w.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// GETs `path` and parses the JSON body.
pub async fn get_json(w: &Wharf, path: &str) -> serde_json::Value {
    http()
        .get(w.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Writes an htpasswd file with `(user, password)` pairs (bcrypt cost 4: fast tests).
pub fn htpasswd(path: &Path, users: &[(&str, &str)]) {
    let text: String = users
        .iter()
        .map(|(u, p)| {
            let h = bcrypt::hash_with_result(p, 4)
                .unwrap()
                .format_for_version(bcrypt::Version::TwoY);
            format!("{u}:{h}\n")
        })
        .collect();
    std::fs::write(path, text).unwrap();
}

/// A client that sends Basic credentials on every request.
pub struct As<'a> {
    /// Server.
    pub w: &'a Wharf,
    /// `(user, password)`, or None for anonymous.
    pub creds: Option<(&'a str, &'a str)>,
    /// A Bearer token instead of Basic.
    pub token: Option<String>,
}

impl<'a> As<'a> {
    /// Anonymous.
    pub fn anon(w: &'a Wharf) -> Self {
        As {
            w,
            creds: None,
            token: None,
        }
    }

    /// A user.
    pub fn user(w: &'a Wharf, u: &'a str, p: &'a str) -> Self {
        As {
            w,
            creds: Some((u, p)),
            token: None,
        }
    }

    /// A token holder.
    pub fn bearer(w: &'a Wharf, t: String) -> Self {
        As {
            w,
            creds: None,
            token: Some(t),
        }
    }

    /// A request with these credentials.
    pub fn req(&self, m: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = http().request(m, self.w.url(path));
        match (&self.creds, &self.token) {
            (_, Some(t)) => r.bearer_auth(t),
            (Some((u, p)), None) => r.basic_auth(u, Some(p)),
            (None, None) => r,
        }
    }

    /// Status of a bodiless request.
    pub async fn status(&self, m: reqwest::Method, path: &str) -> u16 {
        self.req(m, path).send().await.unwrap().status().as_u16()
    }

    /// Pushes a blob (POST + PUT); returns the final status.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> u16 {
        let r = self
            .req(reqwest::Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        if r.status() != 202 {
            return r.status().as_u16();
        }
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let d = digest(data);
        self.req(reqwest::Method::PUT, &format!("{loc}?digest={d}"))
            .body(data.to_vec())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Pushes a one-layer image under `tag`; returns the manifest PUT status.
    pub async fn push_image(&self, repo: &str, tag: &str, seed: &[u8]) -> u16 {
        let img = image::Image::new(vec![image::tar_with_file("f", seed)]);
        for (_, b) in img.blobs() {
            let s = self.push_blob(repo, b).await;
            if s != 201 {
                return s;
            }
        }
        self.req(reqwest::Method::PUT, &format!("/v2/{repo}/manifests/{tag}"))
            .header("content-type", image::OCI_MANIFEST)
            .body(img.manifest)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// Polls a daemon's API until `answers`, failing after `secs` with its log's path.
pub fn await_daemon(secs: u64, log: &Path, mut answers: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !answers() {
        assert!(
            std::time::Instant::now() < deadline,
            "daemon did not come up; see {}",
            log.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Stops a daemon the way systemd would (SIGTERM) and reaps it.
pub fn terminate(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// GET `path` the way a pulling client does, accepting an OCI manifest.
pub async fn get_oci(w: &Wharf, path: &str) -> reqwest::Response {
    http()
        .get(w.url(path))
        .header("accept", image::OCI_MANIFEST)
        .send()
        .await
        .unwrap()
}

/// Polls `cond` until it holds, failing after `secs` (a condition with a
/// deadline, never a fixed sleep).
pub async fn wait_for<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Runs the `wharf` binary with `args` (no password in the environment);
/// returns its exit code, stdout and stderr.
pub async fn wharf_cli(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .env_remove("WHARF_PASSWORD")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
