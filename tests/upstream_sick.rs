//! A sick upstream must never wedge the mirror or hold its clients: a token
//! service claiming an endless token lifetime, a registry that answers every
//! request with 429, one that accepts connections and never answers, and one
//! that omits the (optional) `Docker-Content-Digest` on HEAD. Each upstream is
//! a small HTTP server (or a bare TCP listener) on 127.0.0.1:0 in front of a
//! real wharf mirror.

mod common;

use std::sync::{Arc, Mutex};
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
    // The client has its last byte a moment before the download is committed
    // and leaves the gauge: a wedged download never does.
    common::wait_for(10, "the downloads to settle", || async {
        metric(&m, "wharf_downloads_in_flight").await == 0.0
    })
    .await;
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

/// A registry whose manifests carry no `Docker-Content-Digest`, on HEAD or
/// GET; `tag` names the manifest `v1` points at; `log` records each request.
struct Headerless {
    tag: Mutex<Vec<u8>>,
    content: Vec<Vec<u8>>,
    log: Mutex<Vec<String>>,
}

impl Headerless {
    fn answer(
        &self,
        req: &http::request::Parts,
    ) -> http::Response<http_body_util::Full<bytes::Bytes>> {
        let path = req.uri.path();
        self.log
            .lock()
            .unwrap()
            .push(format!("{} {path}", req.method));
        let found = if path.ends_with("/manifests/v1") {
            Some(self.tag.lock().unwrap().clone())
        } else {
            let d = path.rsplit('/').next().unwrap_or("");
            self.content.iter().find(|c| digest(c) == d).cloned()
        };
        let media = if path.contains("/manifests/") {
            OCI_MANIFEST
        } else {
            "application/octet-stream"
        };
        match found {
            Some(body) => answer(200, &[("content-type", media)], body),
            None if path == "/v2/" => answer(200, &[], "{}"),
            None => answer(404, &[], ""),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_without_digest_headers_serves_tags_and_revalidates() {
    let dir = tempfile::tempdir().unwrap();
    let a = Image::new(vec![tar_with_file("a", &bytes(64 << 10, 71))]);
    let b = Image::new(vec![tar_with_file("b", &bytes(64 << 10, 72))]);
    let mut content: Vec<Vec<u8>> = vec![a.manifest.clone(), b.manifest.clone()];
    for img in [&a, &b] {
        content.extend(img.blobs().into_iter().map(|(_, c)| c.to_vec()));
    }
    let state = Arc::new(Headerless {
        tag: Mutex::new(a.manifest.clone()),
        content,
        log: Mutex::new(Vec::new()),
    });
    let s = state.clone();
    let up = fake(move |req| s.answer(req)).await;
    // TTL 0: every tag request revalidates.
    let m = mirror(dir.path(), &up.url, "manifest_ttl = \"0s\"\n").await;

    let pull = async |want: &Image| {
        let r = get_oci(&m, "/v2/headerless/manifests/v1").await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["docker-content-digest"],
            digest(&want.manifest).as_str()
        );
        let cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
        assert_eq!(r.bytes().await.unwrap(), want.manifest);
        cache
    };
    assert_eq!(pull(&a).await, "MISS", "a cold tag");
    for (d, blob) in a.blobs() {
        let r = http()
            .get(m.url(&format!("/v2/headerless/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), blob);
    }
    assert_eq!(pull(&a).await, "HIT", "revalidated, unchanged");
    *state.tag.lock().unwrap() = b.manifest.clone();
    assert_eq!(pull(&b).await, "MISS", "revalidated, moved");
    assert_eq!(pull(&b).await, "HIT", "revalidated, unchanged again");

    let log = state.log.lock().unwrap().clone();
    let heads = log
        .iter()
        .filter(|l| l.starts_with("HEAD ") && l.ends_with("/manifests/v1"));
    assert_eq!(heads.count(), 4, "{log:#?}");
    assert!(
        !log.iter().any(|l| l.contains("/manifests/sha256:")),
        "the manifest fetched to hash it is the one kept, not fetched again: {log:#?}"
    );
    m.stop().await;
}
