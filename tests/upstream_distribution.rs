//! The mirror in front of CNCF Distribution 2.8.2 (Debian's `docker-registry`)
//! with htpasswd auth: the Basic challenge path of the upstream client, and
//! HEAD revalidation against another registry implementation.

mod common;

use common::image::{Image, tar_with_file};
use common::upstreams::{mirror_config, push_to_distribution, start_distribution};
use common::{Wharf, bytes, have_tool, http};

#[tokio::test(flavor = "multi_thread")]
async fn mirror_in_front_of_distribution_with_basic_auth() {
    if !have_tool("docker-registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ddir = dir.path().join("dist");
    std::fs::create_dir_all(&ddir).unwrap();
    let pw = ddir.join("htpasswd");
    common::htpasswd(&pw, &[("mirror", "mirror-pw")]);
    let auth = format!(
        "auth:\n  htpasswd:\n    realm: dist\n    path: {}\n",
        pw.display()
    );
    let (_dist, base) = tokio::task::spawn_blocking(move || start_distribution(&ddir, &auth))
        .await
        .unwrap();
    let img = Image::new(vec![
        tar_with_file("d", &bytes(3 << 20, 31)),
        tar_with_file("e", b"two"),
    ]);
    push_to_distribution(
        &base,
        |r| r.basic_auth("mirror", Some("mirror-pw")),
        "library/distro",
        "v1",
        &img,
    )
    .await;

    let secret = dir.path().join("pw");
    std::fs::write(&secret, "mirror-pw").unwrap();
    let keys = format!(
        "manifest_ttl = \"0s\"\nusername = \"mirror\"\npassword_file = {:?}\n",
        secret.display().to_string()
    );
    let extra = mirror_config(&base, &keys, "");
    let m = Wharf::start_config(common::config(&dir.path().join("mirror"), &extra)).await;
    let r = common::get_oci(&m, "/v2/distro/manifests/v1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(r.bytes().await.unwrap().as_ref(), img.manifest.as_slice());
    // TTL 0: revalidated by HEAD against Distribution, unchanged, served from cache.
    let r = common::get_oci(&m, "/v2/distro/manifests/v1").await;
    assert_eq!(r.headers()["x-cache"], "HIT");
    for (d, b) in img.blobs() {
        let r = common::get_oci(&m, &format!("/v2/distro/blobs/{d}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), b);
    }
    // Distribution 2.8.2 has no referrers API: the mirror answers 404 as it
    // does, so clients fall back to the tag schema instead of trusting an
    // empty list.
    let r = common::get_oci(
        &m,
        &format!("/v2/distro/referrers/{}", common::digest(&img.manifest)),
    )
    .await;
    assert_eq!(r.status(), 404);
    // A wrong upstream password is the upstream denying access, said plainly.
    std::fs::write(&secret, "wrong").unwrap();
    let m2 = Wharf::start_config(common::config(&dir.path().join("mirror2"), &extra)).await;
    let r = http()
        .get(m2.url("/v2/distro/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(common::error_code(r).await, "DENIED");
    m2.stop().await;
    m.stop().await;
}
