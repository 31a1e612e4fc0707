//! Replication (`[[replicate]]`) to real registries: a second wharf with
//! token auth and Debian's `docker-registry` (Distribution 2.8.2) with
//! htpasswd. Pushes arrive with the digests the client pushed, deletions
//! follow, and nothing queued is lost across a target outage or a kill.

mod common;

use common::image::{Image, tar_with_file};
use common::replica::{Remote, push, push_index, rule};
use common::{Wharf, bytes, upstreams};

fn image(seed: u64, base: &[u8]) -> Image {
    Image::new(vec![
        tar_with_file("base", base),
        tar_with_file("app", &bytes(100_000 + seed as usize, seed)),
    ])
}

/// A target wharf (token auth, user `pusher`) and a source wharf with one
/// `[[replicate]]` rule copying `team/*` to it (`extra` keys added).
async fn source_and_target(dir: &std::path::Path, extra: &str) -> (Wharf, Wharf) {
    let hub = upstreams::hub(dir).await;
    let pw = dir.join("target-pw");
    std::fs::write(&pw, "pusher-pw\n").unwrap();
    let a = Wharf::start_with(
        &dir.join("a"),
        &rule("team/*", &hub.base, "pusher", &pw, extra),
    )
    .await;
    (a, hub)
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_reach_a_second_wharf_with_their_digests_and_deletions_follow() {
    let dir = tempfile::tempdir().unwrap();
    let (a, hub) = source_and_target(dir.path(), "delete = true").await;
    let base = bytes(2 << 20, 1);
    let (one, two) = (image(2, &base), image(3, &base));
    let d1 = push(&a, "team/one", "v1", &one).await;
    let d2 = push(&a, "team/two", "v1", &two).await;
    let amd = Image::for_platform(vec![tar_with_file("x", &bytes(5000, 4))], "amd64");
    let arm = Image::for_platform(vec![tar_with_file("y", &bytes(6000, 5))], "arm64");
    let di = push_index(
        &a,
        "team/multi",
        "latest",
        &[(&amd, "amd64"), (&arm, "arm64")],
    )
    .await;
    // Not covered by the rule: stays here.
    push(&a, "other/app", "v1", &image(6, b"o")).await;

    let target = Remote::Wharf(hub.base.clone());
    target.wait_for("team/one", "v1", Some(&d1), 30).await;
    target.wait_for("team/two", "v1", Some(&d2), 30).await;
    target.wait_for("team/multi", "latest", Some(&di), 30).await;
    // The children of the index are there by digest, and every blob is
    // byte for byte what was pushed.
    for img in [&amd, &arm] {
        let d = common::digest(&img.manifest);
        assert_eq!(
            target.digest("team/multi", &d).await.as_deref(),
            Some(d.as_str())
        );
        for (bd, b) in img.blobs() {
            assert!(target.blob("team/multi", &bd).await == b);
        }
    }
    for (bd, b) in two.blobs() {
        assert!(target.blob("team/two", &bd).await == b);
    }
    assert_eq!(target.digest("other/app", "v1").await, None);

    // A deleted tag goes on the target too.
    let r = common::http()
        .delete(a.url("/v2/team/one/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    target.wait_for("team/one", "v1", None, 30).await;
    assert_eq!(
        target.digest("team/two", "v1").await.as_deref(),
        Some(d2.as_str())
    );

    // The admin API shows the target with nothing left.
    let v = common::get_json(&a, "/_wharf/v1/replicate").await;
    let t = &v["targets"][0];
    assert_eq!(t["target"], hub.base.as_str());
    assert_eq!(t["queued"], 0, "{v}");
    assert!(t["items_done"].as_u64().unwrap() >= 4, "{v}");
    a.stop().await;
    hub.stop().await;
}

/// The queued items a wharf's admin API reports for its first target.
async fn queued(base: &str) -> u64 {
    let v: serde_json::Value = common::http()
        .get(format!("{base}/_wharf/v1/replicate"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["targets"][0]["queued"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_queued_is_lost_across_a_target_outage_and_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let hub = upstreams::hub(dir.path()).await;
    let hub_addr = hub.addr;
    let pw = dir.path().join("target-pw");
    std::fs::write(&pw, "pusher-pw\n").unwrap();
    let extra = rule("team/*", &hub.base, "pusher", &pw, "");
    let root = dir.path().join("a-data");
    let adir = dir.path().join("a");
    std::fs::create_dir_all(&adir).unwrap();
    let target = Remote::Wharf(hub.base.clone());

    let a = common::WharfProcess::spawn(&adir, &root, &extra);
    let aw = common::replica::Endpoint(a.base.clone());
    let base = bytes(1 << 20, 7);
    let d1 = aw.push("team/app", "v1", &image(8, &base)).await;
    target.wait_for("team/app", "v1", Some(&d1), 30).await;

    // The target goes away; pushes are still acknowledged at once and queued.
    hub.stop().await;
    let d2 = aw.push("team/app", "v2", &image(9, &base)).await;
    let d3 = aw.push("team/lib", "v1", &image(10, &base)).await;
    let a_base = a.base.clone();
    common::wait_for(30, "the pushes queued for the stopped target", || {
        let b = a_base.clone();
        async move { queued(&b).await >= 2 }
    })
    .await;
    // Killed with the items still queued.
    drop(a);

    // Back up first, with the target still down; then the target comes back.
    let a = common::WharfProcess::spawn(&adir, &root, &extra);
    assert!(queued(&a.base).await >= 2, "the queue survived the kill");
    let hub = upstreams::restart_hub(dir.path(), hub_addr).await;
    target.wait_for("team/app", "v2", Some(&d2), 60).await;
    target.wait_for("team/lib", "v1", Some(&d3), 60).await;
    assert_eq!(
        target.digest("team/app", "v1").await.as_deref(),
        Some(d1.as_str())
    );
    let a_base = a.base.clone();
    common::wait_for(30, "an empty queue", || {
        let b = a_base.clone();
        async move { queued(&b).await == 0 }
    })
    .await;
    drop(a);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_reach_distribution_with_htpasswd_and_deletions_follow() {
    if !common::have_tool("docker-registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ddir = dir.path().join("dist");
    std::fs::create_dir_all(&ddir).unwrap();
    let dist = tokio::task::spawn_blocking(move || {
        common::distribution_target::start(&ddir, &[("repl", "repl-pw")])
    })
    .await
    .unwrap();
    let pw = dir.path().join("dist-pw");
    std::fs::write(&pw, "repl-pw").unwrap();
    let a = Wharf::start_with(
        &dir.path().join("a"),
        &rule("team/*", &dist.base, "repl", &pw, "delete = true"),
    )
    .await;
    let base = bytes(1 << 20, 11);
    let (one, two) = (image(12, &base), image(13, &base));
    let d1 = push(&a, "team/one", "v1", &one).await;
    let d2 = push(&a, "team/two", "v1", &two).await;
    // A second tag naming the same manifest as team/two:v1.
    common::replica::put(
        &a,
        "team/two",
        "stable",
        common::image::OCI_MANIFEST,
        &two.manifest,
    )
    .await;
    let amd = Image::for_platform(vec![tar_with_file("x", &bytes(7000, 14))], "amd64");
    let arm = Image::for_platform(vec![tar_with_file("y", &bytes(8000, 15))], "arm64");
    let di = push_index(
        &a,
        "team/multi",
        "latest",
        &[(&amd, "amd64"), (&arm, "arm64")],
    )
    .await;

    let target = Remote::Basic(dist.base.clone(), "repl".into(), "repl-pw".into());
    target.wait_for("team/one", "v1", Some(&d1), 30).await;
    target.wait_for("team/two", "v1", Some(&d2), 30).await;
    target.wait_for("team/two", "stable", Some(&d2), 30).await;
    target.wait_for("team/multi", "latest", Some(&di), 30).await;
    for (bd, b) in one.blobs().into_iter().chain(arm.blobs()) {
        let repo = if one.blobs().iter().any(|(d, _)| *d == bd) {
            "team/one"
        } else {
            "team/multi"
        };
        assert!(target.blob(repo, &bd).await == b);
    }

    // Distribution cannot delete a tag alone: the manifest it names goes,
    // since no tag here names it any more.
    let del = |path: &str| common::http().delete(a.url(path)).send();
    assert_eq!(
        del("/v2/team/one/manifests/v1").await.unwrap().status(),
        202
    );
    target.wait_for("team/one", "v1", None, 30).await;
    // team/two:stable still names v1's manifest here: deleting v1 there would
    // take stable too, so the target keeps it and says why.
    assert_eq!(
        del("/v2/team/two/manifests/v1").await.unwrap().status(),
        202
    );
    common::wait_for(30, "the refusal in the target's status", || async {
        let v = common::get_json(&a, "/_wharf/v1/replicate").await;
        v["targets"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot delete the tag team/two:v1 alone"))
    })
    .await;
    assert_eq!(
        target.digest("team/two", "stable").await.as_deref(),
        Some(d2.as_str())
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_answering_500_then_429_gets_the_items_after_backoff() {
    use common::faulty::{Fault, faulty};
    let dir = tempfile::tempdir().unwrap();
    let hub = upstreams::hub(dir.path()).await;
    // The worker meets two 500s first, then two 429s asking for 2 s.
    let limited = faulty(&hub.base, Fault::new(2, 429).header("retry-after", "2")).await;
    let failing = faulty(&limited.url, Fault::new(2, 500)).await;
    let pw = dir.path().join("target-pw");
    std::fs::write(&pw, "pusher-pw\n").unwrap();
    let a = Wharf::start_with(
        &dir.path().join("a"),
        &rule("team/*", &failing.url, "pusher", &pw, ""),
    )
    .await;
    let started = std::time::Instant::now();
    let d = push(&a, "team/app", "v1", &image(20, b"base")).await;
    let target = Remote::Wharf(hub.base.clone());
    target.wait_for("team/app", "v1", Some(&d), 60).await;
    assert_eq!(failing.faults(), 2);
    assert_eq!(limited.faults(), 2);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "the target's Retry-After was honoured"
    );
    let v = common::get_json(&a, "/_wharf/v1/replicate").await;
    let t = &v["targets"][0];
    assert!(t["items_failed"].as_u64().unwrap() >= 1, "{v}");
    assert!(t["last_success"].as_u64().is_some(), "{v}");
    for (bd, b) in image(20, b"base").blobs() {
        assert!(target.blob("team/app", &bd).await == b);
    }
    a.stop().await;
    hub.stop().await;
}

/// Runs `wharf ARGS --url BASE`; returns (exit code, stdout, stderr).
async fn cli(base: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = args.to_vec();
    all.extend(["--url", base]);
    common::wharf_cli(&all).await
}

#[tokio::test(flavor = "multi_thread")]
async fn wharf_replicate_shows_each_target_and_now_runs_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (a, hub) = source_and_target(dir.path(), "every = \"1h\"").await;
    let d = push(&a, "team/app", "v1", &image(30, b"b")).await;
    Remote::Wharf(hub.base.clone())
        .wait_for("team/app", "v1", Some(&d), 30)
        .await;

    // --now compares both sides: the tag is there, nothing is sent.
    let (code, out, err) = cli(&a.base, &["replicate", "--now"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("{}: copied 0", hub.base)), "{out}");
    assert!(out.contains("0 left"), "{out}");
    let (code, out, err) = cli(&a.base, &["replicate"]).await;
    assert_eq!(code, 0, "{err}");
    let header = out.lines().next().unwrap_or_default();
    for col in ["TARGET", "REPOS", "QUEUED", "LAST SUCCESS", "LAST COMPARED"] {
        assert!(header.contains(col), "{out}");
    }
    let row = out.lines().nth(1).unwrap_or_default();
    assert!(row.contains(&hub.base) && row.contains("team/*"), "{out}");
    let (code, out, _) = cli(&a.base, &["replicate", "--json"]).await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["targets"][0]["queued"], 0, "{v}");
    assert!(v["targets"][0]["items_done"].as_u64().unwrap() >= 1, "{v}");
    a.stop().await;

    // Without rules: said plainly, and --now is refused with the reason.
    let plain = Wharf::start(&dir.path().join("plain")).await;
    let (code, out, _) = cli(&plain.base, &["replicate"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("no [[replicate]] rules are configured"),
        "{out}"
    );
    let (code, _, err) = cli(&plain.base, &["replicate", "--now"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("no [[replicate]] rules"), "{err}");
    plain.stop().await;
    hub.stop().await;
}
