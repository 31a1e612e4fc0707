//! The sync worker (`[[sync]]`, `wharf sync [--now]`) against a real upstream:
//! a second wharf in token mode with anonymous pulls (like Docker Hub).
//! Upstream traffic is counted at the upstream, from its own metrics.

mod common;

use std::path::Path;

use common::image::{Image, tar_with_file};
use common::upstreams::{
    hub, hub_blob_bytes, metric, mirror_config, publish, publish_index, restart_hub,
};
use common::{Wharf, bytes, digest, get_json, get_oci as get, http, wait_for};
use serde_json::Value;

/// A mirror of `hub` (the default docker.io upstream, tags trusted for an
/// hour) with `rules` (`[[sync]]` sections).
async fn mirror(dir: &Path, hub: &Wharf, rules: &str) -> Wharf {
    let extra = mirror_config(&hub.base, "manifest_ttl = \"1h\"\n", rules);
    Wharf::start_config(common::config(&dir.join("mirror"), &extra)).await
}

/// `wharf sync --now` through the admin API: the pass's report.
async fn sync_now(m: &Wharf) -> Value {
    let r = http().post(m.url("/_wharf/v1/sync")).send().await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The report of the pass a mirror runs at start (every rule is due then),
/// once it is recorded.
async fn start_pass(m: &Wharf) -> Value {
    wait_for(60, "the pass at start", || async {
        let v = get_json(m, "/_wharf/v1/sync").await;
        v["worker"]["runs"].as_u64().unwrap_or(0) >= 1 && v["worker"]["running"] == false
    })
    .await;
    get_json(m, "/_wharf/v1/sync").await["rules"][0]["last"].clone()
}

/// Requests the hub served, by method and route (any status).
async fn served(hub: &Wharf, method: &str, route: &str) -> f64 {
    metric(
        hub,
        &format!("wharf_http_requests_total{{method=\"{method}\",route=\"{route}\","),
    )
    .await
}

/// Every request the hub served except token grants and metric scrapes
/// (the test's own).
async fn served_total(hub: &Wharf) -> f64 {
    let text = common::metrics_text(hub).await;
    text.lines()
        .filter(|l| l.starts_with("wharf_http_requests_total{"))
        .filter(|l| !l.contains("route=\"token\"") && !l.contains("route=\"metrics\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The tags the mirror holds locally for `repo` (admin API; asks no upstream).
async fn local_tags(m: &Wharf, repo: &str) -> Vec<String> {
    let r = http()
        .get(m.url(&format!("/_wharf/v1/repos/{repo}")))
        .send()
        .await
        .unwrap();
    if r.status() == 404 {
        return Vec::new();
    }
    let v: Value = r.json().await.unwrap();
    v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap().to_owned())
        .collect()
}

fn stored(m: &Wharf, d: &str) -> bool {
    common::disk::blob_path(&m.root, d).exists()
}

fn small_image(seed: u64) -> Image {
    Image::new(vec![
        tar_with_file("a", &bytes(64 << 10, seed)),
        tar_with_file("b", &bytes(1000, seed + 100)),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_tag_upstream_is_picked_up_within_an_interval() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    publish(&hub, "library/app", "1.0", &small_image(1)).await;
    let m = mirror(
        dir.path(),
        &hub,
        "[[sync]]\nimage = \"docker.io/library/app\"\ntags = [\"1.*\"]\nevery = \"1s\"\n",
    )
    .await;
    wait_for(20, "the first pass to sync 1.0", || async {
        local_tags(&m, "docker.io/library/app").await == ["1.0"]
    })
    .await;
    let img = small_image(2);
    publish(&hub, "library/app", "1.1", &img).await;
    wait_for(20, "a later pass to sync 1.1", || async {
        local_tags(&m, "docker.io/library/app")
            .await
            .contains(&"1.1".to_owned())
    })
    .await;
    // Its content came with it, before any client asked.
    wait_for(20, "1.1's blobs", || async {
        img.blobs().iter().all(|(d, _)| stored(&m, d))
    })
    .await;
    let blobs_before = hub_blob_bytes(&hub).await;
    for (d, b) in img.blobs() {
        let r = get(&m, &format!("/v2/library/app/blobs/{d}")).await;
        assert_eq!(r.headers()["x-cache"], "HIT");
        assert_eq!(r.bytes().await.unwrap().as_ref(), b);
    }
    assert_eq!(hub_blob_bytes(&hub).await, blobs_before);
    let v = get_json(&m, "/_wharf/v1/sync").await;
    assert_eq!(v["rules"][0]["image"], "docker.io/library/app");
    assert!(v["rules"][0]["last_run"].as_u64().is_some(), "{v}");
    m.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_tags_cost_one_head_each_and_synced_tags_are_hits() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let imgs: Vec<Image> = (0..4).map(|i| small_image(10 + i)).collect();
    for (tag, img) in ["1.2", "1.20", "1.3", "latest"].iter().zip(&imgs) {
        publish(&hub, "library/web", tag, img).await;
    }
    // every = 1h: only the on-demand passes below run.
    let m = mirror(
        dir.path(),
        &hub,
        "[[sync]]\nimage = \"web\"\ntags = [\"1.2*\"]\nevery = \"1h\"\n",
    )
    .await;
    let first = start_pass(&m).await;
    let r = &first;
    assert_eq!(r["tags_seen"], 4, "{first}");
    assert_eq!(
        r["matched"], 2,
        "1.2* matches 1.2 and 1.20, not 1.3: {first}"
    );
    assert_eq!(r["fetched"], 2, "{first}");
    assert_eq!(r["errors"], 0, "{first}");
    let want: u64 = imgs[..2]
        .iter()
        .flat_map(|i| i.blobs())
        .map(|(_, b)| b.len() as u64)
        .sum();
    assert_eq!(r["bytes_fetched"], want, "{first}");
    assert_eq!(
        local_tags(&m, "docker.io/library/web").await,
        ["1.2", "1.20"]
    );

    // Nothing changed upstream: the tag list and one HEAD per tag, nothing else.
    let (total, heads, gets, lists) = (
        served_total(&hub).await,
        served(&hub, "HEAD", "manifest").await,
        served(&hub, "GET", "manifest").await,
        served(&hub, "GET", "tags").await,
    );
    let blob_bytes = hub_blob_bytes(&hub).await;
    let second = sync_now(&m).await;
    let r = &second["rules"][0];
    assert_eq!(r["unchanged"], 2, "{second}");
    assert_eq!(r["fetched"], 0, "{second}");
    assert_eq!(served(&hub, "HEAD", "manifest").await - heads, 2.0);
    assert_eq!(served(&hub, "GET", "tags").await - lists, 1.0);
    assert_eq!(served(&hub, "GET", "manifest").await - gets, 0.0);
    assert_eq!(served_total(&hub).await - total, 3.0, "nothing but those");
    assert_eq!(hub_blob_bytes(&hub).await, blob_bytes);

    // Clients get hits without a word to the upstream.
    let total = served_total(&hub).await;
    for (tag, img) in ["1.2", "1.20"].iter().zip(&imgs) {
        let r = get(&m, &format!("/v2/library/web/manifests/{tag}")).await;
        assert_eq!(r.headers()["x-cache"], "HIT", "{tag}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), img.manifest.as_slice());
        for (d, _) in img.blobs() {
            let r = get(&m, &format!("/v2/library/web/blobs/{d}")).await;
            assert_eq!(r.headers()["x-cache"], "HIT", "{tag} {d}");
        }
    }
    assert_eq!(served_total(&hub).await, total, "no upstream call");

    m.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_platform_rule_fetches_only_that_platform() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let amd = Image::for_platform(vec![tar_with_file("x", &bytes(200 << 10, 7))], "amd64");
    let arm = Image::for_platform(vec![tar_with_file("x", &bytes(150 << 10, 8))], "arm64");
    let idx = publish_index(
        &hub,
        "library/multi",
        "2",
        &[(&amd, "amd64"), (&arm, "arm64")],
    )
    .await;
    let before = hub_blob_bytes(&hub).await;
    let m = mirror(
        dir.path(),
        &hub,
        "[[sync]]\nimage = \"docker.io/library/multi\"\ntags = [\"2\"]\nplatforms = [\"linux/arm64\"]\n",
    )
    .await;
    let v = start_pass(&m).await;
    assert_eq!(v["fetched"], 1, "{v}");
    assert!(stored(&m, &digest(&idx)));
    assert!(stored(&m, &digest(&arm.manifest)));
    for (d, _) in arm.blobs() {
        assert!(stored(&m, &d), "arm64 blob {d}");
    }
    assert!(
        !stored(&m, &digest(&amd.manifest)),
        "amd64 manifest fetched"
    );
    for (d, _) in amd.blobs() {
        assert!(!stored(&m, &d), "amd64 blob {d} fetched");
    }
    let arm_bytes: usize = arm.blobs().iter().map(|(_, b)| b.len()).sum();
    assert_eq!(
        (hub_blob_bytes(&hub).await - before) as usize,
        arm_bytes,
        "the upstream served arm64's blobs and nothing of amd64's"
    );
    // Again: unchanged, nothing more.
    let v = sync_now(&m).await;
    assert_eq!(v["rules"][0]["unchanged"], 1, "{v}");
    m.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_layers_are_never_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let img = small_image(90);
    common::upstreams::publish_blobs(&hub, "library/win", &img).await;
    // A Windows-style image: one layer lives on another server (urls).
    let mut m: Value = serde_json::from_slice(&img.manifest).unwrap();
    m["layers"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": digest(b"a base layer from elsewhere"),
        "size": 27,
        "urls": ["https://example.invalid/layer"]
    }));
    let body = serde_json::to_vec(&m).unwrap();
    common::upstreams::put_manifest(
        &hub,
        "library/win",
        "ltsc",
        common::image::OCI_MANIFEST,
        &body,
    )
    .await;
    let mirror = mirror(
        dir.path(),
        &hub,
        "[[sync]]\nimage = \"docker.io/library/win\"\ntags = [\"ltsc\"]\nevery = \"1h\"\n",
    )
    .await;
    let first = start_pass(&mirror).await;
    assert_eq!(first["fetched"], 1, "{first}");
    assert_eq!(first["errors"], 0, "{first}");
    let gets = served(&hub, "GET", "blob").await;
    let v = sync_now(&mirror).await;
    assert_eq!(v["rules"][0]["unchanged"], 1, "{v}");
    assert_eq!(v["rules"][0]["errors"], 0, "{v}");
    assert_eq!(served(&hub, "GET", "blob").await, gets);
    mirror.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_pull_during_a_pass_shares_its_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let img = Image::new(
        (0..4)
            .map(|i| tar_with_file("big", &bytes(8 << 20, 40 + i)))
            .collect(),
    );
    // The pass at start finds nothing to do; the image comes after it.
    let tiny = small_image(39);
    publish(&hub, "library/big", "0", &tiny).await;
    let m = mirror(
        dir.path(),
        &hub,
        "[[sync]]\nimage = \"docker.io/library/big\"\ntags = [\"1\"]\nevery = \"1h\"\n",
    )
    .await;
    assert_eq!(start_pass(&m).await["matched"], 0);
    publish(&hub, "library/big", "1", &img).await;
    let pass = tokio::spawn({
        let url = m.url("/_wharf/v1/sync");
        async move { http().post(url).send().await.unwrap().status() }
    });
    // The client comes while sync's downloads run.
    wait_for(30, "sync's downloads to start", || async {
        metric(&m, "wharf_downloads_in_flight").await > 0.0
    })
    .await;
    let mut misses = 0;
    for (d, b) in img.blobs() {
        let r = get(&m, &format!("/v2/library/big/blobs/{d}")).await;
        assert_eq!(r.status(), 200);
        if r.headers()["x-cache"] == "MISS" {
            misses += 1;
        }
        assert_eq!(r.bytes().await.unwrap().as_ref(), b, "{d}");
    }
    assert_eq!(pass.await.unwrap(), 200);
    let total: usize = img.blobs().iter().map(|(_, b)| b.len()).sum();
    assert_eq!(
        hub_blob_bytes(&hub).await as usize,
        total,
        "every blob crossed the upstream link once ({misses} joined a running download)"
    );
    m.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_is_down_fails_the_pass_which_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let hub_w = hub(dir.path()).await;
    let img = small_image(60);
    publish(&hub_w, "library/down", "1", &img).await;
    let addr = hub_w.addr;
    let m = mirror(
        dir.path(),
        &hub_w,
        "[[sync]]\nimage = \"docker.io/library/down\"\ntags = [\"*\"]\nevery = \"2s\"\n",
    )
    .await;
    hub_w.stop().await;
    let r = http().post(m.url("/_wharf/v1/sync")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("tag list failed") && body.contains("docker.io/library/down"),
        "{body}"
    );
    let v = get_json(&m, "/_wharf/v1/sync").await;
    assert!(v["rules"][0]["last"]["failed"].is_string(), "{v}");
    assert_eq!(v["worker"]["last_result"], "error", "{v}");
    // Back up: the loop's retries bring the image in.
    let hub_w = restart_hub(dir.path(), addr).await;
    wait_for(60, "a retried pass to sync the tag", || async {
        local_tags(&m, "docker.io/library/down").await == ["1"]
    })
    .await;
    wait_for(20, "the pass to be recorded as ok", || async {
        let v = get_json(&m, "/_wharf/v1/sync").await;
        v["rules"][0]["last"]["failed"].is_null() && v["worker"]["last_result"] == "ok"
    })
    .await;
    m.stop().await;
    hub_w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn under_the_pull_limit_floor_a_rule_pauses_its_fetches() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let gets = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = gets.clone();
    let d = digest(b"a manifest the mirror never fetches");
    // A Docker-Hub-like upstream with 3 pulls left in its window.
    let hub = common::upstreams::fake(move |req| {
        let rl = ("ratelimit-remaining", "3;w=21600");
        let path = req.uri.path().to_owned();
        if path == "/v2/library/rl/tags/list" {
            return common::upstreams::answer(
                200,
                &[rl, ("content-type", "application/json")],
                r#"{"name":"library/rl","tags":["1","2","10"]}"#,
            );
        }
        if req.method == http::Method::HEAD && path.starts_with("/v2/library/rl/manifests/") {
            return common::upstreams::answer(
                200,
                &[
                    rl,
                    ("docker-content-digest", d.as_str()),
                    ("content-type", common::image::OCI_MANIFEST),
                    ("content-length", "100"),
                ],
                "",
            );
        }
        seen.lock().unwrap().push(format!("{} {path}", req.method));
        common::upstreams::answer(404, &[rl], "")
    })
    .await;
    let extra = mirror_config(
        &hub.url,
        "",
        "[[sync]]\nimage = \"docker.io/library/rl\"\ntags = [\"?\"]\nevery = \"1h\"\n",
    );
    let m = Wharf::start_config(common::config(&dir.path().join("mirror"), &extra)).await;
    let v = start_pass(&m).await;
    let r = &v;
    assert_eq!(r["matched"], 2, "{v}");
    assert_eq!(r["skipped"], 2, "{v}");
    assert_eq!(r["fetched"], 0, "{v}");
    let why = r["paused"].as_str().unwrap_or_default();
    assert!(
        why.contains("3 pulls left") && why.contains("ratelimit_floor = 10"),
        "{v}"
    );
    assert_eq!(
        *gets.lock().unwrap(),
        Vec::<String>::new(),
        "only HEADs after the floor"
    );
    assert_eq!(
        metric(
            &m,
            "wharf_sync_paused_total{image=\"docker.io/library/rl\"}"
        )
        .await,
        1.0
    );
    let (code, out, err) = common::wharf_cli(&["sync", "--url", &m.base]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("paused") && out.contains("3 pulls left"),
        "{out}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_run_at_start_and_a_restart_runs_only_what_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    publish(&hub, "library/boot", "1", &small_image(80)).await;
    let rules = "[[sync]]\nimage = \"docker.io/library/boot\"\ntags = [\"1\"]\nevery = \"1h\"\n";
    let m = mirror(dir.path(), &hub, rules).await;
    // every = 1h, yet the first pass comes at start.
    assert_eq!(start_pass(&m).await["fetched"], 1);
    assert_eq!(local_tags(&m, "docker.io/library/boot").await, ["1"]);
    let first = get_json(&m, "/_wharf/v1/sync").await["rules"][0]["last_run"].clone();
    let root = m.root.clone();
    m.stop().await;
    let heads = served(&hub, "HEAD", "manifest").await;
    let extra = mirror_config(&hub.base, "manifest_ttl = \"1h\"\n", rules);
    let m = Wharf::start_config(common::config(&root, &extra)).await;
    wait_for(20, "the pass at restart", || async {
        let v = get_json(&m, "/_wharf/v1/sync").await;
        v["worker"]["runs"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let v = get_json(&m, "/_wharf/v1/sync").await;
    assert_eq!(v["worker"]["last_report"]["not_due"], 1, "{v}");
    assert_eq!(v["rules"][0]["last_run"], first, "{v}");
    assert_eq!(served(&hub, "HEAD", "manifest").await, heads);
    m.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wharf_sync_prints_the_rules_and_now_runs_them() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    publish(&hub, "library/cli", "3.1", &small_image(70)).await;
    let m = mirror(
        dir.path(),
        &hub,
        "[[sync]]\nimage = \"docker.io/library/cli\"\ntags = [\"3.*\"]\nevery = \"1h\"\n",
    )
    .await;
    assert_eq!(start_pass(&m).await["fetched"], 1);
    let (code, out, err) = common::wharf_cli(&["sync", "--now", "--url", &m.base]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("IMAGE") && out.contains("docker.io/library/cli"),
        "{out}"
    );
    assert!(
        out.contains("sync ran 1 rule: 0 tags fetched, 0 errors"),
        "{out}"
    );
    let (code, out, err) = common::wharf_cli(&["sync", "--url", &m.base]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("LAST RUN") && out.contains("3.*") && out.contains(" ok"),
        "{out}"
    );
    let (code, out, _) = common::wharf_cli(&["sync", "--json", "--url", &m.base]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rules"][0]["last"]["unchanged"], 1, "{v}");

    // A hosted image or a bad glob is refused at load, naming key and line.
    for (rule, needle, at) in [
        ("image = \"team/app\"\ntags = [\"1\"]\n", "hosted", 4),
        (
            "image = \"docker.io/library/cli\"\ntags = [\"[\"]\n",
            "not a glob",
            5,
        ),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(
            &file,
            format!("[hosted]\nprefixes = [\"team/\"]\n[[sync]]\n{rule}"),
        )
        .unwrap();
        let (code, _, err) =
            common::wharf_cli(&["check-config", "--config", file.to_str().unwrap()]).await;
        assert_ne!(code, 0);
        assert!(
            err.contains(needle) && err.contains(&format!("line {at}:")),
            "{err}"
        );
    }
    m.stop().await;
    hub.stop().await;
}
