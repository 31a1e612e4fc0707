//! Hot manifest lookups are answered from memory while the index is unchanged
//! (`store/manifest_cache.rs`); every write that changes an answer makes it
//! stale before the writing request returns. Each test warms the cache with
//! repeated GETs, changes the index over HTTP (or through a real eviction
//! pass), and checks the very next GET sees the change.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::upstreams::{hub, metric, mirror_config, publish};
use common::wait_for;
use common::{Wharf, bytes, digest, get_oci, http, push_image, status};
use reqwest::Method;
use wharf::config::Config;

/// GETs `path` `n` times (warming the cache); returns the last digest served.
async fn warm(w: &Wharf, path: &str, n: usize) -> String {
    let mut last = String::new();
    for _ in 0..n {
        let r = get_oci(w, path).await;
        assert_eq!(r.status(), 200, "{path}");
        last = r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = r.bytes().await.unwrap();
        assert_eq!(digest(&body), last, "{path}: the bytes are the digest's");
    }
    last
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tag_push_is_served_by_the_very_next_get() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let (_, a) = push_image(&w, "team/app", "live", &[bytes(300, 1)]).await;
    assert_eq!(warm(&w, "/v2/team/app/manifests/live", 5).await, a);
    for round in 0..5u64 {
        let (body, b) = push_image(&w, "team/app", "live", &[bytes(300, 10 + round)]).await;
        let r = get_oci(&w, "/v2/team/app/manifests/live").await;
        assert_eq!(
            r.headers()["docker-content-digest"],
            b.as_str(),
            "round {round}"
        );
        assert_eq!(r.bytes().await.unwrap().as_ref(), body.as_slice());
        let r = http()
            .head(w.url("/v2/team/app/manifests/live"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["docker-content-digest"], b.as_str());
        warm(&w, "/v2/team/app/manifests/live", 3).await;
    }
    // The first manifest is still there by digest.
    assert_eq!(warm(&w, &format!("/v2/team/app/manifests/{a}"), 2).await, a);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_tag_then_its_manifest_is_seen_by_the_very_next_get() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let (_, d) = push_image(&w, "team/app", "1", &[bytes(300, 2)]).await;
    let by_tag = "/v2/team/app/manifests/1";
    let by_digest = format!("/v2/team/app/manifests/{d}");
    warm(&w, by_tag, 3).await;
    warm(&w, &by_digest, 3).await;

    assert_eq!(status(&w, Method::DELETE, by_tag).await, 202);
    assert_eq!(status(&w, Method::GET, by_tag).await, 404);
    assert_eq!(status(&w, Method::HEAD, by_tag).await, 404);
    warm(&w, &by_digest, 2).await;

    // Tagged again, warmed, then the manifest itself goes (and its tag).
    assert_eq!(
        common::put_manifest(
            &w,
            "team/app",
            "1",
            OCI_MANIFEST,
            &get_oci(&w, &by_digest).await.bytes().await.unwrap()
        )
        .await
        .status(),
        201
    );
    warm(&w, by_tag, 3).await;
    assert_eq!(status(&w, Method::DELETE, &by_digest).await, 202);
    assert_eq!(status(&w, Method::GET, &by_digest).await, 404);
    assert_eq!(status(&w, Method::HEAD, &by_digest).await, 404);
    assert_eq!(status(&w, Method::GET, by_tag).await, 404);
}

/// A mirror of `hub` with a cache budget (low watermark 0.5) and `ttl`.
fn mirror_cfg(root: &Path, hub: &Wharf, budget: u64, ttl: &str) -> Config {
    let text = format!(
        "{}\n[gc]\ninterval = \"0\"\n[storage]\nroot = {:?}\nmax_cache_size = \"{budget}\"\nlow_watermark = 0.5\n",
        mirror_config(&hub.base, &format!("manifest_ttl = \"{ttl}\"\n"), ""),
        root.display().to_string()
    );
    Config::parse(&text, Path::new("mirror.toml")).unwrap()
}

/// Pulls every blob of `img` through `w`.
async fn pull_blobs(w: &Wharf, repo: &str, img: &Image) {
    for (d, b) in img.blobs() {
        let r = http()
            .get(w.url(&format!("/v2/{repo}/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), b);
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_evicted_mirrored_manifest_is_fetched_again_not_served_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let old = Image::new(vec![tar_with_file("l", &bytes(150_000, 3))]);
    let new = Image::new(vec![tar_with_file("l", &bytes(150_000, 4))]);
    publish(&hub, "library/old", "1", &old).await;
    publish(&hub, "library/new", "1", &new).await;
    let (m, _lc) =
        Wharf::start_observed(mirror_cfg(&dir.path().join("mirror"), &hub, 200_000, "1h")).await;

    let path = "/v2/library/old/manifests/1";
    let first = get_oci(&m, path).await;
    assert_eq!(first.headers()["x-cache"], "MISS");
    pull_blobs(&m, "library/old", &old).await;
    for _ in 0..3 {
        let r = get_oci(&m, path).await;
        assert_eq!(r.headers()["x-cache"], "HIT", "fresh within its TTL");
    }
    // `new` is read a second later, so `old` is the least recently read when
    // `new` passes the budget and kicks eviction (down to half the budget:
    // all of `old` goes).
    let read = unix_secs();
    wait_for(5, "the next second", || async { unix_secs() > read }).await;
    assert_eq!(
        get_oci(&m, "/v2/library/new/manifests/1").await.status(),
        200
    );
    pull_blobs(&m, "library/new", &new).await;
    wait_for(30, "the old image evicted", || {
        let m = &m;
        async move { metric(m, "wharf_cache_bytes").await <= 100_000.0 }
    })
    .await;

    let r = get_oci(&m, path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "MISS", "evicted: asked upstream");
    assert_eq!(r.bytes().await.unwrap().as_ref(), old.manifest.as_slice());
    assert_eq!(get_oci(&m, path).await.headers()["x-cache"], "HIT");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_moved_upstream_tag_is_served_once_its_ttl_passed() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let a = Image::new(vec![tar_with_file("l", &bytes(1000, 5))]);
    let b = Image::new(vec![tar_with_file("l", &bytes(1000, 6))]);
    publish(&hub, "library/app", "1", &a).await;
    let m = Wharf::start_config(mirror_cfg(&dir.path().join("mirror"), &hub, 0, "1s")).await;
    let path = "/v2/library/app/manifests/1";
    assert_eq!(warm(&m, path, 3).await, digest(&a.manifest));
    publish(&hub, "library/app", "1", &b).await;
    let moved = digest(&b.manifest);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut caches = Vec::new();
    loop {
        let r = get_oci(&m, path).await;
        let d = r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned();
        caches.push(r.headers()["x-cache"].to_str().unwrap().to_owned());
        if d == moved {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the moved tag never showed: {caches:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        caches.last().map(String::as_str),
        Some("MISS"),
        "{caches:?}"
    );
    assert_eq!(get_oci(&m, path).await.headers()["x-cache"], "HIT");
}
