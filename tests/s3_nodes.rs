//! Several wharf nodes on one bucket (DESIGN's "Multi-node (S3)"), each with
//! its own data directory, on a real S3 protocol server (moto): a push on one
//! node pulls from another at once by digest and within the tag TTL by tag;
//! a push whose requests a load balancer spreads over nodes works; tags
//! moved or deleted on one node follow on the others; a node started on an
//! empty data directory serves what the bucket holds, routed as hosted
//! although a default upstream is configured; a Bearer token from one node
//! is accepted by the others (the key in the bucket), and a key object that
//! is not a key stops start-up; an upload asked of a node that does not
//! hold it is refused and logged, and completes on its own node.

mod common;

use std::path::Path;
use std::time::Duration;

use common::client::{get_blob, get_manifest, push};
use common::image::{Image, OCI_INDEX, OCI_MANIFEST, index};
use common::s3::{S3Server, config, node_config, server};
use common::{Wharf, bytes, digest, http};
use wharf::config::Config;

const BUCKET: &str = "wharf-nodes";

async fn nodes(s3: &S3Server, dir: &Path, n: usize, hub: Option<&str>) -> Vec<Wharf> {
    let mut out = Vec::new();
    for i in 0..n {
        let root = dir.join(format!("node{i}"));
        out.push(Wharf::start_config(node_config(s3, BUCKET, &root, hub)).await);
    }
    out
}

/// Every blob and the manifest of `img` pull from `w` with the right bytes.
async fn pulls_whole(w: &Wharf, repo: &str, img: &Image) {
    let (s, m) = get_manifest(w, repo, &digest(&img.manifest)).await;
    assert_eq!(s, 200);
    assert_eq!(m, img.manifest);
    for (d, b) in img.blobs() {
        let (s, body) = get_blob(w, repo, &d).await;
        assert_eq!(s, 200, "{repo}@{d}");
        assert_eq!(body, b, "{repo}@{d}");
    }
}

/// Waits (at most a few TTLs) until `repo:tag` on `w` answers `want`.
async fn tag_becomes(w: &Wharf, repo: &str, tag: &str, want: (u16, Option<&[u8]>)) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (s, body) = get_manifest(w, repo, tag).await;
        if s == want.0 && want.1.is_none_or(|b| b == body.as_slice()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{repo}:{tag} is still {s} on {}",
            w.base
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_on_node_one_pulls_from_node_three_by_digest_at_once_and_by_tag_within_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let n = nodes(&s3, dir.path(), 3, None).await;
    let img = Image::new(vec![bytes(40_000, 1), bytes(9 * 1024 * 1024, 2)]);
    push(&n[0], "team/app", "v1", &img).await;

    // By digest: at once, manifest and every blob.
    pulls_whole(&n[2], "team/app", &img).await;
    // By tag: within the TTL (it is new to node 3, so at once as well).
    tag_becomes(&n[2], "team/app", "v1", (200, Some(&img.manifest))).await;
    // Tags list and catalog on node 2, which never saw the push.
    let tags: serde_json::Value = http()
        .get(n[1].url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let cat: serde_json::Value = http()
            .get(n[1].url("/v2/_catalog"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if cat["repositories"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r == "team/app"))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "catalog: {cat}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The tag moves on node 2; node 1 and node 3 follow within the TTL.
    let img2 = Image::new(vec![bytes(30_000, 3)]);
    push(&n[1], "team/app", "v1", &img2).await;
    for w in [&n[0], &n[2]] {
        tag_becomes(w, "team/app", "v1", (200, Some(&img2.manifest))).await;
    }
    // The tag is deleted on node 3; the others answer 404 within the TTL,
    // and the first image still pulls by digest everywhere.
    let r = http()
        .delete(n[2].url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    for w in &n {
        tag_becomes(w, "team/app", "v1", (404, None)).await;
        pulls_whole(w, "team/app", &img).await;
    }
    // The first image deleted by digest on node 3: every node, each of which
    // has taken it in by now, answers 404 for it within the TTL.
    let d = digest(&img.manifest);
    let r = http()
        .delete(n[2].url(&format!("/v2/team/app/manifests/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    for w in &n {
        tag_becomes(w, "team/app", &d, (404, None)).await;
    }
    for w in n {
        w.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_spread_over_nodes_by_a_load_balancer_works_and_an_index_pulls_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let n = nodes(&s3, dir.path(), 3, None).await;
    let amd = Image::for_platform(vec![bytes(20_000, 11)], "amd64");
    let arm = Image::for_platform(vec![bytes(21_000, 12)], "arm64");
    // Each blob through node 1; node 2 answers the client's HEADs of them.
    for img in [&amd, &arm] {
        for (d, b) in img.blobs() {
            common::push_blob(&n[0], "team/multi", b).await;
            let r = http()
                .head(n[1].url(&format!("/v2/team/multi/blobs/{d}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "HEAD of {d} on another node");
            assert_eq!(r.headers()["content-length"], b.len().to_string().as_str());
        }
    }
    // Platform manifests through node 2, the index through node 3.
    for img in [&amd, &arm] {
        let d = digest(&img.manifest);
        let r = common::put_manifest(&n[1], "team/multi", &d, OCI_MANIFEST, &img.manifest).await;
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
    }
    let idx = index(&[(&amd, "amd64"), (&arm, "arm64")]);
    let r = common::put_manifest(&n[2], "team/multi", "latest", OCI_INDEX, &idx).await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);

    // Node 1 pulls the index by tag, then each platform, whole.
    tag_becomes(&n[0], "team/multi", "latest", (200, Some(&idx))).await;
    for img in [&amd, &arm] {
        pulls_whole(&n[0], "team/multi", img).await;
    }
    // A blob nobody pushed is unknown everywhere (no record, no object).
    let stranger = digest(b"never pushed");
    for w in &n {
        assert_eq!(get_blob(w, "team/multi", &stranger).await.0, 404);
    }
    for w in n {
        w.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_on_an_empty_data_directory_serves_what_the_bucket_holds_as_hosted() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    // A default upstream that does not have the name: routing it there
    // would answer 404 (or worse, another image).
    std::fs::create_dir_all(dir.path().join("hub")).unwrap();
    let hub = common::upstreams::hub(&dir.path().join("hub")).await;
    let first = Wharf::start_config(node_config(
        &s3,
        BUCKET,
        &dir.path().join("first"),
        Some(&hub.base),
    ))
    .await;
    let img = Image::new(vec![bytes(50_000, 21)]);
    push(&first, "bun", "latest", &img).await;
    first.stop().await;

    let fresh_root = dir.path().join("fresh");
    assert!(!fresh_root.exists());
    let fresh = Wharf::start_config(node_config(&s3, BUCKET, &fresh_root, Some(&hub.base))).await;
    // From its first request: the name is hosted here, by tag and digest.
    let (s, m) = get_manifest(&fresh, "bun", "latest").await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&m));
    assert_eq!(m, img.manifest);
    pulls_whole(&fresh, "bun", &img).await;
    fresh.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signature_pushed_on_one_node_is_listed_by_the_referrers_api_of_another() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let n = nodes(&s3, dir.path(), 2, None).await;
    let img = Image::new(vec![bytes(10_000, 31)]);
    push(&n[0], "team/signed", "v1", &img).await;
    let subject = digest(&img.manifest);
    let empty = b"{}".to_vec();
    let empty_d = common::push_blob(&n[0], "team/signed", &empty).await;
    let sig = b"signature".to_vec();
    let sig_d = common::push_blob(&n[0], "team/signed", &sig).await;
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_d, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sig_d, "size": sig.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": img.manifest.len()}
    }))
    .unwrap();
    let d = digest(&m);
    let r = common::put_manifest(&n[0], "team/signed", &d, OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), 201);
    let found = referrer_digests(&n[1], "team/signed", &subject).await;
    assert_eq!(found, vec![d.clone()]);
    // Deleted on node 1: gone from node 2's listing too.
    let r = http()
        .delete(n[0].url(&format!("/v2/team/signed/manifests/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let listed = referrer_digests(&n[1], "team/signed", &subject).await;
        if listed.is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{listed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for w in n {
        w.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_pushed_on_one_node_routes_as_hosted_on_another_at_once_despite_a_default_upstream()
{
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    std::fs::create_dir_all(dir.path().join("hub")).unwrap();
    let hub = common::upstreams::hub(&dir.path().join("hub")).await;
    // Both nodes run before the push: node 2 learns the name from the
    // request itself, not from its start-up listing.
    let n = nodes(&s3, dir.path(), 2, Some(&hub.base)).await;
    let img = Image::new(vec![bytes(12_000, 41)]);
    push(&n[0], "bun", "latest", &img).await;
    let (s, m) = get_manifest(&n[1], "bun", "latest").await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&m));
    assert_eq!(m, img.manifest);
    pulls_whole(&n[1], "bun", &img).await;
    for w in n {
        w.stop().await;
    }
    hub.stop().await;
}

/// A node with users and the token scheme (no anonymous pulls) on `bucket`
/// under `prefix`.
fn login_node_config(s3: &S3Server, root: &Path, users: &Path, prefix: &str) -> Config {
    let sections = format!(
        "[hosted]\nonly = true\n[auth]\nhtpasswd = {:?}\nscheme = \"token\"\nanonymous_pull = false\n[[auth.rule]]\nusers = [\"dev\"]\nrepos = [\"team/*\"]\nactions = [\"pull\", \"push\"]\n[gc]\ninterval = \"0\"\n",
        users.display().to_string(),
    );
    config(s3, BUCKET, root, &sections, &format!("prefix = {prefix:?}"))
}

/// A load balancer without sticky sessions sends a client's `/token` request
/// to one node and its pushes and pulls to others: the nodes on one bucket
/// sign with the bucket's key, so every node accepts the token, also after
/// a restart; a node on another prefix (another registry) refuses it.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_one_node_issued_is_accepted_by_the_others_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let users = dir.path().join("htpasswd");
    common::htpasswd(&users, &[("dev", "secret")]);
    let cfg =
        |name: &str, prefix: &str| login_node_config(&s3, &dir.path().join(name), &users, prefix);
    let a = Wharf::start_config_unchecked(cfg("a", "")).await;
    let b = Wharf::start_config_unchecked(cfg("b", "")).await;
    let elsewhere = Wharf::start_config_unchecked(cfg("elsewhere", "other/")).await;

    let scope = "repository:team/app:pull,push";
    let t = common::token(&a, Some(("dev", "secret")), &[scope]).await;
    // Pushed through b with a's token, pulled through a.
    assert_eq!(
        common::As::bearer(&b, t.clone())
            .push_image("team/app", "v1", b"shared key")
            .await,
        201
    );
    let pulled = common::As::bearer(&a, t.clone())
        .req(reqwest::Method::GET, "/v2/team/app/manifests/v1")
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200);
    // Another registry (prefix) has a key of its own.
    let refused = common::As::bearer(&elsewhere, t.clone())
        .status(reqwest::Method::GET, "/v2/team/app/tags/list")
        .await;
    assert_eq!(refused, 401);
    // A forged token (right claims, another key) is refused by every node.
    let (claims, _) = t.split_once('.').unwrap();
    let forged = format!("{claims}.{}", "A".repeat(43));
    for w in [&a, &b] {
        let s = common::As::bearer(w, forged.clone())
            .status(reqwest::Method::GET, "/v2/team/app/tags/list")
            .await;
        assert_eq!(s, 401);
    }

    // The key outlives the nodes: b restarted still takes a's token.
    let b_addr = b.addr;
    b.stop().await;
    let b = Wharf::restart_at(cfg("b", ""), b_addr).await;
    let s = common::As::bearer(&b, t)
        .status(reqwest::Method::GET, "/v2/team/app/tags/list")
        .await;
    assert_eq!(s, 200);
    for w in [a, b, elsewhere] {
        w.stop().await;
    }
}

/// A token key object that is not a key (planted, or cut short) stops the
/// node's start naming the object, instead of signing with a key the other
/// nodes do not share.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_key_object_that_is_not_a_key_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let users = dir.path().join("htpasswd");
    common::htpasswd(&users, &[("dev", "secret")]);
    s3.put_object(BUCKET, "bad/auth/token-key", b"0123\n".to_vec())
        .await;
    let cfg = login_node_config(&s3, &dir.path().join("n"), &users, "bad/");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let err = wharf::app::run(cfg, listener, rx)
        .await
        .expect_err("a node does not start on a bucket whose token key is junk")
        .to_string();
    assert!(err.contains("bad/auth/token-key"), "{err}");
}

/// A load balancer that sends one push's requests to two nodes (no
/// `hash $remote_addr`): the node that does not hold the upload answers 404
/// BLOB_UPLOAD_UNKNOWN and tells the operator why in its log; the upload on
/// the node that opened it is untouched and completes there, and the blob
/// then pulls from the other node.
#[test]
fn an_upload_asked_of_a_node_that_does_not_hold_it_is_refused_and_logged_and_survives() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let spawn = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        common::WharfProcess::spawn_storage(&d, &d.join("root"), "", &s3.storage_lines(BUCKET), "")
    };
    let (a, b) = (spawn("a"), spawn("b"));
    let client = reqwest::blocking::Client::new();
    let opened = client
        .post(a.url("/v2/team/lb/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(opened.status(), 202);
    let location = opened.headers()["location"].to_str().unwrap().to_owned();
    let path = location
        .strip_prefix(&a.base)
        .unwrap_or(&location)
        .to_owned();
    let blob = bytes(20_000, 97);
    let d = digest(&blob);

    let stray = client
        .patch(b.url(&path))
        .body(blob[..5_000].to_vec())
        .send()
        .unwrap();
    assert_eq!(stray.status(), 404);
    assert!(stray.text().unwrap().contains("BLOB_UPLOAD_UNKNOWN"));
    let line = b.wait_log("load balancer must keep each client on one node");
    assert!(line.contains("team/lb"), "{line}");

    let whole = client
        .patch(a.url(&path))
        .body(blob.clone())
        .send()
        .unwrap();
    assert_eq!(
        whole.status(),
        202,
        "the upload on its own node is untouched"
    );
    let sep = if path.contains('?') { '&' } else { '?' };
    let done = client
        .put(a.url(&format!("{path}{sep}digest={d}")))
        .send()
        .unwrap();
    assert_eq!(done.status(), 201);
    let back = client
        .get(b.url(&format!("/v2/team/lb/blobs/{d}")))
        .send()
        .unwrap();
    assert_eq!(back.status(), 200);
    assert_eq!(digest(&back.bytes().unwrap()), d);
}

/// The digests `w`'s referrers API lists for `subject` in `repo`.
async fn referrer_digests(w: &Wharf, repo: &str, subject: &str) -> Vec<String> {
    let listed: serde_json::Value = http()
        .get(w.url(&format!("/v2/{repo}/referrers/{subject}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let manifests = listed["manifests"].as_array();
    assert!(manifests.is_some(), "not a referrers list: {listed}");
    manifests
        .into_iter()
        .flatten()
        .filter_map(|m| m["digest"].as_str().map(str::to_owned))
        .collect()
}
