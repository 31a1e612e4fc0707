//! wharf behind nginx terminating TLS, the setup where `registry:2` users hit
//! "unknown blob": uploads work because wharf's Location headers are relative.
//! Behind the proxy every client arrives from loopback: a forwarded request
//! gets no loopback privileges, and with `trusted_proxies` limits key on the
//! real client.

mod common;

use std::path::Path;

use common::image::{Image, OCI_MANIFEST, tar_with_file, write_layout};
use common::nginx::{self, Nginx};
use common::{Wharf, bytes, digest, have_tool};

/// nginx terminating TLS in front of `upstream`.
fn start_nginx(dir: &Path, upstream: &str, cert: &Path, key: &Path, ca: &str) -> (Nginx, u16) {
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    let servers = |ports: &[u16]| {
        format!(
            r#"  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    client_max_body_size 0;
    location / {{
      proxy_pass http://{upstream};
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_http_version 1.1;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_read_timeout 300;
    }}
  }}"#,
            port = ports[0],
            cert = cert.display(),
            key = key.display(),
        )
    };
    let ready = |ports: &[u16]| {
        client
            .get(format!("https://127.0.0.1:{}/v2/", ports[0]))
            .send()
            .is_ok()
    };
    let (nginx, ports) = nginx::start(dir, 1, servers, ready);
    (nginx, ports[0])
}

#[tokio::test(flavor = "multi_thread")]
async fn push_and_pull_through_nginx_terminating_tls() {
    if !have_tool("nginx") || !have_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // First without users: loopback clients may push, but nginx is loopback too.
    let w = Wharf::start(dir.path()).await;
    let pki = common::certs::pki("proxy CA");
    let (cert, key) = pki.write(dir.path());
    let ndir = dir.path().join("nginx");
    std::fs::create_dir_all(&ndir).unwrap();
    let upstream = w.addr.to_string();
    let ca = pki.ca_pem.clone();
    let (nd, c2, k2) = (ndir.clone(), cert.clone(), key.clone());
    let (_nginx, port) =
        tokio::task::spawn_blocking(move || start_nginx(&nd, &upstream, &c2, &k2, &ca))
            .await
            .unwrap();
    let proxy = format!("127.0.0.1:{port}");

    let c = pki.client();
    let r = c
        .post(format!("https://{proxy}/v2/behind/proxy/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a forwarded request is never loopback");
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("wharf user add")
    );
    let r = c
        .get(format!("https://{proxy}/_wharf/v1/usage"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "nor is the admin API open through the proxy"
    );
    let addr = w.addr;
    w.stop().await;

    // Now with a user, nginx trusted as the proxy.
    let pw = dir.path().join("htpasswd");
    common::htpasswd(&pw, &[("pusher", "pusher-pw")]);
    let extra = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[auth]\nhtpasswd = {:?}\n",
        pw.display().to_string()
    );
    let w = Wharf::restart_at(common::config(&dir.path().join("data"), &extra), addr).await;
    let c = pki.client();
    let r = c
        .post(format!("https://{proxy}/v2/behind/proxy/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A chunked push by hand: every Location must be usable through the proxy.
    let r = c
        .post(format!("https://{proxy}/v2/behind/proxy/blobs/uploads/"))
        .basic_auth("pusher", Some("pusher-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        loc.starts_with('/'),
        "relative Location through the proxy: {loc}"
    );
    let data = bytes(3 << 20, 5);
    let r = c
        .patch(format!("https://{proxy}{loc}"))
        .basic_auth("pusher", Some("pusher-pw"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = c
        .put(format!("https://{proxy}{loc}?digest={}", digest(&data)))
        .basic_auth("pusher", Some("pusher-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // skopeo through the proxy, trusting its CA.
    let certs = dir.path().join("skopeo-certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca.crt"), &pki.ca_pem).unwrap();
    let img = Image::new(vec![
        tar_with_file("p", &bytes(4 << 20, 6)),
        tar_with_file("q", b"proxied"),
    ]);
    let src = dir.path().join("src");
    let top = write_layout(&src, "v1", &[&img], &img.manifest, OCI_MANIFEST);
    let run = |args: Vec<String>| async move {
        let out = tokio::process::Command::new("skopeo")
            .arg("--insecure-policy")
            .args(&args)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let certs = certs.display().to_string();
    run(vec![
        "copy".into(),
        "--preserve-digests".into(),
        "--dest-creds=pusher:pusher-pw".into(),
        format!("--dest-cert-dir={certs}"),
        format!("oci:{}:v1", src.display()),
        format!("docker://{proxy}/behind/proxy:v1"),
    ])
    .await;
    let raw = run(vec![
        "inspect".into(),
        "--raw".into(),
        format!("--cert-dir={certs}"),
        format!("docker://{proxy}/behind/proxy:v1"),
    ])
    .await;
    assert_eq!(digest(raw.as_bytes()), top);
    let back = dir.path().join("back");
    run(vec![
        "copy".into(),
        "--preserve-digests".into(),
        format!("--src-cert-dir={certs}"),
        format!("docker://{proxy}/behind/proxy:v1"),
        format!("oci:{}:v1", back.display()),
    ])
    .await;
    for (d, b) in img.blobs() {
        assert_eq!(
            std::fs::read(back.join("blobs/sha256").join(&d[7..])).unwrap(),
            b
        );
    }
    w.stop().await;
}
