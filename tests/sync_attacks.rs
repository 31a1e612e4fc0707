//! Attacks on the sync worker: a hostile upstream (a blob that drips, a tag
//! list that never ends or carries garbage), a careless operator (the same
//! image spelled two ways, rules edited between restarts). Each test fails
//! when the defence it names is missing.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::hostile::{drip, full, hostile};
use common::image::{Image, tar_with_file};
use common::upstreams::{hub, mirror_config, publish};
use common::{Wharf, bytes, get_json, get_oci as get, http, wait_for};
use serde_json::Value;

fn small_image(seed: u64) -> Image {
    Image::new(vec![
        tar_with_file("a", &bytes(64 << 10, seed)),
        tar_with_file("b", &bytes(1000, seed + 100)),
    ])
}

/// A mirror whose default docker.io upstream is `url` (tags trusted for an
/// hour), with `rules`.
async fn mirror(dir: &Path, url: &str, rules: &str) -> Wharf {
    let extra = mirror_config(url, "manifest_ttl = \"1h\"\n", rules);
    Wharf::start_config(common::config(&dir.join("mirror"), &extra)).await
}

/// The worker's runs so far and whether one is running.
async fn runs(m: &Wharf) -> (u64, bool) {
    let v = get_json(m, "/_wharf/v1/sync").await;
    (
        v["worker"]["runs"].as_u64().unwrap_or(0),
        v["worker"]["running"] == true,
    )
}

/// Waits (up to `secs`) for the worker to have finished `n` passes; the
/// first rule's last pass.
async fn passes(m: &Wharf, n: u64, secs: u64) -> Value {
    wait_for(secs, &format!("sync pass #{n}"), || async {
        let (r, running) = runs(m).await;
        r >= n && !running
    })
    .await;
    get_json(m, "/_wharf/v1/sync").await["rules"][0]["last"].clone()
}

/// A blob the upstream sends one byte a second (announcing its full length)
/// must not hold the sync pass, and with it every later pass of every rule,
/// for ever; meanwhile client pulls of other images go on.
#[tokio::test(flavor = "multi_thread")]
async fn a_dripping_blob_does_not_hold_the_pass_for_ever() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let slow = small_image(1);
    let other = small_image(2);
    publish(&hub, "library/slow", "1", &slow).await;
    publish(&hub, "library/other", "1", &other).await;
    let (drip_digest, drip_bytes) = {
        let (d, b) = &slow.blobs()[0];
        (d.clone(), b.to_vec())
    };
    let path = format!("/v2/library/slow/blobs/{drip_digest}");
    let up = hostile(&hub.base, move |req| {
        (req.method == http::Method::GET && req.uri.path() == path).then(|| {
            drip(
                &[("content-type", "application/octet-stream")],
                drip_bytes.clone(),
                Duration::from_secs(1),
            )
        })
    })
    .await;
    let m = mirror(
        dir.path(),
        &up.url,
        "[[sync]]\nimage = \"docker.io/library/slow\"\ntags = [\"1\"]\nevery = \"1h\"\n",
    )
    .await;
    // The pass at start is stuck on the drip: a client pull of another image
    // still answers at once.
    wait_for(20, "the pass at start to be running", || async {
        runs(&m).await.1
    })
    .await;
    let t = Instant::now();
    let r = get(&m, "/v2/library/other/manifests/1").await;
    assert_eq!(r.status(), 200);
    for (d, b) in other.blobs() {
        let r = get(&m, &format!("/v2/library/other/blobs/{d}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), b);
    }
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // The pass gives the drip up and ends, the tag reported failed.
    let v = passes(&m, 1, 120).await;
    assert_eq!(v["errors"], 1, "{v}");
    let msg = v["error_messages"][0].as_str().unwrap_or_default();
    assert!(msg.contains("slow") || msg.contains("bytes/s"), "{v}");
    m.stop().await;
    hub.stop().await;
}

/// A tag list whose `Link` never ends (a new `last` each page, and pointing
/// at another host) stops after a bounded number of pages, never leaving
/// the upstream it was asked of; the pass ends and says it was truncated.
#[tokio::test(flavor = "multi_thread")]
async fn a_tag_list_that_never_ends_is_cut_and_stays_on_its_host() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    publish(&hub, "library/loop", "1", &small_image(3)).await;
    let pages = Arc::new(AtomicUsize::new(0));
    let counted = pages.clone();
    let up = hostile(&hub.base, move |req| {
        if req.uri.path() != "/v2/library/loop/tags/list" {
            return None;
        }
        let n = counted.fetch_add(1, Ordering::SeqCst);
        let link =
            format!("<http://127.0.0.1:9/v2/library/loop/tags/list?n=1&last=x{n}>; rel=\"next\"");
        Some(full(
            200,
            &[("content-type", "application/json"), ("link", &link)],
            r#"{"name":"library/loop","tags":["1"]}"#,
        ))
    })
    .await;
    let m = mirror(
        dir.path(),
        &up.url,
        "[[sync]]\nimage = \"docker.io/library/loop\"\ntags = [\"1\"]\nevery = \"1h\"\n",
    )
    .await;
    let v = passes(&m, 1, 120).await;
    assert_eq!(v["truncated"], true, "{v}");
    assert_eq!(v["matched"], 1, "{v}");
    assert_eq!(v["fetched"], 1, "{v}");
    let n = pages.load(Ordering::SeqCst);
    assert!((2..=1000).contains(&n), "{n} pages");
    m.stop().await;
    hub.stop().await;
}

/// Names in a tag list that are not tags (too long, a path, a space) are
/// dropped at the list: they are neither "matched" nor errors every pass,
/// and a hostile list cannot fill the rule's state and status with them.
#[tokio::test(flavor = "multi_thread")]
async fn names_that_are_not_tags_are_dropped_from_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    publish(&hub, "library/junk", "1", &small_image(4)).await;
    let long = "a".repeat(300_000);
    let body = serde_json::json!({
        "name": "library/junk",
        "tags": ["1", long, "../../etc", "two words", ".dot"],
    })
    .to_string();
    let up = hostile(&hub.base, move |req| {
        (req.uri.path() == "/v2/library/junk/tags/list")
            .then(|| full(200, &[("content-type", "application/json")], body.clone()))
    })
    .await;
    let m = mirror(
        dir.path(),
        &up.url,
        "[[sync]]\nimage = \"docker.io/library/junk\"\ntags = [\"*\"]\nevery = \"1h\"\n",
    )
    .await;
    let v = passes(&m, 1, 60).await;
    let short: String = v.to_string().chars().take(1000).collect();
    assert_eq!(v["matched"], 1, "{short}");
    assert_eq!(v["errors"], 0, "{short}");
    assert_eq!(v["fetched"], 1, "{short}");
    let status = http()
        .get(m.url("/_wharf/v1/sync"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(status.len() < 16 << 10, "{} bytes of status", status.len());
    m.stop().await;
    hub.stop().await;
}

/// The same image spelled two ways (`nginx` and `docker.io/library/nginx`)
/// with the same tags is one rule twice: refused like any duplicate, not
/// synced twice per pass.
#[test]
fn the_same_image_spelled_two_ways_is_a_duplicate_rule() {
    let text = "[[upstream]]\nname = \"docker.io\"\nurl = \"http://127.0.0.1:9\"\ndefault = true\n\
        [[sync]]\nimage = \"nginx\"\ntags = [\"1.27\"]\n\
        [[sync]]\nimage = \"docker.io/library/nginx\"\ntags = [\"1.27\"]\n";
    let e = wharf::config::Config::parse(text, Path::new("t.toml"))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("twice"), "{e}");
}

/// A rule edited between runs (its tags changed) starts afresh under a new
/// key; the old key's state does not linger for ever. Within one rule, a
/// tag gone from the upstream's list is gone from the rule's `seen`.
#[tokio::test(flavor = "multi_thread")]
async fn stale_sync_state_does_not_linger() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    publish(&hub, "library/st", "1.0", &small_image(5)).await;
    publish(&hub, "library/st", "1.1", &small_image(6)).await;
    let both = Arc::new(AtomicBool::new(true));
    let listed = both.clone();
    let up = hostile(&hub.base, move |req| {
        (req.uri.path() == "/v2/library/st/tags/list").then(|| {
            let tags = if listed.load(Ordering::SeqCst) {
                r#"{"name":"library/st","tags":["1.0","1.1"]}"#
            } else {
                r#"{"name":"library/st","tags":["1.0"]}"#
            };
            full(200, &[("content-type", "application/json")], tags)
        })
    })
    .await;
    let rule = |tags: &str| {
        format!("[[sync]]\nimage = \"docker.io/library/st\"\ntags = [{tags}]\nevery = \"1h\"\n")
    };
    let m = mirror(dir.path(), &up.url, &rule("\"1.*\"")).await;
    let v = passes(&m, 1, 60).await;
    assert_eq!(v["fetched"], 2, "{v}");
    // 1.1 goes from the upstream's list.
    both.store(false, Ordering::SeqCst);
    let r = http().post(m.url("/_wharf/v1/sync")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    m.stop().await;
    let root = dir.path().join("mirror");
    {
        let store = wharf::store::Store::open(&root).await.unwrap();
        let s = store
            .sync_state("docker.io/library/st 1.*")
            .await
            .unwrap()
            .unwrap();
        let seen: Vec<&String> = s.seen.keys().collect();
        assert_eq!(seen, ["1.0"], "a tag gone upstream stays in `seen`");
        tokio::task::spawn_blocking(move || store.close())
            .await
            .unwrap();
    }
    // The rule is edited: its old state goes.
    let m = mirror(dir.path(), &up.url, &rule("\"1.0\"")).await;
    passes(&m, 1, 60).await;
    m.stop().await;
    let store = wharf::store::Store::open(&root).await.unwrap();
    assert!(
        store
            .sync_state("docker.io/library/st 1.0")
            .await
            .unwrap()
            .is_some(),
        "the edited rule's state"
    );
    assert!(
        store
            .sync_state("docker.io/library/st 1.*")
            .await
            .unwrap()
            .is_none(),
        "the old rule's state lingers"
    );
    hub.stop().await;
}

/// An image written with its tag (`nginx:1.27`, what `docker pull` takes)
/// is refused with a message that says where the tag goes.
#[test]
fn an_image_with_a_tag_in_it_says_where_the_tag_goes() {
    for image in [
        "nginx:1.27",
        "docker.io/library/nginx:1.27",
        "ghcr.io/o/a@sha256:00",
    ] {
        let text = format!(
            "[[upstream]]\nname = \"docker.io\"\nurl = \"http://127.0.0.1:9\"\ndefault = true\n\
             [[sync]]\nimage = \"{image}\"\ntags = [\"latest\"]\n"
        );
        let e = wharf::config::Config::parse(&text, Path::new("t.toml"))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 6"), "{e}");
        assert!(e.contains("sync.tags"), "{image}: {e}");
    }
}

/// An upstream whose GET by digest answers other bytes than the digest its
/// HEAD announced (a lying cache in front of a registry): nothing is kept,
/// the tag is reported failed, and the next honest pass brings it.
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_whose_bytes_are_not_its_digest_is_never_kept() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let img = small_image(7);
    let decoy = small_image(8);
    publish(&hub, "library/lie", "1", &img).await;
    let lying = Arc::new(AtomicBool::new(true));
    let lies = lying.clone();
    let decoy_manifest = decoy.manifest.clone();
    let up = hostile(&hub.base, move |req| {
        let p = req.uri.path();
        (lies.load(Ordering::SeqCst)
            && req.method == http::Method::GET
            && p.starts_with("/v2/library/lie/manifests/sha256:"))
        .then(|| {
            full(
                200,
                &[("content-type", common::image::OCI_MANIFEST)],
                decoy_manifest.clone(),
            )
        })
    })
    .await;
    let m = mirror(
        dir.path(),
        &up.url,
        "[[sync]]\nimage = \"docker.io/library/lie\"\ntags = [\"1\"]\nevery = \"1h\"\n",
    )
    .await;
    let v = passes(&m, 1, 60).await;
    assert_eq!(v["errors"], 1, "{v}");
    assert_eq!(v["fetched"], 0, "{v}");
    let d = common::digest(&decoy.manifest);
    assert!(!common::disk::blob_path(&m.root, &d).exists(), "decoy kept");
    let r = http()
        .get(m.url("/_wharf/v1/repos/docker.io/library/lie"))
        .send()
        .await
        .unwrap();
    if r.status() == 200 {
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["tags"].as_array().map_or(0, Vec::len), 0, "{v}");
    }
    lying.store(false, Ordering::SeqCst);
    let r = http().post(m.url("/_wharf/v1/sync")).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["rules"][0]["fetched"], 1, "{v}");
    assert_eq!(v["rules"][0]["errors"], 0, "{v}");
    let r = get(&m, "/v2/library/lie/manifests/1").await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), img.manifest.as_slice());
    m.stop().await;
    hub.stop().await;
}
