//! The pull-through mirror: wharf vs CNCF Distribution 2.8.2 in proxy mode, same
//! upstream (a wharf in token mode with anonymous pulls, like Docker Hub), same
//! machine, same run, same client. Upstream traffic is read from the upstream's
//! own metrics.
//!
//! Run: `cargo bench --bench mirror` (`BENCH_IMAGE_MIB`, `BENCH_BLOB_MIB` and
//! `BENCH_SECS` change the image size, the big blob and the load duration).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

fn publish(hub: &Server, dir: &Path, repo: &str, layer_mib: &[usize], seed: u64) -> Fixture {
    let mut blobs = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, mib) in layer_mib.iter().enumerate() {
        let p = dir.join(format!("{repo}-layer{i}").replace('/', "_"));
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

struct Mirrored {
    cold: Duration,
    cold_upstream_bytes: f64,
    warm: Duration,
    concurrent8: Duration,
    concurrent8_upstream_bytes: f64,
    rps: f64,
    p99: f64,
    manifest_upstream_gets: f64,
    cold_big: f64,
    range: String,
    rss_mib: f64,
}

fn measure(
    rt: &tokio::runtime::Runtime,
    start: &dyn Fn(&str) -> Server,
    hub: &Server,
    img: &Fixture,
    big_hex: &str,
    range_hex: &str,
    secs: u64,
) -> Mirrored {
    let s = start("a");
    let before = hub_blob_bytes(hub);
    let cold = rt.block_on(pull(&s.base, "library/bench", img, None));
    let cold_upstream_bytes = hub_blob_bytes(hub) - before;
    let warm = rt.block_on(pull(&s.base, "library/bench", img, None));
    let gets_before = metric(
        &hub.base,
        "wharf_http_requests_total{method=\"GET\",route=\"manifest\"",
    );
    let load = manifest_load(&s, "/v2/library/bench/manifests/latest", 64, secs);
    let manifest_upstream_gets = metric(
        &hub.base,
        "wharf_http_requests_total{method=\"GET\",route=\"manifest\"",
    ) - gets_before;
    let cold_big = curl_speed(&s.base, &format!("/v2/library/big/blobs/sha256:{big_hex}"));
    // Keep one request on the cold range blob busy, then ask for a range of it.
    let range = range_status(
        &s.base,
        &format!("/v2/library/range/blobs/sha256:{range_hex}"),
    );
    let rss_mib = s.peak_rss_kib() as f64 / 1024.0;
    drop(s);
    let s8 = start("b");
    let before = hub_blob_bytes(hub);
    let concurrent8 = rt.block_on(async {
        let t = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let base = s8.base.clone();
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
    let concurrent8_upstream_bytes = hub_blob_bytes(hub) - before;
    Mirrored {
        cold,
        cold_upstream_bytes,
        warm,
        concurrent8,
        concurrent8_upstream_bytes,
        rps: load.rps,
        p99: load.p99_ms,
        manifest_upstream_gets,
        cold_big,
        range,
        rss_mib,
    }
}

fn main() {
    let image_mib: usize = env_or("BENCH_IMAGE_MIB", 160);
    let big_mib: usize = env_or("BENCH_BLOB_MIB", 1024);
    let secs: u64 = env_or("BENCH_SECS", 8);
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
    hub.creds = None;
    println!(
        "image: {} MiB in {} layers; big blob {big_mib} MiB; manifest load 64 connections for {secs}s",
        layers.iter().sum::<usize>(),
        layers.len()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let token = anon_token(&hub, "library/bench");
    let direct = rt.block_on(pull(&hub.base, "library/bench", &img, Some(&token)));
    let image_bytes: f64 = img.blobs.iter().map(|(_, n)| *n as f64).sum();

    let up = format!(
        "[[upstream]]\nname = \"docker.io\"\nurl = \"{}\"\ndefault = true\nmanifest_ttl = \"1h\"\n",
        hub.base
    );
    let wharf_start =
        |name: &str| start_wharf_with(&subdir(dir.path(), &format!("wharf-{name}")), None, &up);
    let w = measure(&rt, &wharf_start, &hub, &img, &big_hex, &range_hex, secs);
    let proxy = format!("proxy:\n  remoteurl: {}\n", hub.base);
    let dist_start = |name: &str| {
        start_distribution_with(&subdir(dir.path(), &format!("dist-{name}")), None, &proxy)
            .expect("docker-registry is installed")
    };
    let have_dist = start_distribution(&subdir(dir.path(), "probe"), None).is_some();
    let d = have_dist.then(|| measure(&rt, &dist_start, &hub, &img, &big_hex, &range_hex, secs));

    println!(
        "\ndirect pull from the upstream: {:.2}s",
        direct.as_secs_f64()
    );
    println!(
        "{:<44} {:>14} {:>14} {:>8}",
        "measure", "wharf", "distribution", "ratio"
    );
    let row = |name: &str, w: f64, d: Option<f64>| match d {
        Some(d) => println!("{name:<44} {w:>14.2} {d:>14.2} {:>7.2}x", w / d),
        None => println!("{name:<44} {w:>14.2}"),
    };
    let dd = d.as_ref();
    row(
        "cold pull / direct pull",
        w.cold.as_secs_f64() / direct.as_secs_f64(),
        dd.map(|d| d.cold.as_secs_f64() / direct.as_secs_f64()),
    );
    row(
        "cold pull: upstream bytes / image bytes",
        w.cold_upstream_bytes / image_bytes,
        dd.map(|d| d.cold_upstream_bytes / image_bytes),
    );
    row(
        "8 concurrent cold pulls: wall time (s)",
        w.concurrent8.as_secs_f64(),
        dd.map(|d| d.concurrent8.as_secs_f64()),
    );
    row(
        "8 concurrent cold pulls: upstream/image bytes",
        w.concurrent8_upstream_bytes / image_bytes,
        dd.map(|d| d.concurrent8_upstream_bytes / image_bytes),
    );
    row(
        "warm pull / direct pull",
        w.warm.as_secs_f64() / direct.as_secs_f64(),
        dd.map(|d| d.warm.as_secs_f64() / direct.as_secs_f64()),
    );
    row(
        "manifest GET, cached tag (req/s, 64 conns)",
        w.rps,
        dd.map(|d| d.rps),
    );
    row("manifest GET p99 (ms)", w.p99, dd.map(|d| d.p99));
    row(
        "upstream manifest GETs during that load",
        w.manifest_upstream_gets,
        dd.map(|d| d.manifest_upstream_gets),
    );
    row(
        "cold 1 GiB blob (MB/s)",
        w.cold_big / 1e6,
        dd.map(|d| d.cold_big / 1e6),
    );
    row("peak RSS (MiB)", w.rss_mib, dd.map(|d| d.rss_mib));
    println!(
        "{:<44} {:>14} {:>14}",
        "Range on a cold blob: status, bytes",
        w.range,
        dd.map(|d| d.range.clone()).unwrap_or_default()
    );
}
