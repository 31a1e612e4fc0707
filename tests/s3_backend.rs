//! wharf with `[storage] backend = "s3"` on a real S3 protocol server (moto,
//! `tests/common/s3.rs`): pushed and mirrored blobs live in the bucket, not
//! under the data directory; small and multipart blobs pull back whole and in
//! ranges; a restart serves them again; gc removes deleted content from the
//! bucket; `redirect = true` sends blob GETs to presigned URLs that serve the
//! bytes (and skopeo follows them); a bucket that does not answer stops
//! start-up with a message naming it.

mod common;

use std::path::Path;

use common::client::{gc, get_blob, get_blob_range, push};
use common::disk::largest_staged;
use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::s3::{S3Server, blob_key, config, server};
use common::upstreams::{hub, mirror_config, publish};
use common::{Wharf, bytes, digest, have_tool, http};
use object_store::ObjectStoreExt as _;
use object_store::path::Path as Key;
use wharf::config::Config;

const BUCKET: &str = "wharf-test";

/// The configuration of a wharf on `root` whose blobs live in the bucket,
/// with `extra` sections (and `s3_extra` lines in `[storage.s3]`).
fn s3_config(s3: &S3Server, root: &Path, extra: &str, s3_extra: &str) -> Config {
    let upstreams = if extra.contains("[[upstream]]") {
        ""
    } else {
        "[hosted]\nonly = true\n"
    };
    let sections = format!("{upstreams}{extra}\n[gc]\ninterval = \"0\"\ngrace = \"0s\"\n");
    config(s3, BUCKET, root, &sections, s3_extra)
}

/// The bucket's object for `digest`, if there is one (its size).
async fn object_size(s3: &S3Server, digest: &str) -> Option<u64> {
    s3.object_size(BUCKET, &blob_key(digest)).await
}

/// Regular files under the data directory's `blobs/` (none with S3).
fn local_blob_files(root: &Path) -> usize {
    fn walk(p: &Path) -> usize {
        match std::fs::read_dir(p) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| {
                    let t = e.file_type().unwrap();
                    if t.is_dir() { walk(&e.path()) } else { 1 }
                })
                .sum(),
            Err(_) => 0,
        }
    }
    walk(&root.join("blobs"))
}

#[tokio::test(flavor = "multi_thread")]
async fn pushed_blobs_live_in_the_bucket_and_pull_back_whole_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let root = dir.path().join("data");
    let w = Wharf::start_config(s3_config(&s3, &root, "", "")).await;
    // One small layer (one conditional PUT) and one of 20 MiB (multipart).
    let small = bytes(3_000, 1);
    let big = bytes(20 * 1024 * 1024 + 123, 2);
    let img = Image::new(vec![small.clone(), big.clone()]);
    push(&w, "team/app", "1", &img).await;
    for (d, b) in img.blobs() {
        assert_eq!(object_size(&s3, &d).await, Some(b.len() as u64), "{d}");
    }
    assert_eq!(
        local_blob_files(&root),
        0,
        "no blob is kept under the data directory"
    );
    let (status, body) = get_blob(&w, "team/app", &digest(&big)).await;
    assert_eq!(status, 200);
    assert_eq!(
        digest(&body),
        digest(&big),
        "the multipart blob reads back whole"
    );
    let (status, body) = get_blob_range(
        &w,
        "team/app",
        &digest(&big),
        Some("bytes=10485000-10485999"),
    )
    .await;
    assert_eq!(status, 206);
    assert_eq!(body, big[10_485_000..10_486_000]);
    let m = http()
        .get(w.url("/v2/team/app/manifests/1"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 200);
    assert_eq!(m.bytes().await.unwrap().to_vec(), img.manifest);
    w.stop().await;

    // A restart on the same data directory serves the same bytes from the bucket.
    let w = Wharf::start_config(s3_config(&s3, &root, "", "")).await;
    let (status, body) = get_blob(&w, "team/app", &digest(&small)).await;
    assert_eq!((status, body), (200, small));
    let r = http()
        .get(w.url("/v2/team/app/manifests/1"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_fills_the_bucket_and_serves_hits_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    std::fs::create_dir_all(dir.path().join("hub")).unwrap();
    let hub = hub(&dir.path().join("hub")).await;
    let img = Image::new(vec![tar_with_file("busybox", &bytes(200_000, 7))]);
    publish(&hub, "library/busybox", "1", &img).await;
    let root = dir.path().join("mirror");
    let w = Wharf::start_config(s3_config(&s3, &root, &mirror_config(&hub.base, "", ""), "")).await;
    let layer = digest(&img.layers[0]);
    for pass in ["MISS", "HIT"] {
        let r = http()
            .get(w.url(&format!("/v2/library/busybox/blobs/{layer}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{pass}");
        let cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
        assert!(cache.starts_with(pass), "{pass}: {cache}");
        assert_eq!(digest(&r.bytes().await.unwrap()), layer);
    }
    assert_eq!(
        object_size(&s3, &layer).await,
        Some(img.layers[0].len() as u64)
    );
    assert_eq!(local_blob_files(&root), 0);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_removes_deleted_content_from_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let w = Wharf::start_config(s3_config(&s3, &dir.path().join("data"), "", "")).await;
    let keep = Image::new(vec![bytes(5_000, 11)]);
    let gone = Image::new(vec![bytes(6_000, 12)]);
    push(&w, "team/keep", "1", &keep).await;
    push(&w, "team/gone", "1", &gone).await;
    let m = digest(&gone.manifest);
    let r = http()
        .delete(w.url(&format!("/v2/team/gone/manifests/{m}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // The bucket's clock has whole seconds: an object written in the same
    // second as the sweep's mark counts as young (grace 0), so gc runs until
    // the sweep is past that second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let report = gc(&w).await;
        if object_size(&s3, &digest(&gone.layers[0])).await.is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never swept: {report}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        object_size(&s3, &digest(&keep.layers[0])).await.is_some(),
        "kept"
    );
    let (status, _) = get_blob(&w, "team/keep", &digest(&keep.layers[0])).await;
    assert_eq!(status, 200);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_sends_blob_gets_to_presigned_urls_that_serve_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let w = Wharf::start_config(s3_config(
        &s3,
        &dir.path().join("data"),
        "",
        "redirect = true\n",
    ))
    .await;
    let layer = bytes(300_000, 21);
    let img = Image::new(vec![tar_with_file("f", &layer)]);
    push(&w, "team/app", "1", &img).await;
    let d = digest(&img.layers[0]);
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_follow
        .get(w.url(&format!("/v2/team/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&s3.endpoint), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let fetched = no_follow.get(&location).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(digest(&fetched.bytes().await.unwrap()), d);
    // HEAD answers itself (size and digest), without a redirect.
    let h = no_follow
        .head(w.url(&format!("/v2/team/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    // A real client follows the redirect.
    if have_tool("skopeo") {
        let out = dir.path().join("oci");
        let status = std::process::Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{}/team/app:1", w.addr))
            .arg(format!("dir:{}", out.display()))
            .status()
            .unwrap();
        assert!(status.success(), "skopeo pulls through the redirect");
        // dir: keeps each blob as it came, named by its hex digest.
        let blob = out.join(d.trim_start_matches("sha256:"));
        let listed: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let got = std::fs::read(&blob).unwrap_or_else(|e| panic!("{e}: {listed:?}"));
        assert_eq!(digest(&got), d);
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_that_does_not_answer_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let text = format!(
        "[hosted]\nonly = true\n[storage]\nroot = {:?}\n{}",
        dir.path().join("data").display().to_string(),
        s3.storage_lines("no-such-bucket")
    );
    let cfg = Config::parse(&text, Path::new("s3.toml")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let err = wharf::app::run(cfg, listener, rx)
        .await
        .expect_err("start-up fails on a missing bucket")
        .to_string();
    assert!(err.contains("no-such-bucket"), "{err}");
    assert!(
        !err.contains(&s3.secret_key),
        "the secret is never shown: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_on_the_same_bucket_and_prefix_both_start_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let first = Wharf::start_config(s3_config(&s3, &dir.path().join("a"), "", "")).await;
    let img = Image::new(vec![bytes(4_000, 31)]);
    push(&first, "team/app", "1", &img).await;
    // Another data directory (another host) on the same bucket and prefix.
    let second = Wharf::start_config(s3_config(&s3, &dir.path().join("b"), "", "")).await;
    let other = Image::new(vec![bytes(4_000, 32)]);
    push(&second, "team/other", "1", &other).await;
    // Each serves what it pushed, and no claim object is written.
    let (status, _) = get_blob(&first, "team/app", &digest(&img.layers[0])).await;
    assert_eq!(status, 200);
    let (status, _) = get_blob(&second, "team/other", &digest(&other.layers[0])).await;
    assert_eq!(status, 200);
    let claim = s3.store(BUCKET).head(&Key::from("wharf-node")).await;
    assert!(
        matches!(claim, Err(object_store::Error::NotFound { .. })),
        "no node claims the prefix: {claim:?}"
    );
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_while_it_uploads_to_the_bucket_leaves_nothing_half_visible() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let root = dir.path().join("data");
    let storage = s3.storage_lines(BUCKET);
    let extra = "";
    let d = common::WharfProcess::spawn_storage(dir.path(), &root, "", &storage, extra);
    // 48 MiB: six multipart parts, so the upload to the bucket takes a while.
    let blob = bytes(48 << 20, 41);
    let dg = digest(&blob);
    let r = http()
        .post(d.url("/v2/team/big/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let sep = if location.contains('?') { '&' } else { '?' };
    let put_url = if location.starts_with("http") {
        format!("{location}{sep}digest={dg}")
    } else {
        d.url(&format!("{location}{sep}digest={dg}"))
    };
    let body = blob.clone();
    let put = tokio::spawn(async move { http().put(put_url).body(body).send().await });
    // Every byte has reached the staging file: the node is verifying and
    // uploading it to the bucket now. Kill it there.
    let tmp = root.join("tmp");
    let full = blob.len() as u64;
    common::wait_for(60, "the whole blob to be staged", || {
        let tmp = tmp.clone();
        async move { largest_staged(&tmp) >= full }
    })
    .await;
    drop(d);
    let _ = put.await;

    let d = common::WharfProcess::spawn_storage(dir.path(), &root, "", &storage, extra);
    let head = http()
        .head(d.url(&format!("/v2/team/big/blobs/{dg}")))
        .send()
        .await
        .unwrap();
    match head.status().as_u16() {
        // Not acknowledged and not there: the object may exist whole (content
        // addressed, never half-written), but nothing names it.
        404 => {
            if let Some(size) = object_size(&s3, &dg).await {
                assert_eq!(size, blob.len() as u64, "an object is whole or absent");
            }
        }
        // The commit made it before the kill: then it is whole.
        200 => {
            let got = http()
                .get(d.url(&format!("/v2/team/big/blobs/{dg}")))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(digest(&got), dg);
        }
        other => panic!("HEAD after the restart: {other}"),
    }
    assert_eq!(
        largest_staged(&root.join("tmp")),
        0,
        "staging is emptied at start"
    );
    // The client pushes again, and the blob pulls back whole.
    let ep = common::replica::Endpoint(d.base.clone());
    ep.push_blob("team/big", &blob).await;
    let got = http()
        .get(d.url(&format!("/v2/team/big/blobs/{dg}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(digest(&got.bytes().await.unwrap()), dg);
    assert_eq!(object_size(&s3, &dg).await, Some(blob.len() as u64));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_that_dies_fails_requests_quickly_and_keeps_nothing_half_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let w = Wharf::start_config(s3_config(&s3, &dir.path().join("data"), "", "")).await;
    let img = Image::new(vec![bytes(10_000, 51)]);
    push(&w, "team/app", "1", &img).await;
    drop(s3);
    // Reads of stored blobs fail with a server error, within the retry budget.
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        http()
            .get(w.url(&format!("/v2/team/app/blobs/{}", digest(&img.layers[0]))))
            .send(),
    )
    .await
    .expect("a read during a bucket outage answers, it does not hang")
    .unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
    // A push fails too, and leaves no blob the registry would claim to have.
    let blob = bytes(20_000, 52);
    let d = digest(&blob);
    let r = http()
        .post(w.url(&format!("/v2/team/app/blobs/uploads/?digest={d}")))
        .body(blob)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
    let head = http()
        .head(w.url(&format!("/v2/team/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404, "a failed push is not half-visible");
    assert!(started.elapsed() < std::time::Duration::from_secs(120));
    w.stop().await;
}

/// No key in the configuration: the credentials come from the usual `AWS_*`
/// environment, as the README says (moto accepts any key; the test shows
/// the bucket is reached and written that way, with nothing in the config).
#[test]
fn credentials_from_the_aws_environment_reach_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let lines: String = s3
        .storage_lines(BUCKET)
        .lines()
        .filter(|l| !l.starts_with("access_key_id") && !l.starts_with("secret_access_key_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!lines.contains("access_key"), "{lines}");
    let w = common::WharfProcess::spawn_env(
        dir.path(),
        &dir.path().join("data"),
        "",
        &lines,
        "",
        &[
            ("AWS_ACCESS_KEY_ID", "from-the-environment"),
            ("AWS_SECRET_ACCESS_KEY", "environment-secret"),
        ],
    );
    let (blob, d) = push_to_bucket(&s3, &w, "team/env", 7_000, 81);
    let back = reqwest::blocking::Client::new()
        .get(w.url(&format!("/v2/team/env/blobs/{d}")))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(back.as_ref(), blob.as_slice());
}

/// The secret written in the configuration itself (`secret_access_key`, as
/// registry:2's `secretkey`), with no file and no `AWS_*` environment: the
/// bucket is reached and written.
#[tokio::test(flavor = "multi_thread")]
async fn an_inline_secret_in_the_config_reaches_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let text = format!(
        "[hosted]\nonly = true\n[storage]\nroot = {:?}\nbackend = \"s3\"\n[storage.s3]\nbucket = {BUCKET:?}\nendpoint = {:?}\nregion = {:?}\naccess_key_id = {:?}\nsecret_access_key = {:?}\n",
        dir.path().join("data").display().to_string(),
        s3.endpoint,
        s3.region,
        s3.access_key,
        s3.secret_key,
    );
    let cfg = Config::parse(&text, Path::new("s3.toml")).unwrap();
    assert!(
        !format!("{cfg:?}").contains(&s3.secret_key),
        "the secret is never shown"
    );
    let w = Wharf::start_config(cfg).await;
    let img = Image::new(vec![bytes(6_000, 91)]);
    push(&w, "team/inline", "1", &img).await;
    let d = digest(&img.layers[0]);
    assert_eq!(object_size(&s3, &d).await, Some(img.layers[0].len() as u64));
    let (status, back) = get_blob(&w, "team/inline", &d).await;
    assert_eq!(status, 200);
    assert_eq!(back, img.layers[0]);
    w.stop().await;
}

/// Only the bucket in the configuration: the endpoint (a plain-HTTP one, as
/// MinIO on a LAN), region and credentials all come from the environment
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`), as the AWS CLI takes them.
#[test]
fn the_endpoint_and_region_can_come_from_the_aws_environment_too() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let lines = format!("backend = \"s3\"\n[storage.s3]\nbucket = {BUCKET:?}\n");
    let w = common::WharfProcess::spawn_env(
        dir.path(),
        &dir.path().join("data"),
        "",
        &lines,
        "",
        &[
            ("AWS_ENDPOINT_URL", s3.endpoint.as_str()),
            ("AWS_REGION", s3.region.as_str()),
            ("AWS_ACCESS_KEY_ID", "from-the-environment"),
            ("AWS_SECRET_ACCESS_KEY", "environment-secret"),
        ],
    );
    push_to_bucket(&s3, &w, "team/envurl", 5_000, 83);
}

/// `AWS_ENDPOINT_URL` with credentials in it (`http://user:pass@host`) is
/// refused as `endpoint` is, without showing them: object_store builds every
/// presigned URL (`redirect = true`) from it, so it would hand them to every
/// client that pulls.
#[test]
fn an_endpoint_with_credentials_in_the_environment_is_refused_unshown() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let with_credentials = s3.endpoint.replacen("://", "://bob:url-password@", 1);
    let lines = format!("backend = \"s3\"\n[storage.s3]\nbucket = {BUCKET:?}\nredirect = true\n");
    let started = common::WharfProcess::try_spawn_env(
        dir.path(),
        &dir.path().join("data"),
        "",
        &lines,
        "",
        &[
            ("AWS_ENDPOINT_URL", with_credentials.as_str()),
            ("AWS_REGION", s3.region.as_str()),
            ("AWS_ACCESS_KEY_ID", s3.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", s3.secret_key.as_str()),
        ],
    );
    let w = match started {
        Err(log) => {
            assert!(
                log.contains("AWS_ENDPOINT_URL") && log.contains("credentials"),
                "{log}"
            );
            assert!(!log.contains("url-password"), "{log}");
            return;
        }
        Ok(w) => w,
    };
    // It served: show where a blob GET sends the client.
    let blob = bytes(2_000, 84);
    let d = digest(&blob);
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .post(w.url(&format!("/v2/team/creds/blobs/uploads/?digest={d}")))
        .body(blob)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .get(w.url(&format!("/v2/team/creds/blobs/{d}")))
        .send()
        .unwrap();
    panic!(
        "started on an endpoint with credentials; a blob GET answers {} to {:?}",
        r.status(),
        r.headers().get("location")
    );
}

/// `[storage]` lines of a wharf with only the bucket configured.
fn bucket_only() -> String {
    format!("backend = \"s3\"\n[storage.s3]\nbucket = {BUCKET:?}\n")
}

/// The `AWS_*` environment of a wharf whose endpoint variables say
/// `endpoint_url` and `endpoint_url_s3`.
fn aws_env<'a>(endpoint_url: &'a str, endpoint_url_s3: &'a str) -> [(&'static str, &'a str); 5] {
    [
        ("AWS_ENDPOINT_URL", endpoint_url),
        ("AWS_ENDPOINT_URL_S3", endpoint_url_s3),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "from-the-environment"),
        ("AWS_SECRET_ACCESS_KEY", "environment-secret"),
    ]
}

/// Pushes a blob of `size` bytes to `w` and checks it reached the bucket;
/// the blob and its digest.
fn push_to_bucket(
    s3: &S3Server,
    w: &common::WharfProcess,
    repo: &str,
    size: usize,
    seed: u64,
) -> (Vec<u8>, String) {
    let blob = bytes(size, seed);
    let d = digest(&blob);
    let r = reqwest::blocking::Client::new()
        .post(w.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
        .body(blob.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(object_size(s3, &d)), Some(blob.len() as u64));
    (blob, d)
}

/// `AWS_ENDPOINT_URL_S3` (the AWS CLI's S3-only form) ranks above
/// `AWS_ENDPOINT_URL` and is plain HTTP when it says http://.
#[test]
fn the_s3_only_endpoint_variable_is_honoured_over_the_general_one() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let w = common::WharfProcess::spawn_env(
        dir.path(),
        &dir.path().join("data"),
        "",
        &bucket_only(),
        "",
        &aws_env("https://127.0.0.1:9", &s3.endpoint),
    );
    push_to_bucket(&s3, &w, "team/s3only", 3_000, 85);
}

/// `endpoint` in the configuration wins over the environment's, also over
/// `AWS_ENDPOINT_URL_S3` (which object_store alone ranks above it).
#[test]
fn the_configured_endpoint_wins_over_the_s3_only_variable() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let w = common::WharfProcess::spawn_env(
        dir.path(),
        &dir.path().join("data"),
        "",
        &s3.storage_lines(BUCKET),
        "",
        &aws_env("http://127.0.0.1:9", "http://127.0.0.1:9"),
    );
    push_to_bucket(&s3, &w, "team/configured", 3_000, 86);
}
