//! An upstream that dies in the middle of a blob: the client gets an error (never
//! a complete 200), nothing is kept, and the next request fails fast and clearly.
//! nginx, rate-limited, stands in front of the upstream so the death lands
//! mid-transfer, and is killed with SIGKILL.

mod common;

use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::upstreams::{hub, mirror_config, publish};
use common::{Wharf, bytes, digest, have_tool, http};

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_dying_mid_blob_keeps_nothing_and_fails_cleanly() {
    if !have_tool("nginx") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let layer = tar_with_file("slow", &bytes(16 << 20, 51));
    let img = Image::new(vec![layer.clone()]);
    publish(&hub, "library/dying", "v1", &img).await;

    let location = format!(
        "      proxy_pass http://{};\n      proxy_set_header Host $http_host;\n      proxy_http_version 1.1;\n      limit_rate 2m;",
        hub.addr
    );
    let (nginx, port) = common::nginx::front(dir.path().join("nginx"), location).await;
    let extra = mirror_config(&format!("http://127.0.0.1:{port}"), "", "");
    let m = Wharf::start_config(common::config(&dir.path().join("mirror"), &extra)).await;
    let r = http()
        .get(m.url("/v2/dying/manifests/v1"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let d = digest(&layer);
    let mut resp = http()
        .get(m.url(&format!("/v2/dying/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-length"],
        layer.len().to_string().as_str()
    );
    // Bytes are flowing (at 2 MiB/s the 16 MiB blob is far from done)...
    let mut got = 0usize;
    while got < (512 << 10) {
        got += resp.chunk().await.unwrap().expect("more bytes").len();
    }
    // ...when the upstream dies.
    drop(nginx);
    let mut failed = false;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => got += c.len(),
            Ok(None) => break,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(
        failed,
        "the client got a complete response ({got} bytes) from a dead upstream"
    );
    assert!(got < layer.len());
    let cached = m.root.join("blobs/sha256").join(&d[7..9]).join(&d[7..]);
    assert!(!cached.exists(), "a partial blob was kept");
    assert_eq!(
        std::fs::read_dir(m.root.join("tmp")).unwrap().count(),
        0,
        "partial data left in tmp/"
    );
    // The next request fails with a clear upstream error, quickly.
    let started = std::time::Instant::now();
    let r = http()
        .get(m.url(&format!("/v2/dying/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("upstream"),
        "{v}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    m.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_rate_limit_reaches_the_client_with_its_retry_after() {
    if !have_tool("nginx") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A registry whose pull limit is used up (as Docker Hub answers then).
    let location = "      add_header Retry-After 120 always;\n      return 429 '{\"errors\":[{\"code\":\"TOOMANYREQUESTS\"}]}';".to_owned();
    let (_nginx, port) = common::nginx::front(dir.path().join("nginx"), location).await;
    let extra = mirror_config(&format!("http://127.0.0.1:{port}"), "", "");
    let m = Wharf::start_config(common::config(&dir.path().join("mirror"), &extra)).await;
    let started = std::time::Instant::now();
    let r = http()
        .get(m.url("/v2/limited/manifests/latest"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "120");
    assert_eq!(common::error_code(r).await, "TOOMANYREQUESTS");
    // A long Retry-After is passed on, not waited out.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    m.stop().await;
}
