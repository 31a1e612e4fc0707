//! The pull-through mirror against a real upstream: a second wharf in token mode
//! with anonymous pulls (like Docker Hub). Upstream traffic is counted at the
//! upstream, from its own metrics.

mod common;

use std::sync::Arc;

use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::upstreams::{hub, hub_blob_bytes, metric, mirror_config, publish, restart_hub};
use common::{Wharf, bytes, digest, get_oci as get, http};

/// A mirror with `hub` as the default docker.io upstream.
async fn mirror(dir: &std::path::Path, hub: &Wharf, ttl: &str) -> Wharf {
    let extra = mirror_config(
        &hub.base,
        &format!("manifest_ttl = \"{ttl}\"\n"),
        "[hosted]\nprefixes = [\"team/\"]\n",
    );
    Wharf::start_config(common::config(&dir.join("mirror"), &extra)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_through_once_and_then_serves_from_cache() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let img = Image::new(vec![
        tar_with_file("a", &bytes(3 << 20, 1)),
        tar_with_file("b", b"small layer"),
    ]);
    publish(&hub, "library/busybox", "1.36", &img).await;
    let m = mirror(dir.path(), &hub, "1h").await;

    let r = get(&m, "/v2/library/busybox/manifests/1.36").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(
        r.headers()["docker-content-digest"],
        digest(&img.manifest).as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), img.manifest.as_slice());
    // Every spelling shares one cache: dockerd's, the short name, skopeo's prefix.
    for path in [
        "/v2/library/busybox/manifests/1.36",
        "/v2/busybox/manifests/1.36",
        "/v2/docker.io/library/busybox/manifests/1.36",
        "/v2/library/busybox/manifests/1.36?ns=docker.io",
    ] {
        let r = get(&m, path).await;
        assert_eq!(r.headers()["x-cache"], "HIT", "{path}");
    }
    for (d, b) in img.blobs() {
        let r = get(&m, &format!("/v2/library/busybox/blobs/{d}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-cache"], "MISS");
        assert_eq!(r.headers()["content-length"], b.len().to_string().as_str());
        assert_eq!(r.bytes().await.unwrap().as_ref(), b, "{d}");
        let r = get(&m, &format!("/v2/busybox/blobs/{d}")).await;
        assert_eq!(r.headers()["x-cache"], "HIT");
        assert_eq!(r.bytes().await.unwrap().as_ref(), b);
    }
    let total: usize = img.blobs().iter().map(|(_, b)| b.len()).sum();
    assert_eq!(
        hub_blob_bytes(&hub).await as usize,
        total,
        "each blob crossed the upstream link once"
    );
    // A mirrored name that holds content cannot be claimed by a push.
    let r = http()
        .post(m.url("/v2/busybox/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let msg = common::error_code(r).await;
    assert_eq!(msg, "DENIED");
    // Unknown upstream content is a clean 404.
    let r = get(&m, "/v2/library/nothing/manifests/latest").await;
    assert_eq!(r.status(), 404);
    assert_eq!(common::error_code(r).await, "MANIFEST_UNKNOWN");
    let r = get(
        &m,
        &format!("/v2/library/busybox/blobs/{}", digest(b"absent")),
    )
    .await;
    assert_eq!(common::error_code(r).await, "BLOB_UNKNOWN");
    m.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_concurrent_cold_pulls_fetch_each_blob_once() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let img = Image::new(vec![
        tar_with_file("big", &bytes(12 << 20, 2)),
        tar_with_file("mid", &bytes(4 << 20, 3)),
        tar_with_file("small", b"tiny"),
    ]);
    publish(&hub, "library/app", "v1", &img).await;
    let m = Arc::new(mirror(dir.path(), &hub, "1h").await);
    let blobs: Vec<(String, Vec<u8>)> = img
        .blobs()
        .into_iter()
        .map(|(d, b)| (d, b.to_vec()))
        .collect();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let m = m.clone();
        let blobs = blobs.clone();
        tasks.push(tokio::spawn(async move {
            let r = get(&m, "/v2/library/app/manifests/v1").await;
            assert_eq!(r.status(), 200);
            for (d, want) in &blobs {
                let got = get(&m, &format!("/v2/library/app/blobs/{d}"))
                    .await
                    .bytes()
                    .await
                    .unwrap();
                assert_eq!(digest(&got), *d);
                assert_eq!(got.len(), want.len());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total: usize = blobs.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(
        hub_blob_bytes(&hub).await as usize,
        total,
        "upstream bytes = 1.00x the image"
    );
    assert_eq!(
        metric(
            &hub,
            "wharf_http_requests_total{method=\"GET\",route=\"manifest\""
        )
        .await,
        1.0,
        "one manifest GET upstream for 8 clients"
    );
    Arc::try_unwrap(m).ok().unwrap().stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_hangs_up_mid_blob_still_fills_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let big = tar_with_file("big", &bytes(32 << 20, 4));
    let img = Image::new(vec![big.clone()]);
    publish(&hub, "library/big", "v1", &img).await;
    let m = mirror(dir.path(), &hub, "1h").await;
    let d = digest(&big);
    let mut r = get(&m, &format!("/v2/library/big/blobs/{d}")).await;
    assert_eq!(
        r.headers()["content-length"],
        big.len().to_string().as_str()
    );
    let first = r.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(r);
    // A later client gets the whole blob; the upstream still sent it only once.
    let got = get(&m, &format!("/v2/library/big/blobs/{d}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(digest(&got), d);
    assert_eq!(hub_blob_bytes(&hub).await as usize, big.len());
    // And it is in the cache for good.
    let r = get(&m, &format!("/v2/library/big/blobs/{d}")).await;
    assert_eq!(r.headers()["x-cache"], "HIT");
    // An unread response is in flight: shutdown would wait for it (drain).
    drop(r);
    m.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn range_requests_on_a_blob_still_downloading() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let big = tar_with_file("big", &bytes(16 << 20, 5));
    let img = Image::new(vec![big.clone()]);
    publish(&hub, "library/ranged", "v1", &img).await;
    let m = mirror(dir.path(), &hub, "1h").await;
    let d = digest(&big);
    let path = format!("/v2/library/ranged/blobs/{d}");
    // The first request starts the download and is held open.
    let mut whole = get(&m, &path).await;
    let _ = whole.chunk().await.unwrap();
    let r = http()
        .get(m.url(&path))
        .header("range", "bytes=1000000-1000099")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 1000000-1000099/{}", big.len()).as_str()
    );
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        &big[1_000_000..1_000_100]
    );
    let tail = http()
        .get(m.url(&path))
        .header("range", format!("bytes={}-", big.len() - 10))
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &big[big.len() - 10..]);
    drop(whole);
    m.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_upstream_bytes_are_never_cached_or_served_whole() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let layer = tar_with_file("x", &bytes(2 << 20, 6));
    let img = Image::new(vec![layer.clone()]);
    publish(&hub, "library/bad", "v1", &img).await;
    // Flip one byte of the layer on the upstream's disk: it now serves wrong bytes.
    let d = digest(&layer);
    let path = hub.root.join("blobs/sha256").join(&d[7..9]).join(&d[7..]);
    let mut on_disk = std::fs::read(&path).unwrap();
    on_disk[12345] ^= 0xff;
    std::fs::write(&path, &on_disk).unwrap();
    let m = mirror(dir.path(), &hub, "1h").await;
    let r = get(&m, &format!("/v2/library/bad/blobs/{d}")).await;
    // Headers go out before the end is known; the body must then fail, never complete.
    if r.status() == 200 {
        assert!(
            r.bytes().await.is_err(),
            "a corrupt blob was delivered whole"
        );
    } else {
        assert_eq!(r.status(), 502);
    }
    let cached = m.root.join("blobs/sha256").join(&d[7..9]).join(&d[7..]);
    assert!(!cached.exists(), "corrupt bytes were kept");
    assert_eq!(std::fs::read_dir(m.root.join("tmp")).unwrap().count(), 0);
    // The next request tries again (and fails again) rather than serving junk.
    let r = get(&m, &format!("/v2/library/bad/blobs/{d}")).await;
    if r.status() == 200 {
        assert!(r.bytes().await.is_err());
    }
    assert!(metric(&m, "wharf_upstream_download_failures_total").await >= 1.0);
    m.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_revalidate_with_head_and_follow_a_moved_tag() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let v1 = Image::new(vec![tar_with_file("v", b"one")]);
    publish(&hub, "library/moving", "latest", &v1).await;
    // TTL 0: every tag request revalidates, so no test waits for a clock.
    let m = mirror(dir.path(), &hub, "0s").await;
    let r = get(&m, "/v2/library/moving/manifests/latest").await;
    assert_eq!(r.headers()["x-cache"], "MISS");
    for _ in 0..3 {
        let r = get(&m, "/v2/library/moving/manifests/latest").await;
        assert_eq!(r.headers()["x-cache"], "HIT");
        assert_eq!(
            r.headers()["docker-content-digest"],
            digest(&v1.manifest).as_str()
        );
    }
    let gets = "wharf_http_requests_total{method=\"GET\",route=\"manifest\"";
    let heads = "wharf_http_requests_total{method=\"HEAD\",route=\"manifest\"";
    assert_eq!(
        metric(&hub, gets).await,
        1.0,
        "one GET while the tag did not move"
    );
    assert_eq!(metric(&hub, heads).await, 4.0, "a HEAD per revalidation");

    let v2 = Image::new(vec![tar_with_file("v", b"two")]);
    publish(&hub, "library/moving", "latest", &v2).await;
    let r = get(&m, "/v2/library/moving/manifests/latest").await;
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(
        r.headers()["docker-content-digest"],
        digest(&v2.manifest).as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), v2.manifest.as_slice());
    assert_eq!(metric(&hub, gets).await, 2.0);
    // The old content stays reachable by digest.
    let r = get(
        &m,
        &format!("/v2/library/moving/manifests/{}", digest(&v1.manifest)),
    )
    .await;
    assert_eq!(r.headers()["x-cache"], "HIT");
    m.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_down_serves_the_cache_and_fails_misses_fast() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let img = Image::new(vec![tar_with_file("o", b"offline")]);
    publish(&hub, "library/offline", "v1", &img).await;
    let m = mirror(dir.path(), &hub, "0s").await;
    assert_eq!(
        get(&m, "/v2/library/offline/manifests/v1").await.status(),
        200
    );
    for (d, _) in img.blobs() {
        assert_eq!(
            get(&m, &format!("/v2/library/offline/blobs/{d}"))
                .await
                .status(),
            200
        );
    }
    hub.stop().await;

    // By tag, past its TTL: served stale. By digest and blobs: plain hits.
    let r = get(&m, "/v2/library/offline/manifests/v1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "STALE");
    let r = get(
        &m,
        &format!("/v2/library/offline/manifests/{}", digest(&img.manifest)),
    )
    .await;
    assert_eq!(r.headers()["x-cache"], "HIT");
    for (d, b) in img.blobs() {
        let r = get(&m, &format!("/v2/library/offline/blobs/{d}")).await;
        assert_eq!(r.bytes().await.unwrap().as_ref(), b);
    }
    // A true miss fails with a clear error; after repeated failures the upstream is
    // skipped and misses fail at once, with Retry-After.
    let r = get(&m, "/v2/library/never/manifests/v1").await;
    assert_eq!(r.status(), 503);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("upstream"),
        "{v}"
    );
    let _ = get(&m, "/v2/library/never2/manifests/v1").await;
    let started = std::time::Instant::now();
    let r = get(&m, "/v2/library/never3/manifests/v1").await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("failed repeatedly"),
        "{v}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_millis(500),
        "circuit breaker did not skip"
    );
    // Cached tags still answer while the upstream is skipped.
    let r = get(&m, "/v2/library/offline/manifests/v1").await;
    assert_eq!(r.headers()["x-cache"], "STALE");
    assert!(
        metric(
            &m,
            "wharf_cache_requests_total{kind=\"manifest\",result=\"STALE\"}"
        )
        .await
            >= 2.0
    );
    let skipped = "wharf_upstream_skipped{upstream=\"docker.io\"}";
    assert_eq!(metric(&m, skipped).await, 1.0);
    common::wait_for(10, "no download left in flight", || async {
        metric(&m, "wharf_downloads_in_flight").await == 0.0
    })
    .await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_comes_back_serves_fresh_tags_again() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let old = Image::new(vec![tar_with_file("o", b"before the outage")]);
    publish(&hub, "library/back", "v1", &old).await;
    let m = mirror(dir.path(), &hub, "0s").await;
    let tag = "/v2/library/back/manifests/v1";
    let r = get(&m, tag).await;
    assert_eq!(
        r.headers()["docker-content-digest"],
        digest(&old.manifest).as_str()
    );

    let addr = hub.addr;
    hub.stop().await;
    let r = get(&m, tag).await;
    assert_eq!(r.headers()["x-cache"], "STALE");
    assert_eq!(
        r.headers()["docker-content-digest"],
        digest(&old.manifest).as_str()
    );

    // Back on the same address, with a new process (its old tokens are void)
    // and the tag moved while the mirror could not see it.
    let hub = restart_hub(dir.path(), addr).await;
    let new = Image::new(vec![tar_with_file("n", b"after the outage")]);
    publish(&hub, "library/back", "v1", &new).await;
    let r = get(&m, tag).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(
        r.headers()["docker-content-digest"],
        digest(&new.manifest).as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), new.manifest.as_slice());
    for (d, b) in new.blobs() {
        let r = get(&m, &format!("/v2/library/back/blobs/{d}")).await;
        assert_eq!(r.bytes().await.unwrap().as_ref(), b);
    }
    let r = get(&m, tag).await;
    assert_eq!(r.headers()["x-cache"], "HIT", "revalidated, unchanged");
    m.stop().await;
    hub.stop().await;
}

/// A mirror of `hub` that asks `peers` first.
async fn mirror_with_peers(
    dir: &std::path::Path,
    name: &str,
    hub: &Wharf,
    peers: &[String],
) -> Wharf {
    let peer_lines: String = peers
        .iter()
        .map(|p| format!("[[peer]]\nurl = \"{p}\"\n"))
        .collect();
    let extra = mirror_config(&hub.base, "", &peer_lines);
    Wharf::start_config(common::config(&dir.join(name), &extra)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn lan_peers_serve_blobs_before_the_upstream_and_never_loop() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let shared = tar_with_file("s", &bytes(6 << 20, 7));
    let img = Image::new(vec![shared.clone()]);
    publish(&hub, "library/shared", "v1", &img).await;
    let only_hub = tar_with_file("h", &bytes(1 << 20, 8));
    let img2 = Image::new(vec![only_hub.clone()]);
    publish(&hub, "library/other", "v1", &img2).await;

    let a = mirror_with_peers(dir.path(), "a", &hub, &[]).await;
    // b asks a dead peer and a; neither costs it the upstream when a has the blob.
    let b = mirror_with_peers(
        dir.path(),
        "b",
        &hub,
        &["http://127.0.0.1:9".to_owned(), a.base.clone()],
    )
    .await;
    let d = digest(&shared);
    let got = get(&a, &format!("/v2/library/shared/blobs/{d}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(digest(&got), d);
    let before = hub_blob_bytes(&hub).await;

    let r = get(&b, &format!("/v2/library/shared/blobs/{d}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "PEER");
    assert_eq!(digest(&r.bytes().await.unwrap()), d);
    assert_eq!(
        hub_blob_bytes(&hub).await,
        before,
        "the upstream saw no request for it"
    );
    let r = get(&b, &format!("/v2/library/shared/blobs/{d}")).await;
    assert_eq!(r.headers()["x-cache"], "HIT");
    drop(r);

    // Neither has it: a answers b's peer request from its store only (404), never
    // through its own upstream; b then fetches from the hub, once.
    let d2 = digest(&only_hub);
    let r = get(&b, &format!("/v2/library/other/blobs/{d2}")).await;
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(digest(&r.bytes().await.unwrap()), d2);
    assert_eq!(hub_blob_bytes(&hub).await, before + only_hub.len() as f64);
    let r = http()
        .head(a.url(&format!("/v2/library/other/blobs/{d2}")))
        .header("x-wharf-peer", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a did not fetch it for the peer");
    b.stop().await;
    a.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_lists_come_from_the_upstream_and_survive_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let img = Image::new(vec![tar_with_file("t", b"tags")]);
    for t in ["v1", "v2", "v3"] {
        publish(&hub, "library/tagged", t, &img).await;
    }
    let m = mirror(dir.path(), &hub, "1h").await;
    // Tags never pulled through the mirror are listed: the upstream answers.
    let r = get(&m, "/v2/tagged/tags/list").await;
    assert_eq!(r.headers()["x-cache"], "MISS");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!({"name": "tagged", "tags": ["v1", "v2", "v3"]})
    );
    // Paging passes through, and the next-page link names what the client asked for.
    let r = get(&m, "/v2/tagged/tags/list?n=2").await;
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert!(link.starts_with("</v2/tagged/tags/list?"), "{link}");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v1", "v2"]));
    let r = get(&m, "/v2/nothing-here/tags/list").await;
    assert_eq!(r.status(), 404);
    assert_eq!(common::error_code(r).await, "NAME_UNKNOWN");
    // Pull one tag, lose the upstream: the cached tags still answer.
    assert_eq!(get(&m, "/v2/tagged/manifests/v2").await.status(), 200);
    hub.stop().await;
    let r = get(&m, "/v2/tagged/tags/list").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "STALE");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v2"]));
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_of_an_uncached_blob_asks_the_upstream_without_downloading() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let layer = bytes(2 << 20, 9);
    let img = Image::new(vec![tar_with_file("a", &layer)]);
    publish(&hub, "library/headme", "1", &img).await;
    let m = mirror(dir.path(), &hub, "1h").await;
    let (d, b) = img.blobs()[0].clone();
    let path = format!("/v2/library/headme/blobs/{d}");
    let heads_before = metric(
        &hub,
        "wharf_http_requests_total{method=\"HEAD\",route=\"blob\"",
    )
    .await;

    let r = http().head(m.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(r.headers()["content-length"], b.len().to_string().as_str());
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    assert_eq!(
        metric(
            &hub,
            "wharf_http_requests_total{method=\"HEAD\",route=\"blob\""
        )
        .await
            - heads_before,
        1.0,
        "the upstream saw one HEAD"
    );
    assert_eq!(hub_blob_bytes(&hub).await, 0.0, "no blob bytes crossed");
    let r = http().head(m.url(&path)).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "MISS", "a HEAD caches nothing");

    // Unknown upstream: 404 on HEAD too.
    let r = http()
        .head(m.url(&format!("/v2/library/headme/blobs/{}", digest(b"absent"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Once fetched, a HEAD is a hit without asking the upstream.
    assert_eq!(get(&m, &path).await.bytes().await.unwrap().as_ref(), b);
    let heads = metric(
        &hub,
        "wharf_http_requests_total{method=\"HEAD\",route=\"blob\"",
    )
    .await;
    let r = http().head(m.url(&path)).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(
        metric(
            &hub,
            "wharf_http_requests_total{method=\"HEAD\",route=\"blob\""
        )
        .await,
        heads
    );
    m.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_come_from_the_upstream_and_from_the_cache_when_it_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let img = Image::new(vec![tar_with_file("s", b"signed")]);
    publish(&hub, "library/signed", "v1", &img).await;
    let subject = digest(&img.manifest);
    let pusher = common::As::user(&hub, "pusher", "pusher-pw");
    let empty = b"{}".to_vec();
    assert_eq!(pusher.push_blob("library/signed", &empty).await, 201);
    let mut artifacts = Vec::new();
    for (i, at) in [
        "application/vnd.example.sig",
        "application/vnd.example.sbom+json",
    ]
    .into_iter()
    .enumerate()
    {
        let layer = format!("artifact {i}").into_bytes();
        assert_eq!(pusher.push_blob("library/signed", &layer).await, 201);
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest(&empty), "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": digest(&layer), "size": layer.len()}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": img.manifest.len()}
        }))
        .unwrap();
        let d = digest(&m);
        common::upstreams::put_manifest(&hub, "library/signed", &d, OCI_MANIFEST, &m).await;
        artifacts.push(d);
    }
    let m = mirror(dir.path(), &hub, "1h").await;
    let referrers = |query: &'static str| {
        let url = m.url(&format!("/v2/library/signed/referrers/{subject}{query}"));
        async move { http().get(url).send().await.unwrap() }
    };
    let listed = |v: &serde_json::Value| -> Vec<String> {
        let mut d: Vec<String> = v["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap().to_owned())
            .collect();
        d.sort();
        d
    };

    // Nothing is cached, yet both referrers are listed: they live upstream.
    let r = referrers("").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "MISS");
    let mut all = artifacts.clone();
    all.sort();
    assert_eq!(listed(&r.json().await.unwrap()), all);
    // The artifactType filter travels (percent-encoded) and is reported.
    let r = referrers("?artifactType=application%2Fvnd.example.sbom%2Bjson").await;
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    assert_eq!(listed(&r.json().await.unwrap()), vec![artifacts[1].clone()]);

    // Pull the signature through the mirror, then lose the upstream: the
    // cached referrer is still listed, marked STALE.
    let r = get(
        &m,
        &format!("/v2/library/signed/manifests/{}", artifacts[0]),
    )
    .await;
    assert_eq!(r.status(), 200);
    hub.stop().await;
    let r = referrers("").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "STALE");
    assert_eq!(listed(&r.json().await.unwrap()), vec![artifacts[0].clone()]);
    m.stop().await;
}
