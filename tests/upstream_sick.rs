//! A sick upstream must never wedge the mirror or hold its clients: a token
//! service claiming an endless token lifetime, a registry that answers every
//! request with 429, and one that accepts connections and never answers. Each
//! upstream is a small HTTP server (or a bare TCP listener) on 127.0.0.1:0 in
//! front of a real wharf mirror.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::upstreams::{answer, fake, metric, mirror_config, silent};
use common::{Wharf, bytes, digest, get_oci, http};
use wharf::upstream::breaker::THRESHOLD;

/// What a client on a cold miss may wait at most, whatever the upstream does.
const PROMISE: Duration = Duration::from_secs(15);

/// A mirror whose default docker.io upstream is `url`.
async fn mirror(dir: &std::path::Path, url: &str, upstream_keys: &str) -> Wharf {
    let extra = mirror_config(url, upstream_keys, "");
    Wharf::start_config(common::config(&dir.join("mirror"), &extra)).await
}

/// GET `path` as a pulling client that gives up well after the promise (so a
/// broken mirror fails the test instead of hanging it): status, Retry-After,
/// and how long the answer took.
async fn timed_get(m: &Wharf, path: &str) -> (u16, Option<String>, Duration) {
    let started = Instant::now();
    let r = http()
        .get(m.url(path))
        .header("accept", OCI_MANIFEST)
        .timeout(PROMISE * 2)
        .send()
        .await
        .unwrap_or_else(|e| panic!("no answer to {path} within {:?}: {e}", PROMISE * 2));
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status().as_u16(), retry_after, started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_token_lifetime_neither_panics_nor_wedges_the_digest() {
    let dir = tempfile::tempdir().unwrap();
    let layer = tar_with_file("endless", &bytes(256 << 10, 61));
    let img = Image::new(vec![layer.clone()]);
    let d = digest(&layer);
    let (blob_path, manifest) = (format!("/blobs/{d}"), img.manifest.clone());
    let manifest_digest = digest(&manifest);
    // Token auth like Docker Hub's, whose token service claims the token
    // lives for u64::MAX seconds.
    let up = fake(move |req| {
        let path = req.uri.path();
        if path == "/token" {
            return answer(
                200,
                &[("content-type", "application/json")],
                r#"{"token":"x","expires_in":18446744073709551615}"#,
            );
        }
        if req.headers.get("authorization").map(|v| v.as_bytes()) != Some(b"Bearer x") {
            let host = req.headers["host"].to_str().unwrap();
            let challenge = format!(r#"Bearer realm="http://{host}/token",service="fake""#);
            return answer(401, &[("www-authenticate", challenge.as_str())], "");
        }
        if path.ends_with(&blob_path) {
            answer(
                200,
                &[("content-type", "application/octet-stream")],
                layer.clone(),
            )
        } else if path.ends_with("/manifests/v1") || path.ends_with(&manifest_digest) {
            let headers = [
                ("content-type", OCI_MANIFEST),
                ("docker-content-digest", manifest_digest.as_str()),
            ];
            answer(200, &headers, manifest.clone())
        } else {
            answer(404, &[], "")
        }
    })
    .await;
    let m = mirror(dir.path(), &up.url, "").await;

    // The blob is the first thing asked for, so its download task is the one
    // that meets the token response.
    let path = format!("/v2/endless/blobs/{d}");
    for attempt in ["first", "second"] {
        let r = http().get(m.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{attempt} request");
        assert_eq!(digest(&r.bytes().await.unwrap()), d, "{attempt} request");
    }
    assert_eq!(metric(&m, "wharf_downloads_in_flight").await, 0.0);
    // The token cache still works (a panic under its lock would poison it).
    let r = get_oci(&m, "/v2/endless/manifests/v1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(digest(&r.bytes().await.unwrap()), digest(&img.manifest));
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_upstream_is_passed_on_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    // Every request refused with a short Retry-After: tempting to wait out,
    // but not forever.
    let up = fake(|_| {
        answer(
            429,
            &[("retry-after", "2"), ("content-type", "application/json")],
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
        )
    })
    .await;
    let m = mirror(dir.path(), &up.url, "").await;
    let (status, retry_after, took) = timed_get(&m, "/v2/limited/manifests/latest").await;
    assert_eq!(status, 429);
    assert_eq!(retry_after.as_deref(), Some("2"));
    assert!(took < PROMISE, "the client waited {took:?}");
    let asked = up.requests();
    assert!(
        (1..=4).contains(&asked),
        "{asked} requests to the upstream for one manifest"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_upstream_gets_503_in_time_and_then_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let up = silent().await;
    let m = Arc::new(mirror(dir.path(), &up.url, "").await);
    // Enough cold misses at once to open the breaker: the test takes one
    // deadline, not THRESHOLD of them.
    let mut misses = tokio::task::JoinSet::new();
    for i in 0..THRESHOLD {
        let m = m.clone();
        misses.spawn(async move { timed_get(&m, &format!("/v2/silent/manifests/t{i}")).await });
    }
    while let Some(joined) = misses.join_next().await {
        let (status, _, took) = joined.unwrap();
        assert_eq!(status, 503);
        assert!(took < PROMISE, "a cold miss waited {took:?}");
    }
    // The breaker learned from the timeouts: the next miss fails at once.
    let (status, retry_after, took) = timed_get(&m, "/v2/silent/manifests/next").await;
    assert_eq!(status, 503);
    assert!(retry_after.is_some(), "says when to try again");
    assert!(took < Duration::from_secs(1), "skipped, yet took {took:?}");
    assert_eq!(
        metric(&m, "wharf_upstream_skipped{upstream=\"docker.io\"}").await,
        1.0
    );
    Arc::into_inner(m).unwrap().stop().await;
}
