//! Several wharf nodes on one S3 bucket and prefix (moto, `tests/common/s3.rs`):
//! only the node holding the `gc-lease` deletes shared objects, and only those
//! no node's live set and no hosted manifest record names. A gc on one node
//! while another pushes loses nothing; content only the other node holds
//! survives; garbage older than the grace goes; two gcs at once sweep once; a
//! stale lease is taken over; a node killed mid-upload leaves nothing
//! half-visible to either node.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::client::{gc, gc_at, gc_dry, push_acked};
use common::disk::largest_staged;
use common::image::{Image, OCI_MANIFEST};
use common::s3::{S3Server, blob_key, config, server};
use common::{Wharf, bytes, digest, http};
use object_store::ObjectStoreExt as _;
use object_store::path::Path as Key;
use wharf::config::Config;

const BUCKET: &str = "wharf-shared";
/// The grace every node runs with: short, so a sweep really deletes.
const GRACE_SECS: u64 = 2;

/// A hosted-only node on `root`, sharing the bucket, gc only on demand.
fn node_config(s3: &S3Server, root: &Path) -> Config {
    let sections =
        format!("[hosted]\nonly = true\n[gc]\ninterval = \"0\"\ngrace = \"{GRACE_SECS}s\"\n");
    config(s3, BUCKET, root, &sections, "")
}

fn node_id(root: &Path) -> String {
    std::fs::read_to_string(root.join("node-id"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Puts `data` straight into the bucket as a blob object nobody references.
async fn plant_blob(s3: &S3Server, data: &[u8]) -> String {
    let d = digest(data);
    s3.put_object(BUCKET, &blob_key(&d), data.to_vec()).await;
    d
}

/// Waits until objects written now are older than the grace.
async fn past_grace() {
    let since = Instant::now();
    common::wait_for(30, "the grace to pass", || async move {
        since.elapsed() > Duration::from_millis(GRACE_SECS * 1000 + 1100)
    })
    .await;
}

/// `img` pulls whole from `w` as `repo:tag`.
async fn pulls_whole(w: &Wharf, repo: &str, tag: &str, img: &Image) {
    let m = http()
        .get(w.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 200, "{repo}:{tag}");
    assert_eq!(m.bytes().await.unwrap().to_vec(), img.manifest);
    for (d, _) in img.blobs() {
        let r = http()
            .get(w.url(&format!("/v2/{repo}/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{repo} {d}");
        assert_eq!(digest(&r.bytes().await.unwrap()), d, "{repo} {d} whole");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gc_on_one_node_while_another_pushes_loses_nothing_and_deletes_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let a = Wharf::start_config(node_config(&s3, &dir.path().join("a"))).await;
    let b = Wharf::start_config(node_config(&s3, &dir.path().join("b"))).await;
    // Garbage: an object nobody names. Named only by a hosted manifest
    // record: an image whose blobs no node's index holds.
    let garbage = plant_blob(&s3, &bytes(3_000, 1)).await;
    let recorded = Image::new(vec![bytes(2_000, 2)]);
    for (_, blob) in recorded.blobs() {
        plant_blob(&s3, blob).await;
    }
    let md = digest(&recorded.manifest);
    s3.put_object(
        BUCKET,
        &format!("repos/team/recorded/manifests/{md}"),
        recorded.manifest.clone(),
    )
    .await;
    plant_blob(&s3, &recorded.manifest).await;
    past_grace().await;

    // B pushes many images at once while A collects, twice.
    let images: Vec<Image> = (0..12u64)
        .map(|i| {
            Image::new(vec![
                bytes(4_000 + i as usize, 100 + i),
                bytes(9_000, 200 + i),
            ])
        })
        .collect();
    let pushes = images.iter().enumerate().map(|(i, img)| {
        let b = &b;
        async move { push_acked(b, &format!("team/app{i}"), "1", img).await }
    });
    let collect = async {
        let first = gc(&a).await;
        let second = gc(&a).await;
        (first, second)
    };
    let (acked, (first, second)) = tokio::join!(futures_util::future::join_all(pushes), collect);
    for report in [&first, &second] {
        assert!(report["bucket"]["held_by"].is_null(), "{report}");
        assert!(
            report["bucket"]["nodes_answered"].as_u64() >= Some(2),
            "{report}"
        );
    }
    let deleted = first["bucket"]["deleted_objects"].as_u64().unwrap()
        + second["bucket"]["deleted_objects"].as_u64().unwrap();
    assert!(
        deleted >= 1,
        "the sweep deleted something: {first} {second}"
    );
    assert!(
        !s3.exists(BUCKET, &blob_key(&garbage)).await,
        "garbage swept"
    );
    for (d, _) in recorded.blobs() {
        assert!(
            s3.exists(BUCKET, &blob_key(&d)).await,
            "named by a manifest record: {d}"
        );
    }
    assert!(
        s3.exists(BUCKET, &blob_key(&md)).await,
        "the recorded manifest itself"
    );

    // Once B's pushes are older than the grace, only B's live set protects them.
    past_grace().await;
    let third = gc(&a).await;
    assert!(third["bucket"]["held_by"].is_null(), "{third}");
    let mut checked = 0;
    for (i, (img, ok)) in images.iter().zip(acked).enumerate() {
        if !ok {
            continue;
        }
        checked += 1;
        pulls_whole(&b, &format!("team/app{i}"), "1", img).await;
        // And from A, which swept: through the records, by tag.
        pulls_whole(&a, &format!("team/app{i}"), "1", img).await;
        for (d, _) in img.blobs() {
            assert!(
                s3.exists(BUCKET, &blob_key(&d)).await,
                "B's {d} is in the bucket for A too"
            );
        }
        assert!(s3.exists(BUCKET, &blob_key(&digest(&img.manifest))).await);
    }
    assert_eq!(checked, images.len(), "every push was acknowledged");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_gcs_at_once_sweep_once_and_a_silent_nodes_set_keeps_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let a_root = dir.path().join("a");
    let a = Wharf::start_config(node_config(&s3, &a_root)).await;
    let b = Wharf::start_config(node_config(&s3, &dir.path().join("b"))).await;
    // A node that published once and went silent: its set still counts.
    let ghosts = plant_blob(&s3, &bytes(1_500, 3)).await;
    s3.put_object(
        BUCKET,
        "nodes/ghost/live",
        format!(
            "wharf-live-set 1 node=ghost mark=0\n{}\n",
            ghosts.trim_start_matches("sha256:")
        )
        .into_bytes(),
    )
    .await;
    let garbage = plant_blob(&s3, &bytes(1_600, 4)).await;
    past_grace().await;

    // A sweeps; it waits for the ghost's answer that never comes, so B's
    // gc meanwhile finds the lease held.
    let a_gc = tokio::spawn(gc_at(a.url("/_wharf/v1/gc"), serde_json::json!({})));
    let s3_ref = &s3;
    common::wait_for(20, "A to take the gc lease", || async move {
        s3_ref.exists(BUCKET, "gc-lease").await
    })
    .await;
    let on_b = gc(&b).await;
    assert_eq!(
        on_b["bucket"]["held_by"].as_str(),
        Some(node_id(&a_root).as_str()),
        "{on_b}"
    );
    assert_eq!(on_b["bucket"]["deleted_objects"].as_u64(), Some(0));
    let on_a = a_gc.await.unwrap();
    assert!(on_a["bucket"]["held_by"].is_null(), "{on_a}");
    assert_eq!(
        on_a["bucket"]["nodes_stale"],
        serde_json::json!(["ghost"]),
        "{on_a}"
    );
    assert_eq!(on_a["bucket"]["nodes_answered"].as_u64(), Some(2), "{on_a}");
    assert!(
        !s3.exists(BUCKET, &blob_key(&garbage)).await,
        "garbage swept once"
    );
    assert!(
        s3.exists(BUCKET, &blob_key(&ghosts)).await,
        "a silent node's content stays"
    );
    assert!(
        !s3.exists(BUCKET, "gc-lease").await,
        "the lease is released"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_lease_is_taken_over_and_a_live_one_is_respected() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let a = Wharf::start_config(node_config(&s3, &dir.path().join("a"))).await;
    let garbage = plant_blob(&s3, &bytes(1_700, 5)).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Another node holds the lease, unexpired: A does not sweep.
    let lease = |node: &str, expires: u64| {
        serde_json::to_vec(&serde_json::json!({"node": node, "expires_unix": expires})).unwrap()
    };
    s3.put_object(BUCKET, "gc-lease", lease("busy", now + 600))
        .await;
    past_grace().await;
    let report = gc(&a).await;
    assert_eq!(
        report["bucket"]["held_by"].as_str(),
        Some("busy"),
        "{report}"
    );
    assert!(
        s3.exists(BUCKET, &blob_key(&garbage)).await,
        "nothing swept"
    );
    // The holder was killed: its lease expired. A takes it over and sweeps.
    s3.put_object(BUCKET, "gc-lease", lease("killed", now.saturating_sub(10)))
        .await;
    let report = gc(&a).await;
    assert!(report["bucket"]["held_by"].is_null(), "{report}");
    assert!(
        !s3.exists(BUCKET, &blob_key(&garbage)).await,
        "swept by the new holder"
    );
    assert!(
        !s3.exists(BUCKET, "gc-lease").await,
        "released after the sweep"
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_mid_upload_leaves_nothing_half_visible_to_either_node() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let storage = s3.storage_lines(BUCKET);
    let gc_lines = format!("[gc]\ninterval = \"0\"\ngrace = \"{GRACE_SECS}s\"\n");
    let a_dir = dir.path().join("a-proc");
    std::fs::create_dir_all(&a_dir).unwrap();
    let a_root = dir.path().join("a");
    let b = Wharf::start_config(node_config(&s3, &dir.path().join("b"))).await;
    let a = common::WharfProcess::spawn_storage(&a_dir, &a_root, "", &storage, &gc_lines);
    // 40 MiB: five multipart parts, so the upload to the bucket takes a while.
    let blob = bytes(40 << 20, 41);
    let dg = digest(&blob);
    let r = http()
        .post(a.url("/v2/team/big/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let sep = if location.contains('?') { '&' } else { '?' };
    let put_url = a.url(&format!("{location}{sep}digest={dg}"));
    let body = blob.clone();
    let put = tokio::spawn(async move { http().put(put_url).body(body).send().await });
    let tmp = a_root.join("tmp");
    let full = blob.len() as u64;
    common::wait_for(60, "the whole blob to be staged", || {
        let tmp = tmp.clone();
        async move { largest_staged(&tmp) >= full }
    })
    .await;
    drop(a); // SIGKILL
    let _ = put.await;

    // B sees no half object, and its sweep runs with A's set stale.
    let head = http()
        .head(b.url(&format!("/v2/team/big/blobs/{dg}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.status(),
        404,
        "B does not name what A never acknowledged"
    );
    if let Ok(m) = s3.store(BUCKET).head(&Key::from(blob_key(&dg))).await {
        assert_eq!(m.size, full, "an object is whole or absent");
    }
    let a = common::WharfProcess::spawn_storage(&a_dir, &a_root, "", &storage, &gc_lines);
    let head = http()
        .head(a.url(&format!("/v2/team/big/blobs/{dg}")))
        .send()
        .await
        .unwrap();
    match head.status().as_u16() {
        404 => {}
        200 => {
            let got = http()
                .get(a.url(&format!("/v2/team/big/blobs/{dg}")))
                .send()
                .await
                .unwrap();
            assert_eq!(digest(&got.bytes().await.unwrap()), dg);
        }
        other => panic!("HEAD after the restart: {other}"),
    }
    // The client pushes again; a sweep on B keeps it (A's live set names it).
    let ep = common::replica::Endpoint(a.base.clone());
    ep.push_blob("team/big", &blob).await;
    past_grace().await;
    let report = gc(&b).await;
    assert!(report["bucket"]["held_by"].is_null(), "{report}");
    let got = http()
        .get(a.url(&format!("/v2/team/big/blobs/{dg}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(digest(&got.bytes().await.unwrap()), dg);
    b.stop().await;
}

/// A node killed mid-download leaves its fill lease (`fills/<hex>`): the
/// sweep removes a lease that lapsed longer than the grace ago (and one
/// that is not a lease at all, once older than the grace), never one a
/// live download holds; a dry run only counts them.
#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_removes_fill_leases_dead_nodes_left_and_keeps_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let w = Wharf::start_config(node_config(&s3, &dir.path().join("a"))).await;
    let hex = |seed: &[u8]| digest(seed).trim_start_matches("sha256:").to_owned();
    let (dead, junk, live) = (hex(b"dead"), hex(b"junk"), hex(b"live"));
    s3.put_object(
        BUCKET,
        &format!("fills/{dead}"),
        br#"{"node":"killed","expires_unix":1000}"#.to_vec(),
    )
    .await;
    s3.put_object(BUCKET, &format!("fills/{junk}"), b"not a lease".to_vec())
        .await;
    past_grace().await;
    // Written after the grace passed, as a live holder renews it: a minute
    // ahead.
    let ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    s3.put_object(
        BUCKET,
        &format!("fills/{live}"),
        format!(r#"{{"node":"busy","expires_unix":{ahead}}}"#).into_bytes(),
    )
    .await;

    let report = gc_dry(&w, true).await;
    assert_eq!(report["bucket"]["fill_leases_removed"], 2, "{report}");
    assert!(
        s3.exists(BUCKET, &format!("fills/{dead}")).await,
        "a dry run removes nothing"
    );

    let report = gc_dry(&w, false).await;
    assert_eq!(report["bucket"]["fill_leases_removed"], 2, "{report}");
    assert!(!s3.exists(BUCKET, &format!("fills/{dead}")).await);
    assert!(!s3.exists(BUCKET, &format!("fills/{junk}")).await);
    assert!(
        s3.exists(BUCKET, &format!("fills/{live}")).await,
        "a live fill keeps its lease"
    );
    w.stop().await;
}

/// A node waiting on a lapsed fill lease takes it over (an `If-Match`
/// rewrite) and downloads under it. A sweep that read the lease as lapsed
/// just before must not delete it then: the new holder's download would run
/// with no lease, and every other node that misses the blob would fetch it
/// from the upstream again. The node reaches the bucket through a proxy
/// that, at the sweep's first delete, lets a waiting node (wharf's own
/// lease code, on the bucket directly) try the takeover first.
#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_never_removes_a_fill_lease_a_waiting_node_took_over_meanwhile() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use wharf::store::shared::Bucket;
    use wharf::store::shared::fill_lease::{Acquired, FILL_LEASE_TTL};

    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let dg: wharf::oci::Digest = digest(b"taken over").parse().unwrap();
    let key = format!("fills/{}", dg.hex());
    s3.put_object(
        BUCKET,
        &key,
        br#"{"node":"killed","expires_unix":1000}"#.to_vec(),
    )
    .await;
    past_grace().await;

    let objects: Arc<dyn object_store::ObjectStore> = Arc::new(s3.store(BUCKET));
    let waiting = Arc::new(Bucket::new(objects, "", "waiting"));
    let (armed, took) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (a, t, hook_node, hook_dg) = (armed.clone(), took.clone(), waiting.clone(), dg.clone());
    let proxy = common::hostile::hostile(&s3.endpoint, move |req| {
        let (method, line) = common::hostile::line(req);
        let deleting = (method == http::Method::DELETE && line.contains("/fills/"))
            || (method == http::Method::POST && line.contains("?delete"));
        if deleting && a.swap(false, Ordering::SeqCst) {
            let (waiting, dg) = (hook_node.clone(), hook_dg.clone());
            let held = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    matches!(
                        waiting.acquire_fill_lease(&dg, FILL_LEASE_TTL).await,
                        Ok(Acquired::Held(_))
                    )
                })
            })
            .join()
            .unwrap();
            t.store(held, Ordering::SeqCst);
        }
        None
    })
    .await;
    let mut cfg = node_config(&s3, &dir.path().join("a"));
    if let Some(s) = cfg.storage.s3.as_mut() {
        s.endpoint = Some(proxy.url.clone());
    }
    let w = Wharf::start_config(cfg).await;

    armed.store(true, Ordering::SeqCst);
    let report = gc(&w).await;
    assert!(!armed.load(Ordering::SeqCst), "the sweep deleted: {report}");
    if took.load(Ordering::SeqCst) {
        let (holder, _) = waiting
            .fill_lease_holder(&dg)
            .await
            .unwrap()
            .expect("the lease a waiting node took over after the sweep read it stays");
        assert_eq!(holder.node, "waiting");
    } else {
        assert!(!s3.exists(BUCKET, &key).await, "{report}");
    }
    w.stop().await;
}
