//! Real clients through the mirror: dockerd with `--registry-mirror` pulling an
//! unqualified name, and skopeo copying a multi-arch image by name prefix.

mod common;

use common::dockerd::Dockerd;
use common::image::{Image, OCI_INDEX, OCI_MANIFEST, tar_with_file};
use common::upstreams::{
    hub, hub_blob_bytes, mirror_config, publish_blobs, publish_index, put_manifest,
};
use common::{Wharf, bytes, digest, have_tool, http};

async fn mirror(dir: &std::path::Path, hub: &Wharf) -> Wharf {
    Wharf::start_config(common::config(
        &dir.join("mirror"),
        &mirror_config(&hub.base, "", ""),
    ))
    .await
}

/// An amd64 and an arm64 image of one layer of `size` bytes each, published
/// on the hub as `repo:v1` under a multi-arch index (returned last).
async fn two_platforms(hub: &Wharf, repo: &str, size: usize, seed: u64) -> (Image, Image, Vec<u8>) {
    let amd = Image::for_platform(vec![tar_with_file("x", &bytes(size, seed))], "amd64");
    let arm = Image::for_platform(vec![tar_with_file("x", &bytes(size, seed + 1))], "arm64");
    let idx = publish_index(hub, repo, "v1", &[(&amd, "amd64"), (&arm, "arm64")]).await;
    (amd, arm, idx)
}

#[tokio::test(flavor = "multi_thread")]
async fn dockerd_pulls_unqualified_names_through_the_mirror() {
    if !have_tool("dockerd") || !have_tool("docker") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let img = Image::new(vec![
        tar_with_file("bin/sh", &bytes(2 << 20, 11)),
        tar_with_file("etc/motd", b"through the mirror"),
    ]);
    publish_blobs(&hub, "library/busybox-like", &img).await;
    put_manifest(
        &hub,
        "library/busybox-like",
        "1.0",
        OCI_MANIFEST,
        &img.manifest,
    )
    .await;
    let m = mirror(dir.path(), &hub).await;
    let ddir = dir.path().join("docker");
    std::fs::create_dir_all(&ddir).unwrap();
    let mirror_url = m.base.clone();
    let (repo_digest, id) = tokio::task::spawn_blocking(move || {
        let d = Dockerd::start_with(&ddir, &[format!("--registry-mirror={mirror_url}")]);
        d.ok(&["pull", "busybox-like:1.0"]);
        let rd = d.ok(&[
            "inspect",
            "--format",
            "{{index .RepoDigests 0}}",
            "busybox-like:1.0",
        ]);
        let id = d.ok(&["inspect", "--format", "{{.Id}}", "busybox-like:1.0"]);
        (rd.trim().to_owned(), id.trim().to_owned())
    })
    .await
    .unwrap();
    assert_eq!(
        repo_digest,
        format!("busybox-like@{}", digest(&img.manifest))
    );
    assert_eq!(id, digest(&img.config));
    // It is cached now: the mirror answers even without the hub.
    hub.stop().await;
    let r = http()
        .get(m.url("/v2/library/busybox-like/manifests/1.0"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_copies_a_multi_arch_image_through_the_mirror() {
    if !have_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let (amd, arm, idx) = two_platforms(&hub, "library/multi", 1 << 20, 12).await;
    let m = mirror(dir.path(), &hub).await;
    let out = dir.path().join("out");
    let status = tokio::process::Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
        ])
        .arg(format!("docker://{}/docker.io/library/multi:v1", m.addr))
        .arg(format!("oci:{}:v1", out.display()))
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(layout["manifests"][0]["digest"], digest(&idx).as_str());
    for img in [&amd, &arm] {
        for (d, b) in img.blobs() {
            assert_eq!(
                std::fs::read(out.join("blobs/sha256").join(&d[7..])).unwrap(),
                b
            );
        }
    }
    m.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pulling_one_platform_fetches_only_that_platform() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let (amd, arm, idx) = two_platforms(&hub, "library/plat", 3 << 20, 14).await;
    let m = mirror(dir.path(), &hub).await;
    let c = http();
    let accept = format!("{OCI_INDEX}, {OCI_MANIFEST}");
    let r = c
        .get(m.url("/v2/plat/manifests/v1"))
        .header("accept", &accept)
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), idx.as_slice());
    let r = c
        .get(m.url(&format!("/v2/plat/manifests/{}", digest(&amd.manifest))))
        .header("accept", &accept)
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), amd.manifest.as_slice());
    for (d, b) in amd.blobs() {
        // Read to the end: the last byte is released only once the blob is stored.
        let got = c
            .get(m.url(&format!("/v2/plat/blobs/{d}")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got.as_ref(), b);
    }
    let text = c
        .get(hub.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sum = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(
        sum("wharf_http_requests_total{method=\"GET\",route=\"manifest\""),
        2.0,
        "index + amd64 only"
    );
    let amd_bytes: usize = amd.blobs().iter().map(|(_, b)| b.len()).sum();
    assert_eq!(
        sum("wharf_http_response_bytes_total{route=\"blob\"}") as usize,
        amd_bytes,
        "no arm64 bytes"
    );
    // With the upstream gone, what was fetched still pulls and nothing else does.
    hub.stop().await;
    for (d, b) in amd.blobs() {
        let got = c
            .get(m.url(&format!("/v2/plat/blobs/{d}")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got.as_ref(), b);
    }
    let arm_layer = digest(&arm.layers[0]);
    let r = c
        .get(m.url(&format!("/v2/plat/blobs/{arm_layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "arm64 was never fetched");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn containerd_fetches_one_platform_through_the_mirror_by_ns() {
    if !have_tool("containerd") || !have_tool("ctr") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let (amd, arm, idx) = two_platforms(&hub, "team/multi", 1 << 20, 16).await;
    // The hub is a second, non-default upstream: only containerd's `ns=` query
    // can route `team/multi` to it (without it the name would be hosted here).
    let extra = format!(
        "[[upstream]]\nname = \"docker.io\"\nurl = \"http://127.0.0.1:9\"\ndefault = false\n[[upstream]]\nname = \"registry.example\"\nurl = \"{}\"\n",
        hub.base
    );
    let m = Wharf::start_config(common::config(&dir.path().join("mirror"), &extra)).await;
    let hosts = dir.path().join("hosts");
    std::fs::create_dir_all(hosts.join("registry.example")).unwrap();
    std::fs::write(
        hosts.join("registry.example/hosts.toml"),
        format!(
            "server = \"https://registry.example\"\n[host.\"{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            m.base
        ),
    )
    .unwrap();
    let cdir = dir.path().join("containerd");
    std::fs::create_dir_all(&cdir).unwrap();
    let before = hub_blob_bytes(&hub).await;
    let hosts_dir = hosts.display().to_string();
    let listed = tokio::task::spawn_blocking(move || {
        let c = common::containerd::Containerd::start(&cdir);
        c.ok(&[
            "content",
            "fetch",
            "--hosts-dir",
            &hosts_dir,
            "--platform",
            "linux/arm64",
            "registry.example/team/multi:v1",
        ]);
        c.ok(&["content", "ls", "-q"])
    })
    .await
    .unwrap();
    // containerd holds the index, the arm64 manifest and its blobs, verified
    // by containerd itself against their digests.
    let listed: Vec<&str> = listed.lines().map(str::trim).collect();
    assert!(listed.contains(&digest(&idx).as_str()), "{listed:?}");
    assert!(
        listed.contains(&digest(&arm.manifest).as_str()),
        "{listed:?}"
    );
    for (d, _) in arm.blobs() {
        assert!(listed.contains(&d.as_str()), "{d} in {listed:?}");
    }
    for (d, _) in amd.blobs() {
        assert!(!listed.contains(&d.as_str()), "amd64 blob {d} fetched");
    }
    // Only that platform crossed the upstream link.
    let arm_bytes: usize = arm.blobs().iter().map(|(_, b)| b.len()).sum();
    assert_eq!((hub_blob_bytes(&hub).await - before) as usize, arm_bytes);
    // And it is cached under the upstream's name.
    let r = http()
        .get(m.url(&format!(
            "/v2/registry.example/team/multi/manifests/{}",
            digest(&arm.manifest)
        )))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT");
    m.stop().await;
    hub.stop().await;
}
