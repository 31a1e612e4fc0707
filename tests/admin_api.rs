//! The admin API (`/_wharf/v1/`) over real HTTP: every route's answer on real
//! pushed and mirrored content (gc, verify and evict passes, pins, last pulls),
//! its JSON errors (404, 405, 400, 413, 401, 403), and who may call it under
//! every `[auth] scheme`.

mod common;

use std::collections::BTreeSet;

use common::disk::{blob_path, content_on_disk};
use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::upstreams::{hub, mirror_config, publish, publish_index};
use common::{As, Wharf, bytes, digest, get_json, get_oci, htpasswd, http, push_image};
use reqwest::Method;
use serde_json::{Value, json};

/// Status, error code and message of an admin error response, checking its shape.
async fn admin_error(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.expect("admin errors are JSON");
    assert!(v.get("errors").is_none(), "not the OCI envelope: {v}");
    let code = v["error"]["code"].as_str().expect("error.code").to_owned();
    let message = v["error"]["message"]
        .as_str()
        .expect("error.message")
        .to_owned();
    assert!(!message.is_empty());
    (status, code, message)
}

async fn post_json(w: &Wharf, path: &str, body: Value) -> reqwest::Response {
    http().post(w.url(path)).json(&body).send().await.unwrap()
}

/// GETs `path` until `ready` holds (a mirrored blob is indexed just after its
/// last bytes went out); fails after 10 s.
async fn get_until(w: &Wharf, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v = get_json(w, path).await;
        if ready(&v) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "never settled: {v}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn repos_tags_and_usage_of_pushed_and_mirrored_content() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let amd = Image::for_platform(vec![tar_with_file("a", b"amd64 layer")], "amd64");
    let arm = Image::for_platform(vec![tar_with_file("a", b"arm64 layer")], "arm64");
    let idx = publish_index(
        &hub,
        "library/multi",
        "1",
        &[(&amd, "amd64"), (&arm, "arm64")],
    )
    .await;
    let extra = mirror_config(&hub.base, "", "[hosted]\nprefixes = [\"team/\"]\n");
    let w = Wharf::start_config(common::config(&dir.path().join("mirror"), &extra)).await;

    // A pushed image under two tags, and a mirrored index pulled by a client.
    let layer = tar_with_file("f", &bytes(50_000, 1));
    let (manifest, mdigest) = push_image(&w, "team/app", "1", std::slice::from_ref(&layer)).await;
    let r = common::put_manifest(&w, "team/app", "2", OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), 201);
    let r = http()
        .get(w.url("/v2/library/multi/manifests/1"))
        .header("accept", common::image::OCI_INDEX)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let img = Image::new(vec![layer]);
    let pushed_bytes: u64 =
        img.blobs().iter().map(|(_, b)| b.len() as u64).sum::<u64>() + manifest.len() as u64;

    let v = get_until(&w, "/_wharf/v1/repos", |v| {
        v["repositories"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    let repos = v["repositories"].as_array().unwrap();
    let app = repos.iter().find(|r| r["name"] == "team/app").unwrap();
    assert_eq!(
        app,
        &json!({"name": "team/app", "origin": "pushed", "upstream": null, "tags": 2,
                "manifests": 1, "bytes": pushed_bytes, "last_pulled": null, "pinned": false})
    );
    let multi = repos
        .iter()
        .find(|r| r["name"] == "docker.io/library/multi")
        .unwrap();
    assert_eq!(multi["origin"], "cached");
    assert_eq!(multi["upstream"], "docker.io");
    assert_eq!(
        (multi["tags"].as_u64(), multi["manifests"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(multi["bytes"], idx.len() as u64);

    // One repository: tags with digest, size, media type and platforms (from
    // the config of an image manifest, from the entries of an index).
    let v = get_json(&w, "/_wharf/v1/repos/team/app").await;
    assert_eq!(v["name"], "team/app");
    assert_eq!(v["origin"], "pushed");
    let tags = v["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 2);
    for (t, name) in tags.iter().zip(["1", "2"]) {
        assert_eq!(t["tag"], name);
        assert_eq!(t["digest"], mdigest.as_str());
        assert_eq!(t["size"], manifest.len() as u64);
        assert_eq!(t["media_type"], OCI_MANIFEST);
        assert_eq!(t["platforms"], json!(["linux/amd64"]));
        assert!(t["updated"].as_u64().unwrap() > 1_600_000_000);
    }
    // The name as clients write it resolves to the local one.
    for spelling in ["multi", "library/multi", "docker.io/library/multi"] {
        let v = get_json(&w, &format!("/_wharf/v1/repos/{spelling}")).await;
        assert_eq!(v["name"], "docker.io/library/multi", "{spelling}");
        assert_eq!(v["upstream"], "docker.io");
        assert_eq!(v["tags"][0]["digest"], digest(&idx).as_str());
        assert_eq!(
            v["tags"][0]["platforms"],
            json!(["linux/amd64", "linux/arm64"])
        );
    }
    let r = http()
        .get(w.url("/_wharf/v1/repos/team/nope"))
        .send()
        .await
        .unwrap();
    let (status, code, message) = admin_error(r).await;
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
    assert!(message.contains("team/nope"), "{message}");
    let r = http()
        .get(w.url("/_wharf/v1/repos/Team"))
        .send()
        .await
        .unwrap();
    let (status, code, _) = admin_error(r).await;
    assert_eq!((status, code.as_str()), (400, "BAD_REQUEST"));

    let u = get_json(&w, "/_wharf/v1/usage").await;
    assert_eq!(u["pushed_bytes"], pushed_bytes, "{u}");
    assert_eq!(u["pushed_blobs"], 3, "config, layer, manifest: {u}");
    assert_eq!(u["cached_blobs"], 1, "{u}");
    assert_eq!(u["cached_bytes"], idx.len() as u64, "{u}");
    assert_eq!(
        u["cached_by_upstream"],
        json!({"docker.io": idx.len()}),
        "{u}"
    );
    assert_eq!(u["blobs"], 4);
    assert_eq!(u["bytes"], pushed_bytes + idx.len() as u64);
    assert_eq!(u["max_cache_size"], 0);
    assert_eq!(u["low_watermark"], 0.9);

    // Blobs pulled through the mirror count for their upstream too.
    let r = get_oci(
        &w,
        &format!("/v2/library/multi/blobs/{}", digest(&amd.config)),
    )
    .await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let want = (idx.len() + amd.config.len()) as u64;
    get_until(&w, "/_wharf/v1/usage", |u| {
        u["cached_by_upstream"]["docker.io"] == want && u["cached_bytes"] == want
    })
    .await;
    w.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rm_deletes_a_tag_or_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let (manifest, d) = push_image(&w, "team/app", "1", &[b"layer".to_vec()]).await;
    let r = common::put_manifest(&w, "team/app", "2", OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), 201);

    let r = post_json(&w, "/_wharf/v1/rm", json!({"reference": "team/app:1"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"repository": "team/app", "tag": "1", "deleted": true})
    );
    assert_eq!(get_oci(&w, "/v2/team/app/manifests/1").await.status(), 404);
    assert_eq!(get_oci(&w, "/v2/team/app/manifests/2").await.status(), 200);
    let r = post_json(&w, "/_wharf/v1/rm", json!({"reference": "team/app:1"})).await;
    let (status, code, message) = admin_error(r).await;
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
    assert!(message.contains("tag 1"), "{message}");

    let r = post_json(
        &w,
        "/_wharf/v1/rm",
        json!({"reference": format!("team/app@{d}")}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"repository": "team/app", "digest": d, "deleted": true})
    );
    assert_eq!(get_oci(&w, "/v2/team/app/manifests/2").await.status(), 404);
    assert_eq!(
        get_oci(&w, &format!("/v2/team/app/manifests/{d}"))
            .await
            .status(),
        404
    );

    let r = post_json(&w, "/_wharf/v1/rm", json!({"reference": "team/other:1"})).await;
    assert_eq!(admin_error(r).await.0, 404);
    // Malformed references and bodies: 400 naming the problem.
    let r = post_json(&w, "/_wharf/v1/rm", json!({"reference": "team/app"})).await;
    let (status, code, message) = admin_error(r).await;
    assert_eq!((status, code.as_str()), (400, "BAD_REQUEST"));
    assert!(message.contains("no tag or digest"), "{message}");
    let r = post_json(&w, "/_wharf/v1/rm", json!({"ref": "team/app:1"})).await;
    let (status, _, message) = admin_error(r).await;
    assert_eq!(status, 400);
    assert!(message.contains("reference"), "{message}");
    let r = http()
        .post(w.url("/_wharf/v1/rm"))
        .body("{\"reference\": ")
        .send()
        .await
        .unwrap();
    let (status, code, message) = admin_error(r).await;
    assert_eq!((status, code.as_str()), (400, "BAD_REQUEST"));
    assert!(message.contains("malformed JSON"), "{message}");
    let r = http().post(w.url("/_wharf/v1/rm")).send().await.unwrap();
    assert_eq!(admin_error(r).await.0, 400);
    // Over 64 KiB: 413, whether the length is declared or the body is chunked.
    let big = format!("{{\"reference\":\"{}\"}}", "a".repeat(70 * 1024));
    let r = http()
        .post(w.url("/_wharf/v1/rm"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let (status, code, _) = admin_error(r).await;
    assert_eq!((status, code.as_str()), (413, "TOO_LARGE"));
    let (status, v) = chunked_post(&w, "/_wharf/v1/rm", big.as_bytes()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (413, Some("TOO_LARGE"))
    );
    w.stop().await;
}

/// POSTs `body` with `Transfer-Encoding: chunked` (no declared length) over a
/// raw connection; returns the status and the JSON body.
async fn chunked_post(w: &Wharf, path: &str, body: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        w.addr
    )
    .into_bytes();
    for c in body.chunks(8192) {
        req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let mut s = tokio::net::TcpStream::connect(w.addr).await.unwrap();
    s.write_all(&req).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    let status = text[9..12].parse().unwrap();
    let (_, json) = text.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(json).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn status_lists_workers_and_a_kick_runs_one() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    let v = get_json(&w, "/_wharf/v1/status").await;
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["uptime_seconds"].is_u64(), "{v}");
    let uploads = v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "uploads")
        .cloned()
        .expect("the upload-expiry worker is listed");
    assert_eq!(uploads["runs"], 0, "{uploads}");
    assert!(uploads["next_run"].as_u64().is_some(), "{uploads}");

    let r = http()
        .post(w.url("/_wharf/v1/workers/uploads/run"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"worker": "uploads", "kicked": true})
    );
    let v = get_until(&w, "/_wharf/v1/status", |v| {
        v["workers"][0]["runs"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(v["workers"][0]["last_result"], "ok");
    assert_eq!(v["workers"][0]["last_report"], json!({"expired": 0}));

    let r = http()
        .post(w.url("/_wharf/v1/workers/nope/run"))
        .send()
        .await
        .unwrap();
    let (status, code, message) = admin_error(r).await;
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
    assert!(message.contains("nope"), "{message}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_and_wrong_methods_answer_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start(dir.path()).await;
    // The old unversioned paths are gone; everything under /_wharf is this surface.
    for p in [
        "/_wharf/du",
        "/_wharf/ls",
        "/_wharf/v1/nope",
        "/_wharf/v1/",
        "/_wharf",
    ] {
        let r = http().get(w.url(p)).send().await.unwrap();
        let (status, code, _) = admin_error(r).await;
        assert_eq!((status, code.as_str()), (404, "NOT_FOUND"), "{p}");
    }
    for (m, p, allow) in [
        (Method::POST, "/_wharf/v1/repos", "GET"),
        (Method::DELETE, "/_wharf/v1/repos/team/app", "GET"),
        (Method::PUT, "/_wharf/v1/usage", "GET"),
        (Method::GET, "/_wharf/v1/rm", "POST"),
        (Method::POST, "/_wharf/v1/status", "GET"),
        (Method::GET, "/_wharf/v1/workers/uploads/run", "POST"),
        (Method::GET, "/_wharf/v1/gc", "POST"),
        (Method::GET, "/_wharf/v1/verify", "POST"),
        (Method::DELETE, "/_wharf/v1/evict", "POST"),
        (Method::POST, "/_wharf/v1/pins", "GET"),
        (Method::GET, "/_wharf/v1/pin", "POST"),
        (Method::GET, "/_wharf/v1/unpin", "POST"),
    ] {
        let r = http().request(m.clone(), w.url(p)).send().await.unwrap();
        assert_eq!(r.headers()["allow"], allow, "{m} {p}");
        let (status, code, _) = admin_error(r).await;
        assert_eq!(
            (status, code.as_str()),
            (405, "METHOD_NOT_ALLOWED"),
            "{m} {p}"
        );
    }
    // Counted under one route label.
    let text = common::metrics_text(&w).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("wharf_http_requests_total{")
                && l.contains("route=\"admin\"")
                && l.contains("status=\"405\"")),
        "{text}"
    );
    w.stop().await;
}

/// A wharf with users `alice` (admin) and `ci` under `scheme`.
async fn with_users(dir: &std::path::Path, scheme: &str, anonymous_pull: &str) -> Wharf {
    let pw = dir.join("htpasswd");
    htpasswd(&pw, &[("alice", "alice-pw"), ("ci", "ci-pw")]);
    let extra = format!(
        "[auth]\nhtpasswd = {:?}\nscheme = \"{scheme}\"\nanonymous_pull = {anonymous_pull}\nadmins = [\"alice\"]\n",
        pw.display().to_string()
    );
    Wharf::start_config_unchecked(common::config(&dir.join("data"), &extra)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn only_admins_with_basic_credentials_under_every_scheme() {
    // (scheme, anonymous_pull, the challenge scheme it comes to)
    for (scheme, anonymous, want) in [
        ("basic", "false", "Basic"),
        ("token", "true", "Bearer"),
        ("token", "false", "Bearer"),
        ("auto", "true", "Bearer"),
        ("auto", "false", "Basic"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let w = with_users(dir.path(), scheme, anonymous).await;
        let alice = As::user(&w, "alice", "alice-pw");
        assert_eq!(
            alice.push_image("team/app", "1", b"x").await,
            201,
            "{scheme}"
        );
        let r = alice
            .req(Method::GET, "/_wharf/v1/repos")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["repositories"][0]["name"], "team/app", "{scheme}");
        let r = alice
            .req(Method::POST, "/_wharf/v1/rm")
            .json(&json!({"reference": "team/app:1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");

        // Not an admin: 403 DENIED, as JSON.
        let r = As::user(&w, "ci", "ci-pw")
            .req(Method::GET, "/_wharf/v1/status")
            .send()
            .await
            .unwrap();
        let (status, code, _) = admin_error(r).await;
        assert_eq!((status, code.as_str()), (403, "DENIED"), "{scheme}");
        // The same for every endpoint that changes storage: not an admin, 403;
        // anonymous, 401; and nothing ran.
        for (m, p) in NEW_ENDPOINTS {
            let body = json!({"reference": "team/app:1"});
            let r = As::user(&w, "ci", "ci-pw")
                .req(m.clone(), p)
                .json(&body)
                .send()
                .await
                .unwrap();
            let (status, code, _) = admin_error(r).await;
            assert_eq!((status, code.as_str()), (403, "DENIED"), "{scheme} {p}");
            let r = As::anon(&w)
                .req(m.clone(), p)
                .json(&body)
                .send()
                .await
                .unwrap();
            let (status, code, _) = admin_error(r).await;
            assert_eq!(
                (status, code.as_str()),
                (401, "UNAUTHORIZED"),
                "{scheme} {p}"
            );
        }
        let r = alice
            .req(Method::GET, "/_wharf/v1/status")
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        for name in ["gc", "verify", "evict", "import"] {
            let s = worker(&v, name);
            assert_eq!(s["runs"], 0, "{scheme}: refused callers ran nothing: {s}");
        }
        let r = alice
            .req(Method::GET, "/_wharf/v1/pins")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"pins": []}),
            "{scheme}"
        );

        // Anonymous and wrong passwords: 401 with the challenge the OCI API gives.
        let oci = http().get(w.url("/v2/")).send().await.unwrap();
        assert_eq!(oci.status(), 401, "{scheme}");
        let challenge = oci.headers()["www-authenticate"].clone();
        assert!(
            challenge.to_str().unwrap().starts_with(want),
            "{scheme}: {challenge:?}"
        );
        for who in [As::anon(&w), As::user(&w, "alice", "wrong")] {
            let r = who
                .req(Method::GET, "/_wharf/v1/usage")
                .send()
                .await
                .unwrap();
            assert_eq!(r.headers()["www-authenticate"], challenge, "{scheme}");
            let (status, code, _) = admin_error(r).await;
            assert_eq!((status, code.as_str()), (401, "UNAUTHORIZED"), "{scheme}");
        }
        w.stop().await;
    }
}

/// The endpoints that run storage passes or change pins.
const NEW_ENDPOINTS: [(Method, &str); 7] = [
    (Method::POST, "/_wharf/v1/gc"),
    (Method::POST, "/_wharf/v1/verify"),
    (Method::POST, "/_wharf/v1/evict"),
    (Method::POST, "/_wharf/v1/import"),
    (Method::GET, "/_wharf/v1/pins"),
    (Method::POST, "/_wharf/v1/pin"),
    (Method::POST, "/_wharf/v1/unpin"),
];

/// The status entry of worker `name`.
fn worker(status: &Value, name: &str) -> Value {
    status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no worker {name} in {status}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_verify_and_evict_run_as_worker_passes_and_answer_their_reports() {
    let dir = tempfile::tempdir().unwrap();
    let w = Wharf::start_with(dir.path(), "[gc]\ninterval = \"0\"\ngrace = \"0s\"\n").await;
    push_image(&w, "team/keep", "1", &[bytes(20_000, 1)]).await;
    let old_layer = bytes(30_000, 2);
    let (old_manifest, old) =
        push_image(&w, "team/old", "1", std::slice::from_ref(&old_layer)).await;
    let old_img = Image::new(vec![old_layer]);
    let mut going: BTreeSet<String> = old_img.blobs().into_iter().map(|(d, _)| d).collect();
    going.insert(old.clone());
    let going_bytes: u64 = old_img
        .blobs()
        .iter()
        .map(|(_, b)| b.len() as u64)
        .sum::<u64>()
        + old_manifest.len() as u64;
    let r = post_json(
        &w,
        "/_wharf/v1/rm",
        json!({"reference": format!("team/old@{old}")}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let before = content_on_disk(&w.root);
    assert_eq!(before.0, 6, "two images of three files each");

    // A dry run: the report of what would go; nothing goes.
    let r = post_json(&w, "/_wharf/v1/gc", json!({"dry_run": true})).await;
    assert_eq!(r.status(), 200);
    let dry: Value = r.json().await.unwrap();
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["swept_blobs"], 3, "{dry}");
    assert_eq!(dry["swept_bytes"], going_bytes, "{dry}");
    assert_eq!(dry["marked_blobs"], 3, "{dry}");
    let listed: BTreeSet<String> = dry["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, going);
    for key in ["kept_young", "kept_in_use", "mark_ms", "sweep_ms"] {
        assert!(dry[key].is_u64(), "{key} in {dry}");
    }
    assert_eq!(
        content_on_disk(&w.root),
        before,
        "a dry run changes nothing"
    );
    // The pass ran as the gc worker's: its status shows it.
    let gc = worker(&get_json(&w, "/_wharf/v1/status").await, "gc");
    assert_eq!(
        (gc["runs"].as_u64(), gc["last_result"].as_str()),
        (Some(1), Some("ok")),
        "{gc}"
    );
    assert_eq!(gc["last_report"], dry);
    assert_eq!(gc["next_run"], Value::Null, "interval 0: on demand only");

    // No body is a real collection.
    let r = http().post(w.url("/_wharf/v1/gc")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let real: Value = r.json().await.unwrap();
    assert_eq!(real["dry_run"], false, "{real}");
    assert_eq!(
        (real["swept_blobs"].as_u64(), real["swept_bytes"].as_u64()),
        (Some(3), Some(going_bytes))
    );
    for d in &going {
        assert!(!blob_path(&w.root, d).exists(), "{d} is gone");
    }
    let disk = content_on_disk(&w.root);
    assert_eq!(disk, (before.0 - 3, before.1 - going_bytes));
    let u = get_json(&w, "/_wharf/v1/usage").await;
    assert_eq!(
        (u["blobs"].as_u64().unwrap(), u["bytes"].as_u64().unwrap()),
        disk,
        "{u}"
    );
    assert_eq!(get_oci(&w, "/v2/team/keep/manifests/1").await.status(), 200);
    let r = post_json(&w, "/_wharf/v1/gc", json!({"dry_run": false})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["swept_blobs"], 0);

    // Malformed options are refused, never ignored.
    for body in [
        json!({"dry_run": "yes"}),
        json!({"dryrun": true}),
        json!("yes"),
    ] {
        let r = post_json(&w, "/_wharf/v1/gc", body.clone()).await;
        let (status, code, _) = admin_error(r).await;
        assert_eq!((status, code.as_str()), (400, "BAD_REQUEST"), "{body}");
    }
    let r = http()
        .post(w.url("/_wharf/v1/gc"))
        .body("{\"dry_run\":")
        .send()
        .await
        .unwrap();
    assert_eq!(admin_error(r).await.0, 400);

    // verify: every content file re-hashed, none corrupt.
    let r = http()
        .post(w.url("/_wharf/v1/verify"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"checked_blobs": 3, "checked_bytes": disk.1, "corrupt": []})
    );
    let r = post_json(&w, "/_wharf/v1/verify", json!({})).await;
    assert_eq!(r.status(), 200);
    let r = post_json(&w, "/_wharf/v1/verify", json!({"fast": true})).await;
    let (status, _, message) = admin_error(r).await;
    assert_eq!(status, 400);
    assert!(message.contains("fast"), "{message}");

    // evict: nothing to do without a budget, said in a report.
    let r = http().post(w.url("/_wharf/v1/evict")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["evicted_blobs"], 0, "{e}");
    assert_eq!(e["evicted_bytes"], 0, "{e}");
    assert_eq!(e["budget"], 0, "{e}");
    assert!(e["cached_bytes_after"].is_u64(), "{e}");

    let status = get_json(&w, "/_wharf/v1/status").await;
    assert_eq!(worker(&status, "gc")["runs"], 3);
    assert_eq!(worker(&status, "verify")["runs"], 2);
    assert_eq!(worker(&status, "evict")["runs"], 1);
    assert_eq!(worker(&status, "evict")["last_report"], e);
    let m = common::metrics_text(&w).await;
    assert!(
        m.contains("wharf_worker_runs_total{worker=\"gc\",result=\"ok\"} 3"),
        "{m}"
    );
    assert!(m.contains("wharf_gc_swept_blobs_total 3"), "{m}");
    assert!(
        m.contains(&format!("wharf_gc_swept_bytes_total {going_bytes}")),
        "{m}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pins_resolve_names_as_clients_write_them_and_show_in_repos() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path()).await;
    let nginx = Image::new(vec![tar_with_file("n", b"nginx layer")]);
    publish(&hub, "library/nginx", "1.27", &nginx).await;
    let nginx_d = digest(&nginx.manifest);
    let extra = mirror_config(&hub.base, "", "[hosted]\nprefixes = [\"team/\"]\n");
    let w = Wharf::start_config(common::config(&dir.path().join("mirror"), &extra)).await;

    // A mirrored image not pulled yet: 404 that says to pull it first.
    let r = post_json(
        &w,
        "/_wharf/v1/pin",
        json!({"reference": "docker.io/library/nginx:1.27"}),
    )
    .await;
    let (status, code, message) = admin_error(r).await;
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
    assert!(message.contains("pull it"), "{message}");
    let r = get_oci(&w, "/v2/library/nginx/manifests/1.27").await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let r = post_json(
        &w,
        "/_wharf/v1/pin",
        json!({"reference": "docker.io/library/nginx:1.28"}),
    )
    .await;
    let (status, _, message) = admin_error(r).await;
    assert_eq!(status, 404);
    assert!(message.contains("pull it"), "{message}");

    // Pulled: pinned, under its local name however it is written.
    for spelling in [
        "docker.io/library/nginx:1.27",
        "nginx:1.27",
        "library/nginx:1.27",
    ] {
        let r = post_json(&w, "/_wharf/v1/pin", json!({"reference": spelling})).await;
        assert_eq!(r.status(), 200, "{spelling}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"reference": "docker.io/library/nginx:1.27", "digest": nginx_d}),
            "{spelling}"
        );
    }
    // A pushed image, pinned by digest.
    let (_, app_d) = push_image(&w, "team/app", "1", &[bytes(5_000, 3)]).await;
    let app_ref = format!("team/app@{app_d}");
    let r = post_json(&w, "/_wharf/v1/pin", json!({"reference": app_ref})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"reference": app_ref, "digest": app_d})
    );
    let (_, other_d) = push_image(&w, "team/app", "2", &[bytes(6_000, 4)]).await;
    assert_ne!(other_d, app_d);
    // A pinned image cannot be removed: DENIED, naming the pin to unpin.
    let r = post_json(&w, "/_wharf/v1/rm", json!({"reference": app_ref})).await;
    let (status, code, message) = admin_error(r).await;
    assert_eq!((status, code.as_str()), (403, "DENIED"));
    assert!(message.contains("unpin"), "{message}");
    let tags = get_json(&w, "/v2/team/app/tags/list").await;
    assert!(
        tags["tags"].as_array().unwrap().contains(&json!("1")),
        "{tags}"
    );

    // Unknown and malformed references.
    for (reference, want) in [
        ("team/app:9", "team/app has no tag 9"),
        ("team/nope:1", "repository team/nope is unknown"),
    ] {
        let r = post_json(&w, "/_wharf/v1/pin", json!({"reference": reference})).await;
        let (status, code, message) = admin_error(r).await;
        assert_eq!((status, code.as_str()), (404, "NOT_FOUND"), "{reference}");
        assert!(message.contains(want), "{reference}: {message}");
    }
    for body in [
        json!({"reference": "team/app"}),
        json!({"reference": "Team/App:1"}),
        json!({"reference": "team/app@sha256:abc"}),
        json!({"ref": "team/app:1"}),
        json!({"reference": 7}),
    ] {
        for p in ["/_wharf/v1/pin", "/_wharf/v1/unpin"] {
            let r = post_json(&w, p, body.clone()).await;
            let (status, code, _) = admin_error(r).await;
            assert_eq!((status, code.as_str()), (400, "BAD_REQUEST"), "{p} {body}");
        }
    }
    let r = http().post(w.url("/_wharf/v1/pin")).send().await.unwrap();
    let (status, _, message) = admin_error(r).await;
    assert_eq!(status, 400);
    assert!(message.contains("reference"), "{message}");

    // The list, in reference order.
    let v = get_json(&w, "/_wharf/v1/pins").await;
    let pins = v["pins"].as_array().unwrap();
    assert_eq!(pins.len(), 2, "{v}");
    assert_eq!(pins[0]["reference"], "docker.io/library/nginx:1.27");
    assert_eq!(pins[0]["digest"], nginx_d.as_str());
    assert_eq!(pins[0]["repository"], "docker.io/library/nginx");
    assert_eq!(pins[0]["tag"], "1.27");
    assert_eq!(pins[1]["reference"], app_ref.as_str());
    assert_eq!(pins[1]["digest"], app_d.as_str());
    assert_eq!(pins[1]["tag"], Value::Null);
    assert!(pins[1]["created"].as_u64().unwrap() > 1_600_000_000);

    // Repositories: pinned, and pulled (the mirrored one was; the pushed one
    // not yet). Last reads are flushed every few seconds: what is still in
    // memory counts too.
    let repos = get_json(&w, "/_wharf/v1/repos").await;
    let repo = |v: &Value, name: &str| -> Value {
        v["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap()
    };
    let ng = repo(&repos, "docker.io/library/nginx");
    assert_eq!(ng["pinned"], true, "{ng}");
    let now = wharf::store::unix_now();
    assert!(
        ng["last_pulled"]
            .as_u64()
            .is_some_and(|t| t + 60 > now && t <= now),
        "{ng}"
    );
    let app = repo(&repos, "team/app");
    assert_eq!(
        (app["pinned"].clone(), app["last_pulled"].clone()),
        (json!(true), Value::Null),
        "{app}"
    );
    let r = get_oci(&w, "/v2/team/app/manifests/2").await;
    assert_eq!(r.status(), 200);
    let app = repo(&get_json(&w, "/_wharf/v1/repos").await, "team/app");
    assert!(
        app["last_pulled"].as_u64().is_some_and(|t| t + 60 > now),
        "{app}"
    );
    // Per tag: the digest pin protects tag 1, not tag 2.
    let v = get_json(&w, "/_wharf/v1/repos/team/app").await;
    let pinned: Vec<(&str, bool)> = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["tag"].as_str().unwrap(), t["pinned"].as_bool().unwrap()))
        .collect();
    assert_eq!(pinned, [("1", true), ("2", false)]);
    let v = get_json(&w, "/_wharf/v1/repos/nginx").await;
    assert_eq!(v["tags"][0]["pinned"], true, "{v}");

    // Unpin, as written differently again; a second time: 404.
    let r = post_json(&w, "/_wharf/v1/unpin", json!({"reference": "nginx:1.27"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"reference": "docker.io/library/nginx:1.27", "digest": nginx_d})
    );
    let r = post_json(&w, "/_wharf/v1/unpin", json!({"reference": "nginx:1.27"})).await;
    let (status, code, message) = admin_error(r).await;
    assert_eq!((status, code.as_str()), (404, "NOT_FOUND"));
    assert!(message.contains("not pinned"), "{message}");
    // A digest pin is not removed by its tag.
    let r = post_json(&w, "/_wharf/v1/unpin", json!({"reference": "team/app:1"})).await;
    assert_eq!(admin_error(r).await.0, 404);
    let v = get_json(&w, "/_wharf/v1/pins").await;
    assert_eq!(v["pins"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["pins"][0]["reference"], app_ref.as_str());
    let ng = repo(
        &get_json(&w, "/_wharf/v1/repos").await,
        "docker.io/library/nginx",
    );
    assert_eq!(ng["pinned"], false, "{ng}");
    w.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_token_is_no_admin_credential() {
    // A token carries repository scopes only: one that an admin fetched for a
    // pull (what dockerd holds, what a CI log may leak) must not delete images
    // or run passes on /_wharf/v1/.
    for scheme in ["token", "auto"] {
        let dir = tempfile::tempdir().unwrap();
        let w = with_users(dir.path(), scheme, "true").await;
        let alice = As::user(&w, "alice", "alice-pw");
        assert_eq!(alice.push_image("team/app", "1", b"x").await, 201);
        for scopes in [&["repository:team/app:pull"][..], &[][..]] {
            let t = common::token(&w, Some(("alice", "alice-pw")), scopes).await;
            let holder = As::bearer(&w, t);
            let r = holder
                .req(Method::POST, "/_wharf/v1/rm")
                .json(&json!({"reference": "team/app:1"}))
                .send()
                .await
                .unwrap();
            let (status, code, _) = admin_error(r).await;
            assert_eq!(
                (status, code.as_str()),
                (403, "DENIED"),
                "{scheme} {scopes:?}"
            );
            for (m, p) in NEW_ENDPOINTS {
                let r = holder
                    .req(m.clone(), p)
                    .json(&json!({"reference": "team/app:1"}))
                    .send()
                    .await
                    .unwrap();
                let (status, code, _) = admin_error(r).await;
                assert_eq!((status, code.as_str()), (403, "DENIED"), "{scheme} {p}");
            }
        }
        // Nothing ran, nothing went; Basic credentials still work.
        let r = alice
            .req(Method::GET, "/_wharf/v1/status")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        for name in ["gc", "verify", "evict"] {
            assert_eq!(worker(&v, name)["runs"], 0, "{scheme} {name}");
        }
        assert_eq!(
            alice.status(Method::GET, "/v2/team/app/manifests/1").await,
            200,
            "{scheme}: the tag was not removed"
        );
        w.stop().await;
    }
}
