//! The web page's cost at scale (issue 14): a wharf holding 10,000 hosted
//! repositories (one small image pushed, then cross-repository mounts and a
//! manifest PUT per repository), then GETs of `/ui/repos` (page 1, a middle
//! page, a search) and of the dashboard `/ui/` as the admin (a loopback
//! visitor of a wharf without users), each over N requests. The reference in
//! the same run is the admin API's `GET /_wharf/v1/repos` over the same
//! repositories (what `wharf ls --json` reads): each page's time is printed
//! beside it as a ratio.
//!
//! Run: `cargo bench --bench ui` (`BENCH_REPOS`, `BENCH_REQUESTS`,
//! `BENCH_FILL_THREADS` change the size, the requests per page and the
//! fill's parallelism).
//!
//! Measured (release, 2 shared cores, 10,000 repositories, 50 requests each):
//! fill 16.9 s (591 repositories/s); `GET /_wharf/v1/repos` 74.68 ms (the
//! reference, 1.00x); `/ui/repos` page 1 2.21 ms (0.030x), middle page
//! 2.11 ms (0.028x), search of 250 3.33 ms (0.045x); dashboard
//! `/ui/` 0.56 ms (0.007x: no index walk per view); wharf peak RSS 54 MiB.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A blocking client with keep-alive.
fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

/// Uploads `data` to `repo` in one POST + PUT; returns its digest.
fn push_blob(c: &reqwest::blocking::Client, base: &str, repo: &str, data: &[u8]) -> String {
    let digest = format!("sha256:{}", sha256_hex(data));
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "upload start");
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let loc = if loc.starts_with('/') {
        format!("{base}{loc}")
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{loc}{sep}digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "upload end");
    digest
}

fn repo_name(i: usize) -> String {
    format!("bench/team{:02}/app{i:05}", i % 40)
}

/// Mounts the two blobs into `repo` and PUTs the manifest as tag `1`.
fn fill_one(c: &reqwest::blocking::Client, base: &str, repo: &str, blobs: &[String], m: &[u8]) {
    for d in blobs {
        let r = c
            .post(format!(
                "{base}/v2/{repo}/blobs/uploads/?mount={d}&from={}",
                repo_name(0)
            ))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "mount into {repo}");
    }
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/1"))
        .header("content-type", OCI_MANIFEST)
        .body(m.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "manifest into {repo}");
}

/// Milliseconds per GET of `path` over `n` requests (after one warm-up),
/// checking each answer is a 200 whose body holds `marker`.
fn time_get(c: &reqwest::blocking::Client, base: &str, path: &str, n: usize, marker: &str) -> f64 {
    let get = || {
        let r = c.get(format!("{base}{path}")).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let body = r.text().unwrap();
        assert!(body.contains(marker), "{path}: no {marker:?}");
        body.len()
    };
    get();
    let start = Instant::now();
    for _ in 0..n {
        get();
    }
    start.elapsed().as_secs_f64() * 1e3 / n as f64
}

fn main() {
    let repos: usize = env_or("BENCH_REPOS", 10_000);
    let n: usize = env_or("BENCH_REQUESTS", 50);
    let threads: usize = env_or("BENCH_FILL_THREADS", 4);
    let dir = tempfile::tempdir().unwrap();
    let w = start_wharf(dir.path(), None);
    let base = w.base.clone();
    let c = client();

    let layer = seeded_bytes(4096, 0x14);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let first = repo_name(0);
    let l = push_blob(&c, &base, &first, &layer);
    let cfg = push_blob(&c, &base, &first, config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{l}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    )
    .into_bytes();
    let blobs = vec![l, cfg];
    let started = Instant::now();
    fill_one(&c, &base, &first, &blobs, &manifest);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (base, blobs, manifest) = (&base, &blobs, &manifest);
            s.spawn(move || {
                let c = client();
                for i in (1..repos).filter(|i| i % threads == t) {
                    fill_one(&c, base, &repo_name(i), blobs, manifest);
                }
            });
        }
    });
    let fill = started.elapsed().as_secs_f64();
    println!(
        "filled {repos} repositories in {fill:.1} s ({:.0} repositories/s)",
        repos as f64 / fill
    );

    let api = time_get(&c, &base, "/_wharf/v1/repos", n, &repo_name(repos - 1));
    let middle = repos.div_ceil(50) / 2;
    let rows: Vec<(&str, String, String)> = vec![
        ("/ui/repos (page 1)", "/ui/repos".into(), repo_name(0)),
        (
            "/ui/repos (middle page)",
            format!("/ui/repos?page={middle}"),
            "repo-row".into(),
        ),
        (
            "/ui/repos?q= (search, 250 of them)",
            "/ui/repos?q=team07%2F".into(),
            "repo-row".into(),
        ),
        ("/ui/ (dashboard)", "/ui/".into(), "storage-gauge".into()),
    ];
    println!("\nweb page at {repos} repositories, {n} requests each (ms per request)");
    println!(
        "{:<40} {:>10} {:>22}",
        "page", "ms", "page / GET /_wharf/v1/repos"
    );
    println!(
        "{:<40} {api:>10.2} {:>22}",
        "GET /_wharf/v1/repos (reference)", "1.00x"
    );
    for (name, path, marker) in rows {
        let ms = time_get(&c, &base, &path, n, &marker);
        println!("{name:<40} {ms:>10.2} {:>21.3}x", ms / api);
    }
    println!("wharf peak RSS: {} MiB", w.peak_rss_kib() / 1024);
}
