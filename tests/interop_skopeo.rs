//! skopeo (containers/image, as used by podman and buildah) pushes to wharf and
//! pulls back, byte for byte: a multi-layer image and a multi-arch index.

mod common;

use common::image::{Image, OCI_INDEX, OCI_MANIFEST, index, tar_with_file, write_layout};
use common::{Wharf, bytes, digest, have_tool, http};

async fn skopeo(args: &[&str]) -> String {
    let out = tokio::process::Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .await
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_copies_images_and_indexes_in_and_out_byte_identical() {
    if !have_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let host = w.addr.to_string();

    // A multi-layer image, one layer big enough to take several chunks.
    let img = Image::new(vec![
        tar_with_file("a.bin", &bytes(5 << 20, 1)),
        tar_with_file("b.txt", b"second layer"),
        tar_with_file("c.txt", b"third layer"),
    ]);
    let src = dir.path().join("src");
    let top = write_layout(&src, "v1", &[&img], &img.manifest, OCI_MANIFEST);
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", src.display()),
        &format!("docker://{host}/team/app:v1"),
    ])
    .await;
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/team/app:v1"),
    ])
    .await;
    assert_eq!(digest(raw.as_bytes()), top, "manifest bytes unchanged");

    let back = dir.path().join("back");
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{host}/team/app:v1"),
        &format!("oci:{}:v1", back.display()),
    ])
    .await;
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(back.join("index.json")).unwrap()).unwrap();
    assert_eq!(idx["manifests"][0]["digest"], top.as_str());
    for (d, b) in img.blobs() {
        let got = std::fs::read(back.join("blobs/sha256").join(&d[7..])).unwrap();
        assert_eq!(got, b, "blob {d} round-trips");
    }

    // A multi-arch index, copied with --all.
    let amd = Image::for_platform(vec![tar_with_file("x", b"amd64 bits")], "amd64");
    let arm = Image::for_platform(vec![tar_with_file("x", b"arm64 bits")], "arm64");
    let idx_bytes = index(&[(&amd, "amd64"), (&arm, "arm64")]);
    let msrc = dir.path().join("msrc");
    let idx_d = write_layout(&msrc, "multi", &[&amd, &arm], &idx_bytes, OCI_INDEX);
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", msrc.display()),
        &format!("docker://{host}/team/multi:v1"),
    ])
    .await;
    let r = http()
        .get(w.url("/v2/team/multi/manifests/v1"))
        .header("accept", OCI_INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], idx_d.as_str());
    let mback = dir.path().join("mback");
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{host}/team/multi:v1"),
        &format!("oci:{}:v1", mback.display()),
    ])
    .await;
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(mback.join("index.json")).unwrap()).unwrap();
    assert_eq!(idx["manifests"][0]["digest"], idx_d.as_str());
    for img in [&amd, &arm] {
        assert!(
            mback
                .join("blobs/sha256")
                .join(&digest(&img.manifest)[7..])
                .exists()
        );
        for (d, _) in img.blobs() {
            assert!(mback.join("blobs/sha256").join(&d[7..]).exists(), "{d}");
        }
    }
    w.stop().await;
}

async fn skopeo_fails(args: &[&str]) -> String {
    let out = tokio::process::Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .await
        .expect("run skopeo");
    assert!(!out.status.success(), "skopeo {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Push with credentials, refuse without, pull with, and copy between two
/// repositories of the registry (skopeo then tries a cross-repository mount).
async fn copy_with_creds(scheme: &str) {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("htpasswd");
    common::htpasswd(&pw, &[("ci", "ci-pw")]);
    let extra = format!(
        "[auth]\nhtpasswd = {:?}\nscheme = \"{scheme}\"\nanonymous_pull = false\n",
        pw.display().to_string()
    );
    let w = Wharf::start_config_unchecked(common::config(&dir.path().join("data"), &extra)).await;
    let host = w.addr.to_string();
    let img = Image::new(vec![
        tar_with_file("a", &bytes(2 << 20, 3)),
        tar_with_file("b", b"creds"),
    ]);
    let src = dir.path().join("src");
    let top = write_layout(&src, "v1", &[&img], &img.manifest, OCI_MANIFEST);
    let from = format!("oci:{}:v1", src.display());
    let dest = format!("docker://{host}/team/app:v1");
    let err = skopeo_fails(&["copy", "--dest-tls-verify=false", &from, &dest]).await;
    assert!(
        err.to_lowercase().contains("unauthorized") || err.contains("401"),
        "{err}"
    );
    skopeo_fails(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "ci:wrong",
        &from,
        &dest,
    ])
    .await;
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        "ci:ci-pw",
        &from,
        &dest,
    ])
    .await;
    // Registry to registry: skopeo asks to mount from team/app.
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        "ci:ci-pw",
        "--dest-creds",
        "ci:ci-pw",
        &dest,
        &format!("docker://{host}/team/copy:v1"),
    ])
    .await;
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "ci:ci-pw",
        &format!("docker://{host}/team/copy:v1"),
    ])
    .await;
    assert_eq!(digest(raw.as_bytes()), top);
    skopeo_fails(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/team/copy:v1"),
    ])
    .await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_with_creds_in_basic_mode() {
    if !have_tool("skopeo") {
        return;
    }
    copy_with_creds("basic").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_with_creds_in_token_mode() {
    if !have_tool("skopeo") {
        return;
    }
    copy_with_creds("token").await;
}
