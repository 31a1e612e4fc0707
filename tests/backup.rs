//! `wharf backup DEST`: an online, consistent copy while pushes go on. A
//! fresh wharf started on DEST serves every image whose push was
//! acknowledged before the backup began, with the same digest, and verify
//! finds nothing corrupt in it; a non-empty DEST is refused; a killed backup
//! leaves no DEST that looks complete.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::{Wharf, bytes, http, push_image};
use serde_json::{Value, json};

/// One acknowledged push: repo, tag, manifest digest, when it was acknowledged.
type Acked = Arc<Mutex<Vec<(String, String, String, Instant)>>>;

async fn backup(base: &str, dest: &Path, copy: bool) -> (u16, Value) {
    let r = http()
        .post(format!("{base}/_wharf/v1/backup"))
        .json(&json!({ "dest": dest, "copy": copy }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Pulls every acknowledged image from `w` by tag: same digest, and every
/// blob it names answers 200.
async fn pulls_the_same(w: &Wharf, images: &[(String, String, String, Instant)]) {
    for (repo, tag, want, _) in images {
        let r = http()
            .get(w.url(&format!("/v2/{repo}/manifests/{tag}")))
            .header("accept", common::image::OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{repo}:{tag} in the restored wharf");
        assert_eq!(r.headers()["docker-content-digest"], want.as_str());
        let m: Value = r.json().await.unwrap();
        let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
        for l in m["layers"].as_array().unwrap() {
            blobs.push(l["digest"].as_str().unwrap().to_owned());
        }
        for b in blobs {
            let r = http()
                .get(w.url(&format!("/v2/{repo}/blobs/{b}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{repo} blob {b}");
            assert_eq!(common::digest(&r.bytes().await.unwrap()), b);
        }
    }
}

async fn verify_clean(w: &Wharf) {
    let r = http()
        .post(w.url("/_wharf/v1/verify"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["corrupt"], json!([]), "{v}");
    assert!(v["checked_blobs"].as_u64().unwrap() > 0, "{v}");
}

/// Pushes images with unique tags in a loop until `stop`, recording each
/// acknowledged one.
fn pusher(
    w: Arc<Wharf>,
    acked: Acked,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            i += 1;
            let repo = format!("team/app{}", i % 3);
            let tag = format!("v{i}");
            // A shared layer (same bytes in every image) and one of its own.
            let layers = vec![bytes(300_000, 7), bytes(50_000 + i as usize, 1000 + i)];
            let (_, d) = push_image(&w, &repo, &tag, &layers).await;
            acked.lock().unwrap().push((repo, tag, d, Instant::now()));
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_during_pushes_restores_every_acknowledged_image() {
    let dir = tempfile::tempdir().unwrap();
    let w = Arc::new(Wharf::start_with(dir.path(), "[gc]\ninterval = \"0\"\n").await);
    let acked: Acked = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let task = pusher(w.clone(), acked.clone(), stop.clone());
    common::wait_for(60, "some pushes", || {
        let n = acked.lock().unwrap().len();
        async move { n >= 5 }
    })
    .await;

    let dest = dir.path().join("backup");
    let began = Instant::now();
    let (status, report) = backup(&w.base, &dest, false).await;
    assert_eq!(status, 200, "{report}");
    let during = acked.lock().unwrap().len();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    task.await.unwrap();
    assert!(
        acked.lock().unwrap().len() > during || during > 5,
        "pushes went on around the backup"
    );
    assert_eq!(report["dest"], dest.display().to_string());
    assert!(report["blobs"].as_u64().unwrap() >= 7, "{report}");
    assert_eq!(
        report["linked"], report["blobs"],
        "same filesystem: hard links: {report}"
    );
    assert_eq!(report["copied"], 0);
    assert!(!Path::new(&format!("{}.partial", dest.display())).exists());
    assert!(dest.join("index.redb").is_file());
    match Arc::try_unwrap(w) {
        Ok(w) => w.stop().await,
        Err(_) => panic!("the pusher is done"),
    }

    let before: Vec<_> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, _, at)| *at < began)
        .cloned()
        .collect();
    assert!(before.len() >= 5);
    let restored = Wharf::start_config(common::config(&dest, "")).await;
    pulls_the_same(&restored, &before).await;
    verify_clean(&restored).await;
    assert!(
        !dest.join("lost+found").exists(),
        "start-up reconcile accepted the backup as is"
    );
    restored.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_mode_copies_and_a_non_empty_dest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let (_, d) = push_image(&w, "team/one", "1", &[bytes(200_000, 1)]).await;
    let images = vec![("team/one".to_owned(), "1".to_owned(), d, Instant::now())];

    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("precious"), b"keep me").unwrap();
    let (status, v) = backup(&w.base, &full, false).await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not empty"),
        "{v}"
    );
    assert_eq!(std::fs::read(full.join("precious")).unwrap(), b"keep me");
    assert_eq!(
        std::fs::read_dir(&full).unwrap().count(),
        1,
        "nothing written"
    );
    assert!(!dir.path().join("full.partial").exists());

    let (status, v) = backup(&w.base, &w.root.join("inside"), false).await;
    assert_eq!(status, 409, "a backup inside the data directory: {v}");
    let (status, _) = backup(&w.base, Path::new("relative/dir"), false).await;
    assert_eq!(status, 400);

    // The fallback when links are impossible (another filesystem) is the
    // copy path, forced here with `copy`: separate files, same bytes.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (status, report) = backup(&w.base, &empty, true).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["linked"], 0);
    assert_eq!(report["copied"], report["blobs"]);
    assert_eq!(report["blobs"], 3, "config, layer, manifest: {report}");
    let hex = images[0].2.trim_start_matches("sha256:");
    let src = w.root.join("blobs/sha256").join(&hex[..2]).join(hex);
    let copy = empty.join("blobs/sha256").join(&hex[..2]).join(hex);
    assert_ne!(
        src.metadata().unwrap().ino(),
        copy.metadata().unwrap().ino()
    );
    assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&copy).unwrap());

    let (status, v) = backup(&w.base, &empty, false).await;
    assert_eq!(status, 409, "a finished backup is never overwritten: {v}");
    w.stop().await;

    let restored = Wharf::start_config(common::config(&empty, "")).await;
    pulls_the_same(&restored, &images).await;
    verify_clean(&restored).await;
    restored.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_killed_midway_leaves_no_dest_and_the_next_one_completes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let d = common::WharfProcess::spawn(dir.path(), &root, "");
    // Enough bytes that copying and hashing them takes a while.
    let ep = common::replica::Endpoint(d.base.clone());
    for i in 0..32u64 {
        ep.push_blob("team/big", &bytes(4 << 20, 100 + i)).await;
    }
    let img = common::image::Image::new(vec![common::image::tar_with_file("f", b"kept")]);
    let tag_digest = ep.push("team/app", "v1", &img).await;
    let dest = dir.path().join("backup");
    let partial = dir.path().join("backup.partial");
    let base = d.base.clone();
    let dest2 = dest.clone();
    let running = tokio::spawn(async move { backup(&base, &dest2, true).await });
    common::wait_for(60, "the backup to start writing", || {
        let p = partial.clone();
        async move { p.exists() }
    })
    .await;
    // kill -9 while it copies.
    drop(d);
    let _ = running.await;
    assert!(
        !dest.exists(),
        "a backup cut short must not leave a DEST that looks complete"
    );

    // The daemon comes back; a backup to the same DEST clears the leftover
    // and completes, and restores.
    let d = common::WharfProcess::spawn(dir.path(), &root, "");
    let (status, report) = backup(&d.base, &dest, false).await;
    assert_eq!(status, 200, "{report}");
    assert!(dest.join("index.redb").exists());
    assert!(!dir.path().join("backup.partial").exists());
    drop(d);
    let restored = Wharf::start_config(common::config(&dest, "")).await;
    let r = http()
        .get(restored.url("/v2/team/app/manifests/v1"))
        .header("accept", common::image::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"], tag_digest.as_str());
    restored.stop().await;
}
