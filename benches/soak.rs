//! Soak: push + delete + online gc, cycle after cycle, with pulls running
//! alongside, against one wharf process. Counts every failed push or pull and
//! every `BLOB_UNKNOWN`; any at all is a failure (exit 1). Another registry's
//! soak of this shape found 40 `BLOB_UNKNOWN` in 481 cycles.
//!
//! Each cycle pushes `soak/app:<i>` (a layer shared by every image, a layer of
//! its own, a config), pulls it back, deletes image `i-2` by digest and runs
//! a collection through the admin API. A second pusher pushes images sharing the
//! same base without pause, so collections run while pushes are between their
//! blob uploads and their manifest; a puller pulls the newest live image over
//! and over. `[gc] grace` is short (2 s) so the collections really sweep.
//!
//! Run: `cargo bench --bench soak` (`SOAK_CYCLES`, default 500). Not part of
//! `cargo test`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use common::*;
use reqwest::blocking::Client;

/// Failures seen, by kind.
#[derive(Default)]
struct Tally {
    push_failures: AtomicU64,
    pull_failures: AtomicU64,
    blob_unknown: AtomicU64,
    gc_failures: AtomicU64,
    pulls: AtomicU64,
    pushes: AtomicU64,
    swept: AtomicU64,
}

impl Tally {
    fn failed(&self, what: &str, kind: &AtomicU64, status: u16, body: &str) {
        kind.fetch_add(1, Ordering::Relaxed);
        if body.contains("BLOB_UNKNOWN") {
            self.blob_unknown.fetch_add(1, Ordering::Relaxed);
        }
        eprintln!("FAILED {what}: {status} {body}");
    }
}

/// A pushed image: its manifest digest and what it needs.
#[derive(Clone)]
struct Image {
    tag: String,
    digest: String,
    blobs: Vec<String>,
}

/// Uploads `data` unless the registry has it (what docker does: HEAD first).
fn push_blob(c: &Client, base: &str, repo: &str, data: &[u8]) -> Result<String, (u16, String)> {
    let digest = format!("sha256:{}", sha256_hex(data));
    let head = c
        .head(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send()
        .map_err(|e| (0, e.to_string()))?;
    if head.status().is_success() {
        return Ok(digest);
    }
    let start = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .map_err(|e| (0, e.to_string()))?;
    if start.status().as_u16() != 202 {
        let s = start.status().as_u16();
        return Err((s, start.text().unwrap_or_default()));
    }
    let loc = start
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let sep = if loc.contains('?') { '&' } else { '?' };
    let put = c
        .put(format!("{base}{loc}{sep}digest={digest}"))
        .body(data.to_vec())
        .send()
        .map_err(|e| (0, e.to_string()))?;
    if put.status().as_u16() != 201 {
        let s = put.status().as_u16();
        return Err((s, put.text().unwrap_or_default()));
    }
    Ok(digest)
}

fn push_image(
    c: &Client,
    base: &str,
    tag: &str,
    shared: &[u8],
    seed: u64,
) -> Result<Image, (u16, String)> {
    let repo = "soak/app";
    let own = seeded_bytes(64 * 1024, seed);
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}");
    let base_digest = push_blob(c, base, repo, shared)?;
    let own_digest = push_blob(c, base, repo, &own)?;
    let config_digest = push_blob(c, base, repo, config.as_bytes())?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": base_digest, "size": shared.len()},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": own_digest, "size": own.len()},
        ],
    })
    .to_string();
    let put = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .map_err(|e| (0, e.to_string()))?;
    if put.status().as_u16() != 201 {
        let s = put.status().as_u16();
        return Err((s, put.text().unwrap_or_default()));
    }
    Ok(Image {
        tag: tag.to_owned(),
        digest: format!("sha256:{}", sha256_hex(manifest.as_bytes())),
        blobs: vec![config_digest, base_digest, own_digest],
    })
}

/// Pulls an image by tag and checks every byte.
fn pull_image(c: &Client, base: &str, img: &Image) -> Result<(), (u16, String)> {
    let m = c
        .get(format!("{base}/v2/soak/app/manifests/{}", img.tag))
        .header("accept", OCI_MANIFEST)
        .send()
        .map_err(|e| (0, e.to_string()))?;
    let status = m.status().as_u16();
    let body = m.bytes().map_err(|e| (status, e.to_string()))?;
    if status != 200 {
        return Err((status, String::from_utf8_lossy(&body).into_owned()));
    }
    if format!("sha256:{}", sha256_hex(&body)) != img.digest {
        return Err((status, "manifest digest changed".into()));
    }
    for d in &img.blobs {
        let b = c
            .get(format!("{base}/v2/soak/app/blobs/{d}"))
            .send()
            .map_err(|e| (0, e.to_string()))?;
        let status = b.status().as_u16();
        let bytes = b.bytes().map_err(|e| (status, e.to_string()))?;
        if status != 200 {
            return Err((status, String::from_utf8_lossy(&bytes).into_owned()));
        }
        if format!("sha256:{}", sha256_hex(&bytes)) != *d {
            return Err((status, format!("blob {d} came back with other bytes")));
        }
    }
    Ok(())
}

fn delete_image(c: &Client, base: &str, img: &Image) -> Result<(), (u16, String)> {
    let r = c
        .delete(format!("{base}/v2/soak/app/manifests/{}", img.digest))
        .send()
        .map_err(|e| (0, e.to_string()))?;
    match r.status().as_u16() {
        202 => Ok(()),
        s => Err((s, r.text().unwrap_or_default())),
    }
}

fn gc(c: &Client, base: &str) -> Result<u64, (u16, String)> {
    let r = c
        .post(format!("{base}/_wharf/v1/gc"))
        .json(&serde_json::json!({"dry_run": false}))
        .send()
        .map_err(|e| (0, e.to_string()))?;
    let status = r.status().as_u16();
    let body = r.text().unwrap_or_default();
    if status != 200 {
        return Err((status, body));
    }
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| (status, e.to_string()))?;
    Ok(v["swept_blobs"].as_u64().unwrap_or(0))
}

fn main() {
    let cycles: usize = env_or("SOAK_CYCLES", 500);
    let dir = tempfile::tempdir().unwrap();
    let server = start_wharf_with(
        dir.path(),
        None,
        "[hosted]\nprefixes = [\"soak/\"]\n[gc]\ngrace = \"2s\"\ninterval = \"1s\"\n",
    );
    let base = server.base.clone();
    let tally = Arc::new(Tally::default());
    let shared = Arc::new(seeded_bytes(1024 * 1024, 1));
    let newest: Arc<std::sync::Mutex<Option<Image>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let seeds = Arc::new(AtomicUsize::new(1_000_000));
    let started = Instant::now();

    // A second pusher: images that share the base, pushed without pause and
    // deleted right away, so collections meet pushes at every stage.
    let side_pusher = {
        let (base, tally, shared, stop, seeds) = (
            base.clone(),
            tally.clone(),
            shared.clone(),
            stop.clone(),
            seeds.clone(),
        );
        std::thread::spawn(move || {
            let c = Client::new();
            while !stop.load(Ordering::Relaxed) {
                let seed = seeds.fetch_add(1, Ordering::Relaxed) as u64;
                match push_image(&c, &base, &format!("side-{seed}"), &shared, seed) {
                    Ok(img) => {
                        tally.pushes.fetch_add(1, Ordering::Relaxed);
                        if let Err((s, b)) = pull_image(&c, &base, &img) {
                            tally.failed("side pull", &tally.pull_failures, s, &b);
                        }
                        if let Err((s, b)) = delete_image(&c, &base, &img) {
                            tally.failed("side delete", &tally.push_failures, s, &b);
                        }
                    }
                    Err((s, b)) => tally.failed("side push", &tally.push_failures, s, &b),
                }
            }
        })
    };
    let puller = {
        let (base, tally, newest, stop) =
            (base.clone(), tally.clone(), newest.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = Client::new();
            while !stop.load(Ordering::Relaxed) {
                let img = newest.lock().unwrap().clone();
                if let Some(img) = img {
                    match pull_image(&c, &base, &img) {
                        Ok(()) => {
                            tally.pulls.fetch_add(1, Ordering::Relaxed);
                        }
                        Err((s, b)) => tally.failed("pull", &tally.pull_failures, s, &b),
                    }
                }
            }
        })
    };

    let c = Client::new();
    let mut live: Vec<Image> = Vec::new();
    for i in 0..cycles {
        match push_image(&c, &base, &format!("v{i}"), &shared, i as u64) {
            Ok(img) => {
                tally.pushes.fetch_add(1, Ordering::Relaxed);
                match pull_image(&c, &base, &img) {
                    Ok(()) => tally.pulls.fetch_add(1, Ordering::Relaxed),
                    Err((s, b)) => {
                        tally.failed("pull", &tally.pull_failures, s, &b);
                        0
                    }
                };
                *newest.lock().unwrap() = Some(img.clone());
                live.push(img);
            }
            Err((s, b)) => tally.failed("push", &tally.push_failures, s, &b),
        }
        if live.len() > 2 {
            let old = live.remove(0);
            if let Err((s, b)) = delete_image(&c, &base, &old) {
                tally.failed("delete", &tally.push_failures, s, &b);
            }
        }
        match gc(&c, &base) {
            Ok(n) => {
                tally.swept.fetch_add(n, Ordering::Relaxed);
            }
            Err((s, b)) => tally.failed("gc", &tally.gc_failures, s, &b),
        }
        if (i + 1) % 50 == 0 {
            eprintln!("{} cycles, {:?}", i + 1, started.elapsed());
        }
    }
    stop.store(true, Ordering::Relaxed);
    side_pusher.join().unwrap();
    puller.join().unwrap();
    // Everything still tagged pulls at the end.
    for img in &live {
        if let Err((s, b)) = pull_image(&c, &base, img) {
            tally.failed("final pull", &tally.pull_failures, s, &b);
        }
    }
    let t = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "soak: {cycles} cycles in {:.1} s; pushes {} pulls {} swept blobs {}; failed pushes {} failed pulls {} BLOB_UNKNOWN {} failed gc {}",
        started.elapsed().as_secs_f64(),
        t(&tally.pushes),
        t(&tally.pulls),
        t(&tally.swept),
        t(&tally.push_failures),
        t(&tally.pull_failures),
        t(&tally.blob_unknown),
        t(&tally.gc_failures),
    );
    let failed = t(&tally.push_failures)
        + t(&tally.pull_failures)
        + t(&tally.blob_unknown)
        + t(&tally.gc_failures);
    drop(server);
    if failed > 0 {
        std::process::exit(1);
    }
}
