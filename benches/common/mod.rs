//! Helpers shared by the benchmarks: registries under test as child processes,
//! curl wrappers, test data, and the manifest load generator.
#![allow(dead_code)]

pub mod cpu;
pub mod distribution_debug;
pub mod file_image;
pub mod floor;
pub mod image_set;
pub mod link;
pub mod nginx;
pub mod pair;
pub mod scrape;
pub mod table;
pub mod tcp_count;
pub mod warm;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt, Empty};
use sha2::{Digest as _, Sha256};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A number from the environment (bench knobs), or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// sha256 hex of bytes.
pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A registry under test, as a child process.
pub struct Server {
    pub name: &'static str,
    pub child: Child,
    pub base: String,
    /// `user:password` sent by every client call, when auth is on.
    pub creds: Option<String>,
    /// wharf's access log lines for requests from [`LOAD_SOURCE`], counted as
    /// its stderr is drained (`None` for servers whose log is not read).
    pub access_lines: Option<Arc<AtomicUsize>>,
}

impl Server {
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// CPU seconds (user + system) the process has used so far.
    pub fn cpu_secs(&self) -> f64 {
        cpu::stat_cpu_secs(&format!("/proc/{}/stat", self.child.id()), false)
    }

    /// A curl command carrying this server's credentials.
    pub fn curl(&self) -> Command {
        let mut c = Command::new("curl");
        if let Some(creds) = &self.creds {
            c.args(["-u", creds]);
        }
        c
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    // Any HTTP answer (401 included) means it serves.
    while Command::new("curl")
        .args(["-s", "-o", "/dev/null", &format!("{base}/v2/")])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "{base} did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An htpasswd file with one user, as `htpasswd -Bbn bench bench-pw` writes it.
pub fn write_htpasswd(path: &Path) -> String {
    let h = bcrypt::hash_with_result("bench-pw", 5)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    std::fs::write(path, format!("bench:{h}\n")).unwrap();
    "bench:bench-pw".to_owned()
}

pub fn start_wharf(dir: &Path, htpasswd: Option<&Path>) -> Server {
    start_wharf_with(dir, htpasswd, "[hosted]\nprefixes = [\"bench/\"]\n")
}

/// Whether `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A wharf with extra TOML (upstreams, hosted prefixes). Its access log is on
/// (one line per request at `info`, as in production), so every figure
/// includes its cost.
pub fn start_wharf_with(dir: &Path, htpasswd: Option<&Path>, extra: &str) -> Server {
    start_wharf_storage(dir, htpasswd, extra, "")
}

/// Writes `dir/wharf.toml` for a wharf on a free loopback port with its data
/// under `dir/data`: `extra` sections first, `storage` lines appended to its
/// `[storage]` table. Every wharf a benchmark starts has this file, whoever
/// then spawns and watches the process; returns its path.
pub fn write_wharf_config(dir: &Path, extra: &str, storage: &str) -> PathBuf {
    let cfg = dir.join("wharf.toml");
    std::fs::write(
        &cfg,
        format!(
            "{extra}[server]\nlisten = \"127.0.0.1:0\"\n[log]\nlevel = \"warn,wharf=info\"\n[storage]\nroot = {:?}\n{storage}",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    cfg
}

/// Whether a command is on the PATH (what the S3 benchmarks' `moto` module,
/// `tests/common/s3.rs`, asks of `python3` through `super::have_tool`).
pub fn have_tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// [`start_wharf_with`] with `storage` lines appended to its `[storage]`
/// table (`backend = "s3"` and a `[storage.s3]` table, say).
pub fn start_wharf_storage(
    dir: &Path,
    htpasswd: Option<&Path>,
    extra: &str,
    storage: &str,
) -> Server {
    let auth = htpasswd
        .map(|p| {
            format!(
                "[auth]\nhtpasswd = {:?}\nanonymous_pull = false\n",
                p.display().to_string()
            )
        })
        .unwrap_or_default();
    let cfg = write_wharf_config(dir, &format!("{auth}{extra}"), storage);
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // A large buffer and one reused line: the drain must keep up with an
    // access line per request so that wharf never blocks on a full pipe.
    let mut stderr = BufReader::with_capacity(1 << 20, child.stderr.take().unwrap());
    let mut line = Vec::with_capacity(1024);
    let addr = loop {
        line.clear();
        let n = stderr.read_until(b'\n', &mut line).unwrap();
        assert!(n > 0, "wharf exited");
        let text = String::from_utf8_lossy(&line);
        if let Some(rest) = text.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let access_lines = Arc::new(AtomicUsize::new(0));
    let counter = access_lines.clone();
    std::thread::spawn(move || {
        let source = format!("client={LOAD_SOURCE}");
        loop {
            line.clear();
            match stderr.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if contains(&line, b"wharf::access") && contains(&line, source.as_bytes()) {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    });
    let base = format!("http://{addr}");
    wait_ready(&base);
    Server {
        name: "wharf",
        child,
        base,
        creds: None,
        access_lines: Some(access_lines),
    }
}

pub fn start_distribution(dir: &Path, htpasswd: Option<&Path>) -> Option<Server> {
    start_distribution_with(dir, htpasswd, "")
}

/// Distribution with extra YAML top-level sections (`proxy:`).
pub fn start_distribution_with(dir: &Path, htpasswd: Option<&Path>, extra: &str) -> Option<Server> {
    let fs = format!(
        "  filesystem:\n    rootdirectory: {}\n",
        dir.join("data").display()
    );
    start_distribution_storage(dir, htpasswd, &fs, extra)
}

/// Distribution with `driver` as its storage driver's YAML (indented under
/// `storage:`, e.g. `  s3:\n    bucket: ...`) and `extra` top-level sections.
pub fn start_distribution_storage(
    dir: &Path,
    htpasswd: Option<&Path>,
    driver: &str,
    extra: &str,
) -> Option<Server> {
    let bin = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let port = free_port();
    let cfg = dir.join("registry.yml");
    let auth = htpasswd
        .map(|p| {
            format!(
                "auth:\n  htpasswd:\n    realm: bench\n    path: {}\n",
                p.display()
            )
        })
        .unwrap_or_default();
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n{driver}  cache:\n    blobdescriptor: inmemory\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}{extra}"
        ),
    )
    .unwrap();
    // Errors only (log level error): what a failed start or a storage driver said.
    let log = std::fs::File::create(dir.join("registry.log")).unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(&cfg)
        // aws-sdk-go panics at start when AWS_CA_BUNDLE is set ("unsupported
        // transport") with the s3 driver, and no bench talks TLS to S3.
        .env_remove("AWS_CA_BUNDLE")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base);
    Some(Server {
        name: "distribution",
        child,
        base,
        creds: None,
        access_lines: None,
    })
}

pub fn output(mut c: Command, what: &str) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `mib` MiB of pseudo-random bytes (varied by `seed`); returns the sha256 hex.
pub fn make_blob(path: &Path, mib: usize) -> String {
    make_blob_seeded(path, mib, 0x2545F4914F6CDD1D)
}

/// [`make_blob`] with a seed.
/// `n` bytes that differ per `seed` (xorshift; small test data in memory).
pub fn seeded_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn make_blob_seeded(path: &Path, mib: usize, seed: u64) -> String {
    let mut f = std::fs::File::create(path).unwrap();
    let mut h = Sha256::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut x: u64 = seed | 1;
    for _ in 0..mib {
        for b in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        h.update(&chunk);
        f.write_all(&chunk).unwrap();
    }
    h.finalize().iter().map(|x| format!("{x:02x}")).collect()
}

/// Creates `root/name`.
pub fn subdir(root: &Path, name: &str) -> PathBuf {
    let d = root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The address the manifest load connects from: wharf's access lines name the
/// client, so the ones the load caused are told apart exactly from any other.
pub const LOAD_SOURCE: &str = "127.0.0.2";

/// What a load run measured.
pub struct Load {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: usize,
    /// Requests that got a response (any status).
    pub responses: usize,
    /// wharf's access log lines for those requests (one each when it logs all).
    pub access_lines: Option<usize>,
}

/// A connection to `addr` (`127.0.0.1:port`) from [`LOAD_SOURCE`].
async fn connect_from_load_source(addr: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::new(LOAD_SOURCE.parse().unwrap(), 0))
        .unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

/// Waits (up to 10 s) until `counter` has reached `from + n`, as the drain
/// catches up with the pipe; the count it reached.
fn drained(counter: &AtomicUsize, from: usize, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = counter.load(Ordering::Relaxed) - from;
        if seen >= n || Instant::now() >= deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `conns` kept-alive connections each GET `path` in a loop for `secs` seconds
/// (and at most 2 million requests in all), from [`LOAD_SOURCE`]; for wharf,
/// also counts the access log lines of those requests.
pub fn manifest_load(s: &Server, path: &str, conns: usize, secs: u64) -> Load {
    let lines_before = s.access_lines.as_ref().map(|c| c.load(Ordering::Relaxed));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = s.base.trim_start_matches("http://").to_owned();
    let path = Arc::new(path.to_owned());
    let authorization = Arc::new(s.creds.as_ref().map(|c| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(c)
        )
    }));
    let load = rt.block_on(async move {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let budget = Arc::new(std::sync::atomic::AtomicUsize::new(2_000_000));
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (addr, path, budget, authorization) = (
                addr.clone(),
                path.clone(),
                budget.clone(),
                authorization.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0;
                let mut answered = 0;
                let stream = connect_from_load_source(&addr).await;
                stream.set_nodelay(true).unwrap();
                let (mut send, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                while Instant::now() < deadline && budget.fetch_sub(1, Ordering::Relaxed) > 0 {
                    let mut req = http::Request::get(path.as_str())
                        .header("host", addr.as_str())
                        .header("accept", OCI_MANIFEST);
                    if let Some(a) = authorization.as_ref() {
                        req = req.header("authorization", a.as_str());
                    }
                    let req = req.body(Empty::<bytes::Bytes>::new()).unwrap();
                    let t = Instant::now();
                    match send.send_request(req).await {
                        Ok(resp) => {
                            answered += 1;
                            let ok = resp.status() == 200;
                            let _ = resp.into_body().collect().await;
                            if ok {
                                lat.push(t.elapsed().as_micros() as u32);
                            } else {
                                errors += 1;
                            }
                        }
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                }
                (lat, errors, answered)
            }));
        }
        let start = Instant::now();
        let mut all = Vec::new();
        let mut errors = 0;
        let mut responses = 0;
        for t in tasks {
            let (l, e, a) = t.await.unwrap();
            all.extend(l);
            errors += e;
            responses += a;
        }
        let elapsed = start.elapsed().as_secs_f64();
        all.sort_unstable();
        let pct = |p: f64| {
            all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        Load {
            rps: all.len() as f64 / elapsed,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            errors,
            responses,
            access_lines: None,
        }
    });
    let access_lines = s
        .access_lines
        .as_ref()
        .zip(lines_before)
        .map(|(c, from)| drained(c, from, load.responses));
    Load {
        access_lines,
        ..load
    }
}
