//! `wharf import`: a registry:2 (Distribution 2.8.2) storage root filled over
//! its API, stopped, then imported into a running wharf: every remaining tag
//! pulls with the same digest, a deleted tag does not come back, a second run
//! copies nothing, a corrupt blob is reported with the images it breaks while
//! the rest arrives, hostile trees are reported rather than followed, and the
//! source tree is never changed. Imported images pull with skopeo and with a
//! real dockerd at the digests registry:2 held.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::dockerd::Dockerd;
use common::image::{Image, OCI_INDEX, OCI_MANIFEST, index, tar_with_file};
use common::upstreams::start_distribution;
use common::{Wharf, bytes, digest, have_tool, http, wharf_cli};
use serde_json::{Value, json};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// A Docker schema 2 image: (blobs, manifest).
fn docker_image(layers: &[Vec<u8>]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| digest(l)).collect::<Vec<_>>()},
        "config": {}
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest(&config), "size": config.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": digest(l), "size": l.len()
        })).collect::<Vec<_>>()
    }))
    .unwrap();
    let mut blobs = vec![config];
    blobs.extend(layers.iter().cloned());
    (blobs, manifest)
}

/// Pushes one blob to Distribution (monolithic).
async fn dist_blob(base: &str, repo: &str, b: &[u8]) {
    let c = http();
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let loc = if loc.starts_with('/') {
        format!("{base}{loc}")
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{loc}{sep}digest={}", digest(b)))
        .body(b.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// Pushes blobs, then the manifest under `reference`.
async fn dist_push(base: &str, repo: &str, reference: &str, mt: &str, blobs: &[&[u8]], m: &[u8]) {
    for b in blobs {
        dist_blob(base, repo, b).await;
    }
    let r = http()
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", mt)
        .body(m.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

async fn dist_image(base: &str, repo: &str, reference: &str, img: &Image) {
    let blobs: Vec<&[u8]> = img.blobs().into_iter().map(|(_, b)| b).collect();
    dist_push(base, repo, reference, OCI_MANIFEST, &blobs, &img.manifest).await;
}

/// Every path under `dir` with what it holds (content digest and mtime, a
/// symlink's target, "dir"): equal before and after means untouched.
fn tree_state(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(dir).unwrap().display().to_string();
        let what = if m.file_type().is_symlink() {
            format!("-> {}", std::fs::read_link(&p).unwrap().display())
        } else if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            "dir".to_owned()
        } else if m.len() > 1 << 20 && m.blocks() == 0 {
            format!("sparse {}", m.len())
        } else {
            format!(
                "{} {:?}",
                digest(&std::fs::read(&p).unwrap()),
                m.modified().unwrap()
            )
        };
        out.insert(rel, what);
    }
    out
}

use std::os::unix::fs::MetadataExt as _;

/// Runs `wharf import` against `w` with `--json`; (exit code, report).
async fn import_cli(w: &Wharf, dir: &Path, link: bool) -> (i32, Value) {
    let dir = dir.display().to_string();
    let mut args = vec!["import", dir.as_str(), "--url", w.base.as_str(), "--json"];
    if link {
        args.push("--link");
    }
    let (code, out, err) = wharf_cli(&args).await;
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("import printed no JSON ({e}): {out}\n{err}"));
    (code, v)
}

/// GETs a manifest from wharf: (status, Docker-Content-Digest, body).
async fn pull(w: &Wharf, repo: &str, reference: &str) -> (u16, String, Vec<u8>) {
    let r = http()
        .get(w.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("accept", ACCEPT)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let d = r
        .headers()
        .get("docker-content-digest")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, d, r.bytes().await.unwrap().to_vec())
}

/// Asserts `repo:tag` pulls as `manifest` (same digest, same bytes) with
/// every blob it names.
async fn assert_pulls(w: &Wharf, repo: &str, tag: &str, manifest: &[u8], blobs: &[&[u8]]) {
    let (s, d, body) = pull(w, repo, tag).await;
    assert_eq!(s, 200, "{repo}:{tag} does not pull");
    assert_eq!(d, digest(manifest), "{repo}:{tag} digest");
    assert_eq!(body, manifest, "{repo}:{tag} bytes");
    for b in blobs {
        let r = http()
            .get(w.url(&format!("/v2/{repo}/blobs/{}", digest(b))))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{repo} blob {}", digest(b));
        assert_eq!(digest(&r.bytes().await.unwrap()), digest(b));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_distribution_root_imports_with_every_digest_and_a_second_run_copies_nothing() {
    if !have_tool("docker-registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry");
    std::fs::create_dir_all(&reg).unwrap();
    let r = reg.clone();
    let (dist, base) = tokio::task::spawn_blocking(move || start_distribution(&r, ""))
        .await
        .unwrap();
    let shared = tar_with_file("shared", &bytes(300_000, 1));
    let app = Image::new(vec![shared.clone(), tar_with_file("a", &bytes(2_000, 2))]);
    let old = Image::new(vec![tar_with_file("old", &bytes(3_000, 3))]);
    let (docker_blobs, docker_manifest) =
        docker_image(&[shared.clone(), tar_with_file("d", &bytes(4_000, 4))]);
    let amd = Image::for_platform(vec![tar_with_file("m", &bytes(5_000, 5))], "amd64");
    let arm = Image::for_platform(vec![tar_with_file("m", &bytes(5_000, 6))], "arm64");
    let idx = index(&[(&amd, "amd64"), (&arm, "arm64")]);

    dist_image(&base, "app", "v1", &app).await;
    dist_image(&base, "app", "old", &old).await;
    let db: Vec<&[u8]> = docker_blobs.iter().map(Vec::as_slice).collect();
    dist_push(&base, "other", "v1", DOCKER_MANIFEST, &db, &docker_manifest).await;
    for img in [&amd, &arm] {
        dist_image(&base, "team/multi", &digest(&img.manifest), img).await;
    }
    dist_push(&base, "team/multi", "latest", OCI_INDEX, &[], &idx).await;
    drop(dist);
    // A deleted tag as registry:2 leaves it: the tag directory gone, the revision kept.
    let root = reg.join("data");
    let v2 = root.join("docker/registry/v2");
    std::fs::remove_dir_all(v2.join("repositories/app/_manifests/tags/old")).unwrap();
    let before = tree_state(&root);

    let w = Wharf::start(dir.path()).await;
    let (code, report) = import_cli(&w, &root, false).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["tags"], 3, "{report:#}");
    assert_eq!(report["repositories"], 3, "{report:#}");
    // 3 top manifests + 2 index children.
    assert_eq!(report["manifests"], 5, "{report:#}");
    // app: config + 2 layers; other: config + 1 (the shared layer is in
    // already: linked, not copied); multi: 2 configs + 2 layers.
    assert_eq!(report["blobs_copied"], 9, "{report:#}");
    assert_eq!(report["untagged_left"], 1, "{report:#}");
    assert_eq!(report["skipped"], json!([]), "{report:#}");

    let app_blobs: Vec<&[u8]> = app.blobs().into_iter().map(|(_, b)| b).collect();
    assert_pulls(&w, "app", "v1", &app.manifest, &app_blobs).await;
    assert_pulls(&w, "other", "v1", &docker_manifest, &db).await;
    assert_pulls(&w, "team/multi", "latest", &idx, &[]).await;
    for img in [&amd, &arm] {
        let b: Vec<&[u8]> = img.blobs().into_iter().map(|(_, b)| b).collect();
        assert_pulls(&w, "team/multi", &digest(&img.manifest), &img.manifest, &b).await;
    }
    assert_eq!(
        pull(&w, "app", "old").await.0,
        404,
        "a deleted tag came back"
    );

    if have_tool("skopeo") {
        let host = w.base.trim_start_matches("http://");
        for (name, m) in [
            ("app:v1", &app.manifest),
            ("other:v1", &docker_manifest),
            ("team/multi:latest", &idx),
        ] {
            let out = std::process::Command::new("skopeo")
                .args(["inspect", "--raw", "--tls-verify=false"])
                .arg(format!("docker://{host}/{name}"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(digest(&out.stdout), digest(m), "skopeo inspect {name}");
        }
        let out = std::process::Command::new("skopeo")
            .args(["copy", "--all", "--src-tls-verify=false"])
            .arg(format!("docker://{host}/team/multi:latest"))
            .arg(format!("oci:{}:x", dir.path().join("copy").display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let (code, again) = import_cli(&w, &root, false).await;
    assert_eq!(code, 0, "{again:#}");
    for k in ["tags", "manifests", "blobs_copied", "blobs_linked", "bytes"] {
        assert_eq!(again[k], 0, "second run {k}: {again:#}");
    }
    assert_eq!(again["already_there"]["tags"], 3, "{again:#}");
    assert_eq!(again["untagged_left"], 1, "{again:#}");
    assert_eq!(tree_state(&root), before, "the import changed its source");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn imported_images_pull_with_a_real_dockerd_at_the_same_digest() {
    if !have_tool("docker-registry") || !have_tool("dockerd") || !have_tool("docker") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry");
    std::fs::create_dir_all(&reg).unwrap();
    let r = reg.clone();
    let (dist, base) = tokio::task::spawn_blocking(move || start_distribution(&r, ""))
        .await
        .unwrap();
    let (blobs, schema2) = docker_image(&[
        tar_with_file("big.bin", &bytes(2 << 20, 21)),
        tar_with_file("hello.txt", b"imported from registry:2"),
    ]);
    let b: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    dist_push(&base, "app", "v1", DOCKER_MANIFEST, &b, &schema2).await;
    let amd = Image::for_platform(vec![tar_with_file("m", &bytes(5_000, 22))], "amd64");
    let arm = Image::for_platform(vec![tar_with_file("m", &bytes(5_000, 23))], "arm64");
    let idx = index(&[(&amd, "amd64"), (&arm, "arm64")]);
    for img in [&amd, &arm] {
        dist_image(&base, "team/multi", &digest(&img.manifest), img).await;
    }
    dist_push(&base, "team/multi", "latest", OCI_INDEX, &[], &idx).await;
    drop(dist);

    let w = Wharf::start(dir.path()).await;
    let (code, report) = import_cli(&w, &reg.join("data"), false).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["tags"], 2, "{report:#}");

    // dockerd records the digest it pulled by (the index's for a multi-arch
    // tag) in RepoDigests: it must be the one registry:2 held.
    let host = w.addr.to_string();
    let ddir = dir.path().join("docker");
    std::fs::create_dir_all(&ddir).unwrap();
    let want = [
        ("app", digest(&schema2), digest(&blobs[0])),
        ("team/multi", digest(&idx), digest(&amd.config)),
    ];
    tokio::task::spawn_blocking(move || {
        let d = Dockerd::start(&ddir);
        for (repo, manifest, config) in want {
            let tag = if repo == "app" { "v1" } else { "latest" };
            let target = format!("{host}/{repo}:{tag}");
            d.pull_and_check(&host, repo, &target, &manifest);
            // The image docker unpacked is the imported one (amd64 for the index).
            let id = d.ok(&["inspect", "--format", "{{.Id}}", &target]);
            assert_eq!(id.trim(), config, "{target} image id");
        }
    })
    .await
    .unwrap();
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_blob_is_reported_with_the_images_it_breaks_and_the_rest_is_linked_in() {
    if !have_tool("docker-registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry");
    std::fs::create_dir_all(&reg).unwrap();
    let r = reg.clone();
    let (dist, base) = tokio::task::spawn_blocking(move || start_distribution(&r, ""))
        .await
        .unwrap();
    let shared = tar_with_file("shared", &bytes(200_000, 11));
    let bad = tar_with_file("bad", &bytes(50_000, 12));
    let v1 = Image::new(vec![shared.clone(), tar_with_file("a", &bytes(1_000, 13))]);
    let v2 = Image::new(vec![shared.clone(), bad.clone()]);
    let other = Image::new(vec![shared.clone(), tar_with_file("o", &bytes(1_000, 14))]);
    dist_image(&base, "app", "v1", &v1).await;
    dist_image(&base, "app", "v2", &v2).await;
    dist_image(&base, "other", "v1", &other).await;
    drop(dist);
    let root = reg.join("data");
    let hex = &digest(&bad)["sha256:".len()..];
    let data = root
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut b = std::fs::read(&data).unwrap();
    b[1000] ^= 0xff;
    std::fs::write(&data, b).unwrap();
    let before = tree_state(&root);

    let w = Wharf::start(dir.path()).await;
    let (code, report) = import_cli(&w, &root, true).await;
    assert_eq!(code, 1, "a skipped image must fail the command: {report:#}");
    let bad_blobs = report["bad_blobs"].as_array().unwrap();
    assert_eq!(bad_blobs.len(), 1, "{report:#}");
    assert_eq!(bad_blobs[0]["digest"], digest(&bad));
    assert!(
        bad_blobs[0]["reason"].as_str().unwrap().contains("corrupt"),
        "{report:#}"
    );
    assert_eq!(bad_blobs[0]["breaks"], json!(["app:v2"]));
    assert_eq!(report["tags"], 2, "{report:#}");
    assert!(
        report["blobs_linked"].as_u64().unwrap() >= 1,
        "--link on one filesystem links: {report:#}"
    );

    for (repo, img) in [("app", &v1), ("other", &other)] {
        let b: Vec<&[u8]> = img.blobs().into_iter().map(|(_, b)| b).collect();
        assert_pulls(&w, repo, "v1", &img.manifest, &b).await;
    }
    assert_eq!(pull(&w, "app", "v2").await.0, 404);
    let r = http()
        .get(w.url(&format!("/v2/app/blobs/{}", digest(&bad))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a corrupt blob was imported");
    assert_eq!(tree_state(&root), before, "the import changed its source");
    w.stop().await;
}

/// Writes registry:2's layout by hand (for trees Distribution would never write).
struct Tree(std::path::PathBuf);

impl Tree {
    fn blob(&self, b: &[u8]) -> String {
        let d = digest(b);
        let hex = &d[7..];
        let p = self.0.join("blobs/sha256").join(&hex[..2]).join(hex);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("data"), b).unwrap();
        d
    }
    fn link(&self, p: &Path, d: &str) {
        std::fs::create_dir_all(p).unwrap();
        std::fs::write(p.join("link"), d).unwrap();
    }
    fn repo(&self, repo: &str) -> std::path::PathBuf {
        self.0.join("repositories").join(repo)
    }
    fn layer(&self, repo: &str, d: &str) {
        self.link(&self.repo(repo).join("_layers/sha256").join(&d[7..]), d);
    }
    fn manifest(&self, repo: &str, tag: &str, m: &[u8]) {
        let d = self.blob(m);
        let r = self.repo(repo).join("_manifests");
        self.link(&r.join("revisions/sha256").join(&d[7..]), &d);
        self.link(&r.join("tags").join(tag).join("current"), &d);
    }
    fn image(&self, repo: &str, tag: &str, img: &Image) {
        for (_, b) in img.blobs() {
            let d = self.blob(b);
            self.layer(repo, &d);
        }
        self.manifest(repo, tag, &img.manifest);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_tree_is_reported_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("r2");
    let t = Tree(root.join("docker/registry/v2"));
    std::fs::create_dir_all(t.0.join("blobs")).unwrap();
    let good = Image::new(vec![tar_with_file("g", &bytes(1_000, 21))]);
    t.image("good", "1", &good);
    // Tag link files holding garbage, and a 10 GB one (sparse).
    t.link(
        &t.repo("good").join("_manifests/tags/garbage/current"),
        "../../../../etc/passwd",
    );
    let huge = t.repo("good").join("_manifests/tags/huge/current");
    std::fs::create_dir_all(&huge).unwrap();
    std::fs::File::create(huge.join("link"))
        .unwrap()
        .set_len(10 << 30)
        .unwrap();
    // A name registry:2 would never have accepted.
    t.image("Bad_Name", "1", &good);
    // A repository that is a symlink to a tree outside.
    let outside = dir.path().join("outside");
    let evil = Tree(outside.clone());
    evil.image(
        "x",
        "1",
        &Image::new(vec![tar_with_file("e", &bytes(100, 22))]),
    );
    std::os::unix::fs::symlink(outside.join("repositories/x"), t.repo("evil")).unwrap();
    // A blob whose data file is a symlink to a file outside with the right bytes.
    let sneaky_layer = tar_with_file("s", &bytes(700, 23));
    let sneaky = Image::new(vec![sneaky_layer.clone()]);
    t.image("sneaky", "1", &sneaky);
    let sd = digest(&sneaky_layer);
    let data =
        t.0.join("blobs/sha256")
            .join(&sd[7..9])
            .join(&sd[7..])
            .join("data");
    std::fs::remove_file(&data).unwrap();
    let planted = dir.path().join("planted");
    std::fs::write(&planted, &sneaky_layer).unwrap();
    std::os::unix::fs::symlink(&planted, &data).unwrap();
    // A schema 1 manifest.
    let s1 = serde_json::to_vec(&json!({"schemaVersion": 1, "name": "old", "tag": "1", "architecture": "amd64", "fsLayers": [], "history": []})).unwrap();
    t.manifest("old", "1", &s1);
    let before = tree_state(&root);

    let w = Wharf::start(dir.path()).await;
    let post = |body: Value| {
        let url = w.url("/_wharf/v1/import");
        async move { http().post(url).json(&body).send().await.unwrap() }
    };
    assert_eq!(post(json!({"dir": "relative/dir"})).await.status(), 400);
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    assert_eq!(
        post(json!({"dir": dir.path().join("empty").display().to_string()}))
            .await
            .status(),
        400,
        "a directory without docker/registry/v2 is refused"
    );
    let r = post(json!({"dir": root.display().to_string()})).await;
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    let skipped = serde_json::to_string(&report["skipped"]).unwrap();
    for needle in [
        "does not hold a digest",
        "link file is 10737418240 bytes",
        "repositories/Bad_Name",
        "repositories/evil",
        "symlink",
        "schema 1",
    ] {
        assert!(skipped.contains(needle), "{needle:?} not in {report:#}");
    }
    assert_eq!(report["bad_blobs"][0]["digest"], sd, "{report:#}");
    assert_eq!(report["bad_blobs"][0]["breaks"], json!(["sneaky:1"]));
    assert_eq!(report["tags"], 1, "{report:#}");
    let b: Vec<&[u8]> = good.blobs().into_iter().map(|(_, b)| b).collect();
    assert_pulls(&w, "good", "1", &good.manifest, &b).await;
    for (repo, tag) in [
        ("sneaky", "1"),
        ("evil", "1"),
        ("good", "huge"),
        ("old", "1"),
    ] {
        assert_eq!(pull(&w, repo, tag).await.0, 404, "{repo}:{tag} imported");
    }
    assert_eq!(tree_state(&root), before, "the import changed its source");
    w.stop().await;
}
