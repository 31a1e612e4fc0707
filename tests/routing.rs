//! Name routing over HTTP: pushes claim free names (DESIGN rule 4), mirrored
//! names refuse writes with a message saying where to push, `[hosted] only`
//! hosts everything, and names that cannot be mirrored are refused, not hosted.

mod common;

use common::{Wharf, error_code, http, push_blob};

/// Docker Hub is the default upstream, unreachable (port 9): nothing here may
/// depend on it.
const DOCKER_HUB_DEFAULT: &str = "[[upstream]]\nname = \"docker.io\"\nurl = \"http://127.0.0.1:9\"\ndefault = true\n[[upstream]]\nname = \"ghcr.io\"\nurl = \"http://127.0.0.1:9\"\n[hosted]\nprefixes = [\"team/\"]\n";

/// The status of a blob HEAD, from loopback or (with `forwarded_for`) as a
/// forwarded LAN client.
async fn head_status(w: &Wharf, path: &str, forwarded_for: Option<&str>) -> u16 {
    let mut r = http().head(w.url(path));
    if let Some(ip) = forwarded_for {
        r = r.header("x-forwarded-for", ip);
    }
    r.send().await.unwrap().status().as_u16()
}

async fn denied_message(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "DENIED");
    v["errors"][0]["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_claim_free_names_and_refuse_mirrored_ones() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start_with(dir.path(), DOCKER_HUB_DEFAULT).await;
    push_blob(&w, "team/app", b"hosted").await;
    // Names no upstream claims explicitly are claimed by the push (rule 4).
    let d = push_blob(&w, "myapp", b"claimed").await;
    push_blob(&w, "myhub/nginx", b"claimed too").await;
    // ... and are hosted from then on: reads are local, not Docker Hub's.
    let r = http()
        .get(w.url(&format!("/v2/myapp/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"claimed");
    for name in [
        "library/nginx",
        "docker.io/library/nginx",
        "docker.io/myapp",
        "ghcr.io/org/app",
    ] {
        let r = http()
            .post(w.url(&format!("/v2/{name}/blobs/uploads/")))
            .send()
            .await
            .unwrap();
        let msg = denied_message(r).await;
        assert!(msg.contains("\"team/\""), "{name}: {msg}");
        if name == "library/nginx" {
            assert!(msg.contains("reserved"), "{msg}");
        }
    }
    // containerd's ns= routes a hosted-looking name upstream too: read-only.
    let r = http()
        .delete(w.url("/v2/team/app/manifests/latest?ns=ghcr.io"))
        .send()
        .await
        .unwrap();
    assert!(denied_message(r).await.contains("read-only"));
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
async fn a_pusher_checks_blobs_of_a_new_name_locally() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start_with(dir.path(), DOCKER_HUB_DEFAULT).await;
    let d = common::digest(b"not here yet");
    // skopeo/podman/buildah HEAD every blob before uploading: for a name that a
    // push would claim, the local store answers (the upstream is unreachable,
    // so asking it would be a 503 and the push would give up).
    assert_eq!(
        head_status(&w, &format!("/v2/newname/blobs/{d}"), None).await,
        404
    );
    // A name that cannot be claimed asks its upstream; when that is down, a
    // caller who may push gets "not here" (404), so its upload goes on to be
    // refused with advice instead of the push dying on a 503 ...
    let library = format!("/v2/library/newname/blobs/{d}");
    assert_eq!(head_status(&w, &library, None).await, 404);
    // ... while a mirror reader still learns that the upstream is down.
    assert_eq!(head_status(&w, &library, Some("192.168.1.9")).await, 503);
    // A LAN client without push rights is not a pusher: its HEAD is a mirror read.
    let newname = format!("/v2/newname/blobs/{d}");
    assert_eq!(head_status(&w, &newname, Some("192.168.1.9")).await, 503);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn names_pushed_before_a_prefix_change_stay_hosted() {
    let dir = tempfile::tempdir().unwrap();
    // No default upstream: everything unqualified is hosted.
    let w = Wharf::start(dir.path()).await;
    push_blob(&w, "legacy/app", b"old").await;
    w.stop().await;
    // Now Docker Hub is the default, legacy/ is no prefix and pushes claim
    // nothing: legacy/app was pushed here, so it stays hosted (rule 3); a new
    // name goes upstream and refuses the push.
    let strict = format!("{DOCKER_HUB_DEFAULT}claim_on_push = false\n");
    let cfg = common::config(&dir.path().join("data"), &strict);
    let w = Wharf::start_config(cfg).await;
    push_blob(&w, "legacy/app", b"still hosted").await;
    let r = http()
        .post(w.url("/v2/legacy/other/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert!(denied_message(r).await.contains("claim_on_push = false"));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hosted_only_is_a_plain_private_registry() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let text = format!(
        "[hosted]\nonly = true\n[storage]\nroot = {:?}\n",
        root.display().to_string()
    );
    let cfg = wharf::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    assert!(cfg.upstream.is_empty(), "no Docker Hub preset");
    let w = Wharf::start_config(cfg).await;
    for name in ["nginx", "library/nginx", "docker.io/library/nginx"] {
        let d = push_blob(&w, name, name.as_bytes()).await;
        let r = http()
            .get(w.url(&format!("/v2/{name}/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
    }
    // A miss is a local 404, never an upstream call.
    let r = http()
        .get(w.url("/v2/alpine/manifests/latest?ns=docker.io"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    w.stop().await;
    // Upstreams beside `only` are refused, not ignored.
    let bad = format!("{text}[[upstream]]\nname = \"docker.io\"\nurl = \"https://x\"\n");
    let e = wharf::config::Config::parse(&bad, std::path::Path::new("t.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("only") && e.contains("[[upstream]]"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn names_too_long_to_mirror_are_invalid_not_pushable() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start_with(dir.path(), DOCKER_HUB_DEFAULT).await;
    // docker.io/<245 characters> is a valid name, but its mirrored name
    // docker.io/library/<245> is longer than 255: it must not become hosted.
    let name = format!("docker.io/{}", "a".repeat(245));
    for r in [
        http()
            .post(w.url(&format!("/v2/{name}/blobs/uploads/")))
            .send()
            .await
            .unwrap(),
        http()
            .get(w.url(&format!("/v2/{name}/manifests/latest")))
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(r.status(), 400);
        assert_eq!(error_code(r).await, "NAME_INVALID");
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_named_like_mirrored_content_are_warned_about_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let text = format!(
        "[hosted]\nonly = true\n[storage]\nroot = {:?}\n",
        root.display().to_string()
    );
    let cfg = wharf::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
    let w = Wharf::start_config(cfg).await;
    push_blob(&w, "docker.io/library/nginx", b"pushed, not docker hub's").await;
    w.stop().await;
    // `only` turned off, Docker Hub the default again: that name is now a
    // mirrored spelling, and the operator is told at start.
    let p = common::WharfProcess::spawn(
        dir.path(),
        &root,
        "[[upstream]]\nname = \"docker.io\"\nurl = \"http://127.0.0.1:9\"\ndefault = true\n",
    );
    let line = tokio::task::block_in_place(|| p.wait_log("named like mirrored content"));
    assert!(line.contains("docker.io/library/nginx"), "{line}");
}
