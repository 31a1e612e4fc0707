//! An index written before `manifest_refs` existed (by any wharf before the
//! storage lifecycle) opens, is migrated once, and gc then marks from it.

mod common;

use common::image::{Image, OCI_INDEX, OCI_MANIFEST, index, tar_with_file};
use common::{Wharf, bytes, digest, get_oci, http, push_blob, push_image, put_manifest};
use redb::{ReadableDatabase, ReadableTableMetadata};
use wharf::store::tables;

/// Drops the tables this version added, so the index is what older code left.
fn make_old(root: &std::path::Path) {
    let db = redb::Database::create(root.join("index.redb")).unwrap();
    let txn = db.begin_write().unwrap();
    assert!(txn.delete_table(tables::MANIFEST_REFS).unwrap());
    assert!(txn.delete_table(tables::SCHEMA).unwrap());
    txn.delete_table(tables::ACCESS).unwrap();
    txn.delete_table(tables::PINS).unwrap();
    txn.delete_table(tables::SWEEPING).unwrap();
    txn.commit().unwrap();
}

/// (manifest_refs rows, schema version).
fn refs_and_version(root: &std::path::Path) -> (u64, Option<u64>) {
    let db = redb::Database::create(root.join("index.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let refs = txn
        .open_table(tables::MANIFEST_REFS)
        .unwrap()
        .len()
        .unwrap();
    let version = txn
        .open_table(tables::SCHEMA)
        .unwrap()
        .get("version")
        .unwrap()
        .map(|v| v.value());
    (refs, version)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_index_opens_migrates_once_and_gc_marks_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let w = Wharf::start_config(common::config(&root, "")).await;
    let (_, single) = push_image(&w, "team/app", "1", &[bytes(40_000, 1), bytes(900, 2)]).await;
    let amd = Image::for_platform(vec![tar_with_file("a", &bytes(20_000, 3))], "amd64");
    let arm = Image::for_platform(vec![tar_with_file("b", &bytes(20_000, 4))], "arm64");
    for img in [&amd, &arm] {
        for (_, b) in img.blobs() {
            push_blob(&w, "team/multi", b).await;
        }
        let r = put_manifest(
            &w,
            "team/multi",
            &digest(&img.manifest),
            OCI_MANIFEST,
            &img.manifest,
        )
        .await;
        assert_eq!(r.status(), 201);
    }
    let idx = index(&[(&amd, "amd64"), (&arm, "arm64")]);
    let r = put_manifest(&w, "team/multi", "latest", OCI_INDEX, &idx).await;
    assert_eq!(r.status(), 201);
    let stray = push_blob(&w, "team/app", &bytes(7_000, 5)).await;
    w.stop().await;
    assert_eq!(
        refs_and_version(&root),
        (4, Some(1)),
        "new code writes references"
    );

    make_old(&root);
    let extra = "[gc]\ngrace = \"0s\"\ninterval = \"0\"\n";
    let (w, lc) = Wharf::start_observed(common::config(&root, extra)).await;
    let report = lc.gc.worker.pass(false).await.unwrap();
    assert_eq!(
        report
            .removed
            .iter()
            .map(|r| r.digest.as_str())
            .collect::<Vec<_>>(),
        vec![stray.as_str()],
        "only the blob no manifest names goes: {report:?}"
    );
    let r = get_oci(&w, "/v2/team/app/manifests/1").await;
    assert_eq!(r.headers()["docker-content-digest"], single.as_str());
    for img in [&amd, &arm] {
        for (d, b) in img.blobs() {
            let r = http()
                .get(w.url(&format!("/v2/team/multi/blobs/{d}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{d}");
            assert_eq!(r.bytes().await.unwrap().as_ref(), b);
        }
    }
    drop(lc);
    w.stop().await;
    assert_eq!(
        refs_and_version(&root),
        (4, Some(1)),
        "the migration filled every manifest's references and recorded the version"
    );

    // Once migrated, a start has nothing to fill.
    let w = Wharf::start_config(common::config(&root, "")).await;
    w.stop().await;
    assert_eq!(refs_and_version(&root), (4, Some(1)));
}

/// The references row of `repo`'s manifest `digest`, as stored JSON.
fn refs_row(root: &std::path::Path, repo: &str, digest: &str) -> Option<serde_json::Value> {
    let db = redb::Database::create(root.join("index.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(tables::MANIFEST_REFS).unwrap();
    t.get((repo, digest))
        .unwrap()
        .map(|v| serde_json::from_slice(v.value()).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn unparsable_manifests_get_unknown_references_and_rows_missing_later_are_filled() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let w = Wharf::start_config(common::config(&root, "")).await;
    let (bad_manifest, bad) = push_image(&w, "team/bad", "1", &[bytes(30_000, 11)]).await;
    let (_, good) = push_image(&w, "team/good", "1", &[bytes(30_000, 12)]).await;
    let stray_bad = push_blob(&w, "team/bad", &bytes(3_000, 13)).await;
    let stray_good = push_blob(&w, "team/good", &bytes(3_000, 14)).await;
    w.stop().await;

    // An old index, and one manifest's content no longer parses (same length,
    // so start-up does not notice).
    make_old(&root);
    let garbage: Vec<u8> = bad_manifest.iter().map(|b| b ^ 0xa5).collect();
    std::fs::write(common::disk::blob_path(&root, &bad), garbage).unwrap();
    let extra = "[gc]\ngrace = \"0s\"\ninterval = \"0\"\n";
    let (w, lc) = Wharf::start_observed(common::config(&root, extra)).await;
    let report = lc.gc.worker.pass(false).await.unwrap();
    let removed: Vec<&str> = report.removed.iter().map(|r| r.digest.as_str()).collect();
    assert_eq!(
        removed,
        vec![stray_good.as_str()],
        "a repository with unknown references keeps everything linked there: {report:?}"
    );
    let r = http()
        .head(w.url(&format!("/v2/team/bad/blobs/{stray_bad}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(lc);
    w.stop().await;
    assert_eq!(
        refs_and_version(&root),
        (2, Some(1)),
        "every manifest has a row"
    );
    let row = refs_row(&root, "team/bad", &bad).unwrap();
    assert_eq!(row["unknown"], true, "{row}");
    let row = refs_row(&root, "team/good", &good).unwrap();
    assert_eq!(row.get("unknown"), None, "{row}");
    assert_eq!(
        row["blobs"].as_array().unwrap().len(),
        2,
        "config and layer"
    );

    // An older wharf wrote a manifest after the migration (no references row,
    // version already recorded): the next start fills it.
    {
        let db = redb::Database::create(root.join("index.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(tables::MANIFEST_REFS)
            .unwrap()
            .remove(("team/good", good.as_str()))
            .unwrap();
        txn.commit().unwrap();
    }
    assert_eq!(refs_and_version(&root), (1, Some(1)));
    let w = Wharf::start_config(common::config(&root, "")).await;
    w.stop().await;
    assert_eq!(refs_and_version(&root), (2, Some(1)));
    assert_eq!(refs_row(&root, "team/good", &good).unwrap(), row);
}

/// Pulls `name:tag` whole (an index's platform manifests too) and checks every
/// digest; returns how many blobs were read.
async fn pull_all(w: &Wharf, name: &str, reference: &str) -> usize {
    let r = http()
        .get(w.url(&format!("/v2/{name}/manifests/{reference}")))
        .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{name}:{reference}");
    let body = r.bytes().await.unwrap();
    if reference.starts_with("sha256:") {
        assert_eq!(digest(&body), reference);
    }
    let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut n = 0;
    if let Some(children) = m["manifests"].as_array() {
        for c in children {
            n += Box::pin(pull_all(w, name, c["digest"].as_str().unwrap())).await;
        }
        return n;
    }
    let mut wanted = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
    for l in m["layers"].as_array().unwrap() {
        wanted.push(l["digest"].as_str().unwrap().to_owned());
    }
    for d in wanted {
        let r = http()
            .get(w.url(&format!("/v2/{name}/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name} {d}");
        assert_eq!(digest(&r.bytes().await.unwrap()), d);
        n += 1;
    }
    n
}

/// A data directory written by the wharf of the commit before the storage
/// lifecycle (67a13fc, `tests/fixtures/make-pre-lifecycle.py` against it: a
/// hosted repository with two tags sharing a layer, an index of two platforms,
/// a deleted image and a stray blob, and an image mirrored from an upstream)
/// opens, migrates, serves everything it held (the mirrored image stale, its
/// upstream being gone), and gc then removes exactly its garbage.
#[tokio::test(flavor = "multi_thread")]
async fn a_data_directory_written_before_the_lifecycle_opens_migrates_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(fixtures.join("pre-lifecycle.tar.gz"))
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("pre-lifecycle.json")).unwrap())
            .unwrap();
    let root = dir.path().join("data");
    let files_before = common::disk::files_under(&root.join("blobs")).len();
    let extra = "[[upstream]]\nname = \"up.test\"\nurl = \"http://127.0.0.1:9\"\ndefault = false\n\
                 [gc]\ngrace = \"0s\"\ninterval = \"0\"\n";
    let (w, lc) = Wharf::start_observed(common::config(&root, extra)).await;
    for r in expected["pulls"].as_array().unwrap() {
        let (name, tag) = r.as_str().unwrap().rsplit_once(':').unwrap();
        assert!(pull_all(&w, name, tag).await > 0, "{name}:{tag}");
    }
    let report = lc.gc.worker.pass(false).await.unwrap();
    let mut removed: Vec<String> = report.removed.iter().map(|r| r.digest.clone()).collect();
    removed.sort();
    let garbage: Vec<String> = expected["garbage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        removed, garbage,
        "gc removes exactly what the old index left unreferenced"
    );
    for r in expected["pulls"].as_array().unwrap() {
        let (name, tag) = r.as_str().unwrap().rsplit_once(':').unwrap();
        pull_all(&w, name, tag).await;
    }
    drop(lc);
    w.stop().await;
    assert_eq!(
        refs_and_version(&root).1,
        Some(1),
        "the index is at the new schema"
    );
    assert_eq!(
        common::disk::files_under(&root.join("blobs")).len(),
        files_before - garbage.len()
    );
    assert!(
        !root.join("lost+found").exists()
            || common::disk::files_under(&root.join("lost+found")).is_empty(),
        "nothing was set aside"
    );
}
