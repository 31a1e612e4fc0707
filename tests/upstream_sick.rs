//! A sick upstream must never wedge the mirror or hold its clients: a token
//! service claiming an endless token lifetime. Each upstream is a small HTTP
//! server on 127.0.0.1:0 in front of a real wharf mirror.

mod common;

use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::upstreams::{answer, fake, metric, mirror_config};
use common::{Wharf, bytes, digest, get_oci, http};

/// A mirror whose default docker.io upstream is `url`.
async fn mirror(dir: &std::path::Path, url: &str, upstream_keys: &str) -> Wharf {
    let extra = mirror_config(url, upstream_keys, "");
    Wharf::start_config(common::config(&dir.join("mirror"), &extra)).await
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
