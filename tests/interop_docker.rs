//! `docker push` and `docker pull` against wharf, through a private dockerd that
//! this test starts (vfs storage, no iptables, no bridge, its own directories).

mod common;

use common::dockerd::Dockerd;
use common::image::{Image, docker_archive, tar_with_file};
use common::{Wharf, bytes, have_tool, http};

#[tokio::test(flavor = "multi_thread")]
async fn docker_push_and_pull() {
    if !have_tool("dockerd") || !have_tool("docker") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let ddir = dir.path().join("docker");
    std::fs::create_dir_all(&ddir).unwrap();
    let host = w.addr.to_string();
    let img = Image::new(vec![
        tar_with_file("big.bin", &bytes(3 << 20, 9)),
        tar_with_file("hello.txt", b"hello from wharf"),
    ]);
    let archive = dir.path().join("image.tar");
    std::fs::write(&archive, docker_archive(&img, "local/app:v1")).unwrap();

    let target = format!("{host}/team/app:v1");
    let pushed = tokio::task::spawn_blocking(move || {
        let d = Dockerd::start(&ddir);
        let digest = d.load_tag_push(&archive, &target);
        d.pull_and_check(&host, "team/app", &target, &digest);
        // The pulled image is the pushed one: same config (image id).
        let id = d.ok(&["inspect", "--format", "{{.Id}}", &target]);
        (digest, id.trim().to_owned())
    })
    .await
    .unwrap();
    assert_eq!(pushed.1, common::digest(&img.config));
    let r = http()
        .head(w.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], pushed.0.as_str());
    w.stop().await;
}

fn auth_config(dir: &std::path::Path, scheme: &str) -> String {
    let pw = dir.join("htpasswd");
    common::htpasswd(&pw, &[("ci", "ci-pw")]);
    format!(
        "[auth]\nhtpasswd = {:?}\nscheme = \"{scheme}\"\nanonymous_pull = false\n",
        pw.display().to_string()
    )
}

/// Logs in, pushes, logs out, is refused a pull, logs in again and pulls.
fn login_push_pull(d: &Dockerd, host: &str, archive: &std::path::Path) -> String {
    let target = format!("{host}/team/app:v1");
    let out = d.login(host, "ci", "wrong");
    assert!(
        !out.status.success(),
        "a wrong password must fail docker login"
    );
    let out = d.login(host, "ci", "ci-pw");
    assert!(
        out.status.success(),
        "docker login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = d.load_tag_push(archive, &target);
    d.ok(&["logout", host]);
    let out = d.docker(&["pull", &target]);
    assert!(!out.status.success(), "anonymous pull must be refused");
    assert!(d.login(host, "ci", "ci-pw").status.success());
    d.pull_and_check(host, "team/app", &target, &digest);
    digest
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_login_push_pull_with_basic_auth_over_tls() {
    if !have_tool("dockerd") || !have_tool("docker") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = common::certs::pki("docker test CA");
    let (cert, key) = pki.write(dir.path());
    let extra = format!(
        "{}[server]\ntls_cert = {:?}\ntls_key = {:?}\n",
        auth_config(dir.path(), "basic"),
        cert.display().to_string(),
        key.display().to_string()
    );
    let w = Wharf::launch(common::config(&dir.path().join("data"), &extra)).await;
    let host = w.addr.to_string();
    let _trust = common::dockerd::CertsD::install(&host, &pki.ca_pem);
    let img = Image::new(vec![tar_with_file("tls.txt", b"over https")]);
    let archive = dir.path().join("image.tar");
    std::fs::write(&archive, docker_archive(&img, "local/app:v1")).unwrap();
    let ddir = dir.path().join("docker");
    std::fs::create_dir_all(&ddir).unwrap();
    let h = host.clone();
    let digest =
        tokio::task::spawn_blocking(move || login_push_pull(&Dockerd::start(&ddir), &h, &archive))
            .await
            .unwrap();
    let r = pki
        .client()
        .head(w.url("/v2/team/app/manifests/v1"))
        .basic_auth("ci", Some("ci-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_login_push_pull_with_tokens() {
    if !have_tool("dockerd") || !have_tool("docker") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start_config_unchecked(common::config(
        &dir.path().join("data"),
        &auth_config(dir.path(), "token"),
    ))
    .await;
    let host = w.addr.to_string();
    let img = Image::new(vec![tar_with_file("token.txt", b"with bearer tokens")]);
    let archive = dir.path().join("image.tar");
    std::fs::write(&archive, docker_archive(&img, "local/app:v1")).unwrap();
    let ddir = dir.path().join("docker");
    std::fs::create_dir_all(&ddir).unwrap();
    let h = host.clone();
    let digest =
        tokio::task::spawn_blocking(move || login_push_pull(&Dockerd::start(&ddir), &h, &archive))
            .await
            .unwrap();
    let r = http()
        .get(w.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "anonymous pulls are off");
    let v: serde_json::Value = http()
        .get(w.url("/token?service=wharf&scope=repository:team/app:pull"))
        .basic_auth("ci", Some("ci-pw"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = http()
        .head(w.url("/v2/team/app/manifests/v1"))
        .bearer_auth(v["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    w.stop().await;
}
