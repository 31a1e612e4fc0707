//! Verify re-hashes every blob; a corrupt one is quarantined at once (never
//! served again), the report names the repositories and tags a pushed one
//! breaks, and a cached one comes back from the upstream on the next pull.

mod common;

use std::path::Path;

use common::disk::blob_path;
use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::upstreams::{hub, hub_blob_bytes, mirror_config, publish};
use common::{Wharf, bytes, digest, get_oci, http, push_blob, put_manifest};
use wharf::config::Config;

/// Flips a byte in the middle of a content file (same length: only a hash
/// finds it).
fn corrupt(root: &Path, d: &str) {
    let p = blob_path(root, d);
    let mut b = std::fs::read(&p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    std::fs::write(&p, b).unwrap();
}

async fn blob_status(w: &Wharf, repo: &str, d: &str) -> u16 {
    http()
        .get(w.url(&format!("/v2/{repo}/blobs/{d}")))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_pushed_blob_is_quarantined_and_reported_with_what_it_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(&dir.path().join("data"), "[gc]\ninterval = \"0\"\n");
    let (w, lc) = Wharf::start_observed(cfg).await;
    let shared = tar_with_file("shared", &bytes(100_000, 1));
    let one = Image::new(vec![shared.clone(), tar_with_file("a", &bytes(1_000, 2))]);
    let two = Image::new(vec![shared.clone()]);
    let untouched = Image::new(vec![tar_with_file("u", &bytes(5_000, 3))]);
    for (repo, tag, img) in [
        ("team/app", "1", &one),
        ("team/app", "2", &two),
        ("team/other", "x", &two),
        ("team/fine", "1", &untouched),
    ] {
        for (_, b) in img.blobs() {
            push_blob(&w, repo, b).await;
        }
        let r = put_manifest(&w, repo, tag, OCI_MANIFEST, &img.manifest).await;
        assert_eq!(r.status(), 201);
    }
    let bad = digest(&shared);
    corrupt(&w.root, &bad);

    let report = lc.verify.run_now().await.unwrap();
    let total: u64 = lc.store().usage().await.unwrap().blobs + 1;
    assert_eq!(
        report.checked_blobs, total,
        "every content file, the corrupt one too"
    );
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    let c = &report.corrupt[0];
    assert_eq!(c.digest, bad);
    assert_eq!(c.size, shared.len() as u64);
    assert_eq!(format!("{:?}", c.origin), "Pushed");
    assert_eq!(c.repositories, vec!["team/app", "team/other"]);
    assert_eq!(c.tags, vec!["team/app:1", "team/app:2", "team/other:x"]);
    assert!(c.action.contains("quarantine"), "{}", c.action);
    let json = serde_json::to_value(&report).unwrap();
    for key in ["checked_blobs", "checked_bytes", "corrupt"] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
    for key in ["digest", "size", "origin", "repositories", "tags", "action"] {
        assert!(json["corrupt"][0].get(key).is_some(), "{key} in {json}");
    }

    // Never served again, in any repository; kept aside for inspection.
    for repo in ["team/app", "team/other"] {
        assert_eq!(blob_status(&w, repo, &bad).await, 404, "{repo}");
    }
    assert!(!blob_path(&w.root, &bad).exists());
    let q = w
        .root
        .join("quarantine/sha256")
        .join(&bad["sha256:".len()..]);
    assert!(q.exists(), "quarantined at {}", q.display());
    // What it does not break still pulls, and a second pass finds nothing.
    let r = get_oci(&w, "/v2/team/fine/manifests/1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        common::upstreams::metric(&w, "wharf_verify_corrupt_total").await,
        1.0
    );
    let again = lc.verify.run_now().await.unwrap();
    assert!(again.corrupt.is_empty());
    let s = lc.verify.control.status();
    assert_eq!(s.progress, None, "no pass running");
    // Pushing the blob again repairs the images.
    push_blob(&w, "team/app", &shared).await;
    let r = http()
        .get(w.url(&format!("/v2/team/app/blobs/{bad}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), shared.as_slice());
    drop(lc);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_cached_blob_comes_back_from_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let img = Image::new(vec![tar_with_file("l", &bytes(200_000, 4))]);
    publish(&hub, "library/base", "1", &img).await;
    let root = dir.path().join("mirror");
    let text = format!(
        "{}\n[storage]\nroot = {:?}\n",
        mirror_config(
            &hub.base,
            "manifest_ttl = \"1h\"\n",
            "[gc]\ninterval = \"0\"\n"
        ),
        root.display().to_string()
    );
    let (m, lc) = Wharf::start_observed(Config::parse(&text, Path::new("m.toml")).unwrap()).await;
    let layer = img.blobs()[1].0.clone();
    let r = get_oci(&m, "/v2/library/base/manifests/1").await;
    assert_eq!(r.status(), 200);
    let r = http()
        .get(m.url(&format!("/v2/library/base/blobs/{layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), img.blobs()[1].1);
    // The download is stored after its client got the last byte.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !common::metrics_text(&m)
        .await
        .lines()
        .any(|l| l == "wharf_downloads_in_flight 0")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the download never settled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    corrupt(&root, &layer);

    let report = lc.verify.run_now().await.unwrap();
    assert_eq!(report.corrupt.len(), 1);
    let c = &report.corrupt[0];
    assert_eq!(c.digest, layer);
    assert_eq!(format!("{:?}", c.origin), "Cached");
    assert_eq!(c.repositories, vec!["docker.io/library/base"]);
    assert_eq!(c.tags, vec!["docker.io/library/base:1"]);
    assert!(c.action.contains("upstream"), "{}", c.action);

    let fetched = hub_blob_bytes(&hub).await;
    let r = http()
        .get(m.url(&format!("/v2/library/base/blobs/{layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        img.blobs()[1].1,
        "good bytes, same digest"
    );
    assert_eq!(
        hub_blob_bytes(&hub).await,
        fetched + img.blobs()[1].1.len() as f64,
        "fetched again from the upstream"
    );
    assert!(lc.verify.run_now().await.unwrap().corrupt.is_empty());
    drop(lc);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_file_left_in_place_is_never_served_again_after_a_new_push() {
    // quarantine/ cannot be made (a file holds its name: a careless operator,
    // a full or read-only volume): verify removes the rows but the corrupt
    // file stays under blobs/. Pushing the same bytes again must store them,
    // not adopt the corrupt file that happens to sit at the digest's path.
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(&dir.path().join("data"), "[gc]\ninterval = \"0\"\n");
    let (w, lc) = Wharf::start_observed(cfg).await;
    let layer = tar_with_file("l", &bytes(50_000, 7));
    let img = Image::new(vec![layer.clone()]);
    for (_, b) in img.blobs() {
        push_blob(&w, "team/app", b).await;
    }
    let r = put_manifest(&w, "team/app", "1", OCI_MANIFEST, &img.manifest).await;
    assert_eq!(r.status(), 201);
    let bad = digest(&layer);
    corrupt(&w.root, &bad);
    std::fs::write(w.root.join("quarantine"), b"not a directory").unwrap();

    let report = lc.verify.run_now().await.unwrap();
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    assert!(
        report.corrupt[0].action.contains("could not be moved"),
        "{}",
        report.corrupt[0].action
    );
    assert_eq!(blob_status(&w, "team/app", &bad).await, 404);

    // The same bytes pushed again: what is served is what was pushed.
    push_blob(&w, "team/app", &layer).await;
    let r = http()
        .get(w.url(&format!("/v2/team/app/blobs/{bad}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let served = r.bytes().await.unwrap();
    assert_eq!(digest(&served), bad, "the corrupt file was served again");
    let again = lc.verify.run_now().await.unwrap();
    assert!(again.corrupt.is_empty(), "{again:?}");
    drop(lc);
    w.stop().await;
}
