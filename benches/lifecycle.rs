//! Garbage collection and eviction over a large index, and what a pass costs
//! the pulls running beside it. Reference in the same run: CNCF Distribution
//! 2.8.2's `garbage-collect` (Debian's `docker-registry`) over a storage tree of
//! the same shape (same blobs, same manifests, same half deleted).
//!
//! Shape (`BENCH_BLOBS`, default 100,000): images of one config and nine
//! layers, every blob its own; half the images are deleted before the
//! collection, so half the blobs are garbage. For eviction, the same number of
//! blobs again as mirrored (cached) content, evicted down to half.
//! Pull throughput: `BENCH_PULLERS` (8) clients GET a 4 MiB blob for
//! `BENCH_SECS` (5) with no pass running, then while gc passes run back to back.
//!
//! Data lives under `BENCH_DIR` (default `/dev/shm` when present), so the
//! figures are the index and the file operations, not the disk's fsync.
//!
//! Run: `cargo bench --bench lifecycle`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{env_or, seeded_bytes, sha256_hex};
use wharf::oci::{Digest, Reference, RepoName};
use wharf::store::{Origin, Store};
use wharf::workers::lifecycle::Lifecycle;

const LAYERS: usize = 9;
const BLOB_BYTES: usize = 256;
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// One image's blobs and manifest bytes.
struct Image {
    blobs: Vec<Vec<u8>>,
    manifest: String,
}

fn image(i: u64, salt: u64) -> Image {
    let blobs: Vec<Vec<u8>> = (0..=LAYERS as u64)
        .map(|j| seeded_bytes(BLOB_BYTES, salt ^ (i * 16 + j + 1)))
        .collect();
    let desc = |b: &[u8], t: &str| serde_json::json!({"mediaType": t, "digest": format!("sha256:{}", sha256_hex(b)), "size": b.len()});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": common::OCI_MANIFEST,
        "config": desc(&blobs[0], CONFIG_TYPE),
        "layers": blobs[1..].iter().map(|b| desc(b, LAYER_TYPE)).collect::<Vec<_>>(),
    })
    .to_string();
    Image { blobs, manifest }
}

async fn store_blob(store: &Store, repo: &RepoName, data: &[u8], origin: Origin) -> Digest {
    let digest = Digest::of_bytes(data);
    let mut w = store.new_writer().await.unwrap();
    w.write(Bytes::copy_from_slice(data)).await.unwrap();
    store.store_blob(w, repo, &digest, origin).await.unwrap();
    digest
}

/// Pushes `count` images into `repo` (hosted) or caches them (mirrored), 64 at a time.
async fn fill(store: &Arc<Store>, repo: &RepoName, count: u64, salt: u64, origin: Origin) {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..count {
        if set.len() >= 64 {
            set.join_next().await.unwrap().unwrap();
        }
        let (store, repo) = (store.clone(), repo.clone());
        set.spawn(async move { fill_one(&store, &repo, i, salt, origin).await });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

async fn fill_one(store: &Store, repo: &RepoName, i: u64, salt: u64, origin: Origin) {
    let img = image(i, salt);
    for b in &img.blobs {
        store_blob(store, repo, b, origin).await;
    }
    let body = Bytes::from(img.manifest.clone().into_bytes());
    let tag: wharf::oci::Tag = format!("t{i}").parse().unwrap();
    match origin {
        Origin::Pushed => {
            store
                .put_manifest(repo, &Reference::Tag(tag), body, common::OCI_MANIFEST)
                .await
                .unwrap();
        }
        Origin::Cached => {
            store
                .put_cached_manifest(
                    repo,
                    Some(&tag),
                    &Digest::of_bytes(img.manifest.as_bytes()),
                    common::OCI_MANIFEST,
                    body,
                    "docker.io",
                )
                .await
                .unwrap();
        }
    }
}

/// The same images as a `registry:2` storage tree; the deleted half has its
/// blobs and layer links but no manifest revision or tag.
fn distribution_tree(root: &Path, count: u64, salt: u64) {
    let v2 = root.join("docker/registry/v2");
    let repo = v2.join("repositories/bench/app");
    let write = |p: PathBuf, data: &[u8]| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    let put_blob = |data: &[u8]| -> String {
        let hex = sha256_hex(data);
        write(
            v2.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2])),
            data,
        );
        hex
    };
    for i in 0..count {
        let img = image(i, salt);
        for b in &img.blobs {
            let hex = put_blob(b);
            write(
                repo.join(format!("_layers/sha256/{hex}/link")),
                format!("sha256:{hex}").as_bytes(),
            );
        }
        let hex = put_blob(img.manifest.as_bytes());
        if i % 2 == 1 {
            let link = format!("sha256:{hex}");
            write(
                repo.join(format!("_manifests/revisions/sha256/{hex}/link")),
                link.as_bytes(),
            );
            write(
                repo.join(format!("_manifests/tags/t{i}/current/link")),
                link.as_bytes(),
            );
            write(
                repo.join(format!("_manifests/tags/t{i}/index/sha256/{hex}/link")),
                link.as_bytes(),
            );
        }
    }
}

fn count_files(dir: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => n += 1,
                Err(_) => {}
            }
        }
    }
    n
}

/// Distribution's garbage-collect over its tree: (dry-run seconds, real seconds, blobs after).
fn distribution_gc(root: &Path) -> Option<(f64, f64, u64)> {
    if std::process::Command::new("docker-registry")
        .arg("--version")
        .output()
        .is_err()
    {
        return None;
    }
    let cfg = root.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
            root.display()
        ),
    )
    .unwrap();
    let run = |dry: bool| {
        let t = Instant::now();
        let mut c = std::process::Command::new("docker-registry");
        c.arg("garbage-collect");
        if dry {
            c.arg("--dry-run");
        }
        let out = c.arg(&cfg).output().unwrap();
        assert!(out.status.success(), "garbage-collect failed: {out:?}");
        t.elapsed().as_secs_f64()
    };
    let dry = run(true);
    let real = run(false);
    Some((
        dry,
        real,
        count_files(&root.join("docker/registry/v2/blobs")),
    ))
}

/// Bytes/s that `pullers` clients get on `url` for `secs`.
async fn pull_rate(url: &str, pullers: usize, secs: u64) -> f64 {
    let bytes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..pullers)
        .map(|_| {
            let (bytes, stop, url) = (bytes.clone(), stop.clone(), url.to_owned());
            tokio::spawn(async move {
                let c = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let mut r = c.get(&url).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    while let Some(chunk) = r.chunk().await.unwrap() {
                        bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    bytes.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

async fn run() {
    let blobs: u64 = env_or("BENCH_BLOBS", 100_000);
    let secs: u64 = env_or("BENCH_SECS", 5);
    let pullers: usize = env_or("BENCH_PULLERS", 8);
    let images = blobs / (LAYERS as u64 + 1);
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| {
        if Path::new("/dev/shm").is_dir() {
            "/dev/shm".into()
        } else {
            std::env::temp_dir().display().to_string()
        }
    });
    let dir = tempfile::tempdir_in(&base).unwrap();
    let root = dir.path().join("wharf");
    let cfg = wharf::config::Config::parse(
        &format!(
            "[[upstream]]\nname = \"docker.io\"\nurl = \"http://127.0.0.1:9\"\ndefault = false\n\
             [storage]\nroot = {:?}\n[gc]\ninterval = \"0\"\ngrace = \"0s\"\n\
             [log]\nlevel = \"warn\"\n",
            root.display().to_string()
        ),
        Path::new("bench.toml"),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (tx, rx) = tokio::sync::oneshot::channel::<Lifecycle>();
    let server = tokio::spawn(wharf::app::run_observed(cfg, listener, stop_rx, tx));
    let life = rx.await.unwrap();
    let store = life.store().clone();

    // Hosted: `images` images, half deleted.
    let hosted: RepoName = "bench/app".parse().unwrap();
    let t = Instant::now();
    fill(&store, &hosted, images, 0, Origin::Pushed).await;
    let big = seeded_bytes(4 << 20, 42);
    let big_digest = store_blob(&store, &hosted, &big, Origin::Pushed).await;
    eprintln!(
        "filled {} hosted blobs in {:.1} s",
        images * 10,
        t.elapsed().as_secs_f64()
    );
    for i in (0..images).step_by(2) {
        let d = Digest::of_bytes(image(i, 0).manifest.as_bytes());
        store
            .delete_manifest(&hosted, &Reference::Digest(d))
            .await
            .unwrap();
    }
    // `big` is referenced by nothing: it is read while only dry passes run,
    // and the real collection afterwards sweeps it with the rest.
    let url = format!("http://{addr}/v2/bench/app/blobs/{big_digest}");
    let baseline = pull_rate(&url, pullers, secs).await;

    let dry = life.gc.worker.pass(true).await.unwrap();
    let busy = Arc::new(AtomicBool::new(true));
    let looping = {
        let (gc, busy) = (life.gc.clone(), busy.clone());
        tokio::spawn(async move {
            let mut passes = 0u64;
            while busy.load(Ordering::Relaxed) {
                gc.worker.pass(true).await.unwrap();
                passes += 1;
            }
            passes
        })
    };
    let during = pull_rate(&url, pullers, secs).await;
    busy.store(false, Ordering::Relaxed);
    let passes = looping.await.unwrap();
    let real = life.gc.worker.pass(false).await.unwrap();

    // Distribution over the same shape.
    let dist_root = dir.path().join("distribution");
    let t = Instant::now();
    distribution_tree(&dist_root, images, 0);
    eprintln!(
        "wrote the registry:2 tree in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let dist = distribution_gc(&dist_root);

    // Mirrored: the same number of cached blobs, evicted down to half.
    let cached: RepoName = "docker.io/library/bench".parse().unwrap();
    fill(&store, &cached, images, 7, Origin::Cached).await;
    let cached_bytes = store.cached_bytes();
    let t = Instant::now();
    // Setting the budget kicks the worker's own pass; run_now takes its turn
    // after it, so the time covers one full eviction either way.
    store.set_cache_budget(cached_bytes / 2);
    life.evict.run_now().await.unwrap();
    let evict_secs = t.elapsed().as_secs_f64();
    let after = store.cached_bytes();

    println!("lifecycle over {} blobs ({} images):", images * 10, images);
    println!(
        "  wharf gc: mark {:.2} s (dry run), mark {:.2} s + sweep {:.2} s for {} of {} blobs",
        dry.mark_ms as f64 / 1000.0,
        real.mark_ms as f64 / 1000.0,
        real.sweep_ms as f64 / 1000.0,
        real.swept_blobs,
        real.swept_blobs + real.marked_blobs,
    );
    if let Some((d_dry, d_real, left)) = dist {
        let w_dry = dry.mark_ms as f64 / 1000.0;
        let w_real = (real.mark_ms + real.sweep_ms) as f64 / 1000.0;
        println!(
            "  Distribution garbage-collect: --dry-run {d_dry:.2} s, real {d_real:.2} s ({left} blob files left)"
        );
        println!(
            "  ratio wharf/Distribution: mark {:.3}x, mark+sweep {:.3}x (lower is faster)",
            w_dry / d_dry,
            w_real / d_real
        );
    } else {
        println!("  Distribution: docker-registry not installed, no reference run");
    }
    println!(
        "  wharf evict: {} of {} cached bytes evicted ({} blobs in the index) in {evict_secs:.2} s (cached {cached_bytes} -> {after})",
        cached_bytes - after,
        cached_bytes,
        images * 10,
    );
    println!(
        "  pulls of a 4 MiB blob, {pullers} clients: {:.0} MB/s alone, {:.0} MB/s during {passes} gc mark passes: {:.2}x",
        baseline / 1e6,
        during / 1e6,
        during / baseline
    );
    let _ = stop_tx.send(true);
    let _ = server.await;
}
