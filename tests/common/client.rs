//! What the multi-node and S3 tests do to a wharf as a plain client: push an
//! image, fetch a manifest or a blob as (status, bytes), run a collection.
//! Written once here so that every test file asks the same way.

use serde_json::Value;

use super::image::{Image, OCI_INDEX, OCI_MANIFEST};
use super::{Wharf, http};

/// GETs `repo`'s manifest `reference` (tag or digest), accepting an image
/// manifest or an index; (status, body), for tests that assert on either.
pub async fn get_manifest(w: &Wharf, repo: &str, reference: &str) -> (u16, Vec<u8>) {
    let r = http()
        .get(w.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap().to_vec())
}

/// GETs blob `d` of `repo` whole (following no redirect); (status, body).
pub async fn get_blob(w: &Wharf, repo: &str, d: &str) -> (u16, Vec<u8>) {
    get_blob_range(w, repo, d, None).await
}

/// [`get_blob`] with a `Range` header when `range` is given, for tests of
/// ranged reads.
pub async fn get_blob_range(w: &Wharf, repo: &str, d: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    let mut req = http().get(w.url(&format!("/v2/{repo}/blobs/{d}")));
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.bytes().await.unwrap().to_vec())
}

/// Pushes `img`'s blobs (one POST+PUT each) and then its manifest as
/// `repo:tag`; the manifest PUT's response, for [`push`] and [`push_acked`].
async fn push_response(w: &Wharf, repo: &str, tag: &str, img: &Image) -> reqwest::Response {
    for (_, b) in img.blobs() {
        super::push_blob(w, repo, b).await;
    }
    super::put_manifest(w, repo, tag, OCI_MANIFEST, &img.manifest).await
}

/// Pushes `img` as `repo:tag` and fails the test unless the manifest is
/// acknowledged (201).
pub async fn push(w: &Wharf, repo: &str, tag: &str, img: &Image) {
    let r = push_response(w, repo, tag, img).await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
}

/// Pushes `img` as `repo:tag`; whether the manifest was acknowledged, for
/// tests that push while something else happens and count what landed.
pub async fn push_acked(w: &Wharf, repo: &str, tag: &str, img: &Image) -> bool {
    push_response(w, repo, tag, img).await.status() == 201
}

/// POSTs `body` to the admin gc endpoint at `url` and returns the report
/// (200 asserted). It takes a URL, not a node, so a test can run a
/// collection in a task of its own.
pub async fn gc_at(url: String, body: Value) -> Value {
    let r = http().post(url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Runs one collection on `w` through the admin API; its report.
pub async fn gc(w: &Wharf) -> Value {
    gc_at(w.url("/_wharf/v1/gc"), serde_json::json!({})).await
}

/// Runs one collection on `w`, dry or not; its report.
pub async fn gc_dry(w: &Wharf, dry_run: bool) -> Value {
    gc_at(
        w.url("/_wharf/v1/gc"),
        serde_json::json!({ "dry_run": dry_run }),
    )
    .await
}
