//! The web page reviewed as a hostile client would use it: work a visitor
//! can make a page do, and what it shows. HTTP-level like `tests/ui.rs`; each
//! test failed before its fix.

mod common;

use common::image::{OCI_INDEX, OCI_MANIFEST};
use common::{Wharf, http};

/// A GET: (status, body).
async fn get(w: &Wharf, path: &str) -> (u16, String) {
    let r = http().get(w.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// An index pushed by anyone who may push (or pulled through the mirror from
/// an upstream anyone may publish to) can list tens of thousands of entries,
/// all naming one small manifest under distinct platforms. The tags page
/// lists up to 100 such tags; each row must show a bounded number of
/// platforms (and count the rest), not the whole list.
#[tokio::test(flavor = "multi_thread")]
async fn a_tag_row_shows_a_bounded_number_of_platforms() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let (child, child_digest) = common::push_image(&w, "big/multi", "child", &[vec![1]]).await;
    let n = 20_000;
    let entries: Vec<_> = (0..n)
        .map(|i| {
            serde_json::json!({
                "mediaType": OCI_MANIFEST, "digest": child_digest, "size": child.len(),
                "platform": {"os": "linux", "architecture": format!("a{i}")}
            })
        })
        .collect();
    let index = serde_json::to_vec(
        &serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}),
    )
    .unwrap();
    assert!(index.len() < 4 * 1024 * 1024, "{}", index.len());
    let r = common::put_manifest(&w, "big/multi", "many", OCI_INDEX, &index).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (status, body) = get(&w, "/ui/repos/big/multi").await;
    assert_eq!(status, 200);
    assert!(body.contains("linux/a0"), "the first platforms are shown");
    assert!(
        !body.contains(&format!("linux/a{}", n - 1)),
        "every one of {n} platforms is written into the row ({} bytes of page)",
        body.len()
    );
    assert!(body.contains("more"), "the rest are counted");
    assert!(body.len() < 200_000, "{} bytes of page", body.len());
    w.stop().await;
}
