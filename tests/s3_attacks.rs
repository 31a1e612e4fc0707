//! Attacks on several wharf nodes sharing one S3 bucket (moto,
//! `tests/common/s3.rs`): a hostile client, a careless operator, a newcomer
//! with only the README. Records planted in the bucket that are bogus or
//! huge are refused without a panic and never served; a name pushed for the
//! first time on one node is not served from the default upstream by
//! another.

mod common;

use common::client::{gc_at, get_manifest, push};
use common::image::{Image, OCI_MANIFEST};
use common::s3::{blob_key, config, node_config, server};
use common::{Wharf, bytes, digest, http};
use object_store::path::Path as Key;
use object_store::{ObjectStore as _, ObjectStoreExt as _};

const BUCKET: &str = "wharf-attacks";

/// Bogus records planted in the bucket (a tag record that is no digest, a
/// huge one, a manifest record whose bytes do not hash to its name, a huge
/// manifest record) are never served and never crash a node: the node's own
/// copy keeps being served, and a miss is a 404 or a server error.
#[tokio::test(flavor = "multi_thread")]
async fn planted_bogus_and_huge_records_are_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let a = Wharf::start_config(node_config(&s3, BUCKET, &dir.path().join("a"), None)).await;
    let b = Wharf::start_config(node_config(&s3, BUCKET, &dir.path().join("b"), None)).await;
    let img = Image::new(vec![bytes(30_000, 41)]);
    push(&a, "team/app", "1", &img).await;
    let d = digest(&img.manifest);

    // A tag record that names no digest, and one far too big to be one.
    s3.put_object(BUCKET, "repos/team/app/tags/junk", b"not a digest".to_vec())
        .await;
    s3.put_object(BUCKET, "repos/team/app/tags/huge", vec![b'a'; 4 << 20])
        .await;
    for tag in ["junk", "huge"] {
        let (s, _) = get_manifest(&b, "team/app", tag).await;
        assert!(s == 404 || s >= 500, "{tag}: {s}");
    }
    // A manifest record whose bytes are not its digest's: never served.
    let other = Image::new(vec![bytes(1_000, 42)]);
    let forged = digest(&other.manifest);
    s3.put_object(
        BUCKET,
        &format!("repos/team/app/manifests/{forged}"),
        img.manifest.clone(),
    )
    .await;
    let (s, body) = get_manifest(&b, "team/app", &forged).await;
    assert_ne!(s, 200, "a forged record was served: {}", body.len());
    // A huge manifest record: refused, not read whole.
    let huge = format!("sha256:{}", "ab".repeat(32));
    s3.put_object(
        BUCKET,
        &format!("repos/team/app/manifests/{huge}"),
        vec![b' '; 16 << 20],
    )
    .await;
    let (s, _) = get_manifest(&b, "team/app", &huge).await;
    assert_ne!(s, 200);
    // The real image still pulls from both.
    for w in [&a, &b] {
        let (s, m) = get_manifest(w, "team/app", "1").await;
        assert_eq!((s, m), (200, img.manifest.clone()));
        let (s, _) = get_manifest(w, "team/app", &d).await;
        assert_eq!(s, 200);
    }
    a.stop().await;
    b.stop().await;
}

/// A name pushed for the first time on node A, pulled at once from node B
/// (another runner, another node): README says another node serves a digest
/// at once. B must not route the name to the default upstream, which holds
/// another image under the same name.
#[tokio::test(flavor = "multi_thread")]

async fn a_name_new_on_one_node_is_not_served_from_the_default_upstream_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    std::fs::create_dir_all(dir.path().join("hub")).unwrap();
    let hub = common::upstreams::hub(&dir.path().join("hub")).await;
    let theirs = Image::new(vec![bytes(20_000, 51)]);
    common::upstreams::publish(&hub, "team/app", "1", &theirs).await;
    let a = Wharf::start_config(node_config(
        &s3,
        BUCKET,
        &dir.path().join("a"),
        Some(&hub.base),
    ))
    .await;
    let b = Wharf::start_config(node_config(
        &s3,
        BUCKET,
        &dir.path().join("b"),
        Some(&hub.base),
    ))
    .await;
    // Both nodes are up and have learned the (empty) set of hosted names.
    let ours = Image::new(vec![bytes(20_000, 52)]);
    push(&a, "team/app", "1", &ours).await;
    let (s, m) = get_manifest(&b, "team/app", &digest(&ours.manifest)).await;
    assert_eq!(s, 200, "by digest at once: {}", String::from_utf8_lossy(&m));
    let (s, m) = get_manifest(&b, "team/app", "1").await;
    assert_ne!(
        m, theirs.manifest,
        "the default upstream's image was served under a pushed name ({s})"
    );
    a.stop().await;
    b.stop().await;
    hub.stop().await;
}

/// Pushes to `team` and to `team/app` (a common pair) leave no record key
/// that is also the prefix of another key: MinIO, the README's example
/// bucket, refuses an object under a key that is already an object
/// (`XMinioParentIsObject`), so such a layout would fail the second push.
#[tokio::test(flavor = "multi_thread")]
async fn no_record_key_is_the_prefix_of_another_for_nested_names() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let a = Wharf::start_config(node_config(&s3, BUCKET, &dir.path().join("a"), None)).await;
    let img = Image::new(vec![bytes(10_000, 61)]);
    push(&a, "team", "1", &img).await;
    push(&a, "team/app", "1", &img).await;
    let mut keys: Vec<String> = Vec::new();
    let mut listing = s3.store(BUCKET).list(None);
    while let Some(meta) = futures_util::StreamExt::next(&mut listing).await {
        keys.push(meta.unwrap().location.to_string());
    }
    for k in &keys {
        let dir = format!("{k}/");
        let under: Vec<&String> = keys.iter().filter(|o| o.starts_with(&dir)).collect();
        assert!(
            under.is_empty(),
            "{k} is an object and the prefix of {under:?}"
        );
    }
    // Both names are still known as hosted to a node that learns them.
    let b = Wharf::start_config(node_config(&s3, BUCKET, &dir.path().join("b"), None)).await;
    for repo in ["team", "team/app"] {
        let (s, m) = get_manifest(&b, repo, "1").await;
        assert_eq!((s, m), (200, img.manifest.clone()), "{repo}");
    }
    let r = http().get(b.url("/v2/_catalog")).send().await.unwrap();
    let catalog: serde_json::Value = r.json().await.unwrap();
    let names = catalog["repositories"].to_string();
    assert!(
        names.contains("\"team\"") && names.contains("\"team/app\""),
        "{names}"
    );
    a.stop().await;
    b.stop().await;
}

/// A node that starts using an old object after it answered a sweep's mark:
/// a client pushes a layer whose object is still in the bucket (its earlier
/// image deleted, not yet swept) while a sweep waits for a silent node (node
/// B answered the mark already). Found in review: the sweep deleted the
/// object and the acknowledged layer answered 404 everywhere. Now the
/// commit that finds its object in the bucket waits for the sweep to end
/// and uploads the object again if the sweep took it.
#[tokio::test(flavor = "multi_thread")]
async fn a_layer_pushed_again_during_a_sweep_is_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let sections = "[hosted]\nonly = true\n[gc]\ninterval = \"0\"\ngrace = \"2s\"\n";
    let a = Wharf::start_config(config(&s3, BUCKET, &dir.path().join("a"), sections, "")).await;
    let b = Wharf::start_config(config(&s3, BUCKET, &dir.path().join("b"), sections, "")).await;
    let layer = bytes(40_000, 71);
    let img = Image::new(vec![layer.clone()]);
    // The layer's object is still in the bucket from an image deleted
    // earlier; a node that went silent left an empty set.
    let d = digest(&layer);
    s3.put_object(BUCKET, &blob_key(&d), layer.clone()).await;
    s3.put_object(
        BUCKET,
        "nodes/ghost/live",
        b"wharf-live-set 1 node=ghost mark=0\n".to_vec(),
    )
    .await;
    let since = std::time::Instant::now();
    common::wait_for(30, "the grace to pass", || async move {
        since.elapsed() > std::time::Duration::from_millis(3_200)
    })
    .await;
    let sweep = tokio::spawn(gc_at(a.url("/_wharf/v1/gc"), serde_json::json!({})));
    // B answered the sweep's mark; the sweep waits for the ghost.
    let id = std::fs::read_to_string(dir.path().join("b/node-id")).unwrap();
    let key = format!("nodes/{}/live", id.trim());
    let s3_ref = &s3;
    common::wait_for(30, "B to answer the mark", || {
        let key = key.clone();
        async move {
            let Ok(got) = s3_ref.store(BUCKET).get(&Key::from(key.as_str())).await else {
                return false;
            };
            let body = got.bytes().await.unwrap();
            let head = String::from_utf8_lossy(&body);
            !head.lines().next().unwrap_or("").ends_with("mark=0")
        }
    })
    .await;
    // Meanwhile a client pushes the image: blobs first (acknowledged) ...
    for (_, blob) in img.blobs() {
        common::push_blob(&b, "team/app", blob).await;
    }
    let report = sweep.await.unwrap();
    // ... then its manifest, acknowledged too.
    let r = common::put_manifest(&b, "team/app", "1", OCI_MANIFEST, &img.manifest).await;
    assert_eq!(r.status(), 201, "the manifest push is acknowledged");
    for (bd, _) in img.blobs() {
        let r = http()
            .get(a.url(&format!("/v2/team/app/blobs/{bd}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{bd} lost to the sweep: {report}");
        let body = r.bytes().await.map(|b| digest(&b)).unwrap_or_default();
        assert_eq!(body, bd, "{bd} lost to the sweep: {report}");
    }
    a.stop().await;
    b.stop().await;
}
