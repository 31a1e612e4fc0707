//! `wharf import` against hostile or awkward `registry:2` trees: names that
//! routing sends to an upstream must not become hosted behind the mirror's
//! back, one bad tag must not poison the images that share its blobs, and
//! nothing in the tree may be dropped without a word.

mod common;
#[path = "common/r2tree.rs"]
mod r2tree;

use std::path::Path;

use common::image::{Image, tar_with_file};
use common::{Wharf, bytes, digest, http, push_image, wharf_cli};
use r2tree::R2Tree;
use serde_json::Value;

const ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

/// `wharf import DIR --json` against `w`: (exit code, report).
async fn import(w: &Wharf, dir: &Path) -> (i32, Value) {
    let dir = dir.display().to_string();
    let (code, out, err) =
        wharf_cli(&["import", dir.as_str(), "--url", w.base.as_str(), "--json"]).await;
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("import printed no JSON ({e}): {out}\n{err}"));
    (code, v)
}

/// (status, Docker-Content-Digest) of a manifest GET.
async fn manifest(w: &Wharf, repo: &str, reference: &str) -> (u16, String) {
    let r = http()
        .get(w.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("accept", ACCEPT)
        .send()
        .await
        .unwrap();
    let d = r
        .headers()
        .get("docker-content-digest")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (r.status().as_u16(), d)
}

fn skipped_text(report: &Value) -> String {
    serde_json::to_string(&report["skipped"]).unwrap()
}

/// A registry:2 that was a pull-through cache holds `library/nginx`; a private
/// one may hold `docker.io/...`. Imported as hosted, they would shadow Docker
/// Hub for every mirror client, frozen and never revalidated. A push to those
/// names is refused (DESIGN, name routing rule 4); so is their import.
#[tokio::test(flavor = "multi_thread")]
async fn names_routed_to_an_upstream_are_not_imported_as_hosted() {
    let dir = tempfile::tempdir().unwrap();
    let up = Wharf::start(&dir.path().join("up")).await;
    let fresh = vec![tar_with_file("fresh", &bytes(1_000, 1))];
    let (_, fresh_digest) = push_image(&up, "library/nginx", "1", &fresh).await;
    let (_, redis_digest) = push_image(&up, "library/redis", "7", &fresh).await;
    let w = Wharf::start_with(
        &dir.path().join("mirror"),
        &format!(
            "[[upstream]]\nname = \"docker.io\"\nurl = \"{}\"\ndefault = true\n",
            up.base
        ),
    )
    .await;

    let root = dir.path().join("r2");
    let t = R2Tree::under(&root);
    let stale = Image::new(vec![tar_with_file("stale", &bytes(1_000, 2))]);
    t.image("library/nginx", "1", &stale);
    t.image("docker.io/library/redis", "7", &stale);
    let mine = Image::new(vec![tar_with_file("mine", &bytes(1_000, 3))]);
    t.image("team/app", "1", &mine);

    let (code, report) = import(&w, &root).await;
    assert_eq!(code, 1, "names left out fail the command: {report:#}");
    assert_eq!(report["tags"], 1, "{report:#}");
    let skipped = skipped_text(&report);
    for name in ["library/nginx", "docker.io/library/redis"] {
        assert!(skipped.contains(name), "{name} not reported: {report:#}");
    }
    assert!(
        skipped.contains("[hosted] prefixes"),
        "the reason names the way out: {report:#}"
    );
    assert_eq!(
        manifest(&w, "team/app", "1").await,
        (200, digest(&mine.manifest))
    );
    // Mirror clients still get Docker Hub's image, not the imported one.
    assert_eq!(
        manifest(&w, "library/nginx", "1").await,
        (200, fresh_digest),
        "an import shadowed the mirror"
    );
    assert_eq!(
        manifest(&w, "docker.io/library/redis", "7").await,
        (200, redis_digest),
        "an import shadowed the mirror"
    );
    w.stop().await;
    up.stop().await;
}

/// registry:2 accepts any tag link; one pointing at a big layer is not a
/// manifest, but the layer itself is fine and other images need it.
#[tokio::test(flavor = "multi_thread")]
async fn a_tag_naming_a_large_layer_does_not_break_the_images_that_share_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("r2");
    let t = R2Tree::under(&root);
    let big = bytes(5 << 20, 4);
    let good = Image::new(vec![big.clone()]);
    t.image("zzz/good", "1", &good);
    let big_digest = t.blob(&big);
    t.layer("aaa/odd", &big_digest);
    t.tag("aaa/odd", "layer", &big_digest);

    let w = Wharf::start(dir.path()).await;
    let (_, report) = import(&w, &root).await;
    assert!(
        skipped_text(&report).contains("aaa/odd:layer"),
        "the odd tag is reported: {report:#}"
    );
    assert_eq!(
        manifest(&w, "zzz/good", "1").await,
        (200, digest(&good.manifest)),
        "a good image was skipped: {report:#}"
    );
    let r = http()
        .get(w.url(&format!("/v2/zzz/good/blobs/{big_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(digest(&r.bytes().await.unwrap()), big_digest);
    w.stop().await;
}

/// A directory the walk cannot use (a name that is not UTF-8 here) is
/// reported, never silently treated as absent.
#[tokio::test(flavor = "multi_thread")]
async fn a_repository_directory_that_cannot_be_read_is_reported() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("r2");
    let t = R2Tree::under(&root);
    let img = Image::new(vec![tar_with_file("x", &bytes(1_000, 5))]);
    t.image("ok", "1", &img);
    let odd = std::ffi::OsStr::from_bytes(b"bad\xffname");
    let src = t.repo("ok");
    let dst = t.0.join("repositories").join(odd);
    std::fs::create_dir_all(&dst).unwrap();
    copy_dir(&src, &dst);

    let w = Wharf::start(dir.path()).await;
    let (code, report) = import(&w, &root).await;
    assert_eq!(report["tags"], 1, "{report:#}");
    assert!(
        skipped_text(&report).contains("bad"),
        "the unusable directory is reported: {report:#}"
    );
    assert_eq!(code, 1, "{report:#}");
    w.stop().await;
}

fn copy_dir(src: &Path, dst: &Path) {
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// An index naming nothing, told apart by `note`: a manifest that needs no
/// blob, so the store takes it as it is.
fn empty_index(note: &str) -> bytes::Bytes {
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [],
        "annotations": {"note": note},
    });
    bytes::Bytes::from(serde_json::to_vec(&v).unwrap())
}

/// An import reads wharf's tags at its start and writes later: a push
/// that lands between must win. The store decides in the transaction that
/// would write the tag, so the import's write cannot move it.
#[tokio::test(flavor = "multi_thread")]
async fn a_tag_pushed_while_an_import_runs_is_not_moved() {
    use wharf::oci::{Reference, RepoName};
    use wharf::store::{Store, StoreError};
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let repo: RepoName = "team/app".parse().unwrap();
    let tag: Reference = "1".parse().unwrap();
    let pushed = store
        .put_manifest(&repo, &tag, empty_index("pushed"), INDEX)
        .await
        .unwrap();
    let err = store
        .put_manifest_keeping_tag(&repo, &tag, empty_index("imported"), INDEX)
        .await
        .unwrap_err();
    match err {
        StoreError::TagTaken { digest, .. } => assert_eq!(digest, pushed.digest.to_string()),
        other => panic!("expected TagTaken, got {other}"),
    }
    let now = store.manifest_info(&repo, &tag).await.unwrap();
    assert_eq!(now.digest, pushed.digest, "the import moved a pushed tag");
    // The same manifest again is no conflict; a fresh tag is written.
    store
        .put_manifest_keeping_tag(&repo, &tag, empty_index("pushed"), INDEX)
        .await
        .unwrap();
    let fresh: Reference = "2".parse().unwrap();
    let imported = store
        .put_manifest_keeping_tag(&repo, &fresh, empty_index("imported"), INDEX)
        .await
        .unwrap();
    let got = store.manifest_info(&repo, &fresh).await.unwrap();
    assert_eq!(got.digest, imported.digest);
}

/// Content files under a data directory (blobs and manifests stored).
fn stored_files(root: &Path) -> usize {
    fn walk(p: &Path) -> usize {
        let Ok(rd) = std::fs::read_dir(p) else {
            return 0;
        };
        rd.flatten()
            .map(|e| {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(&e.path())
                } else {
                    1
                }
            })
            .sum()
    }
    walk(&root.join("blobs"))
}

/// Whether `repo:v1` is absent, or present and whole (manifest and every
/// blob at their digests); panics on anything in between.
async fn absent_or_whole(base: &str, repo: &str, img: &Image) -> bool {
    let r = http()
        .get(format!("{base}/v2/{repo}/manifests/v1"))
        .header("accept", ACCEPT)
        .send()
        .await
        .unwrap();
    if r.status() == 404 {
        return false;
    }
    assert_eq!(r.status(), 200, "{repo}:v1");
    assert_eq!(
        r.headers()["docker-content-digest"],
        digest(&img.manifest).as_str()
    );
    for (d, b) in img.blobs() {
        let got = http()
            .get(format!("{base}/v2/{repo}/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200, "{repo}:v1 is visible but {d} is not");
        assert_eq!(got.bytes().await.unwrap().as_ref(), b, "{repo} {d}");
    }
    true
}

/// kill -9 of the daemon while an import copies: after the restart every
/// tag is either absent or whole (a tag is written only after everything it
/// needs), and running the import again completes it.
#[tokio::test(flavor = "multi_thread")]
async fn an_import_killed_midway_leaves_nothing_half_visible_and_a_rerun_completes() {
    const IMAGES: u64 = 12;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("r2");
    let tree = R2Tree::under(&src);
    let images: Vec<(String, Image)> = (0..IMAGES)
        .map(|i| {
            let img = Image::new(vec![bytes(4 << 20, 700 + i)]);
            let repo = format!("team/app-{i:02}");
            tree.image(&repo, "v1", &img);
            (repo, img)
        })
        .collect();
    let root = dir.path().join("data");
    let d = common::WharfProcess::spawn(dir.path(), &root, "");
    let (base, s) = (d.base.clone(), src.display().to_string());
    let running =
        tokio::spawn(async move { wharf_cli(&["import", s.as_str(), "--url", &base]).await });
    common::wait_for(60, "the import to store its first blob", || {
        let r = root.clone();
        async move { stored_files(&r) > 0 }
    })
    .await;
    drop(d); // kill -9
    let _ = running.await;

    let d = common::WharfProcess::spawn(dir.path(), &root, "");
    let mut whole = 0;
    for (repo, img) in &images {
        whole += usize::from(absent_or_whole(&d.base, repo, img).await);
    }
    assert!(
        whole < images.len(),
        "the kill came after the import finished; the test proves nothing"
    );
    let s = src.display().to_string();
    let (code, out, err) = wharf_cli(&["import", s.as_str(), "--url", &d.base, "--json"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["tags"].as_u64().unwrap() + report["already_there"]["tags"].as_u64().unwrap(),
        IMAGES,
        "{report}"
    );
    for (repo, img) in &images {
        assert!(
            absent_or_whole(&d.base, repo, img).await,
            "{repo}:v1 missing"
        );
    }
    let r = http()
        .post(format!("{}/_wharf/v1/verify", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["corrupt"], serde_json::json!([]), "{v}");
}
