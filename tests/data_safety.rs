//! Data safety of the store across real start-ups and requests: a missing
//! `blobs/` stops start-up instead of emptying the index, unaccounted files go
//! to `lost+found/` instead of being deleted, hosted content is labelled pushed
//! whatever route brought it, rejected manifests leave no files, and readiness
//! probes do not trip over each other.

mod common;

use common::disk::files_under;

use std::path::{Path, PathBuf};

use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::upstreams::{hub, mirror_config, publish};
use common::{Wharf, bytes, digest, get_json, get_oci, http, push_blob, push_image};

fn blob_path(root: &Path, d: &str) -> PathBuf {
    let hex = &d["sha256:".len()..];
    root.join("blobs/sha256").join(&hex[..2]).join(hex)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_blobs_directory_stops_start_up_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let layers = vec![bytes(200_000, 1), bytes(3_000, 2)];
    let (manifest, md) = push_image(&w, "team/app", "1", &layers).await;
    let root = w.root.clone();
    w.stop().await;

    // A late mount: blobs/ is not there at all.
    std::fs::rename(root.join("blobs"), root.join("blobs.elsewhere")).unwrap();
    let err = wharf::store::Store::open(&root)
        .await
        .err()
        .expect("start-up refuses");
    let msg = err.to_string();
    let blobs = root.join("blobs/sha256");
    assert!(msg.contains(&blobs.display().to_string()), "{msg}");
    assert!(msg.contains("names 4 blobs"), "{msg}");
    assert!(
        msg.contains("mounted") && msg.contains("index.redb"),
        "{msg}"
    );
    assert!(!root.join("blobs").exists(), "blobs/ must not be created");

    // An empty mount point: blobs/sha256 is there but holds nothing.
    std::fs::create_dir_all(&blobs).unwrap();
    let err = wharf::store::Store::open(&root)
        .await
        .err()
        .expect("start-up refuses");
    assert!(err.to_string().contains("4 of the 4 blobs"), "{err}");
    assert!(files_under(&root.join("lost+found")).is_empty());

    // The volume is back: everything serves as before.
    std::fs::remove_dir_all(root.join("blobs")).unwrap();
    std::fs::rename(root.join("blobs.elsewhere"), root.join("blobs")).unwrap();
    let w = Wharf::start_config(common::config(&root, "")).await;
    let r = get_oci(&w, "/v2/team/app/manifests/1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], md.as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
    let img = Image::new(layers);
    for (d, b) in img.blobs() {
        let r = http()
            .get(w.url(&format!("/v2/team/app/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{d}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), b);
    }

    // A few lost files among many only drop their own rows (logged).
    let mut pushed = Vec::new();
    for i in 0..20 {
        pushed.push(push_blob(&w, "team/many", &bytes(1_000, 50 + i)).await);
    }
    w.stop().await;
    std::fs::remove_file(blob_path(&root, &pushed[0])).unwrap();
    let w = Wharf::start_config(common::config(&root, "")).await;
    let head = |d: String| {
        let url = w.url(&format!("/v2/team/many/blobs/{d}"));
        async move { http().head(url).send().await.unwrap().status() }
    };
    assert_eq!(head(pushed[0].clone()).await, 404);
    for d in &pushed[1..] {
        assert_eq!(head(d.clone()).await, 200);
    }
    let r = get_oci(&w, "/v2/team/app/manifests/1").await;
    assert_eq!(r.status(), 200);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unaccounted_files_move_to_lost_and_found_with_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let kept = push_blob(&w, "team/app", b"indexed content").await;
    let root = w.root.clone();
    w.stop().await;

    // A file renamed into blobs/ whose index write never happened (a crash),
    // and two strays that are no content file at all.
    let orphan = bytes(50_000, 3);
    let od = digest(&orphan);
    let op = blob_path(&root, &od);
    std::fs::create_dir_all(op.parent().unwrap()).unwrap();
    std::fs::write(&op, &orphan).unwrap();
    let stray = op.parent().unwrap().join("notes.txt");
    std::fs::write(&stray, b"someone's notes").unwrap();
    let top_stray = root.join("blobs/sha256/README");
    std::fs::write(&top_stray, b"readme").unwrap();

    let w = Wharf::start_config(common::config(&root, "")).await;
    assert!(!op.exists() && !stray.exists() && !top_stray.exists());
    let found: Vec<Vec<u8>> = files_under(&root.join("lost+found"))
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(found.len(), 3);
    for b in [orphan.as_slice(), b"someone's notes", b"readme"] {
        assert!(found.iter().any(|f| f == b), "moved with its bytes");
    }
    let r = http()
        .get(w.url(&format!("/v2/team/app/blobs/{kept}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"indexed content");
    w.stop().await;
}

/// An operator moves a fan-out directory to another disk and leaves a symlink:
/// its content is still there and still served, nothing goes to lost+found,
/// and a symlink whose disk is not mounted stops start-up instead of dropping
/// the rows of the content behind it.
#[tokio::test(flavor = "multi_thread")]
async fn a_symlinked_fan_out_directory_is_content_not_a_stray() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let layers = vec![bytes(20_000, 7), bytes(3_000, 8)];
    let (_, md) = push_image(&w, "team/app", "1", &layers).await;
    let mut others = Vec::new();
    for i in 0..30 {
        others.push(push_blob(&w, "team/many", &bytes(500, 100 + i)).await);
    }
    let root = w.root.clone();
    w.stop().await;

    let img = Image::new(layers);
    let moved = img.blobs()[0].0.clone();
    let fan = blob_path(&root, &moved).parent().unwrap().to_path_buf();
    let elsewhere = dir.path().join("other-disk").join("fan");
    std::fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
    std::fs::rename(&fan, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &fan).unwrap();

    let w = Wharf::start_config(common::config(&root, "")).await;
    assert!(files_under(&root.join("lost+found")).is_empty());
    let r = get_oci(&w, "/v2/team/app/manifests/1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], md.as_str());
    for (d, b) in img.blobs() {
        let r = http()
            .get(w.url(&format!("/v2/team/app/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{d}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), b);
    }
    w.stop().await;

    // The other disk is not mounted: start-up refuses and changes nothing.
    let unmounted = dir.path().join("other-disk.unmounted");
    std::fs::rename(elsewhere.parent().unwrap(), &unmounted).unwrap();
    let err = wharf::store::Store::open(&root)
        .await
        .err()
        .expect("start-up refuses");
    assert!(
        err.to_string().contains(&fan.display().to_string()),
        "{err}"
    );
    assert!(std::fs::symlink_metadata(&fan).unwrap().is_symlink());
    assert!(files_under(&root.join("lost+found")).is_empty());
    std::fs::rename(&unmounted, elsewhere.parent().unwrap()).unwrap();
    let w = Wharf::start_config(common::config(&root, "")).await;
    let r = http()
        .get(w.url(&format!("/v2/team/app/blobs/{moved}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for d in &others {
        let r = http()
            .head(w.url(&format!("/v2/team/many/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{d}");
    }
    w.stop().await;
}

/// `/_wharf/v1/usage` once `ready` holds (each poll is a request; fails after 10 s).
async fn du_once(w: &Wharf, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let du = get_json(w, "/_wharf/v1/usage").await;
        if ready(&du) {
            return du;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "du never settled: {du}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hosted_content_is_pushed_whatever_route_brought_it() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let img = Image::new(vec![
        tar_with_file("a", &bytes(300_000, 4)),
        tar_with_file("b", b"small layer"),
    ]);
    publish(&hub, "library/base", "1", &img).await;
    let extra = mirror_config(&hub.base, "", "[hosted]\nprefixes = [\"team/\"]\n");
    let m = Wharf::start_config(common::config(&dir.path().join("mirror"), &extra)).await;

    // A mirror pull: everything cached.
    let r = get_oci(&m, "/v2/library/base/manifests/1").await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    for (d, b) in img.blobs() {
        let r = get_oci(&m, &format!("/v2/library/base/blobs/{d}")).await;
        assert_eq!(r.bytes().await.unwrap().as_ref(), b);
    }
    let blob_bytes: u64 = img.blobs().iter().map(|(_, b)| b.len() as u64).sum();
    let total = blob_bytes + img.manifest.len() as u64;
    // A blob is indexed just after its last bytes went out: wait for the rows.
    let du = du_once(&m, |du| du["cached_bytes"] == total).await;
    assert_eq!(du["pushed_bytes"], 0, "{du}");

    // What skopeo does when pushing a pulled image: mount every blob from the
    // mirrored repository, then push the identical manifest.
    for (d, _) in img.blobs() {
        let r = http()
            .post(m.url(&format!(
                "/v2/team/app/blobs/uploads/?mount={d}&from=library/base"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "mount {d}");
    }
    let r = common::put_manifest(&m, "team/app", "1", OCI_MANIFEST, &img.manifest).await;
    assert_eq!(r.status(), 201);
    let du = get_json(&m, "/_wharf/v1/usage").await;
    assert_eq!(du["pushed_bytes"], total, "{du}");
    assert_eq!(du["cached_bytes"], 0, "{du}");
    m.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_manifest_pushes_leave_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    push_blob(&w, "team/app", b"something stored").await;
    let count = || files_under(&w.root.join("blobs")).len();
    let before = count();
    for i in 0..20u64 {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(format!("config {i}").as_bytes()),
                "size": 8
            },
            "layers": [],
            "annotations": { "filler": "x".repeat(1 << 20), "n": i.to_string() }
        });
        let body = serde_json::to_vec(&m).unwrap();
        let r = common::put_manifest(&w, "team/app", "rejected", OCI_MANIFEST, &body).await;
        assert_eq!(r.status(), 400);
        assert_eq!(common::error_code(r).await, "MANIFEST_BLOB_UNKNOWN");
    }
    assert_eq!(count(), before, "no file left by a rejected manifest");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_readiness_probes_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    // Several rounds: the probes of one round race on the same instant.
    for round in 0..10 {
        let mut probes = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let url = w.url("/readyz");
            probes.spawn(async move { http().get(url).send().await.unwrap().status() });
        }
        while let Some(s) = probes.join_next().await {
            assert_eq!(s.unwrap(), 200, "round {round}");
        }
    }
    w.stop().await;
}
