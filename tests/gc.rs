//! Online garbage collection: a push in progress keeps its blobs (shared ones
//! included) while deleted images give their space back; a dry run changes
//! nothing; a manifest PUT racing a sweep never commits naming swept content;
//! a pinned image cannot be deleted (so gc can never be left keeping only
//! part of it) until it is unpinned.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::disk::{blob_path, content_on_disk};
use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::{Wharf, bytes, digest, get_oci, http, push_blob, push_image, put_manifest};
use wharf::oci::{Digest, Reference, RepoName};
use wharf::store::{Origin, Store, StoreError};

async fn head_blob(w: &Wharf, repo: &str, d: &str) -> u16 {
    http()
        .head(w.url(&format!("/v2/{repo}/blobs/{d}")))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_while_a_push_shares_blobs_then_gc_keeps_the_push_and_frees_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "[gc]\ninterval = \"0\"\ngrace = \"3s\"\n";
    let (w, lc) = Wharf::start_observed(common::config(&dir.path().join("data"), extra)).await;
    let shared = tar_with_file("shared", &bytes(300_000, 1));
    let a = Image::new(vec![shared.clone(), tar_with_file("a", &bytes(200_000, 2))]);
    let b = Image::new(vec![shared.clone(), tar_with_file("b", &bytes(100_000, 3))]);
    for (_, blob) in a.blobs() {
        push_blob(&w, "team/a", blob).await;
    }
    let r = put_manifest(&w, "team/a", "1", OCI_MANIFEST, &a.manifest).await;
    assert_eq!(r.status(), 201);
    let a_manifest = digest(&a.manifest);
    // Pushed with A, named by nothing: once a dry run lists it, A's content
    // is older than the grace too.
    let probe = push_blob(&w, "team/a", &bytes(5_000, 4)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dry = lc.gc.worker.pass(true).await.unwrap();
        if dry.removed.iter().any(|r| r.digest == probe) {
            assert_eq!(dry.swept_blobs, 1, "A is still tagged: {dry:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the probe never aged past the grace"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // B's push starts: its own blobs are uploaded, the shared one is checked
    // with a HEAD (as docker push does) and not uploaded again.
    for (d, blob) in b.blobs() {
        if blob == shared.as_slice() {
            assert_eq!(
                head_blob(&w, "team/b", &d).await,
                404,
                "not linked in team/b yet"
            );
            assert_eq!(head_blob(&w, "team/a", &d).await, 200);
            // A cross-repository mount, as clients do for a blob they know.
            let r = http()
                .post(w.url(&format!("/v2/team/b/blobs/uploads/?mount={d}&from=team/a")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "mounted");
        } else {
            push_blob(&w, "team/b", blob).await;
        }
    }
    // A goes: its tag, then its manifest.
    for reference in ["1", a_manifest.as_str()] {
        let r = http()
            .delete(w.url(&format!("/v2/team/a/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{reference}");
    }
    let report = lc.gc.worker.pass(false).await.unwrap();
    let mut removed: Vec<&str> = report.removed.iter().map(|r| r.digest.as_str()).collect();
    removed.sort();
    let mut expected = vec![
        probe.as_str(),
        a_manifest.as_str(),
        // A's config and own layer.
    ];
    let a_own: Vec<String> = a
        .blobs()
        .into_iter()
        .filter(|(_, b)| *b != shared.as_slice())
        .map(|(d, _)| d)
        .collect();
    expected.extend(a_own.iter().map(String::as_str));
    expected.sort();
    assert_eq!(removed, expected, "{report:?}");
    assert!(
        report.kept_young >= 3,
        "B's blobs and the shared one: {report:?}"
    );
    assert!(!report.dry_run && report.swept_bytes > 200_000);

    // The push completes and pulls.
    let r = put_manifest(&w, "team/b", "1", OCI_MANIFEST, &b.manifest).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let r = get_oci(&w, "/v2/team/b/manifests/1").await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b.manifest.as_slice());
    for (d, blob) in b.blobs() {
        let r = http()
            .get(w.url(&format!("/v2/team/b/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{d}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), blob);
    }
    // The rest is gone, files too, and the index matches the disk.
    for d in &expected {
        assert!(!blob_path(&w.root, d).exists(), "{d} still on disk");
        assert_eq!(head_blob(&w, "team/a", d).await, 404);
    }
    let usage = lc.store().usage().await.unwrap();
    assert_eq!((usage.blobs, usage.bytes), content_on_disk(&w.root));
    let m = common::metrics_text(&w).await;
    assert!(m.contains("wharf_gc_swept_blobs_total 4"), "{m}");
    drop(lc);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_reports_what_would_go_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "[gc]\ninterval = \"0\"\ngrace = \"0s\"\n";
    let (w, lc) = Wharf::start_observed(common::config(&dir.path().join("data"), extra)).await;
    let (_, kept) = push_image(&w, "team/app", "1", &[bytes(10_000, 1)]).await;
    let loose = push_blob(&w, "team/app", &bytes(12_345, 2)).await;
    let before = content_on_disk(&w.root);
    let dry = lc.gc.worker.pass(true).await.unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.swept_blobs, 1);
    assert_eq!(dry.swept_bytes, 12_345);
    assert_eq!(dry.removed[0].digest, loose);
    assert_eq!(dry.marked_blobs, 3, "manifest, config, layer");
    assert_eq!(content_on_disk(&w.root), before, "nothing changed");
    assert_eq!(head_blob(&w, "team/app", &loose).await, 200);

    let real = lc.gc.worker.pass(false).await.unwrap();
    assert_eq!((real.swept_blobs, real.swept_bytes), (1, 12_345));
    assert_eq!(head_blob(&w, "team/app", &loose).await, 404);
    assert!(!blob_path(&w.root, &loose).exists());
    let r = get_oci(&w, "/v2/team/app/manifests/1").await;
    assert_eq!(r.headers()["docker-content-digest"], kept.as_str());
    // Untagged manifests stay until deleted.
    let r = http()
        .delete(w.url("/v2/team/app/manifests/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(lc.gc.worker.pass(false).await.unwrap().swept_blobs, 0);
    drop(lc);
    w.stop().await;
}

/// Stores `data` as a pushed blob of `repo`.
async fn store_blob(store: &Store, repo: &RepoName, data: Vec<u8>) -> Digest {
    let d = Digest::of_bytes(&data);
    let mut w = store.new_writer().await.unwrap();
    w.write(Bytes::from(data)).await.unwrap();
    store.store_blob(w, repo, &d, Origin::Pushed).await.unwrap();
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_put_racing_a_sweep_never_commits_naming_swept_content() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).await.unwrap());
    let repo: RepoName = "team/race".parse().unwrap();
    let (mut committed, mut refused) = (0, 0);
    for i in 0..40u64 {
        let layer = bytes(2_000, 100 + i);
        let img = Image::new(vec![layer]);
        for (_, b) in img.blobs() {
            store_blob(&store, &repo, b.to_vec()).await;
        }
        let tag: Reference = format!("t{i}").parse().unwrap();
        // No grace: only the sweep's own checks stand between the two. Who
        // starts first alternates, so both orders and the overlaps between
        // come up.
        let gc_store = store.clone();
        let gc = async move { gc_store.collect_garbage(Duration::ZERO, false).await };
        let put_store = store.clone();
        let (r, m) = (repo.clone(), Bytes::from(img.manifest.clone()));
        let put = async move { put_store.put_manifest(&r, &tag, m, OCI_MANIFEST).await };
        let (gc, put) = if i % 2 == 0 {
            let gc = tokio::spawn(gc);
            (gc, tokio::spawn(put))
        } else {
            let put = tokio::spawn(put);
            (tokio::spawn(gc), put)
        };
        gc.await.unwrap().unwrap();
        let put = put.await.unwrap();
        match put {
            Ok(_) => {
                committed += 1;
                // Whatever the sweep did, everything the manifest names is here.
                for (d, b) in img.blobs() {
                    let d: Digest = d.parse().unwrap();
                    let open = store.open_blob(&repo, &d).await;
                    let open = open.unwrap_or_else(|e| {
                        panic!("round {i}: {d} swept under a committed manifest: {e}")
                    });
                    assert_eq!(open.1, b.len() as u64);
                }
            }
            Err(StoreError::ManifestBlobUnknown(_)) => refused += 1,
            Err(e) => panic!("round {i}: {e}"),
        }
    }
    // Both outcomes are fine; the point is that none is a broken manifest.
    eprintln!("committed {committed}, refused {refused}");
    // A final pass leaves every committed image whole.
    store.collect_garbage(Duration::ZERO, false).await.unwrap();
    for i in 0..40u64 {
        let tag: Reference = format!("t{i}").parse().unwrap();
        if let Ok(info) = store.manifest_info(&repo, &tag).await {
            let bytes = store.manifest_bytes(&info).await.unwrap();
            let view = wharf::oci::ManifestView::parse(&bytes, OCI_MANIFEST).unwrap();
            for b in &view.blobs {
                store.open_blob(&repo, &b.digest).await.unwrap();
            }
        }
    }
}

/// Pushes `img` to `repo:tag` on a child process (blocking).
fn push_blocking(w: &common::WharfProcess, repo: &str, tag: &str, img: &Image) {
    let c = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for (d, b) in img.blobs() {
        let r = c
            .post(w.url(&format!("/v2/{repo}/blobs/uploads/")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let r = c
            .put(w.url(&format!("{loc}?digest={d}")))
            .body(b.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = c
        .put(w.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("content-type", OCI_MANIFEST)
        .body(img.manifest.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// GET `path` on a child process: (status, body).
fn get_blocking(w: &common::WharfProcess, path: &str) -> (u16, Vec<u8>) {
    let r = reqwest::blocking::Client::new()
        .get(w.url(path))
        .header("accept", OCI_MANIFEST)
        .send()
        .unwrap();
    (r.status().as_u16(), r.bytes().unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_gc_leaves_a_store_that_starts_clean() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    // Many small layers: their files take a while to remove.
    let gone = Image::new((0..300).map(|i| bytes(1_000, 5_000 + i)).collect());
    let kept = Image::new(vec![tar_with_file("k", &bytes(40_000, 9))]);
    let (d, r) = (dir.path().to_path_buf(), root.clone());
    let (gone, kept, lost, left) = tokio::task::spawn_blocking(move || {
        let mut w = common::WharfProcess::spawn(&d, &r, "");
        push_blocking(&w, "team/gone", "1", &gone);
        push_blocking(&w, "team/kept", "1", &kept);
        let c = reqwest::blocking::Client::new();
        for reference in ["1".to_owned(), digest(&gone.manifest)] {
            let r = c
                .delete(w.url(&format!("/v2/team/gone/manifests/{reference}")))
                .send()
                .unwrap();
            assert_eq!(r.status(), 202);
        }
        common::terminate(&mut w.child);
        // Collection a second after start, with no grace: it dies mid-way.
        let mut w =
            common::WharfProcess::spawn(&d, &r, "[gc]\ninterval = \"1s\"\ngrace = \"0s\"\n");
        w.wait_log("gc: rows removed, removing files");
        w.child.kill().unwrap();
        w.child.wait().unwrap();
        let left = common::disk::files_under(&r.join("blobs")).len();
        let mut w = common::WharfProcess::spawn(&d, &r, "");
        let (status, body) = get_blocking(&w, "/v2/team/kept/manifests/1");
        assert_eq!(status, 200);
        assert_eq!(body, kept.manifest);
        for (bd, b) in kept.blobs() {
            let (status, body) = get_blocking(&w, &format!("/v2/team/kept/blobs/{bd}"));
            assert_eq!(status, 200);
            assert_eq!(body, b);
        }
        let (status, _) = get_blocking(&w, &format!("/v2/team/gone/blobs/{}", gone.blobs()[5].0));
        assert_eq!(status, 404);
        common::terminate(&mut w.child);
        let lost = common::disk::files_under(&r.join("lost+found")).len();
        (gone, kept, lost, left)
    })
    .await
    .unwrap();
    eprintln!("{left} content files were on disk when the process died");
    assert_eq!(lost, 0, "no orphan went to lost+found");
    for (d, _) in gone.blobs() {
        assert!(
            !blob_path(&root, &d).exists(),
            "{d} of the deleted image is still on disk"
        );
    }
    assert!(blob_path(&root, &digest(&kept.manifest)).exists());
    let store = Store::open(&root).await.unwrap();
    let usage = store.usage().await.unwrap();
    assert_eq!((usage.blobs, usage.bytes), content_on_disk(&root));
    store.close();
}

/// DELETE of `path`: (status, OCI error code or "").
async fn delete(w: &Wharf, path: &str) -> (u16, String, String) {
    let r = http().delete(w.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    let code = body["errors"][0]["code"].as_str().unwrap_or("").to_owned();
    let message = body["errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    (status, code, message)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_image_cannot_be_deleted_until_unpinned_then_gc_frees_all_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "[gc]\ninterval = \"0\"\ngrace = \"0s\"\n";
    let (w, lc) = Wharf::start_observed(common::config(&dir.path().join("data"), extra)).await;
    let store = lc.store().clone();
    // A multi-platform image pinned by tag, a single one pinned by digest.
    let amd = Image::for_platform(vec![tar_with_file("a", &bytes(30_000, 1))], "amd64");
    let arm = Image::for_platform(vec![tar_with_file("b", &bytes(30_000, 2))], "arm64");
    for img in [&amd, &arm] {
        for (_, b) in img.blobs() {
            push_blob(&w, "team/multi", b).await;
        }
        let d = digest(&img.manifest);
        let r = put_manifest(&w, "team/multi", &d, OCI_MANIFEST, &img.manifest).await;
        assert_eq!(r.status(), 201);
    }
    let idx = common::image::index(&[(&amd, "amd64"), (&arm, "arm64")]);
    let r = put_manifest(&w, "team/multi", "1", common::image::OCI_INDEX, &idx).await;
    assert_eq!(r.status(), 201);
    let idx_digest = digest(&idx);
    let (_, single) = push_image(&w, "team/app", "1", &[bytes(20_000, 3)]).await;
    let multi: RepoName = "team/multi".parse().unwrap();
    let app: RepoName = "team/app".parse().unwrap();
    let tag1: Reference = "1".parse().unwrap();
    let by_digest: Reference = single.parse().unwrap();
    store.pin(&multi, &tag1).await.unwrap();
    store.pin(&app, &by_digest).await.unwrap();

    // Every way of deleting part of a pinned image is refused, DENIED, and
    // the message says what to do.
    let amd_manifest = digest(&amd.manifest);
    let amd_layer = digest(&amd.layers[0]);
    let refused = [
        ("/v2/team/multi/manifests/1".to_owned(), "team/multi:1"),
        (
            format!("/v2/team/multi/manifests/{idx_digest}"),
            "team/multi:1",
        ),
        (
            format!("/v2/team/multi/manifests/{amd_manifest}"),
            "team/multi:1",
        ),
        (format!("/v2/team/multi/blobs/{amd_layer}"), "team/multi:1"),
        (format!("/v2/team/app/manifests/{single}"), "team/app@"),
    ];
    for (path, pin) in &refused {
        let (status, code, message) = delete(&w, path).await;
        assert_eq!(
            (status, code.as_str()),
            (403, "DENIED"),
            "{path}: {message}"
        );
        assert!(
            message.contains("wharf unpin") && message.contains(pin),
            "{path}: {message}"
        );
    }
    assert!(matches!(
        store.delete_manifest(&app, &by_digest).await,
        Err(StoreError::Pinned { .. })
    ));
    // A tag that is not pinned may go: the pinned digest stays.
    let (status, _, _) = delete(&w, "/v2/team/app/manifests/1").await;
    assert_eq!(status, 202);
    let report = lc.gc.worker.pass(false).await.unwrap();
    assert!(report.removed.is_empty(), "{report:?}");
    let r = get_oci(&w, &format!("/v2/team/multi/manifests/{amd_manifest}")).await;
    assert_eq!(r.status(), 200);
    for img in [&amd, &arm] {
        for (d, b) in img.blobs() {
            let r = http()
                .get(w.url(&format!("/v2/team/multi/blobs/{d}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.bytes().await.unwrap().as_ref(), b, "{d}");
        }
    }

    // Unpinned, the deletes work and gc gives back all of it: manifests,
    // configs and layers.
    assert!(store.unpin(&multi, &tag1).await.unwrap());
    assert!(store.unpin(&app, &by_digest).await.unwrap());
    for path in [
        "/v2/team/multi/manifests/1".to_owned(),
        format!("/v2/team/multi/manifests/{idx_digest}"),
        format!("/v2/team/multi/manifests/{amd_manifest}"),
        format!("/v2/team/multi/manifests/{}", digest(&arm.manifest)),
        format!("/v2/team/app/manifests/{single}"),
    ] {
        let (status, _, message) = delete(&w, &path).await;
        assert_eq!(status, 202, "{path}: {message}");
    }
    let report = lc.gc.worker.pass(false).await.unwrap();
    let removed: std::collections::HashSet<&str> =
        report.removed.iter().map(|r| r.digest.as_str()).collect();
    for d in [
        idx_digest.as_str(),
        amd_manifest.as_str(),
        amd_layer.as_str(),
        single.as_str(),
    ] {
        assert!(removed.contains(d), "{d} not collected: {report:?}");
    }
    // The index; each platform manifest, config and layer; the single image.
    assert_eq!(report.removed.len(), 1 + 2 * 3 + 3, "{report:?}");
    let usage = store.usage().await.unwrap();
    assert_eq!((usage.blobs, usage.bytes), (0, 0));
    assert_eq!(content_on_disk(&w.root), (0, 0));
    drop(lc);
    w.stop().await;
}
