//! The replication target client (`wharf::upstream::Target`) against real
//! registries: a wharf in token mode (Bearer, Docker Hub style) and CNCF
//! Distribution 2.8.2 with htpasswd (Basic) and deletes enabled; plus a target
//! that is down, one answering 5xx or 429 first (a fault-injecting proxy in
//! front of a real wharf), and one that redirects uploads to another host.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::faulty::{Fault, faulty};
use common::image::{Image, OCI_MANIFEST, tar_with_file};
use common::{Wharf, bytes, digest, have_tool, http, upstreams};
use sha2::{Digest as _, Sha256};
use wharf::oci::Digest;
use wharf::upstream::{Deleted, Target, TargetSettings, UpstreamError};

const APP: &str = "team/app";
const OTHER: &str = "team/other";
const THIRD: &str = "team/third";

fn target(url: &str, user: &str, pw: &str) -> Target {
    Target::new(TargetSettings {
        url: format!("{url}/"),
        credentials: Some((user.into(), pw.into())),
    })
    .unwrap()
}

fn d(s: &str) -> Digest {
    s.parse().unwrap()
}

/// Where the target keeps its upload sessions, to see none is left open.
enum Side<'a> {
    Wharf(&'a Wharf),
    Distribution(&'a common::distribution_target::DistributionTarget),
}

impl Side<'_> {
    async fn open_uploads(&self) -> usize {
        match self {
            Side::Wharf(w) => upstreams::metric(w, "wharf_uploads_open").await as usize,
            Side::Distribution(d) => d.open_uploads(),
        }
    }

    async fn wait_no_open_uploads(&self) {
        common::wait_for(10, "no open upload session on the target", || async {
            self.open_uploads().await == 0
        })
        .await;
    }
}

/// What every target must do: blobs, mounts, manifests, tags, deletes, and
/// the target's own error codes surfacing. `untag` is what deleting a tag does
/// there.
async fn push_everything(t: &Target, side: &Side<'_>, untag: Deleted) {
    let img = Image::new(vec![
        tar_with_file("a", &bytes(300_000, 1)),
        tar_with_file("b", b"second layer"),
    ]);
    let blobs = img.blobs();
    assert_eq!(blobs.len(), 3, "config and two layers");
    let before = t.bytes_sent();
    for (digest, b) in &blobs {
        let digest = d(digest);
        assert!(!t.has_blob(APP, &digest).await.unwrap(), "not there yet");
        t.push_blob(
            APP,
            &digest,
            b.len() as u64,
            reqwest::Body::from(b.to_vec()),
        )
        .await
        .unwrap();
        assert!(t.has_blob(APP, &digest).await.unwrap(), "pushed {digest}");
    }
    let blob_bytes: u64 = blobs.iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(t.bytes_sent() - before, blob_bytes);

    // Mount into a second repository: 201.
    let layer = d(&blobs[1].0);
    assert!(!t.has_blob(OTHER, &layer).await.unwrap());
    assert!(t.mount_blob(OTHER, &layer, APP).await.unwrap(), "mounted");
    assert!(t.has_blob(OTHER, &layer).await.unwrap());
    // From a repository lacking the blob: the upload the target opened
    // instead is cancelled.
    assert!(!t.mount_blob(THIRD, &layer, "team/empty").await.unwrap());
    assert!(!t.has_blob(THIRD, &layer).await.unwrap());
    side.wait_no_open_uploads().await;

    // Manifests by digest and by tag.
    let md = digest(&img.manifest);
    let manifest = Bytes::from(img.manifest.clone());
    let before = t.bytes_sent();
    t.put_manifest(APP, &md, OCI_MANIFEST, manifest.clone())
        .await
        .unwrap();
    for tag in ["v1", "v2", "v3"] {
        t.put_manifest(APP, tag, OCI_MANIFEST, manifest.clone())
            .await
            .unwrap();
    }
    assert_eq!(t.bytes_sent() - before, 4 * manifest.len() as u64);
    assert_eq!(t.manifest_digest(APP, "v1").await.unwrap(), Some(d(&md)));
    assert_eq!(t.manifest_digest(APP, &md).await.unwrap(), Some(d(&md)));
    assert_eq!(t.manifest_digest(APP, "nope").await.unwrap(), None);

    // Tags, in pages of two (the target's Link is followed), and whole.
    let mut tags = t.tags_paged(APP, 100, 2).await.unwrap();
    tags.sort();
    assert_eq!(tags, ["v1", "v2", "v3"]);
    assert_eq!(t.tags(APP, 1000).await.unwrap().len(), 3);
    match t.tags(APP, 2).await {
        Err(UpstreamError::Invalid(m)) => assert!(m.contains("more than 2 tags"), "{m}"),
        other => panic!("over the limit: {other:?}"),
    }
    assert_eq!(
        t.tags("team/absent", 10).await.unwrap(),
        Vec::<String>::new()
    );

    // The target's OCI error code reaches the caller.
    let broken = Image::new(vec![b"never pushed".to_vec()]);
    match t
        .put_manifest(APP, "broken", OCI_MANIFEST, broken.manifest.into())
        .await
    {
        Err(UpstreamError::Invalid(m)) => assert!(m.contains("MANIFEST_BLOB_UNKNOWN"), "{m}"),
        other => panic!("a manifest with missing blobs: {other:?}"),
    }

    // Deletes.
    assert_eq!(t.delete_manifest(APP, "v3").await.unwrap(), untag);
    if untag == Deleted::Done {
        let mut tags = t.tags(APP, 10).await.unwrap();
        tags.sort();
        assert_eq!(tags, ["v1", "v2"]);
        assert_eq!(t.manifest_digest(APP, "v3").await.unwrap(), None);
    }
    assert_eq!(t.delete_manifest(APP, &md).await.unwrap(), Deleted::Done);
    assert_eq!(t.manifest_digest(APP, &md).await.unwrap(), None);
    assert_eq!(t.delete_manifest(APP, &md).await.unwrap(), Deleted::Absent);
}

/// Writes `mib` MiB of pseudo-random bytes to `path` a MiB at a time; their digest.
fn big_file(path: &std::path::Path, mib: usize) -> String {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let mut h = Sha256::new();
    for i in 0..mib {
        let chunk = bytes(1 << 20, 1000 + i as u64);
        h.update(&chunk);
        f.write_all(&chunk).unwrap();
    }
    let hex: String = h.finalize().iter().map(|x| format!("{x:02x}")).collect();
    format!("sha256:{hex}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wharf_in_token_mode_takes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let w = upstreams::hub(dir.path()).await;
    let t = target(&w.base, "pusher", "pusher-pw");
    assert_eq!(t.url(), w.base, "configured URL without the trailing /");
    push_everything(&t, &Side::Wharf(&w), Deleted::Done).await;

    // 50 MiB streamed from a file; the daemon's bytes hash to the digest.
    let path = dir.path().join("big");
    let big = big_file(&path, 50);
    let size = 50u64 << 20;
    let before = t.bytes_sent();
    let file = tokio::fs::File::open(&path).await.unwrap();
    t.push_blob(APP, &d(&big), size, reqwest::Body::from(file))
        .await
        .unwrap();
    assert_eq!(t.bytes_sent() - before, size);
    let mut r = http()
        .get(w.url(&format!("/v2/{APP}/blobs/{big}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (mut h, mut n) = (Sha256::new(), 0u64);
    while let Some(c) = r.chunk().await.unwrap() {
        n += c.len() as u64;
        h.update(&c);
    }
    let hex: String = h.finalize().iter().map(|x| format!("{x:02x}")).collect();
    assert_eq!((n, format!("sha256:{hex}")), (size, big.clone()));

    // A source shorter than announced fails the upload; nothing is stored
    // and its session is cancelled.
    let short = d(&digest(&[7u8; 1000]));
    match t
        .push_blob(APP, &short, 1000, reqwest::Body::from(vec![7u8; 10]))
        .await
    {
        Err(UpstreamError::Invalid(m)) => assert!(m.contains("after 10 of 1000"), "{m}"),
        other => panic!("short body: {other:?}"),
    }
    assert!(!t.has_blob(APP, &short).await.unwrap());
    Side::Wharf(&w).wait_no_open_uploads().await;

    // Bytes that do not hash to the digest: the target's DIGEST_INVALID.
    let wrong = d(&digest(b"something else"));
    match t
        .push_blob(APP, &wrong, 5, reqwest::Body::from(&b"hello"[..]))
        .await
    {
        Err(UpstreamError::Invalid(m)) => assert!(m.contains("DIGEST_INVALID"), "{m}"),
        other => panic!("wrong digest: {other:?}"),
    }

    // A wrong password: the token service refuses it.
    let bad = target(&w.base, "pusher", "wrong");
    let r = bad
        .put_manifest(APP, "v9", OCI_MANIFEST, Bytes::from_static(b"{}"))
        .await;
    assert!(matches!(r, Err(UpstreamError::Denied(_))), "{r:?}");
    let r = bad.mount_blob(OTHER, &d(&big), APP).await;
    assert!(matches!(r, Err(UpstreamError::Denied(_))), "{r:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn distribution_with_htpasswd_takes_everything() {
    if !have_tool("docker-registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ddir = dir.path().to_owned();
    let dist = tokio::task::spawn_blocking(move || {
        common::distribution_target::start(&ddir, &[("repl", "repl-pw")])
    })
    .await
    .unwrap();
    let t = target(&dist.base, "repl", "repl-pw");
    // Distribution 2.8.2 cannot untag: a tag DELETE is DIGEST_INVALID there.
    push_everything(&t, &Side::Distribution(&dist), Deleted::Unsupported).await;

    let bad = target(&dist.base, "repl", "wrong");
    let r = bad.has_blob(APP, &d(&digest(b"x"))).await;
    assert!(matches!(r, Err(UpstreamError::Denied(_))), "{r:?}");
    let r = bad
        .put_manifest(APP, "v9", OCI_MANIFEST, Bytes::from_static(b"{}"))
        .await;
    assert!(matches!(r, Err(UpstreamError::Denied(_))), "{r:?}");
    drop(dist);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_is_down_is_unavailable_quickly() {
    let port = common::nginx::free_port();
    let t = target(&format!("http://127.0.0.1:{port}"), "u", "p");
    let started = Instant::now();
    let r = t.has_blob(APP, &d(&digest(b"x"))).await;
    assert!(matches!(r, Err(UpstreamError::Unavailable(_))), "{r:?}");
    let r = t
        .push_blob(APP, &d(&digest(b"x")), 1, reqwest::Body::from(&b"x"[..]))
        .await;
    assert!(matches!(r, Err(UpstreamError::Unavailable(_))), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_then_reported() {
    let dir = tempfile::tempdir().unwrap();
    let w = upstreams::hub(dir.path()).await;
    let blob = b"retried blob";
    let bd = d(&digest(blob));

    // Two 500s, then the real registry: the call retries through them.
    let proxy = faulty(&w.base, Fault::new(2, 500)).await;
    let t = target(&proxy.url, "pusher", "pusher-pw");
    t.push_blob(APP, &bd, blob.len() as u64, reqwest::Body::from(&blob[..]))
        .await
        .unwrap();
    assert_eq!(proxy.faults(), 2);
    assert!(t.has_blob(APP, &bd).await.unwrap());

    // A target that keeps failing: Unavailable, with its status in the text.
    let proxy = faulty(&w.base, Fault::new(usize::MAX, 503)).await;
    let t = target(&proxy.url, "pusher", "pusher-pw");
    match t.has_blob(APP, &bd).await {
        Err(UpstreamError::Unavailable(m)) => assert!(m.contains("503"), "{m}"),
        other => panic!("always 503: {other:?}"),
    }
    assert_eq!(proxy.requests(), 3, "one attempt and two retries");

    // A blob PUT is never retried inside the call: its body is gone.
    let proxy = faulty(&w.base, Fault::new(1, 500).only(http::Method::PUT)).await;
    let t = target(&proxy.url, "pusher", "pusher-pw");
    let other = b"put once";
    let od = d(&digest(other));
    let r = t
        .push_blob(
            APP,
            &od,
            other.len() as u64,
            reqwest::Body::from(&other[..]),
        )
        .await;
    assert!(matches!(r, Err(UpstreamError::Unavailable(_))), "{r:?}");
    assert_eq!(proxy.faults(), 1);
    assert!(!t.has_blob(APP, &od).await.unwrap());
    Side::Wharf(&w).wait_no_open_uploads().await;
    // The caller's retry with a fresh body goes through.
    t.push_blob(
        APP,
        &od,
        other.len() as u64,
        reqwest::Body::from(&other[..]),
    )
    .await
    .unwrap();
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn short_rate_limits_are_waited_and_long_ones_returned() {
    let dir = tempfile::tempdir().unwrap();
    let w = upstreams::hub(dir.path()).await;
    let bd = d(&digest(b"absent"));

    let proxy = faulty(&w.base, Fault::new(1, 429).header("retry-after", "1")).await;
    let t = target(&proxy.url, "pusher", "pusher-pw");
    let started = Instant::now();
    assert!(!t.has_blob(APP, &bd).await.unwrap());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited it out"
    );
    assert_eq!((proxy.faults(), proxy.requests()), (1, 2));

    // 30 s would fit in the call's minute, but is the worker's to wait.
    let proxy = faulty(&w.base, Fault::new(1, 429).header("retry-after", "30")).await;
    let t = target(&proxy.url, "pusher", "pusher-pw");
    let started = Instant::now();
    let r = t.has_blob(APP, &bd).await;
    assert!(
        matches!(
            r,
            Err(UpstreamError::TooManyRequests {
                retry_after: Some(30)
            })
        ),
        "{r:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "not waited");
    assert_eq!(proxy.requests(), 1, "not retried");

    // Retry-After as an HTTP-date 40 s ahead.
    let now = std::time::SystemTime::now();
    let date = http_date(now + Duration::from_secs(40));
    let proxy = faulty(&w.base, Fault::new(1, 429).header("retry-after", &date)).await;
    let t = target(&proxy.url, "pusher", "pusher-pw");
    match t.has_blob(APP, &bd).await {
        Err(UpstreamError::TooManyRequests {
            retry_after: Some(s),
        }) => assert!((30..=40).contains(&s), "{date}: {s}"),
        other => panic!("{date}: {other:?}"),
    }
    w.stop().await;
}

/// `t` as an IMF-fixdate.
fn http_date(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let names = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        names[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_goes_up_front_and_never_to_another_host() {
    // Where the target sends uploads: records whether credentials came along.
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let log = seen.clone();
    let elsewhere = upstreams::fake(move |p| {
        let auth = p
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        log.lock().unwrap().push(auth);
        upstreams::answer(201, &[], "")
    })
    .await;
    let upload_at = format!("{}/uploads/1", elsewhere.url);
    let challenges = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = challenges.clone();
    let target_fake = upstreams::fake(move |p| {
        if p.headers.get("authorization").is_none() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return upstreams::answer(401, &[("www-authenticate", "Basic realm=\"t\"")], "");
        }
        match p.method {
            http::Method::POST => upstreams::answer(202, &[("location", upload_at.as_str())], ""),
            _ => upstreams::answer(200, &[], ""),
        }
    })
    .await;
    let t = target(&target_fake.url, "u", "p");
    let x = d(&digest(b"x"));
    assert!(t.has_blob(APP, &x).await.unwrap());
    assert!(t.has_blob(APP, &x).await.unwrap());
    t.push_blob(APP, &x, 1, reqwest::Body::from(&b"x"[..]))
        .await
        .unwrap();
    assert_eq!(
        challenges.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one 401, then Basic up front"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![None],
        "no credentials to another host"
    );
}
