//! "The first push, on the defaults": a wharf on its embedded defaults (no users,
//! so pushes are accepted from direct loopback clients; `claim_on_push = true`;
//! no `[hosted] prefixes`), Docker Hub as the default upstream, and a client on
//! loopback that pushes without any login.
//!
//! The Docker Hub upstream is a Docker-Hub-like wharf that is up only while the
//! client pulls a Docker Hub name through the mirror, then stopped before the
//! pushes: from then on nothing listens at the upstream's address (connections
//! are refused, like `http://127.0.0.1:9`), so a push that asked the upstream
//! anything — skopeo's blob `HEAD`s included — would fail.
//!
//! `bun` and `myhub/nginx` are claimed by their first push and pull back by tag
//! and by digest; `library/x` (Docker Hub's reserved namespace) and a name whose
//! mirror already holds content are refused with a message saying what to do.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::containers::Containers;
use common::dockerd::Dockerd;
use common::image::{Image, OCI_MANIFEST, docker_archive, tar_with_file, write_layout};
use common::upstreams::{hub, metric, mirror_config, publish};
use common::{Wharf, bytes, digest, have_tool, http};
use tokio::task::block_in_place;

/// The embedded defaults, but for the Docker Hub upstream's URL.
async fn on_the_defaults(dir: &Path, docker_hub_url: &str) -> Wharf {
    Wharf::start_config(common::config(
        &dir.join("wharf"),
        &mirror_config(docker_hub_url, "", ""),
    ))
    .await
}

/// Stops the hub and checks that its address is dead.
async fn docker_hub_goes_away(hub: Wharf) {
    let addr: SocketAddr = hub.addr;
    hub.stop().await;
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the upstream is unreachable from here on"
    );
}

/// Blob `HEAD`s wharf answered 404 itself (the upstream is gone, so these never
/// came from it).
async fn local_blob_misses(w: &Wharf) -> f64 {
    metric(
        w,
        "wharf_http_requests_total{method=\"HEAD\",route=\"blob\",status=\"404\"}",
    )
    .await
}

/// The refusal of a push to `name` says why and what to do.
fn assert_refusal_explains(stderr: &str, name: &str, why: &str) {
    assert!(
        stderr.contains("denied") && stderr.contains(why) && stderr.contains("[hosted] prefixes"),
        "pushing {name} must be DENIED with advice naming [hosted] prefixes and {why:?}: {stderr}"
    );
}

fn one_layer(name: &str, size: usize, seed: u64) -> Image {
    Image::new(vec![tar_with_file(name, &bytes(size, seed))])
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_pushes_on_the_defaults_beside_mirror_pulls() {
    if !have_tool("dockerd") || !have_tool("docker") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let nginx = one_layer("usr/sbin/nginx", 1 << 20, 81);
    publish(&hub, "library/nginx", "1.27", &nginx).await;
    let w = on_the_defaults(dir.path(), &hub.base).await;
    let host = w.addr.to_string();
    let ddir = dir.path().join("docker");
    std::fs::create_dir_all(&ddir).unwrap();
    let d =
        block_in_place(|| Dockerd::start_with(&ddir, &[format!("--registry-mirror={}", w.base)]));

    // A Docker Hub image through `registry-mirrors`, while the upstream is up.
    let repo_digest = block_in_place(|| {
        d.ok(&["pull", "nginx:1.27"]);
        d.ok(&[
            "inspect",
            "--format",
            "{{index .RepoDigests 0}}",
            "nginx:1.27",
        ])
    });
    assert_eq!(
        repo_digest.trim(),
        format!("nginx@{}", digest(&nginx.manifest))
    );
    docker_hub_goes_away(hub).await;

    // The seeds' workflow: no login, no configuration.
    let bun = one_layer("usr/local/bin/bun", 1 << 20, 82);
    let myhub = one_layer("etc/nginx/nginx.conf", 256 << 10, 83);
    for (repo, tag, img) in [("bun", "latest", &bun), ("myhub/nginx", "v0.1", &myhub)] {
        let archive = dir.path().join(format!("{}.tar", repo.replace('/', "_")));
        std::fs::write(&archive, docker_archive(img, "local/app:v1")).unwrap();
        let target = format!("{host}/{repo}:{tag}");
        let id = block_in_place(|| {
            let pushed = d.load_tag_push(&archive, &target);
            // Pull back by tag, then by digest, each time from nothing.
            d.pull_and_check(&host, repo, &target, &pushed);
            let by_tag = d.ok(&["inspect", "--format", "{{.Id}}", &target]);
            d.ok(&["rmi", &target]);
            let by_digest = format!("{host}/{repo}@{pushed}");
            d.ok(&["pull", &by_digest]);
            let by_digest_id = d.ok(&["inspect", "--format", "{{.Id}}", &by_digest]);
            assert_eq!(by_tag, by_digest_id);
            d.ok(&["rmi", &by_digest]);
            by_tag.trim().to_owned()
        });
        assert_eq!(id, digest(&img.config), "{repo}:{tag}");
    }

    // Docker Hub's reserved namespace, and a name the mirror already serves.
    block_in_place(|| {
        for (name, why) in [
            ("library/x", "reserved namespace"),
            ("nginx", "already holds content mirrored"),
        ] {
            let target = format!("{host}/{name}:latest");
            d.ok(&["tag", "nginx:1.27", &target]);
            let out = d.docker(&["push", &target]);
            assert!(!out.status.success(), "pushing {name} must be refused");
            assert_refusal_explains(&String::from_utf8_lossy(&out.stderr), name, why);
        }
    });
    drop(d);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_pushes_on_the_defaults_and_every_blob_head_is_answered_locally() {
    if !have_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let alpine = one_layer("bin/busybox", 1 << 20, 91);
    publish(&hub, "library/alpine", "3", &alpine).await;
    let w = on_the_defaults(dir.path(), &hub.base).await;
    let host = w.addr.to_string();
    // No credentials anywhere, no mirror configuration: names as written.
    let ce = Containers::new(&dir.path().join("skopeo"));

    // `alpine` is Docker Hub's `library/alpine`, while the upstream is up.
    let mirrored = dir.path().join("mirrored");
    block_in_place(|| {
        ce.ok(
            "skopeo",
            &[
                "copy",
                "--preserve-digests",
                "--src-tls-verify=false",
                &format!("docker://{host}/alpine:3"),
                &format!("oci:{}:3", mirrored.display()),
            ],
        )
    });
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(mirrored.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        layout["manifests"][0]["digest"],
        digest(&alpine.manifest).as_str()
    );
    // Docker Hub's reserved namespace, and the name the mirror now serves:
    // skopeo checks each blob with HEAD (answered by the upstream: not there),
    // then starts the upload, which is refused with advice.
    let refusing = Image::new(vec![tar_with_file("x", b"refused")]);
    let refused = dir.path().join("refused");
    write_layout(
        &refused,
        "latest",
        &[&refusing],
        &refusing.manifest,
        OCI_MANIFEST,
    );
    block_in_place(|| {
        for (name, why) in [
            ("library/x", "reserved namespace"),
            ("alpine", "already holds content mirrored"),
        ] {
            let err = ce.fails(
                "skopeo",
                &[
                    "copy",
                    "--dest-tls-verify=false",
                    &format!("oci:{}:latest", refused.display()),
                    &format!("docker://{host}/{name}:latest"),
                ],
            );
            assert_refusal_explains(&err, name, why);
        }
    });
    docker_hub_goes_away(hub).await;

    let bun = Image::new(vec![
        tar_with_file("usr/local/bin/bun", &bytes(1 << 20, 92)),
        tar_with_file("etc/bunfig.toml", b"[install]"),
    ]);
    let myhub = one_layer("etc/nginx/nginx.conf", 256 << 10, 93);
    let misses_before = local_blob_misses(&w).await;
    for (repo, tag, img) in [("bun", "latest", &bun), ("myhub/nginx", "v0.1", &myhub)] {
        let src = dir.path().join(repo.replace('/', "_"));
        let top = write_layout(&src, tag, &[img], &img.manifest, OCI_MANIFEST);
        let back = dir.path().join(format!("{}_back", repo.replace('/', "_")));
        block_in_place(|| {
            ce.ok(
                "skopeo",
                &[
                    "copy",
                    "--preserve-digests",
                    "--dest-tls-verify=false",
                    &format!("oci:{}:{tag}", src.display()),
                    &format!("docker://{host}/{repo}:{tag}"),
                ],
            );
            let raw = ce.ok(
                "skopeo",
                &[
                    "inspect",
                    "--raw",
                    "--tls-verify=false",
                    &format!("docker://{host}/{repo}:{tag}"),
                ],
            );
            assert_eq!(digest(raw.as_bytes()), top, "{repo}:{tag} by tag");
            ce.ok(
                "skopeo",
                &[
                    "copy",
                    "--preserve-digests",
                    "--src-tls-verify=false",
                    &format!("docker://{host}/{repo}@{top}"),
                    &format!("oci:{}:{tag}", back.display()),
                ],
            );
        });
        for (d, b) in img.blobs() {
            assert_eq!(
                std::fs::read(back.join("blobs/sha256").join(&d[7..])).unwrap(),
                b,
                "{repo}@{top}: {d}"
            );
        }
    }
    // skopeo asked about every blob before uploading it; wharf said 404 itself.
    let blobs = (bun.blobs().len() + myhub.blobs().len()) as f64;
    assert!(
        local_blob_misses(&w).await - misses_before >= blobs,
        "skopeo HEADs each blob first"
    );

    // With the upstream gone the refusals still hold, and still explain
    // themselves: a pusher's blob HEAD is "not here", not a 503.
    block_in_place(|| {
        for (name, why) in [
            ("library/x", "reserved namespace"),
            ("alpine", "already holds content mirrored"),
        ] {
            let err = ce.fails(
                "skopeo",
                &[
                    "copy",
                    "--dest-tls-verify=false",
                    &format!("oci:{}:latest", refused.display()),
                    &format!("docker://{host}/{name}:latest"),
                ],
            );
            assert_refusal_explains(&err, name, why);
        }
    });
    for name in ["library/x", "alpine"] {
        assert_eq!(
            http()
                .head(w.url(&format!("/v2/{name}/manifests/latest")))
                .send()
                .await
                .unwrap()
                .status(),
            503,
            "{name}:latest was never stored (it is still a mirrored name)"
        );
    }
    w.stop().await;
}

/// skopeo (like podman and buildah) sends `HEAD /v2/library/x/blobs/<digest>`
/// before it starts an upload; for a name a push cannot claim that HEAD is
/// proxied. With the upstream unreachable, a caller who may push gets 404 (not
/// 503), so skopeo goes on to the `POST` whose DENIED message says what to do.
#[tokio::test(flavor = "multi_thread")]
async fn skopeo_refusal_explains_itself_with_docker_hub_unreachable() {
    if !have_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = on_the_defaults(dir.path(), "http://127.0.0.1:9").await;
    let img = one_layer("x", 1000, 99);
    let head = http()
        .head(w.url(&format!("/v2/library/x/blobs/{}", digest(&img.layers[0]))))
        .send()
        .await
        .unwrap()
        .status();
    let src = dir.path().join("src");
    write_layout(&src, "latest", &[&img], &img.manifest, OCI_MANIFEST);
    let ce = Containers::new(&dir.path().join("skopeo"));
    let err = block_in_place(|| {
        ce.fails(
            "skopeo",
            &[
                "copy",
                "--dest-tls-verify=false",
                &format!("oci:{}:latest", src.display()),
                &format!("docker://{}/library/x:latest", w.addr),
            ],
        )
    });
    assert_refusal_explains(&err, "library/x", "reserved namespace");
    assert_eq!(
        head, 404,
        "nothing here, and nothing to ask the upstream about"
    );
    w.stop().await;
}
