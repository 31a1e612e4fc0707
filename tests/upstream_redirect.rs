//! Docker Hub serves blobs by redirecting to a CDN on another host. The mirror
//! must follow the redirect without sending its upstream credentials there, and
//! must record Docker Hub's `ratelimit-remaining`. nginx plays both the registry
//! front (which redirects blob GETs) and the CDN (which logs any Authorization).

mod common;

use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::upstreams::mirror_config;
use common::{As, Wharf, bytes, digest, have_tool, http};
use reqwest::Method;

#[tokio::test(flavor = "multi_thread")]
async fn credentials_never_follow_a_redirect_to_another_host() {
    if !have_tool("nginx") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A private upstream: only the mirror's account may pull.
    let pw = dir.path().join("hub-htpasswd");
    common::htpasswd(&pw, &[("mirror", "mirror-secret")]);
    let extra = format!(
        "[auth]\nhtpasswd = {:?}\nscheme = \"token\"\nanonymous_pull = false\n",
        pw.display().to_string()
    );
    let hub = Wharf::start_config_unchecked(common::config(&dir.path().join("hub"), &extra)).await;
    let layer = tar_with_file("cdn", &bytes(2 << 20, 21));
    let img = Image::new(vec![layer.clone()]);
    let pusher = As::user(&hub, "mirror", "mirror-secret");
    for (_, b) in img.blobs() {
        assert_eq!(pusher.push_blob("library/cdn", b).await, 201);
    }
    let r = pusher
        .req(Method::PUT, "/v2/library/cdn/manifests/v1")
        .header("content-type", OCI_MANIFEST)
        .body(img.manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let ndir = dir.path().join("nginx");
    std::fs::create_dir_all(&ndir).unwrap();
    let hub_addr = hub.addr.to_string();
    let hub_blobs = hub.root.join("blobs/sha256");
    let logs = ndir.clone();
    let servers = move |p: &[u16]| {
        let (front, cdn) = (p[0], p[1]);
        format!(
            r#"  log_format withauth '$request_method $uri auth=[$http_authorization]';
  server {{
    listen 127.0.0.1:{front};
    access_log {logs}/front.log withauth;
    add_header ratelimit-remaining "42;w=21600" always;
    location ~ "^/v2/.+/blobs/sha256:([0-9a-f]{{64}})$" {{
      return 307 http://127.0.0.1:{cdn}/cdn/$1;
    }}
    location / {{
      proxy_pass http://{hub_addr};
      proxy_set_header Host $http_host;
      proxy_http_version 1.1;
    }}
  }}
  server {{
    listen 127.0.0.1:{cdn};
    access_log {logs}/cdn.log withauth;
    location ~ "^/cdn/([0-9a-f]{{2}})([0-9a-f]{{62}})$" {{
      default_type application/octet-stream;
      alias {blobs}/$1/$1$2;
    }}
  }}"#,
            logs = logs.display(),
            blobs = hub_blobs.display(),
        )
    };
    let ready = |p: &[u16]| {
        reqwest::blocking::get(format!("http://127.0.0.1:{}/v2/", p[0])).is_ok()
            && reqwest::blocking::get(format!("http://127.0.0.1:{}/cdn/00", p[1])).is_ok()
    };
    let nd = ndir.clone();
    let (_nginx, ports) =
        tokio::task::spawn_blocking(move || common::nginx::start(&nd, 2, servers, ready))
            .await
            .unwrap();

    let secret = dir.path().join("upstream.password");
    std::fs::write(&secret, "mirror-secret\n").unwrap();
    let keys = format!(
        "username = \"mirror\"\npassword_file = {:?}\n",
        secret.display().to_string()
    );
    let extra = mirror_config(&format!("http://127.0.0.1:{}", ports[0]), &keys, "");
    let m = Wharf::start_config(common::config(&dir.path().join("mirror"), &extra)).await;
    let r = http()
        .get(m.url("/v2/library/cdn/manifests/v1"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let d = digest(&layer);
    let got = http()
        .get(m.url(&format!("/v2/library/cdn/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(digest(&got.bytes().await.unwrap()), d);

    let front = std::fs::read_to_string(ndir.join("front.log")).unwrap();
    let cdn = std::fs::read_to_string(ndir.join("cdn.log")).unwrap();
    assert!(
        front
            .lines()
            .any(|l| l.contains("/blobs/") && l.contains("auth=[Bearer ")),
        "the upstream got the token:\n{front}"
    );
    assert!(
        cdn.lines().any(|l| l.contains(&d[7..])),
        "the blob came from the CDN:\n{cdn}"
    );
    for l in cdn.lines() {
        assert!(l.ends_with("auth=[-]"), "credentials reached the CDN: {l}");
    }
    let text = http()
        .get(m.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("wharf_upstream_ratelimit_remaining{upstream=\"docker.io\"} 42"),
        "{text}"
    );
    m.stop().await;
    hub.stop().await;
}
