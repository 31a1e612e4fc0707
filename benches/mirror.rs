//! The pull-through mirror: wharf vs CNCF Distribution 2.8.2 in proxy mode, same
//! upstream (a wharf in token mode with anonymous pulls, like Docker Hub), same
//! machine, same run, same client. Upstream traffic is read from the upstream's
//! own metrics. nginx serves the same bytes (the cached manifest as a static
//! file, the big blob with `sendfile`) as the machine's limit, and the cold
//! fill's CPU floor (`dd` into a new file plus one SHA-256 pass over the big
//! blob) is measured in the same run, on the filesystem of the mirrors' data.
//! Every wharf runs with its access log on; the lines the manifest load caused
//! are counted beside its requests. Each table ends with issue 10's goals as
//! ratios of this run.
//!
//! Run: `cargo bench --bench mirror` (`BENCH_IMAGE_MIB`, `BENCH_BLOB_MIB` and
//! `BENCH_SECS` change the image size, the big blob and the load duration).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::floor::cold_fill_floor;
use common::nginx::{Static, start_nginx};
use common::table::{Goal, goal, goals_header, header, row, text_row};
use common::warm::{Warm, warm_gets};
use common::*;

/// One image in the upstream: config and layer blobs as files, and its manifest.
struct Fixture {
    blobs: Vec<(String, u64)>,
    manifest: String,
}

fn metric(base: &str, prefix: &str) -> f64 {
    let text = reqwest::blocking::get(format!("{base}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn hub_blob_bytes(hub: &Server) -> f64 {
    metric(&hub.base, "wharf_http_response_bytes_total{route=\"blob\"}")
}

/// Pushes a file as a blob of `repo` (Basic credentials work in token mode too).
fn push_file(hub: &Server, repo: &str, path: &Path, hex: &str) {
    let mut c = hub.curl();
    c.args([
        "-s",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-X",
        "POST",
        &format!("{}/v2/{repo}/blobs/uploads/", hub.base),
    ]);
    let h = output(c, "upload start");
    let loc = h
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .expect("Location")
        .trim()
        .to_owned();
    let mut c = hub.curl();
    c.args([
        "-sf",
        "-o",
        "/dev/null",
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "-T",
    ])
    .arg(path)
    .arg(format!("{}{loc}?digest=sha256:{hex}", hub.base));
    output(c, "blob push");
}

/// The file `publish` writes layer `i` of `repo` to.
fn layer_file(dir: &Path, repo: &str, i: usize) -> std::path::PathBuf {
    dir.join(format!("{repo}-layer{i}").replace('/', "_"))
}

fn publish(hub: &Server, dir: &Path, repo: &str, layer_mib: &[usize], seed: u64) -> Fixture {
    let mut blobs = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, mib) in layer_mib.iter().enumerate() {
        let p = layer_file(dir, repo, i);
        let hex = make_blob_seeded(&p, *mib, seed + i as u64);
        push_file(hub, repo, &p, &hex);
        diff_ids.push(format!("sha256:{hex}"));
        blobs.push((hex, (*mib as u64) << 20));
    }
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":{diff_ids:?}}}}}"#
    );
    let cfg_path = dir.join(format!("{repo}-config").replace('/', "_"));
    std::fs::write(&cfg_path, &config).unwrap();
    let cfg_hex = sha256_hex(config.as_bytes());
    push_file(hub, repo, &cfg_path, &cfg_hex);
    let layers: Vec<String> = blobs
        .iter()
        .map(|(h, n)| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{h}","size":{n}}}"#))
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{cfg_hex}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        layers.join(",")
    );
    let mut c = hub.curl();
    c.args([
        "-sf",
        "-o",
        "/dev/null",
        "-X",
        "PUT",
        "--data-binary",
        &manifest,
    ])
    .args(["-H", &format!("Content-Type: {OCI_MANIFEST}")])
    .arg(format!("{}/v2/{repo}/manifests/latest", hub.base));
    output(c, "manifest push");
    blobs.push((cfg_hex, config.len() as u64));
    Fixture { blobs, manifest }
}

/// Pulls manifest + blobs (3 blobs at a time, like dockerd) and returns the time.
async fn pull(base: &str, repo: &str, fx: &Fixture, token: Option<&str>) -> Duration {
    let c = reqwest::Client::new();
    let auth = |r: reqwest::RequestBuilder| match token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    let t = Instant::now();
    let m = auth(
        c.get(format!("{base}/v2/{repo}/manifests/latest"))
            .header("accept", OCI_MANIFEST),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(m.status(), 200, "manifest from {base}");
    let _ = m.bytes().await.unwrap();
    let sem = Arc::new(tokio::sync::Semaphore::new(3));
    let mut tasks = Vec::new();
    for (hex, size) in &fx.blobs {
        let (c, sem, url, size) = (
            c.clone(),
            sem.clone(),
            format!("{base}/v2/{repo}/blobs/sha256:{hex}"),
            *size,
        );
        let req = auth(c.get(url));
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let mut r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            let mut n = 0u64;
            while let Some(chunk) = r.chunk().await.unwrap() {
                n += chunk.len() as u64;
            }
            assert_eq!(n, size);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    t.elapsed()
}

fn anon_token(hub: &Server, repo: &str) -> String {
    let v: serde_json::Value = reqwest::blocking::get(format!(
        "{}/token?service=wharf&scope=repository:{repo}:pull",
        hub.base
    ))
    .unwrap()
    .json()
    .unwrap();
    v["token"].as_str().unwrap().to_owned()
}

fn curl_speed(base: &str, path: &str) -> f64 {
    let mut c = std::process::Command::new("curl");
    c.args(["-s", "-o", "/dev/null", "-w", "%{speed_download}"])
        .arg(format!("{base}{path}"));
    output(c, "curl").trim().parse().unwrap()
}

fn range_status(base: &str, path: &str) -> String {
    let mut c = std::process::Command::new("curl");
    c.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        "-H",
        "Range: bytes=1000-1999",
    ])
    .arg(format!("{base}{path}"));
    output(c, "range")
}

/// What one registry did in the loopback run.
struct Mirrored {
    cold: Duration,
    cold_upstream_bytes: f64,
    warm: Duration,
    concurrent8: Duration,
    concurrent8_upstream_bytes: f64,
    rps: f64,
    p99: f64,
    /// Requests the manifest load got answers to, and wharf's access lines for them.
    responses: usize,
    access_lines: Option<usize>,
    manifest_upstream_gets: f64,
    cold_big: f64,
    /// Best of 3 warm GETs of the big blob, and the mirror's CPU per GiB served.
    warm_big: Warm,
    /// CPU seconds per GiB the mirror and the upstream spent on the cold blob.
    cold_big_cpu: (f64, f64),
    range: String,
    rss_mib: f64,
}

/// Starts a fresh mirror named `name` in front of the upstream at `url`.
type Start<'a> = &'a dyn Fn(&str, &str) -> Server;

fn cold_big(s: &Server, hub: &Server, big_hex: &str, big_bytes: f64) -> (f64, (f64, f64)) {
    let (m0, h0) = (s.cpu_secs(), hub.cpu_secs());
    let speed = curl_speed(&s.base, &big_path(big_hex));
    let cpu = (
        common::cpu::per_gib(s.cpu_secs() - m0, big_bytes),
        common::cpu::per_gib(hub.cpu_secs() - h0, big_bytes),
    );
    (speed, cpu)
}

/// 8 pulls of the same image at once through a fresh mirror: wall time and
/// the upstream's blob bytes.
fn concurrent8(
    rt: &tokio::runtime::Runtime,
    s: &Server,
    hub: &Server,
    img: &Fixture,
) -> (Duration, f64) {
    let before = hub_blob_bytes(hub);
    let wall = rt.block_on(async {
        let t = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let base = s.base.clone();
                let blobs = img.blobs.clone();
                let manifest = img.manifest.clone();
                tokio::spawn(async move {
                    pull(&base, "library/bench", &Fixture { blobs, manifest }, None).await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        t.elapsed()
    });
    (wall, hub_blob_bytes(hub) - before)
}

#[allow(clippy::too_many_arguments)]
fn measure(
    rt: &tokio::runtime::Runtime,
    start: Start<'_>,
    hub: &Server,
    img: &Fixture,
    big_hex: &str,
    big_bytes: f64,
    range_hex: &str,
    secs: u64,
) -> Mirrored {
    let s = start("a", &hub.base);
    let before = hub_blob_bytes(hub);
    let cold = rt.block_on(pull(&s.base, "library/bench", img, None));
    let cold_upstream_bytes = hub_blob_bytes(hub) - before;
    let warm = rt.block_on(pull(&s.base, "library/bench", img, None));
    let gets_before = metric(
        &hub.base,
        "wharf_http_requests_total{method=\"GET\",route=\"manifest\"",
    );
    let load = manifest_load(&s, MANIFEST_PATH, 64, secs);
    let manifest_upstream_gets = metric(
        &hub.base,
        "wharf_http_requests_total{method=\"GET\",route=\"manifest\"",
    ) - gets_before;
    let (cold_big, cold_big_cpu) = cold_big(&s, hub, big_hex, big_bytes);
    let warm_big = warm_gets(&format!("{}{}", s.base, big_path(big_hex)), 3, &|| {
        s.cpu_secs()
    });
    // Keep one request on the cold range blob busy, then ask for a range of it.
    let range = range_status(
        &s.base,
        &format!("/v2/library/range/blobs/sha256:{range_hex}"),
    );
    let rss_mib = s.peak_rss_kib() as f64 / 1024.0;
    drop(s);
    let s8 = start("b", &hub.base);
    let (concurrent8, concurrent8_upstream_bytes) = concurrent8(rt, &s8, hub, img);
    let rss_mib = rss_mib.max(s8.peak_rss_kib() as f64 / 1024.0);
    Mirrored {
        cold,
        cold_upstream_bytes,
        warm,
        concurrent8,
        concurrent8_upstream_bytes,
        rps: load.rps,
        p99: load.p99_ms,
        responses: load.responses,
        access_lines: load.access_lines,
        manifest_upstream_gets,
        cold_big,
        warm_big,
        cold_big_cpu,
        range,
        rss_mib,
    }
}

/// What one registry did with the upstream behind a WAN-like link.
struct Linked {
    cold: Duration,
    concurrent8: Duration,
    concurrent8_upstream_bytes: f64,
    cold_big: f64,
    rss_mib: f64,
}

fn measure_link(
    rt: &tokio::runtime::Runtime,
    start: Start<'_>,
    link: &str,
    hub: &Server,
    img: &Fixture,
    big_hex: &str,
) -> Linked {
    let s = start("link-a", link);
    let cold = rt.block_on(pull(&s.base, "library/bench", img, None));
    let cold_big = curl_speed(&s.base, &big_path(big_hex));
    let rss_mib = s.peak_rss_kib() as f64 / 1024.0;
    drop(s);
    let s8 = start("link-b", link);
    let (concurrent8, concurrent8_upstream_bytes) = concurrent8(rt, &s8, hub, img);
    Linked {
        cold,
        concurrent8,
        concurrent8_upstream_bytes,
        cold_big,
        rss_mib: rss_mib.max(s8.peak_rss_kib() as f64 / 1024.0),
    }
}

/// A row computed the same way from each registry's measurements.
fn row_of<T>(name: &str, w: &T, d: Option<&T>, f: impl Fn(&T) -> f64) {
    row(name, f(w), d.map(f), None);
}

/// Where the cached manifest and the big blob are, for the mirrors and nginx alike.
const MANIFEST_PATH: &str = "/v2/library/bench/manifests/latest";

fn big_path(big_hex: &str) -> String {
    format!("/v2/library/big/blobs/sha256:{big_hex}")
}

/// nginx's reference figures: the big blob's file with sendfile, the image's
/// manifest bytes as a static file.
struct Reference {
    warm_big: Warm,
    load: Load,
}

fn run_nginx(
    dir: &Path,
    manifest: &str,
    big_file: &Path,
    big_hex: &str,
    secs: u64,
) -> Option<Reference> {
    let manifest_file = dir.join("manifest.json");
    std::fs::write(&manifest_file, manifest).unwrap();
    let files = [
        Static {
            url_path: MANIFEST_PATH.to_owned(),
            file: manifest_file,
            content_type: OCI_MANIFEST.to_owned(),
        },
        Static {
            url_path: big_path(big_hex),
            file: big_file.to_owned(),
            content_type: "application/octet-stream".to_owned(),
        },
    ];
    let n = start_nginx(dir, &files)?;
    let warm_big = warm_gets(
        &format!("{}{}", n.server.base, big_path(big_hex)),
        3,
        &|| n.cpu_secs(),
    );
    let load = manifest_load(&n.server, MANIFEST_PATH, 64, secs);
    Some(Reference { warm_big, load })
}

fn main() {
    let image_mib: usize = env_or("BENCH_IMAGE_MIB", 160);
    let big_mib: usize = env_or("BENCH_BLOB_MIB", 1024);
    let secs: u64 = env_or("BENCH_SECS", 8);
    let link_mbps: f64 = env_or("BENCH_LINK_MBPS", 200.0);
    let dir = tempfile::tempdir().unwrap();
    let data = subdir(dir.path(), "data");
    let htpasswd = dir.path().join("htpasswd");
    let creds = write_htpasswd(&htpasswd);
    let hub_extra = format!(
        "[[upstream]]\nname = \"docker.io\"\nurl = \"http://127.0.0.1:9\"\ndefault = false\n[auth]\nhtpasswd = {:?}\nscheme = \"token\"\nanonymous_pull = true\n",
        htpasswd.display().to_string()
    );
    let mut hub = start_wharf_with(&subdir(dir.path(), "hub"), None, &hub_extra);
    hub.creds = Some(creds);
    // Five layers in the proportions of a typical application image.
    let parts = [40usize, 30, 20, 8, 2];
    let layers: Vec<usize> = parts.iter().map(|p| (image_mib * p / 100).max(1)).collect();
    let img = publish(&hub, &data, "library/bench", &layers, 100);
    let big = publish(&hub, &data, "library/big", &[big_mib], 200);
    let ranged = publish(&hub, &data, "library/range", &[64], 300);
    let (big_hex, range_hex) = (big.blobs[0].0.clone(), ranged.blobs[0].0.clone());
    let big_bytes = big.blobs[0].1 as f64;
    hub.creds = None;
    println!(
        "image: {} MiB in {} layers; big blob {big_mib} MiB; manifest load 64 connections for {secs}s; link {link_mbps} MB/s",
        layers.iter().sum::<usize>(),
        layers.len()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let token = anon_token(&hub, "library/bench");
    let direct = rt.block_on(pull(&hub.base, "library/bench", &img, Some(&token)));
    let image_bytes: f64 = img.blobs.iter().map(|(_, n)| *n as f64).sum();

    let wharf_start = |name: &str, url: &str| {
        let up = format!(
            "[[upstream]]\nname = \"docker.io\"\nurl = \"{url}\"\ndefault = true\nmanifest_ttl = \"1h\"\n"
        );
        start_wharf_with(&subdir(dir.path(), &format!("wharf-{name}")), None, &up)
    };
    let dist_start = |name: &str, url: &str| {
        let proxy = format!("proxy:\n  remoteurl: {url}\n");
        start_distribution_with(&subdir(dir.path(), &format!("dist-{name}")), None, &proxy)
            .expect("docker-registry is installed")
    };
    let have_dist = start_distribution(&subdir(dir.path(), "probe"), None).is_some();
    let (big_hex, range_hex) = (big_hex.as_str(), range_hex.as_str());
    let run =
        |start: Start<'_>| measure(&rt, start, &hub, &img, big_hex, big_bytes, range_hex, secs);
    let w = run(&wharf_start);
    let d = have_dist.then(|| run(&dist_start));
    let big_file = layer_file(&data, "library/big", 0);
    let n = run_nginx(
        &subdir(dir.path(), "nginx"),
        &img.manifest,
        &big_file,
        big_hex,
        secs,
    );
    // The same tempdir holds the mirrors' data: the same filesystem.
    let floor = cold_fill_floor(dir.path(), &big_file);

    let link =
        common::link::start_link(&rt, hub.base.trim_start_matches("http://"), link_mbps * 1e6);
    let direct_link = rt.block_on(pull(&link.base, "library/bench", &img, Some(&token)));
    let wl = measure_link(&rt, &wharf_start, &link.base, &hub, &img, big_hex);
    let dl = have_dist.then(|| measure_link(&rt, &dist_start, &link.base, &hub, &img, big_hex));

    let dd = d.as_ref();
    header(&format!(
        "loopback (CPU-bound: upstream, mirror and client share this machine's {} cores); direct pull {:.2}s",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        direct.as_secs_f64()
    ));
    row_of("cold pull / direct pull", &w, dd, |m| {
        m.cold.as_secs_f64() / direct.as_secs_f64()
    });
    row_of("cold pull: upstream bytes / image bytes", &w, dd, |m| {
        m.cold_upstream_bytes / image_bytes
    });
    row_of("8 concurrent cold pulls: wall time (s)", &w, dd, |m| {
        m.concurrent8.as_secs_f64()
    });
    row_of(
        "8 concurrent cold pulls: upstream/image bytes",
        &w,
        dd,
        |m| m.concurrent8_upstream_bytes / image_bytes,
    );
    row_of("warm pull / direct pull", &w, dd, |m| {
        m.warm.as_secs_f64() / direct.as_secs_f64()
    });
    let n = n.as_ref();
    row(
        "manifest GET, cached tag (req/s, 64 conns)",
        w.rps,
        dd.map(|d| d.rps),
        n.map(|n| n.load.rps),
    );
    row(
        "manifest GET p99 (ms)",
        w.p99,
        dd.map(|d| d.p99),
        n.map(|n| n.load.p99_ms),
    );
    row(
        "manifest GET: requests answered",
        w.responses as f64,
        dd.map(|d| d.responses as f64),
        n.map(|n| n.load.responses as f64),
    );
    row(
        "  wharf access log lines for them",
        w.access_lines.unwrap_or(0) as f64,
        None,
        None,
    );
    row_of("upstream manifest GETs during that load", &w, dd, |m| {
        m.manifest_upstream_gets
    });
    row_of("cold big blob (MB/s)", &w, dd, |m| m.cold_big / 1e6);
    row_of("cold fill: mirror CPU s/GiB", &w, dd, |m| m.cold_big_cpu.0);
    row_of("  upstream CPU s/GiB", &w, dd, |m| m.cold_big_cpu.1);
    row("floor (dd + sha256) s/GiB", floor.total(), None, None);
    row("  dd into a new file s/GiB", floor.dd, None, None);
    row("  one sha256 pass s/GiB", floor.sha256, None, None);
    row_of("mirror CPU / floor", &w, dd, |m| {
        m.cold_big_cpu.0 / floor.total()
    });
    row(
        "warm big blob, best of 3 (MB/s; nginx sendfile)",
        w.warm_big.bps / 1e6,
        dd.map(|d| d.warm_big.bps / 1e6),
        n.map(|n| n.warm_big.bps / 1e6),
    );
    row(
        "  server CPU seconds per GiB served",
        w.warm_big.cpu_per_gib,
        dd.map(|d| d.warm_big.cpu_per_gib),
        n.map(|n| n.warm_big.cpu_per_gib),
    );
    row("peak RSS (MiB)", w.rss_mib, dd.map(|d| d.rss_mib), None);
    text_row(
        "Range on a cold blob: status, bytes",
        &w.range,
        &dd.map(|d| d.range.clone()).unwrap_or_default(),
    );

    println!();
    goals_header("issue 10");
    let fastest = dd
        .map(|d| d.warm_big.bps)
        .into_iter()
        .chain(n.map(|n| n.warm_big.bps))
        .reduce(f64::max);
    goal(
        "warm big blob: wharf / max(distribution, nginx)",
        fastest.map(|f| w.warm_big.bps / f),
        Goal::AtLeast(1.0),
    );
    goal(
        "warm big blob CPU per GiB: wharf / distribution",
        dd.map(|d| w.warm_big.cpu_per_gib / d.warm_big.cpu_per_gib),
        Goal::AtMost(1.0),
    );
    goal(
        "cached-tag manifest req/s: wharf / nginx static",
        n.map(|n| w.rps / n.load.rps),
        Goal::AtLeast(0.7),
    );
    goal(
        "manifest GET p99, wharf (ms)",
        Some(w.p99),
        Goal::Below(5.0),
    );
    goal(
        "upstream manifest GETs during the load, wharf",
        Some(w.manifest_upstream_gets),
        Goal::Exactly(0.0),
    );
    goal(
        "access log lines per manifest GET, wharf",
        w.access_lines.map(|l| l as f64 / w.responses as f64),
        Goal::Exactly(1.0),
    );
    goal(
        "cold fill: wharf CPU / floor",
        Some(w.cold_big_cpu.0 / floor.total()),
        Goal::AtMost(1.15),
    );
    goal(
        "peak RSS: wharf / distribution",
        dd.map(|d| w.rss_mib / d.rss_mib),
        Goal::AtMost(0.5),
    );

    let dl = dl.as_ref();
    header(&format!(
        "upstream behind a {link_mbps} MB/s link shared by all upstream connections; direct pull {:.2}s",
        direct_link.as_secs_f64()
    ));
    row_of("cold pull / direct pull", &wl, dl, |m| {
        m.cold.as_secs_f64() / direct_link.as_secs_f64()
    });
    row_of("8 concurrent cold pulls: wall time (s)", &wl, dl, |m| {
        m.concurrent8.as_secs_f64()
    });
    row_of(
        "8 concurrent cold pulls: upstream/image bytes",
        &wl,
        dl,
        |m| m.concurrent8_upstream_bytes / image_bytes,
    );
    row_of("cold big blob (MB/s)", &wl, dl, |m| m.cold_big / 1e6);
    row_of("peak RSS (MiB)", &wl, dl, |m| m.rss_mib);

    println!();
    goals_header("issue 10");
    goal(
        "peak RSS: wharf / distribution",
        dl.map(|d| wl.rss_mib / d.rss_mib),
        Goal::AtMost(0.5),
    );
}
