//! Cache fills across nodes on one S3 bucket (moto, `tests/common/s3.rs`):
//! three mirror nodes, each with its own data directory, share one bucket
//! and prefix in front of one upstream hub (a wharf on files, whose metrics
//! count what it served). A node checks the bucket before the upstream and
//! takes a blob's fill lease (`fills/<hex>`) before downloading, so nodes
//! that miss a blob at once fetch it from the upstream about once; a lease
//! whose holder died or failed does not hold the others up for long.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hostile::{drip, hostile, line};
use common::image::{Image, tar_with_file};
use common::s3::{S3Server, blob_key, config, server};
use common::upstreams::{hub, hub_blob_bytes, mirror_config, publish};
use common::{Wharf, bytes, digest, get_oci as get, metrics_text};

const BUCKET: &str = "wharf-nodes";

/// A mirror node named `name` under `dir` whose default upstream is
/// `upstream`, its blobs in the shared bucket (same prefix as every node).
async fn node(dir: &Path, name: &str, s3: &S3Server, upstream: &str) -> Wharf {
    let sections = mirror_config(upstream, "manifest_ttl = \"1h\"\n", "");
    Wharf::start_config(config(s3, BUCKET, &dir.join(name), &sections, "")).await
}

/// Requests the hub answered for blobs (GET and HEAD, any status).
async fn hub_blob_requests(hub: &Wharf) -> f64 {
    metrics_text(hub)
        .await
        .lines()
        .filter(|l| l.starts_with("wharf_http_requests_total{") && l.contains("route=\"blob\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn lease_key(d: &str) -> String {
    format!("fills/{}", d.trim_start_matches("sha256:"))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_cold_pulls_over_three_nodes_fetch_each_blob_from_the_upstream_about_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let hub = hub(dir.path()).await;
    // Layers of a few MiB each (single PUTs into the bucket) and a tiny one.
    let img = Image::new(vec![
        tar_with_file("a", &bytes(5 << 20, 11)),
        tar_with_file("b", &bytes(3 << 20, 12)),
        tar_with_file("c", &bytes(2 << 20, 13)),
        tar_with_file("d", b"tiny"),
    ]);
    publish(&hub, "library/app", "v1", &img).await;
    let mut nodes = Vec::new();
    for name in ["n1", "n2", "n3"] {
        nodes.push(Arc::new(node(dir.path(), name, &s3, &hub.base).await));
    }
    let blobs: Vec<(String, Vec<u8>)> = img
        .blobs()
        .into_iter()
        .map(|(d, b)| (d, b.to_vec()))
        .collect();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let n = nodes[i % 3].clone();
        let blobs = blobs.clone();
        let manifest = img.manifest.clone();
        tasks.push(tokio::spawn(async move {
            let r = get(&n, "/v2/library/app/manifests/v1").await;
            assert_eq!(r.status(), 200);
            assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
            for (d, want) in &blobs {
                let r = get(&n, &format!("/v2/library/app/blobs/{d}")).await;
                assert_eq!(r.status(), 200, "{d}");
                let got = r.bytes().await.unwrap();
                assert_eq!(got.len(), want.len(), "{d}");
                assert_eq!(digest(&got), *d);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total: usize = blobs.iter().map(|(_, b)| b.len()).sum();
    let served = hub_blob_bytes(&hub).await;
    assert!(
        served <= 1.2 * total as f64,
        "the upstream served {served} blob bytes for {total} distinct ones ({:.2}x)",
        served / total as f64
    );
    for (d, _) in &blobs {
        assert!(
            s3.exists(BUCKET, &blob_key(d)).await,
            "{d} is in the bucket"
        );
        // Released once stored (the client may have its last byte first).
        let key = lease_key(d);
        common::wait_for(10, "the fill lease's release", || async {
            !s3.exists(BUCKET, &key).await
        })
        .await;
    }
    for n in nodes {
        Arc::try_unwrap(n).ok().unwrap().stop().await;
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_one_node_cached_is_served_by_another_without_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let hub = hub(dir.path()).await;
    let layer = tar_with_file("a", &bytes(3 << 20, 21));
    let other = tar_with_file("b", &bytes(1 << 20, 22));
    let img = Image::new(vec![layer.clone(), other.clone()]);
    publish(&hub, "library/app", "v1", &img).await;
    let a = node(dir.path(), "a", &s3, &hub.base).await;
    let b = node(dir.path(), "b", &s3, &hub.base).await;
    let (dl, dother) = (digest(&layer), digest(&other));
    for d in [&dl, &dother] {
        let r = get(&a, &format!("/v2/library/app/blobs/{d}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-cache"], "MISS");
        r.bytes().await.unwrap();
    }
    let requests = hub_blob_requests(&hub).await;
    let served = hub_blob_bytes(&hub).await;

    let r = get(&b, &format!("/v2/library/app/blobs/{dl}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "HIT", "adopted from the bucket");
    assert_eq!(r.bytes().await.unwrap().as_ref(), layer.as_slice());
    // A HEAD too is answered from the bucket.
    let r = common::http()
        .head(b.url(&format!("/v2/library/app/blobs/{dother}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(
        r.headers()["content-length"],
        other.len().to_string().as_str()
    );
    assert_eq!(
        hub_blob_requests(&hub).await,
        requests,
        "node b asked the upstream nothing about blobs node a cached"
    );
    assert_eq!(hub_blob_bytes(&hub).await, served);
    a.stop().await;
    b.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fill_lease_left_by_a_dead_node_is_taken_over_once_it_lapses() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let hub = hub(dir.path()).await;
    let layer = tar_with_file("a", &bytes(2 << 20, 31));
    let img = Image::new(vec![layer.clone()]);
    publish(&hub, "library/app", "v1", &img).await;
    let a = node(dir.path(), "a", &s3, &hub.base).await;
    let d = digest(&layer);
    // What a node killed mid-fill leaves: a lease nobody renews, a few
    // seconds from lapsing.
    let lapses = unix_now() + 3;
    let body = format!("{{\"node\":\"dead-node\",\"expires_unix\":{lapses}}}");
    s3.put_object(BUCKET, &lease_key(&d), body).await;
    let started = Instant::now();
    let r = get(&a, &format!("/v2/library/app/blobs/{d}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), layer.as_slice());
    let waited = started.elapsed();
    assert!(
        unix_now() >= lapses,
        "the node waited for the dead node's lease ({waited:?}) instead of fetching at once"
    );
    assert!(
        waited < Duration::from_secs(30),
        "the lapsed lease was taken over promptly ({waited:?})"
    );
    assert_eq!(hub_blob_bytes(&hub).await as usize, layer.len());
    let key = lease_key(&d);
    common::wait_for(10, "the taker's release of the lease", || async {
        !s3.exists(BUCKET, &key).await
    })
    .await;
    a.stop().await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_fill_fails_lets_a_waiting_node_fetch_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(s3) = server(dir.path(), BUCKET) else {
        return;
    };
    let hub = hub(dir.path()).await;
    let layer = tar_with_file("a", &bytes(2 << 20, 41));
    let img = Image::new(vec![layer.clone()]);
    publish(&hub, "library/app", "v1", &img).await;
    let d = digest(&layer);
    // Node a's upstream drips 30 wrong bytes over 3 s for the layer, so a
    // takes the lease, holds it for a while, and fails the digest check.
    let path = format!("/v2/library/app/blobs/{d}");
    let p = path.clone();
    let bad = hostile(&hub.base, move |req| {
        let (method, at) = line(req);
        (method == http::Method::GET && at == p)
            .then(|| drip(&[], vec![b'x'; 30], Duration::from_millis(100)))
    })
    .await;
    let a = node(dir.path(), "a", &s3, &bad.url).await;
    let b = node(dir.path(), "b", &s3, &hub.base).await;
    let first = tokio::spawn({
        let url = a.url(&path);
        async move {
            match common::http().get(url).send().await {
                Ok(r) => r.status().as_u16() == 200 && r.bytes().await.is_ok(),
                Err(_) => false,
            }
        }
    });
    let lease = lease_key(&d);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s3.exists(BUCKET, &lease).await {
        assert!(Instant::now() < deadline, "node a took the fill lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let r = get(&b, &path).await;
    assert_eq!(r.status(), 200);
    assert!(
        first.is_finished(),
        "node b waited for node a's fill (a's client had its answer before b's)"
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), layer.as_slice());
    assert!(!first.await.unwrap(), "node a's client got no good blob");
    assert!(bad.answered() >= 1, "node a's download was the failing one");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "node b took over when a let go, not at the lease's expiry"
    );
    assert_eq!(
        hub_blob_bytes(&hub).await as usize,
        layer.len(),
        "the upstream served the blob once, to node b"
    );
    a.stop().await;
    b.stop().await;
    hub.stop().await;
}
