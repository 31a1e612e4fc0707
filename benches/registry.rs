//! wharf vs CNCF Distribution 2.8.2 (Debian's `docker-registry`, filesystem
//! storage), same machine, same run, same clients:
//!
//! - push of a 1 GiB blob and a warm GET of it, with curl;
//! - manifest GETs by tag over 64 kept-alive connections (requests/s, p50, p99);
//! - the same with Basic credentials on every request, both servers reading the
//!   same htpasswd file (at `htpasswd -B`'s bcrypt cost);
//! - peak RSS of each server process over the whole run.
//!
//! Run: `cargo bench --bench registry` (set `BENCH_BLOB_MIB` / `BENCH_SECS` to
//! change the size and the load duration). Figures are printed as wharf /
//! Distribution ratios, since absolute numbers on shared machines are noise.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt, Empty};
use sha2::{Digest as _, Sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A registry under test, as a child process.
struct Server {
    name: &'static str,
    child: Child,
    base: String,
    /// `user:password` sent by every client call, when auth is on.
    creds: Option<String>,
}

impl Server {
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// A curl command carrying this server's credentials.
    fn curl(&self) -> Command {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_ready(base: &str) {
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
fn write_htpasswd(path: &Path) -> String {
    let h = bcrypt::hash_with_result("bench-pw", 5)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    std::fs::write(path, format!("bench:{h}\n")).unwrap();
    "bench:bench-pw".to_owned()
}

fn start_wharf(dir: &Path, htpasswd: Option<&Path>) -> Server {
    let cfg = dir.join("wharf.toml");
    let auth = htpasswd
        .map(|p| {
            format!(
                "[auth]\nhtpasswd = {:?}\nanonymous_pull = false\n",
                p.display().to_string()
            )
        })
        .unwrap_or_default();
    std::fs::write(
        &cfg,
        format!(
            "{auth}[server]\nlisten = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n[log]\nlevel = \"warn,wharf=info,wharf::access=warn\"\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("wharf exited").unwrap();
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let base = format!("http://{addr}");
    wait_ready(&base);
    Server {
        name: "wharf",
        child,
        base,
        creds: None,
    }
}

fn start_distribution(dir: &Path, htpasswd: Option<&Path>) -> Option<Server> {
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
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  cache:\n    blobdescriptor: inmemory\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base);
    Some(Server {
        name: "distribution",
        child,
        base,
        creds: None,
    })
}

fn output(mut c: Command, what: &str) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts an upload and returns the absolute URL to PUT to, with `digest` added.
fn upload_url(s: &Server, repo: &str, digest: &str) -> String {
    let mut c = s.curl();
    c.args([
        "-s",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-X",
        "POST",
        &format!("{}/v2/{repo}/blobs/uploads/", s.base),
    ]);
    let headers = output(c, "upload start");
    let loc = headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .unwrap_or_else(|| panic!("{}: no Location in {headers}", s.name))
        .trim()
        .to_owned();
    let loc = if loc.starts_with('/') {
        format!("{}{loc}", s.base)
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    format!("{loc}{sep}digest=sha256:{digest}")
}

/// Pushes a file; returns bytes/s as curl measured it.
fn push_file(s: &Server, repo: &str, path: &Path, digest: &str) -> f64 {
    let url = upload_url(s, repo, digest);
    let mut c = s.curl();
    c.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{speed_upload}",
        "-X",
        "PUT",
    ])
    .args([
        "-H",
        "Content-Type: application/octet-stream",
        "-T",
        path.to_str().unwrap(),
        &url,
    ]);
    let out = output(c, "blob push");
    let mut parts = out.split_whitespace();
    assert_eq!(parts.next(), Some("201"), "{} push failed", s.name);
    parts.next().unwrap().parse().unwrap()
}

/// PUTs `data` to `url` with `content_type`.
fn put_bytes(s: &Server, url: &str, content_type: &str, data: &[u8]) {
    let mut c = s.curl();
    c.args(["-sf", "-o", "/dev/null", "-X", "PUT", "--data-binary", "@-"])
        .args(["-H", &format!("Content-Type: {content_type}"), url])
        .stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    assert!(child.wait().unwrap().success(), "{} PUT {url}", s.name);
}

fn push_small(s: &Server, repo: &str, data: &[u8]) -> String {
    let d = sha256_hex(data);
    put_bytes(
        s,
        &upload_url(s, repo, &d),
        "application/octet-stream",
        data,
    );
    d
}

fn push_manifest(s: &Server, repo: &str, tag: &str) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = vec![7u8; 4096];
    let cd = push_small(s, repo, config);
    let ld = push_small(s, repo, &layer);
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{ld}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    put_bytes(
        s,
        &format!("{}/v2/{repo}/manifests/{tag}", s.base),
        OCI_MANIFEST,
        m.as_bytes(),
    );
}

/// GETs a blob `times` times; the best bytes/s.
fn pull_speed(s: &Server, repo: &str, digest: &str, times: usize) -> f64 {
    (0..times)
        .map(|_| {
            let mut c = s.curl();
            c.args(["-s", "-o", "/dev/null", "-w", "%{speed_download}"])
                .arg(format!("{}/v2/{repo}/blobs/sha256:{digest}", s.base));
            output(c, "blob pull").trim().parse::<f64>().unwrap()
        })
        .fold(0.0, f64::max)
}

struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

/// `conns` kept-alive connections each GET `path` in a loop for `secs` seconds
/// (and at most 2 million requests in all).
fn manifest_load(s: &Server, path: &str, conns: usize, secs: u64) -> Load {
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
    rt.block_on(async move {
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
                let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut send, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                while Instant::now() < deadline
                    && budget.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) > 0
                {
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
                (lat, errors)
            }));
        }
        let start = Instant::now();
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await.unwrap();
            all.extend(l);
            errors += e;
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
        }
    })
}

struct Results {
    push: f64,
    pull: f64,
    load: Load,
    auth_load: Option<Load>,
    rss_kib: u64,
}

fn run(s: &Server, blob: &Path, digest: &str, secs: u64) -> Results {
    let push = push_file(s, "bench/big", blob, digest);
    let pull = pull_speed(s, "bench/big", digest, 3);
    push_manifest(s, "bench/app", "latest");
    let load = manifest_load(s, "/v2/bench/app/manifests/latest", 64, secs);
    Results {
        push,
        pull,
        load,
        auth_load: None,
        rss_kib: s.peak_rss_kib(),
    }
}

/// Manifest GETs with Basic credentials on every request.
fn run_auth(mut s: Server, creds: &str, secs: u64) -> Load {
    s.creds = Some(creds.to_owned());
    push_manifest(&s, "bench/app", "latest");
    manifest_load(&s, "/v2/bench/app/manifests/latest", 64, secs)
}

fn make_blob(path: &Path, mib: usize) -> String {
    let mut f = std::fs::File::create(path).unwrap();
    let mut h = Sha256::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut x: u64 = 0x2545F4914F6CDD1D;
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

fn subdir(root: &Path, name: &str) -> PathBuf {
    let d = root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn main() {
    let mib: usize = std::env::var("BENCH_BLOB_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let blob = dir.path().join("blob.bin");
    let digest = make_blob(&blob, mib);
    let htpasswd = dir.path().join("htpasswd");
    let creds = write_htpasswd(&htpasswd);
    println!("blob: {mib} MiB, manifest load: 64 connections for {secs}s each");

    let w = start_wharf(&subdir(dir.path(), "wharf"), None);
    let mut wr = run(&w, &blob, &digest, secs);
    drop(w);
    let w = start_wharf(&subdir(dir.path(), "wharf-auth"), Some(&htpasswd));
    wr.auth_load = Some(run_auth(w, &creds, secs));

    let dr = match start_distribution(&subdir(dir.path(), "distribution"), None) {
        Some(d) => {
            let mut r = run(&d, &blob, &digest, secs);
            drop(d);
            r.auth_load =
                start_distribution(&subdir(dir.path(), "distribution-auth"), Some(&htpasswd))
                    .map(|d| run_auth(d, &creds, secs));
            Some(r)
        }
        None => {
            println!(
                "!!! docker-registry (Distribution) is not installed: printing wharf's figures only !!!"
            );
            None
        }
    };

    let mbps = |b: f64| b / 1e6;
    println!(
        "\n{:<36} {:>14} {:>14} {:>8}",
        "measure", "wharf", "distribution", "ratio"
    );
    let row = |name: &str, w: f64, d: Option<f64>| match d {
        Some(d) => println!("{name:<36} {w:>14.1} {d:>14.1} {:>7.2}x", w / d),
        None => println!("{name:<36} {w:>14.1}"),
    };
    let auth = |r: &Results, f: fn(&Load) -> f64| r.auth_load.as_ref().map(f).unwrap_or(0.0);
    row(
        "blob push (MB/s)",
        mbps(wr.push),
        dr.as_ref().map(|d| mbps(d.push)),
    );
    row(
        "blob GET warm (MB/s)",
        mbps(wr.pull),
        dr.as_ref().map(|d| mbps(d.pull)),
    );
    row(
        "manifest GET by tag (req/s)",
        wr.load.rps,
        dr.as_ref().map(|d| d.load.rps),
    );
    row(
        "manifest GET p50 (ms)",
        wr.load.p50_ms,
        dr.as_ref().map(|d| d.load.p50_ms),
    );
    row(
        "manifest GET p99 (ms)",
        wr.load.p99_ms,
        dr.as_ref().map(|d| d.load.p99_ms),
    );
    row(
        "manifest GET + Basic auth (req/s)",
        auth(&wr, |l| l.rps),
        dr.as_ref().map(|d| auth(d, |l| l.rps)),
    );
    row(
        "manifest GET + Basic auth p99 (ms)",
        auth(&wr, |l| l.p99_ms),
        dr.as_ref().map(|d| auth(d, |l| l.p99_ms)),
    );
    row(
        "peak RSS (MiB)",
        wr.rss_kib as f64 / 1024.0,
        dr.as_ref().map(|d| d.rss_kib as f64 / 1024.0),
    );
    let errs = |r: &Results| r.load.errors + r.auth_load.as_ref().map(|l| l.errors).unwrap_or(0);
    if errs(&wr) > 0 || dr.as_ref().is_some_and(|d| errs(d) > 0) {
        println!(
            "errors: wharf {} distribution {}",
            errs(&wr),
            dr.as_ref().map(errs).unwrap_or(0)
        );
    }
}
