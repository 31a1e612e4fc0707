//! Name routing over HTTP: hosted prefixes take pushes, mirrored names are
//! read-only with a message saying where to push.

mod common;

use common::{Wharf, error_code, http, push_blob};

const DOCKER_HUB_DEFAULT: &str = "[[upstream]]\nname = \"docker.io\"\nurl = \"http://127.0.0.1:9\"\ndefault = true\n[[upstream]]\nname = \"ghcr.io\"\nurl = \"http://127.0.0.1:9\"\n[hosted]\nprefixes = [\"team/\"]\n";

#[tokio::test(flavor = "multi_thread")]
async fn pushes_go_to_hosted_names_only() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start_with(dir.path(), DOCKER_HUB_DEFAULT).await;
    push_blob(&w, "team/app", b"hosted").await;
    for name in [
        "myapp",
        "library/nginx",
        "docker.io/library/nginx",
        "ghcr.io/org/app",
    ] {
        let r = http()
            .post(w.url(&format!("/v2/{name}/blobs/uploads/")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{name}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["errors"][0]["code"], "UNSUPPORTED");
        let msg = v["errors"][0]["message"].as_str().unwrap();
        assert!(
            msg.contains("read-only") && msg.contains("\"team/\""),
            "{msg}"
        );
    }
    // containerd's ns= routes a hosted-looking name upstream too.
    let r = http()
        .delete(w.url("/v2/team/app/manifests/latest?ns=ghcr.io"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "UNSUPPORTED");
    // Without ns it is the hosted repo.
    let r = http()
        .delete(w.url("/v2/team/app/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn names_pushed_before_a_prefix_change_stay_hosted() {
    let dir = tempfile::tempdir().unwrap();
    // No default upstream: everything unqualified is hosted.
    let w = Wharf::start(dir.path()).await;
    push_blob(&w, "legacy/app", b"old").await;
    w.stop().await;
    // Now Docker Hub is the default and legacy/ is no prefix: legacy/app was pushed
    // here, so it stays hosted (rule 3); a new name goes upstream.
    let cfg = common::config(&dir.path().join("data"), DOCKER_HUB_DEFAULT);
    let w = Wharf::start_config(cfg).await;
    push_blob(&w, "legacy/app", b"still hosted").await;
    let r = http()
        .post(w.url("/v2/legacy/other/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    w.stop().await;
}
