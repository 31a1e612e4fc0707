//! The mirror in front of CNCF Distribution 2.8.2 (Debian's `docker-registry`)
//! with htpasswd auth: the Basic challenge path of the upstream client, and
//! HEAD revalidation against another registry implementation.

mod common;

use std::process::{Child, Command, Stdio};

use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::{Wharf, bytes, have_tool, http};

struct Distribution(Child);

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Distribution with htpasswd auth; returns it and its base URL.
fn start_distribution(dir: &std::path::Path) -> (Distribution, String) {
    let pw = dir.join("htpasswd");
    common::htpasswd(&pw, &[("mirror", "mirror-pw")]);
    for _ in 0..5 {
        let port = common::nginx::free_port();
        let cfg = dir.join("registry.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: dist\n    path: {}\n",
                dir.join("data").display(),
                pw.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if reqwest::blocking::get(format!("{base}/v2/")).is_ok() {
                return (Distribution(child), base);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not come up"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    panic!("docker-registry could not start");
}

/// Pushes with Distribution's absolute, stateful Location URLs.
async fn push(base: &str, repo: &str, tag: &str, img: &Image) {
    let c = http();
    for (d, b) in img.blobs() {
        let r = c
            .post(format!("{base}/v2/{repo}/blobs/uploads/"))
            .basic_auth("mirror", Some("mirror-pw"))
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
            .put(format!("{loc}{sep}digest={d}"))
            .basic_auth("mirror", Some("mirror-pw"))
            .body(b.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .basic_auth("mirror", Some("mirror-pw"))
        .header("content-type", OCI_MANIFEST)
        .body(img.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_in_front_of_distribution_with_basic_auth() {
    if !have_tool("docker-registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ddir = dir.path().join("dist");
    std::fs::create_dir_all(&ddir).unwrap();
    let (_dist, base) = tokio::task::spawn_blocking(move || start_distribution(&ddir))
        .await
        .unwrap();
    let img = Image::new(vec![
        tar_with_file("d", &bytes(3 << 20, 31)),
        tar_with_file("e", b"two"),
    ]);
    push(&base, "library/distro", "v1", &img).await;

    let secret = dir.path().join("pw");
    std::fs::write(&secret, "mirror-pw").unwrap();
    let extra = format!(
        "[[upstream]]\nname = \"docker.io\"\nurl = \"{base}\"\ndefault = true\nmanifest_ttl = \"0s\"\nusername = \"mirror\"\npassword_file = {:?}\n",
        secret.display().to_string()
    );
    let m = Wharf::start_config(common::config(&dir.path().join("mirror"), &extra)).await;
    let get = |p: String| {
        let c = http();
        let url = m.url(&p);
        async move {
            c.get(url)
                .header("accept", OCI_MANIFEST)
                .send()
                .await
                .unwrap()
        }
    };
    let r = get("/v2/distro/manifests/v1".into()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(r.bytes().await.unwrap().as_ref(), img.manifest.as_slice());
    // TTL 0: revalidated by HEAD against Distribution, unchanged, served from cache.
    let r = get("/v2/distro/manifests/v1".into()).await;
    assert_eq!(r.headers()["x-cache"], "HIT");
    for (d, b) in img.blobs() {
        let r = get(format!("/v2/distro/blobs/{d}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), b);
    }
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
