//! Replication (`[[replicate]]`) attacked: a hostile or broken target, a
//! careless operator, orderings that must still converge. Each test names
//! the failure it guards against; the target is a real wharf (token auth)
//! behind `common::hostile`, which misbehaves only where a test says.

mod common;

use http::Method;

use common::hostile::{full, hostile, line, stalled};
use common::image::{Image, tar_with_file};
use common::replica::{Remote, push, rule};
use common::{Wharf, bytes, upstreams};

fn image(seed: u64) -> Image {
    Image::new(vec![tar_with_file(
        "app",
        &bytes(50_000 + seed as usize, seed),
    )])
}

/// The first target's entry in the admin API.
async fn target_state(w: &Wharf) -> serde_json::Value {
    common::get_json(w, "/_wharf/v1/replicate").await["targets"][0].clone()
}

/// A target that answers a blob upload with an error whose body never comes
/// (headers, then silence on an open connection) must not hang the worker:
/// the item fails, is noted, and later pushes still go out.
#[tokio::test(flavor = "multi_thread")]
async fn an_error_body_that_never_comes_does_not_hang_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let hub = upstreams::hub(dir.path()).await;
    let bad = hostile(&hub.base, |req| {
        let (m, p) = line(req);
        (*m == Method::PUT && p.starts_with("/v2/team/stuck/blobs/uploads/"))
            .then(|| stalled(400, &[("content-type", "application/json")]))
    })
    .await;
    let pw = dir.path().join("target-pw");
    std::fs::write(&pw, "pusher-pw\n").unwrap();
    let a = Wharf::start_with(
        &dir.path().join("a"),
        &rule("team/*", &bad.url, "pusher", &pw, ""),
    )
    .await;
    push(&a, "team/stuck", "v1", &image(1)).await;
    common::wait_for(30, "the blob PUT the target stalls", || async {
        bad.answered() >= 1
    })
    .await;
    // Pushed while the worker waits on that answer.
    let d = push(&a, "team/later", "v1", &image(2)).await;
    Remote::Wharf(hub.base.clone())
        .wait_for("team/later", "v1", Some(&d), 60)
        .await;
    let t = target_state(&a).await;
    assert!(
        t["last_error"].as_str().is_some_and(|e| e.contains("400")),
        "the stalled upload is reported as failed: {t}"
    );
    a.stop().await;
    hub.stop().await;
}

/// A target whose tag list of one repository is garbage (or over the
/// limit, or refused) must not stop everything else: the comparison of both
/// sides skips what it cannot read, and queued items still go out.
#[tokio::test(flavor = "multi_thread")]
async fn one_unreadable_tag_list_does_not_stop_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let hub = upstreams::hub(dir.path()).await;
    let bad = hostile(&hub.base, |req| {
        let (m, p) = line(req);
        (*m == Method::GET && p.starts_with("/v2/team/bad/tags/list"))
            .then(|| full(200, &[], &b"<html>oops</html>"[..]))
    })
    .await;
    let pw = dir.path().join("target-pw");
    std::fs::write(&pw, "pusher-pw\n").unwrap();
    // team/bad is pushed before the rule exists (a rule added later).
    let adir = dir.path().join("a");
    let a = Wharf::start_with(&adir, "").await;
    let d_bad = push(&a, "team/bad", "v1", &image(3)).await;
    a.stop().await;
    let a = Wharf::start_with(
        &adir,
        &rule(
            "team/*",
            &bad.url,
            "pusher",
            &pw,
            "delete = true\nevery = \"1h\"",
        ),
    )
    .await;
    let d_good = push(&a, "team/good", "v1", &image(4)).await;
    let target = Remote::Wharf(hub.base.clone());
    target.wait_for("team/good", "v1", Some(&d_good), 30).await;
    // The rule added later still catches up where the tags can be compared.
    target.wait_for("team/bad", "v1", Some(&d_bad), 30).await;
    assert!(bad.answered() >= 1, "the garbage tag list was asked for");
    let t = target_state(&a).await;
    assert!(
        t["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("team/bad")),
        "the unreadable tag list is reported: {t}"
    );
    a.stop().await;
    hub.stop().await;
}

/// A target that refuses one repository (credentials allowed to push only
/// some names: Harbor projects, Docker Hub namespaces, a wharf's ACL) must
/// not stop the others: the refusal is the repository's, not an outage of
/// the whole target.
#[tokio::test(flavor = "multi_thread")]
async fn a_target_refusing_one_repository_still_gets_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let hub = upstreams::hub(dir.path()).await;
    let bad = hostile(&hub.base, |req| {
        let (_, p) = line(req);
        p.starts_with("/v2/team/secret/").then(|| {
            full(
                403,
                &[("content-type", "application/json")],
                &br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#[..],
            )
        })
    })
    .await;
    let pw = dir.path().join("target-pw");
    std::fs::write(&pw, "pusher-pw\n").unwrap();
    // team/secret is pushed before the rule exists (a rule added later, so
    // the first pass compares both sides).
    let adir = dir.path().join("a");
    let a = Wharf::start_with(&adir, "").await;
    push(&a, "team/secret", "v1", &image(5)).await;
    a.stop().await;
    let a = Wharf::start_with(
        &adir,
        &rule("team/*", &bad.url, "pusher", &pw, "every = \"1h\""),
    )
    .await;
    // And once more with the rule: the push's own item is refused too.
    push(&a, "team/secret", "v2", &image(6)).await;
    let mut want = Vec::new();
    for i in 0..6u64 {
        let repo = format!("team/open{i}");
        want.push((repo.clone(), push(&a, &repo, "v1", &image(10 + i)).await));
    }
    let target = Remote::Wharf(hub.base.clone());
    for (repo, d) in &want {
        target.wait_for(repo, "v1", Some(d), 30).await;
    }
    let t = target_state(&a).await;
    assert!(
        t["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("403") && e.contains("refuses this repository")),
        "the refusal is reported: {t}"
    );
    a.stop().await;
    hub.stop().await;
}

/// A wrong password is still the whole target's outage (backed off, items
/// kept), not one repository's refusal: `GET /v2/` with it fails too.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_an_outage_and_keeps_the_items() {
    let dir = tempfile::tempdir().unwrap();
    let hub = upstreams::hub(dir.path()).await;
    let pw = dir.path().join("target-pw");
    std::fs::write(&pw, "not-the-password\n").unwrap();
    let a = Wharf::start_with(
        &dir.path().join("a"),
        &rule("team/*", &hub.base, "pusher", &pw, ""),
    )
    .await;
    push(&a, "team/app", "v1", &image(20)).await;
    common::wait_for(30, "the refusal noted", || async {
        !target_state(&a).await["last_error"].is_null()
    })
    .await;
    let t = target_state(&a).await;
    assert!(!t["retry_at"].is_null(), "backed off as an outage: {t}");
    assert!(
        t["last_error"]
            .as_str()
            .is_some_and(|e| !e.contains("refuses this repository")),
        "{t}"
    );
    assert_eq!(t["queued"], 1, "{t}");
    a.stop().await;
    hub.stop().await;
}

/// Pushes, deletions and re-pushes of the same tags while the target is
/// down end, once it is back, with the target exactly where the source is.
#[tokio::test(flavor = "multi_thread")]
async fn churn_while_the_target_is_down_converges() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let hub = upstreams::hub(dir.path()).await;
    let down = Arc::new(AtomicBool::new(false));
    let d2 = down.clone();
    let t = hostile(&hub.base, move |_| {
        d2.load(Ordering::SeqCst).then(|| full(503, &[], ""))
    })
    .await;
    let pw = dir.path().join("target-pw");
    std::fs::write(&pw, "pusher-pw\n").unwrap();
    let a = Wharf::start_with(
        &dir.path().join("a"),
        &rule("team/*", &t.url, "pusher", &pw, "delete = true"),
    )
    .await;
    let target = Remote::Wharf(hub.base.clone());
    let old = push(&a, "team/app", "v1", &image(30)).await;
    let gone = push(&a, "team/app", "gone", &image(31)).await;
    target.wait_for("team/app", "v1", Some(&old), 30).await;
    target.wait_for("team/app", "gone", Some(&gone), 30).await;

    down.store(true, Ordering::SeqCst);
    let del = |tag: &'static str| {
        let url = a.url(&format!("/v2/team/app/manifests/{tag}"));
        async move {
            let r = common::http().delete(url).send().await.unwrap();
            assert_eq!(r.status(), 202);
        }
    };
    del("v1").await;
    push(&a, "team/app", "tmp", &image(32)).await;
    let new = push(&a, "team/app", "v1", &image(33)).await;
    del("gone").await;
    del("tmp").await;
    common::wait_for(30, "the target marked down", || async {
        !target_state(&a).await["retry_at"].is_null()
    })
    .await;
    down.store(false, Ordering::SeqCst);

    target.wait_for("team/app", "v1", Some(&new), 60).await;
    target.wait_for("team/app", "gone", None, 60).await;
    target.wait_for("team/app", "tmp", None, 60).await;
    common::wait_for(60, "an empty queue", || async {
        target_state(&a).await["queued"] == 0
    })
    .await;
    a.stop().await;
    hub.stop().await;
}

/// A target that claims every blob (200 to each blob HEAD) but lacks them:
/// the manifest it then refuses keeps the item failing, never counted done.
#[tokio::test(flavor = "multi_thread")]
async fn a_target_claiming_blobs_it_lacks_never_gets_the_item_marked_done() {
    let dir = tempfile::tempdir().unwrap();
    let hub = upstreams::hub(dir.path()).await;
    let liar = hostile(&hub.base, |req| {
        let (m, p) = line(req);
        (*m == Method::HEAD && p.contains("/blobs/sha256:")).then(|| full(200, &[], ""))
    })
    .await;
    let pw = dir.path().join("target-pw");
    std::fs::write(&pw, "pusher-pw\n").unwrap();
    let a = Wharf::start_with(
        &dir.path().join("a"),
        &rule("team/*", &liar.url, "pusher", &pw, ""),
    )
    .await;
    push(&a, "team/app", "v1", &image(40)).await;
    common::wait_for(30, "the manifest refused", || async {
        target_state(&a).await["items_failed"].as_u64() >= Some(1)
    })
    .await;
    let t = target_state(&a).await;
    assert_eq!(t["items_done"], 0, "{t}");
    assert_eq!(t["queued"], 1, "{t}");
    assert!(
        t["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("MANIFEST_BLOB_UNKNOWN")),
        "{t}"
    );
    assert_eq!(
        Remote::Wharf(hub.base.clone())
            .digest("team/app", "v1")
            .await,
        None
    );
    a.stop().await;
    hub.stop().await;
}
